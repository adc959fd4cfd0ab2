package inventory

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"net/netip"
	"slices"
	"time"

	"github.com/bootstrapd/bootstrapd/internal/store"
)

// Lease errors the DHCP server turns into silence or a NAK.
var (
	ErrNoLease   = errors.New("no address for this client")
	ErrWrongAddr = errors.New("requested address is not this client's")
)

// offerHold is how long an offered address stays set aside for the client
// it was offered to. Clients that take longer than this have lost the race.
const offerHold = 30 * time.Second

// Lease is an address bound to a MAC until Expires. A declined address has
// no MAC: it is quarantined until Expires because something else answers ARP
// for it.
type Lease struct {
	MAC      string     `json:"mac,omitempty"`
	IP       netip.Addr `json:"ip"`
	Expires  time.Time  `json:"expires"`
	Declined bool       `json:"declined,omitempty"`

	rev int64 // the stored record's version, as read (see leaseTable.revs)
}

// A lease record with no expiry is a claim: an enrollment wrote it to
// reserve the address in a shared store (leaseTable.claim). It binds
// nothing.
func (l *Lease) claim() bool { return l.Expires.IsZero() }

func decodeLease(key string, data []byte, rev int64) (*Lease, error) {
	l := &Lease{}
	if err := json.Unmarshal(data, l); err != nil {
		return nil, fmt.Errorf("decode %s/%s: %w", leasesBucket, key, err)
	}
	ip, err := netip.ParseAddr(key)
	if err != nil || ip != l.IP {
		return nil, fmt.Errorf("decode %s/%s: the record is for %s", leasesBucket, key, l.IP)
	}
	l.rev = rev
	return l, nil
}

func (l *Lease) live(now time.Time) bool { return now.Before(l.Expires) }

// json is the lease as encoding/json writes it, byte for byte, without
// reflection: one is written per DHCP ACK, and json.Marshal (which also
// re-scans the time's and address's own encodings) was 4-7% of the
// instructions of an exchange in BenchmarkDORA. It falls back to json.Marshal for anything
// unusual: a MAC that would need escaping, no address, a year outside
// 0-9999 or a zone offset in seconds.
func (l *Lease) json() ([]byte, error) {
	_, offset := l.Expires.Zone()
	if y := l.Expires.Year(); !l.IP.IsValid() || y < 0 || y > 9999 || offset%60 != 0 || !plainMAC(l.MAC) {
		return json.Marshal(l)
	}
	b := make([]byte, 0, 96)
	b = append(b, '{')
	if l.MAC != "" {
		b = append(b, `"mac":"`...)
		b = append(b, l.MAC...)
		b = append(b, `",`...)
	}
	b = append(b, `"ip":"`...)
	b = l.IP.AppendTo(b)
	b = append(b, `","expires":"`...)
	b = l.Expires.AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	if l.Declined {
		b = append(b, `,"declined":true`...)
	}
	return append(b, '}'), nil
}

