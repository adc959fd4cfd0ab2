// Package netlab runs real network clients (QEMU PXE firmware, udhcpc, dhclient)
// against servers under test. Everything lives in network namespaces created per
// test and deleted by t.Cleanup, so nothing a test starts can answer DHCP on a
// host interface, tests can run in parallel, and a crashed run does not collide
// with the next one.
//
// Topology: a Lab namespace holds a bridge with an address (where the server under
// test listens); QEMU taps and veth ends of Host namespaces are ports of that bridge.
package netlab

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// NeedRoot fails the test when not running as root. It fails rather than skips:
// CI runs as root, and a silently skipped network test proves nothing.
func NeedRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("netlab: this test needs root (it creates network namespaces, taps and runs QEMU); run it as root, as CI does")
	}
}

// Lab is a namespace with a bridge. Servers under test listen on Addr inside NS.
type Lab struct {
	NS            // namespace name; its methods run things inside it
	Bridge string // bridge device inside NS ("br0")
	Addr   netip.Addr
	Prefix netip.Prefix // Addr with its prefix length, as given to NewLab

	ports atomic.Int32 // numbers taps and veth ports
}

// Host is a namespace joined to a Lab's bridge by a veth pair: a second machine
// on the lab's LAN, e.g. for running a DHCP client.
type Host struct {
	NS
	Iface string       // the host's end of the veth pair ("eth0")
	Port  string       // the lab's end: a port of the lab's bridge
	MAC   string       // Iface's hardware address (random, locally administered)
	Addr  netip.Prefix // invalid when the host was created without an address
}

// NewLab creates a namespace with lo and a bridge up, the bridge holding cidr
// (e.g. "10.77.0.1/24"). The namespace, and everything still running in it, is
// removed when the test ends.
func NewLab(t testing.TB, cidr string) *Lab {
	t.Helper()
	NeedRoot(t)
	p, err := netip.ParsePrefix(cidr)
	if err != nil || !p.Addr().Is4() {
		t.Fatalf("netlab: NewLab(%q): want an IPv4 address with prefix length, e.g. 10.77.0.1/24", cidr)
	}
	lab := &Lab{NS: newNS(t, "l"), Bridge: "br0", Addr: p.Addr(), Prefix: p}
	ipCmd(t, "-n", lab.Name(), "link", "add", lab.Bridge, "type", "bridge")
	ipCmd(t, "-n", lab.Name(), "addr", "add", cidr, "dev", lab.Bridge)
	ipCmd(t, "-n", lab.Name(), "link", "set", lab.Bridge, "up")
	return lab
}

// AddTap creates a tap device enslaved to the bridge and up, for QEMU's
// -netdev tap,ifname=NAME (QEMU must run inside the lab namespace: see StartQEMU).
func (l *Lab) AddTap(t testing.TB) string {
	t.Helper()
	tap := fmt.Sprintf("tap%d", l.ports.Add(1))
	ipCmd(t, "-n", l.Name(), "tuntap", "add", tap, "mode", "tap")
	t.Cleanup(func() { _ = exec.Command("ip", "-n", l.Name(), "link", "del", tap).Run() })
	ipCmd(t, "-n", l.Name(), "link", "set", tap, "master", l.Bridge)
	ipCmd(t, "-n", l.Name(), "link", "set", tap, "up")
	return tap
}

// AddHost creates a namespace joined to the bridge by a veth pair. cidr is the
// host's address (e.g. "10.77.0.2/24"), or "" for a host that will get one by DHCP.
func (l *Lab) AddHost(t testing.TB, cidr string) *Host {
	t.Helper()
	h := &Host{NS: newNS(t, "h"), Iface: "eth0", MAC: randomMAC()}
	if cidr != "" {
		p, err := netip.ParsePrefix(cidr)
		if err != nil {
			t.Fatalf("netlab: AddHost(%q): %v", cidr, err)
		}
		h.Addr = p
	}
	port := fmt.Sprintf("veth%d", l.ports.Add(1))
	h.Port = port
	ipCmd(t, "-n", l.Name(), "link", "add", port, "type", "veth",
		"peer", "name", h.Iface, "address", h.MAC, "netns", h.Name())
	// Deleting either end deletes the pair; the host namespace's cleanup would too.
	t.Cleanup(func() { _ = exec.Command("ip", "-n", l.Name(), "link", "del", port).Run() })
	ipCmd(t, "-n", l.Name(), "link", "set", port, "master", l.Bridge)
	ipCmd(t, "-n", l.Name(), "link", "set", port, "up")
	if cidr != "" {
		ipCmd(t, "-n", h.Name(), "addr", "add", cidr, "dev", h.Iface)
	}
	ipCmd(t, "-n", h.Name(), "link", "set", h.Iface, "up")
	return h
}

