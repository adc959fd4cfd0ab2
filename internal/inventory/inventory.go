// Package inventory is bootstrapd's core: the nodes, their leases and install
// tokens, and the rules for how they change. It knows nothing of sockets;
// DHCP, TFTP, HTTP and the admin API all call into it.
package inventory

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/bootstrapd/bootstrapd/internal/store"
)

const (
	nodesBucket  = "nodes"
	leasesBucket = "leases"
)

// Buckets are what the inventory keeps in its store (for store.Copy).
func Buckets() []store.Bucket {
	return []store.Bucket{{Name: nodesBucket}, {Name: leasesBucket}, {Name: eventsBucket, Numbered: true}}
}

// Errors callers branch on.
var (
	ErrNotFound = errors.New("no such node")
	ErrConflict = errors.New("conflict")
	ErrToken    = errors.New("install token refused")
)

// Pool is the address space the inventory hands out.
type Pool struct {
	Subnet netip.Prefix
	Range  [2]netip.Addr
	Lease  time.Duration
}

// Store is where the inventory keeps what it holds: store.DB (a bbolt
// file, this instance's alone) or store.Etcd (shared with other instances).
type Store interface {
	store.Ranger
	// PutAllThen sends entries as one transaction, behind every write
	// sent before; then is called when it is durable or has failed.
	PutAllThen(then func(error), entries ...store.Entry) error
	// PutJSONThen and PutJSONNow are PutAllThen for one lease, which the
	// DHCP server writes per ACK (see store.DB).
	PutJSONThen(bucket, key string, data []byte, rev int64, then func(error)) error
	PutJSONNow(bucket, key string, data []byte, rev int64, then func(error)) error
	// Follow tells fn of each event once committed, in number order, and
	// (from a shared store) of what other instances write.
	Follow(fn func([]store.Change))
}

// healthy is a Store that can say it takes no writes (store.Etcd without
// quorum), so that the inventory refuses what it cannot store at once
// instead of after a timeout.
type healthy interface{ Healthy() error }

// Inventory holds every node and lease in memory, backed by the store. One
// mutex guards both: they are read on every DHCP packet, and a lease must
// never be given to one MAC while it is reserved for another. When other
// instances share the store, what they write reaches memory through
// follow, and a write made from a version of a record that another
// instance has replaced fails (store.ErrConflict) rather than overwrite it.
type Inventory struct {
	db   Store
	log  *slog.Logger
	pool Pool
	now  func() time.Time

	mu     sync.Mutex
	sent   []sent // writes sent under mu, waited for by unlock
	nodes  map[string]*Node
	tokens map[[sha256.Size]byte]string // install token hash -> MAC
	leases leaseTable
	events eventLog
	kick   chan struct{} // wakes the deadline watcher when a deadline changes
	disc   discovery

	// OnMove, when set, is told how long each node spent in a state it
	// has just left (for the state-duration metric). It runs under the
	// inventory's lock and must be quick.
	OnMove func(from, to State, spent time.Duration)
	// RetireSteps, when set, makes Retire stop at retiring with the steps
	// it names for the node pending on it: the caller tears the node down
	// (drain, revoke, delete keys), marks each step with StepDone, and
	// then calls FinishRetire.
	RetireSteps func(Node) []string
	// Limits bound what the network can make the inventory keep; Open
	// sets the defaults.
	Limits Limits
	// Retrier, when set, is asked to retry an install that missed its
	// deadline before the node is failed.
	Retrier InstallRetrier
}