// plainMAC reports whether s has only characters JSON writes as they are
// (a MAC's hex digits and colons, say).
func plainMAC(s string) bool {
	for _, c := range []byte(s) {
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

type offer struct {
	ip      netip.Addr
	expires time.Time
}

// leaseTable is the in-memory index. Its owner's mutex guards it.
type leaseTable struct {
	lo, hi   uint32
	next     uint32 // where the next free-address scan starts
	byIP     map[netip.Addr]*Lease
	byMAC    map[string]*Lease
	offers   map[string]offer      // mac -> pending offer, never persisted
	offered  map[netip.Addr]string // ip -> mac of the pending offer
	reserved map[netip.Addr]string // ip -> mac of the enrolled node it belongs to
	revs     map[netip.Addr]int64  // ip -> version of its stored record (store.Entry.Rev), whether or not byIP holds it
	pruneAt  int                   // offers held when expired ones are next swept out
}

// minPrune is the fewest offers worth a sweep for expired ones.
const minPrune = 64

// pruneOffers drops expired offers. Clients that never REQUEST (anyone
// sending DISCOVERs from made-up MACs) would otherwise leave one each
// forever. It runs when the map has doubled since the last sweep, so its
// cost is spread over the offers that grew it.
func (t *leaseTable) pruneOffers(now time.Time) {
	if len(t.offers) < t.pruneAt {
		return
	}
	for mac, o := range t.offers {
		if !now.Before(o.expires) {
			delete(t.offers, mac)
			if t.offered[o.ip] == mac {
				delete(t.offered, o.ip)
			}
		}
	}
	t.pruneAt = max(minPrune, 2*len(t.offers))
}

func (t *leaseTable) init(p Pool) {
	t.byIP, t.byMAC = map[netip.Addr]*Lease{}, map[string]*Lease{}
	t.offers, t.offered, t.reserved = map[string]offer{}, map[netip.Addr]string{}, map[netip.Addr]string{}
	t.revs = map[netip.Addr]int64{}
	t.pruneAt = minPrune
	if p.Range[0].IsValid() {
		t.lo, t.hi = u32(p.Range[0]), u32(p.Range[1])
		t.next = t.lo
	}
}

func (t *leaseTable) put(l *Lease) {
	if old := t.byIP[l.IP]; old != nil && old.MAC != "" && t.byMAC[old.MAC] == old {
		delete(t.byMAC, old.MAC)
	}
	t.byIP[l.IP] = l
	if l.MAC != "" {
		if old := t.byMAC[l.MAC]; old != nil && old.IP != l.IP && t.byIP[old.IP] == old {
			// A client keeps one lease; its old address goes back to the pool.
			delete(t.byIP, old.IP)
		}
		t.byMAC[l.MAC] = l
	}
}

// load adds a lease read from the store. A client that moved to another
// address leaves its old record behind (records are keyed by address), and
// the store hands records back in key order, not in the order they were
// written: of two records for one MAC, the one that runs longer is the
// current one. Letting the stale one win would drop the current address
// from the table and hand it to another client while its holder still uses it.
func (t *leaseTable) load(l *Lease) {
	t.revs[l.IP] = l.rev
	if l.claim() {
		return
	}
	if cur := t.byMAC[l.MAC]; l.MAC != "" && cur != nil && cur.IP != l.IP && !l.Expires.After(cur.Expires) {
		return
	}
	t.put(l)
}

// apply is a record another instance wrote (nil: it deleted the one for
// ip): it replaces what this table holds for the address.
func (t *leaseTable) apply(ip netip.Addr, l *Lease, rev int64) {
	if old := t.byIP[ip]; old != nil {
		delete(t.byIP, ip)
		if old.MAC != "" && t.byMAC[old.MAC] == old {
			delete(t.byMAC, old.MAC)
		}
	}
	if l == nil {
		delete(t.revs, ip)
		return
	}
	t.revs[ip] = rev
	if !l.claim() {
		t.put(l)
	}
}

// claim is the write that reserves ip for mac's enrollment: a shared
// store then refuses any other instance's lease of the address decided
// before it. It writes the address's record back as it is, or a claim
// record when there is none. Callers hold the inventory's lock.
func (t *leaseTable) claim(ip netip.Addr, mac string) (store.Entry, error) {
	l := t.byIP[ip]
	if l == nil {
		l = &Lease{IP: ip, MAC: mac}
	}
	data, err := l.json()
	if err != nil {
		return store.Entry{}, fmt.Errorf("encode claim of %s: %w", ip, err)
	}
	e := store.Entry{Bucket: leasesBucket, Key: ip.String(), Value: json.RawMessage(data), Rev: t.revs[ip], Claim: true}
	t.revs[ip] = store.Own
	return e, nil
}

func (t *leaseTable) reserve(ip netip.Addr, mac string) { t.reserved[ip] = mac }

// usable reports whether mac may hold ip now.
func (t *leaseTable) usable(ip netip.Addr, mac string, now time.Time) bool {
	if owner, ok := t.reserved[ip]; ok && owner != mac {
		return false
	}
	if l := t.byIP[ip]; l != nil && l.MAC != mac && l.live(now) {
		return false
	}
	if m, ok := t.offered[ip]; ok && m != mac && now.Before(t.offers[m].expires) {
		return false
	}
	return true
}

func (t *leaseTable) inRange(ip netip.Addr) bool {
	v := u32(ip)
	return ip.Is4() && t.lo != 0 && v >= t.lo && v <= t.hi
}

// free finds an address for mac in the range, scanning from a rotating
// cursor so that a just-released address is not handed straight to the next
// client (which would confuse ARP caches).
func (t *leaseTable) free(mac string, now time.Time) (netip.Addr, bool) {
	if t.lo == 0 {
		return netip.Addr{}, false
	}
	size := t.hi - t.lo + 1
	for i := uint32(0); i < size; i++ {
		v := t.lo + (t.next-t.lo+i)%size
		ip := from32(v)
		if _, reserved := t.reserved[ip]; reserved {
			continue
		}
		if t.usable(ip, mac, now) {
			t.next = t.lo + (v-t.lo+1)%size
			return ip, true
		}
	}
	return netip.Addr{}, false
}

// SpreadFrom starts this instance's scan for free addresses at a place of
// the pool that name (the instance's) hashes to. Instances sharing a pool
// through a shared store then take addresses from different parts of it,
// instead of all reaching for the lowest free one at once and all but one
// losing the race (store.ErrConflict) until their memories catch up.
func (inv *Inventory) SpreadFrom(name string) {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	t := &inv.leases
	if t.lo == 0 {
		return
	}
	h := fnv.New32a()
	h.Write([]byte(name))
	t.next = t.lo + h.Sum32()%(t.hi-t.lo+1)
}

// Offer picks the address for a DISCOVER: the node's reservation, else (when
// pool is true) the client's previous address, the one it asks for, or any
// free one. The choice is held for the client for a short while.
func (inv *Inventory) Offer(mac string, requested netip.Addr, pool bool) (netip.Addr, error) {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	now := inv.now()
	t := &inv.leases
	ip, err := inv.addressFor(mac, requested, pool, now)
	if err != nil {
		return ip, err
	}
	if err := inv.writable(); err != nil {
		// Only a client renewing what it holds can be ACKed (CommitThen).
		if l := t.byIP[ip]; l == nil || l.MAC != mac || !l.live(now) {
			return netip.Addr{}, fmt.Errorf("%w: %w", ErrNoLease, err)
		}
	}
	if o, ok := t.offers[mac]; ok && o.ip != ip {
		delete(t.offered, o.ip)
	}
	t.pruneOffers(now)
	t.offers[mac] = offer{ip: ip, expires: now.Add(offerHold)}
	t.offered[ip] = mac
	return ip, nil
}

func (inv *Inventory) addressFor(mac string, requested netip.Addr, pool bool, now time.Time) (netip.Addr, error) {
	t := &inv.leases
	if n := inv.nodes[mac]; n != nil && n.IP.IsValid() && n.State != Discovered && n.State != Retired {
		if inv.pool.Subnet.IsValid() && !inv.pool.Subnet.Contains(n.IP) {
			// Enrolled on another rack's instance, and cabled here: its
			// address would not work on this segment.
			return netip.Addr{}, fmt.Errorf("%s (%s) is reserved %s, outside this segment (%s): cabled to another rack? Retire it and enroll it here to move it",
				n.Hostname, mac, n.IP, inv.pool.Subnet)
		}
		return n.IP, nil
	}
	if !pool {
		return netip.Addr{}, ErrNoLease
	}
	if o, ok := t.offers[mac]; ok && now.Before(o.expires) && t.usable(o.ip, mac, now) {
		return o.ip, nil
	}
	if l := t.byMAC[mac]; l != nil && t.inRange(l.IP) && t.usable(l.IP, mac, now) {
		return l.IP, nil
	}
	if t.inRange(requested) && t.usable(requested, mac, now) && t.notQuarantined(requested, now) {
		return requested, nil
	}
	if ip, ok := t.free(mac, now); ok {
		return ip, nil
	}
	return netip.Addr{}, fmt.Errorf("%w: pool %s-%s is exhausted", ErrNoLease, from32(t.lo), from32(t.hi))
}

func (t *leaseTable) notQuarantined(ip netip.Addr, now time.Time) bool {
	l := t.byIP[ip]
	return l == nil || !l.Declined || !l.live(now)
}

// Commit binds ip to mac for a REQUEST and returns once the lease is
// stored, so an ACK is never sent for a lease a crash would forget. A
// client asking for an address that is not its own gets ErrWrongAddr (the
// server NAKs); a client the server has nothing for gets ErrNoLease (the
// server stays silent).
func (inv *Inventory) Commit(ctx context.Context, mac string, ip netip.Addr, pool bool) (Lease, error) {
	type result struct {
		l   Lease
		err error
	}
	done := make(chan result, 1)
	inv.CommitThen(mac, ip, pool, false, func(l Lease, err error) { done <- result{l, err} })
	r := <-done
	return r.l, r.err
}

// CommitThen is Commit without the wait, for the DHCP listener, which
// would otherwise keep a goroutine (and its wake-ups) per REQUEST: done is
// called once, with the lease once it is stored, or with Commit's error.
// A refusal calls done before CommitThen returns; otherwise done runs on
// the store's writer goroutine, so it must be quick and must not write to
// the store. now says that no other write is expected soon: the store
// then commits on the caller's goroutine if it is idle (store.PutJSONNow),
// and done has run when CommitThen returns.
//
// While the store takes no writes (etcd without quorum), a client renewing
// a lease that is still valid is answered with the lease as it is stored,
// not extended; any other REQUEST gets ErrNoLease.
func (inv *Inventory) CommitThen(mac string, ip netip.Addr, pool, now bool, done func(Lease, error)) {
	l, data, rev, err := inv.bind(mac, ip, pool)
	if err != nil || data == nil {
		done(l, err)
		return
	}
	put := inv.db.PutJSONThen
	if now {
		put = inv.db.PutJSONNow
	}
	err = put(leasesBucket, ip.String(), data, rev, func(err error) {
		if err != nil {
			done(Lease{}, fmt.Errorf("store lease %s for %s: %w", ip, mac, err))
			return
		}
		done(l, nil)
	})
	if err != nil {
		done(Lease{}, fmt.Errorf("store lease %s for %s: %w", ip, mac, err))
	}
}

// bind is Commit's change to the lease table, the lease's record, and the
// version of the record it replaces. No record: the lease is answered as
// it is (see CommitThen).
func (inv *Inventory) bind(mac string, ip netip.Addr, pool bool) (Lease, []byte, int64, error) {
	inv.mu.Lock()
	now := inv.now()
	t := &inv.leases
	want, err := inv.addressFor(mac, ip, pool, now)
	if err != nil {
		inv.mu.Unlock()
		return Lease{}, nil, 0, err
	}
	if want != ip {
		inv.mu.Unlock()
		return Lease{}, nil, 0, fmt.Errorf("%w: %s asked for %s", ErrWrongAddr, mac, ip)
	}
	if err := inv.writable(); err != nil {
		defer inv.mu.Unlock()
		if old := t.byIP[ip]; old != nil && old.MAC == mac && old.live(now) {
			return *old, nil, 0, nil
		}
		return Lease{}, nil, 0, fmt.Errorf("%w: %w", ErrNoLease, err)
	}
	rev := t.revs[ip]
	l := &Lease{MAC: mac, IP: ip, Expires: now.Add(inv.pool.Lease)}
	t.put(l)
	t.revs[ip] = store.Own
	if o, ok := t.offers[mac]; ok {
		delete(t.offered, o.ip)
		delete(t.offers, mac)
	}
	inv.mu.Unlock()
	// The write happens outside the lock so that concurrent ACKs share one
	// fsync (the store groups them).
	data, err := l.json()
	if err != nil {
		return Lease{}, nil, 0, fmt.Errorf("encode lease %s for %s: %w", ip, mac, err)
	}
	return *l, data, rev, nil
}

// Release ends mac's lease on ip now. The record stays so the client gets
// the same address back next time if it is still free.
func (inv *Inventory) Release(ctx context.Context, mac string, ip netip.Addr) error {
	return inv.endLease(mac, ip, func(l *Lease, now time.Time) { l.Expires = now })
}

// Decline quarantines ip for one lease time: the client found another host
// already using it.
func (inv *Inventory) Decline(ctx context.Context, mac string, ip netip.Addr) error {
	return inv.endLease(mac, ip, func(l *Lease, now time.Time) {
		l.MAC, l.Declined, l.Expires = "", true, now.Add(inv.pool.Lease)
	})
}

func (inv *Inventory) endLease(mac string, ip netip.Addr, change func(*Lease, time.Time)) error {
	inv.mu.Lock()
	t := &inv.leases
	old := t.byIP[ip]
	if old == nil || old.MAC != mac {
		inv.mu.Unlock()
		return fmt.Errorf("%w: %s holds no lease on %s", ErrNoLease, mac, ip)
	}
	l := *old
	change(&l, inv.now())
	if l.MAC == "" {
		delete(t.byMAC, mac)
	}
	t.put(&l)
	e := store.Entry{Bucket: leasesBucket, Key: ip.String(), Value: &l, Rev: t.revs[ip]}
	t.revs[ip] = store.Own
	done := make(chan error, 1)
	err := inv.db.PutAllThen(func(err error) { done <- err }, e)
	inv.mu.Unlock()
	if err == nil {
		err = <-done
	}
	if err != nil {
		return fmt.Errorf("store lease %s: %w", ip, err)
	}
	return nil
}

// Leases returns the lease table in address order, for the admin API.
func (inv *Inventory) Leases() []Lease {
	inv.mu.Lock()
	out := make([]Lease, 0, len(inv.leases.byIP))
	for _, l := range inv.leases.byIP {
		if !l.claim() {
			out = append(out, *l)
		}
	}
	inv.mu.Unlock()
	slices.SortFunc(out, func(a, b Lease) int { return a.IP.Compare(b.IP) })
	return out
}

func u32(a netip.Addr) uint32 {
	if !a.Is4() {
		return 0
	}
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func from32(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
