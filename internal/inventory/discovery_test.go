package inventory

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/bootstrapd/bootstrapd/internal/store"
)

func spoofedMAC(i int) string {
	return fmt.Sprintf("02:00:%02x:%02x:%02x:%02x", i>>24&0xff, i>>16&0xff, i>>8&0xff, i&0xff)
}

func storedNodes(t *testing.T, ti *testInv) map[string]Node {
	t.Helper()
	out := map[string]Node{}
	if err := store.Load(ti.db, nodesBucket, func(k string, n Node) error { out[k] = n; return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestDiscoveryBounded: spoofed MACs make at most MaxDiscovered nodes, the
// rest are counted; none waits for the disk (they are written together by
// the flush); followers of Changed are not woken by them; and a discovered
// node not seen for DiscoveredTTL is forgotten, in memory and on disk.
func TestDiscoveryBounded(t *testing.T) {
	ti := newTestInv(t, testPool)
	ti.Limits.MaxDiscovered = 50
	changed := ti.Changed()
	for i := range 80 {
		ti.Seen(ctx, spoofedMAC(i), "bios")
	}
	if n := len(ti.Nodes()); n != 50 {
		t.Fatalf("%d nodes after 80 new MACs, want the cap of 50", n)
	}
	if got := ti.DiscoveryRefused(); got != 30 {
		t.Errorf("refused %d, want 30", got)
	}
	select {
	case <-changed:
		t.Error("discovered nodes woke the followers of Changed")
	default:
	}
	if n := len(storedNodes(t, ti)); n != 0 {
		t.Errorf("%d nodes written before the flush; Seen must not wait for the disk", n)
	}
	ti.Flush()
	if n := len(storedNodes(t, ti)); n != 50 {
		t.Fatalf("%d nodes stored after the flush, want 50", n)
	}
	evs, _, _ := ti.Events(0)
	if len(evs) != 50 {
		t.Errorf("%d events, want one per discovered node", len(evs))
	}

	// Enrolled nodes do not expire; discovered ones not seen for the TTL do.
	ti.enroll(t, EnrollRequest{MAC: spoofedMAC(0)})
	ti.clock.Advance(DefaultDiscoveredTTL / 2)
	ti.Seen(ctx, spoofedMAC(1), "bios") // still around
	ti.clock.Advance(DefaultDiscoveredTTL/2 + time.Minute)
	next, _ := ti.expire(ctx)
	if n := len(ti.Nodes()); n != 2 {
		t.Fatalf("%d nodes after the TTL, want the enrolled one and the one seen since", n)
	}
	if want := ti.clock.Now().Add(DefaultDiscoveredTTL/2 - time.Minute); !next.Equal(want) {
		t.Errorf("next wake %v, want %v (when the remaining discovered node goes)", next, want)
	}
	if n := len(storedNodes(t, ti)); n != 2 {
		t.Errorf("%d nodes stored after the TTL, want 2", n)
	}
	// Room again for new MACs.
	ti.Seen(ctx, spoofedMAC(1000), "bios")
	if _, ok := ti.Node(spoofedMAC(1000)); !ok {
		t.Error("a new MAC was refused after the old ones expired")
	}
}

// TestArchChangeDoesNotWrite: a known MAC flapping its arch (a spoofer
// alternating option 93) is written by the flush, not on every packet.
func TestArchChangeDoesNotWrite(t *testing.T) {
	ti := newTestInv(t, testPool)
	mac := "52:54:00:00:00:01"
	ti.enroll(t, EnrollRequest{MAC: mac})
	before := storedNodes(t, ti)[mac]
	for i := range 100 {
		ti.Seen(ctx, mac, []string{"bios", "efi-x64"}[i%2])
	}
	if got := storedNodes(t, ti)[mac]; got.Arch != before.Arch {
		t.Errorf("arch written at once (%q)", got.Arch)
	}
	ti.Flush()
	if got := storedNodes(t, ti)[mac]; got.Arch != "efi-x64" || got.State != Enrolled {
		t.Errorf("after the flush: %+v", got)
	}
}

// TestFlushNeverOverwritesNewer: a node discovered, then enrolled before
// the flush, is stored enrolled, across a restart.
func TestFlushNeverOverwritesNewer(t *testing.T) {
	ti := newTestInv(t, testPool)
	mac := "52:54:00:00:00:01"
	ti.Seen(ctx, mac, "bios")
	ti.enroll(t, EnrollRequest{MAC: mac, Hostname: "n1"})
	time.Sleep(flushEvery + 300*time.Millisecond) // the scheduled flush has run
	ti = ti.reopen(t, testPool)
	if n := ti.mustNode(t, mac); n.State != Enrolled || n.Arch != "bios" {
		t.Errorf("after a restart: %s, arch %q", n.State, n.Arch)
	}
}

// TestEventsBounded: the store keeps the newest MaxEvents events.
func TestEventsBounded(t *testing.T) {
	ti := newTestInv(t, testPool)
	ti.Limits.MaxEvents = 10
	mac := "52:54:00:00:00:01"
	ti.enroll(t, EnrollRequest{MAC: mac})
	for i := range 30 {
		ti.Note(ctx, mac, fmt.Sprintf("note %d", i), "test")
	}
	ti.expire(ctx)
	n := 0
	first := uint64(0)
	store.Load(ti.db, eventsBucket, func(_ string, e LogEvent) error {
		if n == 0 {
			first = e.Seq
		}
		n++
		return nil
	})
	if n != 10 || first != 22 {
		t.Errorf("store holds %d events from %d, want the last 10 (22-31)", n, first)
	}
}

// TestEnrollWhereSeen: a node records the subnet it was last seen on; an
// instance serving another subnet (another rack's, sharing the inventory)
// does not reserve it an address from its own pool, which the node's
// segment could not use, but says where to enroll it.
func TestEnrollWhereSeen(t *testing.T) {
	rack1 := newTestInv(t, testPool)
	rack1.Seen(ctx, macA, "x86-64-bios")
	rack1.Seen(ctx, macB, "x86-64-bios")
	rack1.Flush()
	if n, _ := rack1.Node(macA); n.SeenOn != testPool.Subnet {
		t.Fatalf("seen on %v, want %v", n.SeenOn, testPool.Subnet)
	}

	rack2pool := Pool{Subnet: netip.MustParsePrefix("10.0.2.0/24"), Range: [2]netip.Addr{addr("10.0.2.100"), addr("10.0.2.109")}, Lease: time.Hour}
	rack2 := rack1.reopen(t, rack2pool)
	_, err := rack2.Enroll(ctx, EnrollRequest{MAC: macA})
	if err == nil || !strings.Contains(err.Error(), "last seen on 10.0.0.0/24") || !strings.Contains(err.Error(), "enroll it on an instance serving 10.0.0.0/24") {
		t.Fatalf("enroll of a node seen on another subnet: %v", err)
	}
	if n, _ := rack2.Node(macA); n.State != Discovered {
		t.Errorf("the refused enrollment left %s %s", macA, n.State)
	}
	// Moving it here is said with an address of this segment.
	if n := rack2.enroll(t, EnrollRequest{MAC: macA, IP: addr("10.0.2.50")}); n.IP != addr("10.0.2.50") {
		t.Errorf("enrolled with -ip at %s", n.IP)
	}
	// Once this instance sees it, it is this segment's.
	rack2.Seen(ctx, macB, "x86-64-bios")
	if n := rack2.enroll(t, EnrollRequest{MAC: macB}); !rack2pool.Subnet.Contains(n.IP) {
		t.Errorf("node seen here enrolled at %s", n.IP)
	}
}

// TestDiscoveryBoundedPerSegment: racks sharing an inventory each have
// MaxDiscovered of their own; a flood of made-up MACs on one does not stop
// discovery on another.
func TestDiscoveryBoundedPerSegment(t *testing.T) {
	rack1 := newTestInv(t, testPool)
	rack1.Limits.MaxDiscovered = 3
	for i := range 10 {
		rack1.Seen(ctx, spoofedMAC(i), "x86-64-bios")
	}
	rack1.Flush()
	rack2 := rack1.reopen(t, Pool{Subnet: netip.MustParsePrefix("10.0.2.0/24"), Lease: time.Hour})
	rack2.Limits.MaxDiscovered = 3
	for i := 100; i < 110; i++ {
		rack2.Seen(ctx, spoofedMAC(i), "x86-64-bios")
	}
	if got := len(rack2.Nodes()); got != 6 {
		t.Errorf("%d nodes after a flood of 10 on each of two racks with a cap of 3, want 6", got)
	}
	if got := rack2.DiscoveryRefused(); got != 7 {
		t.Errorf("rack 2 refused %d new MACs, want 7", got)
	}
	// One of rack 1's, seen on rack 2, becomes rack 2's: no room there.
	rack2.Seen(ctx, spoofedMAC(0), "x86-64-bios")
	if n, _ := rack2.Node(spoofedMAC(0)); n.SeenOn != rack2.pool.Subnet {
		t.Errorf("rack 1's node seen on rack 2 is on %v", n.SeenOn)
	}
	rack2.Seen(ctx, spoofedMAC(200), "x86-64-bios")
	if _, ok := rack2.Node(spoofedMAC(200)); ok {
		t.Errorf("a new MAC was kept with rack 2's cap (3) exceeded")
	}
}

// TestReservationOnAnotherSegment: a node enrolled on one rack and cabled
// to another is not offered its reservation there, which would not work
// on that segment; the refusal says what to do.
func TestReservationOnAnotherSegment(t *testing.T) {
	rack1 := newTestInv(t, testPool)
	rack1.enroll(t, EnrollRequest{MAC: macA, Hostname: "r1n1", IP: addr("10.0.0.50")})
	rack2 := rack1.reopen(t, Pool{Subnet: netip.MustParsePrefix("10.0.2.0/24"), Range: [2]netip.Addr{addr("10.0.2.100"), addr("10.0.2.109")}, Lease: time.Hour})
	for _, pool := range []bool{false, true} {
		ip, err := rack2.Offer(macA, none, pool)
		if err == nil || !strings.Contains(err.Error(), "r1n1 (52:54:00:00:00:0a) is reserved 10.0.0.50, outside this segment (10.0.2.0/24)") {
			t.Errorf("offer on another segment (pool %v): %v, %v", pool, ip, err)
		}
		if _, err := rack2.Commit(ctx, macA, addr("10.0.0.50"), pool); err == nil {
			t.Errorf("the reservation was leased on another segment (pool %v)", pool)
		}
	}
	if ip := rack2.reopen(t, testPool).offer(t, macA, none, false); ip != addr("10.0.0.50") {
		t.Errorf("on its own segment it is offered %s", ip)
	}
}

// TestDiscoveredKeptWhileSeen: a node still booting keeps its record, even
// for whoever goes by the store (after a restart, or the leader of
// instances sharing it): its last-seen time, held in memory, is written
// again once the store's copy is half the TTL old, and only then.
func TestDiscoveredKeptWhileSeen(t *testing.T) {
	ti := newTestInv(t, testPool)
	ti.Seen(ctx, macA, "bios")
	ti.Flush()
	for range 4 {
		ti.clock.Advance(DefaultDiscoveredTTL / 4)
		ti.Seen(ctx, macA, "bios")
		ti.Flush()
	}
	n := storedNodes(t, ti)[macA]
	if age := ti.clock.Now().Sub(n.LastSeen); age > DefaultDiscoveredTTL/4 {
		t.Errorf("the store's last-seen time is %v old, after sightings every %v", age, DefaultDiscoveredTTL/4)
	}
	evs, _, _ := ti.Events(0)
	if len(evs) != 1 {
		t.Errorf("%d events for one node seen five times, want 1: %v", len(evs), evs)
	}
	// Sightings in between write nothing.
	before := storedNodes(t, ti)[macA].LastSeen
	ti.clock.Advance(time.Minute)
	ti.Seen(ctx, macA, "bios")
	ti.Flush()
	if after := storedNodes(t, ti)[macA].LastSeen; !after.Equal(before) {
		t.Errorf("a sighting a minute later wrote last-seen %v (was %v)", after, before)
	}

	ti = ti.reopen(t, testPool)
	ti.clock.Advance(DefaultDiscoveredTTL * 3 / 4)
	ti.expire(ctx)
	if _, ok := ti.Node(macA); !ok {
		t.Error("a node seen within the TTL was forgotten after a restart")
	}
}
