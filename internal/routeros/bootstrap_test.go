package routeros

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bootstrapd/bootstrapd/internal/routeros/routerostest"
)

func bootstrapSite() Bootstrap {
	return Bootstrap{Interface: "ether1", VLANID: 4000, Address: netip.MustParsePrefix("192.0.2.2/30"), Operator: netip.MustParseAddr("192.0.2.1")}
}

// TestBootstrapRemovedOnceUnused: the rows the bootstrap script made stay
// while bootstrapd reaches the router through them and go, address before
// VLAN, in the apply after it reaches the router another way. Identity is
// a singleton set in place; prune never takes the bootstrap rows.
func TestBootstrapRemovedOnceUnused(t *testing.T) {
	r := routerostest.New(routerostest.Options{Version: "7.19", User: "b", Password: "p"})
	p := &Planner{Conn: NewConn(Dialer{Address: r.ListenTLS(t), User: "b", Password: "p", Fingerprint: r.Fingerprint()}),
		Marker: marker, Prune: true, Version: "7.19"}
	b := bootstrapSite()
	vlan := r.Seed("/interface/vlan", map[string]string{"name": BootstrapVLAN, "vlan-id": "4000", "interface": "ether1", "comment": marker + " bootstrap"})
	addr := r.Seed("/ip/address", map[string]string{"address": "192.0.2.2/30", "interface": BootstrapVLAN, "comment": marker + " bootstrap"})
	ctx := context.Background()

	s := site(0, "bootstrapd")
	s.Identity = "rack7-gw"
	s.Bootstrap, s.Via = &b, netip.MustParseAddr("192.0.2.2")
	plan, err := p.Plan(ctx, Desired(s, "7.19"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range plan.Changes {
		if c.ID == vlan || c.ID == addr {
			t.Errorf("in use, yet planned: %v", c)
		}
	}
	if _, err := p.Apply(ctx, plan); err != nil {
		t.Fatal(err, plan.Conflicts)
	}
	if got := r.Rows("/system/identity")[0]["name"]; got != "rack7-gw" {
		t.Errorf("identity %q", got)
	}

	s.Via = netip.MustParseAddr("10.77.0.1")
	plan, err = p.Plan(ctx, Desired(s, "7.19"))
	if err != nil {
		t.Fatal(err)
	}
	var removed []string
	for _, c := range plan.Changes {
		if c.Op != Remove {
			t.Errorf("unexpected %v", c)
		}
		removed = append(removed, c.ID)
	}
	if strings.Join(removed, " ") != addr+" "+vlan {
		t.Errorf("removes %v, want the address %s then the VLAN %s", removed, addr, vlan)
	}
	if _, err := p.Apply(ctx, plan); err != nil {
		t.Fatal(err)
	}
	if again, err := p.Plan(ctx, Desired(s, "7.19")); err != nil || len(again.Changes) != 0 {
		t.Fatalf("plan after: %v %v", again.Changes, err)
	}
}

func TestBootstrapScript(t *testing.T) {
	hostile := "pa\"ss $(reboot) \\ ;\n/system reset-configuration ?"
	script := BootstrapScript(ScriptParams{Bootstrap: bootstrapSite(), Marker: marker, User: "bootstrapd", Password: hostile,
		AllowFrom: []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("10.77.0.2")}, TLS: true})
	for _, want := range []string{
		`interface vlan add interface="ether1" name="bootstrapd-boot" vlan-id="4000" comment="bootstrapd bootstrap"`,
		`ip address add address="192.0.2.2/30" interface="bootstrapd-boot" comment="bootstrapd bootstrap"`,
		`/user group add name="bootstrapd" policy=api,read,write,`,
		`password="pa\"ss \$(reboot) \\ ;\0A/system reset-configuration \?" address=192.0.2.1/32,10.77.0.2/32`,
		`/ip service set api disabled=yes`,
		`available-from=192.0.2.1/32,10.77.0.2/32`,
	} {
		if !strings.Contains(script, want) {
			t.Errorf("script lacks %s:\n%s", want, script)
		}
	}
	// The hostile password stays on its line: every line is a comment or a
	// RouterOS command.
	for _, l := range strings.Split(strings.TrimSpace(script), "\n") {
		if !strings.HasPrefix(l, "#") && !strings.HasPrefix(l, ":") && !strings.HasPrefix(l, "/") &&
			!strings.HasPrefix(l, "interface ") && !strings.HasPrefix(l, "ip ") {
			t.Errorf("stray line %q", l)
		}
	}
	if strings.Count(script, "reset-configuration") != 1 {
		t.Error("the password was split")
	}
}

// TestBootstrapScriptOnRouter runs the script in a factory-fresh test
// router's terminal, on a release before and after 7.24's rename of the
// service's address: bootstrapd's user then logs in over api-ssl with the
// (hostile) password as written in the site, from an allowed address, in a
// group that may use the API and little else; plain api is off. What the
// stand-in cannot run (the certificate, the wait for its fingerprint, the
// printout) is only RouterOS scripting and /certificate.
func TestBootstrapScriptOnRouter(t *testing.T) {
	hostile := "pa\"ss $(reboot) \\ ;\n/system reset-configuration ?"
	for _, version := range []string{"7.19", "7.24"} {
		t.Run(version, func(t *testing.T) {
			r := routerostest.New(routerostest.Options{Version: version})
			script := BootstrapScript(ScriptParams{Bootstrap: bootstrapSite(), Marker: marker, User: "bootstrapd", Password: hostile,
				AllowFrom: []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("127.0.0.1")}, TLS: true})
			skipped, err := r.Terminal(script)
			if err != nil {
				t.Fatalf("%v\n%s", err, script)
			}
			for _, l := range skipped {
				if !strings.HasPrefix(l, ":") && !strings.HasPrefix(l, "/certificate ") {
					t.Errorf("skipped a command: %s", l)
				}
			}
			if !slices.ContainsFunc(skipped, func(l string) bool { return strings.Contains(l, ":put") && strings.Contains(l, "fingerprint") }) {
				t.Errorf("the script prints no fingerprint:\n%s", script)
			}
			c := NewConn(Dialer{Address: r.ListenTLS(t), User: "bootstrapd", Password: hostile, Fingerprint: r.Fingerprint(), Timeout: 5 * time.Second})
			defer c.Close()
			got, err := c.Version(context.Background())
			if err != nil || !strings.HasPrefix(got, version) {
				t.Fatalf("log in as the script's user: %q %v", got, err)
			}
			services := map[string]map[string]string{}
			for _, row := range r.Rows("/ip/service") {
				if row["dynamic"] != "true" {
					services[row["name"]] = row
				}
			}
			ssl := services["api-ssl"]
			if services["api"]["disabled"] != "true" || ssl["disabled"] != "false" || ssl["certificate"] != CertificateName ||
				ssl["address"]+ssl["available-from"] != "192.0.2.1/32,127.0.0.1/32" {
				t.Errorf("services: api %v, api-ssl %v", services["api"], ssl)
			}
			for _, g := range r.Rows("/user/group") {
				if g["name"] == "bootstrapd" && (!strings.Contains(g["policy"], "api") || !strings.Contains(g["policy"], "!ssh")) {
					t.Errorf("group policy %q", g["policy"])
				}
			}
		})
	}
}

