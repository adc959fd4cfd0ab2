package config

import (
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
)

// TestSiteLimits: values the fuzzer found that loaded (or panicked) instead
// of being refused at their line. Each must be an error at that line, never
// a panic, and the edges of what is allowed must still load.
func TestSiteLimits(t *testing.T) {
	dhcp := func(body string) string { // body starts at line 3
		return "interface = \"br0\"\ndhcp {\n" + body + "}\n"
	}
	cases := []struct {
		name, src string
		line      int
		want      string // "" for success
	}{
		// A bad dhcp router beside a router block: validateRouter parsed it
		// again with MustParseAddr after validateDHCP had reported it.
		{"bogus dhcp router with a router block",
			dhcp("  mode = \"proxy\"\n  subnet = \"10.77.0.0/24\"\n  router = \"bogus\"\n") +
				"router {\n  api = \"10.77.0.1:8728\"\n  insecure = true\n  interface = \"bridge\"\n}\n",
			5, `"bogus" is not an IPv4 address`},
		{"dhcp router outside the subnet with a router block",
			dhcp("  mode = \"proxy\"\n  subnet = \"10.77.0.0/24\"\n  router = \"10.9.0.1\"\n") +
				"router {\n  api = \"10.77.0.1:8728\"\n  insecure = true\n  interface = \"bridge\"\n}\n",
			5, "outside subnet"},
		// /0 and /1 overflowed the range arithmetic (a /0's size is 1<<32).
		{"subnet /0", dhcp("  subnet = \"0.0.0.0/0\"\n"), 3, "from /8 to /30"},
		{"subnet /1", dhcp("  subnet = \"0.0.0.0/1\"\n"), 3, "from /8 to /30"},
		{"subnet /7", dhcp("  subnet = \"10.0.0.0/7\"\n"), 3, "from /8 to /30"},
		{"subnet /31", dhcp("  subnet = \"10.0.0.0/31\"\n"), 3, "from /8 to /30"},
		{"subnet /8", dhcp("  subnet = \"10.0.0.0/8\"\n"), 0, ""},
		{"subnet /30", dhcp("  subnet = \"10.0.0.0/30\"\n"), 0, ""},
		// 1193047h is 2^32 s + 1904 s: a 31-minute lease on the wire with a
		// 68-year renewal time.
		{"lease_time past uint32 seconds", dhcp("  subnet = \"10.0.0.0/24\"\n  lease_time = \"1193047h\"\n"), 4, "from 1m to 168h"},
		{"lease_time over 7 days", dhcp("  subnet = \"10.0.0.0/24\"\n  lease_time = \"168h1s\"\n"), 4, "from 1m to 168h"},
		{"lease_time 7 days", dhcp("  subnet = \"10.0.0.0/24\"\n  lease_time = \"168h\"\n"), 0, ""},
		{"lease_time 1m", dhcp("  subnet = \"10.0.0.0/24\"\n  lease_time = \"1m\"\n"), 0, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := writeSite(t, c.src)
			var err error
			func() {
				defer func() {
					if r := recover(); r != nil {
						t.Fatalf("Load panicked: %v", r)
					}
				}()
				_, err = Load(p)
			}()
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatal("Load succeeded, want an error")
			}
			if prefix := p + ":" + strconv.Itoa(c.line) + ":"; !strings.HasPrefix(err.Error(), prefix) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q, want %q... mentioning %q", err, prefix, c.want)
			}
		})
	}
}

// TestDefaultRange: for every prefix length, large ones included, the
// default range lies inside the subnet, in order, clear of the network and
// broadcast addresses: the arithmetic cannot wrap.
func TestDefaultRange(t *testing.T) {
	for bits := 0; bits <= 30; bits++ {
		for _, base := range []string{"0.0.0.0", "10.77.0.0", "255.255.255.255"} {
			p := netip.PrefixFrom(netip.MustParseAddr(base), bits).Masked()
			r := defaultRange(p)
			last := lastAddr(p)
			if !p.Contains(r[0]) || !p.Contains(r[1]) || r[1].Less(r[0]) || r[0] == p.Addr() || r[1] == last || !p.Contains(last) {
				t.Errorf("%s: range %s-%s, last %s", p, r[0], r[1], last)
			}
		}
	}
	if r := defaultRange(netip.MustParsePrefix("10.0.0.0/8")); r != [2]netip.Addr{netip.MustParseAddr("10.128.0.0"), netip.MustParseAddr("10.255.255.254")} {
		t.Errorf("10.0.0.0/8: %v", r)
	}
}

// TestLeaseSeconds: every lease Load accepts is a whole number of seconds
// that fits the DHCP options (uint32 seconds), renewal and rebinding too.

// TestDiagErrorHasLine: an HCL diagnostic without a subject (hcl does not
// promise one) still comes out as file:line, at the top of the file.
func TestDiagErrorHasLine(t *testing.T) {
	for _, c := range []struct {
		name  string
		diags hcl.Diagnostics
		want  string
	}{
		{"no subject", hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Something", Detail: "went wrong."}}, "site.hcl:1: Something: went wrong."},
		{"subject", hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Bad", Subject: &hcl.Range{Filename: "site.hcl", Start: hcl.Pos{Line: 7}}}}, "site.hcl:7: Bad"},
		{"warning first", hcl.Diagnostics{{Severity: hcl.DiagWarning, Summary: "Meh"}, {Severity: hcl.DiagError, Summary: "Bad"}}, "site.hcl:1: Bad"},
	} {
		if err := diagError("site.hcl", c.diags); err == nil || err.Error() != c.want {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
}
