package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/bootstrapd/bootstrapd/internal/api"
	"github.com/bootstrapd/bootstrapd/internal/bmc"
	"github.com/bootstrapd/bootstrapd/internal/bmc/bmctest"
	"github.com/bootstrapd/bootstrapd/internal/cluster/clustertest"
	"github.com/bootstrapd/bootstrapd/internal/config"
	"github.com/bootstrapd/bootstrapd/internal/inventory"
	"github.com/bootstrapd/bootstrapd/internal/inventory/inventorytest"
)

// bmcPassword is the site's BMC password in these tests: no log line,
// event or result may show it.
const bmcPassword = "s3cret-bmc-pa55"

// loadSite loads a site on 10.77.0.0/24 with the given extra HCL, its
// BMC password in the environment, as bootstrapd check would.
func loadSite(t *testing.T, extra string) *config.Site {
	t.Helper()
	t.Setenv(config.BMCPasswordEnv, bmcPassword)
	dir := t.TempDir()
	for _, f := range []string{"undionly.kpxe", "snponly.efi"} {
		if err := os.MkdirAll(filepath.Join(dir, "netboot"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "netboot", f), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p := filepath.Join(dir, "site.hcl")
	src := "interface = \"prov0\"\nstate_dir = \"state\"\ndhcp {\n  subnet = \"10.77.0.0/24\"\n}\n" + extra
	if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	site, err := config.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	return site
}

// wakes records the magic packets Wake was asked to send.
type wakes struct {
	mu   sync.Mutex
	sent []string
	fail error
}

func (w *wakes) wake(_ context.Context, iface string, mac net.HardwareAddr, dst netip.AddrPort) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.sent = append(w.sent, fmt.Sprintf("%s %s %s", iface, mac, dst))
	return w.fail
}

// powerRig is a Power over a real inventory and a lab of fake BMCs.
type powerRig struct {
	*Power
	inv  *inventory.Inventory
	lab  *bmctest.Lab
	wake *wakes
	logs *logBuf
}

func newPowerRig(t *testing.T, site *config.Site) *powerRig {
	t.Helper()
	logs := &logBuf{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	r := &powerRig{inv: inventorytest.New(t, log), lab: &bmctest.Lab{}, wake: &wakes{}, logs: logs}
	ctx, cancel := context.WithCancel(context.Background())
	p, err := NewPower(ctx, site, PowerConfig{Inv: r.inv, Open: r.lab.Open, Wake: r.wake.wake,
		Server: netip.MustParseAddr("10.77.0.2"), Log: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); p.Wait() })
	r.Power = p
	return r
}

// enroll enrolls a node with a BMC (url "" for none) and the given arch
// and labels.
func (r *powerRig) enroll(t *testing.T, mac, bmcURL, creds, arch string, labels map[string]string) inventory.Node {
	t.Helper()
	ctx := context.Background()
	if arch != "" {
		r.inv.Seen(ctx, mac, arch)
	}
	req := inventory.EnrollRequest{MAC: mac, Labels: labels, Actor: "test"}
	if bmcURL != "" {
		req.BMC = &inventory.BMC{URL: bmcURL, Credentials: creds}
	}
	n, err := r.inv.Enroll(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// notes are the node's events after its enrollment.
func (r *powerRig) notes(t *testing.T, mac string) []string {
	t.Helper()
	n, _ := r.inv.Node(mac)
	var out []string
	for _, e := range n.History {
		if e.To == "" {
			out = append(out, e.Cause)
		}
	}
	return out
}

// TestPowerActions: each power action through a fake BMC, what it did to
// the BMC, the node's history and the result, for every way a BMC fails.
func TestPowerActions(t *testing.T) {
	const mac = "52:54:00:00:00:01"
	const addr = "10.0.9.11"
	cases := []struct {
		name    string
		site    string            // extra site HCL; the default has user admin
		bmc     string            // the node's BMC URL; "" none
		creds   string            // its credentials reference
		arch    string            // what DHCP saw
		labels  map[string]string // the node's labels
		fake    *bmctest.BMC      // the BMC at addr (Power, Password, failures); nil: off, no failures
		action  string
		calls   string // what the BMC was asked, in order
		events  string // the node's events after enrollment, joined with " | "
		state   bmc.State
		err     string // in the result's error (and its event)
		warning string
	}{
		{name: "install, off, never seen: plain PXE boot once, power on", bmc: "ipmi://" + addr, action: api.PowerInstall,
			calls:  "open, state, boot pxe legacy, power on, close",
			events: "power install via ipmi://10.0.9.11: next boot: PXE, legacy, once; power on: done (was off)", state: bmc.On},
		{name: "install, on: power cycle", bmc: "ipmi://" + addr, fake: &bmctest.BMC{Power: bmc.On}, action: api.PowerInstall,
			calls:  "open, state, boot pxe legacy, power cycle, close",
			events: "power install via ipmi://10.0.9.11: next boot: PXE, legacy, once; power cycle: done (was on)", state: bmc.On},
		{name: "install, DHCP saw an EFI client: UEFI PXE", bmc: "ipmi://" + addr, arch: "efi-x64", action: api.PowerInstall,
			calls: "open, state, boot pxe uefi, power on, close", state: bmc.On,
			events: "power install via ipmi://10.0.9.11: next boot: PXE, uefi, once; power on: done (was off)"},
		{name: "install, DHCP saw a UEFI HTTP client: UEFI PXE", bmc: "ipmi://" + addr, arch: "http-x64", action: api.PowerInstall,
			calls: "open, state, boot pxe uefi, power on, close", state: bmc.On,
			events: "power install via ipmi://10.0.9.11: next boot: PXE, uefi, once; power on: done (was off)"},
		{name: "install, the firmware label wins over DHCP's arch", bmc: "ipmi://" + addr, arch: "efi-x64", labels: map[string]string{"firmware": "bios"},
			action: api.PowerInstall, calls: "open, state, boot pxe legacy, power on, close", state: bmc.On,
			events: "power install via ipmi://10.0.9.11: next boot: PXE, legacy, once; power on: done (was off)"},
		{name: "install, never seen, labelled uefi", bmc: "ipmi://" + addr, labels: map[string]string{"firmware": "uefi"},
			action: api.PowerInstall, calls: "open, state, boot pxe uefi, power on, close", state: bmc.On,
			events: "power install via ipmi://10.0.9.11: next boot: PXE, uefi, once; power on: done (was off)"},
		{name: "boot device refused: a warning, and the power on still done", bmc: "ipmi://" + addr, fake: &bmctest.BMC{RefuseBoot: true},
			action: api.PowerInstall, calls: "open, state, boot pxe legacy, power on, close", state: bmc.On,
			warning: "one-time PXE boot refused",
			events: "power install via ipmi://10.0.9.11: warning: one-time PXE boot refused (set boot device: completion code 0xcc (invalid data field): the BMC does not support a one-time boot device); relying on the node's boot order to boot from the network" +
				" | power install via ipmi://10.0.9.11: power on: done (was off)"},
		{name: "wrong password", bmc: "ipmi://" + addr, fake: &bmctest.BMC{User: "admin", Password: "other"}, action: api.PowerOn,
			calls: "open", state: bmc.Off, err: "power on n1 (52:54:00:00:00:01), BMC ipmi://10.0.9.11: the BMC refused the user name or password"},
		{name: "unreachable", bmc: "ipmi://10.0.9.99", action: api.PowerOn,
			err: "power on n1 (52:54:00:00:00:01), BMC ipmi://10.0.9.99: 10.0.9.99: the BMC cannot be reached"},
		{name: "hangs: fails after the timeout", bmc: "ipmi://" + addr, fake: &bmctest.BMC{Hang: true}, action: api.PowerCycle,
			calls: "open", state: bmc.Off, err: "power cycle n1 (52:54:00:00:00:01), BMC ipmi://10.0.9.11: the BMC did not answer in time"},
		{name: "power action refused", bmc: "ipmi://" + addr, fake: &bmctest.BMC{Fail: map[string]error{"Power": fmt.Errorf("chassis control: insufficient privilege")}},
			action: api.PowerOff, calls: "open, power off, close", err: "BMC ipmi://10.0.9.11: chassis control: insufficient privilege"},
		{name: "status is read, not recorded", bmc: "redfish://" + addr, fake: &bmctest.BMC{Power: bmc.On}, action: api.PowerStatus,
			calls: "open, state, close", state: bmc.On},
		{name: "off", bmc: "redfish://" + addr + "/redfish/v1/Systems/1", fake: &bmctest.BMC{Power: bmc.On}, action: api.PowerOff,
			calls: "open, power off, close", state: bmc.Off, events: "power off via redfish://10.0.9.11/redfish/v1/Systems/1: power off: done (was on)"},
		{name: "no credentials anywhere", site: "bmc {\n  timeout = \"200ms\"\n}\n", bmc: "ipmi://" + addr, action: api.PowerOn,
			err: "no credentials for it: set user and password_file in the site's bmc block"},
		{name: "redfish over plain HTTP, not allowed", bmc: "redfish+http://" + addr, action: api.PowerOn,
			err: "sends its password in the clear"},
		{name: "redfish over plain HTTP, allowed", site: "bmc {\n  user = \"admin\"\n  insecure_http = true\n}\n", bmc: "redfish+http://" + addr,
			action: api.PowerOn, calls: "open, power on, close", state: bmc.On, events: "power on via redfish+http://10.0.9.11: power on: done (was off)"},
		{name: "no BMC", action: api.PowerOn, err: "power on n1 (52:54:00:00:00:01), no BMC: it has no BMC"},
		{name: "wake on LAN", action: api.PowerWake, events: "power wake via Wake-on-LAN: magic packet sent on prov0"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			site := c.site
			if site == "" {
				site = "bmc {\n  user = \"admin\"\n  timeout = \"200ms\"\n}\n"
			}
			r := newPowerRig(t, loadSite(t, site))
			if c.fake == nil {
				c.fake = &bmctest.BMC{}
			}
			f := r.lab.Add(addr, c.fake)
			r.enroll(t, mac, c.bmc, c.creds, c.arch, c.labels)
			n, _ := r.inv.Node(mac)
			start := time.Now()
			res := r.Act(context.Background(), n, c.action, "test")
			if took := time.Since(start); took > 3*time.Second {
				t.Errorf("the action took %v: the timeout did not bound it", took)
			}
			if calls := strings.Join(f.Calls(), ", "); calls != c.calls {
				t.Errorf("BMC calls %q, want %q", calls, c.calls)
			}
			if c.state != "" && f.State() != c.state {
				t.Errorf("power %s, want %s", f.State(), c.state)
			}
			if (c.err == "") != (res.Error == "") || !strings.Contains(res.Error, c.err) {
				t.Errorf("result error %q, want %q", res.Error, c.err)
			}
			if !strings.Contains(res.Warning, c.warning) || (c.warning == "") != (res.Warning == "") {
				t.Errorf("warning %q, want %q", res.Warning, c.warning)
			}
			want := c.events
			if c.err != "" && c.action != api.PowerStatus {
				want = res.Error // a failure is an event, in the same words
			}
			if got := strings.Join(r.notes(t, mac), " | "); got != want {
				t.Errorf("events:\n%s\nwant:\n%s", got, want)
			}
			if res.Node != "n1" || res.MAC != mac || res.BMC != c.bmc && c.bmc != "redfish://"+addr+"/redfish/v1/Systems/1" {
				t.Errorf("result names %q %q %q", res.Node, res.MAC, res.BMC)
			}
			for _, cr := range f.Credentials() {
				if cr.User != "admin" || cr.Password != bmcPassword {
					t.Errorf("logged in with %v, want the site's credentials", cr)
				}
			}
			noSecret(t, r, fmt.Sprintf("%+v", res))
		})
	}
}

// noSecret fails if the BMC password shows in the logs, the event log or
// the texts given.
func noSecret(t *testing.T, r *powerRig, texts ...string) {
	t.Helper()
	evs, _, _ := r.inv.Events(0)
	texts = append(texts, r.logs.String(), fmt.Sprintf("%+v", evs), fmt.Sprintf("%+v", r.inv.Nodes()))
	for _, s := range texts {
		if strings.Contains(s, bmcPassword) || strings.Contains(s, "filepa55") {
			t.Errorf("a BMC password is shown: %s", s)
		}
	}
}

// TestWakeOnLAN: the magic packet goes on the provisioning interface, and
// to the subnet's directed broadcast where DHCP comes through a relay.
func TestWakeOnLAN(t *testing.T) {
	cases := []struct {
		name   string
		server string // bootstrapd's address
		sent   string
		answer string
	}{
		{"on the segment", "10.77.0.2", "prov0 52:54:00:00:00:01 invalid AddrPort", "magic packet sent on prov0"},
		{"relayed: bootstrapd is on another subnet", "10.9.0.2", "prov0 52:54:00:00:00:01 10.77.0.255:9",
			"magic packet sent on prov0 and to 10.77.0.255:9 (the relayed subnet's broadcast)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			site := loadSite(t, "")
			w := &wakes{}
			inv := inventorytest.New(t, slog.New(slog.DiscardHandler))
			p, err := NewPower(context.Background(), site, PowerConfig{Inv: inv, Wake: w.wake, Server: netip.MustParseAddr(c.server)})
			if err != nil {
				t.Fatal(err)
			}
			n, err := inv.Enroll(context.Background(), inventory.EnrollRequest{MAC: "52:54:00:00:00:01"})
			if err != nil {
				t.Fatal(err)
			}
			res := p.Act(context.Background(), n, api.PowerWake, "test")
			if strings.Join(w.sent, ", ") != c.sent || res.Answer != c.answer || res.Error != "" {
				t.Errorf("sent %q, answer %q, error %q; want %q, %q", w.sent, res.Answer, res.Error, c.sent, c.answer)
			}
		})
	}
	if got := broadcast(netip.MustParsePrefix("10.77.0.0/22")); got.String() != "10.77.3.255" {
		t.Errorf("broadcast of a /22: %s", got)
	}
}

// TestBMCCredentialSources: a node's own credentials from a 0600 file,
// and every way a reference can be wrong, each said without the password.
func TestBMCCredentialSources(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "n1")
	os.WriteFile(good, []byte("root:filepa55:with:colons\n"), 0o600)
	open := filepath.Join(dir, "open")
	os.WriteFile(open, []byte("root:filepa55\n"), 0o644)
	os.Chmod(open, 0o644)
	bad := filepath.Join(dir, "bad")
	os.WriteFile(bad, []byte("filepa55\n"), 0o600)
	cases := []struct {
		creds string
		user  string // the user the BMC saw; "" when it fails
		err   string
	}{
		{"", "admin", ""},
		{"file:" + good, "root", ""},
		{"file:" + open, "", "readable or writable by group or others"},
		{"file:" + bad, "", "does not hold user:password"},
		{"file:" + filepath.Join(dir, "none"), "", "no such file"},
		{"vault:kv/bmc/n1", "", "the site has no vault block"},
	}
	for _, c := range cases {
		t.Run(c.creds, func(t *testing.T) {
			r := newPowerRig(t, loadSite(t, "bmc {\n  user = \"admin\"\n}\n"))
			f := r.lab.Add("10.0.9.11", &bmctest.BMC{})
			n := r.enroll(t, "52:54:00:00:00:01", "ipmi://10.0.9.11", c.creds, "", nil)
			res := r.Act(context.Background(), n, api.PowerOn, "test")
			if c.err != "" {
				if !strings.Contains(res.Error, c.err) || len(f.Calls()) != 0 {
					t.Errorf("error %q, BMC calls %q; want %q and no login", res.Error, f.Calls(), c.err)
				}
			} else if cr := f.Credentials(); res.Error != "" || len(cr) != 1 || cr[0].User != c.user {
				t.Errorf("error %q, logins %v; want one as %s", res.Error, cr, c.user)
			} else if c.user == "root" && cr[0].Password != "filepa55:with:colons" {
				t.Error("the password with colons was cut")
			}
			noSecret(t, r, fmt.Sprintf("%+v", res))
		})
	}
}

