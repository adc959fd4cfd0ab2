package routeros

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/bootstrapd/bootstrapd/internal/routeros/routerostest"
)

func newRouter(t *testing.T) (*routerostest.Router, Dialer) {
	t.Helper()
	r := routerostest.New(routerostest.Options{Version: "7.19", User: "bootstrapd", Password: "s3cret"})
	addr := r.ListenTLS(t)
	return r, Dialer{Address: addr, User: "bootstrapd", Password: "s3cret", Fingerprint: r.Fingerprint(), Timeout: 2 * time.Second}
}

func logins(r *routerostest.Router) int {
	n := 0
	for _, c := range r.Commands() {
		if c == "/login" {
			n++
		}
	}
	return n
}

func TestConnPinnedTLSAndTraps(t *testing.T) {
	r, d := newRouter(t)
	c := NewConn(d)
	defer c.Close()
	ctx := context.Background()
	reply, err := c.Run(ctx, "/system/identity/print")
	if err != nil || len(reply.Re) != 1 {
		t.Fatalf("identity: %v %v", reply, err)
	}
	// A refused command is a TrapError with RouterOS's message, and the
	// session survives it.
	_, err = c.Run(ctx, "/interface/vlan/add", "=name=prov", "=vlan-id=77", "=interface=ether2", "=colour=red")
	var trap *TrapError
	if !errors.As(err, &trap) || !strings.Contains(trap.Message, "unknown parameter") || trap.Command != "/interface/vlan/add" {
		t.Fatalf("unknown property: %v", err)
	}
	if _, err := c.Run(ctx, "/interface/vlan/add", "=name=prov", "=vlan-id=77", "=interface=ether2"); err != nil {
		t.Fatal(err)
	}
	if logins(r) != 1 {
		t.Errorf("%d logins: a trap should not cost the session", logins(r))
	}
}

func TestConnRefusals(t *testing.T) {
	r, d := newRouter(t)
	for _, c := range []struct {
		name string
		edit func(*Dialer)
		want string
	}{
		{"wrong pin", func(d *Dialer) { d.Fingerprint = strings.Repeat("ab", 32) }, "does not match the pinned"},
		{"no pin, no CA", func(d *Dialer) { d.Fingerprint = "" }, "no CA and no certificate fingerprint"},
		{"wrong password", func(d *Dialer) { d.Password = "nope" }, "login as bootstrapd: invalid user name or password"},
		{"plain api not allowed", func(d *Dialer) { d.Fingerprint, d.Address = "", r.Listen(t) }, "allow plain api explicitly"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dd := d
			c.edit(&dd)
			_, err := NewConn(dd).Run(context.Background(), "/system/identity/print")
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want it to say %q", err, c.want)
			}
		})
	}
	// Plain api works when asked for.
	plain := d
	plain.Fingerprint, plain.Insecure, plain.Address = "", true, r.Listen(t)
	if _, err := NewConn(plain).Run(context.Background(), "/system/identity/print"); err != nil {
		t.Errorf("plain api, insecure allowed: %v", err)
	}
}

// TestConnDeadlineHolds: a router that stops answering costs the caller
// its deadline, not forever, and the next command reconnects.
func TestConnDeadlineHolds(t *testing.T) {
	r, d := newRouter(t)
	c := NewConn(d)
	defer c.Close()
	if _, err := c.Run(context.Background(), "/system/identity/print"); err != nil {
		t.Fatal(err)
	}
	r.Hang()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Run(ctx, "/ip/address/print")
	if took := time.Since(start); err == nil || took > 400*time.Millisecond {
		t.Fatalf("hung router: %v after %v, want an error within 200ms", err, took)
	}
	r.Resume()
	if _, err := c.Run(context.Background(), "/ip/address/print"); err != nil {
		t.Fatalf("after the router came back: %v", err)
	}
	if logins(r) != 2 {
		t.Errorf("%d logins, want a redial after the timeout", logins(r))
	}
}
