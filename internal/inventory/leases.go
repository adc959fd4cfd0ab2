package inventory

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"
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
	if cur := t.byMAC[l.MAC]; l.MAC != "" && cur != nil && cur.IP != l.IP && !l.Expires.After(cur.Expires) {
		return
	}
	t.put(l)
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

// Commit binds ip to mac for a REQUEST and returns once the lease is on disk,
// so an ACK is never sent for a lease a crash would forget. A client asking
// for an address that is not its own gets ErrWrongAddr (the server NAKs); a
// client the server has nothing for gets ErrNoLease (the server stays silent).
func (inv *Inventory) Commit(ctx context.Context, mac string, ip netip.Addr, pool bool) (Lease, error) {
	l, data, err := inv.bind(mac, ip, pool)
	if err != nil {
		return Lease{}, err
	}
	if err := inv.db.PutJSON(leasesBucket, ip.String(), data); err != nil {
		return Lease{}, fmt.Errorf("persist lease %s for %s: %w", ip, mac, err)
	}
	return l, nil
}

// CommitThen is Commit without the wait, for the DHCP listener, which
// would otherwise keep a goroutine (and its wake-ups) per REQUEST: done is
// called once, with the lease once it is on disk, or with Commit's error.
// A refusal calls done before CommitThen returns; otherwise done runs on
// the store's writer goroutine, so it must be quick and must not write to
// the store. now says that no other write is expected soon: the store
// then commits on the caller's goroutine if it is idle (store.PutJSONNow),
// and done has run when CommitThen returns.
func (inv *Inventory) CommitThen(mac string, ip netip.Addr, pool, now bool, done func(Lease, error)) {
	l, data, err := inv.bind(mac, ip, pool)
	if err != nil {
		done(Lease{}, err)
		return
	}
	put := inv.db.PutJSONThen
	if now {
		put = inv.db.PutJSONNow
	}
	err = put(leasesBucket, ip.String(), data, func(err error) {
		if err != nil {
			done(Lease{}, fmt.Errorf("persist lease %s for %s: %w", ip, mac, err))
			return
		}
		done(l, nil)
	})
	if err != nil {
		done(Lease{}, fmt.Errorf("persist lease %s for %s: %w", ip, mac, err))
	}
}

// bind is Commit's change to the lease table, and the lease's record.
func (inv *Inventory) bind(mac string, ip netip.Addr, pool bool) (Lease, []byte, error) {
	inv.mu.Lock()
	now := inv.now()
	t := &inv.leases
	want, err := inv.addressFor(mac, ip, pool, now)
	if err != nil {
		inv.mu.Unlock()
		return Lease{}, nil, err
	}
	if want != ip {
		inv.mu.Unlock()
		return Lease{}, nil, fmt.Errorf("%w: %s asked for %s", ErrWrongAddr, mac, ip)
	}
	l := &Lease{MAC: mac, IP: ip, Expires: now.Add(inv.pool.Lease)}
	t.put(l)
	if o, ok := t.offers[mac]; ok {
		delete(t.offered, o.ip)
		delete(t.offers, mac)
	}
	inv.mu.Unlock()
	// The write happens outside the lock so that concurrent ACKs share one
	// fsync (the store groups them).
	data, err := l.json()
	if err != nil {
		return Lease{}, nil, fmt.Errorf("encode lease %s for %s: %w", ip, mac, err)
	}
	return *l, data, nil
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
	inv.mu.Unlock()
	return inv.db.Put(leasesBucket, ip.String(), &l)
}

// Leases returns the lease table in address order, for the admin API.
func (inv *Inventory) Leases() []Lease {
	inv.mu.Lock()
	out := make([]Lease, 0, len(inv.leases.byIP))
	for _, l := range inv.leases.byIP {
		out = append(out, *l)
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