// TestQuoteRoundTrip: a quoted value, read back with the escapes the
// RouterOS scripting manual lists, is the value.
func TestQuoteRoundTrip(t *testing.T) {
	for _, v := range []string{"plain", `a"b`, `a\b`, "a$b", "a\nb\tc", "a?b"} {
		q := quote(v)
		if q[0] != '"' || q[len(q)-1] != '"' || strings.ContainsAny(q[1:len(q)-1], "\n\t") {
			t.Errorf("quote(%q) = %s", v, q)
		}
		if got := unquote(q); got != v {
			t.Errorf("unquote(quote(%q)) = %q", v, got)
		}
	}
}

// unquote reads a RouterOS string the way the manual describes escapes.
func unquote(q string) string {
	var b strings.Builder
	s := q[1 : len(q)-1]
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			b.WriteByte(s[i])
			continue
		}
		i++
		if i+1 < len(s) && isHex(s[i]) && isHex(s[i+1]) {
			var v byte
			for _, c := range s[i : i+2] {
				v = v<<4 | hexVal(byte(c))
			}
			b.WriteByte(v)
			i++
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isHex(c byte) bool { return '0' <= c && c <= '9' || 'A' <= c && c <= 'F' }
func hexVal(c byte) byte {
	if c <= '9' {
		return c - '0'
	}
	return c - 'A' + 10
}
