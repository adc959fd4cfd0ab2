package pxe

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
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
	b := udpDatagram(l.src, dst, payload)
	var serr error
	err := l.rc.Write(func(fd uintptr) bool {
		serr = unix.Sendto(int(fd), b, 0, sa)
		return true
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return os.NewSyscallError("sendto", err)
	}
	return nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// udpDatagram is payload in a UDP datagram in an IPv4 packet, checksums
// filled in.
func udpDatagram(src, dst netip.AddrPort, payload []byte) []byte {
	const ipLen, udpLen = 20, 8
	b := make([]byte, ipLen+udpLen+len(payload))
	ip, udp := b[:ipLen], b[ipLen:]
	ip[0] = 4<<4 | ipLen/4
	binary.BigEndian.PutUint16(ip[2:], uint16(len(b)))
	ip[8] = 64 // TTL
	ip[9] = syscall.IPPROTO_UDP
	s, d := src.Addr().As4(), dst.Addr().As4()
	copy(ip[12:16], s[:])
	copy(ip[16:20], d[:])
	binary.BigEndian.PutUint16(ip[10:], checksum(0, ip))

	binary.BigEndian.PutUint16(udp[0:], src.Port())
	binary.BigEndian.PutUint16(udp[2:], dst.Port())
	binary.BigEndian.PutUint16(udp[4:], uint16(len(udp)))
	copy(udp[udpLen:], payload)
	// The pseudo-header: addresses, protocol, length.
	pseudo := uint32(syscall.IPPROTO_UDP) + uint32(len(udp))
	for _, a := range [][]byte{ip[12:16], ip[16:20]} {
		pseudo += uint32(binary.BigEndian.Uint16(a)) + uint32(binary.BigEndian.Uint16(a[2:]))
	}
	sum := checksum(pseudo, udp)
	if sum == 0 {
		sum = 0xffff // 0 would mean "no checksum" (RFC 768)
	}
	binary.BigEndian.PutUint16(udp[6:], sum)
	return b
}

// checksum is the Internet checksum (RFC 1071) of b, starting from sum.
func checksum(sum uint32, b []byte) uint16 {
	for ; len(b) >= 2; b = b[2:] {
		sum += uint32(b[0])<<8 | uint32(b[1])
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// atHardwareAddr says whether the reply resp, which Dest would broadcast,
// goes to the client's hardware address instead: an OFFER or ACK with an
// address, to an Ethernet client that did not set the broadcast flag.
func atHardwareAddr(req, resp *dhcpv4.DHCPv4) bool {
	mt := resp.MessageType()
	return (mt == dhcpv4.MessageTypeOffer || mt == dhcpv4.MessageTypeAck) &&
		!req.IsBroadcast() && req.HWType == iana.HWTypeEthernet && len(req.ClientHWAddr) == 6 &&
		req.GatewayIPAddr.IsUnspecified() && req.ClientIPAddr.IsUnspecified() &&
		resp.YourIPAddr.To4() != nil && !resp.YourIPAddr.IsUnspecified()
}
