package inventory

import (
	"cmp"
	"context"
	"errors"
	"net/netip"
	"time"

	"github.com/bootstrapd/bootstrapd/internal/store"
)

// Limits bound what the network can make the inventory keep: anyone on the
// provisioning network can send DHCP from as many made-up MACs as they
// like, and each unknown MAC would otherwise be a node record and an event
// kept forever.
type Limits struct {
	MaxDiscovered int           // discovered nodes kept at once, seen on this instance's subnet (default 512); new MACs beyond it are not recorded
	DiscoveredTTL time.Duration // a discovered node not seen for this long is forgotten (default 24h)
	MaxEvents     int           // events kept in the store (default 100,000); older ones are dropped
}

// Defaults for Limits.
const (
	DefaultMaxDiscovered = 512
	DefaultDiscoveredTTL = 24 * time.Hour
	DefaultMaxEvents     = 100_000
)

// flushEvery is how long a discovered node (or a known node's new arch)
// waits in memory before it is written: one write a second, whatever the
// packet rate.
const flushEvery = time.Second

// discovery is the state behind Seen, and behind the other writes that
// may wait a second (a repeated note's count): what flush writes. Its
// owner's mutex guards it.
type discovery struct {
	count    int                // discovered nodes held
	refused  uint64             // new MACs not recorded because count was at the cap
	pending  map[string][]Event // MACs whose records wait for the next flush, with their new events
	flushing bool               // a flush is scheduled or running
}

func (d *discovery) init() { d.pending = map[string][]Event{} }

// Seen records that a MAC asked to boot. An unknown MAC becomes a
// discovered node, so the operator can enroll what actually showed up,
// unless MaxDiscovered are already held. Nothing here waits for the disk:
// new nodes and changed arches are written by the next flush, in one
// batch; the last-seen time lives in memory, written again only when the
// store's copy grows old (seenStale). A node seen on another subnet than
// before (another rack's instance saw it last) is written too.
func (inv *Inventory) Seen(ctx context.Context, mac, arch string) {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	now := inv.now()
	n := inv.nodes[mac]
	seenOn := inv.pool.Subnet
	switch {
	case n != nil && n.Arch == arch && n.SeenOn == seenOn && !inv.seenStale(n, now):
		n.LastSeen = now
		return
	case n != nil:
		next := n.clone()
		next.Arch, next.LastSeen, next.SeenOn = arch, now, seenOn
		inv.reindex(n, &next)
		inv.nodes[mac] = &next
		inv.flushLater(mac)
		return
	case inv.disc.count >= inv.Limits.MaxDiscovered:
		inv.disc.refused++
		return
	}
	next := &Node{MAC: mac, State: Discovered, Created: now, Arch: arch, LastSeen: now, SeenOn: seenOn,
		History: []Event{{At: now, To: Discovered, Cause: "seen on the network"}}}
	inv.nodes[mac] = next
	inv.reindex(nil, next)
	inv.flushLater(mac, next.History...)
	// The deadline watcher forgets it after DiscoveredTTL.
	select {
	case inv.kick <- struct{}{}:
	default:
	}
	inv.log.InfoContext(ctx, "node discovered", "mac", mac, "arch", arch)
}

// seenStale says whether a discovered node's last-seen time should be
// written again: the store's copy is half DiscoveredTTL old. Whoever
// forgets discovered nodes (after a restart, or the leader of instances
// sharing the store) goes by the store's copy, and would otherwise forget
// a node this instance still sees booting.
func (inv *Inventory) seenStale(n *Node, now time.Time) bool {
	ttl := inv.Limits.DiscoveredTTL
	return n.State == Discovered && ttl > 0 && now.Sub(n.seenStored) >= ttl/2
}

// DiscoveryRefused is how many new MACs were not recorded because
// MaxDiscovered nodes were already held (for the metric).
func (inv *Inventory) DiscoveryRefused() uint64 {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	return inv.disc.refused
}

