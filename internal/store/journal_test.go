package store

import (
	"bufio"
	"bytes"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func rec1(seq uint64, key string) []byte {
	return appendRecord(nil, seq, []write{{changes: []change{{bucket: "b", key: key, value: []byte(`"v"`)}}}}, crc32.MakeTable(crc32.Castagnoli))
}

// TestRecords: which records of a journal file are replayed. Only the run
// from offset 0 numbered applied+1, applied+2, … counts; a torn or damaged
// record, zeros, a gap, or an older record ends it.
func TestRecords(t *testing.T) {
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	torn := rec1(3, "c")
	torn = torn[:len(torn)-2]
	flipped := rec1(2, "b")
	flipped[len(flipped)-1] ^= 1
	huge := rec1(1, "a")
	huge[3] = 0x7f // length far beyond the file
	tests := []struct {
		name    string
		data    []byte
		applied uint64
		want    []uint64
	}{
		{"empty file", nil, 0, nil},
		{"zeros (preallocated, never written)", make([]byte, 4096), 0, nil},
		{"two records then zeros", cat(rec1(1, "a"), rec1(2, "b"), make([]byte, 100)), 0, []uint64{1, 2}},
		{"torn tail", cat(rec1(1, "a"), rec1(2, "b"), torn), 0, []uint64{1, 2}},
		{"damaged record ends the journal", cat(rec1(1, "a"), flipped, rec1(3, "c")), 0, []uint64{1}},
		{"all applied at the last checkpoint", cat(rec1(1, "a"), rec1(2, "b"), rec1(3, "c")), 3, nil},
		{"new records over older ones", cat(rec1(4, "d"), rec1(5, "e"), rec1(3, "c")), 3, []uint64{4, 5}},
		{"new records end in the middle of an older one", cat(rec1(4, "d"), rec1(2, "bbbbbbbbbbbbbbbbbbbb")[7:]), 3, []uint64{4}},
		{"gap", cat(rec1(1, "a"), rec1(3, "c")), 0, []uint64{1}},
		{"length beyond the file", huge, 0, nil},
		{"header only", rec1(1, "a")[:recordHeader], 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []uint64
			last, err := records(tt.data, tt.applied, crc32.MakeTable(crc32.Castagnoli), func(seq uint64, body []byte) error {
				got = append(got, seq)
				return decodeChanges(body, func(change) {})
			})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("replayed %v, want %v", got, tt.want)
			}
			if want := tt.applied + uint64(len(tt.want)); last != want {
				t.Errorf("last %d, want %d", last, want)
			}
		})
	}
}

// TestChangesRoundTrip: a body decodes to the changes it was made of, an
// empty value stays a put, and a cut body is an error, not a panic.
func TestChangesRoundTrip(t *testing.T) {
	in := []change{
		{bucket: "leases", key: "10.0.0.1", value: []byte(`{"mac":"02:00:00:00:00:01"}`)},
		{bucket: "nodes", key: "02:00:00:00:00:01"}, // delete
		{bucket: "b", key: "empty", value: []byte{}},
		{bucket: strings.Repeat("x", 300), key: strings.Repeat("k", 200), value: bytes.Repeat([]byte{0}, 70000)},
	}
	var body []byte
	for _, c := range in {
		body = appendChange(body, c)
	}
	var out []change
	if err := decodeChanges(body, func(c change) { out = append(out, c) }); err != nil {
		t.Fatal(err)
	}
	if len(out) != len(in) {
		t.Fatalf("%d changes, want %d", len(out), len(in))
	}
	for i := range in {
		if out[i].bucket != in[i].bucket || out[i].key != in[i].key || !bytes.Equal(out[i].value, in[i].value) || (out[i].value == nil) != (in[i].value == nil) {
			t.Errorf("change %d: %q/%q %q (nil %v), want %q/%q %q", i, out[i].bucket, out[i].key, out[i].value, out[i].value == nil, in[i].bucket, in[i].key, in[i].value)
		}
	}
	for _, n := range []int{1, 2, 5, len(body) - 1} {
		if err := decodeChanges(body[:n], func(change) {}); err == nil {
			t.Errorf("body cut at %d decoded", n)
		}
	}
	if err := decodeChanges([]byte{9, 1, 'b', 1, 'k'}, func(change) {}); err == nil {
		t.Error("unknown change type decoded")
	}
}

