package inventory

import (
	"net/netip"
	"testing"

	"github.com/bootstrapd/bootstrapd/internal/store"
)

// FuzzFollow: whatever another instance (or a damaged store) writes, taking
// it in panics nowhere, and the inventory still answers DHCP and lists its
// nodes afterwards.
func FuzzFollow(f *testing.F) {
	f.Add(uint8(0), "52:54:00:00:00:01", []byte(`{"mac":"52:54:00:00:00:01","state":"enrolled","ip":"10.0.0.100","token_hash":"AAAA"}`), int64(5), uint64(0))
	f.Add(uint8(1), "10.0.0.101", []byte(`{"mac":"52:54:00:00:00:02","ip":"10.0.0.101","expires":"2031-01-01T00:00:00Z"}`), int64(6), uint64(0))
	f.Add(uint8(1), "10.0.0.101", []byte(`{"mac":"x","ip":"10.0.0.9"}`), int64(6), uint64(0))
	f.Add(uint8(2), store.SeqKey(7), []byte(`{"seq":7,"mac":"52:54:00:00:00:01","cause":"x"}`), int64(7), uint64(7))
	f.Add(uint8(0), "52:54:00:00:00:01", []byte(nil), int64(8), uint64(0))
	f.Add(uint8(3), "k", []byte("{"), int64(9), uint64(0))
	f.Fuzz(func(t *testing.T, which uint8, key string, value []byte, rev int64, seq uint64) {
		ti := newTestInv(t, testPool)
		ti.enroll(t, EnrollRequest{MAC: "52:54:00:00:00:01", Hostname: "n1"})
		bucket := []string{nodesBucket, leasesBucket, eventsBucket, "other"}[which%4]
		ti.follow([]store.Change{{Bucket: bucket, Key: key, Value: value, Rev: rev, Seq: seq}})
		ti.Nodes()
		ti.Leases()
		if _, err := ti.Offer("52:54:00:00:00:99", netip.Addr{}, true); err != nil && ti.leasesFree() > 1 {
			t.Fatalf("no offer after taking in %s/%q: %v", bucket, key, err)
		}
		ti.Events(0)
	})
}

// leasesFree counts the pool's addresses neither leased, reserved nor
// offered.
func (ti *testInv) leasesFree() int {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	n := 0
	for v := ti.leases.lo; v <= ti.leases.hi; v++ {
		if ti.leases.usable(from32(v), "52:54:00:00:00:99", ti.now()) {
			if _, r := ti.leases.reserved[from32(v)]; !r {
				n++
			}
		}
	}
	return n
}
