package daemon

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/bootstrapd/bootstrapd/internal/config"
	"github.com/bootstrapd/bootstrapd/internal/inventory"
)

// TestRouterSiteNodes: a router holds records for the named nodes on its
// network that are in service; other racks' nodes, sharing the inventory,
// are left to their own routers.
func TestRouterSiteNodes(t *testing.T) {
	site := &config.Site{Boot: &config.Boot{}, Router: &config.Router{Address: netip.MustParsePrefix("10.100.1.254/24")}}
	node := func(name, ip string, state inventory.State) inventory.Node {
		n := inventory.Node{Hostname: name, State: state}
		if ip != "" {
			n.IP = netip.MustParseAddr(ip)
		}
		return n
	}
	nodes := []inventory.Node{
		node("r1n1", "10.100.1.50", inventory.Ready),
		node("r1n2", "10.100.1.51", inventory.Installing),
		node("r2n1", "10.100.2.50", inventory.Ready), // rack 2's
		node("r1n3", "10.100.1.52", inventory.Retiring),
		node("r1n4", "10.100.1.53", inventory.Discovered),
		node("noip", "", inventory.Enrolled),
		node("", "10.100.1.54", inventory.Enrolled),
	}
	var got []string
	for _, n := range routerSite(site, netip.MustParseAddr("10.100.1.1"), nodes).Nodes {
		got = append(got, n.Hostname)
	}
	if want := []string{"r1n1", "r1n2"}; !slices.Equal(got, want) {
		t.Errorf("the router's nodes are %v, want %v", got, want)
	}
}
