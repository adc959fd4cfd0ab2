package clustertest

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bootstrapd/bootstrapd/internal/netlab"
)

// NomadServer is a running server-only Nomad agent (no client in it, so
// every node a test sees joined the way a real one does) on loopback or at
// a Place.
type NomadServer struct {
	Addr    string // http://<host>:<port>
	RPC     string // <host>:<port>: what clients join
	Token   string // management token from the ACL bootstrap; "" without ACLs
	LogPath string
	// HTTP reaches Addr from the test process; give it to
	// nomadapi.Config.HttpClient.
	HTTP *http.Client
	at   Place
}

// NomadOptions shape a server. The zero value is Nomad's defaults: no
// ACLs, no Vault.
//
// The binary is an open-source release (Nomad 1.6): it has the token
// integration for Vault but neither workload identity for Vault (1.7) nor
// client introduction tokens (1.11); those are tested against NomadAPI.
type NomadOptions struct {
	ACL bool // enable ACLs and bootstrap them (Token)
	// EventBufferSize is how many Raft writes' events the server keeps for
	// event stream subscribers to resume from; 0 is Nomad's 100.
	EventBufferSize int
	// Vault, with VaultToken, turns on the token integration: the server
	// derives task tokens from the nomad-cluster role with VaultToken (a
	// token from `bootstrapd cluster server-token`), given by environment.
	Vault      *VaultServer
	VaultToken string
	// At puts the server on a lab's network, for clients in QEMU VMs.
	At Place
	// HeartbeatGrace is how long a client may miss heartbeats before it
	// is down; 0 is 2s, for tests that switch machines off. A client in
	// a TCG VM on a busy machine needs more.
	HeartbeatGrace time.Duration
}

// StartNomad starts the server bootstrapd is meant for: ACLs bootstrapped.
func StartNomad(t testing.TB) *NomadServer {
	t.Helper()
	return StartNomadWith(t, NomadOptions{ACL: true})
}

// StartNomadWith starts a server for t, stopped when t ends; its output
// is shown if t fails.
func StartNomadWith(t testing.TB, o NomadOptions) *NomadServer {
	t.Helper()
	bin := Binary(t, "nomad")
	dir := t.TempDir()
	var lastErr error
	// A port found free may be taken before nomad binds it; nomad then
	// exits at once, and other ports are tried.
	for attempt := 1; attempt <= 3; attempt++ {
		ports, err := nomadPorts()
		if err != nil {
			t.Fatalf("clustertest: %v", err)
		}
		host := o.At.host()
		s := &NomadServer{
			Addr:    "http://" + net.JoinHostPort(host, strconv.Itoa(ports[0])),
			RPC:     net.JoinHostPort(host, strconv.Itoa(ports[1])),
			LogPath: filepath.Join(dir, fmt.Sprintf("nomad-server-%d.log", attempt)),
			HTTP:    o.At.client(),
			at:      o.At,
		}
		cfg := nomadAgentHCL(filepath.Join(dir, fmt.Sprintf("data-%d", attempt)), host, ports) + serverHCL(o)
		cfgPath := filepath.Join(dir, "server.hcl")
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		var env []string
		if o.VaultToken != "" {
			env = []string{"VAULT_TOKEN=" + o.VaultToken}
		}
		p, err := startNomadAgent(t, o.At.NS, bin, dir, s.LogPath, nil, env, "-config="+cfgPath)
		if err != nil {
			t.Fatalf("clustertest: %v", err)
		}
		if lastErr = waitNomadReady(s.HTTP, s.Addr, p.exited, time.Minute); lastErr != nil {
			p.stop()
			logTail(t, s.LogPath)
			continue
		}
		t.Cleanup(func() {
			p.stop()
			if t.Failed() {
				logTail(t, s.LogPath)
			}
		})
		if o.ACL {
			s.Token = nomadUUID()
			if err := aclBootstrap(s.HTTP, s.Addr, s.Token); err != nil {
				t.Fatalf("clustertest: nomad ACL bootstrap at %s: %v", s.Addr, err)
			}
		}
		return s
	}
	t.Fatalf("clustertest: nomad server: %v", lastErr)
	return nil
}

