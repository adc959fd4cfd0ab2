package pxe

import (
	"io"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"
)

// Limits of the node-facing HTTP server. Anyone on the provisioning
// network can open connections and trickle bytes into them; a node needs
// little: a few small scripts and reports, and its kernel and initrd.
const (
	// MaxNodeConns is how many connections are served at once; more wait
	// in the kernel's backlog until one closes. iPXE holds one connection
	// per node for its whole boot (scripts, then kernel and initrd), so
	// this is also how many nodes can download at once: at 256, the other
	// 244 nodes of a 500-node boot storm waited up to 16 s for their first
	// script (docs/benchmarks.md). An idle connection costs a goroutine and
	// two 4 KiB buffers, about 20 MiB for all 1024.
	MaxNodeConns = 1024
	// MaxConnsPerClient is how many of them one address may hold; its
	// next ones are closed at once. iPXE and an installer use one or two.
	MaxConnsPerClient = 16
	// A request's headers and body (a report is a few hundred bytes) must
	// arrive within nodeReadTimeout.
	nodeReadTimeout = 15 * time.Second
	// A response must be written within nodeWriteTimeout: an initrd of 100
	// MB at 10 Mbit/s takes 80 s.
	nodeWriteTimeout = 10 * time.Minute
	// An idle keep-alive connection is closed after nodeIdleTimeout: iPXE
	// asks for its next file at once.
	nodeIdleTimeout = 10 * time.Second
	nodeMaxHeader   = 8 << 10
)

// NodeServer is the http.Server for the node-facing handler, with the
// limits above.
func NodeServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: nodeReadTimeout,
		ReadTimeout:       nodeReadTimeout,
		WriteTimeout:      nodeWriteTimeout,
		IdleTimeout:       nodeIdleTimeout,
		MaxHeaderBytes:    nodeMaxHeader,
	}
}

// LimitListener serves at most MaxNodeConns connections of l at once, and
// at most MaxConnsPerClient from one address: one host holding idle
// connections cannot starve the nodes.
func LimitListener(l net.Listener) net.Listener {
	return &limitListener{Listener: l, slots: make(chan struct{}, MaxNodeConns), per: map[netip.Addr]int{}}
}

type limitListener struct {
	net.Listener
	slots chan struct{}
	mu    sync.Mutex
	per   map[netip.Addr]int
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		l.slots <- struct{}{}
		c, err := l.Listener.Accept()
		if err != nil {
			<-l.slots
			return nil, err
		}
		ip := remoteIP(c)
		l.mu.Lock()
		if l.per[ip] >= MaxConnsPerClient {
			l.mu.Unlock()
			c.Close()
			<-l.slots
			continue
		}
		l.per[ip]++
		l.mu.Unlock()
		return &limitedConn{Conn: c, l: l, ip: ip}, nil
	}
}

func (l *limitListener) release(ip netip.Addr) {
	l.mu.Lock()
	if l.per[ip]--; l.per[ip] <= 0 {
		delete(l.per, ip)
	}
	l.mu.Unlock()
	<-l.slots
}

type limitedConn struct {
	net.Conn
	l    *limitListener
	ip   netip.Addr
	once sync.Once
}

// ReadFrom passes net/http's file copies through to the TCP connection's
// own ReadFrom, which is sendfile(2). net/http looks for it on the conn it
// serves: without this method the embedded net.Conn hides it, and every
// asset goes through a 32 KiB buffer in user space (in the boot storm
// benchmark, a fifth of bootstrapd's CPU).
func (c *limitedConn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.ip) })
	return err
}

func remoteIP(c net.Conn) netip.Addr {
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(ta.IP)
		return ip.Unmap()
	}
	return netip.Addr{}
}
