// Package daemon wires the site config to the store, the inventory and the
// listeners, and runs them until the context ends.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/bootstrapd/bootstrapd/internal/api"
	"github.com/bootstrapd/bootstrapd/internal/bmc"
	"github.com/bootstrapd/bootstrapd/internal/config"
	"github.com/bootstrapd/bootstrapd/internal/inventory"
	"github.com/bootstrapd/bootstrapd/internal/netboot"
	"github.com/bootstrapd/bootstrapd/internal/pkgcache"
	"github.com/bootstrapd/bootstrapd/internal/profile"
	"github.com/bootstrapd/bootstrapd/internal/pxe"
	"github.com/bootstrapd/bootstrapd/internal/shares"
	"github.com/bootstrapd/bootstrapd/internal/store"
	"github.com/bootstrapd/bootstrapd/internal/ui"
)

// StoreFile is the store's name inside the state directory.
const StoreFile = "bootstrapd.db"

// Options are what the daemon's caller adds to the site.
type Options struct {
	// Health runs doctor's router and cluster checks for the status page
	// and GET /v1/health. doctor builds on this package, so the caller
	// hands them in; nil serves an empty list.
	Health func(context.Context) []api.HealthCheck
	// OpenBMC logs in to a node's BMC and Wake sends Wake-on-LAN packets;
	// nil: OpenWith(site) and bmc.WakeOnLAN. Tests put fakes here.
	OpenBMC OpenBMC
	Wake    Wake
}

