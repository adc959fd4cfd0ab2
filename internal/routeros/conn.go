// Package routeros configures a MikroTik router over the RouterOS API:
// a connection with deadlines that hold, and (later) the desired state,
// plan and apply.
package routeros

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

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
// the connection breaks (a timeout, !fatal, a reset).
type Conn struct {
	d      Dialer
	mu     sync.Mutex
	client *ros.Client
	nc     net.Conn
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
	if c.client == nil {
		return nil
	}
	err := c.client.Close()
	c.client, c.nc = nil, nil
	return err
}

// Run sends one command and returns its reply. The deadline is the
// earlier of ctx's and the Dialer's Timeout, and it is set on the socket:
// go-routeros ignores contexts in sync mode, so a router that stops
// answering would otherwise block forever.
func (c *Conn) Run(ctx context.Context, words ...string) (*ros.Reply, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	deadline := time.Now().Add(c.d.Timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if c.client == nil {
		if err := c.dial(ctx, deadline); err != nil {
			return nil, err
		}
	}
	if err := c.nc.SetDeadline(deadline); err != nil {
		return nil, err
	}
	reply, err := c.client.RunArgs(words)
	var dev *ros.DeviceError
	switch {
	case err == nil:
		return reply, nil
	case errors.As(err, &dev) && dev.Sentence.Word == "!trap":
		// The router refused the command; the session is fine.
		return reply, &TrapError{Command: words[0], Message: dev.Sentence.Map["message"], Category: dev.Sentence.Map["category"]}
	}
	// Anything else (timeout, !fatal, EOF) leaves the session unusable:
	// drop it, and the next command dials again.
	c.drop()
	if ctx.Err() != nil {
		return nil, fmt.Errorf("router %s: %s: %w", c.d.Address, words[0], ctx.Err())
	}
	return nil, fmt.Errorf("router %s: %s: %w", c.d.Address, words[0], err)
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
		nc = tls.Client(raw, c.tlsConfig())
	case !c.d.Insecure:
		raw.Close()
		return fmt.Errorf("router %s: no CA and no certificate fingerprint to check api-ssl against; set one, or allow plain api explicitly", c.d.Address)
	}
	nc.SetDeadline(deadline)
	client, err := ros.NewClient(nc)
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
	c.client, c.nc = client, nc
	return nil
}

// tlsConfig verifies the router by CA or by pinned fingerprint. A pin
// replaces chain verification (RouterOS certificates are self-signed) but
// is checked in full on every handshake.
func (c *Conn) tlsConfig() *tls.Config {
	host, _, _ := net.SplitHostPort(c.d.Address)
	if c.d.Fingerprint == "" {
		return &tls.Config{RootCAs: c.d.RootCAs, ServerName: host, MinVersion: tls.VersionTLS12}
	}
	want := strings.ToLower(strings.ReplaceAll(c.d.Fingerprint, ":", ""))
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, // replaced by the pin check below
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return errors.New("router sent no certificate")
			}
			sum := sha256.Sum256(raw[0])
			if got := hex.EncodeToString(sum[:]); got != want {
				return fmt.Errorf("router certificate fingerprint %s does not match the pinned %s", got, want)
			}
			return nil
		},
	}
}

// TrapError is RouterOS refusing a command (!trap).
type TrapError struct {
	Command, Message, Category string
}

func (e *TrapError) Error() string {
	return fmt.Sprintf("%s: router says: %s", e.Command, e.Message)
}

// Version asks the router which RouterOS it runs ("7.19.1 (stable)"): some
// property names and filters depend on it.
func (c *Conn) Version(ctx context.Context) (string, error) {
	reply, err := c.Run(ctx, "/system/resource/print", "=.proplist=version")
	if err != nil {
		return "", err
	}
	if len(reply.Re) != 1 || reply.Re[0].Map["version"] == "" {
		return "", fmt.Errorf("router %s: /system/resource/print gave no version", c.d.Address)
	}
	return reply.Re[0].Map["version"], nil
}
