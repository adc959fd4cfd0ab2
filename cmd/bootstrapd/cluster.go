package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"strings"

	"github.com/bootstrapd/bootstrapd/internal/config"
	"github.com/bootstrapd/bootstrapd/internal/daemon"
)

// cmdCluster: `cluster init` sets up what bootstrapd needs in Vault and
// Nomad. It runs where the site's tokens are (the daemon's host), not over
// the admin API: those tokens are more powerful than the API's.
func cmdCluster(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 || args[0] != "init" {
		return usageError{"usage: bootstrapd cluster init [-config site.hcl]"}
	}
	fs := flag.NewFlagSet("cluster init", flag.ContinueOnError)
	cfg := fs.String("config", "site.hcl", "site config file (its vault and nomad blocks)")
	if _, err := parse(fs, e, args[1:]); err != nil {
		return err
	}
	site, err := config.Load(*cfg)
	if err != nil {
		return err
	}
	c, err := daemon.NewCluster(site, slog.New(slog.NewTextHandler(e.stderr, nil)))
	if err != nil {
		return err
	}
	if c.Vault == nil && c.Nomad == nil {
		return fmt.Errorf("%s has no vault block and no nomad address: nothing to set up", *cfg)
	}
	var changes []string
	if c.Vault != nil {
		done, err := c.Vault.Init(ctx)
		changes = append(changes, done...)
		if err != nil {
			return fmt.Errorf("vault: %w", err)
		}
	}
	if c.Vault != nil && c.Nomad != nil && site.Nomad.WorkerVaultRole != "" {
		done, err := c.Vault.InitWorkloadIdentity(ctx, strings.TrimSuffix(site.Nomad.Address, "/")+"/.well-known/jwks.json",
			site.Nomad.WorkerVaultRole, c.Nomad.WorkerJobID())
		changes = append(changes, done...)
		if err != nil {
			return fmt.Errorf("vault: %w", err)
		}
	}
	if c.Nomad != nil {
		job, err := daemon.WorkerJob(site)
		if err != nil {
			return err
		}
		done, err := c.Nomad.Init(ctx, job)
		changes = append(changes, done...)
		if err != nil {
			return fmt.Errorf("nomad: %w", err)
		}
	}
	for _, ch := range changes {
		fmt.Fprintln(e.stdout, ch)
	}
	if len(changes) == 0 {
		fmt.Fprintln(e.stdout, "No changes: Vault and Nomad are set up.")
	}
	return nil
}
