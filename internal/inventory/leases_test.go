package inventory

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	macA = "52:54:00:00:00:0a"
	macB = "52:54:00:00:00:0b"
	macC = "52:54:00:00:00:0c"
	macN = "52:54:00:00:00:01" // the enrolled node
)

var none = netip.Addr{}

func (ti *testInv) offer(t *testing.T, mac string, req netip.Addr, pool bool) netip.Addr {
	t.Helper()
	ip, err := ti.Offer(mac, req, pool)
	if err != nil {
		t.Fatalf("Offer(%s, %v, %v): %v", mac, req, pool, err)
	}
	return ip
}

func (ti *testInv) commit(t *testing.T, mac string, ip netip.Addr, pool bool) Lease {
	t.Helper()
	l, err := ti.Commit(ctx, mac, ip, pool)
	if err != nil {
		t.Fatalf("Commit(%s, %v, %v): %v", mac, ip, pool, err)
	}
	if l.MAC != mac || l.IP != ip || !l.Expires.Equal(ti.clock.Now().Add(time.Hour)) {
		t.Fatalf("Commit returned %+v", l)
	}
	return l
}

// dora is a client's DISCOVER/OFFER/REQUEST/ACK.
func (ti *testInv) dora(t *testing.T, mac string, req netip.Addr) netip.Addr {
	t.Helper()
	ip := ti.offer(t, mac, req, true)
	ti.commit(t, mac, ip, true)
	return ip
}

