package inventory

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/bootstrapd/bootstrapd/internal/store"
)

var (
	ctx = context.Background()
	// anywhere is the zero address: a token handed to it is not bound to
	// an address (the tests of binding use real ones).
	anywhere  netip.Addr
	testStart = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	testPool  = Pool{
		Subnet: netip.MustParsePrefix("10.0.0.0/24"),
		Range:  [2]netip.Addr{netip.MustParseAddr("10.0.0.100"), netip.MustParseAddr("10.0.0.109")},
		Lease:  time.Hour,
	}
)

// fakeClock is what tests put in inv.now to move time without sleeping.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type testInv struct {
	*Inventory
	db    *store.DB
	path  string
	clock *fakeClock
}

// newTestInv opens a real inventory on a fresh store file with a fake clock.
func newTestInv(t *testing.T, pool Pool) *testInv {
	t.Helper()
	path := filepath.Join(t.TempDir(), "state", "bootstrapd.db")
	return openTestInv(t, path, pool, &fakeClock{t: testStart})
}

func openTestInv(t *testing.T, path string, pool Pool, clk *fakeClock) *testInv {
	t.Helper()
	db, err := store.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	inv, err := Open(db, pool, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	inv.now = clk.Now
	return &testInv{Inventory: inv, db: db, path: path, clock: clk}
}

// reopen closes the store and opens the same file again, as a restart would.
func (ti *testInv) reopen(t *testing.T, pool Pool) *testInv {
	t.Helper()
	if err := ti.db.Close(); err != nil {
		t.Fatal(err)
	}
	return openTestInv(t, ti.path, pool, ti.clock)
}

func (ti *testInv) enroll(t *testing.T, req EnrollRequest) Node {
	t.Helper()
	n, err := ti.Enroll(ctx, req)
	if err != nil {
		t.Fatalf("enroll %+v: %v", req, err)
	}
	return n
}

func (ti *testInv) move(t *testing.T, mac string, to State) Node {
	t.Helper()
	n, err := ti.Move(ctx, mac, to, "test setup", "test")
	if err != nil {
		t.Fatalf("move %s to %s: %v", mac, to, err)
	}
	return n
}

func (ti *testInv) mustNode(t *testing.T, mac string) Node {
	t.Helper()
	n, ok := ti.Node(mac)
	if !ok {
		t.Fatalf("node %s not found", mac)
	}
	return n
}

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

// poolOf is a pool over lo-hi; a tiny one makes "who gets which address" exact.
func poolOf(lo, hi string) Pool {
	return Pool{Subnet: testPool.Subnet, Range: [2]netip.Addr{addr(lo), addr(hi)}, Lease: time.Hour}
}

// LeaseFor is mac's current lease, read straight from the lease table.
func (ti *testInv) LeaseFor(mac string) (Lease, bool) {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	l := ti.leases.byMAC[mac]
	if l == nil {
		return Lease{}, false
	}
	return *l, true
}
