package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"github.com/bootstrapd/bootstrapd/internal/inventory"
)

// Retire retires a node.
func (c *Client) Retire(ctx context.Context, ref string) (inventory.Node, error) {
	var out inventory.Node
	return out, c.do(ctx, http.MethodPost, "/v1/nodes/"+url.PathEscape(ref)+"/retire", nil, &out)
}

// Reinstall sends a node back to enrolled and, when asked, powers it into
// its install.
func (c *Client) Reinstall(ctx context.Context, ref string, p PowerAfter) (NodeReply, error) {
	var out NodeReply
	return out, c.do(ctx, http.MethodPost, "/v1/nodes/"+url.PathEscape(ref)+"/reinstall", p, &out)
}

// SetBootMethod changes how an installed node boots its disk.
func (c *Client) SetBootMethod(ctx context.Context, ref, method string) (inventory.Node, error) {
	var out inventory.Node
	return out, c.do(ctx, http.MethodPut, "/v1/nodes/"+url.PathEscape(ref)+"/boot-method", map[string]string{"boot_method": method}, &out)
}

// Profiles lists the loaded profiles.
func (c *Client) Profiles(ctx context.Context) ([]ProfileInfo, error) {
	var out []ProfileInfo
	return out, c.do(ctx, http.MethodGet, "/v1/profiles", nil, &out)
}

// EventQuery selects events: after Since, of one Node (MAC or hostname, or
// all when empty), and with Follow, new ones until ctx ends.
type EventQuery struct {
	Since  uint64
	Node   string
	Follow bool
}

// Events calls fn for each event in order. It returns nil when the stream
// ends (or ctx is cancelled while following), or fn's error.
func (c *Client) Events(ctx context.Context, q EventQuery, fn func(inventory.LogEvent) error) error {
	v := url.Values{"since": {strconv.FormatUint(q.Since, 10)}}
	if q.Node != "" {
		v.Set("node", q.Node)
	}
	if q.Follow {
		v.Set("follow", "1")
	}
	resp, err := c.send(ctx, http.MethodGet, "/v1/events?"+v.Encode(), nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	for {
		var e inventory.LogEvent
		if err := dec.Decode(&e); err != nil {
			if errors.Is(err, io.EOF) || ctx.Err() != nil {
				return nil
			}
			return err
		}
		if err := fn(e); err != nil {
			return err
		}
	}
}
