package inventory

import (
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/bootstrapd/bootstrapd/internal/store"
)

// seqs is the numbers of evs.
func seqs(evs []LogEvent) []uint64 {
	var out []uint64
	for _, e := range evs {
		out = append(out, e.Seq)
	}
	return out
}

// Events from writes made at once are numbered by the store when it
// commits them: a follower is shown every one, once, in number order and
// without gaps, and is woken for them.
func TestEventsShownInOrder(t *testing.T) {
	ti := newTestInv(t, testPool)
	base := ti.LastSeq()
	_, wait, _ := ti.Events(base)
	const nodes = 8 // testPool has 10 addresses
	var wg sync.WaitGroup
	for i := range nodes {
		wg.Go(func() {
			if _, err := ti.Enroll(ctx, EnrollRequest{MAC: fmt.Sprintf("52:54:00:00:01:%02x", i)}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	select {
	case <-wait:
	default:
		t.Fatal("followers not woken")
	}
	evs, _, err := ti.Events(base)
	if err != nil {
		t.Fatal(err)
	}
	var want []uint64
	for i := range nodes {
		want = append(want, base+uint64(i)+1)
	}
	if got := seqs(evs); !slices.Equal(got, want) {
		t.Fatalf("shown %v, want %v", got, want)
	}
	if got := ti.LastSeq(); got != base+nodes {
		t.Fatalf("LastSeq %d, want %d", got, base+nodes)
	}
}

// A node write is made outside the inventory's lock: while the disk is
// slow, DHCP and readers are answered, writes of other nodes join the
// queue (and share a commit), and nobody is told of a change, nor shown
// its event, before it is durable.
func TestNodeWritesWaitOutsideLock(t *testing.T) {
	ti := newTestInv(t, testPool)
	a := ti.enroll(t, EnrollRequest{MAC: "52:54:00:00:00:01"})
	b := ti.enroll(t, EnrollRequest{MAC: "52:54:00:00:00:02"})
	base := ti.LastSeq()

	// Stall the store's writer: everything sent after this waits.
	release, stalled := make(chan struct{}), make(chan struct{})
	err := ti.db.PutAllThen(func(error) { close(stalled); <-release }, store.Entry{Bucket: "test", Key: "stall", Value: 1})
	if err != nil {
		t.Fatal(err)
	}
	<-stalled

	type result struct {
		n     Node
		token string
		err   error
	}
	started := make(chan result, 2)
	for _, mac := range []string{a.MAC, b.MAC} {
		go func() {
			n, token, err := ti.StartInstall(ctx, mac, anywhere, time.Hour)
			started <- result{n, token, err}
		}()
	}
	// Both writes are sent (the nodes are installing in memory) while
	// neither has returned.
	deadline := time.Now().Add(10 * time.Second)
	for ti.mustNode(t, a.MAC).State != Installing || ti.mustNode(t, b.MAC).State != Installing {
		if time.Now().After(deadline) {
			t.Fatal("the installs did not reach the store's queue: is the lock held across the write?")
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case r := <-started:
		t.Fatalf("StartInstall returned (%v) before its write was durable", r.err)
	default:
	}
	// DHCP is answered meanwhile.
	if _, err := ti.Offer("52:54:00:00:00:99", netip.Addr{}, true); err != nil {
		t.Fatalf("offer while node writes wait: %v", err)
	}
	evs, _, err := ti.Events(base)
	if err != nil || len(evs) != 0 {
		t.Fatalf("events shown before they are durable: %v, %v", seqs(evs), err)
	}

	close(release)
	for range 2 {
		r := <-started
		if r.err != nil || r.token == "" || r.n.State != Installing {
			t.Fatalf("StartInstall: %+v", r)
		}
	}
	evs, _, err = ti.Events(base)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := seqs(evs), []uint64{base + 1, base + 2}; !slices.Equal(got, want) {
		t.Fatalf("events %v, want %v", got, want)
	}
	ti = ti.reopen(t, testPool)
	for _, mac := range []string{a.MAC, b.MAC} {
		if n := ti.mustNode(t, mac); n.State != Installing || len(n.TokenHash) == 0 {
			t.Fatalf("after a restart %s is %s (token hash %d bytes); the write was acknowledged", mac, n.State, len(n.TokenHash))
		}
	}
}
