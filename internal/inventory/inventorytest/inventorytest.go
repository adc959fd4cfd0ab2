// Package inventorytest gives tests of other packages a real inventory on a
// temporary store, so they test against the core rather than a fake.
package inventorytest

import (
	"log/slog"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/bootstrapd/bootstrapd/internal/inventory"
	"github.com/bootstrapd/bootstrapd/internal/store"
)

// Pool is 10.77.0.0/24 with 10.77.0.100-110 to hand out, leases of an hour.
var Pool = inventory.Pool{
	Subnet: netip.MustParsePrefix("10.77.0.0/24"),
	Range:  [2]netip.Addr{netip.MustParseAddr("10.77.0.100"), netip.MustParseAddr("10.77.0.110")},
	Lease:  time.Hour,
}

// New opens an inventory over Pool on a store in t's temp dir, closed when
// the test ends.
func New(t testing.TB, log *slog.Logger) *inventory.Inventory {
	t.Helper()
	db, err := store.Open(filepath.Join(t.TempDir(), "bootstrapd.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	inv, err := inventory.Open(db, Pool, log)
	if err != nil {
		t.Fatal(err)
	}
	return inv
}
