package routeros

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/bootstrapd/bootstrapd/internal/routeros/routerostest"
)

func TestAtLeast(t *testing.T) {
	for _, c := range []struct {
		v    string
		want bool
	}{
		{"7.19", true}, {"7.19.1", true}, {"7.20beta2", true}, {"7.18.2", false},
		{"6.49.10 (long-term)", false}, {"8.0", true}, {"7.24 (stable)", true},
	} {
		if got := AtLeast(c.v, 7, 19); got != c.want {
			t.Errorf("AtLeast(%q, 7, 19) = %v", c.v, got)
		}
	}
}

func site(nodes int, dhcp string) Site {
	s := Site{Interface: "ether2", VLANName: "prov", VLANID: 77, Address: netip.MustParsePrefix("10.77.0.1/24"),
		DHCP: dhcp, Bootstrapd: netip.MustParseAddr("10.77.0.2"), BootFile: "undionly.kpxe", Domain: "lab.example",
		Range: [2]netip.Addr{netip.MustParseAddr("10.77.0.100"), netip.MustParseAddr("10.77.0.199")}, APIFrom: []string{"10.77.0.2/32"}}
	if nodes > 0 {
		s.Address = netip.MustParsePrefix("10.64.0.1/10")
		s.Range = [2]netip.Addr{netip.MustParseAddr("10.64.0.10"), netip.MustParseAddr("10.127.0.0")}
	}
	for i := range nodes {
		s.Nodes = append(s.Nodes, Node{Hostname: fmt.Sprintf("n%d", i+1), MAC: fmt.Sprintf("52:54:00:00:%02x:%02x", i>>8, i&0xff),
			IP: netip.AddrFrom4([4]byte{10, 65, byte(i >> 8), byte(i)})})
	}
	return s
}

// TestDesiredConvergesPerVersion: each DHCP arrangement applies cleanly on
// RouterOS 6 and 7 and a second plan is empty; on 7.24 the api service is
// restricted with available-from, before with address.
func TestDesiredConvergesPerVersion(t *testing.T) {
	for _, version := range []string{"6.49", "7.19", "7.24"} {
		for _, dhcp := range []string{"bootstrapd", "relay", "router"} {
			t.Run(version+"/"+dhcp, func(t *testing.T) {
				r := routerostest.New(routerostest.Options{Version: version, User: "b", Password: "p"})
				p := &Planner{Conn: NewConn(Dialer{Address: r.ListenTLS(t), User: "b", Password: "p", Fingerprint: r.Fingerprint()}),
					Marker: marker, Prune: true, Version: version}
				s := site(0, dhcp)
				s.Nodes = []Node{{Hostname: "n1", MAC: "52:54:00:aa:bb:01", IP: netip.MustParseAddr("10.77.0.101")}}
				ctx := context.Background()
				plan, err := p.Plan(ctx, Desired(s, version))
				if err != nil || len(plan.Conflicts) != 0 {
					t.Fatalf("plan: %+v %v", plan, err)
				}
				if _, err := p.Apply(ctx, plan); err != nil {
					t.Fatal(err)
				}
				if again, err := p.Plan(ctx, Desired(s, version)); err != nil || len(again.Changes) != 0 {
					t.Fatalf("second plan: %v %v", again.Changes, err)
				}
				prop := "address"
				if version == "7.24" {
					prop = "available-from"
				}
				for _, row := range r.Rows("/ip/service") {
					// 7.19+ also lists each connection as a dynamic row.
					if row["name"] == "api-ssl" && row["dynamic"] != "true" && row[prop] != "10.77.0.2/32" {
						t.Errorf("api-ssl %s = %q", prop, row[prop])
					}
				}
			})
		}
	}
}

// TestThousandNodes counts what a router apply sends for 1,000 enrolled
// nodes with the router serving DHCP: one print per path, one write per
// change, and nothing but prints for a plan with nothing to do.
func TestThousandNodes(t *testing.T) {
	r := routerostest.New(routerostest.Options{Version: "7.19", User: "b", Password: "p"})
	p := &Planner{Conn: NewConn(Dialer{Address: r.ListenTLS(t), User: "b", Password: "p", Fingerprint: r.Fingerprint()}),
		Marker: marker, Version: "7.19"}
	objs := Desired(site(1000, "router"), "7.19")
	paths := map[string]bool{}
	for _, o := range objs {
		paths[o.Path] = true
	}
	ctx := context.Background()
	start := time.Now()
	plan, err := p.Plan(ctx, objs)
	if err != nil {
		t.Fatal(err)
	}
	planned := time.Since(start)
	if _, err := p.Apply(ctx, plan); err != nil {
		t.Fatal(err)
	}
	applied := time.Since(start) - planned
	prints, sent := writes(r)
	t.Logf("1,000 nodes: %d objects, %d paths; first plan %v (%d prints), apply %v (%d writes)", len(objs), len(paths), planned, prints, applied, sent)
	if prints != len(paths) || sent != len(plan.Changes) {
		t.Errorf("%d prints for %d paths, %d writes for %d changes", prints, len(paths), sent, len(plan.Changes))
	}
	start = time.Now()
	noop, err := p.Plan(ctx, objs)
	if err != nil || len(noop.Changes) != 0 {
		t.Fatalf("no-op plan: %d changes, %v", len(noop.Changes), err)
	}
	prints2, sent2 := writes(r)
	t.Logf("no-op plan: %v, %d prints, %d writes", time.Since(start), prints2-prints, sent2-sent)
	if sent2 != sent || prints2-prints != len(paths) {
		t.Errorf("no-op plan sent %d writes and %d prints", sent2-sent, prints2-prints)
	}
	var text []string
	for _, c := range plan.Changes[:3] {
		text = append(text, c.String())
	}
	if got := strings.Join(text, "\n"); !strings.Contains(got, "~ /ip/service name=api-ssl (*8)\n    address: \"\" -> \"10.77.0.2/32\"") ||
		!strings.Contains(got, "+ /interface/vlan name=prov\n    comment = \"bootstrapd\"") {
		t.Errorf("plan text:\n%s", got)
	}
}
