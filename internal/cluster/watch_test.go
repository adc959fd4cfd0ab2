package cluster

import (
	"io"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/bootstrapd/bootstrapd/internal/cluster/clustertest"
	"github.com/hashicorp/nomad/api"
)

// cutProxy forwards TCP to Nomad and can drop every connection through it
// and refuse new ones, as a network outage would.
type cutProxy struct {
	l      net.Listener
	target string
	mu     sync.Mutex
	conns  map[net.Conn]bool
	paused bool
}

func startCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{l: l, target: target, conns: map[net.Conn]bool{}}
	t.Cleanup(func() { l.Close(); p.cut() })
	go p.serve()
	return p
}

func (p *cutProxy) addr() string { return "http://" + p.l.Addr().String() }

func (p *cutProxy) serve() {
	for {
		down, err := p.l.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		paused := p.paused
		p.mu.Unlock()
		if paused {
			down.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			down.Close()
			continue
		}
		p.mu.Lock()
		p.conns[down], p.conns[up] = true, true
		p.mu.Unlock()
		pipe := func(dst, src net.Conn) {
			_, _ = io.Copy(dst, src)
			dst.Close()
			src.Close()
			p.mu.Lock()
			delete(p.conns, dst)
			delete(p.conns, src)
			p.mu.Unlock()
		}
		go pipe(up, down)
		go pipe(down, up)
	}
}

// cut drops every connection and refuses new ones until resume.
func (p *cutProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.paused = true
	for c := range p.conns {
		c.Close()
	}
}

func (p *cutProxy) resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.paused = false
}

// TestWatchReconnects cuts Watch's connection while a node changes: with
// the change still in the servers' event buffer, every transition is
// reported once, in order; with the buffer moved past it, a snapshot
// reports the node's new state once.
func TestWatchReconnects(t *testing.T) {
	// A small buffer, so that the second outage outlasts it. No ACLs.
	srv := clustertest.StartNomadWith(t, clustertest.NomadOptions{EventBufferSize: 30})
	e := newNomadEnv(t, srv)
	if err := e.n.Check(ctx(t)); err != nil {
		t.Errorf("Check without ACLs: %v", err)
	}
	e.initWorkerJob(t)
	proxy := startCutProxy(t, strings.TrimPrefix(srv.Addr, "http://"))
	w := startWatch(t, e.handle(t, proxy.addr()), 0)

	e.startNode(t, "c1", true, nil)
	ready := w.waitFor(t, "c1 worker running", named("c1", func(ev NodeEvent) bool { return ev.WorkerRunning }))
	toggle := func(eligible bool) {
		t.Helper()
		if _, err := e.api.Nodes().ToggleEligibility(ready.ID, eligible, nil); err != nil {
			t.Fatal(err)
		}
	}
	eligibility := func(from int) []bool {
		var out []bool
		for _, ev := range w.events()[from:] {
			if ev.Name == "c1" {
				out = append(out, ev.Eligible)
			}
		}
		return out
	}

	t.Run("resume from the buffer", func(t *testing.T) {
		before := len(w.events())
		proxy.cut()
		toggle(false)
		toggle(true)
		toggle(false)
		proxy.resume()
		w.waitFor(t, "c1 ineligible again", named("c1", func(ev NodeEvent) bool { return !ev.Eligible }))
		w.waitFor(t, "c1 eligible", named("c1", func(ev NodeEvent) bool { return ev.Eligible }))
		w.waitFor(t, "c1 ineligible", named("c1", func(ev NodeEvent) bool { return !ev.Eligible }))
		if got := eligibility(before); len(got) != 3 || got[0] || !got[1] || got[2] {
			t.Errorf("eligibility reported after the outage: %v, want [false true false]", got)
		}
		logs := e.logs.String()
		if !strings.Contains(logs, "reconnecting") || strings.Contains(logs, "no longer holds") {
			t.Errorf("want a reconnect resumed from the buffer; logs:\n%s", logs)
		}
	})

	t.Run("snapshot when the buffer moved on", func(t *testing.T) {
		before := len(w.events())
		proxy.cut()
		// Each toggle is a few Raft writes (node, evaluation, its update):
		// more than the buffer holds.
		for i := range 15 {
			toggle(i%2 == 0) // ends eligible: it was not before
		}
		proxy.resume()
		w.waitFor(t, "c1 eligible", named("c1", func(ev NodeEvent) bool { return ev.Eligible }))
		// Let any stale event arrive before checking none was reported.
		e.startNode(t, "c2", false, nil)
		w.waitFor(t, "c2 joined", named("c2", NodeEvent.Joined))
		if got := eligibility(before); len(got) != 1 {
			t.Errorf("eligibility reported after the outage: %v, want [true] once", got)
		}
		if !strings.Contains(e.logs.String(), "no longer holds") {
			t.Errorf("no snapshot taken; logs:\n%s", e.logs.String())
		}
	})
	noRepeats(t, w.events())
}

