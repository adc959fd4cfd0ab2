package inventory

import (
	"sync"

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

// WithSeq is the event with its number, which the store gives it when it
// commits it (store.Numbered).
func (e LogEvent) WithSeq(seq uint64) any {
	e.Seq = seq
	return e
}

// recentEvents is how many events are kept in memory for followers; older
// ones are read from the store.
const recentEvents = 1000

// eventLog shows followers the events the store has committed. The store
// numbers them when it commits them, without gaps and, when several
// instances share it, across all of them, and tells the inventory of them
// in number order (store.Change.Seq): so a follower that has read up to a
// number is never shown an earlier one later, and sees every instance's
// events. It has its own mutex: the store's writer shows events without
// the inventory's lock, and followers read without it.
type eventLog struct {
	mu      sync.Mutex
	seq     uint64     // last shown
	first   uint64     // events after this one are in the store
	recent  []LogEvent // every shown event after from
	from    uint64
	changed chan struct{} // closed (and replaced) when an event is shown
	// nodes is closed (and replaced) when an event about a node that is
	// not merely discovered is shown: what the router sync and the retirer
	// follow, so that a flood of new MACs does not make them re-read
	// every node for each.
	nodes chan struct{}
}

func (l *eventLog) init(db Store) error {
	l.changed, l.nodes = make(chan struct{}), make(chan struct{})
	return store.Load(db, eventsBucket, func(_ string, e LogEvent) error {
		if l.seq == 0 {
			l.first, l.from = e.Seq-1, e.Seq-1
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
		l.from = l.recent[0].Seq - 1
	}
}

// show shows committed events, in number order, waking followers. One
// shown already (read at Open, and told of again) is skipped.
func (l *eventLog) show(evs []LogEvent) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var shown, enrolled bool
	for _, e := range evs {
		if e.Seq <= l.seq {
			continue
		}
		if l.seq == 0 && l.first == 0 {
			l.first, l.from = e.Seq-1, e.Seq-1
		}
		l.seq = e.Seq
		l.remember(e)
		shown = true
		// A discovered node has no hostname until it is enrolled.
		enrolled = enrolled || e.Hostname != ""
	}
	if shown {
		close(l.changed)
		l.changed = make(chan struct{})
	}
	if enrolled {
		close(l.nodes)
		l.nodes = make(chan struct{})
	}
}

// Events returns the events after seq, oldest first, and a channel that is
// closed when there are more. A follower loops: read, wait, read again.
func (inv *Inventory) Events(since uint64) ([]LogEvent, <-chan struct{}, error) {
	l := &inv.events
	l.mu.Lock()
	wait, shown := l.changed, l.seq
	if since >= l.from {
		var out []LogEvent
		for _, e := range l.recent {
			if e.Seq > since {
				out = append(out, e)
			}
		}
		l.mu.Unlock()
		return out, wait, nil
	}
	l.mu.Unlock()
	// Older than what is in memory: read the store, up to what is shown
	// (what is after it is shown next, with a wake-up).
	var out []LogEvent
	err := store.LoadFrom(inv.db, eventsBucket, store.SeqKey(since+1), func(_ string, e LogEvent) error {
		if e.Seq <= shown {
			out = append(out, e)
		}
		return nil
	})
	return out, wait, err
}

// LastSeq is the number of the newest event (0: none yet). A follower that
// has just read the inventory starts from it, so that it is sent what
// happens next and not the whole log again.
func (inv *Inventory) LastSeq() uint64 {
	inv.events.mu.Lock()
	defer inv.events.mu.Unlock()
	return inv.events.seq
}

// Changed returns a channel that is closed when the next event about a
// node past discovered is shown (discovered nodes matter to no follower
// of it, and anyone can make them). A follower that only needs to know
// that something changed takes it first, then looks at the inventory,
// then waits on it: nothing recorded in between is missed, since a change
// is in the inventory before its event is shown.
func (inv *Inventory) Changed() <-chan struct{} {
	inv.events.mu.Lock()
	defer inv.events.mu.Unlock()
	return inv.events.nodes
}
