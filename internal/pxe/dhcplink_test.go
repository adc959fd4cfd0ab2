package pxe

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// The datagram a Link sends: headers as a receiver parses them, and both
// checksums verifying (a sum over the covered bytes, checksum included, is
// 0). TestRepliesAtHardwareAddress has udhcpc check them too.
func TestUDPDatagram(t *testing.T) {
	src := netip.MustParseAddrPort("10.77.0.1:67")
	dst := netip.MustParseAddrPort("10.77.0.100:68")
	for _, payload := range [][]byte{bytes.Repeat([]byte{0xab}, 300), {1, 2, 3}} { // even and odd lengths
		hdr := udpHeaders(src, dst, payload)
		b := append(hdr[:], payload...)
		ip, udp := b[:20], b[20:]
		if ip[0] != 0x45 || ip[9] != 17 || int(binary.BigEndian.Uint16(ip[2:])) != len(b) || ip[8] == 0 {
			t.Fatalf("IPv4 header % x", ip)
		}
		if got := netip.AddrFrom4([4]byte(ip[12:16])); got != src.Addr() {
			t.Errorf("source %s", got)
		}
		if got := netip.AddrFrom4([4]byte(ip[16:20])); got != dst.Addr() {
			t.Errorf("destination %s", got)
		}
		if c := checksum(ip); c != 0 {
			t.Errorf("IPv4 header checksum does not verify (%#04x)", c)
		}
		if binary.BigEndian.Uint16(udp[0:]) != 67 || binary.BigEndian.Uint16(udp[2:]) != 68 || int(binary.BigEndian.Uint16(udp[4:])) != len(udp) {
			t.Errorf("UDP header % x", udp[:8])
		}
		pseudo := append(append(append([]byte{}, ip[12:20]...), 0, 17), byte(len(udp)>>8), byte(len(udp)))
		if c := checksum(pseudo, udp); c != 0 {
			t.Errorf("UDP checksum does not verify (%#04x)", c)
		}
		if !bytes.Equal(udp[8:], payload) {
			t.Errorf("payload changed")
		}
	}
}

// Which replies RFC 2131 wants at the client's hardware address rather
// than broadcast.
func TestDestHardwareAddr(t *testing.T) {
	mac := net.HardwareAddr{0x52, 0x54, 0, 0, 0, 1}
	yiaddr := net.IPv4(10, 77, 0, 100)
	reply := func(mt dhcpv4.MessageType, yi net.IP) *dhcpv4.DHCPv4 {
		r, err := dhcpv4.New(dhcpv4.WithMessageType(mt), dhcpv4.WithYourIP(yi))
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	request := func(mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
		r, err := dhcpv4.NewDiscovery(mac, mods...)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	for _, c := range []struct {
		name      string
		req, resp *dhcpv4.DHCPv4
		want      bool
	}{
		{"offer, flag clear", request(), reply(dhcpv4.MessageTypeOffer, yiaddr), true},
		{"ack, flag clear", request(), reply(dhcpv4.MessageTypeAck, yiaddr), true},
		{"flag set", request(dhcpv4.WithBroadcast(true)), reply(dhcpv4.MessageTypeOffer, yiaddr), false},
		{"nak", request(), reply(dhcpv4.MessageTypeNak, yiaddr), false},
		{"proxy offer: no address", request(), reply(dhcpv4.MessageTypeOffer, net.IPv4zero), false},
		{"relayed", request(dhcpv4.WithGatewayIP(net.IPv4(10, 0, 0, 1))), reply(dhcpv4.MessageTypeOffer, yiaddr), false},
		{"client has an address", request(dhcpv4.WithClientIP(yiaddr)), reply(dhcpv4.MessageTypeAck, yiaddr), false},
		{"not Ethernet", request(dhcpv4.WithHwAddr(net.HardwareAddr{1, 2, 3, 4, 5, 6, 7, 8})), reply(dhcpv4.MessageTypeOffer, yiaddr), false},
	} {
		if _, got := Dest(c.req, c.resp, nil, 67); got != c.want {
			t.Errorf("%s: at hardware address %v, want %v", c.name, got, c.want)
		}
	}
}
