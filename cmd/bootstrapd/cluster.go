package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/bootstrapd/bootstrapd/internal/cluster"
	"github.com/bootstrapd/bootstrapd/internal/config"
	"github.com/bootstrapd/bootstrapd/internal/daemon"
)

// cluster init sets up what bootstrapd needs in Vault and Nomad; cluster
// server-token mints the Nomad servers' Vault token for the token
// integration. Both run where the site's tokens are (the daemon's host),
// not over the admin API: those tokens are more powerful than the API's.

func loadCluster(e *env, cfg string) (*config.Site, daemon.Cluster, error) {
	site, err := config.Load(cfg)
	if err != nil {
		return nil, daemon.Cluster{}, err
	}
	c, err := daemon.NewCluster(site, slog.New(slog.NewTextHandler(e.stderr, nil)))
	return site, c, err
}

func clusterInitCmd(fs *flag.FlagSet, e *env) action {
	cfg := configFlag(fs, "site config file (its vault and nomad blocks)")
	return func(ctx context.Context, _ []string) error { return clusterInit(ctx, e, *cfg) }
}

func clusterInit(ctx context.Context, e *env, cfg string) error {
	site, c, err := loadCluster(e, cfg)
	if err != nil {
		return err
	}
	if c.Vault == nil && c.Nomad == nil {
		return fmt.Errorf("%s has no vault block and no nomad address: nothing to set up", cfg)
	}
	var arr cluster.Arrangement
	if site.Nomad != nil {
		if arr, err = c.Arrange(ctx, site.Nomad); err != nil {
			return err
		}
		fmt.Fprintln(e.stderr, arr.Why)
	}
	var changes []string
	if c.Vault != nil {
		done, err := c.Vault.Init(ctx)
		changes = append(changes, done...)
		if err != nil {
			return fmt.Errorf("vault: %w", err)
		}
	}
	if c.Vault != nil && c.Nomad != nil {
		var done []string
		switch arr.VaultIntegration {
		case cluster.VaultToken:
			done, err = c.Vault.InitTokenIntegration(ctx)
		case cluster.VaultWorkloadIdentity:
			done, err = c.Vault.InitWorkloadIdentity(ctx, strings.TrimSuffix(site.Nomad.Address, "/")+"/.well-known/jwks.json",
				site.Nomad.WorkerVaultRole, c.Nomad.WorkerJobID())
		}
		changes = append(changes, done...)
		if err != nil {
			return fmt.Errorf("vault: %w", err)
		}
	}
	if c.Nomad != nil {
		job, err := daemon.WorkerJob(site, arr)
		if err != nil {
			return err
		}
		done, err := c.Nomad.Init(ctx, job)
		changes = append(changes, done...)
		if err != nil {
			if arr.VaultIntegration == cluster.VaultToken && strings.Contains(err.Error(), "Vault not enabled") {
				return fmt.Errorf("nomad: %w\nthe servers have no Vault integration yet: `bootstrapd cluster server-token FILE`, then give them vault { enabled = true, address = %q, create_from_role = %q } and VAULT_TOKEN from FILE (README: Vault, Nomad and Concourse)",
					err, site.Vault.Address, cluster.NomadClusterRole)
			}
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

func clusterServerTokenCmd(fs *flag.FlagSet, e *env) action {
	cfg := configFlag(fs, "site config file (its vault block)")
	return func(ctx context.Context, args []string) error { return clusterServerToken(ctx, e, *cfg, args[0]) }
}

// clusterServerToken sets up the Vault side of the token integration and
// mints the servers' token into a new 0600 file: never to stdout, where it
// would end up in a terminal's scrollback or a CI log.
func clusterServerToken(ctx context.Context, e *env, cfg, file string) error {
	_, c, err := loadCluster(e, cfg)
	if err != nil {
		return err
	}
	if c.Vault == nil {
		return fmt.Errorf("%s has no vault block: the servers' token comes from Vault", cfg)
	}
	// O_EXCL: a second run must not silently replace a token the servers use.
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return fmt.Errorf("%s exists: the servers may be using that token; remove the file to mint another", file)
	}
	if err != nil {
		return err
	}
	ok := false
	defer func() {
		if !ok {
			os.Remove(file)
		}
	}()
	changes, err := c.Vault.InitTokenIntegration(ctx)
	if err != nil {
		f.Close()
		return fmt.Errorf("vault: %w", err)
	}
	for _, ch := range changes {
		fmt.Fprintln(e.stdout, ch)
	}
	token, accessor, err := c.Vault.NomadServerToken(ctx)
	if err != nil {
		f.Close()
		return fmt.Errorf("vault: %w", err)
	}
	if _, err := f.WriteString(token + "\n"); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	ok = true
	fmt.Fprintf(e.stdout, "wrote the Nomad servers' Vault token to %s (accessor %s): give it to each server as VAULT_TOKEN, with vault { enabled = true, create_from_role = %q }\n",
		file, accessor, cluster.NomadClusterRole)
	return nil
}
