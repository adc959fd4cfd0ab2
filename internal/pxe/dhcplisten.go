package pxe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"syscall"
	"unsafe"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"github.com/insomniacslk/dhcp/iana"
	"golang.org/x/sys/unix"
)

// The DHCP listener: reading requests off the socket, answering them on
// one goroutine, and sending the replies where RFC 2131 says.

// Dest is where a reply to req goes (RFC 2131 4.1): back to the relay, to
// the client's own address if it has one, or else broadcast on the
// segment. hw says the RFC wants that last one at the client's hardware
// address and the address it is given (an Ethernet client that did not set
// the broadcast flag): a UDP socket cannot send that, a Link can.
func Dest(req, resp *dhcpv4.DHCPv4, peer *net.UDPAddr, port int) (dst *net.UDPAddr, hw bool) {
	switch {
	case !req.GatewayIPAddr.IsUnspecified():
		return &net.UDPAddr{IP: req.GatewayIPAddr, Port: dhcpv4.ServerPort}, false
	case port == PXEPort:
		return peer, false
	case resp.MessageType() == dhcpv4.MessageTypeNak:
		return &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ClientPort}, false
	case !req.ClientIPAddr.IsUnspecified():
		return &net.UDPAddr{IP: req.ClientIPAddr, Port: dhcpv4.ClientPort}, false
	}
	hw = !req.IsBroadcast() && req.HWType == iana.HWTypeEthernet && len(req.ClientHWAddr) == 6 &&
		resp.YourIPAddr.To4() != nil && !resp.YourIPAddr.IsUnspecified()
	return &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ClientPort}, hw
}

// maxInFlight bounds the requests one listener works on at once. Beyond it
// packets are dropped and counted, and clients retry: better than piling up
// goroutines that all wait for the disk when it is slow.
const maxInFlight = 1024

// Handler adapts h to server4 for a listener on port. It answers on the
// caller's goroutine, except a request that writes to the store, whose
// reply is sent once the write is on disk (see replyThen).
func (h *DHCP) Handler(port int) server4.Handler {
	if h.refused == nil { // not registered: logged, not counted
		h.refused = newQuietLog(h.Log, "dhcp", nil)
	}
	inflight := make(chan struct{}, maxInFlight)
	return func(conn net.PacketConn, peer net.Addr, req *dhcpv4.DHCPv4) {
		select {
		case inflight <- struct{}{}:
		default:
			h.metrics.drop()
			return
		}
		ctx := context.Background()
		mt := req.MessageType()
		h.metrics.request(mt)
		idle := func() bool { return socketIdle(conn) }
		h.replyThen(ctx, req, mt, port, idle, func(resp *dhcpv4.DHCPv4, err error) {
			defer func() { <-inflight }()
			h.send(conn, peer, port, req, mt, resp, err)
		})
	}
}

// send puts the answer to req on conn.
func (h *DHCP) send(conn net.PacketConn, peer net.Addr, port int, req *dhcpv4.DHCPv4, mt dhcpv4.MessageType, resp *dhcpv4.DHCPv4, err error) {
	ctx := context.Background()
	debug := h.Log.Enabled(ctx, slog.LevelDebug)
	if err != nil {
		h.metrics.error()
		h.refused.Warn("bad_request", "dhcp request not answered", "mac", req.ClientHWAddr.String(), "type", mt.String(), "err", err)
		return
	}
	if resp == nil {
		if debug {
			h.Log.Debug("dhcp not answered", "mac", req.ClientHWAddr.String(), "type", mt.String(), "port", port, "mode", h.Mode)
		}
		return
	}
	up, _ := peer.(*net.UDPAddr)
	dst, hw := Dest(req, resp, up, port)
	b := resp.ToBytes()
	// A Link send that fails (a full queue: it does not wait) is broadcast
	// instead, which the client takes as well; a lasting fault of the
	// interface fails the broadcast too, and that is logged.
	var yiaddr netip.Addr
	if hw && h.Link != nil {
		yiaddr, _ = netip.AddrFromSlice(resp.YourIPAddr.To4())
		if h.Link.Send(b, req.ClientHWAddr, netip.AddrPortFrom(yiaddr, dhcpv4.ClientPort)) != nil {
			yiaddr = netip.Addr{}
		}
	}
	if !yiaddr.IsValid() {
		if err := writeTo(conn, b, dst); err != nil {
			h.metrics.error()
			h.Log.Warn("dhcp reply not sent", "mac", req.ClientHWAddr.String(), "to", dst.String(), "err", err)
			return
		}
	}
	rt := resp.MessageType()
	h.metrics.reply(rt)
	if debug {
		to := dst.String()
		if yiaddr.IsValid() {
			to = fmt.Sprintf("%s:%d at %s", yiaddr, dhcpv4.ClientPort, req.ClientHWAddr)
		}
		h.Log.Debug("dhcp", "mac", req.ClientHWAddr.String(), "req", mt.String(), "reply", rt.String(),
			"yiaddr", resp.YourIPAddr.String(), "file", resp.BootFileName, "to", to)
	}
}

