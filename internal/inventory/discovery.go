package inventory

import (
	"context"
	"net/netip"
	"time"

	"github.com/bootstrapd/bootstrapd/internal/store"
)

// Limits bound what the network can make the inventory keep: anyone on the
// provisioning network can send DHCP from as many made-up MACs as they
// like, and each unknown MAC would otherwise be a node record and an event
// kept forever.
type Limits struct {
	MaxDiscovered int           // discovered nodes kept at once (default 512); new MACs beyond it are not recorded
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
	count    int             // discovered nodes held
	refused  uint64          // new MACs not recorded because count was at the cap
	pending  map[string]bool // MACs whose records wait for the next flush
	events   []LogEvent      // events numbered and shown, not yet stored
	flushing bool            // a flush is scheduled or running
}

func (d *discovery) init() { d.pending = map[string]bool{} }

// saved keeps the count in step with a node being saved (prev is the
// stored value, nil for a new node).
func (d *discovery) saved(prev, next *Node) {
	if prev != nil && prev.State == Discovered {
		d.count--
	}
	if next.State == Discovered {
		d.count++
	}
	// save writes next itself, durably: nothing of it is left to flush.
	delete(d.pending, next.MAC)
}

// Seen records that a MAC asked to boot. An unknown MAC becomes a
// discovered node, so the operator can enroll what actually showed up,
// unless MaxDiscovered are already held. Nothing here waits for the disk:
// new nodes and changed arches are written by the next flush, in one
// batch; the last-seen time lives in memory.
func (inv *Inventory) Seen(ctx context.Context, mac, arch string) {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	now := inv.now()
	n := inv.nodes[mac]
	switch {
	case n != nil && n.Arch == arch:
		n.LastSeen = now
		return
	case n != nil:
		next := n.clone()
		next.Arch, next.LastSeen = arch, now
		inv.nodes[mac] = &next
		inv.flushLater(mac, nil)
		return
	case inv.disc.count >= inv.Limits.MaxDiscovered:
		inv.disc.refused++
		return
	}
	next := &Node{MAC: mac, State: Discovered, Created: now, Arch: arch, LastSeen: now,
		History: []Event{{At: now, To: Discovered, Cause: "seen on the network"}}}
	b := inv.events.number(next, next.History)
	inv.nodes[mac] = next
	inv.disc.count++
	inv.flushLater(mac, b.events)
	inv.events.done(b, nil) // shown now, written by the flush
	// The deadline watcher forgets it after DiscoveredTTL.
	select {
	case inv.kick <- struct{}{}:
	default:
	}
	inv.log.InfoContext(ctx, "node discovered", "mac", mac, "arch", arch)
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
func (inv *Inventory) flushLater(mac string, logged []LogEvent) {
	inv.disc.pending[mac] = true
	inv.disc.events = append(inv.disc.events, logged...)
	if !inv.disc.flushing {
		inv.disc.flushing = true
		time.AfterFunc(flushEvery, inv.flush)
	}
}

// flush writes what Seen queued, in one transaction. It is sent under the
// lock, so that it is written before any later save of the same nodes, and
// waited for outside it. Nodes it failed to write are tried again at the
// next flush; their events are lost from the log (they were shown).
func (inv *Inventory) flush() {
	inv.mu.Lock()
	d := &inv.disc
	entries := make([]store.Entry, 0, len(d.pending)+len(d.events))
	for mac := range d.pending {
		if n := inv.nodes[mac]; n != nil {
			c := n.clone()
			entries = append(entries, store.Entry{Bucket: nodesBucket, Key: mac, Value: &c})
		}
	}
	for _, e := range d.events {
		entries = append(entries, store.Entry{Bucket: eventsBucket, Key: eventKey(e.Seq), Value: e})
	}
	clear(d.pending)
	d.events = nil
	var err error
	if len(entries) > 0 {
		err = inv.send("", nil, entries)
	}
	inv.unlock(&err)

	inv.mu.Lock()
	defer inv.mu.Unlock()
	d.flushing = false
	if err != nil { // logged by unlock
		for _, e := range entries {
			if e.Bucket == nodesBucket && inv.nodes[e.Key] != nil {
				d.pending[e.Key] = true
			}
		}
	}
	if len(d.pending) > 0 || len(d.events) > 0 {
		d.flushing = true
		time.AfterFunc(flushEvery, inv.flush)
	}
}

// Flush writes what Seen has queued now, for a clean shutdown.
func (inv *Inventory) Flush() {
	inv.mu.Lock()
	queued := len(inv.disc.pending) > 0 || len(inv.disc.events) > 0
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
		inv.disc.count--
		gone = append(gone, store.Entry{Bucket: nodesBucket, Key: mac, Delete: true})
	}
	// The oldest events, a bounded batch at a time.
	for l := &inv.events; l.seq-l.first > uint64(inv.Limits.MaxEvents) && len(gone) < 10_000; l.first++ {
		gone = append(gone, store.Entry{Bucket: eventsBucket, Key: eventKey(l.first + 1), Delete: true})
	}
	if len(gone) > 0 {
		if err := inv.send("", nil, gone); err != nil {
			inv.log.ErrorContext(ctx, "cannot forget old discovered nodes and events", "err", err)
		}
	}
	return next
}

// broadcast is the last address of an IPv4 prefix.
func broadcast(p netip.Prefix) netip.Addr {
	if !p.Addr().Is4() {
		return netip.Addr{}
	}
	return from32(u32(p.Masked().Addr()) | (1<<(32-p.Bits()) - 1))
}
