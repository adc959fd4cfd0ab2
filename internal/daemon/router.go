package daemon

import (
	"context"
	"log/slog"
	"net/netip"

	"github.com/bootstrapd/bootstrapd/internal/config"
	"github.com/bootstrapd/bootstrapd/internal/inventory"
	"github.com/bootstrapd/bootstrapd/internal/routeros"
)

// RouterDialer says how to reach the site's router.
func RouterDialer(r *config.Router) routeros.Dialer {
	return routeros.Dialer{Address: r.API, User: r.User, Password: r.Password(), RootCAs: r.RootCAs,
		Fingerprint: r.Fingerprint, Insecure: r.Insecure, Timeout: r.TimeoutD}
}

// routerSite is what the router should look like for the site and its
// nodes: every node on the router's network that has a name and an address
// and is neither merely discovered nor retiring gets a DNS record (and a
// static lease when the router serves DHCP). Nodes of other racks sharing
// the inventory are their own routers' business.
func routerSite(site *config.Site, server netip.Addr, nodes []inventory.Node) routeros.Site {
	r := site.Router
	s := routeros.Site{
		Identity: r.Identity, Interface: r.Interface, VLANName: r.VLANName, VLANID: r.VLANID,
		Address: r.Address, DHCP: r.DHCP, Bootstrapd: server, Range: site.Range, BootFile: site.Boot.BIOS,
		Domain: site.DHCP.Domain, Via: r.APIAddr,
	}
	for _, p := range r.APIFromCIDR {
		s.APIFrom = append(s.APIFrom, p.String())
	}
	if b := r.Bootstrap; b != nil {
		s.Bootstrap = &routeros.Bootstrap{Interface: b.Interface, VLANID: b.VLANID, Address: b.AddressP, Operator: b.OperatorA}
	}
	for _, n := range nodes {
		switch n.State {
		case inventory.Discovered, inventory.Retiring, inventory.Retired:
			continue
		}
		if n.Hostname != "" && r.Address.Contains(n.IP) {
			s.Nodes = append(s.Nodes, routeros.Node{Hostname: n.Hostname, MAC: n.MAC, IP: n.IP})
		}
	}
	return s
}

// siteRouter is the router as the admin API and the reconciler see it:
// always planned from the site and the inventory's current nodes.
type siteRouter struct {
	r      *routeros.Router
	site   *config.Site
	server netip.Addr
	inv    *inventory.Inventory
}

func newSiteRouter(site *config.Site, server netip.Addr, inv *inventory.Inventory, log *slog.Logger) *siteRouter {
	conn := routeros.NewConn(RouterDialer(site.Router))
	return &siteRouter{r: &routeros.Router{Conn: conn, Marker: site.Router.Marker, Log: log}, site: site, server: server, inv: inv}
}

func (s *siteRouter) current() routeros.Site { return routerSite(s.site, s.server, s.inv.Nodes()) }

func (s *siteRouter) Plan(ctx context.Context, prune bool) (routeros.Plan, error) {
	return s.r.Plan(ctx, s.current(), prune)
}

func (s *siteRouter) Apply(ctx context.Context, prune bool) (routeros.Plan, int, error) {
	return s.r.Apply(ctx, s.current(), prune)
}

func (s *siteRouter) Status() routeros.Status { return s.r.Status() }

// serves says whether n is on the router's network, and so among its
// records.
func (s *siteRouter) serves(n inventory.Node) bool { return s.site.Router.Address.Contains(n.IP) }

// run syncs the router whenever the inventory records an event (Run skips
// the ones that leave the node list as it was), until ctx ends.
func (s *siteRouter) run(ctx context.Context) {
	s.r.Run(ctx, s.current, s.inv.Changed)
	s.r.Conn.Close()
}
