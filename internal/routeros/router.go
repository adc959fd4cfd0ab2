package routeros

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"
)

// Router is bootstrapd's handle on one router: it plans and applies the
// site, one run at a time, whether the operator asked (`router apply`) or
// the inventory changed (a node enrolled or retired).
type Router struct {
	Conn   *Conn
	Marker string
	Log    *slog.Logger

	mu     sync.Mutex // one plan or apply at a time
	status Status
	nodes  []Node // as of the last successful apply, whoever asked for it
	synced bool
}

// upToDate reports whether the last successful apply was for these nodes.
func (r *Router) upToDate(nodes []Node) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.synced && slices.Equal(nodes, r.nodes)
}

// Status is how the last sync went, for `doctor` and the logs.
type Status struct {
	LastOK    time.Time `json:"last_ok,omitzero"`
	LastError string    `json:"last_error,omitempty"`
	Failures  int       `json:"failures"` // in a row
	Changes   int       `json:"changes"`  // written by the last successful sync
}

// Status returns how the last sync went.
func (r *Router) Status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.status
}

// Plan is what Apply would do for the site.
func (r *Router) Plan(ctx context.Context, s Site, prune bool) (Plan, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.plan(ctx, s, prune)
}

func (r *Router) plan(ctx context.Context, s Site, prune bool) (Plan, error) {
	// The version decides property names; it is the session's. A redial
	// while the menus are read may land on a router that rebooted into
	// another release meanwhile: then plan again, once, on the new one.
	var plan Plan
	for attempt := 0; attempt < 2; attempt++ {
		info, err := r.Conn.info(ctx)
		if err != nil {
			return Plan{}, err
		}
		p := &Planner{Conn: r.Conn, Marker: r.Marker, Prune: prune, Version: info.version}
		plan, err = p.Plan(ctx, Desired(s, info.version))
		if err != nil {
			return Plan{}, err
		}
		if c, ok := lockout(plan, info.local); ok {
			plan.Conflicts = append(plan.Conflicts, c)
		}
		if r.Conn.login() == info.login {
			break
		}
	}
	if s.BootstrapInUse() {
		plan.Notes = append(plan.Notes, fmt.Sprintf(
			"the bootstrap address %s stays: bootstrapd reaches the router through it; set the router's api address to its provisioning address %s and apply again to remove it",
			s.Bootstrap.Address, s.Address.Addr()))
	}
	return plan, nil
}

// lockout finds a change to the api-ssl service's allowed addresses that
// leaves out local, the address bootstrapd's session comes from: applying
// it would shut bootstrapd out of the router it manages.
func lockout(plan Plan, local netip.Addr) (Conflict, bool) {
	for _, c := range plan.Changes {
		if c.Path != "/ip/service" || c.Object != "name=api-ssl" {
			continue
		}
		for _, prop := range []string{"address", "available-from"} {
			list, ok := c.Props[prop]
			if !ok || allows(list, local) {
				continue
			}
			host := netip.PrefixFrom(local, local.BitLen())
			return Conflict{Path: c.Path, Object: c.Object, ID: c.ID, Hint: fmt.Sprintf(
				"api_from (%s) leaves out %s, the address bootstrapd reaches the router from: applying it would lock bootstrapd out; add %s to api_from",
				list, local, host)}, true
		}
	}
	return Conflict{}, false
}

// allows reports whether a RouterOS address list ("10.0.0.0/24,192.0.2.1")
// admits addr. An empty list admits everyone, as on RouterOS.
func allows(list string, addr netip.Addr) bool {
	if strings.TrimSpace(list) == "" {
		return true
	}
	if !addr.IsValid() {
		return false
	}
	for _, item := range strings.Split(list, ",") {
		item = strings.TrimSpace(item)
		if p, err := netip.ParsePrefix(item); err == nil && p.Contains(addr) {
			return true
		}
		if a, err := netip.ParseAddr(item); err == nil && a.Unmap() == addr {
			return true
		}
	}
	return false
}

// Apply plans and applies the site; the plan is returned with how many of
// its changes were made.
func (r *Router) Apply(ctx context.Context, s Site, prune bool) (Plan, int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	plan, err := r.plan(ctx, s, prune)
	if err != nil {
		return Plan{}, 0, r.failed(err)
	}
	p := &Planner{Conn: r.Conn, Marker: r.Marker}
	n, err := p.Apply(ctx, plan)
	if err != nil {
		return plan, n, r.failed(err)
	}
	r.status = Status{LastOK: time.Now(), Changes: n}
	r.nodes, r.synced = s.Nodes, true
	return plan, n, nil
}

func (r *Router) failed(err error) error {
	r.status.LastError = err.Error()
	r.status.Failures++
	return err
}

// Backoff bounds for Run. A router that is away for a while is asked about
// every few minutes, not hammered.
const (
	minBackoff = time.Second
	maxBackoff = 5 * time.Minute
	resync     = 10 * time.Minute // repairs drift nobody told us about
)

// Run keeps the router in line with site() until ctx ends: at start, when
// the channel changed() returned is closed (it is asked again each time),
// and every resync. A failure is logged and
// retried with backoff; it never blocks the caller, so DHCP and TFTP go on
// serving while the router is away.
func (r *Router) Run(ctx context.Context, site func() Site, changed func() <-chan struct{}) {
	backoff := minBackoff
	timer := time.NewTimer(0)
	defer timer.Stop()
	wait := changed()
	for {
		select {
		case <-ctx.Done():
			return
		case <-wait:
			wait = changed()
			// While failing, the retry already scheduled picks the change
			// up; a burst of events must not turn backoff into a hammer.
			// An apply for these nodes may have been made meanwhile (by
			// `router apply`, or retire's teardown).
			if backoff > minBackoff || r.upToDate(site().Nodes) {
				continue
			}
			timer.Reset(0)
			continue
		case <-timer.C:
		}
		s := site()
		plan, n, err := r.Apply(ctx, s, false)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			wait := backoff/2 + rand.N(backoff/2+1) // jittered, so routers of several sites don't sync in step
			r.Log.Warn("router sync failed; retrying", "err", err, "retry_in", wait.Round(time.Second), "conflicts", len(plan.Conflicts))
			timer.Reset(wait)
			backoff = min(2*backoff, maxBackoff)
			continue
		}
		if n > 0 {
			r.Log.Info("router synced", "changes", n, "nodes", len(s.Nodes))
		}
		backoff = minBackoff
		timer.Reset(resync)
	}
}