// The state Watch keeps, fed by hand: stale versions, overlaps and
// purges.
func TestWatchState(t *testing.T) {
	st := newWatchState("cw")
	var got []NodeEvent
	report := func(ids ...string) {
		for _, id := range ids {
			if ev, ok := st.event(id); ok {
				st.report(ev, func(ev NodeEvent) { got = append(got, ev) })
			}
		}
	}
	nodeEv := func(typ, id string, index uint64, status string) *api.Event {
		return &api.Event{Topic: api.TopicNode, Type: typ, Index: index, Payload: map[string]any{
			"Node": map[string]any{"ID": id, "Name": "n-" + id, "Status": status, "SchedulingEligibility": "eligible"}}}
	}
	allocEv := func(id, node, job string, index uint64, status string) *api.Event {
		return &api.Event{Topic: api.TopicAllocation, Index: index, Payload: map[string]any{
			"Allocation": map[string]any{"ID": id, "NodeID": node, "JobID": job, "ClientStatus": status}}}
	}
	apply := func(evs ...*api.Event) (map[string]bool, map[string]uint64) {
		touched, unseen := map[string]bool{}, map[string]uint64{}
		for _, ev := range evs {
			if err := st.apply(ev, touched, unseen); err != nil {
				t.Fatal(err)
			}
		}
		return touched, unseen
	}

	// A snapshot at index 10: node a ready with a running worker.
	touched := st.snapshot(
		[]*api.NodeListStub{{ID: "a", Name: "n-a", Status: "ready", SchedulingEligibility: "eligible", ModifyIndex: 8}}, 10,
		[]*api.AllocationListStub{{ID: "x", NodeID: "a", JobID: "cw", ClientStatus: "running", ModifyIndex: 9}}, 10)
	report("a")
	if len(got) != 1 || !got[0].WorkerRunning || !got[0].Joined() || got[0].Index != 9 || len(touched) != 1 {
		t.Fatalf("after the snapshot: %+v", got)
	}
	// The stream overlaps it: older versions change nothing.
	touched, _ = apply(nodeEv("NodeRegistration", "a", 7, "initializing"), allocEv("x", "a", "cw", 9, "pending"))
	report("a")
	if len(touched) != 0 || len(got) != 1 {
		t.Errorf("stale events applied: touched %v, reported %+v", touched, got)
	}
	// Another job's allocation is not the worker.
	apply(allocEv("y", "a", "other", 11, "running"))
	// The worker stops: reported once, however often it is told.
	apply(allocEv("x", "a", "cw", 12, "complete"))
	report("a", "a")
	apply(allocEv("x", "a", "cw", 12, "complete"))
	report("a")
	if len(got) != 2 || got[1].WorkerRunning || got[1].Index != 12 {
		t.Errorf("after the worker stopped: %+v", got)
	}
	// A worker evaluation for a node change not seen asks for a read; one
	// for a change already seen does not.
	eval := func(index, nodeIndex uint64, node string) *api.Event {
		return &api.Event{Topic: api.TopicEvaluation, Index: index, Payload: map[string]any{
			"Evaluation": map[string]any{"ID": "e", "JobID": "cw", "NodeID": node, "NodeModifyIndex": nodeIndex}}}
	}
	if _, unseen := apply(eval(13, 8, "a"), eval(13, 5, "zz")); len(unseen) != 0 {
		t.Errorf("evaluation for a known change: unseen %v", unseen)
	}
	if _, unseen := apply(eval(15, 14, "a")); unseen["a"] != 14 {
		t.Errorf("evaluation for an unseen change: unseen %v", unseen)
	}
	// The worker runs again, then a snapshot no longer lists the node or
	// its allocation: purged, and with no worker.
	apply(allocEv("x2", "a", "cw", 16, "running"))
	report("a")
	touched = st.snapshot(nil, 20, nil, 20)
	report("a")
	if last := got[len(got)-1]; len(got) != 4 || last.Status != NodeDeregistered || last.WorkerRunning || !touched["a"] {
		t.Errorf("after the purge: %+v", got)
	}
	// A stale registration of the purged node does not bring it back.
	apply(nodeEv("NodeRegistration", "a", 19, "ready"))
	report("a")
	if len(got) != 4 {
		t.Errorf("stale registration revived a purged node: %+v", got)
	}
}

// TestWorkerRunning: an allocation runs its worker only when its worker
// task runs; a prestart task running (the stand-in's key check), or one
// that failed with the worker task never started, is not a worker.
func TestWorkerRunning(t *testing.T) {
	ts := func(states ...string) map[string]*api.TaskState {
		m := map[string]*api.TaskState{}
		for i := 0; i+1 < len(states); i += 2 {
			m[states[i]] = &api.TaskState{State: states[i+1]}
		}
		return m
	}
	for _, tt := range []struct {
		client string
		tasks  map[string]*api.TaskState
		want   bool
	}{
		{"running", ts("worker", "running"), true},
		{"running", ts("key-check", "dead", "worker", "running"), true},
		{"running", ts("key-check", "running", "worker", "pending"), false},
		{"running", ts("key-check", "dead", "worker", "pending"), false},
		{"running", nil, true}, // no task states reported yet: the allocation's word
		{"running", ts("main", "running"), true},
		{"pending", ts("worker", "pending"), false},
		{"failed", ts("key-check", "dead"), false},
		{"complete", ts("worker", "dead"), false},
	} {
		if got := workerRunning(tt.client, tt.tasks); got != tt.want {
			t.Errorf("workerRunning(%s, %v) = %v, want %v", tt.client, tt.tasks, got, tt.want)
		}
	}
}
