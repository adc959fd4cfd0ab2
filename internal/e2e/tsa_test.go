package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	nomadapi "github.com/hashicorp/nomad/api"
	"golang.org/x/crypto/ssh"

	"github.com/bootstrapd/bootstrapd/internal/cluster/clustertest"
	"github.com/bootstrapd/bootstrapd/internal/netlab"
)

// concourseStandIn is the Concourse stand-in (TSA and worker).
func concourseStandIn(t *testing.T) string {
	t.Helper()
	return goBuild(t, "github.com/bootstrapd/bootstrapd/internal/concoursetest/standin")
}

// tsa is seed 000's web job (examples/demo/concourse-web.nomad.hcl)
// with its TSA stand-in, running on the client named "web".
type tsa struct {
	addr    string // host:port on the lab's network
	hostKey ssh.PublicKey
	keyFile string
	nc      *nomadapi.Client
	web     *clustertest.NomadClient // the client it runs on
	run     int
}

// newTSA makes the TSA stand-in's host key with `concourse-standin
// keygen`; start runs it at addr (after `cluster init` has written the
// concourse-web policy its template reads with).
func newTSA(t *testing.T, nc *nomadapi.Client, web *clustertest.NomadClient, addr string) *tsa {
	t.Helper()
	keyFile := filepath.Join(t.TempDir(), "tsa_host_key")
	if out, err := exec.Command(concourseStandIn(t), "keygen", "-t", "ed25519", keyFile).CombinedOutput(); err != nil {
		t.Fatalf("concourse-standin keygen: %v\n%s", err, out)
	}
	pub, err := os.ReadFile(keyFile + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	hostKey, _, _, _, err := ssh.ParseAuthorizedKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return &tsa{addr: addr, hostKey: hostKey, keyFile: keyFile, nc: nc, web: web}
}

// start runs the web job, or runs it again: a new allocation, with the
// keys rendered afresh.
func (s *tsa) start(t *testing.T, lab *netlab.Lab) {
	t.Helper()
	s.run++
	root, _ := netlab.RepoRoot()
	spec, err := os.ReadFile(filepath.Join(root, "examples", "demo", "concourse-web.nomad.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	job, err := s.nc.Jobs().ParseHCLOpts(&nomadapi.JobsParseRequest{JobHCL: string(spec), Canonicalize: true,
		Variables: fmt.Sprintf("standin = %q\nlisten = %q\nhost_key = %q\nrun = \"%d\"\n", concourseStandIn(t), s.addr, s.keyFile, s.run)})
	if err != nil {
		t.Fatalf("the web job (examples/demo/concourse-web.nomad.hcl): %v", err)
	}
	if _, _, err := s.nc.Jobs().Register(job, nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Minute, fmt.Sprintf("TSA stand-in run %d running", s.run), func() bool {
		a := s.alloc(t)
		return a != nil && a.ClientStatus == nomadapi.AllocClientStatusRunning
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := lab.Ready(ctx, "tcp", s.addr); err != nil {
		t.Fatalf("TSA stand-in at %s: %v", s.addr, err)
	}
}

// alloc is the allocation of the current run, or nil.
func (s *tsa) alloc(t *testing.T) *nomadapi.AllocationListStub {
	t.Helper()
	allocs, _, err := s.nc.Jobs().Allocations("concourse-web", true, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range allocs {
		if a.JobVersion == uint64(s.run-1) {
			return a
		}
	}
	return nil
}

// log is what the current run's TSA stand-in printed, read from the web
// client's data dir: the test process cannot reach the web client's HTTP
// in the lab's namespace, which Nomad's API would use for alloc logs.
func (s *tsa) log(t *testing.T) string {
	t.Helper()
	a := s.alloc(t)
	if a == nil {
		t.Fatal("no TSA stand-in allocation")
	}
	b, _ := os.ReadFile(filepath.Join(s.web.DataDir, "alloc", a.ID, "alloc", "logs", "tsa.stdout.0"))
	return string(b)
}

// login tries the TSA with an RSA private key in PEM, as a worker would,
// and returns the SSH handshake's error.
func (s *tsa) login(t *testing.T, lab *netlab.Lab, privatePEM string) error {
	t.Helper()
	signer, err := ssh.ParsePrivateKey([]byte(privatePEM))
	if err != nil {
		t.Fatalf("the worker key from Vault: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := lab.Dial(ctx, "tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	c, _, _, err := ssh.NewClientConn(conn, s.addr, &ssh.ClientConfig{
		User: "worker", Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.FixedHostKey(s.hostKey), Timeout: 30 * time.Second,
	})
	if err != nil {
		conn.Close()
		return err
	}
	c.Close()
	return nil
}

// publicKeyLine is the TSA's host key as the site's tsa_public_key.
func (s *tsa) publicKeyLine() string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(s.hostKey)))
}
