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
	http *http.Client
	base string
}

// NewClient connects to addr: "unix:///run/bootstrapd.sock", a bare socket
// path, or "http://host:port".
func NewClient(addr string) (*Client, error) {
	if strings.HasPrefix(addr, "http://") || strings.HasPrefix(addr, "https://") {
		return &Client{http: http.DefaultClient, base: strings.TrimSuffix(addr, "/")}, nil
	}
	path := strings.TrimPrefix(addr, "unix://")
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}}
	return &Client{http: &http.Client{Transport: tr}, base: "http://bootstrapd"}, nil
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
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach bootstrapd (is `bootstrapd serve` running? set BOOTSTRAPD_ADDR to its socket): %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		var e Error
		if json.NewDecoder(io.LimitReader(resp.Body, maxBody)).Decode(&e) == nil && e.Error != "" {
			return fmt.Errorf("%s", e.Error)
		}
		return fmt.Errorf("bootstrapd: %s", resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}