// ServeDHCP answers on conn until ctx ends. It reads one packet at a time
// and hands it to handler on its own goroutine: server4's loop started a
// goroutine per packet, and its wake-ups (a thread woken to run it, then
// parked again) cost more CPU than answering. handler must not block: the
// one from Handler sends replies that wait for the disk from the store.
func ServeDHCP(ctx context.Context, conn net.PacketConn, handler server4.Handler, log *slog.Logger) error {
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	malformed := newQuietLog(log, "dhcp", nil)
	buf := make([]byte, 4096) // dhcpv4.FromBytes copies what it keeps
	read := conn.ReadFrom
	if sc, ok := conn.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			read = rawReader(rc)
		}
	}
	for {
		n, peer, err := read(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("dhcp: read from %s: %w", conn.LocalAddr(), err)
		}
		m, err := dhcpv4.FromBytes(buf[:n])
		if err != nil {
			malformed.Warn("malformed", "dhcp: malformed request", "from", peer.String(), "err", err)
			continue
		}
		up, ok := peer.(*net.UDPAddr)
		if !ok {
			continue
		}
		// As server4 did: a client without an address is answered by
		// broadcast to its port (Dest decides the rest).
		if up.IP == nil || up.IP.To4().Equal(net.IPv4zero) {
			up = &net.UDPAddr{IP: net.IPv4bcast, Port: up.Port}
		}
		handler(conn, up, m)
	}
}

// The listener's socket calls are made with syscall.RawSyscall, which the
// Go scheduler does not see, instead of the net package's syscall.Syscall.
// The socket is non-blocking, so they return at once; but every
// syscall.Syscall made while all threads idle wakes the runtime's monitor
// thread (sysmon), which then polls every 20 µs for a while: at
// 1000 exchanges/s that was 40% of the daemon's context switches. Waiting
// for a packet still parks the goroutine in the netpoller (RawConn.Read).

// rawReader is ReadFrom on rc.
func rawReader(rc syscall.RawConn) func([]byte) (int, net.Addr, error) {
	var (
		p     []byte
		n     uintptr
		errno syscall.Errno
		sa    syscall.RawSockaddrInet4
		salen uint32
	)
	// One closure for every read: rc.Read takes a func, and a new one per
	// packet would be an allocation per packet.
	recv := func(fd uintptr) bool {
		for {
			salen = syscall.SizeofSockaddrInet4
			n, _, errno = syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)),
				0, uintptr(unsafe.Pointer(&sa)), uintptr(unsafe.Pointer(&salen)))
			if errno != syscall.EINTR {
				return errno != syscall.EAGAIN
			}
		}
	}
	return func(b []byte) (int, net.Addr, error) {
		p = b
		if err := rc.Read(recv); err != nil {
			return 0, nil, err
		}
		if errno != 0 {
			return 0, nil, os.NewSyscallError("recvfrom", errno)
		}
		if sa.Family != syscall.AF_INET || salen < syscall.SizeofSockaddrInet4 {
			return int(n), &net.UDPAddr{}, nil // not IPv4: Dest answers by broadcast
		}
		port := int(sa.Port>>8 | sa.Port<<8&0xff00) // network byte order
		return int(n), &net.UDPAddr{IP: net.IPv4(sa.Addr[0], sa.Addr[1], sa.Addr[2], sa.Addr[3]).To4(), Port: port}, nil
	}
}

// socketIdle reports whether no packet waits on conn (SIOCINQ), and false
// when it cannot tell.
func socketIdle(conn net.PacketConn) bool {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	queued := int32(-1)
	rc.Control(func(fd uintptr) {
		var n int32
		if _, _, errno := syscall.RawSyscall(syscall.SYS_IOCTL, fd, unix.SIOCINQ, uintptr(unsafe.Pointer(&n))); errno == 0 {
			queued = n
		}
	})
	return queued == 0
}

// writeTo is conn.WriteTo, with a RawSyscall (see above) where conn allows.
func writeTo(conn net.PacketConn, b []byte, dst *net.UDPAddr) error {
	sc, ok := conn.(syscall.Conn)
	ip := dst.IP.To4()
	if !ok || ip == nil {
		_, err := conn.WriteTo(b, dst)
		return err
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	sa := syscall.RawSockaddrInet4{Family: syscall.AF_INET, Port: uint16(dst.Port)>>8 | uint16(dst.Port)<<8}
	copy(sa.Addr[:], ip)
	var errno syscall.Errno
	err = rc.Write(func(fd uintptr) bool {
		for {
			_, _, errno = syscall.RawSyscall6(syscall.SYS_SENDTO, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)),
				0, uintptr(unsafe.Pointer(&sa)), syscall.SizeofSockaddrInet4)
			if errno != syscall.EINTR {
				return errno != syscall.EAGAIN
			}
		}
	})
	if err != nil {
		return err
	}
	if errno != 0 {
		return os.NewSyscallError("sendto", errno)
	}
	return nil
}

// ProbeDHCPPort binds 0.0.0.0:port on iface with neither SO_REUSEADDR nor
// SO_REUSEPORT, and lets go. The listening socket (server4's) sets both, so
// without this probe bootstrapd would start beside another DHCP server on
// the same interface and both would answer.
func ProbeDHCPPort(iface string, port int) error {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, syscall.IPPROTO_UDP)
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	if iface != "" {
		if err := syscall.BindToDevice(fd, iface); err != nil {
			return fmt.Errorf("bind to %s: %w", iface, err)
		}
	}
	return syscall.Bind(fd, &syscall.SockaddrInet4{Port: port})
}

// ListenDHCP opens a UDP socket on port bound to the named interface only,
// so replies never leave by, and requests are never taken from, another one.
func ListenDHCP(iface string, port int) (net.PacketConn, error) {
	return server4.NewIPv4UDPConn(iface, &net.UDPAddr{Port: port})
}
