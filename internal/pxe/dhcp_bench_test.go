package pxe

import (
	"context"
	"net"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/bootstrapd/bootstrapd/internal/config"
	"github.com/bootstrapd/bootstrapd/internal/inventory"
	"github.com/bootstrapd/bootstrapd/internal/store"
)

// BenchmarkDORA is one DISCOVER and one REQUEST through the DHCP policy for
// a new client each time, with a real store: the REQUEST's lease is fsynced
// before Reply returns. Run in parallel so that commits are shared, as they
// are under load.
func BenchmarkDORA(b *testing.B) {
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
	h := &DHCP{Mode: config.ModePool, Leases: inv, Server: netip.MustParseAddr("10.64.0.1"),
		Subnet: netip.MustParsePrefix("10.64.0.0/10"), Lease: time.Hour, Log: discardLog()}
	ctx := context.Background()
	var seq uint32
	var mu = make(chan struct{}, 1)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			mu <- struct{}{}
			seq++
			n := seq
			<-mu
			hw := net.HardwareAddr{2, 0, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}
			disc, _ := dhcpv4.NewDiscovery(hw)
			offer, err := h.Reply(ctx, disc, dhcpv4.ServerPort)
			if err != nil || offer == nil {
				b.Fatalf("offer: %v", err)
			}
			req, _ := dhcpv4.NewRequestFromOffer(offer)
			ack, err := h.Reply(ctx, req, dhcpv4.ServerPort)
			if err != nil || ack == nil || ack.MessageType() != dhcpv4.MessageTypeAck {
				b.Fatalf("ack: %v %v", ack, err)
			}
		}
	})
}
