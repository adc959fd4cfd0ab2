package netlab

import (
	"bytes"
	"context"
	"net"
	"testing"
	"time"
)

// TestCapture: a host on the lab's LAN sees a datagram the lab sends it
// as a whole Ethernet frame, which ParseUDP takes apart.
func TestCapture(t *testing.T) {
	lab := NewLab(t, "10.79.2.1/24")
	host := lab.AddHost(t, "10.79.2.2/24")
	capture := host.Capture(t, host.Iface)

	c := lab.ListenPacket(t, "udp4", "10.79.2.1:0")
	payload := []byte("netlab capture")
	if _, err := c.WriteTo(payload, &net.UDPAddr{IP: net.IPv4(10, 79, 2, 2), Port: 9}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	frame, err := capture.Next(ctx, func(f []byte) bool {
		u, ok := ParseUDP(f)
		return ok && u.Dst.Port() == 9
	})
	if err != nil {
		t.Fatal(err)
	}
	u, _ := ParseUDP(frame)
	if !bytes.Equal(u.Payload, payload) || u.Src.Addr().String() != "10.79.2.1" || u.Dst.String() != "10.79.2.2:9" || u.DstMAC.String() != host.MAC {
		t.Errorf("captured %+v", u)
	}
	for _, bad := range [][]byte{nil, make([]byte, 20), frame[:30]} {
		if _, ok := ParseUDP(bad); ok {
			t.Errorf("ParseUDP accepted %d bytes", len(bad))
		}
	}
}