func TestLeases(t *testing.T) {
	for _, tc := range []struct {
		name string
		pool Pool
		run  func(t *testing.T, ti *testInv)
	}{
		{"reservation answers in either mode", testPool, func(t *testing.T, ti *testInv) {
			for _, pool := range []bool{false, true} {
				if ip := ti.offer(t, macN, addr("10.0.0.150"), pool); ip != addr("10.0.0.5") {
					t.Fatalf("pool=%v: offered %v, want the reservation 10.0.0.5", pool, ip)
				}
				ti.commit(t, macN, addr("10.0.0.5"), pool)
			}
			if _, err := ti.Commit(ctx, macN, addr("10.0.0.100"), true); !errors.Is(err, ErrWrongAddr) {
				t.Fatalf("enrolled node committing another address: %v, want ErrWrongAddr", err)
			}
		}},
		{"unknown MAC without a pool gets nothing", testPool, func(t *testing.T, ti *testInv) {
			if ip, err := ti.Offer(macA, addr("10.0.0.100"), false); !errors.Is(err, ErrNoLease) {
				t.Fatalf("Offer = %v, %v; want ErrNoLease", ip, err)
			}
			if _, err := ti.Commit(ctx, macA, addr("10.0.0.100"), false); !errors.Is(err, ErrNoLease) {
				t.Fatalf("Commit = %v; want ErrNoLease", err)
			}
			if len(ti.Leases()) != 0 {
				t.Fatalf("leases = %+v, want none", ti.Leases())
			}
		}},
		{"a discovered node is not a reservation", testPool, func(t *testing.T, ti *testInv) {
			ti.Seen(ctx, macA, "bios")
			if _, err := ti.Offer(macA, none, false); !errors.Is(err, ErrNoLease) {
				t.Fatalf("Offer to a discovered node without a pool: %v, want ErrNoLease", err)
			}
		}},
		{"pool hands out distinct addresses, the same one to the same MAC", testPool, func(t *testing.T, ti *testInv) {
			seen := map[netip.Addr]string{}
			for i := range 5 {
				mac := fmt.Sprintf("52:54:00:00:01:%02x", i)
				ip := ti.dora(t, mac, none)
				if !inPool(ip) {
					t.Fatalf("%s got %v, outside the range", mac, ip)
				}
				if prev, dup := seen[ip]; dup {
					t.Fatalf("%v given to %s and %s", ip, prev, mac)
				}
				seen[ip] = mac
			}
			for ip, mac := range seen {
				// Renewal, and a fresh DISCOVER asking for nothing in particular.
				ti.clock.Advance(time.Minute)
				ti.commit(t, mac, ip, true)
				if again := ti.offer(t, mac, none, true); again != ip {
					t.Fatalf("%s had %v, now offered %v", mac, ip, again)
				}
				if l, ok := ti.LeaseFor(mac); !ok || l.IP != ip {
					t.Fatalf("LeaseFor(%s) = %+v, %v", mac, l, ok)
				}
			}
		}},
		{"the same offer for repeated DISCOVERs", testPool, func(t *testing.T, ti *testInv) {
			ip := ti.offer(t, macA, none, true)
			for range 3 {
				if again := ti.offer(t, macA, none, true); again != ip {
					t.Fatalf("second DISCOVER offered %v, first %v", again, ip)
				}
			}
		}},
		{"requested free address is given", testPool, func(t *testing.T, ti *testInv) {
			if ip := ti.dora(t, macA, addr("10.0.0.107")); ip != addr("10.0.0.107") {
				t.Fatalf("got %v, want the requested 10.0.0.107", ip)
			}
			// Out of range or out of subnet requests are not honoured.
			for _, req := range []string{"10.0.0.5", "10.0.0.200", "192.168.0.100"} {
				if ip := ti.offer(t, macB, addr(req), true); ip == addr(req) || !inPool(ip) {
					t.Fatalf("requested %s, offered %v", req, ip)
				}
			}
		}},
		{"requested address leased to someone else is not offered", testPool, func(t *testing.T, ti *testInv) {
			held := ti.dora(t, macA, addr("10.0.0.104"))
			ip := ti.offer(t, macB, held, true)
			if ip == held || !inPool(ip) {
				t.Fatalf("B asked for A's %v and was offered %v", held, ip)
			}
			if _, err := ti.Commit(ctx, macB, held, true); !errors.Is(err, ErrWrongAddr) {
				t.Fatalf("B committing A's address: %v, want ErrWrongAddr", err)
			}
			if l, _ := ti.LeaseFor(macA); l.IP != held || l.MAC != macA {
				t.Fatalf("A's lease after B's attempt: %+v", l)
			}
		}},
		{"a reserved address is not offered to a pool client", testPool, func(t *testing.T, ti *testInv) {
			ti.enroll(t, EnrollRequest{MAC: macC, IP: addr("10.0.0.103")})
			if ip := ti.offer(t, macA, addr("10.0.0.103"), true); ip == addr("10.0.0.103") {
				t.Fatal("pool client was offered a reserved address")
			}
			if _, err := ti.Commit(ctx, macA, addr("10.0.0.103"), true); !errors.Is(err, ErrWrongAddr) {
				t.Fatalf("pool client committing a reserved address: %v, want ErrWrongAddr", err)
			}
		}},
		{"pending offers are held for their client", poolOf("10.0.0.100", "10.0.0.101"), func(t *testing.T, ti *testInv) {
			a := ti.offer(t, macA, none, true)
			b := ti.offer(t, macB, none, true)
			if a == b {
				t.Fatalf("A and B were both offered %v", a)
			}
			// B asks for A's offered address: not while A's offer stands.
			if ip := ti.offer(t, macB, a, true); ip != b {
				t.Fatalf("B asked for A's pending %v and was offered %v", a, ip)
			}
			if _, err := ti.Offer(macC, none, true); err == nil || !strings.Contains(err.Error(), "exhausted") {
				t.Fatalf("third client while both are held: %v, want exhausted", err)
			}
			ti.commit(t, macA, a, true)
			ti.commit(t, macB, b, true)
		}},
		{"pending offers expire", poolOf("10.0.0.100", "10.0.0.100"), func(t *testing.T, ti *testInv) {
			a := ti.offer(t, macA, none, true)
			ti.clock.Advance(offerHold - time.Second)
			if _, err := ti.Offer(macB, none, true); !errors.Is(err, ErrNoLease) {
				t.Fatalf("B while A's offer is held: %v, want ErrNoLease", err)
			}
			ti.clock.Advance(2 * time.Second)
			if b := ti.dora(t, macB, none); b != a {
				t.Fatalf("B got %v after A's offer lapsed, want %v", b, a)
			}
			// A, too late, is NAKed rather than double-booked.
			if _, err := ti.Commit(ctx, macA, a, true); !errors.Is(err, ErrNoLease) && !errors.Is(err, ErrWrongAddr) {
				t.Fatalf("A committing the lapsed offer: %v", err)
			}
		}},
		{"expired lease is reused by another MAC", poolOf("10.0.0.100", "10.0.0.100"), func(t *testing.T, ti *testInv) {
			a := ti.dora(t, macA, none)
			ti.clock.Advance(59 * time.Minute)
			if _, err := ti.Offer(macB, none, true); !errors.Is(err, ErrNoLease) {
				t.Fatalf("B while A's lease is live: %v, want ErrNoLease", err)
			}
			ti.clock.Advance(2 * time.Minute)
			if b := ti.dora(t, macB, none); b != a {
				t.Fatalf("B got %v, want A's expired %v", b, a)
			}
			if l, _ := ti.LeaseFor(macA); l.IP == a {
				t.Fatalf("A still holds %v after B took it", a)
			}
			if ls := ti.Leases(); len(ls) != 1 || ls[0].MAC != macB {
				t.Fatalf("lease table = %+v, want only B's", ls)
			}
		}},
		{"released address goes back", poolOf("10.0.0.100", "10.0.0.100"), func(t *testing.T, ti *testInv) {
			a := ti.dora(t, macA, none)
			if err := ti.Release(ctx, macB, a); !errors.Is(err, ErrNoLease) {
				t.Fatalf("B releasing A's lease: %v, want ErrNoLease", err)
			}
			if err := ti.Release(ctx, macA, a); err != nil {
				t.Fatal(err)
			}
			// A comes back and gets the same address...
			if again := ti.offer(t, macA, none, true); again != a {
				t.Fatalf("A after release offered %v, want %v", again, a)
			}
			ti.clock.Advance(offerHold + time.Second)
			// ...but it is free for B too.
			if b := ti.dora(t, macB, none); b != a {
				t.Fatalf("B got %v, want the released %v", b, a)
			}
		}},
		{"declined address is quarantined for one lease time", poolOf("10.0.0.100", "10.0.0.101"), func(t *testing.T, ti *testInv) {
			a := ti.dora(t, macA, addr("10.0.0.100"))
			if err := ti.Decline(ctx, macB, a); !errors.Is(err, ErrNoLease) {
				t.Fatalf("B declining A's address: %v, want ErrNoLease", err)
			}
			if err := ti.Decline(ctx, macA, a); err != nil {
				t.Fatal(err)
			}
			if _, ok := ti.LeaseFor(macA); ok {
				t.Fatal("A still has a lease after declining it")
			}
			for _, mac := range []string{macA, macB} {
				ip := ti.offer(t, mac, a, true)
				if ip == a {
					t.Fatalf("%s was offered the quarantined %v", mac, a)
				}
				ti.commit(t, mac, ip, true)
				if err := ti.Release(ctx, mac, ip); err != nil {
					t.Fatal(err)
				}
			}
			ti.clock.Advance(59 * time.Minute)
			if ip := ti.offer(t, macC, a, true); ip == a {
				t.Fatalf("quarantined %v offered before the lease time ran out", a)
			}
			ti.clock.Advance(2 * time.Minute)
			if ip := ti.dora(t, macC, a); ip != a {
				t.Fatalf("after quarantine, C asked for %v and got %v", a, ip)
			}
		}},
		{"exhaustion", poolOf("10.0.0.100", "10.0.0.102"), func(t *testing.T, ti *testInv) {
			for _, mac := range []string{macA, macB, macC} {
				ti.dora(t, mac, none)
			}
			_, err := ti.Offer("52:54:00:00:00:0d", none, true)
			if !errors.Is(err, ErrNoLease) || !strings.Contains(err.Error(), "exhausted") {
				t.Fatalf("fourth client: %v, want ErrNoLease mentioning exhausted", err)
			}
			if _, err := ti.Commit(ctx, "52:54:00:00:00:0d", addr("10.0.0.100"), true); err == nil {
				t.Fatal("fourth client committed an address in a full pool")
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ti := newTestInv(t, tc.pool)
			ti.enroll(t, EnrollRequest{MAC: macN, Hostname: "n1", IP: addr("10.0.0.5")})
			tc.run(t, ti)
		})
	}
}

func inPool(ip netip.Addr) bool {
	return ip.Compare(testPool.Range[0]) >= 0 && ip.Compare(testPool.Range[1]) <= 0
}

func TestLeasesSurviveRestart(t *testing.T) {
	pool := poolOf("10.0.0.100", "10.0.0.102")
	ti := newTestInv(t, pool)
	// The node has a reservation but no lease yet: after the restart only
	// the reservation keeps .101 from pool clients.
	ti.enroll(t, EnrollRequest{MAC: macN, Hostname: "n1", IP: addr("10.0.0.101")})
	a := ti.dora(t, macA, addr("10.0.0.100"))
	b := ti.dora(t, macB, addr("10.0.0.102"))
	if err := ti.Decline(ctx, macB, b); err != nil {
		t.Fatal(err)
	}
	before := ti.Leases()

	ti = ti.reopen(t, pool)

	if after := ti.Leases(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("leases after reopen:\n%v\nwant\n%v", after, before)
	}
	if n := ti.mustNode(t, macN); n.Hostname != "n1" || n.IP != addr("10.0.0.101") || n.State != Enrolled {
		t.Fatalf("node after reopen: %+v", n)
	}
	if l, ok := ti.LeaseFor(macA); !ok || l.IP != a {
		t.Fatalf("A's lease after reopen: %+v, %v", l, ok)
	}
	if ip := ti.offer(t, macA, none, true); ip != a {
		t.Fatalf("A offered %v after reopen, want its %v", ip, a)
	}
	// Reserved, leased and quarantined: nothing is left for C, and C is
	// certainly not given the reservation.
	if ip, err := ti.Offer(macC, addr("10.0.0.101"), true); err == nil {
		t.Fatalf("C was offered %v; every address is reserved, leased or quarantined", ip)
	}
	if ip := ti.offer(t, macN, none, false); ip != addr("10.0.0.101") {
		t.Fatalf("reservation after reopen: offered %v", ip)
	}
}

// A client whose lease moves to another address leaves its old record in
// the store. After a restart, the current lease must still be the one in
// force, whatever order the records load in.
func TestLeaseMovedSurvivesRestart(t *testing.T) {
	pool := poolOf("10.0.0.8", "10.0.0.10")
	ti := newTestInv(t, pool)
	// A leases .9; it lapses; C is offered .9 (but never commits); A comes
	// back, cannot have .9 and is given .10.
	ti.dora(t, macA, addr("10.0.0.9"))
	ti.clock.Advance(2 * time.Hour)
	ti.offer(t, macC, addr("10.0.0.9"), true)
	if ip := ti.dora(t, macA, addr("10.0.0.10")); ip != addr("10.0.0.10") {
		t.Fatalf("setup: A got %v", ip)
	}
	ti.clock.Advance(time.Minute)

	ti = ti.reopen(t, pool)

	if l, ok := ti.LeaseFor(macA); !ok || l.IP != addr("10.0.0.10") {
		t.Fatalf("A's lease after restart = %+v, %v; want 10.0.0.10", l, ok)
	}
	// .10 is A's until its lease ends: B must not be given it.
	if ip, err := ti.Offer(macB, addr("10.0.0.10"), true); err != nil || ip == addr("10.0.0.10") {
		t.Fatalf("B was offered %v, %v: A's live address handed out twice", ip, err)
	}
}

func TestConcurrentLeases(t *testing.T) {
	pool := poolOf("10.0.0.10", "10.0.0.250")
	ti := newTestInv(t, pool)
	const clients = 100
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		got  = map[netip.Addr]string{}
		errs []error
	)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mac := fmt.Sprintf("52:54:00:00:02:%02x", i)
			ip, err := ti.Offer(mac, none, true)
			if err == nil {
				_, err = ti.Commit(ctx, mac, ip, true)
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", mac, err))
				return
			}
			if prev, dup := got[ip]; dup {
				errs = append(errs, fmt.Errorf("%v given to both %s and %s", ip, prev, mac))
			}
			got[ip] = mac
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if len(got) != clients || len(ti.Leases()) != clients {
		t.Fatalf("%d distinct addresses, %d leases; want %d", len(got), len(ti.Leases()), clients)
	}
	ti = ti.reopen(t, pool)
	for ip, mac := range got {
		if l, ok := ti.LeaseFor(mac); !ok || l.IP != ip {
			t.Fatalf("after reopen %s has %+v, want %v", mac, l, ip)
		}
	}
}

