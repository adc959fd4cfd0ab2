package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bootstrapd/bootstrapd/internal/cluster/clustertest"
	"github.com/bootstrapd/bootstrapd/internal/testlog"
	"github.com/hashicorp/nomad/api"
)

const workerTemplate = "../../profiles/concourse-worker.nomad.hcl.tmpl"

// nomadEnv is one server and bootstrapd's handle on it, logging to logs.
type nomadEnv struct {
	top     *testing.T // client agents live as long as this test, not a step of it
	srv     *clustertest.NomadServer
	n       *Nomad
	api     *api.Client // the operator's view, for what bootstrapd does not read
	logs    *testlog.Buffer
	secrets []string                            // must never appear in a log or an error
	agents  map[string]*clustertest.NomadClient // by node name
}

func newNomadEnv(t *testing.T, srv *clustertest.NomadServer) *nomadEnv {
	t.Helper()
	e := &nomadEnv{top: t, srv: srv, logs: &testlog.Buffer{}, agents: map[string]*clustertest.NomadClient{}}
	if srv.Token != "" {
		e.secrets = append(e.secrets, srv.Token)
	}
	e.n = e.handle(t, srv.Addr)
	var err error
	if e.api, err = api.NewClient(&api.Config{Address: srv.Addr, SecretID: srv.Token}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.checkNoSecrets(t, "logs", e.logs.String()) })
	return e
}

