// Package routeros configures a MikroTik router over the RouterOS API:
// a connection with deadlines that hold, and (later) the desired state,
// plan and apply.
package routeros

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/bootstrapd/bootstrapd/internal/tlspin"
	ros "github.com/go-routeros/routeros/v3"
)

// Dialer says how to reach the router. Credentials come from a file or the
// environment, never from argv; this struct only carries them.
type Dialer struct {
	Address  string // host:port; 8729 is api-ssl, 8728 plain api
	User     string
	Password string
	// TLS: a CA pool, or a pinned SHA-256 fingerprint of the router's
	// certificate (RouterOS usually has a self-signed one). Neither and
	// Insecure false means no connection: plain api only when asked.
	RootCAs     *x509.CertPool
	Fingerprint string
	Insecure    bool          // plain api (8728): credentials in the clear
	Timeout     time.Duration // per command, dial and login included; default 10s
}

// Conn is one API session, used by one command at a time. It redials after
// the connection breaks (a timeout, !fatal, a reset); a command that finds
// the session already gone (the router rebooted while it sat idle) is sent
// again on a new one before the caller hears of it.
type Conn struct {
	d  Dialer
	mu sync.Mutex
	s  *session // nil until the first command, and after a break
	// logins counts sessions, so a caller can tell that a redial (maybe
	// onto a router rebooted into another release) happened meanwhile.
	logins int
}

// session is one login: what go-routeros reads and writes through, and
// what bootstrapd learned about the router on it.
type session struct {
	client *ros.Client
	nc     net.Conn
	guard  *guard
	// version is asked once per session: a RouterOS upgrade reboots, so
	// a new release always comes with a new session.
	version string
}

// NewConn returns a Conn that dials on first use.
func NewConn(d Dialer) *Conn {
	if d.Timeout == 0 {
		d.Timeout = 10 * time.Second
	}
	return &Conn{d: d}
}

// Close ends the session.
func (c *Conn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.drop()
}

func (c *Conn) drop() error {
	if c.s == nil {
		return nil
	}
	err := c.s.client.Close()
	c.s = nil
	return err
}

// Run sends one command and returns its reply. The deadline is the
// earlier of ctx's and the Dialer's Timeout, and it is set on the socket:
// go-routeros ignores contexts in sync mode, so a router that stops
// answering would otherwise block forever.
func (c *Conn) Run(ctx context.Context, words ...string) (*ros.Reply, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.run(ctx, words)
}

func (c *Conn) run(ctx context.Context, words []string) (*ros.Reply, error) {
	// One deadline for the whole call, a redial included.
	deadline := time.Now().Add(c.d.Timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	for retried := false; ; retried = true {
		fresh := c.s == nil
		if fresh {
			if err := c.dial(ctx, deadline); err != nil {
				return nil, err
			}
		}
		if err := c.s.guard.arm(deadline); err != nil {
			c.drop()
			return nil, fmt.Errorf("router %s: %s: %w", c.d.Address, words[0], err)
		}
		reply, err := c.s.client.RunArgs(words)
		var dev *ros.DeviceError
		switch {
		case err == nil:
			return reply, nil
		case errors.As(err, &dev) && dev.Sentence.Word == "!trap":
			// The router refused the command; the session is fine.
			return reply, &TrapError{Command: words[0], Message: dev.Sentence.Map["message"], Category: dev.Sentence.Map["category"]}
		}
		// Anything else (timeout, !fatal, EOF, a protocol error) leaves
		// the session unusable: drop it, and the next command dials again.
		received := c.s.guard.received()
		c.drop()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("router %s: %s: %w", c.d.Address, words[0], ctx.Err())
		}
		if !fresh && !retried && received == 0 && broken(err) && repeatable(words[0]) {
			// A session that broke before a byte of the reply came is
			// most likely one the router ended while it sat idle (a
			// reboot, an upgrade), which never saw the command: send it
			// again on a new session rather than fail the caller.
			continue
		}
		return nil, fmt.Errorf("router %s: %s: %w", c.d.Address, words[0], err)
	}
}

