package inventory

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bootstrapd/bootstrapd/internal/etcdtest"
	"github.com/bootstrapd/bootstrapd/internal/store"
)

// openShared opens n inventories on one etcd prefix, as n instances would.
func openShared(t *testing.T, c *etcdtest.Cluster, pool Pool, n int) []*Inventory {
	t.Helper()
	var out []*Inventory
	for i := range n {
		db, err := store.OpenEtcd(t.Context(), store.EtcdConfig{Endpoints: c.Endpoints(), Prefix: "/inv/"}, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		inv, err := Open(db, pool, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			t.Fatal(err)
		}
		inv.SpreadFrom(fmt.Sprint("instance-", i))
		out = append(out, inv)
	}
	return out
}

// eventually waits for ok, failing with what after 10 s.
func eventually(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !ok(); {
		if time.Now().After(deadline) {
			t.Fatalf("not within 10s: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSharedInventory: two instances on one etcd prefix. A node enrolled
// on one is on the other, with its event under the same number; leases
// taken on both at once never give one address to two MACs, and every
// lease acknowledged is stored; an enrollment and a lease racing for one
// address cannot both win.
func TestSharedInventory(t *testing.T) {
	c := etcdtest.Start(t, 1)
	invs := openShared(t, c, poolOf("10.0.0.100", "10.0.0.139"), 2)
	a, b := invs[0], invs[1]

	n, err := a.Enroll(ctx, EnrollRequest{MAC: "52:54:00:00:00:01", Hostname: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "b holds a's enrollment", func() bool { m, ok := b.Node(n.MAC); return ok && m.State == Enrolled && m.IP == n.IP })
	eventually(t, "b shows a's event", func() bool { return b.LastSeq() == a.LastSeq() && a.LastSeq() > 0 })
	ea, _, _ := a.Events(0)
	eb, _, _ := b.Events(0)
	if fmt.Sprint(ea) != fmt.Sprint(eb) {
		t.Fatalf("events differ:\na %v\nb %v", ea, eb)
	}
	// b changes it; a's next change must be made from b's version.
	if _, err := b.Move(ctx, n.MAC, Failed, "test", "b"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a holds b's change", func() bool { m, _ := a.Node(n.MAC); return m.State == Failed })
	if _, err := a.Move(ctx, n.MAC, Enrolled, "reinstall", "a"); err != nil {
		t.Fatalf("a changing the node after b: %v", err)
	}

	// Leases from both at once: 16 clients each, one DISCOVER and REQUEST
	// per client, a pool of 40 less n1's reservation.
	type acked struct {
		mac string
		ip  netip.Addr
	}
	var mu sync.Mutex
	var acks []acked
	var conflicts atomic.Int32
	var wg sync.WaitGroup
	for i, inv := range invs {
		for j := range 16 {
			mac := fmt.Sprintf("52:54:00:0%d:00:%02x", i+1, j)
			wg.Go(func() {
				for try := 0; try < 5; try++ {
					ip, err := inv.Offer(mac, netip.Addr{}, true)
					if err != nil {
						t.Errorf("offer %s: %v", mac, err)
						return
					}
					l, err := inv.Commit(ctx, mac, ip, true)
					if errors.Is(err, store.ErrConflict) {
						conflicts.Add(1)
						// As a client would after silence, a while later:
						// by then this instance knows who took the address.
						time.Sleep(time.Duration(try+1) * 20 * time.Millisecond)
						continue
					}
					if err != nil {
						t.Errorf("commit %s %s: %v", mac, ip, err)
						return
					}
					mu.Lock()
					acks = append(acks, acked{mac, l.IP})
					mu.Unlock()
					return
				}
				t.Errorf("%s got no lease in 5 tries", mac)
			})
		}
	}
	wg.Wait()
	stored := map[netip.Addr]string{}
	err = store.Load(a.db, leasesBucket, func(_ string, l Lease) error {
		if !l.claim() {
			stored[l.IP] = l.MAC
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	holder := map[netip.Addr]string{}
	for _, k := range acks {
		if m, ok := holder[k.ip]; ok {
			t.Errorf("%s acknowledged to both %s and %s", k.ip, m, k.mac)
		}
		holder[k.ip] = k.mac
		if stored[k.ip] != k.mac {
			t.Errorf("acknowledged lease %s for %s is stored as %q", k.ip, k.mac, stored[k.ip])
		}
		if k.ip == n.IP {
			t.Errorf("n1's reserved %s was leased to %s", k.ip, k.mac)
		}
	}
	if len(acks) != 32 {
		t.Errorf("%d of 32 clients got a lease", len(acks))
	}
	t.Logf("32 clients on two instances at once: %d lost a race for an address and asked again", conflicts.Load())

	// An enrollment on a of an address b leases at the same moment: one wins.
	ip := netip.MustParseAddr("10.0.0.139")
	var enrollErr, leaseErr error
	var wg2 sync.WaitGroup
	wg2.Go(func() {
		_, enrollErr = a.Enroll(ctx, EnrollRequest{MAC: "52:54:00:00:00:02", IP: ip})
	})
	wg2.Go(func() {
		if _, err := b.Offer("52:54:00:09:00:01", ip, true); err != nil {
			leaseErr = err
			return
		}
		_, leaseErr = b.Commit(ctx, "52:54:00:09:00:01", ip, true)
	})
	wg2.Wait()
	if enrollErr == nil && leaseErr == nil {
		t.Fatalf("%s was both reserved for an enrollment and leased to another MAC", ip)
	}
	t.Logf("race for %s: enroll %v; lease %v", ip, enrollErr, leaseErr)
}
