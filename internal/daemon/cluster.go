package daemon

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/bootstrapd/bootstrapd/internal/cluster"
	"github.com/bootstrapd/bootstrapd/internal/config"
	"github.com/bootstrapd/bootstrapd/internal/inventory"
	"github.com/bootstrapd/bootstrapd/internal/profile"
	"github.com/bootstrapd/bootstrapd/internal/pxe"
)

// Cluster is the site's Vault and Nomad, as bootstrapd uses them: either
// may be nil when the site does not configure it.
type Cluster struct {
	Vault *cluster.Vault
	Nomad *cluster.Nomad
}

// NewCluster connects nothing yet; it checks the site's settings.
func NewCluster(site *config.Site, log *slog.Logger) (Cluster, error) {
	var c Cluster
	var err error
	if v := site.Vault; v != nil {
		c.Vault, err = cluster.NewVault(cluster.VaultConfig{Addr: v.Address, Token: v.Token(), CACert: v.CAFile,
			Mount: v.KVMount, Role: v.Role, WrapTTL: v.WrapTTLD}, log.With("svc", "vault"))
		if err != nil {
			return c, err
		}
	}
	if n := site.Nomad; n != nil && n.Address != "" {
		c.Nomad, err = cluster.NewNomad(cluster.NomadConfig{Addr: n.Address, Token: n.Token(), CACert: n.CAFile,
			Region: n.Region}, log.With("svc", "nomad"))
	}
	return c, err
}

// Arrange decides how nodes join and how the worker job reads Vault: from
// the Nomad servers' version where the site gives their API, else from
// the site's own vault_integration (config.Load insists on one when Vault
// is used); introduction tokens need the API.
func (c Cluster) Arrange(ctx context.Context, n *config.Nomad) (cluster.Arrangement, error) {
	if c.Nomad == nil {
		why := "no nomad address to read the servers' version from: as configured"
		if n.VaultIntegration == "" {
			why = "no nomad address: no Vault integration"
		}
		return cluster.Arrangement{VaultIntegration: n.VaultIntegration, Why: why}, nil
	}
	v, err := c.Nomad.ServerVersion(ctx)
	if err != nil {
		return cluster.Arrangement{}, err
	}
	a, err := cluster.Arrange(v, n.VaultIntegration, n.Introduction)
	if err != nil {
		return a, fmt.Errorf("nomad at %s: %w", n.Address, err)
	}
	return a, nil
}

// WorkerJob renders the site's Concourse worker job for the arrangement.
func WorkerJob(site *config.Site, a cluster.Arrangement) (string, error) {
	n := site.Nomad
	j := cluster.WorkerJob{TSAHost: n.TSAHost, TSAPublicKey: n.TSAPublicKey, VaultRole: n.WorkerVaultRole, StandIn: n.StandIn}
	if site.Vault != nil {
		j.KVMount = site.Vault.KVMount
		j.Vault = a.VaultIntegration
	}
	if n.StandInWorker != "" {
		server, err := ServerAddress(site)
		if err != nil {
			return "", err
		}
		j.StandInURL = nodeBaseURL(site, server) + pxe.StandInPath
		if j.StandInSHA256, err = fileSHA256(n.StandInWorker); err != nil {
			return "", fmt.Errorf("nomad.stand_in_worker: %w", err)
		}
	}
	return cluster.RenderWorkerJob(n.WorkerTemplate, j)
}

// fileSHA256 is the hex sha256 of the file at path: the checksum Nomad
// checks the stand-in worker against, as bootstrapd serves it now (a
// rebuilt binary needs `bootstrapd cluster init` again).
func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// introTTL bounds how long a node's introduction token is good for: from
// the join claim to the first boot from disk, which is minutes.
const introTTL = 30 * time.Minute

// clusterOps mints join credentials, moves nodes as Nomad reports them,
// and tears retiring nodes down.
type clusterOps struct {
	Cluster
	site     *config.Site
	profiles map[string]*profile.Profile
	inv      *inventory.Inventory
	router   *siteRouter // nil without a router block
	power    *Power      // nil: no power off on retire
	log      *slog.Logger
}

func (c *clusterOps) profile(n inventory.Node) profile.Nomad {
	if p := c.profiles[cmp.Or(n.Profile, c.site.DefaultProfile)]; p != nil && p.Nomad != nil {
		return *p.Nomad
	}
	return profile.Nomad{}
}

func worker(p profile.Nomad) bool { return p.Meta[cluster.WorkerMetaKey] == "true" }

