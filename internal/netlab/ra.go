package netlab

import (
	"net"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// StartRA sends an IPv6 Router Advertisement (no prefix, router lifetime 0, so
// nobody gets an address or a route from it) on the bridge every second until
// the test ends.
//
// Why: iPXE's "Configuring (net0 ...)" waits for IPv6 autoconfiguration as well
// as DHCP, and without any router on the link it gives up only after about 14 s
// of router solicitations. Measured under TCG with the e1000 iPXE ROM: DHCP ->
// script in 16 s without an RA, 3 s with one. Real LANs with an IPv6 router
// behave like the latter; tests that boot iPXE many times want it.
func (l *Lab) StartRA(t testing.TB) {
	t.Helper()
	// A fixed link-local source without DAD: usable at once, even before the
	// bridge has a port with carrier (when the kernel gives it its own fe80::).
	ipCmd(t, "-n", l.Name(), "addr", "add", "fe80::1/64", "dev", l.Bridge, "nodad")
	var c *net.IPConn
	var index int
	err := l.Do(func() error {
		ifi, err := net.InterfaceByName(l.Bridge)
		if err != nil {
			return err
		}
		index = ifi.Index
		c, err = net.ListenIP("ip6:ipv6-icmp", &net.IPAddr{IP: net.ParseIP("fe80::1"), Zone: strconv.Itoa(index)})
		return err
	})
	if err != nil {
		t.Fatalf("netlab: RA socket in %s: %v", l.NS, err)
	}
	// RFC 4861: receivers drop neighbour discovery packets whose hop limit is not 255.
	rc, err := c.SyscallConn()
	if err == nil {
		cerr := rc.Control(func(fd uintptr) {
			err = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IPV6, syscall.IPV6_MULTICAST_HOPS, 255)
		})
		if cerr != nil {
			err = cerr
		}
	}
	if err != nil {
		c.Close()
		t.Fatalf("netlab: RA socket hop limit: %v", err)
	}
	// type 134, code 0, checksum (the kernel fills it in for ICMPv6), cur hop
	// limit 64, flags 0, router lifetime 0, reachable time 0, retrans timer 0.
	ra := []byte{134, 0, 0, 0, 64, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	// A numeric zone: the bridge does not exist in this process's namespace.
	dst := &net.IPAddr{IP: net.ParseIP("ff02::1"), Zone: strconv.Itoa(index)}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			_, _ = c.WriteTo(ra, dst) // fails while the bridge has no port up: retried
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(func() {
		close(stop)
		<-done
		c.Close()
	})
}
