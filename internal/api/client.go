package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/bootstrapd/bootstrapd/internal/inventory"
)

// Client talks to a running daemon.
type Client struct {
	http  *http.Client
	base  string
	token string // sent as a bearer token when set
}

// NewClient connects to addr: "unix:///run/bootstrapd.sock", a bare socket
// path, or "http://host:port". token is the daemon's api token; the socket
// does not need one, TCP does, so an http:// address without one is refused
// here rather than by a 401 from the daemon.
func NewClient(addr, token string) (*Client, error) {
	// The daemon trims its token file; a stray newline from the environment
	// would otherwise be an invalid header rather than a match.
	token = strings.TrimSpace(token)
	if strings.HasPrefix(addr, "http://") || strings.HasPrefix(addr, "https://") {
		if token == "" {
			return nil, fmt.Errorf("%s is the admin API over TCP, which needs a token: set BOOTSTRAPD_TOKEN to the contents of the daemon's api token_file", addr)
		}
		return &Client{http: http.DefaultClient, base: strings.TrimSuffix(addr, "/"), token: token}, nil
	}
	path := strings.TrimPrefix(addr, "unix://")
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}}
	return &Client{http: &http.Client{Transport: tr}, base: "http://bootstrapd", token: token}, nil
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

// Enroll enrolls a node.
func (c *Client) Enroll(ctx context.Context, req EnrollRequest) (inventory.Node, error) {
	var out inventory.Node
	return out, c.do(ctx, http.MethodPost, "/v1/nodes", req, &out)
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
