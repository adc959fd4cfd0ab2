package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bootstrapd/bootstrapd/internal/inventory"
	"github.com/bootstrapd/bootstrapd/internal/netlab"
	"github.com/bootstrapd/bootstrapd/internal/routeros/routerostest"
)

const routerPassword = "r0uter-S3CRET-pw"

// TestRouterFollowsNodes runs the daemon with a router block against the
// test router (api-ssl, pinned fingerprint) inside the lab: the site is
// applied at start and `router plan` then shows nothing to do; enroll adds
// the node's DNS record and retire removes it; while the router hangs, DHCP
// still answers and the CLI still works, and the record lands once the
// router is back. The router password appears in no log.
func TestRouterFollowsNodes(t *testing.T) {
	lab := netlab.NewLab(t, "10.89.0.1/24")
	rt := routerostest.New(routerostest.Options{Version: "7.19", User: "bootstrapd", Password: routerPassword})
	addr := rt.Serve(t, lab.Listen(t, "tcp", "10.89.0.1:0"), true)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "router-pw"), []byte(routerPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	writeSite(t, lab, dir, `  mode   = "reservation"
  subnet = "10.89.0.0/24"
  router = "10.89.0.254"
  domain = "lab.test"`, stubProfile(t, dir)+`
router {
  api           = "`+addr+`"
  fingerprint   = "`+rt.Fingerprint()+`"
  password_file = "router-pw"
  timeout       = "1s"
  identity      = "rack9-gw"
  interface     = "ether2"
  vlan_id       = 89
}`)
	d := startDaemon(t, lab, dir)
	hasDNS := func(name string) bool {
		for _, row := range rt.Rows("/ip/dns/static") {
			if row["name"] == name && row["comment"] == "bootstrapd" {
				return true
			}
		}
		return false
	}
	eventually(t, 20*time.Second, "the site applied at start", func() bool {
		return len(rt.Rows("/interface/vlan")) == 1 && rt.Rows("/system/identity")[0]["name"] == "rack9-gw"
	})
	if out := d.mustCLI(t, "router", "plan"); !strings.Contains(out, "No changes") {
		t.Errorf("plan after the start-up sync:\n%s", out)
	}

	host := lab.AddHost(t, "")
	d.mustCLI(t, "enroll", host.MAC, "-hostname", "n1", "-ip", "10.89.0.21")
	eventually(t, 20*time.Second, "n1's DNS record", func() bool { return hasDNS("n1.lab.test") })

	// The router stops answering: DHCP and the CLI go on.
	rt.Hang()
	d.mustCLI(t, "enroll", "52:54:00:89:00:02", "-hostname", "n2", "-ip", "10.89.0.22")
	script := filepath.Join(dir, "udhcpc.sh")
	os.WriteFile(script, []byte(udhcpcScript), 0o755)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if out, err := host.Command(ctx, "udhcpc", "-n", "-q", "-f", "-i", host.Iface, "-s", script, "-t", "3", "-T", "1").CombinedOutput(); err != nil {
		t.Fatalf("DHCP while the router hangs: %v\n%s", err, out)
	}
	if out, err := d.cli(t, "router", "plan"); err == nil || !strings.Contains(out, addr) {
		t.Errorf("router plan against a hung router: %v\n%s", err, out)
	}
	rt.Resume()
	eventually(t, 30*time.Second, "n2's DNS record once the router is back", func() bool { return hasDNS("n2.lab.test") })

	d.mustCLI(t, "retire", "n1")
	eventually(t, 20*time.Second, "n1's DNS record removed", func() bool { return !hasDNS("n1.lab.test") })
	eventually(t, 20*time.Second, "n1 retired", func() bool { return node(t, d, "n1").State == inventory.Retired })
	// Wait for the daemon's syncs to settle, so the stray below meets the
	// CLI's plan, not a background sync.
	for n, quiet := len(rt.Commands()), 0; quiet < 5; quiet++ {
		time.Sleep(100 * time.Millisecond)
		if m := len(rt.Commands()); m != n {
			n, quiet = m, 0
		}
	}

	// A record bootstrapd owns but no node explains: plan shows it, apply removes it.
	rt.Seed("/ip/dns/static", map[string]string{"name": "stray.lab.test", "address": "10.89.0.99", "comment": "bootstrapd"})
	if out := d.mustCLI(t, "router", "plan"); !strings.Contains(out, "- /ip/dns/static name=stray.lab.test") {
		t.Errorf("plan with a stray record:\n%s", out)
	}
	if out := d.mustCLI(t, "router", "apply"); !strings.Contains(out, "Applied 1 changes") {
		t.Errorf("apply:\n%s", out)
	}
	if hasDNS("stray.lab.test") {
		t.Error("the stray record survived apply")
	}
	if strings.Contains(d.log.String(), routerPassword) {
		t.Error("the router password is in the daemon's log")
	}
	if !strings.Contains(d.log.String(), "router sync failed; retrying") {
		t.Error("the failed sync while the router hung was not logged")
	}
}

// stubProfile puts a profile in dir's profiles directory and returns the
// default_profile line naming it, for a test that enrolls nodes only for
// their addresses and records: every node is enrolled with a profile.
func stubProfile(t *testing.T, dir string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, "profiles"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "profiles", "stub.hcl"), []byte("profile \"stub\" {\n  kernel = \"stub/vmlinuz\"\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return `default_profile = "stub"`
}
