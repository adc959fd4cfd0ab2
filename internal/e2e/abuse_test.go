package e2e

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/bootstrapd/bootstrapd/internal/inventory"
	"github.com/bootstrapd/bootstrapd/internal/netlab"
)

// Bounds TestUnderAbuse holds bootstrapd to while the network abuses it.
const (
	abuseDiscovers   = 20_000
	abuseTFTP        = 2_000
	abuseHTTP        = 500
	abuseP99         = 50 * time.Millisecond
	abuseMaxRSS      = 128 << 20 // bytes
	abuseMaxFDs      = 100
	abuseStoreGrowth = 4 << 20 // bytes, for at most inventory.DefaultMaxDiscovered nodes
)

// TestUnderAbuse floods bootstrapd from a host on the provisioning bridge
// (20,000 DISCOVERs from new PXE MACs, 2,000 TFTP reads never
// acknowledged, 500 HTTP connections held idle) while a real node, a QEMU
// VM, PXE-boots and installs, and a probe host with an enrolled MAC times
// its DHCP answers. The node installs; the probe's p99 stays under 50 ms;
// the daemon's RSS and open files stay under their bounds and come back
// down; the store grows by at most the discovery cap.
func TestUnderAbuse(t *testing.T) {
	lab := netlab.NewLab(t, "10.97.0.1/24")
	lab.StartRA(t)
	dir, d, repo := voidSite(t, lab)
	pid := d.cmd.Process.Pid
	const mac = "52:54:00:97:00:01"
	d.mustCLI(t, "enroll", mac, "-hostname", "n1", "-label", "disk=/dev/vda", "-label", "xbps_repository="+repo)
	probe := lab.AddHost(t, "")
	d.mustCLI(t, "enroll", probe.MAC, "-hostname", "probe")
	attacker := lab.AddHost(t, "10.97.0.66/24")

	storePath := filepath.Join(dir, "state", "bootstrapd.db")
	store0 := diskUsage(t, storePath)
	fds0, rss0 := procFDs(t, pid), procStatus(pid, "VmRSS")
	t.Logf("before: %d open files, RSS %d MiB, store %d KiB", fds0, rss0>>20, store0>>10)

	// The node boots while the floods run.
	vm, _ := startInstall(t, lab, dir, mac)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	var peakFDs int
	var peakRSS int64
	sampling, stopSampling := context.WithCancel(ctx)
	wg.Go(func() {
		for sampling.Err() == nil {
			peakFDs = max(peakFDs, procFDs(t, pid))
			peakRSS = max(peakRSS, procStatus(pid, "VmRSS"))
			time.Sleep(250 * time.Millisecond)
		}
	})
	floods := []func(){
		func() { floodDHCP(t, attacker, abuseDiscovers, 20*time.Second) },
		func() { floodTFTP(t, attacker, abuseTFTP, 20*time.Second) },
		func() { holdHTTP(t, attacker, abuseHTTP, 25*time.Second) },
	}
	var fl sync.WaitGroup
	for _, f := range floods {
		fl.Go(f)
	}
	rtts, missed := probeDHCP(t, probe, 200, 100*time.Millisecond)
	fl.Wait()

	if _, err := vm.WaitConsole(ctx, "bootstrapd postinstall: installed; rebooting"); err != nil {
		t.Fatalf("the node did not install under the floods: %v", err)
	}
	vm.Wait(ctx)
	if n := node(t, d, mac); n.State != inventory.Installed {
		t.Fatalf("node %s (%s)", n.State, n.Reason)
	}

	// Back down: TFTP transfers abandoned and HTTP connections timed out.
	var fds int
	deadline := time.Now().Add(45 * time.Second)
	for fds = procFDs(t, pid); fds > fds0+10 && time.Now().Before(deadline); fds = procFDs(t, pid) {
		time.Sleep(500 * time.Millisecond)
	}
	stopSampling()
	wg.Wait()

	if len(rtts) == 0 {
		t.Fatalf("the probe's %d DISCOVERs were all unanswered", missed)
	}
	slices.Sort(rtts)
	p99 := rtts[len(rtts)*99/100]
	t.Logf("probe: %d answers, %d missed, p50 %v, p99 %v, max %v", len(rtts), missed, rtts[len(rtts)/2], p99, rtts[len(rtts)-1])
	t.Logf("peak: %d open files, RSS %d MiB; after: %d open files", peakFDs, peakRSS>>20, fds)
	if p99 > abuseP99 || missed > 2 {
		t.Errorf("an enrolled node's DHCP under the floods: p99 %v (bound %v), %d of 200 unanswered", p99, abuseP99, missed)
	}
	if peakRSS > abuseMaxRSS || peakFDs > abuseMaxFDs {
		t.Errorf("peak RSS %d MiB (bound %d), open files %d (bound %d)", peakRSS>>20, abuseMaxRSS>>20, peakFDs, abuseMaxFDs)
	}
	if fds > fds0+10 {
		t.Errorf("open files did not come back down: %d, from %d before the floods", fds, fds0)
	}
	nodes := strings.Count(d.mustCLI(t, "nodes"), "\n") - 1
	d.stop() // flushes the store
	grew := diskUsage(t, storePath) - store0
	t.Logf("store grew %d KiB; %d nodes", grew>>10, nodes)
	if nodes > inventory.DefaultMaxDiscovered+2 || grew > abuseStoreGrowth {
		t.Errorf("%d nodes (cap %d + 2 enrolled), store grew %d KiB (bound %d)", nodes, inventory.DefaultMaxDiscovered, grew>>10, abuseStoreGrowth>>10)
	}
}

