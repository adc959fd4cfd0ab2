// Package etcdtest runs a real etcd cluster for tests: Debian's etcd-server
// (/usr/bin/etcd), each member a child process with its own data
// directory, on loopback ports or each in a network namespace of its own on
// a netlab bridge, so that tests can kill, restart and cut off members.
package etcdtest

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bootstrapd/bootstrapd/internal/netlab"
	"github.com/bootstrapd/bootstrapd/internal/routeros/routerostest"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
)

// Member is one etcd process.
type Member struct {
	Name       string
	ClientURL  string
	peerURL    string
	dir        string
	ns         netlab.NS // "" on loopback
	cmd        *exec.Cmd
	exited     chan struct{}
	cluster    *Cluster
	startedNew bool
}

// Cluster is the members, started together.
type Cluster struct {
	Members []*Member
	initial string // --initial-cluster
	token   string
	log     string // where members' output goes
	// CertFile and KeyFile, when set (StartTLS), are the members' server
	// certificate, the CA their clients must present a certificate of,
	// and that client certificate: one self-signed certificate.
	CertFile, KeyFile string
}

// Endpoints are the members' client URLs.
func (c *Cluster) Endpoints() []string {
	var out []string
	for _, m := range c.Members {
		out = append(out, m.ClientURL)
	}
	return out
}

// Binary is the etcd server the tests run, or a failure that says how to
// get one.
func Binary(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("etcd")
	if err != nil {
		t.Fatal("etcdtest: no etcd binary on PATH; install Debian's etcd-server (apt-get install etcd-server), as .ci/run does")
	}
	return p
}

// Start runs an n-member cluster on loopback and waits until it has a
// leader. It is stopped when the test ends.
func Start(t testing.TB, n int) *Cluster {
	t.Helper()
	return startLoopback(t, n, false)
}

// StartTLS is Start with the members' client URLs on https, asking every
// client for a certificate signed by the cluster's (Cluster.CertFile).
func StartTLS(t testing.TB, n int) *Cluster {
	t.Helper()
	return startLoopback(t, n, true)
}

func startLoopback(t testing.TB, n int, tls bool) *Cluster {
	t.Helper()
	c := &Cluster{token: fmt.Sprintf("t%d", time.Now().UnixNano())}
	scheme := "http://"
	if tls {
		c.CertFile, c.KeyFile = routerostest.CertFiles(t, t.TempDir(), "etcd")
		scheme = "https://"
	}
	var peers []string
	for i := range n {
		m := &Member{Name: fmt.Sprintf("m%d", i), cluster: c, dir: t.TempDir(),
			ClientURL: scheme + freePort(t), peerURL: "http://" + freePort(t)}
		c.Members = append(c.Members, m)
		peers = append(peers, m.Name+"="+m.peerURL)
	}
	c.initial = strings.Join(peers, ",")
	c.start(t)
	return c
}

// StartIn runs an n-member cluster with each member in a namespace of its
// own on lab's bridge, at addresses first, first+1, …; the bridge must
// hold them. Killing a member or cutting its link (Member.NS) is then what
// losing a machine is.
func StartIn(t testing.TB, lab *netlab.Lab, first netip.Addr, n int) *Cluster {
	t.Helper()
	c := &Cluster{token: fmt.Sprintf("t%d", time.Now().UnixNano())}
	var peers []string
	addr := first
	for i := range n {
		h := lab.AddHost(t, netip.PrefixFrom(addr, lab.Prefix.Bits()).String())
		m := &Member{Name: fmt.Sprintf("m%d", i), cluster: c, dir: t.TempDir(), ns: h.NS,
			ClientURL: "http://" + addr.String() + ":2379", peerURL: "http://" + addr.String() + ":2380"}
		c.Members = append(c.Members, m)
		peers = append(peers, m.Name+"="+m.peerURL)
		addr = addr.Next()
	}
	c.initial = strings.Join(peers, ",")
	c.start(t)
	return c
}

// NS is the member's namespace ("" on loopback).
func (m *Member) NS() netlab.NS { return m.ns }

