package api

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bootstrapd/bootstrapd/internal/inventory"
	"github.com/bootstrapd/bootstrapd/internal/inventory/inventorytest"
	"github.com/bootstrapd/bootstrapd/internal/profile"
	"github.com/bootstrapd/bootstrapd/internal/ui"
)

// serve runs the API on a unix socket over a real inventory, as the daemon
// does, and returns a client for it.
func serve(t *testing.T) (*Client, *inventory.Inventory, string) {
	t.Helper()
	s, inv := newServer(t, slog.New(slog.NewTextHandler(io.Discard, nil)))
	c, sock := listen(t, s)
	return c, inv, sock
}

// listen serves s on a unix socket until the test ends and returns a
// client for it and the socket's path.
func listen(t *testing.T, s *Server) (*Client, string) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "api.sock")
	l, err := ListenUnix(sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: s.Handler()}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	c, err := NewClient("unix://"+sock, "")
	if err != nil {
		t.Fatal(err)
	}
	return c, sock
}

// newServer is the API over a real inventory with two profiles, not yet
// listening anywhere.
func newServer(t testing.TB, log *slog.Logger) (*Server, *inventory.Inventory) {
	t.Helper()
	inv := inventorytest.New(t, log)
	s := &Server{Inv: inv, Log: log, DefaultProfile: "void-nomad", Logins: ui.NewLogins(ui.Limits{}), Profiles: map[string]*profile.Profile{
		"void-nomad": {Name: "void-nomad", Kernel: "void/vmlinuz", LocalBoot: "sanboot", Timeout: time.Hour},
		"plain":      {Name: "plain", Kernel: "vmlinuz", Timeout: time.Hour},
	}}
	return s, inv
}

func TestEnrollThroughAPI(t *testing.T) {
	c, _, sock := serve(t)
	ctx := context.Background()
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode: %v %v", fi.Mode(), err)
	}
	n, err := c.Enroll(ctx, EnrollRequest{MAC: "52-54-00-AA-BB-01"})
	if err != nil {
		t.Fatal(err)
	}
	if n.MAC != "52:54:00:aa:bb:01" || n.Profile != "void-nomad" || n.BootMethod != "sanboot" || n.Hostname != "n1" || n.IP.String() != "10.77.0.100" {
		t.Errorf("enrolled %+v, want the default profile, its local boot, n1 and the first free address", n)
	}
	n, err = c.Enroll(ctx, EnrollRequest{MAC: "52:54:00:aa:bb:02", Profile: "plain", BootMethod: "none", Hostname: "web1", IP: "10.77.0.50"})
	if err != nil || n.BootMethod != "none" || n.Hostname != "web1" || n.IP.String() != "10.77.0.50" {
		t.Errorf("explicit enroll: %+v %v", n, err)
	}
	nodes, err := c.Nodes(ctx)
	if err != nil || len(nodes) != 2 {
		t.Fatalf("nodes: %v %v", nodes, err)
	}
	got, err := c.Node(ctx, "web1")
	if err != nil || got.MAC != "52:54:00:aa:bb:02" {
		t.Errorf("node by hostname: %+v %v", got, err)
	}
}

func TestAPIRefusals(t *testing.T) {
	c, _, _ := serve(t)
	ctx := context.Background()
	if _, err := c.Enroll(ctx, EnrollRequest{MAC: "52:54:00:aa:bb:01", Hostname: "web1"}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		req  EnrollRequest
		want string
	}{
		{"bad mac", EnrollRequest{MAC: "nope"}, "not an Ethernet MAC"},
		{"duplicate mac", EnrollRequest{MAC: "52:54:00:aa:bb:01"}, "already enrolled as web1"},
		{"duplicate hostname", EnrollRequest{MAC: "52:54:00:aa:bb:02", Hostname: "web1"}, "hostname web1 is taken by 52:54:00:aa:bb:01"},
		{"bad ip", EnrollRequest{MAC: "52:54:00:aa:bb:02", IP: "10.77.0"}, "not an IPv4 address"},
		{"unknown profile", EnrollRequest{MAC: "52:54:00:aa:bb:02", Profile: "nope"}, `no profile named "nope"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := c.Enroll(ctx, tc.req); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
	if _, err := c.Node(ctx, "missing"); err == nil || !strings.Contains(err.Error(), "neither a known MAC nor a hostname") {
		t.Errorf("unknown node: %v", err)
	}
}

func TestAPIBodies(t *testing.T) {
	_, _, sock := serve(t)
	c, _ := NewClient("unix://"+sock, "")
	post := func(body string) (int, string) {
		req, _ := http.NewRequest(http.MethodPost, c.base+"/v1/nodes", strings.NewReader(body))
		resp, err := c.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, tc := range []struct {
		name, body string
		code       int
	}{
		{"not json", "mac=52:54:00:aa:bb:01", 400},
		{"unknown field", `{"mac":"52:54:00:aa:bb:01","colour":"red"}`, 400},
		{"too big", `{"mac":"` + strings.Repeat("a", maxBody) + `"}`, 400},
		{"ok", `{"mac":"52:54:00:aa:bb:01"}`, 201},
	} {
		if code, body := post(tc.body); code != tc.code {
			t.Errorf("%s: %d %s, want %d", tc.name, code, body, tc.code)
		}
	}
	// The token hash never leaves the daemon, even over the API.
	code, body := post(`{"mac":"52:54:00:aa:bb:02"}`)
	if code != 201 || strings.Contains(body, "token") {
		t.Errorf("enroll reply %d %s", code, body)
	}
}

func TestSecondDaemonRefusedSocket(t *testing.T) {
	_, _, sock := serve(t)
	if _, err := ListenUnix(sock); err == nil || !strings.Contains(err.Error(), "is in use") {
		t.Fatalf("second listener on a live socket: %v", err)
	}
}

func TestSetBootMethod(t *testing.T) {
	c, inv, _ := serve(t)
	ctx := context.Background()
	if _, err := c.Enroll(ctx, EnrollRequest{MAC: "52:54:00:aa:bb:01", Hostname: "web1"}); err != nil {
		t.Fatal(err)
	}
	inv.Seen(ctx, "52:54:00:aa:bb:09", "")
	inv.Flush()
	for _, tc := range []struct {
		name, ref, method string
		want              string // error text; "" for success
	}{
		{"change", "web1", "exit", ""},
		{"again", "52:54:00:aa:bb:01", "exit", ""},
		{"unknown method", "web1", "pxe", `boot method "pxe" is not one of exit, sanboot, none`},
		{"empty method", "web1", "", `boot method "" is not one of`},
		{"unknown node", "web9", "exit", "neither a known MAC nor a hostname"},
		{"discovered node", "52:54:00:aa:bb:09", "exit", "is discovered; enroll it first"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, err := c.SetBootMethod(ctx, tc.ref, tc.method)
			switch {
			case tc.want == "" && (err != nil || n.BootMethod != tc.method):
				t.Errorf("%+v %v", n, err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
	// One event for the change, none for setting what is already set.
	n, _ := c.Node(ctx, "web1")
	var changes []string
	for _, ev := range n.History {
		if strings.HasPrefix(ev.Cause, "boot method") {
			changes = append(changes, ev.Cause)
		}
	}
	if len(changes) != 1 || changes[0] != "boot method exit (was sanboot)" {
		t.Errorf("boot method events: %q", changes)
	}
}
