package cluster

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"time"

	"github.com/hashicorp/nomad/api"
)

// NodeEvent is one Nomad node's state as the node lifecycle reads it: a
// node has joined when it is registered and ready, and is ready for CI
// when the worker job's allocation on it runs. Events carry the whole
// state, not a delta, so applying one twice changes nothing.
type NodeEvent struct {
	Name, ID      string
	Status        string // Nomad's: initializing, ready, down, disconnected; or NodeDeregistered
	Eligible      bool   // scheduling eligibility (false while draining)
	WorkerRunning bool   // an allocation of the worker job runs on the node
	Index         uint64 // the Nomad index of the change reported; resume Watch from it
}

// NodeDeregistered is the Status of a node that was purged from Nomad.
const NodeDeregistered = "deregistered"

// Joined reports whether the node is registered and ready.
func (e NodeEvent) Joined() bool { return e.Status == api.NodeStatusReady }

// sameState ignores Index: a change of index alone is not a transition.
func (e NodeEvent) sameState(o NodeEvent) bool {
	e.Index, o.Index = 0, 0
	return e == o
}

// Watch calls fn for every change of a node's NodeEvent state until ctx
// ends (it then returns ctx's error) or Nomad refuses the token (an error:
// retrying the same token cannot help).
//
// It is driven by Nomad's event stream (topic Node, and Allocation and
// Evaluation filtered to the worker job), not by polling. It starts from a
// snapshot of nodes and worker allocations, so it knows every node's whole
// state: with index 0 it first reports every node; with the Index of an
// event a previous Watch reported, only the nodes changed since, once each
// with their current state.
//
// When the stream drops, Watch reconnects with backoff and resumes from
// the index of the last batch it applied. The servers send that batch
// again first if their buffer still holds it: it is skipped, and nothing
// is missed or repeated. If it does not come first, the buffer has moved
// on, and a fresh snapshot fills the gap (states changed meanwhile are
// reported once, as they are now). Every object is applied only if newer
// than what Watch holds, and a node is reported only when its state
// differs from its last report, so overlaps never repeat a report.
//
// A purge emits no Node event in Nomad 1.11 (its write carries no event
// type), but it makes the servers evaluate the worker job for the node: an
// evaluation naming a node change Watch has not seen is followed by one
// read of that node, which finds it gone.
//
// fn runs on Watch's goroutine; a slow fn holds the stream back. A dead
// connection that never closes is noticed by TCP keepalive, not sooner.
func (n *Nomad) Watch(ctx context.Context, index uint64, fn func(NodeEvent)) error {
	w := &watch{n: n, st: newWatchState(n.cfg.WorkerJob), fn: fn}
	var backoff reconnectBackoff
	first := true
	for {
		var err error
		if w.from == 0 || !w.resume {
			// No batch received yet (or the last attempt failed half-way):
			// only a snapshot is sure to be complete.
			w.from, err = w.resync(ctx, first, index)
			w.resume = false
			first = first && err != nil
		}
		if err == nil {
			var healthy bool
			healthy, err = w.stream(ctx)
			if healthy {
				backoff.reset()
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if s := nomadStatus(err); s == http.StatusForbidden || s == http.StatusUnauthorized {
			return n.fail("watching nodes (the token needs node:read and read-job)", err)
		}
		wait := backoff.next()
		n.log.Warn("nomad event stream lost; reconnecting", "err", err, "resume_index", w.from, "in", wait.Round(time.Millisecond))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}

// watch is one Watch call's state across reconnects.
type watch struct {
	n  *Nomad
	st *watchState
	fn func(NodeEvent)

	// from is where the next stream starts; resume says it is the index of
	// the last batch applied, which the servers must send first.
	from   uint64
	resume bool
}

// resync applies a snapshot and returns the index to stream from. On the
// first one, nodes unchanged since the caller's index are recorded
// without being reported.
func (w *watch) resync(ctx context.Context, first bool, since uint64) (uint64, error) {
	n := w.n
	nodes, nm, err := n.client.Nodes().List(n.query(ctx))
	if err != nil {
		return 0, n.fail("listing nodes", err)
	}
	allocs, am, err := n.client.Jobs().Allocations(n.cfg.WorkerJob, false, n.query(ctx))
	if err != nil {
		return 0, n.fail("listing allocations of "+n.cfg.WorkerJob, err)
	}
	var evs []NodeEvent
	for id := range w.st.snapshot(nodes, nm.LastIndex, allocs, am.LastIndex) {
		if ev, ok := w.st.event(id); ok {
			evs = append(evs, ev)
		}
	}
	slices.SortFunc(evs, func(a, b NodeEvent) int { return cmp.Compare(a.Index, b.Index) })
	for _, ev := range evs {
		if first && since > 0 && ev.Index <= since {
			w.st.reported[ev.ID] = ev // the caller has this state already
			continue
		}
		w.st.report(ev, w.fn)
	}
	// The two lists were read at different moments: stream from the older
	// one's index; events the newer one already holds are skipped as stale.
	return max(1, min(nm.LastIndex, am.LastIndex)), nil
}

// healthyStream is how long a stream must have lasted for its loss to
// count as a new failure rather than the same one again.
const healthyStream = 10 * time.Second

// stream follows the event stream from w.from until it fails or ends.
// healthy says whether it delivered events or lasted, so that a server
// that accepts and drops at once is not reconnected to at full speed.
func (w *watch) stream(ctx context.Context) (healthy bool, err error) {
	n := w.n
	sctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the API's reader goroutine with us
	start := time.Now()
	defer func() { healthy = healthy || time.Since(start) >= healthyStream }()
	topics := map[api.Topic][]string{
		api.TopicNode:       {"*"},
		api.TopicAllocation: {n.cfg.WorkerJob}, // allocation and evaluation events carry their job ID as a filter key
		api.TopicEvaluation: {n.cfg.WorkerJob},
	}
	ch, err := n.client.EventStream().Stream(sctx, topics, w.from, n.query(sctx))
	if err != nil {
		return false, n.fail("opening the event stream", err)
	}
	resuming := w.resume
	for batch := range ch {
		if batch.Err != nil {
			return healthy, batch.Err
		}
		healthy = true
		if resuming {
			resuming = false
			if batch.Index == w.from {
				continue // applied before the stream dropped
			}
			n.log.Info("nomad event buffer no longer holds the resume index; taking a snapshot", "resume_index", w.from, "first_index", batch.Index)
			w.resume = false // a failed snapshot must be retried, not resumed past
			if _, err := w.resync(ctx, false, 0); err != nil {
				return healthy, err
			}
		}
		if err := w.apply(ctx, batch); err != nil {
			w.resume = false
			return healthy, err
		}
		w.from, w.resume = batch.Index, true
	}
	return healthy, errors.New("event stream closed")
}

// apply applies one batch (one Raft index) and reports the nodes it
// changed, after all of it, so no state half-way through a write is
// ever reported.
func (w *watch) apply(ctx context.Context, batch *api.Events) error {
	touched, unseen := map[string]bool{}, map[string]uint64{}
	for i := range batch.Events {
		if err := w.st.apply(&batch.Events[i], touched, unseen); err != nil {
			w.n.log.Warn("nomad event not understood; skipped", "topic", batch.Events[i].Topic, "type", batch.Events[i].Type, "err", err)
		}
	}
	for id, index := range unseen {
		if err := w.n.readNode(ctx, w.st, id, index, touched); err != nil {
			return err
		}
	}
	for id := range touched {
		if ev, ok := w.st.event(id); ok {
			w.st.report(ev, w.fn)
		}
	}
	return nil
}

// watchState is what Watch knows of every node and worker allocation,
// each with the Nomad index it was last changed at.
type watchState struct {
	job      string
	nodes    map[string]*watchNode  // by node ID; purged nodes stay as NodeDeregistered
	allocs   map[string]*watchAlloc // worker allocations by ID
	reported map[string]NodeEvent   // last state reported per node ID
}

type watchNode struct {
	name, status string
	eligible     bool
	index        uint64
}

// WorkerTask is the name of the worker job's main task. An allocation
// counts as a running worker when this task runs, not merely when the
// allocation does: prestart tasks (the stand-in's key check) run first.
const WorkerTask = "worker"

// workerRunning tells whether an allocation of the worker job runs its
// worker: the allocation runs and so does its task WorkerTask (a job
// without a task of that name counts when the allocation runs).
func workerRunning(clientStatus string, tasks map[string]*api.TaskState) bool {
	if clientStatus != api.AllocClientStatusRunning {
		return false
	}
	ts, ok := tasks[WorkerTask]
	return !ok || ts != nil && ts.State == "running" // the api has no constant for task states
}

type watchAlloc struct {
	node    string
	running bool
	index   uint64
}

func newWatchState(job string) *watchState {
	return &watchState{job: job, nodes: map[string]*watchNode{}, allocs: map[string]*watchAlloc{}, reported: map[string]NodeEvent{}}
}

// setNode and setAlloc apply an object version only if it is newer than
// the one held: snapshots and resumed streams overlap.
func (st *watchState) setNode(id string, v watchNode) bool {
	if old, ok := st.nodes[id]; ok && old.index >= v.index {
		return false
	}
	st.nodes[id] = &v
	return true
}

func (st *watchState) setAlloc(id string, v watchAlloc) (string, bool) {
	if old, ok := st.allocs[id]; ok && old.index >= v.index {
		return "", false
	}
	st.allocs[id] = &v
	return v.node, true
}

// snapshot applies full lists read at nodesIndex and allocsIndex: what is
// missing from them is gone (purged node, garbage-collected allocation)
// unless an event newer than the list already said otherwise.
func (st *watchState) snapshot(nodes []*api.NodeListStub, nodesIndex uint64, allocs []*api.AllocationListStub, allocsIndex uint64) map[string]bool {
	touched := map[string]bool{}
	seen := map[string]bool{}
	for _, nd := range nodes {
		seen[nd.ID] = true
		if st.setNode(nd.ID, watchNode{name: nd.Name, status: nd.Status, eligible: nd.SchedulingEligibility == api.NodeSchedulingEligible, index: nd.ModifyIndex}) {
			touched[nd.ID] = true
		}
	}
	for id, nd := range st.nodes {
		if !seen[id] && nd.status != NodeDeregistered && nd.index < nodesIndex {
			st.setNode(id, watchNode{name: nd.name, status: NodeDeregistered, index: nodesIndex})
			touched[id] = true
		}
	}
	seen = map[string]bool{}
	for _, a := range allocs {
		seen[a.ID] = true
		if node, ok := st.setAlloc(a.ID, watchAlloc{node: a.NodeID, running: workerRunning(a.ClientStatus, a.TaskStates), index: a.ModifyIndex}); ok {
			touched[node] = true
		}
	}
	for id, a := range st.allocs {
		if !seen[id] && a.index < allocsIndex {
			delete(st.allocs, id)
			touched[a.node] = true
		}
	}
	return touched
}

// apply takes one stream event; the node it concerns is marked touched.
// A worker job evaluation for a node change newer than the node as known
// puts the node in unseen with that change's index, to be read.
func (st *watchState) apply(ev *api.Event, touched map[string]bool, unseen map[string]uint64) error {
	switch ev.Topic {
	case api.TopicNode:
		nd, err := ev.Node()
		if err != nil || nd == nil {
			return fmt.Errorf("decoding node: %v", err)
		}
		v := watchNode{name: nd.Name, status: nd.Status, eligible: nd.SchedulingEligibility == api.NodeSchedulingEligible, index: ev.Index}
		if ev.Type == "NodeDeregistration" {
			v = watchNode{name: nd.Name, status: NodeDeregistered, index: ev.Index}
		}
		if st.setNode(nd.ID, v) {
			touched[nd.ID] = true
		}
	case api.TopicAllocation:
		a, err := ev.Allocation()
		if err != nil || a == nil {
			return fmt.Errorf("decoding allocation: %v", err)
		}
		if a.JobID != st.job {
			return nil // its ID happened to equal the job's
		}
		if node, ok := st.setAlloc(a.ID, watchAlloc{node: a.NodeID, running: workerRunning(a.ClientStatus, a.TaskStates), index: ev.Index}); ok {
			touched[node] = true
		}
	case api.TopicEvaluation:
		e, err := ev.Evaluation()
		if err != nil || e == nil {
			return fmt.Errorf("decoding evaluation: %v", err)
		}
		if nd, ok := st.nodes[e.NodeID]; ok && e.JobID == st.job && nd.status != NodeDeregistered && e.NodeModifyIndex > nd.index {
			unseen[e.NodeID] = max(unseen[e.NodeID], e.NodeModifyIndex)
		}
	}
	return nil
}

// readNode reads a node whose change at index no event reported: a purged
// node is not found, and is recorded as deregistered at that index.
func (n *Nomad) readNode(ctx context.Context, st *watchState, id string, index uint64, touched map[string]bool) error {
	nd, _, err := n.client.Nodes().Info(id, n.query(ctx))
	switch {
	case nomadStatus(err) == http.StatusNotFound:
		if old := st.nodes[id]; old != nil && st.setNode(id, watchNode{name: old.name, status: NodeDeregistered, index: index}) {
			touched[id] = true
		}
		return nil
	case err != nil:
		return n.fail("reading node "+id, err)
	}
	if st.setNode(id, watchNode{name: nd.Name, status: nd.Status, eligible: nd.SchedulingEligibility == api.NodeSchedulingEligible, index: nd.ModifyIndex}) {
		touched[id] = true
	}
	return nil
}

// event is the node's current state; Index is the newest of the node's
// and its worker allocations' indexes. Allocations on a node not (yet)
// listed report nothing: the node's own registration comes first.
func (st *watchState) event(id string) (NodeEvent, bool) {
	nd, ok := st.nodes[id]
	if !ok {
		return NodeEvent{}, false
	}
	ev := NodeEvent{Name: nd.name, ID: id, Status: nd.status, Eligible: nd.eligible, Index: nd.index}
	for _, a := range st.allocs {
		if a.node != id {
			continue
		}
		ev.Index = max(ev.Index, a.index)
		// A purged node's worker is not one Concourse can use, whatever
		// its last report said.
		if a.running && nd.status != NodeDeregistered {
			ev.WorkerRunning = true
		}
	}
	return ev, true
}

// report calls fn if the node's state differs from the last report.
func (st *watchState) report(ev NodeEvent, fn func(NodeEvent)) {
	if last, ok := st.reported[ev.ID]; ok && last.sameState(ev) {
		return
	}
	st.reported[ev.ID] = ev
	fn(ev)
}

// reconnectBackoff spaces reconnects: 250ms doubling to 30s, with jitter
// so that several watchers do not reconnect in step after a server restart.
type reconnectBackoff struct{ d time.Duration }

func (b *reconnectBackoff) reset() { b.d = 0 }

func (b *reconnectBackoff) next() time.Duration {
	b.d = min(max(2*b.d, 250*time.Millisecond), 30*time.Second)
	return b.d/2 + rand.N(b.d/2+1)
}
