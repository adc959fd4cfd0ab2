package cluster

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"text/template"
	"time"

	"github.com/hashicorp/nomad/api"
)

// NomadConfig is how bootstrapd reaches the Nomad servers.
type NomadConfig struct {
	Addr   string // http(s)://host:4646 of a server agent; default http://127.0.0.1:4646
	Token  string // ACL token; never logged, never in an error
	CACert string // PEM file to verify Addr's TLS certificate; "" uses the system roots

	Region     string // "" is the agent's region
	Datacenter string
	NodePool   string // the pool intro tokens are scoped to; "" is "default"
	WorkerJob  string // job ID of the Concourse worker system job; default DefaultWorkerJob
}

// LogValue and String leave the token out, so that logging or printing a
// NomadConfig (%v, slog) cannot leak it.
func (c NomadConfig) LogValue() slog.Value {
	return slog.GroupValue(slog.String("addr", c.Addr), slog.Bool("token_set", c.Token != ""),
		slog.String("region", c.Region), slog.String("node_pool", c.NodePool), slog.String("worker_job", c.WorkerJob))
}

func (c NomadConfig) String() string {
	return fmt.Sprintf("nomad addr=%s token_set=%t region=%s node_pool=%s worker_job=%s", c.Addr, c.Token != "", c.Region, c.NodePool, c.WorkerJob)
}

// DefaultWorkerJob is the Concourse worker job's ID unless configured.
const DefaultWorkerJob = "concourse-worker"

// Nomad is bootstrapd's handle on the Nomad cluster: it registers the
// worker job, mints client introduction tokens, watches nodes join and run
// their worker, and drains and purges them on retire. Every method is
// bounded by its context and safe to retry.
type Nomad struct {
	client *api.Client
	addr   string
	cfg    NomadConfig // Token cleared: the client holds it
	log    *slog.Logger

	mu        sync.Mutex
	version   Version // ServerVersion's cache, read at versionAt
	versionAt time.Time
}