// runID tells this process's namespaces from those of an earlier process that had
// the same pid (a crashed run whose namespaces were never deleted).
var (
	runID    = randomHex(2)
	nsSeq    atomic.Int32
	sweepOne sync.Once
)

// newNS creates a uniquely named namespace with lo up and registers its removal.
// Names are "nl<pid>-<run>-<kind><n>": short, and they say which process owns them.
func newNS(t testing.TB, kind string) NS {
	t.Helper()
	sweepOne.Do(sweepStale)
	ns := NS(fmt.Sprintf("nl%d-%s-%s%d", os.Getpid(), runID, kind, nsSeq.Add(1)))
	ipCmd(t, "netns", "add", ns.Name())
	t.Cleanup(func() { removeNS(t, ns) })
	ipCmd(t, "-n", ns.Name(), "link", "set", "lo", "up")
	return ns
}

// removeNS kills whatever the test left running in the namespace (a dnsmasq
// must not outlive its test) and deletes it, which deletes its links too.
func removeNS(t testing.TB, ns NS) {
	for _, pid := range ns.pids() {
		if p, err := os.FindProcess(pid); err == nil {
			_ = p.Kill()
		}
	}
	if out, err := exec.Command("ip", "netns", "del", ns.Name()).CombinedOutput(); err != nil {
		t.Errorf("netlab: deleting namespace %s: %v: %s", ns, err, out)
	}
}

// pids lists the processes inside the namespace, never this test process.
func (ns NS) pids() []int {
	out, _ := exec.Command("ip", "netns", "pids", ns.Name()).Output()
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		var pid int
		if _, err := fmt.Sscan(f, &pid); err == nil && pid != os.Getpid() {
			pids = append(pids, pid)
		}
	}
	return pids
}

// sweepStale deletes namespaces left by netlab processes that no longer exist
// (killed before their cleanups ran), so they do not pile up across runs.
func sweepStale() {
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		var pid int
		var run, rest string
		name := e.Name()
		if _, err := fmt.Sscanf(strings.ReplaceAll(name, "-", " "), "nl%d %s %s", &pid, &run, &rest); err != nil || len(run) != 4 {
			continue
		}
		alive := pid != os.Getpid() && processExists(pid)
		if alive || (pid == os.Getpid() && run == runID) {
			continue
		}
		ns := NS(name)
		for _, p := range ns.pids() {
			if proc, err := os.FindProcess(p); err == nil {
				_ = proc.Kill()
			}
		}
		_ = exec.Command("ip", "netns", "del", name).Run()
	}
}

func processExists(pid int) bool {
	_, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
	return err == nil
}

// ipCmd runs ip(8) and fails the test with its output on error.
func ipCmd(t testing.TB, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("netlab: ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%x", b)
}

// randomMAC returns a unicast, locally administered address (02:...).
func randomMAC() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	b[0] = 0x02
	return fmt.Sprintf("%02x:%02x:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3], b[4], b[5])
}

// udhcpcHook configures the lease and prints udhcpc's view of it, one
// "NETLAB_LEASE key=value" line per variable, for UDHCPC to parse.
const udhcpcHook = `#!/bin/sh
case "$1" in
deconfig) ip addr flush dev "$interface" ;;
bound | renew)
	ip addr flush dev "$interface"
	ip addr add "$ip/$mask" dev "$interface"
	env | sed 's/^/NETLAB_LEASE /'
	;;
esac
exit 0
`

// UDHCPC runs busybox udhcpc on the host's interface until it is bound (or gives
// up), leaves the address configured, and returns the lease as udhcpc's script
// saw it: ip, mask, router, serverid, siaddr, boot_file, ... plus any option asked
// for with "-O NAME". args are added to udhcpc's, e.g. "-V", "PXEClient:Arch:00007"
// or "-x", "0x5d:0007" (option 93) to look like a PXE client.
func (h *Host) UDHCPC(ctx context.Context, args ...string) (map[string]string, error) {
	f, err := os.CreateTemp("", "netlab-udhcpc-*.sh")
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name())
	_, err = f.WriteString(udhcpcHook)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o700)
	}
	if err != nil {
		return nil, err
	}
	cmd := h.Command(ctx, "busybox", append([]string{"udhcpc", "-f", "-q", "-n", "-t", "5", "-T", "1",
		"-i", h.Iface, "-s", f.Name()}, args...)...)
	out, err := cmd.CombinedOutput()
	lease := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		if kv, ok := strings.CutPrefix(line, "NETLAB_LEASE "); ok {
			if k, v, ok := strings.Cut(kv, "="); ok {
				lease[k] = v
			}
		}
	}
	if err != nil || lease["ip"] == "" {
		return nil, fmt.Errorf("netlab: udhcpc in %s: %v\n%s", h.NS, err, out)
	}
	return lease, nil
}
