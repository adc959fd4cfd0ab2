package api

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"

	"github.com/bootstrapd/bootstrapd/internal/inventory"
	"github.com/bootstrapd/bootstrapd/internal/ui"
)

// Client talks to a running daemon.
type Client struct {
	http   *http.Client
	base   string
	token  string // sent as a bearer token when set
	socket bool   // reached through the unix socket, not over TCP
}

// NewClient connects to addr: "unix:///run/bootstrapd.sock", a bare socket
// path, or "http://host:port". token is the daemon's api token; the socket
// does not need one, TCP does, so an http:// address without one is refused
// here rather than by a 401 from the daemon.
func NewClient(addr, token string) (*Client, error) {
	return ClientConfig{Addr: addr, Token: token}.Client()
}

// ClientConfig is how the CLI reaches the daemon, from BOOTSTRAPD_ADDR,
// BOOTSTRAPD_TOKEN and BOOTSTRAPD_CACERT.
type ClientConfig struct {
	Addr  string
	Token string
	// CACert is a PEM file of the certificates that sign an https://
	// daemon's (its own, when self-signed), like NOMAD_CACERT; without it
	// the system's roots are trusted.
	CACert string
}

// Client connects as NewClient does, trusting CACert for https://.
func (cfg ClientConfig) Client() (*Client, error) {
	// The daemon trims its token file; a stray newline from the environment
	// would otherwise be an invalid header rather than a match.
	token := strings.TrimSpace(cfg.Token)
	addr := cfg.Addr
	if strings.HasPrefix(addr, "http://") || strings.HasPrefix(addr, "https://") {
		if token == "" {
			return nil, fmt.Errorf("%s is the admin API over TCP, which needs a token: set BOOTSTRAPD_TOKEN to the contents of the daemon's api token_file", addr)
		}
		hc := http.DefaultClient
		if cfg.CACert != "" {
			if !strings.HasPrefix(addr, "https://") {
				return nil, fmt.Errorf("BOOTSTRAPD_CACERT is set but %s is not https://: use https:// when the daemon's api block has tls_cert_file, or unset BOOTSTRAPD_CACERT", addr)
			}
			pool, err := caPool(cfg.CACert)
			if err != nil {
				return nil, err
			}
			tr := http.DefaultTransport.(*http.Transport).Clone()
			tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
			hc = &http.Client{Transport: tr}
		}
		return &Client{http: hc, base: strings.TrimSuffix(addr, "/"), token: token}, nil
	}
	path := strings.TrimPrefix(addr, "unix://")
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}}
	return &Client{http: &http.Client{Transport: tr}, base: "http://bootstrapd", token: token, socket: true}, nil
}

// caPool reads BOOTSTRAPD_CACERT's PEM file.
func caPool(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("BOOTSTRAPD_CACERT: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("BOOTSTRAPD_CACERT %s holds no PEM certificate: point it at the daemon's tls_cert_file (or the CA that signed it)", path)
	}
	return pool, nil
}

// Nodes lists every node.
func (c *Client) Nodes(ctx context.Context) ([]inventory.Node, error) {
	var out []inventory.Node
	return out, c.do(ctx, http.MethodGet, "/v1/nodes", nil, &out)
}

// Node shows one node by MAC or hostname.
func (c *Client) Node(ctx context.Context, ref string) (inventory.Node, error) {
	var out inventory.Node
	return out, c.do(ctx, http.MethodGet, "/v1/nodes/"+url.PathEscape(ref), nil, &out)
}

// Leases lists the lease table.
func (c *Client) Leases(ctx context.Context) ([]inventory.Lease, error) {
	var out []inventory.Lease
	return out, c.do(ctx, http.MethodGet, "/v1/leases", nil, &out)
}

// Enroll enrolls a node and, when asked, powers it into its install.
func (c *Client) Enroll(ctx context.Context, req EnrollRequest) (NodeReply, error) {
	var out NodeReply
	return out, c.do(ctx, http.MethodPost, "/v1/nodes", req, &out)
}

// Health is the router's and the cluster's health as doctor checks it,
// from the daemon's short-lived cache.
func (c *Client) Health(ctx context.Context) (HealthReport, error) {
	var out HealthReport
	return out, c.do(ctx, http.MethodGet, "/v1/health", nil, &out)
}

// LoginCode mints a one-time login code for the status page.
func (c *Client) LoginCode(ctx context.Context) (LoginCode, error) {
	var out LoginCode
	return out, c.do(ctx, http.MethodPost, "/v1/ui/codes", nil, &out)
}

// Socket reports whether the client reaches the daemon through its unix
// socket, which a browser cannot: `bootstrapd ui` then serves a proxy.
func (c *Client) Socket() bool { return c.socket }

// URL is the daemon's address for path, as a browser would open it when
// the client talks TCP.
func (c *Client) URL(path string) string { return c.base + path }

// StatusProxy forwards the status page (ui.Prefix, nothing else) to the
// daemon over the client's connection. It never adds the bearer token: the
// page logs in with its own link, and on the socket it is the page's
// session, not the proxy, that keeps out other users of this machine.
func (c *Client) StatusProxy(log *slog.Logger) http.Handler {
	target, _ := url.Parse(c.base) // c.base is built by Client
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
		},
		Transport: c.http.Transport,
		// The default handler logs the request URL, which holds a login
		// code on /ui/login.
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			log.Error("status page proxy: cannot reach bootstrapd", "path", r.URL.Path, "err", err)
			http.Error(w, "bootstrapd is not answering on its admin socket: is `bootstrapd serve` running?", http.StatusBadGateway)
		},
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, ui.Prefix) {
			http.NotFound(w, r)
			return
		}
		rp.ServeHTTP(w, r)
	})
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	resp, err := c.send(ctx, method, path, in)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(out)
}

// send makes a request and turns an error reply into an error; the caller
// reads and closes the body of a successful one.
func (c *Client) send(ctx context.Context, method, path string, in any) (*http.Response, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach bootstrapd (is `bootstrapd serve` running? set BOOTSTRAPD_ADDR to its socket): %w", err)
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		var e Error
		if json.NewDecoder(io.LimitReader(resp.Body, maxBody)).Decode(&e) == nil && e.Error != "" {
			return nil, fmt.Errorf("%s", e.Error)
		}
		return nil, fmt.Errorf("bootstrapd: %s", resp.Status)
	}
	return resp, nil
}