// Open loads the inventory from db, and follows it from then on.
func Open(db Store, pool Pool, log *slog.Logger) (*Inventory, error) {
	inv := &Inventory{db: db, log: log, pool: pool, now: time.Now, nodes: map[string]*Node{}, tokens: map[[sha256.Size]byte]string{},
		kick: make(chan struct{}, 1)}
	inv.disc.init()
	inv.Limits = Limits{MaxDiscovered: DefaultMaxDiscovered, DiscoveredTTL: DefaultDiscoveredTTL, MaxEvents: DefaultMaxEvents}
	inv.leases.init(pool)
	if err := inv.events.init(db); err != nil {
		return nil, fmt.Errorf("load events: %w", err)
	}
	err := db.Range(nodesBucket, "", func(k string, data []byte, rev int64) error {
		n, err := decodeNode(k, data, rev)
		if err != nil {
			return err
		}
		inv.reindex(nil, n)
		inv.nodes[n.MAC] = n
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load nodes: %w", err)
	}
	err = db.Range(leasesBucket, "", func(k string, data []byte, rev int64) error {
		l, err := decodeLease(k, data, rev)
		if err != nil {
			return err
		}
		inv.leases.load(l)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load leases: %w", err)
	}
	db.Follow(inv.follow)
	return inv, nil
}

func decodeNode(key string, data []byte, rev int64) (*Node, error) {
	n := &Node{}
	if err := json.Unmarshal(data, n); err != nil {
		return nil, fmt.Errorf("decode %s/%s: %w", nodesBucket, key, err)
	}
	n.rev, n.seenStored = rev, n.LastSeen
	return n, nil
}

// countsAsDiscovered says whether n counts against this instance's
// MaxDiscovered: discovered nodes seen on its own subnet. Racks sharing
// an inventory each have the cap, so a flood of made-up MACs on one rack
// does not stop discovery on the others.
func (inv *Inventory) countsAsDiscovered(n *Node) bool {
	// (A record from before nodes said where they were seen counts too.)
	return n.State == Discovered && (n.SeenOn == inv.pool.Subnet || !n.SeenOn.IsValid())
}

// reindex keeps the indexes in step with a node changing from prev to n
// (prev nil: added; n nil: removed): its install token, the discovered
// count, and its reservation. A node reserves its address from enrollment
// until it is retired. Callers hold mu.
func (inv *Inventory) reindex(prev, n *Node) {
	t := &inv.leases
	if prev != nil {
		if len(prev.TokenHash) == sha256.Size {
			if k := [sha256.Size]byte(prev.TokenHash); inv.tokens[k] == prev.MAC {
				delete(inv.tokens, k)
			}
		}
		if inv.countsAsDiscovered(prev) {
			inv.disc.count--
		}
		if t.reserved[prev.IP] == prev.MAC {
			delete(t.reserved, prev.IP)
		}
	}
	if n == nil {
		return
	}
	if len(n.TokenHash) == sha256.Size {
		inv.tokens[[sha256.Size]byte(n.TokenHash)] = n.MAC
	}
	if inv.countsAsDiscovered(n) {
		inv.disc.count++
	}
	if n.IP.IsValid() && n.State != Retired && n.State != Discovered {
		t.reserve(n.IP, n.MAC)
	}
}

// Node returns a copy of the node with this MAC.
func (inv *Inventory) Node(mac string) (Node, bool) {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	n, ok := inv.nodes[mac]
	if !ok {
		return Node{}, false
	}
	return n.clone(), true
}

// DHCPNode is what a DHCP reply needs of a node: a copy of these fields
// only, where Node would copy the node's whole history for every packet.
type DHCPNode struct {
	Hostname string
	IP       netip.Addr
	BootFile string
}

// DHCPNode returns what the DHCP server needs of the node with mac, if any.
func (inv *Inventory) DHCPNode(mac string) (DHCPNode, bool) {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	n, ok := inv.nodes[mac]
	if !ok {
		return DHCPNode{}, false
	}
	return DHCPNode{Hostname: n.Hostname, IP: n.IP, BootFile: n.BootFile}, true
}

// Find looks a node up by MAC (any notation) or hostname.
func (inv *Inventory) Find(ref string) (Node, error) {
	if mac, err := ParseMAC(ref); err == nil {
		if n, ok := inv.Node(mac); ok {
			return n, nil
		}
	}
	inv.mu.Lock()
	defer inv.mu.Unlock()
	// A retired node's hostname may have been given to a new node; the
	// name means the live one.
	var retired *Node
	for _, n := range inv.nodes {
		if !strings.EqualFold(n.Hostname, ref) {
			continue
		}
		if n.State != Retired {
			return n.clone(), nil
		}
		retired = n
	}
	if retired != nil {
		return retired.clone(), nil
	}
	return Node{}, fmt.Errorf("%w: %q is neither a known MAC nor a hostname", ErrNotFound, ref)
}

// Nodes returns every node, sorted by hostname then MAC.
func (inv *Inventory) Nodes() []Node {
	inv.mu.Lock()
	out := make([]Node, 0, len(inv.nodes))
	for _, n := range inv.nodes {
		out = append(out, n.clone())
	}
	inv.mu.Unlock()
	slices.SortFunc(out, func(a, b Node) int {
		if c := strings.Compare(a.Hostname, b.Hostname); c != 0 {
			return c
		}
		return strings.Compare(a.MAC, b.MAC)
	})
	return out
}

// EnrollRequest is what an operator asks for; empty fields are chosen.
type EnrollRequest struct {
	MAC        string
	Hostname   string
	IP         netip.Addr
	Profile    string
	BootMethod string
	Labels     map[string]string
	// BMC, when set, is the node's controller (checked with ParseBMC).
	BMC   *BMC
	Actor string
}

// Enroll adds a node, or enrolls a discovered one, picking a hostname and an
// address when none is given. A MAC, hostname or IP that another node holds
// is refused with the other node's name, so the operator knows what to fix.
func (inv *Inventory) Enroll(ctx context.Context, req EnrollRequest) (_ Node, err error) {
	mac, err := ParseMAC(req.MAC)
	if err != nil {
		return Node{}, err
	}
	for k, v := range req.Labels {
		if err := validLabel(k, v); err != nil {
			return Node{}, err
		}
	}
	if req.BootMethod == "" {
		req.BootMethod = BootExit
	}
	if err := checkBootMethod(req.BootMethod); err != nil {
		return Node{}, err
	}
	if req.BMC != nil {
		b, err := ParseBMC(req.BMC.URL, req.BMC.Credentials)
		if err != nil {
			return Node{}, err
		}
		req.BMC = &b
	}
	if req.Hostname != "" && !validHostname(req.Hostname) {
		return Node{}, fmt.Errorf("hostname %q is not a DNS label (letters, digits and '-', at most 63, not starting or ending with '-')", req.Hostname)
	}
	if err := inv.writable(); err != nil {
		return Node{}, err
	}
	inv.mu.Lock()
	defer inv.unlock(&err)
	n := inv.nodes[mac]
	if n != nil && n.State == Failed {
		return Node{}, fmt.Errorf("%w: %s (%s) failed: %s; run `bootstrapd reinstall %s`, or retire it to enroll it afresh", ErrConflict, n.Hostname, mac, n.Reason, n.Hostname)
	}
	if n != nil && n.State != Discovered && n.State != Retired {
		return Node{}, fmt.Errorf("%w: %s is already enrolled as %s (%s)", ErrConflict, mac, n.Hostname, n.State)
	}
	for _, o := range inv.nodes {
		if o.MAC == mac || o.State == Retired {
			continue
		}
		if req.Hostname != "" && strings.EqualFold(o.Hostname, req.Hostname) {
			return Node{}, fmt.Errorf("%w: hostname %s is taken by %s", ErrConflict, req.Hostname, o.MAC)
		}
		if req.IP.IsValid() && o.IP == req.IP {
			return Node{}, fmt.Errorf("%w: address %s is reserved for %s (%s)", ErrConflict, req.IP, o.Hostname, o.MAC)
		}
	}
	if req.Hostname == "" {
		req.Hostname = inv.freeHostname()
	}
	if req.IP.IsValid() {
		if !inv.pool.Subnet.Contains(req.IP) {
			return Node{}, fmt.Errorf("address %s is outside the DHCP subnet %s", req.IP, inv.pool.Subnet)
		}
		if req.IP == inv.pool.Subnet.Masked().Addr() || req.IP == broadcast(inv.pool.Subnet) {
			return Node{}, fmt.Errorf("address %s is the network or broadcast address of %s; give a host address", req.IP, inv.pool.Subnet)
		}
		if l := inv.leases.byIP[req.IP]; l != nil && l.MAC != mac && l.live(inv.now()) {
			return Node{}, fmt.Errorf("%w: address %s is leased to %s until %s", ErrConflict, req.IP, l.MAC, l.Expires.Format(time.RFC3339))
		}
	} else if n != nil && n.SeenOn.IsValid() && n.SeenOn != inv.pool.Subnet {
		// Another rack's instance saw it last: an address from this
		// one's pool would be one the node's segment cannot use.
		return Node{}, fmt.Errorf("%s was last seen on %s, which this instance does not serve (it serves %s): enroll it on an instance serving %s, or here with -ip if it is moving to this segment",
			mac, n.SeenOn, inv.pool.Subnet, n.SeenOn)
	} else if inv.pool.Subnet.IsValid() {
		ip, ok := inv.leases.free(mac, inv.now())
		if !ok {
			return Node{}, fmt.Errorf("no free address left in %s-%s to reserve", inv.pool.Range[0], inv.pool.Range[1])
		}
		req.IP = ip
	}
	now := inv.now()
	next := &Node{Created: now}
	if n != nil {
		*next = n.clone()
	}
	next.MAC, next.Hostname, next.IP, next.Profile, next.BootMethod = mac, req.Hostname, req.IP, req.Profile, req.BootMethod
	next.Labels = maps.Clone(req.Labels)
	next.BMC = req.BMC
	next.Reason, next.InstallRetries = "", 0
	from := next.State
	next.State = Enrolled
	next.History = append(next.History, Event{At: now, From: from, To: Enrolled, Cause: "enroll", Actor: req.Actor})
	var claim []store.Entry
	if req.IP.IsValid() {
		// So that no other instance leases the address meanwhile.
		c, err := inv.leases.claim(req.IP, mac)
		if err != nil {
			return Node{}, err
		}
		claim = append(claim, c)
	}
	if err := inv.save(next, claim...); err != nil {
		return Node{}, err
	}
	inv.log.InfoContext(ctx, "node enrolled", "mac", mac, "hostname", next.Hostname, "ip", next.IP, "profile", next.Profile)
	return next.clone(), nil
}

// validHostname reports whether h is one DNS label (RFC 1123). The name
// becomes <name>.<domain> on the router and is written into iPXE scripts and
// kernel command lines, where a space or a newline would change their meaning.
// validLabel keeps label keys to names that are safe anywhere (Nomad meta,
// HCL, shell variables) and values to one printable line.
func validLabel(k, v string) error {
	if k == "" || len(k) > 63 || strings.TrimLeft(k, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") != "" {
		return fmt.Errorf("label %q: keys are letters, digits, '_', '.' and '-', up to 63", k)
	}
	if len(v) > 255 || strings.IndexFunc(v, unicode.IsControl) >= 0 {
		return fmt.Errorf("label %s: values are one line of at most 255 characters", k)
	}
	return nil
}

func validHostname(h string) bool {
	if len(h) == 0 || len(h) > 63 || h[0] == '-' || h[len(h)-1] == '-' {
		return false
	}
	for _, c := range h {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

func (inv *Inventory) freeHostname() string {
	taken := map[string]bool{}
	for _, n := range inv.nodes {
		taken[strings.ToLower(n.Hostname)] = true
	}
	for i := 1; ; i++ {
		if h := fmt.Sprintf("n%d", i); !taken[h] {
			return h
		}
	}
}

// Move makes a checked transition and records it.
func (inv *Inventory) Move(ctx context.Context, mac string, to State, cause, actor string) (Node, error) {
	return inv.moveWith(ctx, mac, to, cause, actor, nil)
}

// moveWith is Move that also changes the node with also (when not nil) in
// the same write.
func (inv *Inventory) moveWith(ctx context.Context, mac string, to State, cause, actor string, also func(*Node)) (_ Node, err error) {
	inv.mu.Lock()
	defer inv.unlock(&err)
	n := inv.nodes[mac]
	if n == nil {
		return Node{}, fmt.Errorf("%w: %s", ErrNotFound, mac)
	}
	next := n.clone()
	if err := next.move(inv.now(), to, cause, actor); err != nil {
		return Node{}, err
	}
	if also != nil {
		also(&next)
	}
	if err := inv.save(&next); err != nil {
		return Node{}, err
	}
	inv.log.InfoContext(ctx, "node state", "mac", mac, "hostname", n.Hostname, "from", n.State, "to", to, "cause", cause)
	return next.clone(), nil
}

func (n *Node) move(now time.Time, to State, cause, actor string) error {
	if !CanMove(n.State, to) {
		return fmt.Errorf("%w: %s cannot go from %s to %s", ErrConflict, n.MAC, n.State, to)
	}
	n.History = append(n.History, Event{At: now, From: n.State, To: to, Cause: cause, Actor: actor})
	n.State = to
	n.Deadline = time.Time{}
	n.Pending = nil // steps belong to one retirement
	if to == Failed {
		n.Reason = cause
	}
	if to != Installing {
		n.TokenHash, n.TokenExpires, n.TokenAddr = nil, time.Time{}, netip.Addr{}
	}
	if to == Enrolled {
		// A fresh install: a new bundle may be claimed, and the operator
		// who asked for it has seen the alert.
		n.JoinClaimed, n.Alert = time.Time{}, ""
	}
	return nil
}

// note records an event that changes nothing else. Callers hold mu.
func (inv *Inventory) note(n *Node, ev Event) {
	next := n.clone()
	inv.noteOn(&next, ev)
}

// noteOn adds ev to next (a clone of the stored node, maybe changed) and
// saves it. A note that repeats the last one (a client retrying a refused
// request, say) is counted on it, not appended: whatever the network
// sends, a node's history keeps its transitions. Callers hold mu.
func (inv *Inventory) noteOn(next *Node, ev Event) {
	if k := len(next.History) - 1; k >= 0 {
		last := &next.History[k]
		if last.To == "" && last.From == "" && last.Cause == ev.Cause && last.Actor == ev.Actor {
			last.Count = max(last.Count, 1) + 1
			last.At = ev.At
			if prev := inv.nodes[next.MAC]; prev != nil && prev.State == next.State && bytes.Equal(prev.TokenHash, next.TokenHash) {
				// Only a count and a time changed: written by the next
				// flush, so a client repeating a refused request costs
				// one write a second, not one per request.
				inv.nodes[next.MAC] = next
				inv.flushLater(next.MAC)
				return
			}
			ev = Event{}
		}
	}
	if ev.Cause != "" {
		next.History = append(next.History, ev)
	}
	if err := inv.save(next); err != nil {
		inv.log.Error("record event", "mac", next.MAC, "err", err)
	}
}

// maxHistory bounds a node's event list: notes from a hostile client must
// not grow a record (and every write of it) without limit. Notes go first
// when it is full; transitions are kept.
const maxHistory = 200

// trimHistory drops the oldest notes, then if need be the oldest
// transitions, until at most maxHistory events remain.
func trimHistory(h []Event) []Event {
	over := len(h) - maxHistory
	if over <= 0 {
		return h
	}
	out := make([]Event, 0, maxHistory)
	for _, e := range h {
		if over > 0 && e.To == "" {
			over--
			continue
		}
		out = append(out, e)
	}
	return out[max(0, len(out)-maxHistory):]
}

// save makes n the node, in memory at once, and sends it, the events it
// gained since it was last saved and also to the store, in one
// transaction. n must be a new value, not the stored one changed in
// place. Callers hold mu and release it with unlock, which waits for the
// write to be durable: the lock every DHCP reply takes is never held
// across a disk write, and node writes made at once share one commit, as
// leases do. Until it is durable a change is seen by readers of the
// inventory, not by followers of the event log (the store numbers events
// when it commits them); whoever made it is not answered until it is.
func (inv *Inventory) save(n *Node, also ...store.Entry) error {
	prev := inv.nodes[n.MAC]
	fresh := n.History
	var rev int64
	if prev != nil {
		fresh = n.History[min(len(prev.History), len(n.History)):]
		rev = prev.rev
	}
	// Events waiting for the flush go with this write, before the new ones.
	fresh = append(inv.disc.pending[n.MAC], fresh...)
	delete(inv.disc.pending, n.MAC)
	n.History = trimHistory(n.History)
	entries := append(inv.nodeEntries(n, rev, fresh), also...)
	if err := inv.send(n.MAC, entries); err != nil {
		return fmt.Errorf("save node %s: %w", n.MAC, err)
	}
	n.rev = store.Own
	if prev != nil && prev.State != n.State && inv.OnMove != nil {
		inv.OnMove(prev.State, n.State, n.entered().Sub(prev.entered()))
	}
	inv.kickIf(prev, n)
	inv.reindex(prev, n)
	inv.nodes[n.MAC] = n
	return nil
}

// nodeEntries are the writes of n, stored from version rev, and its events.
func (inv *Inventory) nodeEntries(n *Node, rev int64, events []Event) []store.Entry {
	entries := []store.Entry{{Bucket: nodesBucket, Key: n.MAC, Value: n, Rev: rev}}
	for _, e := range events {
		entries = append(entries, store.Entry{Bucket: eventsBucket, Numbered: true, Value: LogEvent{MAC: n.MAC, Hostname: n.Hostname, Event: e}})
	}
	return entries
}

// kickIf wakes the deadline watcher when a node's deadline changed.
func (inv *Inventory) kickIf(prev, n *Node) {
	if prev == nil || n == nil || !prev.Deadline.Equal(n.Deadline) {
		select {
		case inv.kick <- struct{}{}:
		default:
		}
	}
}

// sent is a write sent to the store under mu and not yet waited for.
type sent struct {
	mac  string // the node written, or "" when the write is not one node's
	done chan error
}

// send queues entries for the store behind every write sent before;
// unlock waits for them. Callers hold mu, which keeps the order of sends
// that of the decisions.
func (inv *Inventory) send(mac string, entries []store.Entry) error {
	done := make(chan error, 1)
	if err := inv.db.PutAllThen(func(err error) { done <- err }, entries...); err != nil {
		return err
	}
	inv.sent = append(inv.sent, sent{mac: mac, done: done})
	return nil
}

// unlock releases mu, then waits for the writes sent under it. The first
// failure goes into *err when err is not nil and *err is. A write that
// failed on the disk is logged, and its node is written again by the next
// flush (its change stays in memory: a later change of the node may build
// on it). One that a shared store refused (another instance changed a
// record first) or could not make (etcd unreachable) is not tried again:
// the store reads its records again and follow puts them in memory as
// they are stored.
func (inv *Inventory) unlock(err *error) {
	writes := inv.sent
	inv.sent = nil
	inv.mu.Unlock()
	var failed []string
	for _, w := range writes {
		werr := <-w.done
		if werr == nil {
			continue
		}
		what := cmp.Or(w.mac, "inventory")
		shared := errors.Is(werr, store.ErrConflict) || errors.Is(werr, store.ErrUnavailable)
		switch {
		case errors.Is(werr, store.ErrConflict):
			werr = fmt.Errorf("%w: save %s: %w; look again and retry", ErrConflict, what, werr)
		case shared:
			werr = fmt.Errorf("save %s: %w; it may not have been stored, and is read again from etcd when it answers", what, werr)
		default:
			inv.log.Error("store write failed; kept in memory and written again by the next flush", "mac", w.mac, "err", werr)
			if w.mac != "" {
				failed = append(failed, w.mac)
			}
			werr = fmt.Errorf("save %s: %w (kept in memory; written again within %s)", what, werr, flushEvery)
		}
		if shared {
			inv.log.Warn("store write not made", "mac", w.mac, "err", werr)
		}
		if err != nil && *err == nil {
			*err = werr
		}
	}
	if len(failed) > 0 {
		inv.mu.Lock()
		for _, mac := range failed {
			if inv.nodes[mac] != nil {
				inv.flushLater(mac)
			}
		}
		inv.mu.Unlock()
	}
}

// writable says why the store takes no writes now (etcd without quorum),
// or nil.
func (inv *Inventory) writable() error {
	if h, ok := inv.db.(healthy); ok {
		if err := h.Healthy(); err != nil {
			return fmt.Errorf("the store takes no writes now (%w); enrollments and new leases resume when it does", err)
		}
	}
	return nil
}

func (n *Node) clone() Node {
	c := *n
	c.History = slices.Clone(n.History)
	c.TokenHash = slices.Clone(n.TokenHash)
	c.Labels = maps.Clone(n.Labels)
	c.Pending = slices.Clone(n.Pending)
	if n.BMC != nil {
		b := *n.BMC
		c.BMC = &b
	}
	return c
}