// TestOffersPruned: DISCOVERs from made-up MACs that never REQUEST leave
// no offer behind once it has expired.
func TestOffersPruned(t *testing.T) {
	ti := newTestInv(t, poolOf("10.0.0.100", "10.0.0.109"))
	for round := range 200 {
		for i := range 10 {
			if _, err := ti.Offer(spoofedMAC(round*10+i), netip.Addr{}, true); err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
		ti.clock.Advance(offerHold + time.Second)
	}
	ti.mu.Lock()
	held, offered := len(ti.leases.offers), len(ti.leases.offered)
	ti.mu.Unlock()
	if held > 2*minPrune || offered > 10 {
		t.Errorf("after 2,000 unanswered offers: %d offers and %d offered addresses held", held, offered)
	}
}

// TestLeaseJSON: leases are encoded by hand for the store, and must read
// back, in this version and in older ones, as json.Marshal's bytes would.
func TestLeaseJSON(t *testing.T) {
	at := time.Date(2026, 11, 30, 18, 0, 0, 123456789, time.UTC)
	for _, tc := range []struct {
		name string
		l    Lease
	}{
		{"leased", Lease{MAC: macA, IP: addr("10.0.0.100"), Expires: at}},
		{"whole seconds", Lease{MAC: macA, IP: addr("10.0.0.100"), Expires: at.Truncate(time.Second)}},
		{"zone", Lease{MAC: macA, IP: addr("10.0.0.100"), Expires: at.In(time.FixedZone("", -(3*3600 + 30*60)))}},
		{"monotonic clock", Lease{MAC: macA, IP: addr("10.0.0.100"), Expires: time.Now().Add(time.Hour)}},
		{"declined", Lease{IP: addr("10.0.0.101"), Expires: at, Declined: true}},
		{"offset in seconds", Lease{MAC: macA, IP: addr("10.0.0.100"), Expires: at.In(time.FixedZone("LMT", 517))}},
		{"mac to escape", Lease{MAC: `a"<b>`, IP: addr("10.0.0.100"), Expires: at}},
		{"no address", Lease{MAC: macA, Expires: at}},
		{"zero", Lease{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.l.json()
			want, werr := json.Marshal(&tc.l)
			if err != nil || werr != nil || string(got) != string(want) {
				t.Errorf("got %s (%v), json.Marshal %s (%v)", got, err, want, werr)
			}
		})
	}
}

// TestCommitThen: the callback form of Commit answers as Commit does, once
// per call: at once for a refusal, after the write for a lease, which is
// then on disk (a reopened store has it).
func TestCommitThen(t *testing.T) {
	ti := newTestInv(t, testPool)
	ip := ti.offer(t, macA, none, true)
	type result struct {
		l   Lease
		err error
	}
	for _, tc := range []struct {
		name    string
		mac     string
		ip      netip.Addr
		pool    bool
		now     bool
		wantErr error
	}{
		{"another client's address", macB, ip, true, false, ErrWrongAddr},
		{"reservation mode, no node", macC, addr("10.0.0.120"), false, false, ErrNoLease},
		{"the offered address", macA, ip, true, false, nil},
		{"the offered address again, committed at once", macA, ip, true, true, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			results := make(chan result, 2)
			ti.CommitThen(tc.mac, tc.ip, tc.pool, tc.now, func(l Lease, err error) { results <- result{l, err} })
			if tc.now && len(results) == 0 {
				t.Error("now: done had not run when CommitThen returned")
			}
			r := <-results
			if !errors.Is(r.err, tc.wantErr) {
				t.Fatalf("err %v, want %v", r.err, tc.wantErr)
			}
			if tc.wantErr == nil && (r.l.MAC != tc.mac || r.l.IP != tc.ip || !r.l.Expires.Equal(ti.clock.Now().Add(time.Hour))) {
				t.Errorf("lease %+v", r.l)
			}
			select {
			case r := <-results:
				t.Errorf("called twice: %+v", r)
			case <-time.After(20 * time.Millisecond):
			}
		})
	}
	ti = ti.reopen(t, testPool)
	if l, ok := ti.leases.byMAC[macA]; !ok || l.IP != ip {
		t.Errorf("after reopen: %+v, %v", l, ok)
	}
}

// Instances sharing a pool start looking for free addresses at different
// places (named by their instance names), the same place each time, and
// still find every address in the pool.
func TestSpreadFrom(t *testing.T) {
	pool := poolOf("10.0.0.100", "10.0.0.199")
	first := func(name string) netip.Addr {
		ti := newTestInv(t, pool)
		ti.SpreadFrom(name)
		return ti.offer(t, macA, none, true)
	}
	a, b := first("rack1-a"), first("rack1-b")
	if a == b {
		t.Errorf("rack1-a and rack1-b both start at %s", a)
	}
	if again := first("rack1-a"); again != a {
		t.Errorf("rack1-a starts at %s, then at %s", a, again)
	}

	small := poolOf("10.0.0.100", "10.0.0.102")
	ti := newTestInv(t, small)
	ti.SpreadFrom("rack1-b")
	got := map[netip.Addr]bool{}
	for _, mac := range []string{macA, macB, macC} {
		got[ti.dora(t, mac, none)] = true
	}
	if len(got) != 3 {
		t.Errorf("three clients on a pool of three got %v", got)
	}
}
