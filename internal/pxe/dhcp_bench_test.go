package pxe

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/bootstrapd/bootstrapd/internal/config"
	"github.com/bootstrapd/bootstrapd/internal/inventory"
	"github.com/bootstrapd/bootstrapd/internal/store"
)

// BenchmarkDORA is one DISCOVER and one REQUEST through the DHCP policy for
// a new client each time, with a real store: the REQUEST's lease is fsynced
// before Reply returns. Each request is parsed from bytes and each reply
// encoded, as the listener does, and the client side is cheap (templates
// with the MAC and address patched in) so that the figures are the server's.
// parallel=1 has one exchange in flight per CPU, so a commit carries one or
// two leases; parallel=32 has 32 per CPU, and commits are shared as they are
// under load.
func BenchmarkDORA(b *testing.B) {
	for _, parallel := range []int{1, 32} {
		b.Run(fmt.Sprintf("parallel=%d", parallel), func(b *testing.B) { benchDORA(b, parallel) })
	}
}

func benchDORA(b *testing.B, parallel int) {
	db, err := store.Open(filepath.Join(b.TempDir(), "db"))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	inv, err := inventory.Open(db, inventory.Pool{
		Subnet: netip.MustParsePrefix("10.64.0.0/10"),
		Range:  [2]netip.Addr{netip.MustParseAddr("10.64.0.10"), netip.MustParseAddr("10.127.255.250")},
		Lease:  time.Hour,
	}, discardLog())
	if err != nil {
		b.Fatal(err)
	}
	server := netip.MustParseAddr("10.64.0.1")
	h := &DHCP{Mode: config.ModePool, Leases: inv, Server: server,
		Subnet: netip.MustParsePrefix("10.64.0.0/10"), Lease: time.Hour, Log: discardLog()}
	ctx := context.Background()
	template, err := dhcpv4.NewDiscovery(net.HardwareAddr{2, 0, 0, 0, 0, 0})
	if err != nil {
		b.Fatal(err)
	}
	discover := template.ToBytes()
	template.UpdateOption(dhcpv4.OptMessageType(dhcpv4.MessageTypeRequest))
	template.UpdateOption(dhcpv4.OptServerIdentifier(server.AsSlice()))
	template.UpdateOption(dhcpv4.OptRequestedIPAddress(net.IPv4zero))
	request := template.ToBytes()
	yiaddr := optionAt(b, request, dhcpv4.OptionRequestedIPAddress)
	var seq atomic.Uint32
	b.ReportAllocs()
	b.SetParallelism(parallel)
	b.RunParallel(func(pb *testing.PB) {
		disc, req := append([]byte(nil), discover...), append([]byte(nil), request...)
		for pb.Next() {
			n := seq.Add(1)
			hw := [6]byte{2, 0, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}
			copy(disc[28:], hw[:]) // chaddr
			offer := reply(b, h, ctx, disc, dhcpv4.MessageTypeOffer)
			copy(req[28:], hw[:])
			copy(req[yiaddr:], offer.YourIPAddr.To4())
			reply(b, h, ctx, req, dhcpv4.MessageTypeAck)
		}
	})
}

// reply is what the listener does with one packet: parse, answer, encode.
func reply(b *testing.B, h *DHCP, ctx context.Context, pkt []byte, want dhcpv4.MessageType) *dhcpv4.DHCPv4 {
	m, err := dhcpv4.FromBytes(pkt)
	if err != nil {
		b.Fatal(err)
	}
	resp, err := h.Reply(ctx, m, dhcpv4.ServerPort)
	if err != nil || resp == nil || resp.MessageType() != want {
		b.Fatalf("%s: %v %v", want, resp, err)
	}
	if len(resp.ToBytes()) == 0 {
		b.Fatal("empty reply")
	}
	return resp
}

// optionAt is the offset of the value of option code in an encoded packet.
func optionAt(b *testing.B, pkt []byte, code dhcpv4.OptionCode) int {
	for i := 240; i+1 < len(pkt) && pkt[i] != 255; i += 2 + int(pkt[i+1]) {
		if pkt[i] == code.Code() {
			return i + 2
		}
	}
	b.Fatalf("option %v not in the template", code)
	return 0
}
