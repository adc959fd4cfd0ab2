package store

import (
	"fmt"
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
	got := map[string]rec{}
	if err := Load(db, "b", func(k string, v rec) error { got[k] = v; return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 100 || got["b0"].N != 1 || got["a3"].N != 78 {
		t.Errorf("after reopen %d records, b0=%+v a3=%+v", len(got), got["b0"], got["a3"])
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

// TestGroupCommit: concurrent writers share commits (far fewer transactions
// than writes), a bad write fails alone, and writes after Close say so.
func TestGroupCommit(t *testing.T) {
	db, err := Open(filepath.Join(t.TempDir(), "x.db"))
	if err != nil {
		t.Fatal(err)
	}
	before := db.records.Load()
	var wg sync.WaitGroup
	errs := make([]error, 500)
	for i := range errs {
		wg.Go(func() {
			errs[i] = db.Put("b", strings.Repeat("k", i%50+1)+string(rune('a'+i%26)), rec{i})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("write %d: %v", i, err)
		}
	}
	// One journal record (one fdatasync) per group.
	if got := db.records.Load() - before; got >= int64(len(errs)) {
		t.Errorf("%d journal records for %d puts: writes are not grouped", got, len(errs))
	} else {
		t.Logf("%d journal records for %d puts", got, len(errs))
	}
	// A bad write in a group fails alone.
	bad := make(chan error, 1)
	go func() { bad <- db.Put("", "k", rec{1}) }() // bbolt refuses an empty bucket name
	if err := db.Put("b", "good", rec{1}); err != nil {
		t.Errorf("a good write next to a bad one: %v", err)
	}
	if err := <-bad; err == nil {
		t.Error("the bad write succeeded")
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Put("b", "late", rec{1}); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("put after close: %v", err)
	}
}

// TestPutAllDeletes: a Delete entry removes its key in the same
// transaction as the values written beside it; deleting a missing key is
// not an error.
func TestPutAllDeletes(t *testing.T) {
	db, err := Open(filepath.Join(t.TempDir(), "bootstrapd.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.PutAll(Entry{Bucket: "b", Key: "x", Value: rec{1}}, Entry{Bucket: "b", Key: "y", Value: rec{2}}); err != nil {
		t.Fatal(err)
	}
	if err := db.PutAll(Entry{Bucket: "b", Key: "x", Delete: true}, Entry{Bucket: "b", Key: "z", Value: rec{3}}, Entry{Bucket: "b", Key: "never", Delete: true}); err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	Load(db, "b", func(k string, v rec) error { got[k] = v.N; return nil })
	if len(got) != 2 || got["y"] != 2 || got["z"] != 3 {
		t.Errorf("after the delete: %v", got)
	}
}

// badNum is a Numbered value that does not encode.
type badNum struct{}

func (badNum) WithSeq(uint64) any { return func() {} }

// TestNumbered: numbered entries get consecutive numbers in commit order,
// the follower is told of each once it is durable, a write that does not
// encode takes no number, and numbering goes on after a reopen.
func TestNumbered(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bootstrapd.db")
	var told []uint64
	open := func() *DB {
		db, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		db.Follow(func(cs []Change) {
			for _, c := range cs {
				told = append(told, c.Seq)
			}
		})
		return db
	}
	db := open()
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			if err := db.PutAll(Entry{Bucket: "ev", Numbered: true, Value: ev{From: fmt.Sprint(i)}}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if err := db.PutAll(Entry{Bucket: "ev", Numbered: true, Value: badNum{}}); err == nil {
		t.Error("a numbered value that does not encode was stored")
	}
	db.Close()
	db = open()
	defer db.Close()
	if err := db.PutAll(Entry{Bucket: "ev", Numbered: true, Value: ev{From: "after"}}); err != nil {
		t.Fatal(err)
	}
	for i, n := range told {
		if n != uint64(i+1) {
			t.Fatalf("told of numbers %v, want 1..51", told)
		}
	}
	var keys []uint64
	Load(db, "ev", func(k string, e ev) error {
		if SeqKey(e.Seq) != k {
			t.Errorf("entry %d stored under %x", e.Seq, k)
		}
		keys = append(keys, e.Seq)
		return nil
	})
	if len(told) != 51 || len(keys) != 51 || keys[50] != 51 {
		t.Fatalf("told %d, stored %d (last %v), want 51", len(told), len(keys), keys[len(keys)-1:])
	}
}