func (c *Cluster) start(t testing.TB) {
	t.Helper()
	c.log = filepath.Join(t.TempDir(), "etcd.log")
	for _, m := range c.Members {
		m.startedNew = true
		m.Start(t)
	}
	t.Cleanup(func() {
		for _, m := range c.Members {
			m.Kill()
		}
		if t.Failed() {
			if b, err := os.ReadFile(c.log); err == nil {
				t.Logf("etcd members' log (last 4 KiB):\n%s", tail(b, 4096))
			}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.WaitHealthy(ctx); err != nil {
		t.Fatalf("etcdtest: cluster did not come up: %v", err)
	}
}

// Start (re)starts a member that is not running, with the data it had.
func (m *Member) Start(t testing.TB) {
	t.Helper()
	state := "existing"
	if m.startedNew {
		state, m.startedNew = "new", false
	}
	args := []string{"--name", m.Name, "--data-dir", m.dir,
		"--listen-client-urls", m.ClientURL, "--advertise-client-urls", m.ClientURL,
		"--listen-peer-urls", m.peerURL, "--initial-advertise-peer-urls", m.peerURL,
		"--initial-cluster", m.cluster.initial, "--initial-cluster-state", state,
		"--initial-cluster-token", m.cluster.token,
		// Tests measure failover: elect within a second of losing a leader.
		"--heartbeat-interval", "100", "--election-timeout", "1000",
		"--logger", "zap", "--log-outputs", m.cluster.log}
	if c := m.cluster; c.CertFile != "" {
		args = append(args, "--cert-file", c.CertFile, "--key-file", c.KeyFile, "--trusted-ca-file", c.CertFile, "--client-cert-auth")
	}
	var cmd *exec.Cmd
	if m.ns != "" {
		cmd = m.ns.Command(context.Background(), Binary(t), args...)
	} else {
		cmd = exec.Command(Binary(t), args...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("etcdtest: start %s: %v", m.Name, err)
	}
	m.cmd, m.exited = cmd, make(chan struct{})
	go func(done chan struct{}) { cmd.Wait(); close(done) }(m.exited)
}

// Kill stops the member at once (SIGKILL), as a crash would.
func (m *Member) Kill() {
	if m.cmd == nil {
		return
	}
	m.cmd.Process.Signal(syscall.SIGKILL)
	<-m.exited
	m.cmd = nil
}

// Running reports whether the member's process is up.
func (m *Member) Running() bool {
	if m.cmd == nil {
		return false
	}
	select {
	case <-m.exited:
		return false
	default:
		return true
	}
}

// WaitHealthy waits until every running member answers a linearizable
// read (which needs a leader and a quorum).
func (c *Cluster) WaitHealthy(ctx context.Context) error {
	var last error
	for {
		last = nil
		for _, m := range c.Members {
			if !m.Running() {
				continue
			}
			if err := m.check(ctx); err != nil {
				last = fmt.Errorf("%s: %w", m.Name, err)
			}
		}
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return last
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (m *Member) check(ctx context.Context) error {
	cli, err := clientv3.New(m.cluster.config([]string{m.ClientURL}, time.Second))
	if err != nil {
		return err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	_, err = cli.Get(ctx, "health")
	return err
}

// config is a client's configuration for endpoints. Members in
// namespaces are dialled from the first member's namespace: this process
// is not on the lab's bridge.
func (c *Cluster) config(endpoints []string, timeout time.Duration) clientv3.Config {
	cfg := clientv3.Config{Endpoints: endpoints, DialTimeout: timeout, Logger: zap.NewNop()}
	if c.CertFile != "" {
		tlsc, err := transport.TLSInfo{TrustedCAFile: c.CertFile, CertFile: c.CertFile, KeyFile: c.KeyFile}.ClientConfig()
		if err == nil {
			cfg.TLS = tlsc
		}
	}
	if ns := c.Members[0].ns; ns != "" {
		cfg.DialOptions = []grpc.DialOption{grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return ns.Dial(ctx, "tcp", addr)
		})}
	}
	return cfg
}

// Client is a client of the whole cluster, closed when the test ends.
func (c *Cluster) Client(t testing.TB) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(c.config(c.Endpoints(), 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func freePort(t testing.TB) string {
	return fmt.Sprintf("127.0.0.1:%d", netlab.FreePort(t, "tcp"))
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
