package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bootstrapd/bootstrapd/internal/routeros/routerostest"
)

// TestBootstrapFlow walks a factory-fresh router to a first apply, as the
// README tells an operator to, against the RouterOS test router: from a
// site with no fingerprint (which every command but bootstrap-script
// refuses, naming the command that fixes it), the bootstrap script is
// generated and run in the router's terminal; `router fingerprint -write`
// reads the certificate it now serves (trust on first use) and pins it in
// the site, changing nothing else in the file; check passes; the daemon
// logs in as the script's user and `router apply` brings the router in
// line, after which a plan has nothing to do.
func TestBootstrapFlow(t *testing.T) {
	rt := routerostest.New(routerostest.Options{Version: "7.19"}) // admin, no password: a fresh router
	routerAddr := rt.ListenTLS(t)
	dir := t.TempDir()
	write(t, filepath.Join(dir, "netboot", "undionly.kpxe"), nil, 0o644)
	write(t, filepath.Join(dir, "netboot", "snponly.efi"), nil, 0o644)
	write(t, filepath.Join(dir, "profiles", ".keep"), nil, 0o644)
	const password = `r0uter "pa$$" \ word`
	write(t, filepath.Join(dir, "router-pw"), []byte(password+"\n"), 0o600)
	site := filepath.Join(dir, "site.hcl")
	// router.api is the test router's loopback port where a real site
	// has the bootstrap address (192.0.2.2:8729).
	src := fmt.Sprintf(`# rack 7
interface      = "lo"
server_address = "127.0.0.1" # where the router lets bootstrapd in from
state_dir      = "state"

dhcp {
  mode   = "off"
  subnet = "10.77.0.0/24"
  router = "10.77.0.1"
  domain = "lab.test"
}
tftp { listen = "127.0.0.1:0" }
http { listen = "127.0.0.1:0" }
api  { socket = "api.sock" }

router {
  api           = %q   # the bootstrap address at first
  password_file = "router-pw"
  identity      = "rack7-gw"
  interface     = "ether2"
  vlan_id       = 77
  bootstrap {
    interface = "ether1"
    vlan_id   = 4000
    address   = "192.0.2.2/30"
    operator  = "192.0.2.1"
  }
}
`, routerAddr)
	write(t, site, []byte(src), 0o644)
	ctx := context.Background()
	sock := "unix://" + filepath.Join(dir, "api.sock")
	step := func(name string, wantCode int, wantOut string, args ...string) string {
		t.Helper()
		code, out, errOut := cli(ctx, sock, args...)
		if code != wantCode || !strings.Contains(out+errOut, wantOut) {
			t.Fatalf("%s: bootstrapd %s: exit %d\n%s%s\nwant exit %d mentioning %q", name, strings.Join(args, " "), code, out, errOut, wantCode, wantOut)
		}
		return out
	}

	step("an unpinned site does not load", exitFailed,
		site+":16: the router block needs fingerprint", "check", "-config", site)
	step("...and says what pins it", exitFailed,
		"`bootstrapd router fingerprint -addr "+routerAddr+" -write "+site+"`", "check", "-config", site)

	script := filepath.Join(dir, "boot.rsc")
	step("bootstrap-script needs no fingerprint", 0,
		"`bootstrapd router fingerprint -addr 192.0.2.2:8729 -write "+site+"`", "router", "bootstrap-script", "-config", site, "-o", script)
	if fi, err := os.Stat(script); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the script file: %v %v", fi, err)
	}
	b, _ := os.ReadFile(script)
	if !strings.Contains(string(b), ":put (\"bootstrapd: api-ssl certificate fingerprint \" . $fp)") {
		t.Errorf("the script does not print the fingerprint:\n%s", b)
	}
	if _, err := rt.Terminal(string(b)); err != nil {
		t.Fatalf("running the script on the router: %v\n%s", err, b)
	}

	// Trust on first use: -write reads the address from the site it pins.
	out := step("fingerprint pins it", 0, "wrote it into "+site+":18", "router", "fingerprint", "-write", site)
	line := `fingerprint = "` + rt.Fingerprint() + `"`
	if !strings.HasPrefix(out, line) {
		t.Errorf("fingerprint printed %q, want %q first", out, line)
	}
	got, _ := os.ReadFile(site)
	api := fmt.Sprintf("  api           = %q   # the bootstrap address at first\n", routerAddr)
	want := strings.Replace(src, api, api+"  fingerprint   = \""+rt.Fingerprint()+"\"\n", 1)
	if string(got) != want {
		t.Errorf("the site after -write:\n%s\nwant:\n%s", got, want)
	}
	step("the pinned site loads", 0, "site.hcl: ok", "check", "-config", site)

	// The daemon logs in as the user the script made (the factory admin
	// has another password) and applies the site; so does the CLI.
	serveCtx, stop := context.WithCancel(ctx)
	served := make(chan int)
	go func() {
		code, _, errOut := cli(serveCtx, sock, "serve", "-config", site, "-log-format", "text")
		if code != 0 {
			t.Errorf("serve: exit %d\n%s", code, errOut)
		}
		served <- code
	}()
	defer func() { stop(); <-served }()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if code, _, _ := cli(ctx, sock, "nodes"); code == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the daemon's socket never answered")
		}
	}
	step("apply", 0, "", "router", "apply")
	step("a plan after it", 0, "No changes: the router matches the site.", "router", "plan")
	step("a plan after it, flags before the subcommand", 0, `"changes": null`, "router", "-json", "plan")
	if id := rt.Rows("/system/identity")[0]["name"]; id != "rack7-gw" {
		t.Errorf("identity %q", id)
	}
	var vlan bool
	for _, v := range rt.Rows("/interface/vlan") {
		vlan = vlan || v["vlan-id"] == "77" && v["interface"] == "ether2" && v["comment"] == "bootstrapd"
	}
	if !vlan {
		t.Errorf("no provisioning VLAN: %v", rt.Rows("/interface/vlan"))
	}
}
