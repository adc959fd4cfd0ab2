package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const routerSecret = "r0uter-pa55"

// routerSite is a site with a router block whose body is given; line 7 is
// the block's first line.
func routerSite(body string) string {
	return "interface = \"br0\"\ndhcp {\n  mode = \"proxy\"\n  subnet = \"10.77.0.0/24\"\n  router = \"10.77.0.1\"\n}\nrouter {\n" + body + "}\n"
}

const fp = "  api = \"10.77.0.1:8729\"\n  fingerprint = \"" + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" + "\"\n"

func TestRouterBlock(t *testing.T) {
	cases := []struct {
		name, body string
		env        string // BOOTSTRAPD_ROUTER_PASSWORD
		line       int
		want       string // "" for success
	}{
		{"good, password from env", fp + "  interface = \"bridge\"\n  vlan_id = 77\n", routerSecret, 0, ""},
		{"good, password file", fp + "  interface = \"bridge\"\n  password_file = \"router-pw\"\n", "", 0, ""},
		{"no password", fp + "  interface = \"bridge\"\n", "", 7, "BOOTSTRAPD_ROUTER_PASSWORD"},
		{"no tls", "  api = \"10.77.0.1:8729\"\n  interface = \"bridge\"\n", routerSecret, 7, "insecure = true"},
		{"insecure allowed", "  api = \"10.77.0.1:8728\"\n  insecure = true\n  interface = \"bridge\"\n", routerSecret, 0, ""},
		{"bad api", "  api = \"router.lan\"\n  insecure = true\n  interface = \"bridge\"\n", routerSecret, 8, "address:port"},
		{"bad fingerprint", "  api = \"10.77.0.1:8729\"\n  fingerprint = \"abc\"\n  interface = \"bridge\"\n", routerSecret, 9, "SHA-256"},
		{"missing ca", "  api = \"10.77.0.1:8729\"\n  ca_file = \"nope.pem\"\n  interface = \"bridge\"\n", routerSecret, 9, "no such file"},
		{"bad vlan", fp + "  interface = \"bridge\"\n  vlan_id = 5000\n", routerSecret, 11, "1..4094"},
		{"hostile name", fp + "  interface = \"br0; /system reset\"\n", routerSecret, 10, "not a RouterOS name"},
		{"bad dhcp", fp + "  interface = \"bridge\"\n  dhcp = \"both\"\n", routerSecret, 11, "not one of"},
		{"bad timeout", fp + "  interface = \"bridge\"\n  timeout = \"1ms\"\n", routerSecret, 11, "at least 100ms"},
		{"bootstrap operator outside", fp + "  interface = \"bridge\"\n  bootstrap {\n    interface = \"ether1\"\n    address = \"192.0.2.2/30\"\n    operator = \"192.0.3.1\"\n  }\n", routerSecret, 14, "inside 192.0.2.0/30"},
		{"bootstrap good", fp + "  interface = \"bridge\"\n  bootstrap {\n    interface = \"ether1\"\n    vlan_id = 4000\n    address = \"192.0.2.2/30\"\n    operator = \"192.0.2.1\"\n  }\n", routerSecret, 0, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv(RouterPasswordEnv, c.env)
			p := writeSite(t, routerSite(c.body))
			pw := filepath.Join(filepath.Dir(p), "router-pw")
			if err := os.WriteFile(pw, []byte(routerSecret+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			s, err := Load(p)
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				r := s.Router
				if r.Password() != routerSecret || r.User != "bootstrapd" || r.DHCP != "router" || r.Address.String() != "10.77.0.1/24" {
					t.Errorf("router %+v: password ok %v", r, r.Password() == routerSecret)
				}
				for _, out := range []string{fmt.Sprint(r), fmt.Sprintf("%+v", *r), fmt.Sprintf("%v", s)} {
					if strings.Contains(out, routerSecret) {
						t.Errorf("the password is printed: %s", out)
					}
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

// bootstrapBlock is a router block body with no pin, as a site is before
// its router has run the bootstrap script; the router block is at line 7.
const bootstrapBlock = "  api = \"192.0.2.2:8729\"\n  interface = \"bridge\"\n  password_file = \"router-pw\"\n" +
	"  bootstrap {\n    interface = \"ether1\"\n    address = \"192.0.2.2/30\"\n    operator = \"192.0.2.1\"\n  }\n"

// TestLoadBootstrap: a site whose router block pins nothing yet loads for
// the bootstrap script, and only for it: Load refuses it at the router
// block's line and says how to pin. LoadBootstrap reads what the script
// needs (password, bootstrap addresses) and nothing else (netboot files,
// Vault), but still refuses a broken router block at its line.
func TestLoadBootstrap(t *testing.T) {
	cases := []struct {
		name, site string
		line       int
		want       string // "" for success
	}{
		{"no pin yet", routerSite(bootstrapBlock), 0, ""},
		{"no pin, no netboot files, a vault block", routerSite(bootstrapBlock) + "vault {\n  address = \"https://vault:8200\"\n  token_file = \"missing\"\n}\n", 0, ""},
		{"no bootstrap block", routerSite("  api = \"192.0.2.2:8729\"\n  interface = \"bridge\"\n  password_file = \"router-pw\"\n"), 7, "no router { bootstrap { ... } } block"},
		{"no router block", "interface = \"br0\"\ndhcp {\n  subnet = \"10.77.0.0/24\"\n}\n", 1, "no router { bootstrap"},
		{"bad operator", routerSite(strings.Replace(bootstrapBlock, "192.0.2.1", "10.0.0.1", 1)), 14, "inside 192.0.2.0/30"},
		{"no password", routerSite(strings.Replace(bootstrapBlock, "  password_file = \"router-pw\"\n", "", 1)), 7, RouterPasswordEnv},
		{"bad server_address", "server_address = \"nope\"\n" + routerSite(bootstrapBlock), 1, "server_address"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv(RouterPasswordEnv, "")
			p := writeSite(t, c.site)
			if strings.Contains(c.name, "no netboot") {
				os.RemoveAll(filepath.Join(filepath.Dir(p), "netboot"))
			}
			if err := os.WriteFile(filepath.Join(filepath.Dir(p), "router-pw"), []byte(routerSecret+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			s, err := LoadBootstrap(p)
			if c.want != "" {
				if prefix := p + ":" + strconv.Itoa(c.line) + ":"; err == nil || !strings.HasPrefix(err.Error(), prefix) || !strings.Contains(err.Error(), c.want) {
					t.Errorf("LoadBootstrap: %v, want %q... mentioning %q", err, prefix, c.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			b := s.Router.Bootstrap
			if s.Router.Password() != routerSecret || b.AddressP.String() != "192.0.2.2/30" || b.OperatorA.String() != "192.0.2.1" {
				t.Errorf("bootstrap %+v, password ok %v", b, s.Router.Password() == routerSecret)
			}
			// Every other command loads the whole site, which must pin the
			// router: the error is at the block and names the command.
			_, err = Load(p)
			if prefix := p + ":7:"; err == nil || !strings.Contains(err.Error(), prefix) || !strings.Contains(err.Error(), "bootstrapd router fingerprint -addr 192.0.2.2:8729 -write "+p) {
				t.Errorf("Load: %v, want %q... naming `bootstrapd router fingerprint`", err, prefix)
			}
		})
	}
}
