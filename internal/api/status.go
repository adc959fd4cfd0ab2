package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/bootstrapd/bootstrapd/internal/inventory"
	"github.com/bootstrapd/bootstrapd/internal/ui"
)

// HealthCheck is one line of doctor's report; doctor.Result is this type.
// It is defined here because doctor builds on the daemon, which builds on
// this package, so the daemon's caller hands the checks in (Server.Health).
type HealthCheck struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
	Fix    string `json:"fix,omitempty"` // set when !OK
}

// HealthReport is the body of GET /v1/health.
type HealthReport struct {
	OK        bool          `json:"ok"`
	CheckedAt time.Time     `json:"checked_at"`
	Checks    []HealthCheck `json:"checks"`
}

// healthTTL is how long a health report is served from memory: the page
// asks every few seconds, and each check logs in to the router and asks
// Vault and Nomad, which an open browser tab must not do in a loop.
const healthTTL = 5 * time.Second

// healthTimeout bounds one run of the checks; each check has its own
// shorter timeout, this only keeps a stuck one from holding the cache.
const healthTimeout = 30 * time.Second

// healthCache runs the checks at most once per healthTTL, and once at a
// time: callers that arrive while a run is under way wait for its result
// instead of starting another.
type healthCache struct {
	mu      sync.Mutex
	last    HealthReport
	running chan struct{} // closed when the run under way ends; nil when none is
}

func (c *healthCache) get(ctx context.Context, run func(context.Context) []HealthCheck) (HealthReport, error) {
	c.mu.Lock()
	if !c.last.CheckedAt.IsZero() && time.Since(c.last.CheckedAt) < healthTTL {
		r := c.last
		c.mu.Unlock()
		return r, nil
	}
	if c.running == nil {
		done := make(chan struct{})
		c.running = done
		// Not the request's context: one impatient client going away
		// must not cancel the run that others are waiting for.
		go func() {
			rctx, cancel := context.WithTimeout(context.Background(), healthTimeout)
			defer cancel()
			checks := run(rctx)
			rep := HealthReport{OK: true, CheckedAt: time.Now(), Checks: checks}
			if rep.Checks == nil {
				rep.Checks = []HealthCheck{}
			}
			for _, ch := range checks {
				rep.OK = rep.OK && ch.OK
			}
			c.mu.Lock()
			c.last, c.running = rep, nil
			c.mu.Unlock()
			close(done)
		}()
	}
	wait := c.running
	c.mu.Unlock()
	select {
	case <-wait:
	case <-ctx.Done():
		return HealthReport{}, ctx.Err()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last, nil
}

func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	run := s.Health
	if run == nil {
		run = func(context.Context) []HealthCheck { return nil }
	}
	rep, err := s.healthCache.get(r.Context(), run)
	if err != nil {
		return // the client went away
	}
	reply(w, http.StatusOK, rep)
}

// LoginCode is the body of POST /v1/ui/codes: a one-time code for the
// status page and the path that spends it.
type LoginCode struct {
	Code    string    `json:"code"`
	Path    string    `json:"path"`
	Expires time.Time `json:"expires"`
}

// statusRoutes adds the status page: the admin route that mints login
// codes, and everything under ui.Prefix, which checks its own sessions.
func (s *Server) statusRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/health", s.health)
	if s.Logins == nil {
		return
	}
	mux.HandleFunc("POST /v1/ui/codes", func(w http.ResponseWriter, r *http.Request) {
		code, exp, err := s.Logins.NewCode()
		if err != nil {
			reply(w, http.StatusInternalServerError, Error{Error: "mint a login code: " + err.Error()})
			return
		}
		// The code itself is never logged: until it is spent it is as good
		// as a session.
		s.Log.Info("status page login code minted", "expires", exp.Format(time.RFC3339))
		reply(w, http.StatusCreated, LoginCode{Code: code, Path: ui.LoginPath + "?code=" + code, Expires: exp})
	})
	// The page's data: read-only, so a session (which a browser carries
	// without being asked) can do no more than look.
	data := http.NewServeMux()
	data.HandleFunc("GET "+ui.DataPrefix+"nodes", func(w http.ResponseWriter, r *http.Request) {
		// The number first: an event after it and before the read is sent
		// again on the stream, which is harmless; one missed would not be.
		seq := s.Inv.LastSeq()
		reply(w, http.StatusOK, Snapshot{Seq: seq, Nodes: s.nodes()})
	})
	data.HandleFunc("GET "+ui.DataPrefix+"health", s.health)
	data.HandleFunc("GET "+ui.DataPrefix+"events", s.eventSource)
	page := &ui.Page{Logins: s.Logins, Data: data, Log: s.Log}
	mux.Handle(ui.Prefix, page.Handler())
}

// Snapshot is every node and the number of the last event they reflect:
// the status page follows the event stream from there.
type Snapshot struct {
	Seq   uint64           `json:"seq"`
	Nodes []inventory.Node `json:"nodes"`
}

// sseKeepAlive is how often an idle event stream sends a comment, so that
// a browser whose machine went to sleep is noticed and its request ends.
const sseKeepAlive = 25 * time.Second

// eventSource streams the event log as server-sent events from ?since=N
// (or the Last-Event-ID a reconnecting browser sends), each with its
// number as its id, until the client goes away: the same log, read the
// same way, as `bootstrapd events -f` follows.
func (s *Server) eventSource(w http.ResponseWriter, r *http.Request) {
	from := r.Header.Get("Last-Event-ID")
	if from == "" {
		from = r.URL.Query().Get("since")
	}
	since, err := strconv.ParseUint(from, 10, 64)
	if from != "" && err != nil {
		reply(w, http.StatusBadRequest, Error{Error: "since must be an event number"})
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	// Buffering proxies hold events back without this.
	w.Header().Set("X-Accel-Buffering", "no")
	rc := http.NewResponseController(w)
	keep := time.NewTicker(sseKeepAlive)
	defer keep.Stop()
	s.follow(r.Context(), since, keep.C, func(e inventory.LogEvent) error {
		b, err := json.Marshal(e)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "id: %d\nevent: node\ndata: %s\n\n", e.Seq, b)
		return err
	}, func(idle bool) error {
		if idle {
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil {
				return err
			}
		}
		return rc.Flush()
	})
}

// EndStreams ends every event stream being followed, and those started
// after: the daemon calls it when it stops (http.Server.RegisterOnShutdown),
// since a browser's stream never ends by itself and would hold the stop
// for its whole grace period.
// Both admin listeners call it; the first call ends them all.
func (s *Server) EndStreams() {
	ch := s.endCh()
	s.closeOnce.Do(func() { close(ch) })
}

func (s *Server) endCh() chan struct{} {
	s.endOnce.Do(func() { s.ended = make(chan struct{}) })
	return s.ended
}

// follow calls emit for every event after since, then flush, then waits
// for more until ctx ends; a tick from keep calls flush(true) so an idle
// stream can say it is alive. An error from either ends it.
func (s *Server) follow(ctx context.Context, since uint64, keep <-chan time.Time, emit func(inventory.LogEvent) error, flush func(idle bool) error) {
	ended := s.endCh()
	for {
		evs, more, err := s.Inv.Events(since)
		if err != nil {
			s.Log.Error("read events", "err", err)
			return
		}
		for _, e := range evs {
			since = e.Seq
			if emit(e) != nil {
				return
			}
		}
		if flush(false) != nil {
			return
		}
		for idle := true; idle; {
			select {
			case <-more:
				idle = false
			case <-keep:
				if flush(true) != nil {
					return
				}
			case <-ctx.Done():
				return
			case <-ended:
				return
			}
		}
	}
}