func serverHCL(o NomadOptions) string {
	var b strings.Builder
	// A client that stops heartbeating is down after about 3s instead of
	// Nomad's 10s TTL plus 10s grace: tests switch machines off.
	grace := cmp.Or(o.HeartbeatGrace, 2*time.Second)
	fmt.Fprintf(&b, "server {\n  enabled = true\n  bootstrap_expect = 1\n  min_heartbeat_ttl = \"1s\"\n  heartbeat_grace = %q\n", grace.String())
	if o.EventBufferSize > 0 {
		fmt.Fprintf(&b, "  event_buffer_size = %d\n", o.EventBufferSize)
	}
	b.WriteString("}\n")
	if o.ACL {
		b.WriteString("acl {\n  enabled = true\n}\n")
	}
	if o.Vault != nil {
		// The token comes from VAULT_TOKEN, never this file.
		fmt.Fprintf(&b, "vault {\n  enabled = true\n  address = %q\n  create_from_role = \"nomad-cluster\"\n}\n", o.Vault.Addr)
	}
	return b.String()
}

// NomadClient is a running client agent.
type NomadClient struct {
	DataDir string
	LogPath string
	stop    func()
}

// Stop kills the client agent and every task it started, as a machine
// being switched off would; the node stays registered until the servers
// miss its heartbeats. Stop is safe to call more than once.
func (c *NomadClient) Stop() { c.stop() }

// Log returns the client's output so far.
func (c *NomadClient) Log() string {
	b, _ := os.ReadFile(c.LogPath)
	return string(b)
}

// StartClient runs a client agent the way a node uses its join bundle:
// configHCL (cluster.ClientConfig's output) is its configuration file and
// introToken, when not "", goes to <data_dir>/client/intro_token.jwt. A
// second file beside it only moves the agent onto ports of its own (on
// the server's network) with a private data_dir, which a real node has no
// need for. It does not wait for the node to register: tests watch for
// that.
func StartClient(t testing.TB, srv *NomadServer, configHCL []byte, introToken string) *NomadClient {
	t.Helper()
	if !bytes.Contains(configHCL, []byte(strconv.Quote(srv.RPC))) {
		t.Fatalf("clustertest: client config does not name the server %s:\n%s", srv.RPC, configHCL)
	}
	bin := Binary(t, "nomad")
	dir := t.TempDir()
	c := &NomadClient{DataDir: filepath.Join(dir, "data"), LogPath: filepath.Join(dir, "nomad-client.log")}
	if introToken != "" {
		state := filepath.Join(c.DataDir, "client")
		if err := os.MkdirAll(state, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(state, "intro_token.jwt"), []byte(introToken), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ports, err := nomadPorts()
	if err != nil {
		t.Fatalf("clustertest: %v", err)
	}
	bundle, local := filepath.Join(dir, "client.hcl"), filepath.Join(dir, "local.hcl")
	if err := os.WriteFile(bundle, configHCL, 0o600); err != nil {
		t.Fatal(err)
	}
	localHCL := nomadAgentHCL(c.DataDir, srv.at.host(), ports)
	if srv.at.Iface != "" {
		localHCL += fmt.Sprintf("client {\n  network_interface = %q\n}\n", srv.at.Iface)
	}
	if err := os.WriteFile(local, []byte(localHCL), 0o600); err != nil {
		t.Fatal(err)
	}
	// Later -config files override earlier ones: local.hcl's data_dir wins.
	p, err := startNomadAgent(t, srv.at.NS, bin, dir, c.LogPath, []string{c.DataDir}, nil, "-config="+bundle, "-config="+local)
	if err != nil {
		t.Fatalf("clustertest: %v", err)
	}
	c.stop = p.stop
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			logTail(t, c.LogPath)
		}
	})
	return c
}

// nomadAgentHCL is the part of an agent's configuration that puts it on
// host with ports of its own: http, rpc, serf.
func nomadAgentHCL(dataDir, host string, ports [3]int) string {
	return fmt.Sprintf(`data_dir  = %[1]q
bind_addr = %[2]q
disable_update_check = true
advertise {
  http = %[2]q
  rpc  = %[2]q
  serf = %[2]q
}
ports {
  http = %[3]d
  rpc  = %[4]d
  serf = %[5]d
}
`, dataDir, host, ports[0], ports[1], ports[2])
}

