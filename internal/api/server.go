// Package api is the admin API the CLI talks to: HTTP+JSON, on a unix
// socket by default. The CLI uses nothing else, so anything it can do a
// script can do too.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sync"

	"github.com/bootstrapd/bootstrapd/internal/inventory"
	"github.com/bootstrapd/bootstrapd/internal/profile"
	"github.com/bootstrapd/bootstrapd/internal/store"
	"github.com/bootstrapd/bootstrapd/internal/ui"
)

// Inventory is what the API needs from the core.
type Inventory interface {
	Nodes() []inventory.Node
	Find(ref string) (inventory.Node, error)
	Enroll(ctx context.Context, req inventory.EnrollRequest) (inventory.Node, error)
	Leases() []inventory.Lease
	Events(since uint64) ([]inventory.LogEvent, <-chan struct{}, error)
	LastSeq() uint64
	Retire(ctx context.Context, ref, actor string) (inventory.Node, error)
	Reinstall(ctx context.Context, ref, actor string) (inventory.Node, error)
	SetBootMethod(ctx context.Context, ref, method, actor string) (inventory.Node, error)
	SetBMC(ctx context.Context, ref string, b *inventory.BMC, actor string) (inventory.Node, error)
}

// EnrollRequest is the body of POST /v1/nodes.
type EnrollRequest struct {
	MAC        string            `json:"mac"`
	Hostname   string            `json:"hostname,omitempty"`
	IP         string            `json:"ip,omitempty"`
	Profile    string            `json:"profile,omitempty"`
	BootMethod string            `json:"boot_method,omitempty"`
	Labels     map[string]string `json:"labels,omitempty"`
	// BMC is the node's controller, ipmi:// or redfish://; BMCCredentials
	// a reference to its credentials (file:/path, vault:mount/path), never
	// them.
	BMC            string `json:"bmc,omitempty"`
	BMCCredentials string `json:"bmc_credentials,omitempty"`
	// Power sets a one-time PXE boot and powers the node on (or cycles
	// it); nil takes the site's power_on_enroll. WoL wakes it with a
	// magic packet instead.
	Power *bool `json:"power,omitempty"`
	WoL   bool  `json:"wol,omitempty"`
}

// PowerAfter is the body of POST /v1/nodes/{ref}/reinstall: whether to
// power the node into its install (a one-time PXE boot and a power cycle),
// or wake it. Reinstall never powers a node unless asked: it may be
// running.
type PowerAfter struct {
	Power bool `json:"power,omitempty"`
	WoL   bool `json:"wol,omitempty"`
}

// Server serves the admin API.
type Server struct {
	Inv Inventory
	// Profiles are the loaded install profiles: enroll checks the name and
	// takes the profile's local-boot method as the node's default.
	Profiles map[string]*profile.Profile
	// DefaultProfile is recorded on nodes enrolled without one, so that
	// `nodes` shows what each node will install.
	DefaultProfile string
	Router         Router // nil without a router block
	// Power drives nodes' BMCs and Wake-on-LAN; nil has no power control.
	Power Power
	Log   *slog.Logger

	// Logins are the status page's login codes and sessions; nil serves no
	// status page. One set serves every listener, so a code minted over
	// the socket can be spent through the TCP listener and back.
	Logins *ui.Logins
	// Health runs doctor's router and cluster checks for GET /v1/health
	// and the status page; nil has none to run.
	Health      func(context.Context) []HealthCheck
	healthCache healthCache

	endOnce, closeOnce sync.Once
	ended              chan struct{} // closed by EndStreams; made on first use under endOnce
}

// maxBody bounds request bodies: the API takes small JSON documents only.
const maxBody = 64 << 10

