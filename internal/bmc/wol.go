package bmc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
)

// WakePort is the UDP port magic packets go to when none is given (the
// "discard" port most senders use).
const WakePort = 9

// MagicPacket is the Wake-on-LAN payload for mac: six 0xff bytes, then the
// MAC sixteen times (102 bytes).
func MagicPacket(mac net.HardwareAddr) ([]byte, error) {
	if len(mac) != 6 {
		return nil, fmt.Errorf("wake-on-LAN needs a 6-byte Ethernet MAC, not %q", mac)
	}
	return append(bytes.Repeat([]byte{0xff}, 6), bytes.Repeat(mac, 16)...), nil
}

// WakeOnLAN sends mac's magic packet as a UDP broadcast (255.255.255.255,
// port 9) out of iface, the provisioning interface, and, when dst is
// valid, also to dst: a subnet's directed broadcast (e.g. 10.0.9.255:9)
// that a relay forwards onto a segment the interface is not on. A zero
// port in dst means 9.
func WakeOnLAN(ctx context.Context, iface string, mac net.HardwareAddr, dst netip.AddrPort) error {
	pkt, err := MagicPacket(mac)
	if err != nil {
		return err
	}
	var lc net.ListenConfig
	lc.Control = func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			if serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_BROADCAST, 1); serr != nil {
				return
			}
			// Leave by the named interface whatever the routes say: a
			// limited broadcast is otherwise sent by the default route's.
			serr = syscall.BindToDevice(int(fd), iface)
		})
		if err != nil {
			return err
		}
		return serr
	}
	pc, err := lc.ListenPacket(ctx, "udp4", ":0")
	if err != nil {
		return fmt.Errorf("wake-on-LAN for %s on %s: %w (the interface must exist, and binding to it needs CAP_NET_RAW)", mac, iface, err)
	}
	defer pc.Close()
	if d, ok := ctx.Deadline(); ok {
		_ = pc.SetWriteDeadline(d)
	}
	targets := []netip.AddrPort{netip.AddrPortFrom(netip.AddrFrom4([4]byte{255, 255, 255, 255}), WakePort)}
	if dst.IsValid() {
		if dst.Port() == 0 {
			dst = netip.AddrPortFrom(dst.Addr(), WakePort)
		}
		targets = append(targets, dst)
	}
	var errs []error
	for _, t := range targets {
		if _, err := pc.WriteTo(pkt, net.UDPAddrFromAddrPort(t)); err != nil {
			errs = append(errs, fmt.Errorf("to %s: %w", t, err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("wake-on-LAN for %s on %s: %w", mac, iface, errors.Join(errs...))
	}
	return nil
}