// TestCheckRefuses: what bbolt would refuse at a checkpoint is refused
// when it is written, and the store goes on.
func TestCheckRefuses(t *testing.T) {
	db, err := Open(filepath.Join(t.TempDir(), "x.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	tests := []struct {
		name        string
		bucket, key string
		value       []byte
	}{
		{"empty bucket", "", "k", []byte("1")},
		{"empty key", "b", "", []byte("1")},
		{"the store's own bucket", metaBucket, appliedKey, []byte("1")},
		{"key too long", "b", strings.Repeat("k", bolt.MaxKeySize+1), []byte("1")},
		{"bucket name too long", strings.Repeat("b", bolt.MaxKeySize+1), "k", []byte("1")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := putJSON(db, tt.bucket, tt.key, tt.value); err == nil {
				t.Error("PutJSON accepted it")
			}
			if err := db.PutJSONThen(tt.bucket, tt.key, tt.value, 0, func(error) { t.Error("then called") }); err == nil {
				t.Error("PutJSONThen accepted it")
			}
		})
	}
	if err := putJSON(db, "b", "k", []byte("1")); err != nil {
		t.Fatal(err)
	}
}

// TestReadsSeeWrites: a read sees every write that has returned, though
// they are still in the journal, and the store file has them afterwards.
func TestReadsSeeWrites(t *testing.T) {
	db, err := Open(filepath.Join(t.TempDir(), "x.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for i := range 10 {
		if err := db.Put("b", fmt.Sprint(i), rec{i}); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.PutAll(Entry{Bucket: "b", Key: "3", Delete: true}); err != nil {
		t.Fatal(err)
	}
	if err := db.submit(write{}); err != nil { // wait for the committer
		t.Fatal(err)
	}
	if db.journal.off == 0 {
		t.Fatal("nothing in the journal: the test tests nothing")
	}
	n := 0
	if err := Load(db, "b", func(k string, v rec) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if n != 9 {
		t.Errorf("read %d records, want 9", n)
	}
	if len(db.pending) != 0 {
		t.Errorf("a read left %d buckets pending", len(db.pending))
	}
}

// TestPutJSONThen: the callback comes once per write, after it is durable,
// and a write after Close fails without one.
func TestPutJSONThen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.db")
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	calls := map[string]int{}
	for i := range 300 {
		wg.Add(1)
		k := fmt.Sprint(i)
		if err := db.PutJSONThen("b", k, []byte(k), 0, func(err error) {
			if err != nil {
				t.Error(err)
			}
			mu.Lock()
			calls[k]++
			mu.Unlock()
			wg.Done()
		}); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	for k, n := range calls {
		if n != 1 {
			t.Errorf("%s: called %d times", k, n)
		}
	}
	if len(calls) != 300 {
		t.Errorf("%d callbacks, want 300", len(calls))
	}
	if err := db.PutJSONThen("b", "late", []byte("1"), 0, func(error) { t.Error("called after Close") }); err == nil {
		t.Error("PutJSONThen after Close succeeded")
	}
	db, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	n := 0
	Load(db, "b", func(string, int) error { n++; return nil })
	if n != 300 {
		t.Errorf("%d values after reopen, want 300", n)
	}
}

// TestCheckpoints: with a small journal, checkpoints run while writes go on
// and start the journal over; a copy of the files taken at any point (what
// a crash leaves) opens with every write that had returned, including when
// the journal's last record is torn.
func TestCheckpoints(t *testing.T) {
	for _, buffered := range []bool{false, true} {
		t.Run(fmt.Sprintf("buffered=%v", buffered), func(t *testing.T) { testCheckpoints(t, buffered) })
	}
}

func testCheckpoints(t *testing.T, buffered bool) {
	dir := t.TempDir()
	path := filepath.Join(dir, "x.db")
	db, err := open(path, options{checkpointAt: 4096, buffered: buffered})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if !buffered && db.journal.direct == nil {
		t.Logf("%s does not take O_DIRECT: both runs are buffered", dir)
	}
	resets := 0
	var off int64
	for i := range 400 {
		if err := db.Put("b", fmt.Sprintf("%04d", i), rec{i}); err != nil {
			t.Fatal(err)
		}
		// A Put returns before its group's checkpoint: wait for the
		// committer to be idle (an empty write is answered after it), then
		// the journal's fields are safe to read and the files are as a crash
		// now would leave them.
		if err := db.submit(write{}); err != nil {
			t.Fatal(err)
		}
		if db.journal.off < off {
			resets++
		}
		off = db.journal.off
		if i%97 == 0 || i == 399 {
			crash := filepath.Join(dir, fmt.Sprint("crash", i))
			copyFile(t, path, filepath.Join(crash, "x.db"))
			copyFile(t, journalPath(path), journalPath(filepath.Join(crash, "x.db")))
			if i == 399 {
				// and a torn record after the last one.
				f, err := os.OpenFile(journalPath(filepath.Join(crash, "x.db")), os.O_WRONLY, 0)
				if err != nil {
					t.Fatal(err)
				}
				torn := rec1(db.journal.seq+1, "torn")
				f.WriteAt(torn[:len(torn)-3], db.journal.off)
				f.Close()
			}
			checkStore(t, filepath.Join(crash, "x.db"), i+1)
		}
	}
	if resets < 3 {
		t.Errorf("the journal started over %d times for 400 writes of a 4 KiB journal", resets)
	}
}

func checkStore(t *testing.T, path string, want int) {
	t.Helper()
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	n := 0
	err = Load(db, "b", func(k string, v rec) error {
		if k != fmt.Sprintf("%04d", v.N) {
			t.Errorf("%s: %+v", k, v)
		}
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != want {
		t.Errorf("%s: %d records, want %d", path, n, want)
	}
	if err := db.Put("b", "after", rec{}); err != nil {
		t.Errorf("write after reopening: %v", err)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

const crashChildEnv = "BOOTSTRAPD_STORE_CRASH_CHILD"

// TestCrashKeepsAcknowledgedWrites kills a process that writes to a store
// as fast as it can (with a small journal, so that checkpoints run all the
// time too) with SIGKILL at a random moment, several times over the same
// files. After each kill the store opens, every write the child was told
// had succeeded is there, and every PutAll is there whole or not at all.
func TestCrashKeepsAcknowledgedWrites(t *testing.T) {
	if path := os.Getenv(crashChildEnv); path != "" {
		crashChild(t, path)
		return
	}
	if testing.Short() {
		t.Skip("kills child processes")
	}
	for _, buffered := range []bool{false, true} {
		t.Run(fmt.Sprintf("buffered=%v", buffered), func(t *testing.T) { testCrash(t, buffered) })
	}
}

func testCrash(t *testing.T, buffered bool) {
	path := filepath.Join(t.TempDir(), "x.db")
	acked := map[string]bool{}
	const rounds = 6
	for round := range rounds {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashKeepsAcknowledgedWrites$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+path, fmt.Sprintf("BOOTSTRAPD_STORE_CRASH_ROUND=%d", round),
			fmt.Sprintf("BOOTSTRAPD_STORE_CRASH_BUFFERED=%v", buffered))
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := bufio.NewScanner(out)
		kill := 50 + rand.IntN(3000)
		n := 0
		// Lines the child wrote before it died were acknowledged too: read
		// to the end of the pipe.
		for lines.Scan() {
			acked[lines.Text()] = true
			if n++; n == kill {
				cmd.Process.Signal(syscall.SIGKILL)
			}
		}
		cmd.Wait()
		if n < kill {
			t.Fatalf("round %d: the child ended after %d writes, before it was killed", round, n)
		}

		if round%2 == 0 && round < rounds-1 {
			// The next child opens what this one left: a crash after a
			// crash, with no clean open and close in between.
			continue
		}
		db, err := Open(path)
		if err != nil {
			t.Fatalf("round %d: reopen after SIGKILL: %v", round, err)
		}
		a, b, c := map[string]bool{}, map[string]bool{}, map[string]bool{}
		if err := Load(db, "a", func(k string, _ rec) error { a[k] = true; return nil }); err != nil {
			t.Fatal(err)
		}
		if err := Load(db, "b", func(k string, _ rec) error { b[k] = true; return nil }); err != nil {
			t.Fatal(err)
		}
		if err := Load(db, "c", func(k string, _ int) error { c["c:"+k] = true; return nil }); err != nil {
			t.Fatal(err)
		}
		missing, nows := 0, 0
		for k := range acked {
			if strings.HasPrefix(k, "c:") {
				nows++
				if !c[k] {
					if missing++; missing <= 5 {
						t.Logf("missing: %s", k)
					}
				}
				continue
			}
			if !a[k] || !b[k] {
				if missing++; missing <= 5 {
					t.Logf("missing: %s (in a: %v, in b: %v)", k, a[k], b[k])
				}
			}
		}
		half := 0
		for k := range a {
			if !b[k] {
				half++
			}
		}
		for k := range b {
			if !a[k] {
				half++
			}
		}
		t.Logf("round %d: killed after %d acknowledged writes; %d acknowledged in all (%d by PutJSONNow), %d in the store", round, n, len(acked), nows, len(a)+len(c))
		if missing > 0 {
			t.Errorf("round %d: %d acknowledged writes missing after SIGKILL", round, missing)
		}
		if half > 0 {
			t.Errorf("round %d: %d PutAlls half applied", round, half)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// crashChild writes pairs of keys from 8 goroutines until it is killed,
// printing each key once its PutAll has returned.
func crashChild(t *testing.T, path string) {
	db, err := open(path, options{checkpointAt: 16 << 10, buffered: os.Getenv("BOOTSTRAPD_STORE_CRASH_BUFFERED") == "true"})
	if err != nil {
		t.Fatal(err)
	}
	round := os.Getenv("BOOTSTRAPD_STORE_CRASH_ROUND")
	var mu sync.Mutex
	var wg sync.WaitGroup
	// And one writing alone with PutJSONNow: raw writes on its own
	// goroutine whenever the store is idle.
	wg.Go(func() {
		for i := 0; ; i++ {
			k := fmt.Sprintf("r%s-now-%06d", round, i)
			errs := make(chan error, 1)
			if err := db.PutJSONNow("c", k, []byte(fmt.Sprint(i)), 0, func(err error) { errs <- err }); err != nil {
				t.Error(err)
				return
			}
			if err := <-errs; err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			os.Stdout.WriteString("c:" + k + "\n")
			mu.Unlock()
		}
	})
	for g := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				k := fmt.Sprintf("r%s-g%d-%06d", round, g, i)
				if err := db.PutAll(Entry{Bucket: "a", Key: k, Value: rec{i}}, Entry{Bucket: "b", Key: k, Value: rec{i}}); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				os.Stdout.WriteString(k + "\n")
				mu.Unlock()
				if i%50 == 0 {
					// Reads force checkpoints in between.
					Load(db, "a", func(string, rec) error { return nil })
				}
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Error("not killed within a minute")
	}
}

// TestRecordSizes: records that end inside a block, exactly at its end, or
// span several, one after the other, all come back after a crash, through
// O_DIRECT and through the page cache.
func TestRecordSizes(t *testing.T) {
	sizes := []int{1, 100, directBlock - recordHeader - 13, directBlock, 3 * directBlock, 7, directBlock - 1, 20000, 2}
	for _, mode := range []struct {
		name     string
		buffered bool
		slow     int  // writes made through the scheduler, as after a slow one
		now      bool // PutJSONNow on an idle store: a raw write
	}{
		{"O_DIRECT, raw writes", false, 0, true},
		{"O_DIRECT, through the scheduler", false, 0, false},
		{"O_DIRECT, raw asked after a slow write", false, 3, true},
		{"page cache and fdatasync", true, 0, false},
	} {
		t.Run(mode.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "x.db")
			db, err := open(path, options{checkpointAt: 1 << 30, buffered: mode.buffered})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			db.journal.slow = mode.slow
			want := map[string][]byte{}
			for i, n := range sizes {
				k := fmt.Sprint(i)
				v := bytes.Repeat([]byte{byte('a' + i)}, n)
				want[k] = v
				put := func(b, k string, v []byte) error { return putJSON(db, b, k, v) }
				if mode.now {
					put = func(b, k string, v []byte) error {
						errs := make(chan error, 1)
						if err := db.PutJSONNow(b, k, v, 0, func(err error) { errs <- err }); err != nil {
							return err
						}
						return <-errs
					}
				}
				if err := put("b", k, v); err != nil {
					t.Fatal(err)
				}
			}
			if err := db.submit(write{}); err != nil {
				t.Fatal(err)
			}
			if db.journal.off == 0 {
				t.Fatal("nothing in the journal")
			}
			crash := filepath.Join(dir, "crash", "x.db")
			copyFile(t, path, crash)
			copyFile(t, journalPath(path), journalPath(crash))
			cdb, err := Open(crash)
			if err != nil {
				t.Fatal(err)
			}
			defer cdb.Close()
			got := map[string][]byte{}
			err = cdb.bolt.View(func(tx *bolt.Tx) error {
				return tx.Bucket([]byte("b")).ForEach(func(k, v []byte) error {
					got[string(k)] = bytes.Clone(v)
					return nil
				})
			})
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range want {
				if !bytes.Equal(got[k], v) {
					t.Errorf("record %s: %d bytes back, want %d", k, len(got[k]), len(v))
				}
			}
		})
	}
}

// TestPutJSONNow: an idle store commits on the caller's goroutine, before
// PutJSONNow returns; a store with a commit in progress, writes queued or a
// slow disk hands the write to the committer, after the writes before it.
func TestPutJSONNow(t *testing.T) {
	db, err := Open(filepath.Join(t.TempDir(), "x.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var mu sync.Mutex
	var order []string
	then := func(k string) func(error) {
		return func(err error) {
			if err != nil {
				t.Errorf("%s: %v", k, err)
			}
			mu.Lock()
			order = append(order, k)
			mu.Unlock()
		}
	}
	done := func() []string { mu.Lock(); defer mu.Unlock(); return slices.Clone(order) }

	if err := db.PutJSONNow("b", "idle", []byte("1"), 0, then("idle")); err != nil {
		t.Fatal(err)
	}
	if got := done(); !slices.Equal(got, []string{"idle"}) {
		t.Fatalf("idle store: %v when PutJSONNow returned, want it committed", got)
	}

	// A commit in progress (the committer holds commitMu), with a write
	// queued before ours.
	db.commitMu.Lock()
	if err := db.PutJSONThen("b", "first", []byte("1"), 0, then("first")); err != nil {
		t.Fatal(err)
	}
	if err := db.PutJSONNow("b", "second", []byte("2"), 0, then("second")); err != nil {
		t.Fatal(err)
	}
	if got := done(); len(got) != 1 {
		t.Errorf("busy store: %v committed while the commit lock was held", got)
	}
	db.commitMu.Unlock()
	for deadline := time.Now().Add(5 * time.Second); len(done()) < 3 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if got := done(); !slices.Equal(got, []string{"idle", "first", "second"}) {
		t.Errorf("order %v, want idle, first, second", got)
	}

	// A slow disk: through the committer, not on the caller's goroutine.
	if err := db.submit(write{}); err != nil {
		t.Fatal(err)
	}
	db.commitMu.Lock()
	db.journal.slow = 1
	db.commitMu.Unlock()
	ch := make(chan error, 1)
	if err := db.PutJSONNow("b", "slow", []byte("3"), 0, func(err error) { ch <- err }); err != nil {
		t.Fatal(err)
	}
	if err := <-ch; err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.PutJSONNow("b", "late", []byte("4"), 0, func(error) { t.Error("called after Close") }); err == nil {
		t.Error("PutJSONNow after Close succeeded")
	}
}

// putJSON is PutJSONThen, waited for.
func putJSON(db *DB, bucket, key string, data []byte) error {
	done := make(chan error, 1)
	if err := db.PutJSONThen(bucket, key, data, 0, func(err error) { done <- err }); err != nil {
		return err
	}
	return <-done
}