func (e *nomadEnv) handle(t *testing.T, addr string) *Nomad {
	t.Helper()
	n, err := NewNomad(NomadConfig{Addr: addr, Token: e.srv.Token, Datacenter: "dc1"},
		slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func (e *nomadEnv) checkNoSecrets(t *testing.T, what, s string) {
	t.Helper()
	for _, secret := range e.secrets {
		if secret != "" && strings.Contains(s, secret) {
			t.Errorf("%s contain a secret (%.8s...)", what, secret)
		}
	}
}

func (e *nomadEnv) initWorkerJob(t *testing.T) {
	t.Helper()
	job, err := RenderWorkerJob(workerTemplate, WorkerJob{StandIn: true, TSAHost: "tsa.lab:2222", Datacenters: []string{"dc1"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.n.Init(ctx(t), job); err != nil {
		t.Fatal(err)
	}
}

// node is a client agent started from ClientConfig output.
type node struct {
	name    string
	agent   *clustertest.NomadClient
	started time.Time
}

// startNode starts a client named name the way a node uses its join
// bundle (the servers are Nomad 1.6: no introduction token).
func (e *nomadEnv) startNode(t *testing.T, name string, worker bool, meta map[string]string) *node {
	t.Helper()
	cfg, err := ClientConfig(ClientParams{
		Name: name, Datacenter: "dc1", NodePool: "default", NodeClass: "ci",
		Servers: []string{e.srv.RPC}, Meta: meta, Worker: worker, ACL: e.srv.Token != "", RawExec: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	agent := clustertest.StartClient(e.top, e.srv, cfg, "")
	e.agents[name] = agent
	return &node{name: name, agent: agent, started: start}
}

// watcher records what a Watch reports.
type watcher struct {
	ch     chan NodeEvent
	cancel context.CancelFunc
	done   chan error
	mu     sync.Mutex
	seen   []NodeEvent
}

func startWatch(t *testing.T, n *Nomad, index uint64) *watcher {
	t.Helper()
	c, cancel := context.WithCancel(context.Background())
	w := &watcher{ch: make(chan NodeEvent, 256), cancel: cancel, done: make(chan error, 1)}
	go func() {
		w.done <- n.Watch(c, index, func(ev NodeEvent) {
			w.mu.Lock()
			w.seen = append(w.seen, ev)
			w.mu.Unlock()
			w.ch <- ev
		})
	}()
	t.Cleanup(func() { w.stop(t) })
	return w
}

// stop ends the Watch and checks it ended because it was told to.
func (w *watcher) stop(t *testing.T) {
	t.Helper()
	if w.cancel == nil {
		return
	}
	w.cancel()
	w.cancel = nil
	if err := <-w.done; !errors.Is(err, context.Canceled) {
		t.Errorf("Watch ended with %v, want context.Canceled", err)
	}
}

func (w *watcher) events() []NodeEvent {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]NodeEvent(nil), w.seen...)
}

func (w *watcher) last() NodeEvent {
	ev := w.events()
	if len(ev) == 0 {
		return NodeEvent{}
	}
	return ev[len(ev)-1]
}

// waitFor returns the first reported event matching ok, failing after a
// minute; events before it stay in the record.
func (w *watcher) waitFor(t *testing.T, what string, ok func(NodeEvent) bool) NodeEvent {
	t.Helper()
	timeout := time.After(time.Minute)
	for {
		select {
		case ev := <-w.ch:
			if ok(ev) {
				return ev
			}
		case err := <-w.done:
			t.Fatalf("Watch ended waiting for %s: %v", what, err)
		case <-timeout:
			t.Fatalf("no event %s in a minute; saw %+v", what, w.events())
		}
	}
}

// noRepeats fails if a node is reported twice in a row in the same state.
func noRepeats(t *testing.T, evs []NodeEvent) {
	t.Helper()
	last := map[string]NodeEvent{}
	for _, ev := range evs {
		if prev, ok := last[ev.ID]; ok && prev.sameState(ev) {
			t.Errorf("node %s reported twice in the same state: %+v", ev.Name, ev)
		}
		last[ev.ID] = ev
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return c
}

func named(name string, ok func(NodeEvent) bool) func(NodeEvent) bool {
	return func(ev NodeEvent) bool { return ev.Name == name && ok(ev) }
}

// TestNomadCluster runs bootstrapd's whole Nomad side against one real
// server (Nomad 1.6, the last open-source release) with ACLs, and real
// client agents started from ClientConfig output: each step builds on the
// last. What 1.6 lacks (introduction tokens, workload identity) is tested
// against NomadAPI in arrange_test.go.
func TestNomadCluster(t *testing.T) {
	begin := time.Now()
	e := newNomadEnv(t, clustertest.StartNomad(t))
	n := e.n

	t.Run("check", func(t *testing.T) {
		if err := n.Check(ctx(t)); err != nil {
			t.Fatal(err)
		}
		bad, err := NewNomad(NomadConfig{Addr: e.srv.Addr, Token: "0badc0de-1111-2222-3333-444444444444"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		err = bad.Check(ctx(t))
		if err == nil || !strings.Contains(err.Error(), "token") || strings.Contains(err.Error(), "0badc0de") {
			t.Errorf("Check with an unknown token: %v", err)
		}
		strict, err := n.IntroductionEnforced(ctx(t))
		if err != nil || strict {
			t.Errorf("IntroductionEnforced = %v, %v; want false (Nomad 1.6 has no client introduction)", strict, err)
		}
		v, err := n.ServerVersion(ctx(t))
		if err != nil || v.Major != 1 || v.Minor != 6 {
			t.Fatalf("ServerVersion = %v, %v; want 1.6.x", v, err)
		}
		arr, err := Arrange(v, "", nil)
		if err != nil || arr.VaultIntegration != VaultToken || arr.Introduction || !strings.Contains(arr.Why, "Nomad "+v.String()) {
			t.Errorf("Arrange(%s) = %+v, %v", v, arr, err)
		}
		// A request these servers do not have: one line naming the version.
		_, err = n.IntroToken(ctx(t), "n1", time.Minute)
		if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "Nomad "+v.String()) || strings.Contains(err.Error(), "\n") {
			t.Errorf("IntroToken against Nomad %s: %v", v, err)
		}
	})

	t.Run("init", func(t *testing.T) {
		job := WorkerJob{StandIn: true, TSAHost: "tsa.lab:2222", Datacenters: []string{"dc1"}}
		hcl, err := RenderWorkerJob(workerTemplate, job)
		if err != nil {
			t.Fatal(err)
		}
		lines, err := n.Init(ctx(t), hcl)
		if err != nil || len(lines) != 1 || lines[0] != "registered job concourse-worker" {
			t.Fatalf("first Init: %q, %v", lines, err)
		}
		if lines, err := n.Init(ctx(t), hcl); err != nil || len(lines) != 0 {
			t.Fatalf("second Init changed something: %q, %v", lines, err)
		}
		job.TSAHost = "tsa2.lab:2222"
		changed, _ := RenderWorkerJob(workerTemplate, job)
		lines, err = n.Init(ctx(t), changed)
		if err != nil || len(lines) != 2 || lines[0] != "updated job concourse-worker" || !strings.Contains(lines[1], `"tsa.lab:2222" => "tsa2.lab:2222"`) {
			t.Fatalf("Init after a change: %q, %v", lines, err)
		}
		if lines, err := n.Init(ctx(t), hcl); err != nil || len(lines) < 2 {
			t.Fatalf("Init back: %q, %v", lines, err)
		}
		other, _ := RenderWorkerJob(workerTemplate, WorkerJob{ID: "other", StandIn: true})
		if _, err := n.Init(ctx(t), other); err == nil || !strings.Contains(err.Error(), `"other"`) {
			t.Errorf("Init of a job with another ID: %v", err)
		}
		if _, err := n.Init(ctx(t), "job {"); err == nil || !strings.Contains(err.Error(), e.srv.Addr) {
			t.Errorf("Init of broken HCL: %v", err)
		}
	})

	t.Run("worker job template", func(t *testing.T) {
		// Nomad 1.6 parses the token integration's vault { policies };
		// workload identity's vault { role } is checked in
		// TestRenderWorkerJobVault.
		real := WorkerJob{
			Datacenters: []string{"dc1", `dc"2`}, NodePool: "default",
			TSAHost: "tsa.lab:2222", TSAPublicKey: "ssh-rsa AAAAB3Nza tsa@${host}%{x}",
			Vault: VaultToken, KVMount: "kv",
		}
		for _, driver := range []string{"docker", "exec"} {
			real.Driver = driver
			src, err := RenderWorkerJob(workerTemplate, real)
			if err != nil {
				t.Fatal(err)
			}
			job, err := e.api.Jobs().ParseHCLOpts(&api.JobsParseRequest{JobHCL: src, Canonicalize: true})
			if err != nil {
				t.Fatalf("%s: Nomad's parser: %v\n%s", driver, err, src)
			}
			task := job.TaskGroups[0].Tasks[0]
			if *job.Type != "system" || *job.NodePool != "default" || !slices.Equal(job.Datacenters, real.Datacenters) ||
				len(job.Constraints) != 1 || job.Constraints[0].LTarget != "${meta.concourse_worker}" || job.Constraints[0].RTarget != "true" {
				t.Errorf("%s: job %s type %s pool %s dcs %q constraints %+v", driver, *job.ID, *job.Type, *job.NodePool, job.Datacenters, job.Constraints)
			}
			if task.Driver != driver || task.KillSignal != "SIGUSR2" || *task.KillTimeout != time.Hour ||
				task.Env["CONCOURSE_NAME"] != "${node.unique.name}" || task.Env["CONCOURSE_TSA_HOST"] != real.TSAHost ||
				task.Vault == nil || !slices.Equal(task.Vault.Policies, []string{PolicyConcourseWorker}) || len(task.Templates) != 2 {
				t.Errorf("%s: task %+v", driver, task)
				continue
			}
			key := *task.Templates[0].EmbeddedTmpl
			if !strings.Contains(key, `(printf "kv/data/concourse/workers/%s" (env "node.unique.name"))`) || !strings.Contains(key, ".Data.data.private_key") {
				t.Errorf("%s: worker key template %q", driver, key)
			}
			if got := *task.Templates[1].EmbeddedTmpl; got != real.TSAPublicKey {
				t.Errorf("%s: TSA key template %q, want %q", driver, got, real.TSAPublicKey)
			}
		}
		src, _ := RenderWorkerJob(workerTemplate, WorkerJob{StandIn: true})
		job, err := e.api.Jobs().ParseHCLOpts(&api.JobsParseRequest{JobHCL: src, Canonicalize: true})
		if err != nil {
			t.Fatal(err)
		}
		if task := job.TaskGroups[0].Tasks[0]; task.Driver != "raw_exec" || task.Vault != nil || len(task.Templates) != 0 || task.KillSignal != "SIGUSR2" {
			t.Errorf("stand-in task %+v", task)
		}
		src, _ = RenderWorkerJob(workerTemplate, WorkerJob{StandIn: true, Vault: VaultToken})
		job, err = e.api.Jobs().ParseHCLOpts(&api.JobsParseRequest{JobHCL: src, Canonicalize: true})
		if err != nil {
			t.Fatal(err)
		}
		tasks := job.TaskGroups[0].Tasks
		if len(tasks) != 2 || tasks[0].Name != "key-check" || tasks[0].Lifecycle == nil || tasks[0].Lifecycle.Hook != "prestart" ||
			tasks[0].Vault == nil || !slices.Equal(tasks[0].Vault.Policies, []string{PolicyConcourseWorker}) || len(tasks[0].Templates) != 1 ||
			tasks[1].Name != WorkerTask || tasks[1].Vault != nil {
			t.Errorf("stand-in tasks with Vault %+v", tasks)
		}
	})

	w := startWatch(t, n, 0)
	var worker *node

	t.Run("worker node joins and runs the worker", func(t *testing.T) {
		worker = e.startNode(t, "w1", true, map[string]string{"rack": "r1"})
		joined := w.waitFor(t, "w1 joined", named("w1", NodeEvent.Joined))
		tJoined := time.Since(worker.started)
		running := w.waitFor(t, "w1 worker running", named("w1", func(ev NodeEvent) bool { return ev.WorkerRunning }))
		t.Logf("w1: joined %.2fs, worker running %.2fs after the client agent started", tJoined.Seconds(), time.Since(worker.started).Seconds())
		if running.Index <= joined.Index || !running.Joined() || !running.Eligible {
			t.Errorf("events out of order or incomplete: joined %+v, running %+v", joined, running)
		}
		st, found, err := nodeStatus(ctx(t), n, "w1")
		if err != nil || !found || !st.WorkerRunning || !st.Joined() || st.ID != running.ID {
			t.Errorf("NodeStatus(w1) = %+v, %v, %v", st, found, err)
		}
		if _, found, err := nodeStatus(ctx(t), n, "nobody"); found || err != nil {
			t.Errorf("NodeStatus(nobody) = %v, %v", found, err)
		}
	})

	t.Run("node without the worker meta joins but runs no worker", func(t *testing.T) {
		meta := map[string]string{}
		for i, v := range hostile {
			meta[fmt.Sprintf("h%d", i)] = v
		}
		e.startNode(t, "p1", false, meta)
		ev := w.waitFor(t, "p1 joined", named("p1", NodeEvent.Joined))
		// The servers evaluate every system job for a node that registers;
		// once that evaluation is complete, the worker would be placed.
		waitEvalComplete(t, e.api, ev.ID, n.WorkerJobID())
		if allocs, _, err := e.api.Nodes().Allocations(ev.ID, nil); err != nil || len(allocs) != 0 {
			t.Errorf("allocations on p1: %d, %v", len(allocs), err)
		}
		for _, ev := range w.events() {
			if ev.Name == "p1" && ev.WorkerRunning {
				t.Errorf("p1 reported with a worker: %+v", ev)
			}
		}
		// The hostile values went through the client's HCL 1 parser and the
		// servers and came back as they were.
		info, _, err := e.api.Nodes().Info(ev.ID, nil)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range meta {
			if info.Meta[k] != v {
				t.Errorf("meta %s: Nomad has %q, want %q", k, info.Meta[k], v)
			}
		}
		if _, injected := info.Meta["evil"]; injected || info.Meta[WorkerMetaKey] != "" {
			t.Errorf("meta gained keys: %q", slices.Sorted(maps.Keys(info.Meta)))
		}
	})

	t.Run("watch resumes from its last index", func(t *testing.T) {
		last := w.last()
		w.stop(t)
		// A node joins while nobody watches.
		e.startNode(t, "w2", true, nil)
		w2 := startWatch(e.top, n, last.Index) // it goes on into the next step
		got := w2.waitFor(t, "w2 worker running", named("w2", func(ev NodeEvent) bool { return ev.WorkerRunning }))
		for _, ev := range w2.events() {
			if ev.Name != "w2" {
				t.Errorf("resumed Watch repeated an old state: %+v", ev)
			}
		}
		if !got.Joined() || got.Index <= last.Index {
			t.Errorf("w2 event %+v after index %d", got, last.Index)
		}
		w = w2
	})

	t.Run("drain and purge", func(t *testing.T) {
		c := ctx(t)
		if err := n.Drain(c, "w2", 30*time.Second); err != nil {
			t.Fatal(err)
		}
		ev := w.waitFor(t, "w2 drained", named("w2", func(ev NodeEvent) bool { return !ev.WorkerRunning && !ev.Eligible }))
		allocs, _, err := e.api.Nodes().Allocations(ev.ID, nil)
		if err != nil || len(allocs) != 1 || allocs[0].ClientStatus != api.AllocClientStatusComplete {
			t.Errorf("w2's worker after the drain: %v; %+v", err, allocs)
		}
		if err := n.Drain(c, "w2", 30*time.Second); err != nil {
			t.Errorf("second Drain: %v", err)
		}
		// The machine is wiped: its agent is gone, then it is purged.
		e.agents["w2"].Stop()
		if err := n.Purge(c, "w2"); err != nil {
			t.Fatal(err)
		}
		gone := w.waitFor(t, "w2 purged", named("w2", func(ev NodeEvent) bool { return ev.Status == NodeDeregistered }))
		if gone.WorkerRunning {
			t.Errorf("purged node reported with a worker: %+v", gone)
		}
		if _, found, err := nodeStatus(c, n, "w2"); found || err != nil {
			t.Errorf("w2 still known after Purge: %v", err)
		}
		if err := n.Purge(c, "w2"); err != nil {
			t.Errorf("second Purge: %v", err)
		}
		if err := n.Drain(c, "w2", time.Second); !errors.Is(err, ErrNodeNotFound) {
			t.Errorf("Drain of a purged node: %v, want ErrNodeNotFound", err)
		}
		noRepeats(t, w.events())
	})

	t.Run("a switched-off node goes down and is retired", func(t *testing.T) {
		c := ctx(t)
		e.agents["w1"].Stop()
		down := w.waitFor(t, "w1 down", named("w1", func(ev NodeEvent) bool { return ev.Status == api.NodeStatusDown }))
		if down.WorkerRunning {
			// The servers mark its allocation lost along with the node.
			w.waitFor(t, "w1 worker lost", named("w1", func(ev NodeEvent) bool { return !ev.WorkerRunning }))
		}
		if err := n.Drain(c, "w1", 5*time.Second); err != nil {
			t.Fatalf("Drain of a down node: %v", err)
		}
		if err := n.Purge(c, "w1"); err != nil {
			t.Fatal(err)
		}
		w.waitFor(t, "w1 purged", named("w1", func(ev NodeEvent) bool { return ev.Status == NodeDeregistered }))
		noRepeats(t, w.events())
	})

	t.Logf("TestNomadCluster: %.1fs", time.Since(begin).Seconds())
}

// waitEvalComplete waits (polling: this is the test observing, not
// bootstrapd) for the servers to finish evaluating job for the node.
func waitEvalComplete(t *testing.T, c *api.Client, nodeID, job string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		evals, _, err := c.Evaluations().List(&api.QueryOptions{Filter: fmt.Sprintf("NodeID == %q and JobID == %q", nodeID, job)})
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range evals {
			if ev.Status == api.EvalStatusComplete {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no complete evaluation of %s for node %s", job, nodeID)
}

func TestNomadUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := "http://" + l.Addr().String()
	l.Close() // nothing listens there now
	n, err := NewNomad(NomadConfig{Addr: addr, Token: "5ec2e7-70ken"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	checks := map[string]error{"Check": n.Check(c)}
	_, checks["Init"] = n.Init(c, "job \"concourse-worker\" {}")
	_, checks["IntroToken"] = n.IntroToken(c, "n1", time.Minute)
	checks["Drain"] = n.Drain(c, "n1", time.Minute)
	checks["Purge"] = n.Purge(c, "n1")
	_, _, checks["NodeStatus"] = nodeStatus(c, n, "n1")
	for what, err := range checks {
		if err == nil || !strings.Contains(err.Error(), addr) || strings.Contains(err.Error(), "5ec2e7") {
			t.Errorf("%s: %v; want an error naming %s and not the token", what, err, addr)
		}
	}
	_, err = n.IntroductionEnforced(c)
	if !errors.Is(err, ErrIntroductionUnknown) {
		t.Errorf("IntroductionEnforced: %v, want ErrIntroductionUnknown", err)
	}
}

func TestNewNomadRefuses(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:4646", "ftp://x", "http://user:pw@nomad:4646", "http://nomad:4646/v1", "http://"} {
		_, err := NewNomad(NomadConfig{Addr: addr}, nil)
		if err == nil {
			t.Errorf("NewNomad(%q) accepted", addr)
		} else if strings.Contains(err.Error(), "pw") {
			t.Errorf("NewNomad(%q): error shows the password: %v", addr, err)
		}
	}
	n, err := NewNomad(NomadConfig{}, nil)
	if err != nil || n.addr != "http://127.0.0.1:4646" || n.WorkerJobID() != DefaultWorkerJob {
		t.Errorf("defaults: %v %v", n, err)
	}
}

func TestRenderWorkerJobRefuses(t *testing.T) {
	ok := WorkerJob{TSAHost: "tsa.lab:2222", TSAPublicKey: "ssh-rsa AAAA tsa", Vault: VaultWorkloadIdentity, VaultRole: "concourse-worker"}
	if _, err := RenderWorkerJob(workerTemplate, ok); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		edit func(*WorkerJob)
		want string
	}{
		{"driver", func(j *WorkerJob) { j.Driver = "podman" }, `driver "podman"`},
		{"tsa host without port", func(j *WorkerJob) { j.TSAHost = "tsa.lab" }, "TSA host"},
		{"no tsa key", func(j *WorkerJob) { j.TSAPublicKey = "" }, "TSA public key"},
		{"tsa key with a template", func(j *WorkerJob) { j.TSAPublicKey = `ssh-rsa {{ with secret "x" }}` }, "TSA public key"},
		{"tsa key of two lines", func(j *WorkerJob) { j.TSAPublicKey = "ssh-rsa A\nssh-rsa B" }, "TSA public key"},
		{"no vault role", func(j *WorkerJob) { j.VaultRole = "" }, "Vault role"},
		{"no vault", func(j *WorkerJob) { j.Vault = "" }, "no Vault integration"},
		{"unknown vault integration", func(j *WorkerJob) { j.Vault = "approle" }, `vault integration "approle"`},
		{"kv mount leaving the template", func(j *WorkerJob) { j.KVMount = `kv" }}{{ env "X` }, "KV mount"},
		{"kv mount dot dot", func(j *WorkerJob) { j.KVMount = "../sys" }, "KV mount"},
		{"datacenter not UTF-8", func(j *WorkerJob) { j.Datacenters = []string{"\xff"} }, "UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := ok
			tt.edit(&j)
			if _, err := RenderWorkerJob(workerTemplate, j); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want %q", err, tt.want)
			}
		})
	}
	if _, err := RenderWorkerJob("/nonexistent.tmpl", ok); err == nil {
		t.Error("missing template file accepted")
	}
}

func TestNomadConfigHidesToken(t *testing.T) {
	cfg := NomadConfig{Addr: "http://nomad:4646", Token: "s3cr3t-token"}
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("config", "nomad", cfg)
	for _, s := range []string{buf.String(), fmt.Sprint(cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%v", &cfg)} {
		if strings.Contains(s, "s3cr3t") || !strings.Contains(s, "nomad:4646") {
			t.Errorf("config printed as %q", s)
		}
	}
}

// nodeStatus reads the named node's state now, as Watch would report it:
// what the tests check Watch and Drain/Purge against. found is false when
// Nomad has no node of that name; with several, the newest registration.
func nodeStatus(ctx context.Context, n *Nomad, name string) (NodeEvent, bool, error) {
	nodes, err := n.nodesNamed(ctx, name)
	if err != nil || len(nodes) == 0 {
		return NodeEvent{}, false, err
	}
	nd := nodes[0]
	ev := NodeEvent{Name: nd.Name, ID: nd.ID, Status: nd.Status, Eligible: nd.SchedulingEligibility == api.NodeSchedulingEligible, Index: nd.ModifyIndex}
	allocs, _, err := n.client.Nodes().Allocations(nd.ID, n.query(ctx))
	if err != nil {
		return NodeEvent{}, false, n.fail("listing allocations on "+name, err)
	}
	for _, a := range allocs {
		if a.JobID == n.cfg.WorkerJob {
			ev.Index = max(ev.Index, a.ModifyIndex)
			ev.WorkerRunning = ev.WorkerRunning || a.ClientStatus == api.AllocClientStatusRunning
		}
	}
	return ev, true, nil
}
