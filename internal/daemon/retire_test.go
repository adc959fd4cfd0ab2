package daemon

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/bootstrapd/bootstrapd/internal/cluster"
	"github.com/bootstrapd/bootstrapd/internal/config"
	"github.com/bootstrapd/bootstrapd/internal/inventory"
)

// TestRetireSteps: what retire says is pending is what the teardown runs,
// for each arrangement of Vault, Nomad and the router.
func TestRetireSteps(t *testing.T) {
	withToken := inventory.Node{Hostname: "n1", VaultAccessor: "acc", IP: netip.MustParseAddr("10.0.0.5")}
	rack := &siteRouter{site: &config.Site{Router: &config.Router{Address: netip.MustParsePrefix("10.0.0.1/24")}}}
	otherRack := &siteRouter{site: &config.Site{Router: &config.Router{Address: netip.MustParsePrefix("10.0.1.1/24")}}}
	cases := []struct {
		name string
		ops  clusterOps
		node inventory.Node
		want string
	}{
		{"router only", clusterOps{router: rack}, withToken, "remove router records"},
		{"another rack's router", clusterOps{router: otherRack}, withToken, ""},
		{"vault, no token minted", clusterOps{Cluster: Cluster{Vault: &cluster.Vault{}}}, inventory.Node{Hostname: "n1"}, "delete worker key"},
		{"everything", clusterOps{Cluster: Cluster{Vault: &cluster.Vault{}, Nomad: &cluster.Nomad{}}, router: rack}, withToken,
			"drain, delete worker key, revoke token, remove router records, purge"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := strings.Join(c.ops.retireSteps(c.node), ", ")
			var ran []string
			for _, s := range c.ops.steps(c.node) {
				ran = append(ran, s.todo)
			}
			if got != c.want || got != strings.Join(ran, ", ") {
				t.Errorf("pending %q, steps %q; want %q", got, ran, c.want)
			}
		})
	}
}