// Mint implements pxe.Credentials: the worker key in Vault before the
// node can join, a wrapped node token, an introduction token, and the
// client config naming all of it.
func (c *clusterOps) Mint(ctx context.Context, n inventory.Node) (files []pxe.BundleFile, accessor string, err error) {
	p := c.profile(n)
	defer func() {
		if err != nil && accessor != "" {
			c.Discard(context.WithoutCancel(ctx), accessor)
			accessor = ""
		}
	}()
	nomad := c.site.Nomad
	if nomad == nil {
		nomad = &config.Nomad{} // a site with Vault but no Nomad: keys and tokens only
	}
	arr, err := c.Arrange(ctx, nomad)
	if err != nil {
		return nil, "", err
	}
	params := cluster.ClientParams{Name: n.Hostname, Region: nomad.Region, Datacenter: p.Datacenter,
		NodePool: p.NodePool, NodeClass: p.NodeClass, Servers: nomad.Servers, Meta: p.Meta, Worker: worker(p),
		ACL: nomad.Token() != "", RawExec: nomad.RawExec}
	if c.Vault != nil {
		if params.Worker {
			if _, err := c.Vault.PutWorkerKey(ctx, n.Hostname); err != nil {
				return nil, "", err
			}
		}
		tok, err := c.Vault.NodeToken(ctx, n.Hostname)
		if err != nil {
			return nil, "", err
		}
		accessor = tok.Accessor
		files = append(files, pxe.BundleFile{Path: "etc/bootstrapd/vault-token.wrapped", Mode: 0o600, Body: []byte(tok.Wrapped + "\n")})
		params.VaultAddr = c.site.Vault.Address
		params.VaultIntegration = arr.VaultIntegration
	}
	if arr.Introduction {
		jwt, err := c.Nomad.IntroToken(ctx, n.Hostname, introTTL)
		if err != nil {
			return nil, accessor, err
		}
		files = append(files, pxe.BundleFile{Path: cluster.DefaultDataDir[1:] + "/client/intro_token.jwt", Mode: 0o600, Body: []byte(jwt)})
	}
	if len(nomad.Servers) == 0 {
		return files, accessor, nil
	}
	hcl, err := cluster.ClientConfig(params)
	if err != nil {
		return nil, accessor, err
	}
	files = append(files, pxe.BundleFile{Path: "etc/nomad.d/20-join.hcl", Mode: 0o640, Body: hcl})
	return files, accessor, nil
}

// Discard revokes a node token minted for a bundle nobody received.
func (c *clusterOps) Discard(ctx context.Context, accessor string) {
	if c.Vault == nil || accessor == "" {
		return
	}
	if err := c.Vault.Revoke(ctx, accessor); err != nil {
		c.log.Error("cannot revoke an unused node token; revoke it by its accessor", "accessor", accessor, "err", err)
	}
}

// Void implements pxe.Credentials for a bundle claimed twice: whoever
// holds it can no longer use the node token (revoked by accessor, with the
// token the wrapped one unwraps to) or the worker key (deleted, so a
// reinstall makes a new one and the web node stops trusting the old). A
// Nomad introduction token cannot be revoked; it lapses with its short TTL.
func (c *clusterOps) Void(ctx context.Context, n inventory.Node) {
	if c.Vault == nil {
		return
	}
	if n.VaultAccessor != "" {
		if err := c.Vault.Revoke(ctx, n.VaultAccessor); err != nil {
			c.log.Error("cannot revoke the node token of a bundle claimed twice; revoke it by its accessor", "node", n.Hostname, "accessor", n.VaultAccessor, "err", err)
		}
	}
	if err := c.Vault.DeleteWorkerKey(ctx, n.Hostname); err != nil {
		c.log.Error("cannot delete the worker key of a bundle claimed twice", "node", n.Hostname, "err", err)
	}
	c.inv.Note(ctx, n.MAC, "join bundle voided: node token revoked, worker key deleted; reinstall the node", "bootstrapd")
}

