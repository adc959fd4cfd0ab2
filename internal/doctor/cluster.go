package doctor

import (
	"context"
	"log/slog"
	"time"

	"github.com/bootstrapd/bootstrapd/internal/daemon"
)

// CheckCluster asks Vault and Nomad, when the site names them, whether
// bootstrapd's tokens work there: what enrolling a node will need.
func CheckCluster(e *Env) []Result {
	if e.Site.Vault == nil && (e.Site.Nomad == nil || e.Site.Nomad.Address == "") {
		return nil
	}
	c, err := daemon.NewCluster(e.Site, slog.New(slog.DiscardHandler))
	if err != nil {
		return []Result{{Name: "cluster", Detail: oneLine(err.Error()), Fix: "fix the vault or nomad block of the site file"}}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out []Result
	if c.Vault != nil {
		r := Result{Name: "vault", OK: true, Detail: e.Site.Vault.Address + ": reachable, unsealed, token valid"}
		if err := c.Vault.Check(ctx); err != nil {
			r = Result{Name: "vault", Detail: oneLine(err.Error()),
				Fix: "check vault.address and the token (vault.token_file or VAULT_TOKEN); `bootstrapd cluster init` creates the role and policies"}
		}
		out = append(out, r)
	}
	if c.Nomad != nil {
		r := Result{Name: "nomad", OK: true}
		if err := c.Nomad.Check(ctx); err != nil {
			r = Result{Name: "nomad", Detail: oneLine(err.Error()),
				Fix: "check nomad.address and the token (nomad.token_file or NOMAD_TOKEN)"}
		} else if arr, err := c.Arrange(ctx, e.Site.Nomad); err != nil {
			r = Result{Name: "nomad", Detail: oneLine(err.Error()),
				Fix: "set nomad.vault_integration and nomad.introduction to what these servers have, or leave them unset to follow the servers' version"}
		} else if strict, err := c.Nomad.IntroductionEnforced(ctx); err == nil && strict && !arr.Introduction {
			// Every node would install, then be refused by the servers.
			r = Result{Name: "nomad", Detail: e.Site.Nomad.Address + ": the servers enforce client introduction (strict), but nodes get no introduction token",
				Fix: "remove introduction = false from the site's nomad block"}
		} else {
			r.Detail = e.Site.Nomad.Address + ": reachable, leader elected, token valid; " + arr.Why
		}
		out = append(out, r)
	}
	return out
}
