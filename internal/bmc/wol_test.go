package bmc

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/bootstrapd/bootstrapd/internal/netlab"
)

func TestMagicPacket(t *testing.T) {
	mac := net.HardwareAddr{0x52, 0x54, 0x00, 0xaa, 0xbb, 0xcc}
	p, err := MagicPacket(mac)
	if err != nil {
		t.Fatal(err)
	}
	if len(p) != 102 || !bytes.Equal(p[:6], bytes.Repeat([]byte{0xff}, 6)) {
		t.Fatalf("packet %x: want 102 bytes starting with 6 0xff", p)
	}
	for i := range 16 {
		if !bytes.Equal(p[6+6*i:12+6*i], mac) {
			t.Fatalf("repetition %d is %x, want %s", i, p[6+6*i:12+6*i], mac)
		}
	}
	for _, bad := range []net.HardwareAddr{nil, {1, 2, 3}, make(net.HardwareAddr, 20)} {
		if _, err := MagicPacket(bad); err == nil {
			t.Errorf("MagicPacket(%x) succeeded", []byte(bad))
		}
	}
}

// TestWakeOnLAN sends from one namespace on a lab bridge and receives on
// another: the limited broadcast and the directed broadcast each arrive
// once, byte for byte the magic packet.
func TestWakeOnLAN(t *testing.T) {
	lab := netlab.NewLab(t, "10.232.0.1/24")
	sender := lab.AddHost(t, "10.232.0.2/24")
	receiver := lab.AddHost(t, "10.232.0.3/24")
	limited := receiver.ListenPacket(t, "udp4", "255.255.255.255:9")
	directed := receiver.ListenPacket(t, "udp4", "10.232.0.255:9")

	mac := net.HardwareAddr{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}
	want, _ := MagicPacket(mac)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	dst := netip.MustParseAddrPort("10.232.0.255:0") // port 0: the default, 9
	if err := sender.Do(func() error { return WakeOnLAN(ctx, sender.Iface, mac, dst) }); err != nil {
		t.Fatal(err)
	}
	for name, pc := range map[string]net.PacketConn{"limited broadcast": limited, "directed broadcast": directed} {
		buf := make([]byte, 1500)
		_ = pc.SetReadDeadline(time.Now().Add(3 * time.Second))
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !bytes.Equal(buf[:n], want) {
			t.Errorf("%s from %s: %x, want %x", name, from, buf[:n], want)
		}
		if !strings.HasPrefix(from.String(), "10.232.0.2:") {
			t.Errorf("%s came from %s, want the sender 10.232.0.2", name, from)
		}
	}

	// An interface that is not there is an error that names it.
	err := sender.Do(func() error { return WakeOnLAN(ctx, "nosuch0", mac, netip.AddrPort{}) })
	if err == nil || !strings.Contains(err.Error(), "nosuch0") {
		t.Errorf("unknown interface: %v", err)
	}
}
