package inventory

import (
	"encoding/binary"
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

// recentEvents is how many events are kept in memory for followers; older
// ones are read from the store.
const recentEvents = 1000

// eventLog numbers events and shows them to followers in that order, each
// once it is on disk. Node writes are made outside the inventory's lock, so
// they become durable in an order the log does not choose; a follower that
// has read up to seq must never be shown an earlier number later. So the
// log shows the oldest numbered events first, and holds back what was
// written after events still being written. It has its own mutex: the
// store's writer marks events durable without the inventory's lock, and
// followers read without it.
type eventLog struct {
	mu      sync.Mutex
	seq     uint64     // last numbered
	shown   uint64     // last shown: every event up to it is shown or was dropped
	first   uint64     // events after this one are in the store
	waiting []*batch   // numbered and not yet shown, oldest first
	recent  []LogEvent // every shown event after from
	from    uint64
	changed chan struct{} // closed (and replaced) when an event is shown
	// nodes is closed (and replaced) when an event about a node that is
	// not merely discovered is shown: what the router sync and the retirer
	// follow, so that a flood of new MACs does not make them re-read
	// every node for each.
	nodes chan struct{}
}

// batch is the events of one write, shown together.
type batch struct {
	events   []LogEvent
	enrolled bool // about a node past discovered
	done     bool // written, or its write failed
	failed   bool // not written: its numbers stay unused
}

func eventKey(seq uint64) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], seq)
	return string(b[:])
}

func (l *eventLog) init(db *store.DB) error {
	l.changed, l.nodes = make(chan struct{}), make(chan struct{})
	err := store.Load(db, eventsBucket, func(_ string, e LogEvent) error {
		if l.seq == 0 {
			l.first, l.from = e.Seq-1, e.Seq-1
		}
		l.seq = e.Seq
		l.remember(e)
		return nil
	})
	l.shown = l.seq
	return err
}

func (l *eventLog) remember(e LogEvent) {
	l.recent = append(l.recent, e)
	if len(l.recent) > 2*recentEvents {
		l.recent = append(l.recent[:0:0], l.recent[len(l.recent)-recentEvents:]...)
		l.from = l.recent[0].Seq - 1
	}
}

// number gives the next sequence numbers to events about to be stored;
// done shows them when they are (or their write fails). Callers hold the
// inventory's mutex, so that events are numbered in the order their
// writes are sent.
func (l *eventLog) number(n *Node, evs []Event) *batch {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := &batch{events: make([]LogEvent, len(evs)), enrolled: n.State != Discovered}
	for i, e := range evs {
		l.seq++
		b.events[i] = LogEvent{Seq: l.seq, MAC: n.MAC, Hostname: n.Hostname, Event: e}
	}
	l.waiting = append(l.waiting, b)
	return b
}

// done marks b's write finished (err: failed) and shows every batch
// numbered before the first one still being written, waking followers.
// The store's writer calls it, so it takes only the log's own mutex.
func (l *eventLog) done(b *batch, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b.done, b.failed = true, err != nil
	var shown, enrolled bool
	for len(l.waiting) > 0 && l.waiting[0].done {
		w := l.waiting[0]
		l.waiting[0] = nil
		l.waiting = l.waiting[1:]
		if n := len(w.events); n > 0 {
			l.shown = w.events[n-1].Seq
		}
		if w.failed {
			continue
		}
		for _, e := range w.events {
			l.remember(e)
		}
		shown = shown || len(w.events) > 0
		enrolled = enrolled || w.enrolled && len(w.events) > 0
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
	wait, shown := l.changed, l.shown
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
	// (a later event may be on disk before an earlier one is).
	var out []LogEvent
	err := store.LoadFrom(inv.db, eventsBucket, eventKey(since+1), func(_ string, e LogEvent) error {
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