// Handler returns the routes, every one with its body bounded by maxBody,
// whichever listener (socket or TCP) serves them.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/nodes", func(w http.ResponseWriter, r *http.Request) {
		reply(w, http.StatusOK, s.nodes())
	})
	mux.HandleFunc("GET /v1/nodes/{ref}", func(w http.ResponseWriter, r *http.Request) {
		n, err := s.Inv.Find(r.PathValue("ref"))
		if err != nil {
			fail(w, err)
			return
		}
		reply(w, http.StatusOK, public(n))
	})
	mux.HandleFunc("POST /v1/nodes", s.enroll)
	s.lifecycleRoutes(mux)
	s.powerRoutes(mux)
	s.routerRoutes(mux)
	s.statusRoutes(mux)
	mux.HandleFunc("GET /v1/leases", func(w http.ResponseWriter, r *http.Request) {
		reply(w, http.StatusOK, s.Inv.Leases())
	})
	// Bounded here rather than in each handler, so that a route added later
	// cannot forget it.
	return http.MaxBytesHandler(mux, maxBody)
}

func (s *Server) enroll(w http.ResponseWriter, r *http.Request) {
	var req EnrollRequest
	dec := json.NewDecoder(r.Body) // bounded by Handler
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		reply(w, http.StatusBadRequest, Error{Error: "bad request body: " + err.Error()})
		return
	}
	b, action, err := s.enrollPower(req)
	if err != nil {
		reply(w, http.StatusBadRequest, Error{Error: err.Error()})
		return
	}
	var ip netip.Addr
	if req.IP != "" {
		var err error
		if ip, err = netip.ParseAddr(req.IP); err != nil || !ip.Is4() {
			reply(w, http.StatusBadRequest, Error{Error: fmt.Sprintf("%q is not an IPv4 address", req.IP)})
			return
		}
	}
	if req.Profile == "" {
		req.Profile = s.DefaultProfile
	}
	p, err := s.profile(req.Profile)
	if err != nil {
		reply(w, http.StatusBadRequest, Error{Error: err.Error()})
		return
	}
	if req.BootMethod == "" {
		req.BootMethod = p.LocalBoot
	}
	n, err := s.Inv.Enroll(r.Context(), inventory.EnrollRequest{
		MAC: req.MAC, Hostname: req.Hostname, IP: ip, Profile: req.Profile, BootMethod: req.BootMethod, Labels: req.Labels, BMC: b, Actor: "api",
	})
	if err != nil {
		fail(w, err)
		return
	}
	reply(w, http.StatusCreated, s.powerAfter(r.Context(), n, action))
}

// TCPHandler is Handler behind the bearer token, for the TCP listener:
// every route but the status page's, which a browser reaches with a login
// link and a session cookie instead (a browser cannot send the token, and
// the token never goes in a URL).
func (s *Server) TCPHandler(token string) http.Handler {
	h := s.Handler()
	mux := http.NewServeMux()
	mux.Handle(ui.Prefix, h)
	mux.Handle("/", RequireToken(token, s.Log)(h))
	return mux
}

// nodes is every node as the API shows it.
func (s *Server) nodes() []inventory.Node {
	nodes := s.Inv.Nodes()
	for i := range nodes {
		nodes[i] = public(nodes[i])
	}
	return nodes
}

// public strips what the API never shows, even hashed.
func public(n inventory.Node) inventory.Node {
	n.TokenHash = nil
	return n
}

// Error is the body of every non-2xx reply.
type Error struct {
	Error string `json:"error"`
}

func fail(w http.ResponseWriter, err error) {
	code := http.StatusBadRequest
	switch {
	case errors.Is(err, inventory.ErrNotFound):
		code = http.StatusNotFound
	case errors.Is(err, inventory.ErrConflict):
		code = http.StatusConflict
	case errors.Is(err, store.ErrUnavailable):
		code = http.StatusServiceUnavailable
	}
	reply(w, code, Error{Error: err.Error()})
}

func reply(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// ListenUnix listens on a unix socket only its owner can use. A socket file
// left by a crashed daemon is removed; one that still answers is not.
func ListenUnix(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	if c, err := net.Dial("unix", path); err == nil {
		c.Close()
		return nil, fmt.Errorf("admin socket %s is in use: is another bootstrapd running?", path)
	}
	os.Remove(path)
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}