// broken reports whether err is the connection failing under the session
// (closed by the router, reset, gone), rather than a timeout, a protocol
// error or the router refusing.
func broken(err error) bool {
	for _, target := range []error{io.EOF, io.ErrUnexpectedEOF, net.ErrClosed, syscall.ECONNRESET, syscall.ECONNABORTED, syscall.EPIPE} {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

// repeatable reports whether a command may be sent twice when it is not
// known whether the router ran it: anything but an add. A print reads; a
// set or remove of a given .id does the same the second time (or traps);
// a second add may make a second row.
func repeatable(command string) bool {
	return !strings.HasSuffix(command, "/add")
}

func (c *Conn) dial(ctx context.Context, deadline time.Time) error {
	dctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	var nd net.Dialer
	raw, err := nd.DialContext(dctx, "tcp", c.d.Address)
	if err != nil {
		return fmt.Errorf("router %s: %w", c.d.Address, err)
	}
	nc := raw
	switch {
	case c.d.RootCAs != nil || c.d.Fingerprint != "":
		host, _, _ := net.SplitHostPort(c.d.Address)
		conf, err := tlspin.Config(host, c.d.RootCAs, c.d.Fingerprint, "the router")
		if err != nil {
			raw.Close()
			return fmt.Errorf("router %s: %w", c.d.Address, err)
		}
		nc = tls.Client(raw, conf)
	case !c.d.Insecure:
		raw.Close()
		return fmt.Errorf("router %s: no CA and no certificate fingerprint to check api-ssl against; set one, or allow plain api explicitly", c.d.Address)
	}
	// go-routeros reads only through the guard, under its deadline; the
	// TLS handshake, on the first write, under the same one.
	g := &guard{conn: nc}
	if err := g.arm(deadline); err != nil {
		nc.Close()
		return fmt.Errorf("router %s: %w", c.d.Address, err)
	}
	client, err := ros.NewClient(g)
	if err == nil {
		err = client.Login(c.d.User, c.d.Password)
	}
	if err != nil {
		nc.Close()
		var dev *ros.DeviceError
		if errors.As(err, &dev) {
			return fmt.Errorf("router %s: login as %s: %s", c.d.Address, c.d.User, dev.Sentence.Map["message"])
		}
		return fmt.Errorf("router %s: login: %w", c.d.Address, err)
	}
	c.s = &session{client: client, nc: nc, guard: g}
	c.logins++
	return nil
}

// TrapError is RouterOS refusing a command (!trap).
type TrapError struct {
	Command, Message, Category string
}

func (e *TrapError) Error() string {
	return fmt.Sprintf("%s: router says: %s", e.Command, e.Message)
}

// Version is the RouterOS release the router runs ("7.19.1 (stable)"):
// some property names and filters depend on it. It is asked once per
// session, so a router upgraded (and so rebooted) under a running daemon
// is asked again.
func (c *Conn) Version(ctx context.Context) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	info, err := c.current(ctx)
	return info.version, err
}

// sessionInfo is what plans depend on beyond the menus they read.
type sessionInfo struct {
	version string
	// local is bootstrapd's address on the session: the one api_from
	// must let in.
	local netip.Addr
	// login is which session this was (Conn.logins).
	login int
}

// info returns the current session's facts, dialing if there is none.
func (c *Conn) info(ctx context.Context) (sessionInfo, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.current(ctx)
}

func (c *Conn) current(ctx context.Context) (sessionInfo, error) {
	if c.s == nil || c.s.version == "" {
		// run dials if needed, and redials once if the session broke; the
		// reply is the current session's either way.
		reply, err := c.run(ctx, []string{"/system/resource/print", "=.proplist=version"})
		if err != nil {
			return sessionInfo{}, err
		}
		if len(reply.Re) != 1 || reply.Re[0].Map["version"] == "" {
			return sessionInfo{}, fmt.Errorf("router %s: /system/resource/print gave no version", c.d.Address)
		}
		c.s.version = reply.Re[0].Map["version"]
	}
	info := sessionInfo{version: c.s.version, login: c.logins}
	if a, ok := c.s.nc.LocalAddr().(*net.TCPAddr); ok {
		info.local = a.AddrPort().Addr().Unmap()
	}
	return info, nil
}

// login is the number of the latest session (0 before the first).
func (c *Conn) login() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.logins
}
