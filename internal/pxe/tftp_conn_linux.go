package pxe

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// tftpConn is one transfer's socket: UDP, bound to the address the request
// came to and connected to the client, so the kernel drops datagrams from
// anyone else (a neighbour spoofing ACKs from another port or host never
// reaches the transfer) and replies leave from the address the client
// asked. It is a plain blocking socket made with syscall, not a net.Conn:
// a lockstep transfer waits for one ACK per block, and Go's netpoller
// turns each wait into a failed read (EAGAIN), a park, an epoll wake-up
// and a reschedule, which cost as much as the send and the receive
// themselves (docs/benchmarks.md, "Files"). Here the goroutine blocks in
// recv(2) with SO_RCVTIMEO as its timeout and the kernel wakes it, as
// tftpd-hpa's process is woken.
//
// Each transfer waiting in recv holds an OS thread for that time; the
// MaxTransfers cap (1024 by default) bounds those threads too.
type tftpConn struct {
	fd   int
	wait time.Duration // the SO_RCVTIMEO in force

	// mu orders wake against close, so that a shutdown never reaches a
	// descriptor number the process has since reused for something else.
	mu     sync.Mutex
	closed bool
}

// errTFTPTimeout is a wait that ended without a packet.
var errTFTPTimeout = errors.New("timed out")

// dialTFTP opens a transfer's socket from local (any port) to remote, both
// IPv4. wait is the initial receive timeout; 0 for a socket that only sends.
func dialTFTP(local netip.Addr, remote netip.AddrPort, wait time.Duration) (*tftpConn, error) {
	if !local.Is4() || !remote.Addr().Is4() {
		return nil, &net.OpError{Op: "dial", Net: "udp4", Addr: net.UDPAddrFromAddrPort(remote), Err: errors.New("not IPv4")}
	}
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, syscall.IPPROTO_UDP)
	if err != nil {
		return nil, &net.OpError{Op: "socket", Net: "udp4", Err: err}
	}
	c := &tftpConn{fd: fd}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: local.As4()}); err != nil {
		c.close()
		return nil, &net.OpError{Op: "bind", Net: "udp4", Addr: net.UDPAddrFromAddrPort(netip.AddrPortFrom(local, 0)), Err: err}
	}
	if err := syscall.Connect(fd, &syscall.SockaddrInet4{Addr: remote.Addr().As4(), Port: int(remote.Port())}); err != nil {
		c.close()
		return nil, &net.OpError{Op: "connect", Net: "udp4", Addr: net.UDPAddrFromAddrPort(remote), Err: err}
	}
	if wait > 0 {
		if err := c.setWait(wait); err != nil {
			c.close()
			return nil, err
		}
	}
	return c, nil
}

func (c *tftpConn) setWait(d time.Duration) error {
	tv := syscall.NsecToTimeval(max(d, time.Microsecond).Nanoseconds())
	if err := syscall.SetsockoptTimeval(c.fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv); err != nil {
		return &net.OpError{Op: "setsockopt", Net: "udp4", Err: err}
	}
	c.wait = d
	return nil
}

// send writes one datagram to the client.
func (c *tftpConn) send(b []byte) error {
	for range 3 {
		// send(2), as sendto without an address; write(2) would work as
		// well, through the VFS layer's extra checks on every block.
		err := syscall.Sendto(c.fd, b, 0, nil)
		// EINTR: a signal came first. ECONNREFUSED: an ICMP port
		// unreachable from the client arrived since the last call and is
		// reported once, in place of this send; the client may have
		// restarted, and the block is sent again like any lost one.
		if err == syscall.EINTR || err == syscall.ECONNREFUSED {
			continue
		}
		if err != nil {
			return &net.OpError{Op: "write", Net: "udp4", Err: err}
		}
		return nil
	}
	return nil
}

// recv reads one datagram into b, waiting at most about d: the socket's
// timeout changes only when d is shorter than it by more than an eighth,
// or longer, so the steady state (one wait of the full timeout per block)
// costs no setsockopt. It returns errTFTPTimeout when nothing came, and
// 0 bytes when it was interrupted (a signal, an ICMP error, a wake) and
// the caller should look around and wait again.
func (c *tftpConn) recv(b []byte, d time.Duration) (int, error) {
	if d <= 0 {
		return 0, errTFTPTimeout
	}
	if d > c.wait || d < c.wait-c.wait/8 {
		if err := c.setWait(d); err != nil {
			return 0, err
		}
	}
	// recv(2): recvfrom without an address. syscall.Recvfrom would
	// allocate the address it returns, once per block.
	r, _, e := syscall.Syscall6(syscall.SYS_RECVFROM, uintptr(c.fd), uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)), 0, 0, 0)
	var err error
	if e != 0 {
		err = e
	}
	switch err {
	case nil:
		return int(r), nil
	case syscall.EAGAIN:
		return 0, errTFTPTimeout
	case syscall.EINTR, syscall.ECONNREFUSED:
		return 0, nil
	}
	return 0, &net.OpError{Op: "read", Net: "udp4", Err: err}
}

// wake ends a recv in progress, and makes every later one return at once:
// shutdown(SHUT_RD) wakes a UDP socket's readers. Sending still works, so
// the transfer can still tell its client why it ends.
func (c *tftpConn) wake() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		syscall.Shutdown(c.fd, syscall.SHUT_RD)
	}
}

func (c *tftpConn) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		c.closed = true
		syscall.Close(c.fd)
	}
}

// tftpListen prepares the server socket: IP_PKTINFO tells, for each
// request, which local address it was sent to, so that a server listening
// on 0.0.0.0 answers from that address and not from whichever one the
// routing table would pick (a client ignores replies from an address it did
// not ask).
func tftpListen(conn *net.UDPConn) error {
	rc, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, syscall.IP_PKTINFO, 1)
	}); err != nil {
		return err
	}
	return serr
}

// tftpLocalAddr reads the local address a request arrived on from its
// IP_PKTINFO control message: ipi_spec_dst, the address a reply should
// come from. For a unicast request it is the destination; for a broadcast
// one (a client that does not know the server yet) it is the receiving
// interface's address, where the header's destination would be the
// broadcast address, which no socket can send from. Without one, bound
// stands: the listening socket's own address, or 0.0.0.0 to let the
// kernel choose.
func tftpLocalAddr(oob []byte, bound netip.Addr) netip.Addr {
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return bound
	}
	for _, m := range msgs {
		// struct in_pktinfo: int ipi_ifindex; in_addr ipi_spec_dst, ipi_addr.
		if m.Header.Level == syscall.IPPROTO_IP && m.Header.Type == syscall.IP_PKTINFO && len(m.Data) >= 12 {
			if a := netip.AddrFrom4([4]byte(m.Data[4:8])); !a.IsUnspecified() {
				return a
			}
		}
	}
	return bound
}
