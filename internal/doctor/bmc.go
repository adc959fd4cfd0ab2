package doctor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"github.com/bootstrapd/bootstrapd/internal/api"
	"github.com/bootstrapd/bootstrapd/internal/bmc"
	"github.com/bootstrapd/bootstrapd/internal/config"
	"github.com/bootstrapd/bootstrapd/internal/daemon"
	"github.com/bootstrapd/bootstrapd/internal/inventory"
)

// bmcChecks is how many BMCs are asked at once: enough that a rack is
// checked in a few timeouts, few enough not to flood a management network.
const bmcChecks = 8

// CheckBMCs logs in to the BMC of each enrolled node that has one, as the
// daemon would, and reports its power state, or what to fix. The nodes
// come from the daemon answering on the admin socket or, when none does,
// from its store.
func CheckBMCs(e *Env) []Result {
	ctx := context.Background()
	nodes, err := enrolledNodes(ctx, e)
	if err != nil {
		return []Result{{Name: "bmc", Detail: oneLine(err.Error()), Fix: "run doctor beside the daemon (it reads the nodes over the admin socket), or as the user that owns state_dir"}}
	}
	var with []inventory.Node
	for _, n := range nodes {
		if n.BMC != nil && n.State != inventory.Discovered && n.State != inventory.Retired {
			with = append(with, n)
		}
	}
	if len(with) == 0 {
		return nil
	}
	open := e.OpenBMC
	if open == nil {
		open = daemon.OpenWith(e.Site, slog.New(slog.DiscardHandler))
	}
	p, err := daemon.NewPower(ctx, e.Site, daemon.PowerConfig{Open: open})
	if err != nil {
		return []Result{{Name: "bmc", Detail: oneLine(err.Error()), Fix: "fix the site's vault block"}}
	}
	out := make([]Result, len(with))
	sem := make(chan struct{}, bmcChecks)
	var wg sync.WaitGroup
	for i, n := range with {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			out[i] = bmcResult(ctx, p, n)
		}()
	}
	wg.Wait()
	return out
}

// bmcResult is one node's line: its power state, or why the BMC could not
// tell and what to do about it.
func bmcResult(ctx context.Context, p *daemon.Power, n inventory.Node) Result {
	r := Result{Name: "bmc " + n.Hostname}
	st, answer, err := p.Check(ctx, n)
	if err == nil {
		r.OK = true
		r.Detail = fmt.Sprintf("%s: %s (%s)", n.BMC.URL, st, answer)
		return r
	}
	r.Detail = fmt.Sprintf("%s (%s), BMC %s: %s", n.Hostname, n.MAC, n.BMC.URL, oneLine(err.Error()))
	where := "the site's bmc block (user, password_file or $" + config.BMCPasswordEnv + ")"
	if n.BMC.Credentials != "" {
		where = n.BMC.Credentials
	}
	switch {
	case errors.Is(err, bmc.ErrAuth):
		r.Fix = fmt.Sprintf("check the user and password in %s against the BMC's accounts", where)
	case errors.Is(err, bmc.ErrUnreachable), errors.Is(err, bmc.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		r.Fix = fmt.Sprintf("check that this machine reaches %s (address, port, the management network's routes and firewall), or correct it with `bootstrapd node bmc %s <url>`",
			inventory.BMCHost(n.BMC.URL), n.Hostname)
	default:
		r.Fix = fmt.Sprintf("do what the message says; `bootstrapd node bmc %s <url> [-bmc-credentials REF]` changes the node's BMC", n.Hostname)
	}
	return r
}

// enrolledNodes are the nodes as the daemon on the admin socket sees them
// or, with none answering, as its store holds them (none before the first
// start).
func enrolledNodes(ctx context.Context, e *Env) ([]inventory.Node, error) {
	if e.Live != "" {
		c, err := api.NewClient("unix://"+e.Site.API.Socket, "")
		if err != nil {
			return nil, err
		}
		return c.Nodes(ctx)
	}
	if e.Site.Store == nil {
		path := filepath.Join(e.Site.StateDir, daemon.StoreFile)
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
	}
	db, err := daemon.OpenStore(ctx, e.Site, slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, err
	}
	defer db.Close()
	inv, err := inventory.Open(db, inventory.Pool{Subnet: e.Site.Subnet, Range: e.Site.Range, Lease: e.Site.Lease}, slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, err
	}
	return inv.Nodes(), nil
}