// flushLater queues mac's record and events for the next flush. Callers
// hold mu.
func (inv *Inventory) flushLater(mac string, events ...Event) {
	inv.disc.pending[mac] = append(inv.disc.pending[mac], events...)
	if !inv.disc.flushing {
		inv.disc.flushing = true
		time.AfterFunc(flushEvery, inv.flush)
	}
}

// flush writes what Seen queued, a write per node (the store commits
// them together; a shared store can refuse one without the others). It is
// sent under the lock, so that it is written before any later save of the
// same nodes, and waited for outside it. Nodes it failed to write are
// tried again at the next flush, unless the store is shared: it reads them
// again instead. Their events are not numbered or shown until they are
// written.
func (inv *Inventory) flush() {
	inv.mu.Lock()
	d := &inv.disc
	sent := map[string][]Event{}
	var err error
	for mac, evs := range d.pending {
		n := inv.nodes[mac]
		if n == nil {
			continue
		}
		c := n.clone()
		if serr := inv.send(mac, inv.nodeEntries(&c, n.rev, evs)); serr != nil {
			err = cmp.Or(err, serr)
			continue
		}
		n.rev, n.seenStored = store.Own, c.LastSeen
		sent[mac] = evs
	}
	clear(d.pending)
	inv.unlock(&err)

	inv.mu.Lock()
	defer inv.mu.Unlock()
	d.flushing = false
	if err != nil && !errors.Is(err, ErrConflict) && !errors.Is(err, store.ErrUnavailable) { // logged by unlock
		for mac, evs := range sent {
			if inv.nodes[mac] != nil {
				d.pending[mac] = append(evs, d.pending[mac]...)
			}
		}
	}
	if len(d.pending) > 0 {
		d.flushing = true
		time.AfterFunc(flushEvery, inv.flush)
	}
}

// Flush writes what Seen has queued now, for a clean shutdown.
func (inv *Inventory) Flush() {
	inv.mu.Lock()
	queued := len(inv.disc.pending) > 0
	inv.mu.Unlock()
	if queued {
		inv.flush()
	}
}

// forget drops discovered nodes not seen for DiscoveredTTL and events
// beyond MaxEvents, and returns when the next discovered node would go.
// Callers hold mu.
func (inv *Inventory) forget(ctx context.Context, now time.Time) time.Time {
	var next time.Time
	var gone []store.Entry
	for mac, n := range inv.nodes {
		if n.State != Discovered {
			continue
		}
		if at := n.LastSeen.Add(inv.Limits.DiscoveredTTL); at.After(now) {
			if next.IsZero() || at.Before(next) {
				next = at
			}
			continue
		}
		delete(inv.nodes, mac)
		delete(inv.disc.pending, mac)
		inv.reindex(n, nil)
		gone = append(gone, store.Entry{Bucket: nodesBucket, Key: mac, Delete: true, Rev: n.rev})
	}
	// The oldest events, a bounded batch at a time.
	l := &inv.events
	l.mu.Lock()
	for ; l.seq-l.first > uint64(inv.Limits.MaxEvents) && len(gone) < 10_000; l.first++ {
		gone = append(gone, store.Entry{Bucket: eventsBucket, Key: store.SeqKey(l.first + 1), Delete: true, Rev: store.Unchecked})
	}
	l.mu.Unlock()
	// In writes a shared store takes in one transaction each.
	for len(gone) > 0 {
		k := min(len(gone), forgetBatch)
		if err := inv.send("", gone[:k]); err != nil {
			inv.log.ErrorContext(ctx, "cannot forget old discovered nodes and events", "err", err)
		}
		gone = gone[k:]
	}
	return next
}

// forgetBatch is how many records forget removes per write.
const forgetBatch = 50

// broadcast is the last address of an IPv4 prefix.
func broadcast(p netip.Prefix) netip.Addr {
	if !p.Addr().Is4() {
		return netip.Addr{}
	}
	return from32(u32(p.Masked().Addr()) | (1<<(32-p.Bits()) - 1))
}
