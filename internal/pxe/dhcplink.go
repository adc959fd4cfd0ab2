package pxe

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// A client with no address that does not ask for a broadcast reply is to
// be answered at its hardware address (RFC 2131 4.1). A UDP socket cannot
// do that: the kernel would ARP for an address nobody holds yet. So the
// reply goes out on a packet socket, in a frame addressed to the client's
// MAC, as Kea and ISC dhcpd send it. iPXE asks this way on every boot, and
// a broadcast instead reaches every machine on the segment: in a rack
// booting at once, each reply interrupts every other node.

// Link sends IPv4 UDP datagrams in frames addressed to a hardware address,
// on one interface. It receives nothing.
type Link struct {
	f       *os.File // the socket, through Go's poller: a send after Close fails, never reaches a reused fd
	rc      syscall.RawConn
	ifindex int
	src     netip.AddrPort
}

// OpenLink opens a Link on iface, sending from src (the server's address
// and port). It needs CAP_NET_RAW; without a Link, replies are broadcast.
func OpenLink(iface string, src netip.AddrPort) (*Link, error) {
	ifc, err := net.InterfaceByName(iface)
	if err != nil {
		return nil, err
	}
	// Protocol 0: no frame is delivered to this socket, so it costs
	// nothing on a busy interface. Each send names the protocol.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("packet socket for unicast DHCP replies: %w", err)
	}
	f := os.NewFile(uintptr(fd), "packet:"+iface)
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &Link{f: f, rc: rc, ifindex: ifc.Index, src: src}, nil
}

// Close closes the socket.
func (l *Link) Close() error { return l.f.Close() }

// Send sends payload in a UDP datagram to dst, in a frame to mac. A full
// queue is an error, not a wait: the client asks again.
func (l *Link) Send(payload []byte, mac net.HardwareAddr, dst netip.AddrPort) error {
	sa := &unix.SockaddrLinklayer{Ifindex: l.ifindex, Protocol: htons(unix.ETH_P_IP), Halen: uint8(len(mac))}
	copy(sa.Addr[:], mac)
	hdr := udpHeaders(l.src, dst, payload)
	var serr error
	err := l.rc.Write(func(fd uintptr) bool {
		_, serr = unix.SendmsgBuffers(int(fd), [][]byte{hdr[:], payload}, nil, sa, 0)
		return true
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return os.NewSyscallError("sendmsg", err)
	}
	return nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// udpHeaders are the IPv4 and UDP headers that carry payload from src to
// dst, checksums filled in; the payload is sent after them as it is.
func udpHeaders(src, dst netip.AddrPort, payload []byte) [28]byte {
	const ipLen = 20
	var h [28]byte
	ip, udp := h[:ipLen], h[ipLen:]
	ip[0] = 4<<4 | ipLen/4
	binary.BigEndian.PutUint16(ip[2:], uint16(len(h)+len(payload)))
	ip[8] = 64 // TTL
	ip[9] = syscall.IPPROTO_UDP
	s, d := src.Addr().As4(), dst.Addr().As4()
	copy(ip[12:16], s[:])
	copy(ip[16:20], d[:])
	binary.BigEndian.PutUint16(ip[10:], checksum(ip))

	udpLen := uint16(len(udp) + len(payload))
	binary.BigEndian.PutUint16(udp[0:], src.Port())
	binary.BigEndian.PutUint16(udp[2:], dst.Port())
	binary.BigEndian.PutUint16(udp[4:], udpLen)
	// The UDP checksum covers a pseudo-header (addresses, protocol,
	// length), the UDP header and the payload.
	var pseudo [12]byte
	copy(pseudo[:8], ip[12:20])
	pseudo[9] = syscall.IPPROTO_UDP
	binary.BigEndian.PutUint16(pseudo[10:], udpLen)
	c := checksum(pseudo[:], udp, payload)
	if c == 0 {
		c = 0xffff // 0 would mean "no checksum" (RFC 768)
	}
	binary.BigEndian.PutUint16(udp[6:], c)
	return h
}

// checksum is the Internet checksum (RFC 1071) of bufs one after another;
// all but the last must be of even length.
func checksum(bufs ...[]byte) uint16 {
	var sum uint32
	for _, b := range bufs {
		for ; len(b) >= 2; b = b[2:] {
			sum += uint32(b[0])<<8 | uint32(b[1])
		}
		if len(b) == 1 {
			sum += uint32(b[0]) << 8
		}
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}
