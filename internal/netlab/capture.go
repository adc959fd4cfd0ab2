package netlab

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
	"testing"
)

// Capture receives every frame that arrives on one interface of a
// namespace (an AF_PACKET socket, as tcpdump uses), whatever its protocol
// or destination: what a machine on the lab's LAN would see on the wire,
// e.g. a Wake-on-LAN broadcast meant for a powered-off NIC.
type Capture struct {
	iface  string
	frames chan []byte
}

// Capture starts capturing on iface inside the namespace until the test
// ends. Frames are kept in arrival order; a busy link fills the buffer
// and later frames are dropped, so start it just before what it is for.
func (ns NS) Capture(t testing.TB, iface string) *Capture {
	t.Helper()
	// ETH_P_ALL in network byte order, as socket(2) and bind(2) want it.
	all := int(htons(syscall.ETH_P_ALL))
	var f *os.File
	err := ns.Do(func() error {
		ifi, err := net.InterfaceByName(iface)
		if err != nil {
			return err
		}
		fd, err := syscall.Socket(syscall.AF_PACKET, syscall.SOCK_RAW|syscall.SOCK_CLOEXEC|syscall.SOCK_NONBLOCK, all)
		if err != nil {
			return err
		}
		if err := syscall.Bind(fd, &syscall.SockaddrLinklayer{Protocol: uint16(all), Ifindex: ifi.Index}); err != nil {
			syscall.Close(fd)
			return err
		}
		// Non-blocking, through os.File: reads use Go's poller, so Close
		// at the test's end ends the reading goroutine.
		f = os.NewFile(uintptr(fd), "packet:"+iface)
		return nil
	})
	if err != nil {
		t.Fatalf("netlab: capturing on %s in %s: %v", iface, ns, err)
	}
	c := &Capture{iface: iface, frames: make(chan []byte, 1024)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65536)
		for {
			n, err := f.Read(buf)
			if err != nil {
				return
			}
			select {
			case c.frames <- append([]byte(nil), buf[:n]...):
			default:
			}
		}
	}()
	t.Cleanup(func() { f.Close(); <-done })
	return c
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// Next returns the next captured frame that match accepts, skipping the
// others, or ctx's error.
func (c *Capture) Next(ctx context.Context, match func(frame []byte) bool) ([]byte, error) {
	for {
		select {
		case f := <-c.frames:
			if match(f) {
				return f, nil
			}
		case <-ctx.Done():
			return nil, fmt.Errorf("netlab: no matching frame on %s: %w", c.iface, ctx.Err())
		}
	}
}

// UDPFrame is an Ethernet frame carrying IPv4 UDP, taken apart.
type UDPFrame struct {
	DstMAC, SrcMAC net.HardwareAddr
	Src, Dst       netip.AddrPort
	Payload        []byte
}

// ParseUDP takes an Ethernet II frame holding an unfragmented IPv4 UDP
// datagram apart; ok is false for anything else.
func ParseUDP(frame []byte) (u UDPFrame, ok bool) {
	const eth = 14
	if len(frame) < eth+20 || binary.BigEndian.Uint16(frame[12:14]) != 0x0800 {
		return u, false
	}
	ip := frame[eth:]
	ihl := int(ip[0]&0x0f) * 4
	if ip[0]>>4 != 4 || ihl < 20 || ip[9] != syscall.IPPROTO_UDP || len(ip) < ihl+8 {
		return u, false
	}
	total := int(binary.BigEndian.Uint16(ip[2:4]))
	if total > len(ip) || total < ihl+8 {
		return u, false
	}
	udp := ip[ihl:total]
	ulen := int(binary.BigEndian.Uint16(udp[4:6]))
	if ulen < 8 || ulen > len(udp) {
		return u, false
	}
	src, _ := netip.AddrFromSlice(ip[12:16])
	dst, _ := netip.AddrFromSlice(ip[16:20])
	return UDPFrame{
		DstMAC:  net.HardwareAddr(frame[0:6]),
		SrcMAC:  net.HardwareAddr(frame[6:12]),
		Src:     netip.AddrPortFrom(src, binary.BigEndian.Uint16(udp[0:2])),
		Dst:     netip.AddrPortFrom(dst, binary.BigEndian.Uint16(udp[2:4])),
		Payload: udp[8:ulen],
	}, true
}
