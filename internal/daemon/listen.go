package daemon

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"github.com/bootstrapd/bootstrapd/internal/api"
	"github.com/bootstrapd/bootstrapd/internal/config"
	"github.com/bootstrapd/bootstrapd/internal/pxe"
)

// listeners are all opened before anything serves, so a port in use is
// reported at start, not after DHCP is already answering.
type listeners struct {
	http, api net.Listener
	apiTCP    net.Listener // nil unless api.listen is set; needs the token; TLS with api.tls_cert_file
	tftp      net.PacketConn
	dhcp      map[int]net.PacketConn // by port: 67, and 4011 in proxy mode
	// link sends replies to clients without an address at their MAC
	// (reservation and pool modes). Without CAP_NET_RAW it is nil and
	// linkErr says why: those replies are broadcast.
	link    *pxe.Link
	linkErr error
}

func openListeners(site *config.Site, server netip.Addr) (*listeners, error) {
	l := &listeners{dhcp: map[int]net.PacketConn{}}
	err := l.open(site, server)
	if err != nil {
		l.close()
		return nil, err
	}
	return l, nil
}

func (l *listeners) open(site *config.Site, server netip.Addr) error {
	var err error
	addr := withHost(site.HTTP.Listen, server)
	if l.http, err = net.Listen("tcp4", addr); err != nil {
		return fmt.Errorf("node HTTP on %s: %w", addr, err)
	}
	addr = withHost(site.TFTP.Listen, server)
	if l.tftp, err = net.ListenPacket("udp4", addr); err != nil {
		return fmt.Errorf("TFTP on %s: %w", addr, err)
	}
	if err := burstBuffer(l.tftp); err != nil {
		return fmt.Errorf("TFTP on %s: %w", addr, err)
	}
	if l.api, err = api.ListenUnix(site.API.Socket); err != nil {
		return err
	}
	if site.API.Listen != "" {
		// "tcp", not "tcp4" like the node listeners: operators may reach the
		// admin API over IPv6 even though PXE is IPv4 only.
		addr = withHost(site.API.Listen, server)
		if l.apiTCP, err = net.Listen("tcp", addr); err != nil {
			return fmt.Errorf("admin API on %s: %w", addr, err)
		}
		if cert := site.API.Certificate(); cert != nil {
			l.apiTCP = tls.NewListener(l.apiTCP, &tls.Config{Certificates: []tls.Certificate{*cert}, MinVersion: tls.VersionTLS12})
		}
	}
	var ports []int
	switch site.DHCP.Mode {
	case config.ModeReservation, config.ModePool:
		ports = []int{67}
		l.link, l.linkErr = pxe.OpenLink(site.Interface, netip.AddrPortFrom(server, 67))
	case config.ModeProxy:
		ports = []int{67, pxe.PXEPort}
	}
	for _, port := range ports {
		if err := pxe.ProbeDHCPPort(site.Interface, port); err != nil {
			return fmt.Errorf("DHCP port %d on %s: %w: another DHCP server (or bootstrapd) is using it; stop it, or use dhcp mode \"proxy\" or \"off\" beside it (`bootstrapd doctor` names the process)", port, site.Interface, err)
		}
		conn, err := pxe.ListenDHCP(site.Interface, port)
		if err != nil {
			return fmt.Errorf("DHCP on %s port %d: %w", site.Interface, port, err)
		}
		l.dhcp[port] = conn
		if err := burstBuffer(conn); err != nil {
			return fmt.Errorf("DHCP on %s port %d: %w", site.Interface, port, err)
		}
	}
	return nil
}

// burstRcvBuf is the receive buffer of the DHCP and TFTP sockets. A rack
// powered on at once sends its DISCOVERs, then its TFTP requests, within
// milliseconds; the kernel's default (rmem_default, 208 KiB: about 200 small
// datagrams) dropped a fifth of them in the boot storm benchmark, and every
// drop costs its node a firmware retry of 4 s or more. 4 MiB holds a few
// thousand, and is memory only while it is full.
const burstRcvBuf = 4 << 20

// burstBuffer gives conn burstRcvBuf. SO_RCVBUFFORCE passes the system's
// cap (rmem_max) and needs CAP_NET_ADMIN; without it, SO_RCVBUF gets as much
// as the cap allows.
func burstBuffer(conn net.PacketConn) error {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = raw.Control(func(fd uintptr) {
		if syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUFFORCE, burstRcvBuf) != nil {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, burstRcvBuf)
		}
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("receive buffer: %w", err)
	}
	return nil
}

func (l *listeners) close() {
	for _, c := range []interface{ Close() error }{l.http, l.api, l.apiTCP, l.tftp} {
		if c != nil {
			c.Close()
		}
	}
	for _, c := range l.dhcp {
		c.Close()
	}
	if l.link != nil {
		l.link.Close()
	}
}