// watch moves nodes as Nomad reports them: installed -> joined when the
// client registers and is ready, joined -> ready when the Concourse worker
// runs there (or at once for nodes whose profile runs no worker). Watch
// starts from a snapshot, so after a restart nodes catch up.
func (c *clusterOps) watch(ctx context.Context) error {
	err := c.Nomad.Watch(ctx, 0, func(ev cluster.NodeEvent) {
		n, err := c.inv.Find(ev.Name)
		if err != nil {
			return // not a node of ours
		}
		if n.State == inventory.Installed && ev.Joined() {
			if n, err = c.inv.Move(ctx, n.MAC, inventory.Joined, "nomad: client registered and ready", "nomad"); err != nil {
				c.log.Warn("cannot record the join", "node", ev.Name, "err", err)
				return
			}
		}
		if n.State == inventory.Joined && (ev.WorkerRunning || !worker(c.profile(n))) {
			cause := "nomad: concourse worker running"
			if !ev.WorkerRunning {
				cause = "nomad: joined (its profile runs no worker)"
			}
			if _, err := c.inv.Move(ctx, n.MAC, inventory.Ready, cause, "nomad"); err != nil {
				c.log.Warn("cannot record ready", "node", ev.Name, "err", err)
			}
		}
	})
	if ctx.Err() == nil {
		// Not worth stopping DHCP for: say so loudly and go on serving.
		c.log.Error("stopped watching Nomad: nodes will not move to joined or ready until bootstrapd restarts", "err", err)
	}
	return nil
}

// retirer tears retiring nodes down, each on its own, and retires them
// when every step is done. A failed step is recorded and retried with
// backoff; steps are idempotent, so after a restart they simply run again.
func (c *clusterOps) retirer(ctx context.Context) error {
	busy := map[string]bool{}
	done := make(chan string)
	for {
		changed := c.inv.Changed()
		for _, n := range c.inv.Nodes() {
			if n.State == inventory.Retiring && !busy[n.MAC] {
				busy[n.MAC] = true
				go func() { c.teardown(ctx, n); done <- n.MAC }()
			}
		}
		select {
		case <-ctx.Done():
			for len(busy) > 0 {
				delete(busy, <-done)
			}
			return nil
		case mac := <-done:
			delete(busy, mac)
		case <-changed:
		}
	}
}

// step is one part of a node's teardown: todo is how retire lists it while
// pending ("drain"), done how the node's history records it.
type step struct {
	todo, done string
	run        func(context.Context) error
}

func (c *clusterOps) steps(n inventory.Node) []step {
	var out []step
	if c.Nomad != nil {
		out = append(out, step{"drain", "nomad: drained", func(ctx context.Context) error {
			err := c.Nomad.Drain(ctx, n.Hostname, c.site.Nomad.DrainDeadlineD)
			if errors.Is(err, cluster.ErrNodeNotFound) {
				return nil // never joined, or purged already
			}
			return err
		}})
	}
	if c.Vault != nil {
		out = append(out, step{"delete worker key", "vault: worker key deleted", func(ctx context.Context) error { return c.Vault.DeleteWorkerKey(ctx, n.Hostname) }})
		if n.VaultAccessor != "" {
			out = append(out, step{"revoke token", "vault: node token revoked", func(ctx context.Context) error { return c.Vault.Revoke(ctx, n.VaultAccessor) }})
		}
	}
	if c.router != nil && c.router.serves(n) {
		// The router's view already leaves retiring nodes out. (A node
		// of another rack's router leaves it when that rack's instance
		// syncs it, on this retirement's event.)
		out = append(out, step{"remove router records", "router: records removed", func(ctx context.Context) error { _, _, err := c.router.Apply(ctx, false); return err }})
	}
	// Off before the purge: a node still running would register with
	// Nomad again.
	if s, ok := c.power.retireStep(n); ok {
		out = append(out, s)
	}
	if c.Nomad != nil {
		out = append(out, step{"purge", "nomad: node purged", func(ctx context.Context) error { return c.Nomad.Purge(ctx, n.Hostname) }})
	}
	return out
}

// retireSteps is what retire says is pending for a node: its steps' names.
func (c *clusterOps) retireSteps(n inventory.Node) []string {
	var out []string
	for _, s := range c.steps(n) {
		out = append(out, s.todo)
	}
	return out
}

func (c *clusterOps) teardown(ctx context.Context, n inventory.Node) {
	backoff := time.Second
	for _, s := range c.steps(n) {
		for {
			err := s.run(ctx)
			if err == nil {
				c.inv.StepDone(ctx, n.MAC, s.todo, "retire: "+s.done, "bootstrapd")
				break
			}
			if ctx.Err() != nil {
				return
			}
			c.log.Warn("retire step failed; retrying", "node", n.Hostname, "step", s.done, "err", err, "retry_in", backoff)
			c.inv.Note(ctx, n.MAC, fmt.Sprintf("retire: %s failed, retrying in %v: %v", s.done, backoff, err), "bootstrapd")
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Minute)
		}
	}
	if _, err := c.inv.FinishRetire(ctx, n.MAC, "bootstrapd"); err != nil {
		c.log.Error("cannot record the retirement", "node", n.Hostname, "err", err)
	}
}