// Run serves site until ctx is cancelled, then closes every listener and
// the store before returning.
func Run(ctx context.Context, site *config.Site, log *slog.Logger, opts Options) error {
	profiles, err := LoadProfiles(site)
	if err != nil {
		return err
	}
	server, err := ServerAddress(site)
	if err != nil {
		return err
	}
	db, err := OpenStore(ctx, site, log)
	if err != nil {
		return err
	}
	defer db.Close()
	inv, err := inventory.Open(db, inventory.Pool{Subnet: site.Subnet, Range: site.Range, Lease: site.Lease}, log)
	if err != nil {
		return err
	}
	inv.Limits.MaxDiscovered, inv.Limits.DiscoveredTTL = site.Discovery.MaxNodes, site.Discovery.ForgetAfterD
	if site.Store != nil {
		inv.SpreadFrom(site.Store.Name)
	}
	assets, err := os.OpenRoot(site.NetbootDir)
	if err != nil {
		return fmt.Errorf("netboot directory: %w", err)
	}
	defer assets.Close()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	registerInventoryMetrics(reg, inv)

	baseURL := nodeBaseURL(site, server)
	nodes := &pxe.NodeHTTP{
		Booter: inv, Profiles: profiles, DefaultProfile: site.DefaultProfile,
		Assets: assets, Verify: netboot.NewChecker(assets), BaseURL: baseURL, Log: log.With("svc", "http"),
		Reservations: site.DHCP.Mode == config.ModeReservation || site.DHCP.Mode == config.ModePool,
	}
	if site.Nomad != nil {
		nodes.Join.NomadServers = site.Nomad.Servers
		nodes.StandInWorker = site.Nomad.StandInWorker
	}
	if site.Nodes != nil && site.Nodes.AuthorizedKeys != "" {
		if nodes.Join.AuthorizedKeys, err = os.ReadFile(site.Nodes.AuthorizedKeys); err != nil {
			return err
		}
	}
	if pc := site.PackageCache; pc != nil {
		cache, err := pkgcache.New(pkgcache.Options{Upstream: pc.Upstream, Dir: pc.Dir, MaxBytes: int64(pc.MaxGiB) << 30,
			Revalidate: pc.RevalidateD, Log: log.With("svc", "pkgcache")})
		if err != nil {
			return err
		}
		cache.Register(reg)
		nodes.Packages = cache
	}
	nodes.Register(reg)
	mux := http.NewServeMux()
	mux.Handle("/", nodes.Handler())
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))

	tftp, err := pxe.NewTFTP(site.NetbootDir, log.With("svc", "tftp"), reg)
	if err != nil {
		return err
	}
	tftp.SetBlockSize(site.TFTP.BlockSize)

	if opts.OpenBMC == nil {
		opts.OpenBMC = OpenWith(site, log.With("svc", "bmc"))
	}
	if opts.Wake == nil {
		opts.Wake = bmc.WakeOnLAN
	}
	power, err := NewPower(ctx, site, PowerConfig{Inv: inv, Open: opts.OpenBMC, Wake: opts.Wake, Server: server,
		InstallTimeout: installTimeout(site, profiles), Log: log.With("svc", "bmc")})
	if err != nil {
		return err
	}
	inv.Retrier = power
	admin := &api.Server{Inv: inv, Log: log.With("svc", "api"), DefaultProfile: site.DefaultProfile,
		Profiles: profiles, Logins: ui.NewLogins(ui.Limits{}), Health: withPowerHealth(opts.Health, power, inv), Power: power}
	var router *siteRouter
	if site.Router != nil {
		router = newSiteRouter(site, server, inv, log.With("svc", "router"))
		admin.Router = router
	}
	clus, err := NewCluster(site, log)
	if err != nil {
		return err
	}
	ops := &clusterOps{Cluster: clus, site: site, profiles: profiles, inv: inv, router: router, power: power, log: log.With("svc", "cluster")}
	if clus.Vault != nil || clus.Nomad != nil {
		nodes.Join.Cluster = ops
	}
	// With anything to undo on retire, retire waits for the teardown and
	// says which steps are pending.
	if clus.Vault != nil || clus.Nomad != nil || router != nil || site.BMC.PowerOffOnRetire {
		inv.RetireSteps = ops.retireSteps
	}

	ls, err := openListeners(site, server)
	if err != nil {
		return err
	}
	defer os.Remove(site.API.Socket)
	if ls.link != nil {
		defer ls.link.Close()
	}
	if ls.linkErr != nil {
		log.Warn("DHCP replies to clients without an address are broadcast, not sent to their MAC", "err", ls.linkErr)
	}

	g, ctx := errgroup.WithContext(ctx)
	var dhcp *pxe.DHCP
	var share *shares.Shares
	if len(ls.dhcp) > 0 {
		dhcp = &pxe.DHCP{
			Mode: site.DHCP.Mode, Leases: inv, Server: server, Subnet: site.Subnet,
			Router: parseAddrs(site.DHCP.Router), DNS: parseAddrs(site.DHCP.DNS...), Domain: site.DHCP.Domain,
			Lease: site.Lease, Log: log.With("svc", "dhcp"), Link: ls.link,
			Boot: pxe.BootFiles{BIOS: site.Boot.BIOS, EFI: site.Boot.EFI, ARM64: site.Boot.ARM64,
				ScriptURL: baseURL + "/boot.ipxe", AssetURL: baseURL + "/assets/"},
		}
		if _, ok := db.(*store.Etcd); ok && (site.DHCP.Mode == config.ModePool || site.DHCP.Mode == config.ModeReservation) {
			// Other instances may serve this segment too: answer this
			// one's share of the clients (all of them, until it learns
			// of the others).
			share = shares.New(site.Store.Name)
			dhcp.Mine = share.Mine
		}
		dhcp.Register(reg)
		for port, conn := range ls.dhcp {
			g.Go(func() error { return pxe.ServeDHCP(ctx, conn, dhcp.Handler(port), log.With("svc", "dhcp")) })
		}
	}
	// Power actions run in the background with the daemon's context; a
	// stop waits for them (each bounded by the BMC timeout, and by
	// stopGrace) so none records its outcome into a closed store.
	g.Go(func() error { <-ctx.Done(); power.Wait(); return nil })
	// What acts on the world outside (the router, Nomad, Vault, BMCs at
	// retire, deadlines) runs on one instance at a time: on this one
	// alone, or on the leader of those sharing the store; each router is
	// synced by one of the instances whose site names it.
	var leading atomic.Bool
	registerSharedMetrics(reg, db, &leading, share)
	shared, _ := db.(*store.Etcd)
	lead := func(ctx context.Context) {
		leading.Store(true)
		defer leading.Store(false)
		var lg sync.WaitGroup
		lg.Go(func() { inv.RunDeadlines(ctx) })
		if router != nil && shared == nil {
			lg.Go(func() { router.run(ctx) })
		}
		if clus.Nomad != nil {
			lg.Go(func() { ops.watch(ctx) })
		}
		if inv.RetireSteps != nil {
			lg.Go(func() { ops.retirer(ctx) })
		}
		lg.Wait()
	}
	if shared != nil {
		g.Go(func() error { shared.Lead(ctx, site.Store.Name, lead); return nil })
		if router != nil {
			g.Go(func() error { shared.LeadRouter(ctx, site.Router.API, site.Store.Name, router.run); return nil })
		}
		// Every instance is listed (doctor and store copy look), under
		// its segment: those on one segment split its clients.
		segment := "no-dhcp"
		if site.Subnet.IsValid() {
			segment = site.Subnet.Masked().String()
		}
		g.Go(func() error {
			shared.Members(ctx, segment, site.Store.Name, func(live []string) {
				if share != nil {
					share.Set(live)
					log.Info("DHCP share of the segment", "instances", strings.Join(live, ","), "buckets", share.Count())
				}
			})
			return nil
		})
	} else {
		g.Go(func() error { lead(ctx); return nil })
	}
	g.Go(func() error { return tftp.Serve(ctx, ls.tftp) })
	g.Go(func() error { return serveHTTP(ctx, pxe.LimitListener(ls.http), pxe.NodeServer(mux)) })
	g.Go(func() error { return serveHTTP(ctx, ls.api, adminServer(admin, admin.Handler())) })
	if ls.apiTCP != nil {
		g.Go(func() error { return serveHTTP(ctx, ls.apiTCP, adminServer(admin, admin.TCPHandler(site.API.Token()))) })
		log.Info("admin API on TCP, token required", "addr", ls.apiTCP.Addr().String(), "tls", site.API.Certificate() != nil)
	}

	log.Info("bootstrapd serving", "interface", site.Interface, "mode", site.DHCP.Mode, "server", server,
		"http", baseURL, "tftp", ls.tftp.LocalAddr().String(), "api", site.API.Socket, "store", db.Path(), "nodes", len(inv.Nodes()))
	err = wait(ctx, g, log)
	inv.Flush() // discovered nodes seen in the last second
	log.Info("bootstrapd stopped")
	return err
}

