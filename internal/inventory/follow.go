package inventory

import (
	"encoding/json"
	"net/netip"

	"github.com/bootstrapd/bootstrapd/internal/store"
)

// follow takes what the store has committed: events, to show, and from a
// store shared with other instances, the nodes and leases they wrote (or
// this instance's own records as they are stored, after a write of them
// failed). Those replace what memory holds, with their indexes, before the
// events that came with them are shown: a follower woken by an event finds
// its change in the inventory.
func (inv *Inventory) follow(cs []store.Change) {
	var events []LogEvent
	locked := false
	for _, c := range cs {
		if c.Bucket == eventsBucket {
			var e LogEvent
			if err := json.Unmarshal(c.Value, &e); err != nil {
				inv.log.Error("event in the store does not decode; not shown", "seq", c.Seq, "err", err)
				continue
			}
			e.Seq = c.Seq
			events = append(events, e)
			continue
		}
		if !locked {
			inv.mu.Lock()
			locked = true
		}
		switch c.Bucket {
		case nodesBucket:
			inv.applyNode(c)
		case leasesBucket:
			inv.applyLease(c)
		}
	}
	if locked {
		inv.mu.Unlock()
	}
	if len(events) > 0 {
		inv.events.show(events)
	}
}

// applyNode makes memory hold the node as stored. Callers hold mu.
func (inv *Inventory) applyNode(c store.Change) {
	prev := inv.nodes[c.Key]
	if c.Value == nil {
		if prev != nil {
			inv.reindex(prev, nil)
			delete(inv.nodes, c.Key)
			delete(inv.disc.pending, c.Key)
		}
		return
	}
	n, err := decodeNode(c.Key, c.Value, c.Rev)
	if err != nil || n.MAC != c.Key {
		inv.log.Error("node written by another instance does not decode; keeping the one held", "key", c.Key, "err", err)
		return
	}
	// What this instance had yet to flush of it was decided from what
	// it replaces.
	delete(inv.disc.pending, n.MAC)
	if prev != nil && prev.LastSeen.After(n.LastSeen) {
		n.LastSeen = prev.LastSeen // kept in memory only, by each instance
	}
	inv.kickIf(prev, n)
	inv.reindex(prev, n)
	inv.nodes[n.MAC] = n
}

// applyLease makes the lease table hold the address's record as stored.
// Callers hold mu.
func (inv *Inventory) applyLease(c store.Change) {
	ip, err := netip.ParseAddr(c.Key)
	if err != nil {
		inv.log.Error("lease key written by another instance is not an address; ignored", "key", c.Key)
		return
	}
	if c.Value == nil {
		inv.leases.apply(ip, nil, 0)
		return
	}
	l, err := decodeLease(c.Key, c.Value, c.Rev)
	if err != nil {
		inv.log.Error("lease written by another instance does not decode; keeping the one held", "key", c.Key, "err", err)
		return
	}
	inv.leases.apply(ip, l, c.Rev)
}
