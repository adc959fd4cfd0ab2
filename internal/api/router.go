package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"github.com/bootstrapd/bootstrapd/internal/routeros"
)

// Router is the router the daemon keeps in line with the site and its
// nodes; nil when the site has no router block.
type Router interface {
	Plan(ctx context.Context, prune bool) (routeros.Plan, error)
	Apply(ctx context.Context, prune bool) (routeros.Plan, int, error)
	Status() routeros.Status
}

// RouterRequest is the body of POST /v1/router/plan and /v1/router/apply.
type RouterRequest struct {
	Prune bool `json:"prune"`
}

// RouterResult is a plan, and for apply how much of it was done; Error is
// set when the router refused a change or could not be reached.
type RouterResult struct {
	Plan  routeros.Plan `json:"plan"`
	Done  int           `json:"done"`
	Error string        `json:"error,omitempty"`
}

func (s *Server) routerRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/router", func(w http.ResponseWriter, r *http.Request) {
		if s.noRouter(w) {
			return
		}
		reply(w, http.StatusOK, s.Router.Status())
	})
	mux.HandleFunc("POST /v1/router/{op}", func(w http.ResponseWriter, r *http.Request) {
		if s.noRouter(w) {
			return
		}
		var req RouterRequest
		dec := json.NewDecoder(r.Body) // bounded by Handler
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil && !errors.Is(err, io.EOF) {
			reply(w, http.StatusBadRequest, Error{Error: "bad request body: " + err.Error()})
			return
		}
		var res RouterResult
		var err error
		switch r.PathValue("op") {
		case "plan":
			res.Plan, err = s.Router.Plan(r.Context(), req.Prune)
		case "apply":
			res.Plan, res.Done, err = s.Router.Apply(r.Context(), req.Prune)
		default:
			reply(w, http.StatusNotFound, Error{Error: "no such router operation; use plan or apply"})
			return
		}
		if err != nil {
			// The router's answer, not the caller's mistake.
			res.Error = err.Error()
			s.Log.Warn("router "+r.PathValue("op")+" failed", "err", err)
			reply(w, http.StatusBadGateway, res)
			return
		}
		reply(w, http.StatusOK, res)
	})
}

func (s *Server) noRouter(w http.ResponseWriter) bool {
	if s.Router != nil {
		return false
	}
	reply(w, http.StatusNotFound, Error{Error: "the site config has no router block; add one to let bootstrapd configure the router"})
	return true
}

// RouterPlan asks the daemon what applying would change.
func (c *Client) RouterPlan(ctx context.Context, prune bool) (RouterResult, error) {
	return c.router(ctx, "plan", prune)
}

// RouterApply applies the plan; a change the router refused is an error
// that says which and how to go on.
func (c *Client) RouterApply(ctx context.Context, prune bool) (RouterResult, error) {
	return c.router(ctx, "apply", prune)
}

func (c *Client) router(ctx context.Context, op string, prune bool) (RouterResult, error) {
	var res RouterResult
	return res, c.do(ctx, http.MethodPost, "/v1/router/"+op, RouterRequest{Prune: prune}, &res)
}
