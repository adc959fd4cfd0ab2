package netlab

import (
	"bufio"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// NS is the name of a network namespace (as in `ip netns`). Lab and Host embed
// it, so lab.Command, host.Listen etc. run inside their namespace.
type NS string

// Name returns the namespace name.
func (ns NS) Name() string { return string(ns) }

func (ns NS) String() string { return string(ns) }

// Command returns a command that runs name inside the namespace (ip netns exec).
// The child gets SIGKILL if this test process dies, so a crashed test leaves no
// DHCP server behind; the namespace cleanup also kills anything still running.
func (ns NS) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns.Name(), name}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

// Do runs fn on an OS thread switched into the namespace. Sockets that fn creates
// stay in the namespace after Do returns, so a server in this test process can
// listen inside the lab (see Listen). Goroutines that fn starts do NOT run in the
// namespace, and fn must not start processes (use Command).
func (ns NS) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		// If switching back fails, the goroutine exits still locked and the runtime
		// retires the thread instead of reusing it in the wrong namespace.
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		target, err := os.Open("/run/netns/" + ns.Name())
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer target.Close()
		if err := setns(target); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netlab: setns %s: %w", ns, err)
			return
		}
		ferr := fn()
		if err := setns(orig); err != nil {
			errc <- fmt.Errorf("netlab: setns back from %s: %w", ns, err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// setns(2). The syscall package predates it, so its number is spelled out here.
func setns(f *os.File) error {
	nr, ok := map[string]uintptr{"amd64": 308, "arm64": 268, "riscv64": 268, "386": 346, "arm": 375}[runtime.GOARCH]
	if !ok {
		return fmt.Errorf("netlab: setns number unknown on %s", runtime.GOARCH)
	}
	_, _, errno := syscall.Syscall(nr, f.Fd(), syscall.CLONE_NEWNET, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// Listen opens a listener inside the namespace (e.g. "tcp", "10.77.0.1:0"),
// closed when the test ends. Serve it from the test process as usual.
func (ns NS) Listen(t testing.TB, network, addr string) net.Listener {
	t.Helper()
	var l net.Listener
	err := ns.Do(func() (err error) { l, err = net.Listen(network, addr); return err })
	if err != nil {
		t.Fatalf("netlab: listen %s %s in %s: %v", network, addr, ns, err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

// ListenPacket is Listen for packet sockets ("udp", "10.77.0.1:69").
func (ns NS) ListenPacket(t testing.TB, network, addr string) net.PacketConn {
	t.Helper()
	var c net.PacketConn
	err := ns.Do(func() (err error) { c, err = net.ListenPacket(network, addr); return err })
	if err != nil {
		t.Fatalf("netlab: listen %s %s in %s: %v", network, addr, ns, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Dial connects from inside the namespace. addr must be an IP literal: a name
// resolving to several addresses would be dialled from other goroutines, outside.
func (ns NS) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	return ns.DialFrom(netip.Addr{})(ctx, network, addr)
}

// DialFrom is Dial from a given local address of the namespace (one of
// several on its interface: a host that took over another's address).
func (ns NS) DialFrom(local netip.Addr) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		d := &net.Dialer{}
		if local.IsValid() {
			d.LocalAddr = &net.TCPAddr{IP: local.AsSlice()}
		}
		var c net.Conn
		err := ns.Do(func() (err error) {
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
}

// HTTPClient returns a client whose connections start inside the namespace, for
// talking to a server under test listening in the lab.
func (ns NS) HTTPClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{DialContext: ns.Dial, DisableKeepAlives: true},
		Timeout:   30 * time.Second,
	}
}

// Ready waits until something listens on addr inside the namespace: for "tcp" a
// connection succeeds; for "udp" a socket is bound to the port (on addr's IP or
// the wildcard), e.g. a DHCP server on ":67". It returns ctx's error on timeout.
func (ns NS) Ready(ctx context.Context, network, addr string) error {
	for {
		var err error
		switch network {
		case "tcp", "tcp4":
			var c net.Conn
			if c, err = ns.Dial(ctx, network, addr); err == nil {
				c.Close()
			}
		case "udp", "udp4":
			err = ns.Do(func() error { return udpBound(addr) })
		default:
			return fmt.Errorf("netlab: Ready: unsupported network %q", network)
		}
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("netlab: %s %s not ready in %s: %w (last: %v)", network, addr, ns, ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

var errNotBound = errors.New("no socket bound")

// udpBound looks for addr in the calling thread's namespace's /proc/net/udp.
func udpBound(addr string) error {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return err
	}
	var want netip.Addr
	if host != "" {
		if want, err = netip.ParseAddr(host); err != nil {
			return err
		}
	}
	f, err := os.Open("/proc/thread-self/net/udp")
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// "  sl  local_address ..." then lines like "  0: 0100000A:0043 00000000:0000 07 ..."
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		ipHex, pHex, ok := strings.Cut(fields[1], ":")
		p, err := strconv.ParseUint(pHex, 16, 16)
		if !ok || err != nil || p != port {
			continue
		}
		b, err := hex.DecodeString(ipHex)
		if err != nil || len(b) != 4 {
			continue
		}
		// The kernel prints the address as a host-order (little-endian) word.
		ip := netip.AddrFrom4([4]byte{b[3], b[2], b[1], b[0]})
		if !want.IsValid() || ip.IsUnspecified() || ip == want {
			return nil
		}
	}
	return errNotBound
}
