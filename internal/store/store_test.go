package store

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

type rec struct{ N int }

func TestStoreSurvivesReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "bootstrapd.db")
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	// Concurrent puts exercise Batch folding many writers into few commits.
	var wg sync.WaitGroup
	for i := range 100 {
		wg.Go(func() {
			if err := db.Put("b", string(rune('a'+i%26))+string(rune('0'+i/26)), rec{i}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if err := db.Delete("b", "a0"); err != nil {
		t.Fatal(err)
	}
	if err := db.Delete("nobucket", "x"); err != nil {
		t.Fatalf("delete from a missing bucket: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("store mode %v, want 0600", fi.Mode().Perm())
	}
	if di, _ := os.Stat(filepath.Dir(path)); di.Mode().Perm() != 0o700 {
		t.Errorf("state dir mode %v, want 0700", di.Mode().Perm())
	}

	db, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	n := 0
	if err := Load(db, "b", func(k string, v rec) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if n != 99 {
		t.Errorf("after reopen %d records, want 99", n)
	}
	var r rec
	if ok, err := db.Get("b", "b0", &r); err != nil || !ok || r.N != 1 {
		t.Errorf("Get b0 = %v %v %+v", ok, err, r)
	}
	if ok, _ := db.Get("b", "a0", &r); ok {
		t.Error("deleted key still there")
	}
}

func TestSecondOpenSaysWhoHoldsIt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.db")
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	_, err = Open(path)
	if err == nil || !strings.Contains(err.Error(), "another bootstrapd holds it") {
		t.Fatalf("second open: %v", err)
	}
}