// NewNomad checks cfg and returns a handle; it does not contact Nomad (see
// Check).
func NewNomad(cfg NomadConfig, log *slog.Logger) (*Nomad, error) {
	cfg.Addr = cmp.Or(cfg.Addr, "http://127.0.0.1:4646")
	cfg.NodePool = cmp.Or(cfg.NodePool, "default")
	cfg.WorkerJob = cmp.Or(cfg.WorkerJob, DefaultWorkerJob)
	u, err := url.Parse(cfg.Addr)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("nomad address %q is not http(s)://host:port", cfg.Addr)
	}
	if u.User != nil {
		// The URL appears in every transport error; a password in it would too.
		return nil, fmt.Errorf("nomad address %s://%s carries credentials: use the token setting instead", u.Scheme, u.Host)
	}
	if u.Path != "" && u.Path != "/" {
		return nil, fmt.Errorf("nomad address %q has a path: give the agent's base URL", cfg.Addr)
	}
	ac := &api.Config{Address: u.Scheme + "://" + u.Host, Region: cfg.Region, SecretID: cfg.Token}
	if cfg.CACert != "" {
		ac.TLSConfig = &api.TLSConfig{CACert: cfg.CACert}
	}
	client, err := api.NewClient(ac)
	if err != nil {
		return nil, fmt.Errorf("nomad at %s: %w", ac.Address, err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg.Token = ""
	return &Nomad{client: client, addr: ac.Address, cfg: cfg, log: log.With("nomad", ac.Address)}, nil
}

// WorkerJobID is the ID of the worker job Init registers and Watch follows.
func (n *Nomad) WorkerJobID() string { return n.cfg.WorkerJob }

// query and write carry ctx into the API client: most of its methods take
// options, and the options carry the context for the HTTP request.
func (n *Nomad) query(ctx context.Context) *api.QueryOptions {
	return (&api.QueryOptions{}).WithContext(ctx)
}

func (n *Nomad) write(ctx context.Context) *api.WriteOptions {
	return (&api.WriteOptions{}).WithContext(ctx)
}

// fail wraps err with the agent address and what was being done, plus a
// hint when the token is the problem. Nomad's error bodies name
// capabilities, never the token, so err can be shown as it is.
func (n *Nomad) fail(what string, err error) error {
	hint := ""
	if s := nomadStatus(err); s == http.StatusForbidden || s == http.StatusUnauthorized {
		hint = " (the Nomad token is missing, expired or lacks the capability)"
	}
	return fmt.Errorf("nomad at %s: %s: %w%s", n.addr, what, err, hint)
}

func nomadStatus(err error) int {
	var ure api.UnexpectedResponseError
	if errors.As(err, &ure) && ure.HasStatusCode() {
		return ure.StatusCode()
	}
	return 0
}

// Check is doctor's probe: the agent answers, the cluster has a leader,
// and the token is accepted (when ACLs are on).
func (n *Nomad) Check(ctx context.Context) error {
	var leader string
	if _, err := n.client.Raw().Query("/v1/status/leader", &leader, n.query(ctx)); err != nil {
		return n.fail("unreachable", err)
	}
	if leader == "" {
		return fmt.Errorf("nomad at %s: no leader elected (are a quorum of servers up?)", n.addr)
	}
	_, _, err := n.client.ACLTokens().Self(n.query(ctx))
	switch {
	case err == nil:
	case nomadStatus(err) == http.StatusBadRequest && strings.Contains(err.Error(), "ACL support disabled"):
		// No ACLs: any token, or none, works.
	default:
		return n.fail("token rejected", err)
	}
	// Watch and Drain need the node list; fail here rather than later.
	if _, _, err := n.client.Nodes().List((&api.QueryOptions{PerPage: 1}).WithContext(ctx)); err != nil {
		return n.fail("listing nodes", err)
	}
	return nil
}

// IntroToken mints a client introduction token (Nomad >= 1.11) for one
// node: its claims name the node and the configured node pool, so it
// registers only that node name in that pool, once, within ttl (0 is the
// servers' default_identity_ttl; the servers cut a longer one to their
// max_identity_ttl).
// The token needs node:write. It goes into the join bundle, never a log.
func (n *Nomad) IntroToken(ctx context.Context, nodeName string, ttl time.Duration) (string, error) {
	if nodeName == "" {
		return "", errors.New("nomad intro token: node name is empty")
	}
	resp, _, err := n.client.ACLIdentity().CreateClientIntroductionToken(&api.ACLIdentityClientIntroductionTokenRequest{
		TTL: ttl, NodeName: nodeName, NodePool: n.cfg.NodePool,
	}, n.write(ctx))
	if err != nil {
		what := fmt.Sprintf("client introduction token for %s", nodeName)
		if e := n.notFound(ctx, what+" (Nomad >= 1.11)", err); e != nil {
			return "", e
		}
		return "", n.fail(what+" (needs Nomad >= 1.11 and node:write)", err)
	}
	if resp.JWT == "" {
		return "", fmt.Errorf("nomad at %s: client introduction token for %s: empty token in reply", n.addr, nodeName)
	}
	return resp.JWT, nil
}

// ErrIntroductionUnknown means the agent did not say how it enforces
// client introduction; configuration has to decide.
var ErrIntroductionUnknown = errors.New("client introduction enforcement not reported")

// IntroductionEnforced reports whether the servers refuse clients that
// register without an introduction token (server.client_introduction
// enforcement = "strict"). "warn" (Nomad 1.11's default), "none" and
// servers older than 1.11 report false; with "warn" a token is still
// accepted and silences the warning, older servers cannot mint one.
//
// It reads the agent's own configuration (/v1/agent/self, agent:read), so
// it is only learnt when Addr is a server agent; a client agent or a
// token without agent:read gives an error wrapping ErrIntroductionUnknown,
// and the caller's configuration decides. Servers are expected to agree.
func (n *Nomad) IntroductionEnforced(ctx context.Context) (bool, error) {
	var self struct {
		Config struct {
			Server *struct {
				Enabled            bool
				ClientIntroduction *struct{ Enforcement string }
			}
		} `json:"config"`
	}
	if _, err := n.client.Raw().Query("/v1/agent/self", &self, n.query(ctx)); err != nil {
		return false, fmt.Errorf("%w: %w", ErrIntroductionUnknown, n.fail("reading agent configuration", err))
	}
	srv := self.Config.Server
	if srv == nil || !srv.Enabled {
		return false, fmt.Errorf("%w: nomad at %s is not a server agent", ErrIntroductionUnknown, n.addr)
	}
	// No client_introduction block: Nomad 1.11's default ("warn") applies,
	// or the servers predate 1.11 and enforce nothing; neither refuses.
	return srv.ClientIntroduction != nil && srv.ClientIntroduction.Enforcement == "strict", nil
}

// Init makes the worker job in Nomad match jobHCL: the servers parse it,
// plan it with a diff, and it is registered only when the plan shows a
// change. It returns one line per change ("registered job ...", "updated
// job ...: <field>: old => new"), and none when the job is already as
// written, so a second run prints nothing. Registration is check-and-set
// on the index the plan saw: a job changed in between fails, not clobbers.
func (n *Nomad) Init(ctx context.Context, jobHCL string) ([]string, error) {
	// ParseHCLOpts has no options argument, so no context; the same
	// request through Raw carries one. Not canonicalized here: that would
	// pin the job to region "global", where the servers' own defaulting
	// picks the region the request is for.
	var job api.Job
	if _, err := n.client.Raw().Write("/v1/jobs/parse", &api.JobsParseRequest{JobHCL: jobHCL}, &job, n.write(ctx)); err != nil {
		return nil, n.fail("parsing the worker job (needs submit-job)", err)
	}
	var id string
	if job.ID != nil {
		id = *job.ID
	}
	if id != n.cfg.WorkerJob {
		return nil, fmt.Errorf("the worker job file defines job %q, but the configured worker job is %q", id, n.cfg.WorkerJob)
	}
	plan, _, err := n.client.Jobs().Plan(&job, true, n.write(ctx))
	if err != nil {
		return nil, n.fail("planning job "+n.cfg.WorkerJob, err)
	}
	if plan.Diff == nil || plan.Diff.Type == "None" {
		return nil, nil
	}
	lines := []string{fmt.Sprintf("updated job %s", n.cfg.WorkerJob)}
	if plan.Diff.Type == "Added" {
		lines = []string{fmt.Sprintf("registered job %s", n.cfg.WorkerJob)}
	} else {
		lines = append(lines, diffLines(plan.Diff)...)
	}
	_, _, err = n.client.Jobs().RegisterOpts(&job, &api.RegisterOptions{
		EnforceIndex: true,
		ModifyIndex:  plan.JobModifyIndex,
		Submission:   &api.JobSubmission{Source: jobHCL, Format: "hcl2"},
	}, n.write(ctx))
	if err != nil {
		return nil, n.fail("registering job "+n.cfg.WorkerJob+" (if it changed since the plan, run again)", err)
	}
	n.log.Info("nomad job changed", "job", n.cfg.WorkerJob, "change", plan.Diff.Type)
	return lines, nil
}

// maxDiffLines keeps Init's report readable when a template rewrite
// touches everything.
const maxDiffLines = 20

// diffLines flattens a job diff to "  group/task/object: field: old => new".
func diffLines(d *api.JobDiff) []string {
	var out []string
	add := func(path string, f *api.FieldDiff) {
		switch f.Type {
		case "None":
		case "Added":
			out = append(out, fmt.Sprintf("  %s%s: + %s", path, f.Name, clipDiff(f.New)))
		case "Deleted":
			out = append(out, fmt.Sprintf("  %s%s: - %s", path, f.Name, clipDiff(f.Old)))
		default:
			out = append(out, fmt.Sprintf("  %s%s: %s => %s", path, f.Name, clipDiff(f.Old), clipDiff(f.New)))
		}
	}
	var objects func(path string, objs []*api.ObjectDiff)
	fields := func(path string, fs []*api.FieldDiff, objs []*api.ObjectDiff) {
		for _, f := range fs {
			add(path, f)
		}
		objects(path, objs)
	}
	objects = func(path string, objs []*api.ObjectDiff) {
		for _, o := range objs {
			if o.Type != "None" {
				fields(path+o.Name+".", o.Fields, o.Objects)
			}
		}
	}
	fields("", d.Fields, d.Objects)
	for _, g := range d.TaskGroups {
		if g.Type == "None" {
			continue
		}
		fields("group "+g.Name+": ", g.Fields, g.Objects)
		for _, t := range g.Tasks {
			if t.Type != "None" {
				fields("group "+g.Name+" task "+t.Name+": ", t.Fields, t.Objects)
			}
		}
	}
	if len(out) > maxDiffLines {
		out = append(out[:maxDiffLines], fmt.Sprintf("  ... and %d more", len(out)-maxDiffLines))
	}
	return out
}

func clipDiff(s string) string {
	const max = 60
	if r := []rune(s); len(r) > max {
		s = string(r[:max]) + "..."
	}
	return fmt.Sprintf("%q", s)
}

// ErrNodeNotFound is wrapped by Drain when no Nomad node has the name.
var ErrNodeNotFound = errors.New("no nomad node with that name")

// Drain drains the named node, system jobs included, so the Concourse
// worker gets SIGUSR2 and retires, and waits until Nomad reports the drain
// complete and no allocation on the node is still running; deadline is
// when Nomad force-stops what remains. ctx bounds the wait.
//
// Idempotent: a drained node drains again at once. A node Nomad does not
// know (never joined, or already purged) is an error wrapping
// ErrNodeNotFound rather than a success, so a misspelt name is not taken
// for a drained node; retire treats it as done. With several nodes of the
// name (a reinstall re-registers under a new ID), all are drained.
func (n *Nomad) Drain(ctx context.Context, name string, deadline time.Duration) error {
	nodes, err := n.nodesNamed(ctx, name)
	if err != nil {
		return err
	}
	if len(nodes) == 0 {
		return fmt.Errorf("nomad at %s: drain %s: %w", n.addr, name, ErrNodeNotFound)
	}
	for _, node := range nodes {
		if err := n.drainOne(ctx, node, deadline); err != nil {
			return err
		}
	}
	return nil
}

func (n *Nomad) drainOne(ctx context.Context, node *api.NodeListStub, deadline time.Duration) error {
	what := fmt.Sprintf("drain %s (%s)", node.Name, node.ID)
	resp, err := n.client.Nodes().UpdateDrainOpts(node.ID, &api.DrainOptions{
		DrainSpec: &api.DrainSpec{Deadline: deadline, IgnoreSystemJobs: false},
		Meta:      map[string]string{"message": "retired by bootstrapd"},
	}, n.write(ctx))
	if err != nil {
		return n.fail(what, err)
	}
	n.log.Info("draining nomad node", "node", node.Name, "id", node.ID, "deadline", deadline)

	// The drainer clears DrainStrategy once every allocation has been told
	// to stop; a blocking query on the node wakes on that.
	q := &api.QueryOptions{WaitIndex: resp.NodeModifyIndex, WaitTime: time.Minute}
	for {
		info, meta, err := n.client.Nodes().Info(node.ID, q.WithContext(ctx))
		if err != nil {
			return n.fail(what+": waiting for the drain", err)
		}
		if info.DrainStrategy == nil {
			break
		}
		q.WaitIndex = meta.LastIndex
	}
	// Told to stop is not stopped: wait for the client to report each
	// allocation terminal (a down node's are marked lost by the servers).
	q = &api.QueryOptions{WaitTime: time.Minute}
	for {
		allocs, meta, err := n.client.Nodes().Allocations(node.ID, q.WithContext(ctx))
		if err != nil {
			return n.fail(what+": waiting for allocations to stop", err)
		}
		running := 0
		for _, a := range allocs {
			if a.ClientStatus == api.AllocClientStatusPending || a.ClientStatus == api.AllocClientStatusRunning {
				running++
			}
		}
		if running == 0 {
			n.log.Info("nomad node drained", "node", node.Name, "id", node.ID)
			return nil
		}
		q.WaitIndex = meta.LastIndex
	}
}

// Purge removes every Nomad node of that name from the servers' state; its
// allocations are marked lost and not replaced (a system job has nowhere
// else to go). Unknown names succeed: purging twice is purging once. A
// client agent still running re-registers, so stop it first (retire drains,
// then the machine is wiped or powered off).
func (n *Nomad) Purge(ctx context.Context, name string) error {
	nodes, err := n.nodesNamed(ctx, name)
	if err != nil {
		return err
	}
	for _, node := range nodes {
		// Gone since it was listed: Nomad answers 500 "node not found".
		_, _, err := n.client.Nodes().Purge(node.ID, n.query(ctx))
		if err != nil && nomadStatus(err) != http.StatusNotFound && !strings.Contains(err.Error(), "node not found") {
			return n.fail(fmt.Sprintf("purge %s (%s)", node.Name, node.ID), err)
		}
		n.log.Info("purged nomad node", "node", node.Name, "id", node.ID)
	}
	return nil
}

// nodesNamed lists the nodes registered under name, newest first. Nomad
// keys nodes by ID; names are ours (hostnames), and a reinstalled machine
// registers a second node of the same name until the first is purged.
func (n *Nomad) nodesNamed(ctx context.Context, name string) ([]*api.NodeListStub, error) {
	if name == "" {
		return nil, errors.New("nomad: node name is empty")
	}
	all, _, err := n.client.Nodes().List(n.query(ctx))
	if err != nil {
		return nil, n.fail("listing nodes", err)
	}
	var out []*api.NodeListStub
	for _, node := range all {
		if node.Name == name {
			out = append(out, node)
		}
	}
	// Newest registration first: it is the one a running machine uses.
	slices.SortFunc(out, func(a, b *api.NodeListStub) int { return cmp.Compare(b.CreateIndex, a.CreateIndex) })
	return out, nil
}

// WorkerJob is what the worker job template (profiles/
// concourse-worker.nomad.hcl.tmpl) is rendered with.
type WorkerJob struct {
	ID          string   // default DefaultWorkerJob
	Datacenters []string // default ["*"]: every datacenter
	NodePool    string   // "" leaves Nomad's default pool; keep it the intro tokens' pool

	TSAHost      string // host:port of the Concourse TSA (the web node's 2222)
	TSAPublicKey string // the TSA host key in authorized_keys form (public)

	// Vault is how the worker reads its key: VaultToken (a vault block
	// naming VaultPolicy), VaultWorkloadIdentity (one naming VaultRole), or
	// "" for no Vault at all (only the stand-in can run so).
	Vault       string
	VaultPolicy string // default PolicyConcourseWorker
	VaultRole   string // Vault JWT role the worker logs in with (workload identity)
	KVMount     string // KV v2 mount holding concourse/workers/<node name>; default DefaultVaultMount

	// StandIn renders a raw_exec shell instead of Concourse: tests and the
	// demo run it on clients without Docker or Concourse. With Vault it
	// checks the key Nomad rendered from Vault and fails without a valid
	// one, then sleeps until SIGUSR2 as the real worker runs until retired.
	StandIn bool
	// StandInURL, with StandIn, is where nodes fetch concourse-standin
	// (internal/concoursetest: not Concourse), which then runs as the
	// worker with the real worker's environment and keys, and registers
	// with the TSA at TSAHost: the node is ready only if the TSA took the
	// key from Vault. Nomad refuses a download whose sha256 is not
	// StandInSHA256 (hex): the provisioning network is not trusted.
	StandInURL    string
	StandInSHA256 string

	Driver  string // the real worker's driver: docker (default), exec or raw_exec
	Image   string // docker image; default "concourse/concourse"
	Command string // exec and raw_exec: the concourse binary on the node; default /usr/local/concourse/bin/concourse
	WorkDir string // default /opt/concourse/worker

	KillTimeout   time.Duration // how long a retiring worker may finish builds; default 1h (stand-in 10s)
	CPU, MemoryMB int           // default 1000 MHz and 2048 MB (stand-in 20 and 32)
}

// kvMountPath is what may be written inside the job's consul-template
// text: a plain Vault path, nothing that could end the template action.
var kvMountPath = regexp.MustCompile(`^[A-Za-z0-9_-][A-Za-z0-9_.-]*(/[A-Za-z0-9_-][A-Za-z0-9_.-]*)*$`)

// RenderWorkerJob renders the worker job template at tmplPath into an HCL2
// jobspec for Init. Values are quoted by the template's hcl function;
// configuration that would make a job Nomad rejects, or a worker that can
// never connect, is refused here with the setting named.
func RenderWorkerJob(tmplPath string, j WorkerJob) (string, error) {
	j.ID = cmp.Or(j.ID, DefaultWorkerJob)
	if len(j.Datacenters) == 0 {
		j.Datacenters = []string{"*"}
	}
	j.KVMount = strings.Trim(cmp.Or(j.KVMount, DefaultVaultMount), "/")
	if !kvMountPath.MatchString(j.KVMount) {
		return "", fmt.Errorf("worker job: KV mount %q is not a plain Vault path", j.KVMount)
	}
	j.VaultPolicy = cmp.Or(j.VaultPolicy, PolicyConcourseWorker)
	switch {
	case j.Vault != "" && j.Vault != VaultToken && j.Vault != VaultWorkloadIdentity:
		return "", fmt.Errorf("worker job: vault integration %q is not %q or %q", j.Vault, VaultToken, VaultWorkloadIdentity)
	case j.Vault == VaultWorkloadIdentity && j.VaultRole == "":
		return "", errors.New("worker job: no Vault role: with workload identity the worker logs in to Vault under a JWT role")
	}
	def := struct {
		kill     time.Duration
		cpu, mem int
	}{time.Hour, 1000, 2048}
	if j.StandIn {
		def.kill, def.cpu, def.mem = 10*time.Second, 20, 32
		if err := j.checkStandInBinary(); err != nil {
			return "", fmt.Errorf("worker job: %w", err)
		}
	} else {
		j.Driver = cmp.Or(j.Driver, "docker")
		j.Image = cmp.Or(j.Image, "concourse/concourse")
		j.Command = cmp.Or(j.Command, "/usr/local/concourse/bin/concourse")
		j.WorkDir = cmp.Or(j.WorkDir, "/opt/concourse/worker")
		if err := j.checkReal(); err != nil {
			return "", fmt.Errorf("worker job: %w", err)
		}
	}
	j.KillTimeout = cmp.Or(j.KillTimeout, def.kill)
	j.CPU = cmp.Or(j.CPU, def.cpu)
	j.MemoryMB = cmp.Or(j.MemoryMB, def.mem)

	src, err := os.ReadFile(tmplPath)
	if err != nil {
		return "", fmt.Errorf("worker job template: %w", err)
	}
	t, err := template.New(tmplPath).Option("missingkey=error").Funcs(template.FuncMap{
		"hcl": hclQuote,
		"hclList": func(vs []string) (string, error) {
			q := make([]string, len(vs))
			for i, v := range vs {
				var err error
				if q[i], err = hclQuote(v); err != nil {
					return "", err
				}
			}
			return "[" + strings.Join(q, ", ") + "]", nil
		},
	}).Parse(string(src))
	if err != nil {
		return "", fmt.Errorf("worker job template: %w", err)
	}
	view := struct {
		WorkerJob
		KillTimeout string
		// Keyed: the worker task connects to the TSA with its key from
		// Vault (the real worker, or the stand-in binary).
		Keyed bool
	}{j, j.KillTimeout.String(), !j.StandIn || j.StandInURL != ""}
	var out strings.Builder
	if err := t.Execute(&out, view); err != nil {
		return "", fmt.Errorf("worker job template: %w", err)
	}
	return out.String(), nil
}

// checkReal refuses settings a real worker cannot start or connect with.
func (j *WorkerJob) checkReal() error {
	switch j.Driver {
	case "docker", "exec", "raw_exec":
	default:
		return fmt.Errorf("driver %q is not docker, exec or raw_exec", j.Driver)
	}
	return j.checkKeyed()
}

// checkStandInBinary refuses a stand-in binary Nomad could not fetch
// safely, or that could not connect.
func (j *WorkerJob) checkStandInBinary() error {
	if j.StandInURL == "" && j.StandInSHA256 == "" {
		return nil
	}
	if u, err := url.Parse(j.StandInURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("stand-in worker URL %q is not an http(s) URL", j.StandInURL)
	}
	if len(j.StandInSHA256) != 64 || strings.Trim(j.StandInSHA256, "0123456789abcdef") != "" {
		return fmt.Errorf("stand-in worker sha256 %q is not 64 lowercase hex digits", j.StandInSHA256)
	}
	return j.checkKeyed()
}

// checkKeyed refuses settings a worker that connects to the TSA with its
// key from Vault cannot start or connect with.
func (j *WorkerJob) checkKeyed() error {
	if _, port, err := net.SplitHostPort(j.TSAHost); err != nil || port == "" {
		return fmt.Errorf("TSA host %q is not host:port (the web node's TSA, usually port 2222)", j.TSAHost)
	}
	// The key is written into a consul-template template: one line, and no
	// template delimiters.
	if j.TSAPublicKey == "" || strings.ContainsAny(j.TSAPublicKey, "\r\n") ||
		strings.Contains(j.TSAPublicKey, "{{") || strings.Contains(j.TSAPublicKey, "}}") {
		return errors.New("TSA public key must be the one-line authorized_keys form of the TSA host key")
	}
	if j.Vault == "" {
		return errors.New("no Vault integration: the worker reads its key from Vault (configure the site's vault block)")
	}
	return nil
}