// nomadProc is a started agent; stop kills it with all it spawned.
type nomadProc struct {
	exited <-chan struct{} // closed when the agent has exited
	stop   func()
}

// startNomadAgent runs `nomad agent args...` with its output in logPath.
// stop kills the agent and its descendants (a client's executors and
// tasks live in sessions of their own, so no process group holds them
// all) and then lazily unmounts whatever the client mounted under
// mountRoots (the tmpfs secrets and private dirs of each task).
func startNomadAgent(t testing.TB, ns netlab.NS, bin, dir, logPath string, mountRoots, env []string, args ...string) (*nomadProc, error) {
	// No NOMAD_* of the caller's: an intro token in the environment would
	// override the file.
	p, err := startProc(ns, bin, dir, logPath, env, append([]string{"agent"}, args...)...)
	if err != nil {
		return nil, err
	}
	cmd, exited := p.cmd, p.exited
	var once sync.Once
	stop := func() { once.Do(func() { killAgent(t, cmd.Process.Pid, exited, mountRoots) }) }
	return &nomadProc{exited: exited, stop: stop}, nil
}

// killAgent kills the agent and its descendants at once, before any of
// them is reparented out of reach, then cleans up its mounts.
func killAgent(t testing.TB, pid int, exited <-chan struct{}, mountRoots []string) {
	for _, p := range append(descendants(pid), pid) {
		_ = syscall.Kill(p, syscall.SIGKILL)
	}
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Logf("clustertest: nomad agent %d did not exit after SIGKILL", pid)
	}
	unmountUnder(t, mountRoots)
}

// descendants lists every process below pid, read from /proc.
func descendants(pid int) []int {
	children := map[int][]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// The command may hold spaces and parentheses: fields start after
		// the last ')'. They are: state ppid ...
		f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		if len(f) < 2 {
			continue
		}
		if ppid, err := strconv.Atoi(f[1]); err == nil {
			children[ppid] = append(children[ppid], p)
		}
	}
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		out = append(out, children[p]...)
		queue = append(queue, children[p]...)
	}
	return out
}

// unmountUnder detaches every mount below roots, deepest first, so that
// t.TempDir can remove them.
func unmountUnder(t testing.TB, roots []string) {
	if len(roots) == 0 {
		return
	}
	info, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	var points []string
	for _, line := range strings.Split(string(info), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		for _, r := range roots {
			if strings.HasPrefix(f[4], r+"/") {
				points = append(points, f[4])
			}
		}
	}
	slices.SortFunc(points, func(a, b string) int { return len(b) - len(a) })
	for _, p := range points {
		if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil {
			t.Logf("clustertest: unmount %s: %v", p, err)
		}
	}
}

// waitNomadReady polls until the server has a leader, the agent exits, or
// the time is up. Polling is fine here: it only waits for a process to
// start.
func waitNomadReady(client *http.Client, addr string, exited <-chan struct{}, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		var leader string
		err := getJSON(ctx, client, addr+"/v1/status/leader", &leader)
		if err == nil && leader == "" {
			err = errors.New("no leader yet")
		}
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			return errors.New("nomad agent exited before it was ready (log above)")
		case <-ctx.Done():
			return fmt.Errorf("nomad at %s not ready after %s: %v", addr, limit, err)
		case <-tick.C:
		}
	}
}

func getJSON(ctx context.Context, client *http.Client, url string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answers %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// aclBootstrap makes secret the management token (a chosen secret, so the
// tests know what must never appear in output).
func aclBootstrap(client *http.Client, addr, secret string) error {
	body, _ := json.Marshal(map[string]string{"BootstrapSecret": secret})
	resp, err := client.Post(addr+"/v1/acl/bootstrap", "application/json", bytes.NewReader(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("answered %s", resp.Status)
	}
	return nil
}

// nomadPorts finds three free loopback ports: http, rpc, serf.
func nomadPorts() ([3]int, error) {
	var ports [3]int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return ports, err
		}
		ls = append(ls, l)
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports, nil
}

// nomadUUID returns a random UUID, the form of Nomad's IDs and secrets.
func nomadUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