// stopGrace bounds how long a stop waits for work in flight. Without it, a
// server still busy (an HTTP download to a slow node, say) could hold the
// stop longer than runit's `sv down` (7 s) or a sensible systemd
// TimeoutStopSec waits before giving up or sending SIGKILL, so a routine
// stop would look like a hang or a crash. (TFTP transfers are woken and
// ended by the stop itself.)
const stopGrace = 3 * time.Second

// wait returns when every server has returned or, once ctx (the group's)
// is done, after at most stopGrace more. Run then closes the store anyway:
// whatever is still running gets errors from the closed store (so no ACK
// or reply claims a write that did not happen) and the process exits.
func wait(ctx context.Context, g *errgroup.Group, log *slog.Logger) error {
	done := make(chan error, 1)
	go func() { done <- g.Wait() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	select {
	case err := <-done:
		return err
	case <-time.After(stopGrace):
		log.Warn("stopping without waiting longer for transfers and requests in flight", "waited", stopGrace)
		// The group's cause is the first server's error, or the parent's
		// plain cancellation when this is a requested stop.
		if err := context.Cause(ctx); !errors.Is(err, context.Canceled) {
			return err
		}
		return nil
	}
}

// adminServer serves the admin API. Event streams (`events -f`, the status
// page) end when it stops rather than holding the stop for stopGrace.
func adminServer(admin *api.Server, h http.Handler) *http.Server {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	srv.RegisterOnShutdown(admin.EndStreams)
	return srv
}

func serveHTTP(ctx context.Context, l net.Listener, srv *http.Server) error {
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), stopGrace)
		defer cancel()
		srv.Shutdown(shut)
	}()
	if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	// Serve returns as soon as Shutdown starts; wait for the requests in
	// flight (an installer's report being written) before the store closes.
	<-stopped
	return nil
}

// LoadProfiles loads the profiles directory and checks the site's default.
func LoadProfiles(site *config.Site) (map[string]*profile.Profile, error) {
	profiles, err := profile.LoadDir(site.ProfilesDir)
	if err != nil {
		return nil, err
	}
	if site.DefaultProfile != "" && profiles[site.DefaultProfile] == nil {
		return nil, site.Errorf("default_profile", "default_profile %q is not in %s (have: %v)", site.DefaultProfile, site.ProfilesDir, profile.Names(profiles))
	}
	return profiles, nil
}

// ServerAddress is the address nodes reach us on: server_address if set,
// else the interface's IPv4 address (the one inside the DHCP subnet if
// there are several).
func ServerAddress(site *config.Site) (netip.Addr, error) {
	if site.Server.IsValid() {
		return site.Server, nil
	}
	ifi, err := net.InterfaceByName(site.Interface)
	if err != nil {
		return netip.Addr{}, site.Errorf("interface", "interface %q: %v (see `ip -br addr`)", site.Interface, err)
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return netip.Addr{}, err
	}
	var first netip.Addr
	for _, a := range addrs {
		p, err := netip.ParsePrefix(a.String())
		if err != nil || !p.Addr().Is4() {
			continue
		}
		if site.Subnet.IsValid() && site.Subnet.Contains(p.Addr()) {
			return p.Addr(), nil
		}
		if !first.IsValid() {
			first = p.Addr()
		}
	}
	if first.IsValid() && !site.Subnet.IsValid() {
		return first, nil
	}
	return netip.Addr{}, site.Errorf("interface", "interface %s has no IPv4 address in %s; add one or set server_address", site.Interface, site.Subnet)
}

// withHost fills in host when listen is ":port", so listeners bind to the
// provisioning address rather than every interface of a laptop.
// nodeBaseURL is how nodes reach the node HTTP server: the worker job's
// stand-in URL must agree with the one the daemon serves on.
func nodeBaseURL(site *config.Site, server netip.Addr) string {
	return "http://" + withHost(site.HTTP.Listen, server)
}

func withHost(listen string, host netip.Addr) string {
	h, port, err := net.SplitHostPort(listen)
	if err != nil || h != "" {
		return listen
	}
	return net.JoinHostPort(host.String(), port)
}

func parseAddrs(vs ...string) []netip.Addr {
	var out []netip.Addr
	for _, v := range vs {
		if a, err := netip.ParseAddr(v); err == nil {
			out = append(out, a)
		}
	}
	return out
}
