// Package e2e runs the real bootstrapd binary inside network namespaces
// against real clients: udhcpc, dhclient, dnsmasq, tftp-hpa, curl and QEMU.
package e2e

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bootstrapd/bootstrapd/internal/netlab"
)

// built is what goBuild made: one build per package per test process.
var built sync.Map // package path -> func() (string, error)

// goBuild builds the command in package pkg once per test process and
// returns the binary's path.
func goBuild(t testing.TB, pkg string) string {
	t.Helper()
	once, _ := built.LoadOrStore(pkg, sync.OnceValues(func() (string, error) {
		dir, err := os.MkdirTemp("", "bootstrapd-e2e-bin")
		if err != nil {
			return "", err
		}
		p := filepath.Join(dir, filepath.Base(pkg))
		if out, err := exec.Command("go", "build", "-o", p, pkg).CombinedOutput(); err != nil {
			return "", fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
		}
		return p, nil
	}))
	p, err := once.(func() (string, error))()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// binary is bootstrapd, built once per test process.
func binary(t testing.TB) string {
	t.Helper()
	return goBuild(t, "github.com/bootstrapd/bootstrapd/cmd/bootstrapd")
}

// daemon is a bootstrapd process serving a lab.
type daemon struct {
	bin, dir, site, sock string
	ns                   netlab.NS // "": this process's
	cmd                  *exec.Cmd
	log                  daemonLog
	done                 chan struct{}
}

// daemonLog is the file bootstrapd's output goes to. The process writes it
// directly, as it would a journal: through a pipe, a copier goroutine in
// this busy test process would set bootstrapd's pace (a boot storm spent
// most of its lock waiting behind its log writes blocked on the pipe).
type daemonLog string

// String is what has been logged so far.
func (l daemonLog) String() string {
	data, _ := os.ReadFile(string(l))
	return string(data)
}

// site writes a site file for lab with the given dhcp mode and extra HCL,
// beside a netboot directory holding Debian's iPXE binaries.
func writeSite(t testing.TB, lab *netlab.Lab, dir, dhcpBody, extra string) string {
	t.Helper()
	return writeSiteOn(t, lab.Bridge, dir, dhcpBody, extra)
}

// writeSiteOn is writeSite for a daemon serving iface.
func writeSiteOn(t testing.TB, iface, dir, dhcpBody, extra string) string {
	t.Helper()
	nb := filepath.Join(dir, "netboot")
	os.MkdirAll(nb, 0o755)
	os.MkdirAll(filepath.Join(dir, "profiles"), 0o755)
	for _, f := range []string{"undionly.kpxe", "snponly.efi", "ipxe.efi"} {
		data, err := os.ReadFile(filepath.Join("/usr/lib/ipxe", f))
		if err != nil {
			t.Fatalf("iPXE binary: %v (apt-get install ipxe)", err)
		}
		if err := os.WriteFile(filepath.Join(nb, f), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	site := fmt.Sprintf(`interface = %q
state_dir = "state"
dhcp {
%s
}
api {
  socket = "api.sock"
}
%s
`, iface, dhcpBody, extra)
	p := filepath.Join(dir, "site.hcl")
	if err := os.WriteFile(p, []byte(site), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// startDaemon runs `bootstrapd serve -debug` inside the lab namespace (or,
// with lab nil, in this one) and waits until it says it is serving.
func startDaemon(t testing.TB, lab *netlab.Lab, dir string) *daemon {
	t.Helper()
	return startDaemonArgs(t, lab, dir, "-debug")
}

// startDaemonArgs is startDaemon with serve's flags given: none runs it as
// a service runs, for measurements.
func startDaemonArgs(t testing.TB, lab *netlab.Lab, dir string, flags ...string) *daemon {
	t.Helper()
	var ns netlab.NS
	if lab != nil {
		ns = lab.NS
	}
	return startDaemonIn(t, ns, dir, flags...)
}

// startDaemonIn is startDaemonArgs in the namespace ns ("": this one).
func startDaemonIn(t testing.TB, ns netlab.NS, dir string, flags ...string) *daemon {
	t.Helper()
	d := &daemon{bin: binary(t), dir: dir, site: filepath.Join(dir, "site.hcl"), sock: filepath.Join(dir, "api.sock"), ns: ns,
		log: daemonLog(filepath.Join(dir, "bootstrapd.log")), done: make(chan struct{})}
	args := append([]string{"serve", "-config", d.site, "-log-format", "json"}, flags...)
	if ns != "" {
		d.cmd = ns.Command(context.Background(), d.bin, args...)
	} else {
		// Loopback only (dhcp off): the cluster tests, whose Vault and
		// Nomad listen on the host's loopback.
		d.cmd = exec.Command(d.bin, args...)
	}
	out, err := os.OpenFile(string(d.log), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	// A daemon started again in dir appends: wait for this one's start.
	before, _ := out.Seek(0, io.SeekEnd)
	d.cmd.Stdout, d.cmd.Stderr = out, out
	err = d.cmd.Start()
	out.Close()
	if err != nil {
		t.Fatal(err)
	}
	go func() { d.cmd.Wait(); close(d.done) }()
	t.Cleanup(func() {
		d.stop()
		if t.Failed() || os.Getenv("BOOTSTRAPD_E2E_LOG") != "" {
			t.Logf("bootstrapd log:\n%s", tailLines(d.log.String(), 60))
		}
	})
	deadline := time.After(20 * time.Second)
	for !strings.Contains(d.log.String()[before:], "bootstrapd serving") {
		select {
		case <-d.done:
			t.Fatalf("bootstrapd exited at start:\n%s", d.log.String())
		case <-deadline:
			t.Fatalf("bootstrapd did not start in 20s:\n%s", d.log.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return d
}

// stop sends SIGTERM and waits for a clean exit.
func (d *daemon) stop() {
	select {
	case <-d.done:
		return
	default:
	}
	d.cmd.Process.Signal(os.Interrupt)
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		d.cmd.Process.Kill()
		<-d.done
	}
}

// cli runs a bootstrapd client command against this daemon.
func (d *daemon) cli(t *testing.T, args ...string) (string, error) {
	t.Helper()
	return d.output(exec.Command(d.bin, args...))
}

// output runs cmd, a bootstrapd command, against this daemon.
func (d *daemon) output(cmd *exec.Cmd) (string, error) {
	cmd.Env = append(os.Environ(), "BOOTSTRAPD_ADDR=unix://"+d.sock)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (d *daemon) mustCLI(t *testing.T, args ...string) string {
	t.Helper()
	out, err := d.cli(t, args...)
	if err != nil {
		t.Fatalf("bootstrapd %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// eventually polls cond until it holds or the timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