// TestInstallRetriedByPowerCycle: an install that misses its deadline is
// power-cycled into PXE again, install_retries times, each retry an event,
// then the node fails.
func TestInstallRetriedByPowerCycle(t *testing.T) {
	site := loadSite(t, "bmc {\n  user = \"admin\"\n  timeout = \"200ms\"\n  install_retries = 2\n}\n")
	r := newPowerRig(t, site)
	r.window = func(inventory.Node) time.Duration { return 300 * time.Millisecond }
	r.inv.Retrier = r.Power
	f := r.lab.Add("10.0.9.11", &bmctest.BMC{Power: bmc.On})
	n := r.enroll(t, "52:54:00:00:00:01", "ipmi://10.0.9.11", "", "efi-x64", nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.inv.RunDeadlines(ctx)
	if _, _, err := r.inv.StartInstall(ctx, n.MAC, netip.Addr{}, 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, _ = r.inv.Node(n.MAC)
		if n.State == inventory.Failed || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.Wait()
	if n.State != inventory.Failed || n.Reason != "installer not booted in time after 2 power-cycle retries" {
		t.Fatalf("node %s %q", n.State, n.Reason)
	}
	var retries, cycles []string
	for _, c := range r.notes(t, n.MAC) {
		if strings.Contains(c, "power install") {
			cycles = append(cycles, c)
		}
	}
	for _, e := range n.History {
		if strings.Contains(e.Cause, "retry") {
			retries = append(retries, e.Cause)
		}
	}
	if len(retries) != 2 || len(cycles) != 2 {
		t.Errorf("retries %q, power events %q; want two of each", retries, cycles)
	}
	if got := strings.Count(strings.Join(f.Calls(), ","), "boot pxe uefi,power cycle"); got != 2 {
		t.Errorf("BMC calls %q: want two PXE boots each with a power cycle", f.Calls())
	}
}

// TestRetirePowersOff: with power_off_on_retire, "power off" is one of
// retire's steps, pending like the others, and the teardown runs it.
func TestRetirePowersOff(t *testing.T) {
	site := loadSite(t, "bmc {\n  user = \"admin\"\n  power_off_on_retire = true\n}\n")
	r := newPowerRig(t, site)
	f := r.lab.Add("10.0.9.11", &bmctest.BMC{Power: bmc.On})
	ops := &clusterOps{site: site, inv: r.inv, power: r.Power, log: slog.New(slog.DiscardHandler)}
	r.inv.RetireSteps = ops.retireSteps
	with := r.enroll(t, "52:54:00:00:00:01", "ipmi://10.0.9.11", "", "", nil)
	without := r.enroll(t, "52:54:00:00:00:02", "", "", "", nil)
	ctx := context.Background()
	n, err := r.inv.Retire(ctx, with.MAC, "test")
	if err != nil || strings.Join(n.Pending, ",") != "power off" {
		t.Fatalf("retire: pending %q, %v", n.Pending, err)
	}
	if m, _ := r.inv.Retire(ctx, without.MAC, "test"); len(m.Pending) != 0 {
		t.Errorf("a node without a BMC has pending %q", m.Pending)
	}
	ops.teardown(ctx, n)
	n, _ = r.inv.Node(n.MAC)
	if n.State != inventory.Retired || f.State() != bmc.Off {
		t.Fatalf("node %s, power %s", n.State, f.State())
	}
	if got := strings.Join(r.notes(t, n.MAC), " | "); got != "power off via ipmi://10.0.9.11: power off: done (was on) | retire: bmc: powered off" {
		t.Errorf("events %q", got)
	}
}

// TestPowerSerializesPerNode: a node's second action waits for its first
// (a hung BMC holds up its own node only), and another node's does not.
func TestPowerSerializesPerNode(t *testing.T) {
	r := newPowerRig(t, loadSite(t, "bmc {\n  user = \"admin\"\n  timeout = \"100ms\"\n}\n"))
	hung := r.lab.Add("10.0.9.11", &bmctest.BMC{Hang: true})
	r.lab.Add("10.0.9.12", &bmctest.BMC{})
	a := r.enroll(t, "52:54:00:00:00:01", "ipmi://10.0.9.11", "", "", nil)
	b := r.enroll(t, "52:54:00:00:00:02", "ipmi://10.0.9.12", "", "", nil)
	go r.Act(context.Background(), a, api.PowerOn, "test")
	<-hung.Hanging()
	start := time.Now()
	if res := r.Act(context.Background(), b, api.PowerOn, "test"); res.Error != "" || time.Since(start) > time.Second {
		t.Errorf("another node's action: %q after %v", res.Error, time.Since(start))
	}
	// The same node's second action waits for the hung one, then fails
	// on its own.
	res := r.Act(context.Background(), a, api.PowerOff, "test")
	if res.Error == "" || strings.Count(strings.Join(hung.Calls(), ","), "open") != 2 {
		t.Errorf("second action on the hung node: %q, calls %q", res.Error, hung.Calls())
	}
}

// TestBMCCredentialsFromVault: vault:<mount>/<path> is read from a real
// Vault (1.14.1, dev mode: KV v2 at secret/) with bootstrapd's token; a
// missing secret or one without the fields says what to write.
func TestBMCCredentialsFromVault(t *testing.T) {
	srv := clustertest.StartVault(t)
	vc, err := vaultapi.NewClient(&vaultapi.Config{Address: srv.Addr})
	if err != nil {
		t.Fatal(err)
	}
	vc.SetToken(srv.RootToken)
	ctx := context.Background()
	if _, err := vc.KVv2("secret").Put(ctx, "bmc/n1", map[string]any{"user": "root", "password": "vaultpa55"}); err != nil {
		t.Fatal(err)
	}
	if _, err := vc.KVv2("secret").Put(ctx, "bmc/half", map[string]any{"username": "root"}); err != nil {
		t.Fatal(err)
	}
	t.Setenv("VAULT_TOKEN", srv.RootToken)
	site := loadSite(t, fmt.Sprintf("vault {\n  address = %q\n}\n", srv.Addr))
	cases := []struct {
		ref, user, err string
	}{
		{"vault:secret/bmc/n1", "root", ""},
		{"vault:secret/bmc/none", "", "no such secret in KV v2 mount secret; write it with `vault kv put -mount=secret bmc/none user=... password=...`"},
		{"vault:secret/bmc/half", "", "have no user and password fields"},
		{"vault:nomount/bmc/n1", "", "credentials vault:nomount/bmc/n1: "},
	}
	for _, c := range cases {
		t.Run(c.ref, func(t *testing.T) {
			r := newPowerRig(t, site)
			f := r.lab.Add("10.0.9.11", &bmctest.BMC{})
			n := r.enroll(t, "52:54:00:00:00:01", "ipmi://10.0.9.11", c.ref, "", nil)
			res := r.Act(ctx, n, api.PowerOn, "test")
			if c.err != "" {
				if !strings.Contains(res.Error, c.err) || len(f.Calls()) != 0 {
					t.Errorf("error %q, calls %q; want %q", res.Error, f.Calls(), c.err)
				}
			} else if cr := f.Credentials(); res.Error != "" || len(cr) != 1 || cr[0].User != c.user || cr[0].Password != "vaultpa55" {
				t.Errorf("error %q, logins %v", res.Error, cr)
			}
			noSecret(t, r, fmt.Sprintf("%+v", res))
			if strings.Contains(r.logs.String()+res.Error, "vaultpa55") || strings.Contains(r.logs.String(), srv.RootToken) {
				t.Error("a secret from Vault is in the log or the result")
			}
		})
	}
}
