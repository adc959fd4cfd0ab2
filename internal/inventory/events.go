package inventory

import (
	"encoding/binary"

	"github.com/bootstrapd/bootstrapd/internal/store"
)

const eventsBucket = "events"

// LogEvent is an Event in the site-wide log: every transition and report of
// every node, numbered, so `bootstrapd events -f` and `enroll -wait` can
// follow it and resume where they left off.
type LogEvent struct {
	Seq      uint64 `json:"seq"`
	MAC      string `json:"mac"`
	Hostname string `json:"hostname,omitempty"`
	Event
}

// recentEvents is how many events are kept in memory for followers; older
// ones are read from the store.
const recentEvents = 1000

// eventLog numbers events and wakes followers. Its owner's mutex guards it.
type eventLog struct {
	seq     uint64
	first   uint64 // events after this one are in the store
	recent  []LogEvent
	changed chan struct{} // closed (and replaced) when an event is added
	// nodes is closed (and replaced) when an event about a node that is
	// not merely discovered is added: what the router sync and the retirer
	// follow, so that a flood of new MACs does not make them re-read
	// every node for each.
	nodes chan struct{}
}

func eventKey(seq uint64) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], seq)
	return string(b[:])
}

func (l *eventLog) init(db *store.DB) error {
	l.changed, l.nodes = make(chan struct{}), make(chan struct{})
	return store.Load(db, eventsBucket, func(_ string, e LogEvent) error {
		if l.seq == 0 {
			l.first = e.Seq - 1
		}
		l.seq = e.Seq
		l.remember(e)
		return nil
	})
}

func (l *eventLog) remember(e LogEvent) {
	l.recent = append(l.recent, e)
	if len(l.recent) > 2*recentEvents {
		l.recent = append(l.recent[:0:0], l.recent[len(l.recent)-recentEvents:]...)
	}
}

// number gives the next sequence numbers to events about to be stored.
func (l *eventLog) number(n *Node, evs []Event) []LogEvent {
	out := make([]LogEvent, len(evs))
	for i, e := range evs {
		l.seq++
		out[i] = LogEvent{Seq: l.seq, MAC: n.MAC, Hostname: n.Hostname, Event: e}
	}
	return out
}

// publish makes stored events visible and wakes followers; enrolled says
// they are about a node past discovered.
func (l *eventLog) publish(evs []LogEvent, enrolled bool) {
	if len(evs) == 0 {
		return
	}
	for _, e := range evs {
		l.remember(e)
	}
	close(l.changed)
	l.changed = make(chan struct{})
	if enrolled {
		close(l.nodes)
		l.nodes = make(chan struct{})
	}
}

// Events returns the events after seq, oldest first, and a channel that is
// closed when there are more. A follower loops: read, wait, read again.
func (inv *Inventory) Events(since uint64) ([]LogEvent, <-chan struct{}, error) {
	inv.mu.Lock()
	l := &inv.events
	wait := l.changed
	if len(l.recent) > 0 && l.recent[0].Seq <= since+1 {
		var out []LogEvent
		for _, e := range l.recent {
			if e.Seq > since {
				out = append(out, e)
			}
		}
		inv.mu.Unlock()
		return out, wait, nil
	}
	inv.mu.Unlock()
	// Older than what is in memory: read the store.
	var out []LogEvent
	err := store.LoadFrom(inv.db, eventsBucket, eventKey(since+1), func(_ string, e LogEvent) error {
		out = append(out, e)
		return nil
	})
	return out, wait, err
}

// LastSeq is the number of the newest event (0: none yet). A follower that
// has just read the inventory starts from it, so that it is sent what
// happens next and not the whole log again.
func (inv *Inventory) LastSeq() uint64 {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	return inv.events.seq
}

// Changed returns a channel that is closed when the next event about a
// node past discovered is recorded (discovered nodes matter to no
// follower of it, and anyone can make them). A follower that only needs
// to know that something changed takes it first, then looks at the
// inventory, then waits on it: nothing recorded in between is missed.
func (inv *Inventory) Changed() <-chan struct{} {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	return inv.events.nodes
}