// udpIn opens a UDP socket in ns bound to port on every address, able to
// broadcast out of dev.
func udpIn(t *testing.T, ns netlab.NS, dev string, port int) *net.UDPConn {
	t.Helper()
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			if serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_BROADCAST, 1); serr == nil {
				serr = syscall.BindToDevice(int(fd), dev)
			}
			if serr == nil {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
			}
		})
		if err != nil {
			return err
		}
		return serr
	}}
	var pc net.PacketConn
	if err := ns.Do(func() (err error) {
		pc, err = lc.ListenPacket(context.Background(), "udp4", ":"+strconv.Itoa(port))
		return err
	}); err != nil {
		t.Fatalf("udp :%d in %s: %v", port, ns, err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc.(*net.UDPConn)
}

var dhcpServer = &net.UDPAddr{IP: net.IPv4bcast, Port: 67}

// floodDHCP sends n DISCOVERs as PXE clients with made-up MACs, spread
// over d.
func floodDHCP(t *testing.T, h *netlab.Host, n int, d time.Duration) {
	c := udpIn(t, h.NS, h.Iface, 0)
	gap := d / time.Duration(n)
	next := time.Now()
	for i := range n {
		hw := make(net.HardwareAddr, 6)
		rand.Read(hw)
		hw[0] = 0x02 // locally administered, unicast
		m, err := dhcpv4.NewDiscovery(hw, dhcpv4.WithOption(dhcpv4.OptClassIdentifier(fmt.Sprintf("PXEClient:Arch:%05d:UNDI:002001", i%10))))
		if err != nil {
			t.Error(err)
			return
		}
		c.WriteTo(m.ToBytes(), dhcpServer)
		if next = next.Add(gap); time.Until(next) > 0 {
			time.Sleep(time.Until(next))
		}
	}
}

// floodTFTP sends n read requests and never acknowledges a block.
func floodTFTP(t *testing.T, h *netlab.Host, n int, d time.Duration) {
	c := udpIn(t, h.NS, h.Iface, 0)
	server := &net.UDPAddr{IP: net.ParseIP("10.97.0.1"), Port: 69}
	rrq := append([]byte{0, 1}, "undionly.kpxe\x00octet\x00blksize\x001468\x00"...)
	gap := d / time.Duration(n)
	for range n {
		c.WriteTo(rrq, server)
		time.Sleep(gap)
	}
}

// holdHTTP opens n connections, sends half a request line on each, and
// holds them for d.
func holdHTTP(t *testing.T, h *netlab.Host, n int, d time.Duration) {
	var conns []net.Conn
	for range n {
		c, err := h.Dial(context.Background(), "tcp4", "10.97.0.1:8080")
		if err != nil {
			continue // refused or reset: the server is bounding it
		}
		c.Write([]byte("GET /boot.ipxe HTTP/1.1\r\n"))
		conns = append(conns, c)
	}
	time.Sleep(d)
	for _, c := range conns {
		c.Close()
	}
}

// probeDHCP sends n DISCOVERs from the probe's own (enrolled) MAC, one
// every gap, and times each OFFER.
func probeDHCP(t *testing.T, h *netlab.Host, n int, gap time.Duration) (rtts []time.Duration, missed int) {
	t.Helper()
	c := udpIn(t, h.NS, h.Iface, 68)
	hw, _ := net.ParseMAC(h.MAC)
	buf := make([]byte, 1500)
	for range n {
		// A client with no address on a UDP socket takes only broadcast
		// replies, so it asks for them (RFC 2131 4.1); without the flag
		// the OFFER goes to an address it does not hold yet.
		m, err := dhcpv4.NewDiscovery(hw, dhcpv4.WithBroadcast(true))
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		c.WriteTo(m.ToBytes(), dhcpServer)
		got := false
		for c.SetReadDeadline(start.Add(time.Second)); ; {
			k, _, err := c.ReadFrom(buf)
			if err != nil {
				break
			}
			r, err := dhcpv4.FromBytes(buf[:k])
			if err == nil && r.TransactionID == m.TransactionID && r.MessageType() == dhcpv4.MessageTypeOffer {
				rtts = append(rtts, time.Since(start))
				got = true
				break
			}
		}
		if !got {
			missed++
		}
		time.Sleep(gap)
	}
	return rtts, missed
}

func procFDs(t *testing.T, pid int) int {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0
	}
	return len(ents)
}

// diskUsage is the bytes of disk a file takes, not its length: bbolt
// extends its file in 16 MiB steps (sparse, by truncate) once its mapping
// is larger than that, so the length says little about what was written.
func diskUsage(t *testing.T, p string) int {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	return int(st.Blocks) * 512
}
