package store

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"log/slog"

	"github.com/bootstrapd/bootstrapd/internal/etcdtest"
)

// ev is a numbered value.
type ev struct {
	Seq  uint64 `json:"seq"`
	From string `json:"from"`
}

func (e ev) WithSeq(n uint64) any { e.Seq = n; return e }

// follower collects what a store tells its follower.
type follower struct {
	mu  sync.Mutex
	got []Change
	ch  chan struct{}
}

func newFollower() *follower { return &follower{ch: make(chan struct{}, 1)} }

func (f *follower) fn(cs []Change) {
	f.mu.Lock()
	f.got = append(f.got, cs...)
	f.mu.Unlock()
	select {
	case f.ch <- struct{}{}:
	default:
	}
}

// wait waits until ok holds for what was told.
func (f *follower) wait(t *testing.T, what string, ok func([]Change) bool) []Change {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		f.mu.Lock()
		got := append([]Change(nil), f.got...)
		f.mu.Unlock()
		if ok(got) {
			return got
		}
		select {
		case <-f.ch:
		case <-deadline:
			t.Fatalf("%s: not told within 10s; told %v", what, got)
		}
	}
}

func openEtcd(t *testing.T, c *etcdtest.Cluster, prefix string) *Etcd {
	t.Helper()
	e, err := OpenEtcd(t.Context(), EtcdConfig{Endpoints: c.Endpoints(), Prefix: prefix}, slog.New(slog.NewTextHandler(t.Output(), nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// put is PutAllThen, waited for.
func put(s interface {
	PutAllThen(func(error), ...Entry) error
}, entries ...Entry) error {
	done := make(chan error, 1)
	if err := s.PutAllThen(func(err error) { done <- err }, entries...); err != nil {
		return err
	}
	return <-done
}

// TestEtcdConflict: two instances decide from the same version of a
// record; the second write fails with ErrConflict, and its follower is
// told of the record as the first wrote it. A write that builds on the
// failed one (Own) is refused, not committed on top of it.
func TestEtcdConflict(t *testing.T) {
	c := etcdtest.Start(t, 1)
	a, b := openEtcd(t, c, "/t/"), openEtcd(t, c, "/t/")
	fa, fb := newFollower(), newFollower()
	a.Follow(fa.fn)
	b.Follow(fb.fn)

	if err := put(a, Entry{Bucket: "leases", Key: "10.0.0.5", Value: "mac-a", Rev: 0}); err != nil {
		t.Fatal(err)
	}
	err := put(b, Entry{Bucket: "leases", Key: "10.0.0.5", Value: "mac-b", Rev: 0})
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("second claim of one address: %v, want ErrConflict", err)
	}
	got := fb.wait(t, "b told of a's lease", func(cs []Change) bool {
		for _, c := range cs {
			if c.Key == "10.0.0.5" && string(c.Value) == `"mac-a"` && c.Rev > 0 {
				return true
			}
		}
		return false
	})
	var rev int64
	for _, c := range got {
		if c.Key == "10.0.0.5" {
			rev = c.Rev
		}
	}
	// a is not told of its own write.
	time.Sleep(200 * time.Millisecond)
	fa.mu.Lock()
	if len(fa.got) != 0 {
		t.Errorf("a was told of its own write: %v", fa.got)
	}
	fa.mu.Unlock()

	// b, now knowing the version, may replace it.
	if err := put(b, Entry{Bucket: "leases", Key: "10.0.0.5", Value: "mac-b", Rev: rev}); err != nil {
		t.Fatalf("write from the current version: %v", err)
	}
	// a's Own is now stale.
	if err := put(a, Entry{Bucket: "leases", Key: "10.0.0.5", Value: "mac-a2", Rev: Own}); !errors.Is(err, ErrConflict) {
		t.Fatalf("a writing over b's change as its own: %v, want ErrConflict", err)
	}
	// And a write building on that failure is refused without a round trip.
	if err := put(a, Entry{Bucket: "leases", Key: "10.0.0.5", Value: "mac-a3", Rev: Own}); !errors.Is(err, ErrConflict) {
		t.Fatalf("a write on top of a failed one: %v, want ErrConflict", err)
	}
	var vals []string
	if err := b.Range("leases", "", func(k string, v []byte, _ int64) error { vals = append(vals, k+"="+string(v)); return nil }); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(vals) != `[10.0.0.5="mac-b"]` {
		t.Errorf("stored %v, want b's lease only", vals)
	}
}

// TestEtcdNumbered: entries numbered by two instances at once are numbered
// without gaps or repeats, and both followers are told of all of them in
// number order.
func TestEtcdNumbered(t *testing.T) {
	c := etcdtest.Start(t, 1)
	stores := []*Etcd{openEtcd(t, c, "/n/"), openEtcd(t, c, "/n/")}
	fs := []*follower{newFollower(), newFollower()}
	for i, s := range stores {
		s.Follow(fs[i].fn)
	}
	const each = 40
	var wg sync.WaitGroup
	for i, s := range stores {
		for j := range each {
			wg.Go(func() {
				if err := put(s, Entry{Bucket: "events", Numbered: true, Value: ev{From: fmt.Sprint(i, "/", j)}}); err != nil {
					t.Error(err)
				}
			})
		}
	}
	wg.Wait()
	for i, f := range fs {
		got := f.wait(t, fmt.Sprint("follower ", i), func(cs []Change) bool { return len(cs) >= 2*each })
		if len(got) != 2*each {
			t.Errorf("follower %d told of %d entries, want %d", i, len(got), 2*each)
		}
		for n, c := range got {
			if c.Seq != uint64(n+1) || c.Key != SeqKey(c.Seq) {
				t.Fatalf("follower %d: entry %d has number %d", i, n, c.Seq)
			}
		}
	}
}

// TestEtcdUnavailable: with its cluster gone a write fails with
// ErrUnavailable within the timeout, Healthy says so, and both recover.
func TestEtcdUnavailable(t *testing.T) {
	c := etcdtest.Start(t, 1)
	e, err := OpenEtcd(t.Context(), EtcdConfig{Endpoints: c.Endpoints(), Prefix: "/u/", Timeout: time.Second}, slog.New(slog.NewTextHandler(t.Output(), nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	e.Follow(func([]Change) {})
	if err := put(e, Entry{Bucket: "b", Key: "k", Value: 1}); err != nil {
		t.Fatal(err)
	}
	c.Members[0].Kill()
	if err := put(e, Entry{Bucket: "b", Key: "k", Value: 2, Rev: Own}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("write with etcd down: %v, want ErrUnavailable", err)
	}
	// One failure may be a member that has just gone: the next request
	// (the probe's, within a second) says whether etcd is down.
	for deadline := time.Now().Add(10 * time.Second); e.Healthy() == nil; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("Healthy is still nil 10s after etcd went down")
		}
	}
	c.Members[0].Start(t)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := c.WaitHealthy(ctx); err != nil {
		t.Fatal(err)
	}
	for e.Healthy() != nil {
		if ctx.Err() != nil {
			t.Fatal("Healthy still failing after etcd returned")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := put(e, Entry{Bucket: "b", Key: "k2", Value: 3}); err != nil {
		t.Fatalf("write after etcd returned: %v", err)
	}
}

// TestCopy: a bbolt store copied into etcd and back holds the same records,
// numbered entries under their numbers with numbering going on after
// them; a non-empty target is refused without force, and replaced with
// it; a target that instances serve from is refused.
func TestCopy(t *testing.T) {
	c := etcdtest.Start(t, 1)
	dir := t.TempDir()
	src, err := Open(filepath.Join(dir, "src.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	buckets := []Bucket{{Name: "nodes"}, {Name: "leases"}, {Name: "events", Numbered: true}}
	for i := range 70 { // more than one copy batch
		if err := src.PutAll(Entry{Bucket: "nodes", Key: fmt.Sprintf("52:54:00:00:00:%02x", i), Value: i},
			Entry{Bucket: "leases", Key: fmt.Sprintf("10.0.0.%d", i), Value: i},
			Entry{Bucket: "events", Numbered: true, Value: ev{From: fmt.Sprint(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	e := openEtcd(t, c, "/copy/")
	n, err := Copy(t.Context(), src, e, buckets, false)
	if err != nil {
		t.Fatal(err)
	}
	if n["nodes"] != 70 || n["leases"] != 70 || n["events"] != 70 {
		t.Fatalf("copied %v, want 70 of each", n)
	}
	if _, err := Copy(t.Context(), src, e, buckets, false); err == nil || !strings.Contains(err.Error(), "-force") {
		t.Fatalf("copy into a non-empty target: %v, want a refusal naming -force", err)
	}
	f := newFollower()
	e.Follow(f.fn)
	if err := put(e, Entry{Bucket: "events", Numbered: true, Value: ev{From: "after"}}); err != nil {
		t.Fatal(err)
	}
	got := f.wait(t, "the next event", func(cs []Change) bool { return len(cs) > 0 && strings.Contains(string(cs[len(cs)-1].Value), "after") })
	if last := got[len(got)-1]; last.Seq != 71 {
		t.Errorf("the first event after the copy is #%d, want #71", last.Seq)
	}

	back, err := Open(filepath.Join(dir, "back.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer back.Close()
	if n, err := Copy(t.Context(), e, back, buckets, false); err != nil || n["events"] != 71 {
		t.Fatalf("copy back: %v %v", n, err)
	}
	var vals []string
	Load(back, "nodes", func(k string, v int) error { vals = append(vals, fmt.Sprint(k, "=", v)); return nil })
	if len(vals) != 70 || vals[69] != "52:54:00:00:00:45=69" {
		t.Fatalf("nodes back: %d, last %v", len(vals), vals[len(vals)-1:])
	}
	if n, err := Copy(t.Context(), src, back, buckets, true); err != nil || n["events"] != 70 {
		t.Fatalf("forced copy: %v %v", n, err)
	}
	if k, _ := count(back, "events"); k != 70 {
		t.Fatalf("after a forced copy the target holds %d events, want the source's 70", k)
	}

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	joined := make(chan struct{})
	go e.Members(ctx, "seg", "a", func([]string) { close(joined) })
	<-joined
	if _, err := Copy(t.Context(), src, e, buckets, true); err == nil || !strings.Contains(err.Error(), "running instances") {
		t.Fatalf("copy into a store in use: %v", err)
	}
}

// TestEtcdTLS: with the store block's ca_file, cert_file and key_file the
// store works against a cluster that asks for client certificates; without
// a client certificate it is refused at Open with etcd's reason.
func TestEtcdTLS(t *testing.T) {
	c := etcdtest.StartTLS(t, 1)
	log := slog.New(slog.NewTextHandler(t.Output(), nil))
	e, err := OpenEtcd(t.Context(), EtcdConfig{Endpoints: c.Endpoints(), CAFile: c.CertFile, CertFile: c.CertFile, KeyFile: c.KeyFile}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if err := put(e, Entry{Bucket: "b", Key: "k", Value: 1}); err != nil {
		t.Fatalf("write over TLS: %v", err)
	}
	n, err := count(e, "b")
	if err != nil || n != 1 {
		t.Fatalf("read over TLS: %d records, %v", n, err)
	}
	_, err = OpenEtcd(t.Context(), EtcdConfig{Endpoints: c.Endpoints(), CAFile: c.CertFile, Timeout: 2 * time.Second}, log)
	// etcd 3.4 says "bad certificate"; newer TLS stacks "certificate required".
	if err == nil || !strings.Contains(err.Error(), "tls:") || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("a client without a certificate: %v, want etcd's reason", err)
	}
	other := etcdtest.StartTLS(t, 1) // a CA that did not sign c's certificate
	_, err = OpenEtcd(t.Context(), EtcdConfig{Endpoints: c.Endpoints(), CAFile: other.CertFile, CertFile: c.CertFile, KeyFile: c.KeyFile, Timeout: 2 * time.Second}, log)
	if err == nil || !strings.Contains(err.Error(), "unknown authority") {
		t.Fatalf("a cluster whose certificate the CA file did not sign: %v, want the reason", err)
	}
}
