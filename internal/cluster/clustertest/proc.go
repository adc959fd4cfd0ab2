package clustertest

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"syscall"

	"github.com/bootstrapd/bootstrapd/internal/netlab"
)

// proc is an agent a test started: its output goes to a log file, and the
// kernel kills it if the test binary dies (a -timeout panic, say).
type proc struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed when it has exited; how is in its log
}

// startProc runs bin with args in dir, inside the network namespace ns
// when it is not "" (`ip netns exec` execs bin itself, so the pid is the
// agent's). Its environment is only HOME=dir (so nothing lands in the
// developer's home), PATH, and env: none of the caller's VAULT_* or
// NOMAD_* leaks in, and secrets go here, never in argv.
func startProc(ns netlab.NS, bin, dir, logPath string, env []string, args ...string) (*proc, error) {
	out, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer out.Close() // the child has its own copy
	cmd := exec.Command(bin, args...)
	if ns != "" {
		cmd = exec.Command("ip", append([]string{"netns", "exec", ns.Name(), bin}, args...)...)
	}
	cmd.Env = append([]string{"HOME=" + dir, "PATH=" + os.Getenv("PATH")}, env...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = out, out
	// Pdeathsig fires when the thread that forked exits, so that thread is
	// locked to a goroutine that lives as long as the child.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p := &proc{cmd: cmd, exited: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		_ = cmd.Wait()
		close(p.exited)
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	return p, nil
}

// Place puts a server on a lab's network instead of the host's loopback:
// inside namespace NS, listening and advertising on Addr, so QEMU nodes on
// the lab's bridge reach it. The zero Place is loopback.
type Place struct {
	NS   netlab.NS
	Addr string // an address of NS, e.g. the lab's bridge address
	// Iface holds Addr: a client agent fingerprints its network from it,
	// since a lab's namespace has no default route to find one by.
	Iface string
}

// host is the address agents listen on and advertise.
func (p Place) host() string {
	if p.NS == "" {
		return "127.0.0.1"
	}
	return p.Addr
}

// client is an HTTP client that reaches the place's servers from the
// test process, which stays in the host's namespace.
func (p Place) client() *http.Client {
	if p.NS == "" {
		return http.DefaultClient
	}
	return p.NS.HTTPClient()
}
