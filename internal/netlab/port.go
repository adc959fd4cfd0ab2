package netlab

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"testing"
)

// FreePort is a loopback port nothing uses now, for network ("tcp" or
// "udp"), for a process the test starts to listen on. It is taken below
// the kernel's ephemeral range (ip_local_port_range), from which the
// kernel hands out ports to every socket that binds port 0 or connects:
// one from inside it can be handed to such a socket between this check
// and the process's bind (CI saw "address already in use").
func FreePort(t testing.TB, network string) int {
	t.Helper()
	below := 32768 // Linux's default
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		fmt.Sscan(string(b), &below)
	}
	const from = 10000
	for range 100 {
		p := from + rand.IntN(max(below-from, 1))
		addr := fmt.Sprintf("127.0.0.1:%d", p)
		var err error
		if network == "udp" {
			var c net.PacketConn
			if c, err = net.ListenPacket("udp4", addr); err == nil {
				c.Close()
			}
		} else {
			var l net.Listener
			if l, err = net.Listen("tcp4", addr); err == nil {
				l.Close()
			}
		}
		if err == nil {
			return p
		}
	}
	t.Fatalf("no free %s port on loopback below %d", network, below)
	return 0
}
