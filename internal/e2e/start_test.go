package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bootstrapd/bootstrapd/internal/netlab"
)

// TestStartErrors: a daemon that cannot serve says why, with what to fix,
// and exits without leaving a listener behind.
func TestStartErrors(t *testing.T) {
	lab := netlab.NewLab(t, "10.96.0.1/24")
	cases := []struct {
		name, dhcp, extra string
		setup             func(t *testing.T, dir string)
		want              string
	}{
		{name: "no such interface", dhcp: `  mode = "pool"
  subnet = "10.96.0.0/24"`, setup: func(t *testing.T, dir string) {
			p := filepath.Join(dir, "site.hcl")
			b, _ := os.ReadFile(p)
			os.WriteFile(p, []byte(strings.Replace(string(b), `"br0"`, `"nope0"`, 1)), 0o644)
		}, want: `site.hcl:1: interface "nope0": route ip+net: no such network interface`},
		{name: "port in use", dhcp: `  mode = "pool"
  subnet = "10.96.0.0/24"`, setup: func(t *testing.T, dir string) {
			l := lab.Listen(t, "tcp4", "10.96.0.1:8080")
			t.Cleanup(func() { l.Close() })
		}, want: "node HTTP on 10.96.0.1:8080"},
		{name: "another DHCP server on the interface", dhcp: `  mode = "pool"
  subnet = "10.96.0.0/24"`, setup: func(t *testing.T, dir string) {
			c := lab.ListenPacket(t, "udp4", "0.0.0.0:67")
			t.Cleanup(func() { c.Close() })
		}, want: "another DHCP server (or bootstrapd) is using it"},
		{name: "no address in subnet", dhcp: `  mode = "pool"
  subnet = "10.97.0.0/24"`, want: "has no IPv4 address in 10.97.0.0/24"},
		{name: "missing boot file", dhcp: `  mode = "off"`, setup: func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, "netboot", "snponly.efi"))
		}, want: "boot file snponly.efi is missing"},
		{name: "missing default profile", dhcp: `  mode = "off"`, extra: `default_profile = "void-nomad"`, want: `default_profile "void-nomad" is not in`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			site := writeSite(t, lab, dir, c.dhcp, c.extra)
			if c.setup != nil {
				c.setup(t, dir)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			out, err := lab.Command(ctx, binary(t), "serve", "-config", site).CombinedOutput()
			if err == nil {
				t.Fatalf("serve started; output:\n%s", out)
			}
			if !strings.Contains(string(out), c.want) {
				t.Errorf("serve said:\n%s\nwant it to mention %q", out, c.want)
			}
			if _, err := os.Stat(filepath.Join(dir, "api.sock")); err == nil {
				t.Error("the admin socket was left behind")
			}
		})
	}
}
