package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pin/tftp/v3"

	"github.com/bootstrapd/bootstrapd/internal/api"
	"github.com/bootstrapd/bootstrapd/internal/bmc"
	"github.com/bootstrapd/bootstrapd/internal/bmc/bmctest"
	"github.com/bootstrapd/bootstrapd/internal/config"
	"github.com/bootstrapd/bootstrapd/internal/inventory"
	"github.com/bootstrapd/bootstrapd/internal/netlab"
)

// freePort is a loopback port nothing listens on, for tcp4 or udp4.
func freePort(t *testing.T, network string) string {
	return fmt.Sprintf("127.0.0.1:%d", netlab.FreePort(t, strings.TrimSuffix(network, "4")))
}

// runDaemon runs the daemon on loopback (no DHCP) with fake BMCs until
// the test ends, and returns a client, its node HTTP and TFTP addresses,
// and its log.
func runDaemon(t *testing.T, lab *bmctest.Lab, bmcBlock string) (*api.Client, string, string, *logBuf) {
	t.Helper()
	dir := t.TempDir()
	httpAddr, tftpAddr := freePort(t, "tcp4"), freePort(t, "udp4")
	files := map[string]string{
		"netboot/undionly.kpxe": "bios", "netboot/snponly.efi": "efi", "netboot/demo/vmlinuz": "kernel",
		"profiles/demo.hcl": "profile \"demo\" {\n  kernel = \"demo/vmlinuz\"\n  cmdline = \"console=ttyS0\"\n}\n",
		"site.hcl": fmt.Sprintf("interface = \"lo\"\nserver_address = \"127.0.0.1\"\nstate_dir = \"state\"\ndefault_profile = \"demo\"\n"+
			"dhcp {\n  mode = \"off\"\n}\nhttp {\n  listen = %q\n}\ntftp {\n  listen = %q\n}\napi {\n  socket = \"api.sock\"\n}\n%s", httpAddr, tftpAddr, bmcBlock),
	}
	for name, body := range files {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv(config.BMCPasswordEnv, bmcPassword)
	site, err := config.Load(filepath.Join(dir, "site.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	logs := &logBuf{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, site, slog.New(slog.NewTextHandler(logs, nil)), Options{OpenBMC: lab.Open, Wake: (&wakes{}).wake})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("daemon: %v", err)
		}
	})
	c, err := api.NewClient("unix://"+site.API.Socket, "")
	if err != nil {
		t.Fatal(err)
	}
	for start := time.Now(); ; time.Sleep(20 * time.Millisecond) {
		if _, err := c.Nodes(ctx); err == nil {
			break
		} else if time.Since(start) > 10*time.Second {
			t.Fatalf("daemon not up: %v\n%s", err, logs)
		}
	}
	return c, httpAddr, tftpAddr, logs
}

// TestServingWhileABMCHangs: with a node's BMC hung in a power action,
// node HTTP, TFTP and the admin API answer at once, and the action fails
// after the timeout with an error naming the node and the BMC.
func TestServingWhileABMCHangs(t *testing.T) {
	lab := &bmctest.Lab{}
	hung := lab.Add("10.0.9.11", &bmctest.BMC{Hang: true})
	c, httpAddr, tftpAddr, logs := runDaemon(t, lab, "bmc {\n  user = \"admin\"\n  timeout = \"500ms\"\n}\n")
	ctx := context.Background()
	if _, err := c.Enroll(ctx, api.EnrollRequest{MAC: "52:54:00:00:00:01", BMC: "ipmi://10.0.9.11"}); err != nil {
		t.Fatal(err)
	}
	failed := make(chan error, 1)
	go func() {
		_, err := c.Power(ctx, "n1", api.PowerRequest{Action: api.PowerCycle})
		failed <- err
	}()
	<-hung.Hanging()
	start := time.Now()
	resp, err := http.Get("http://" + httpAddr + "/boot.ipxe")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "#!ipxe") {
		t.Errorf("boot.ipxe: %s %q", resp.Status, body)
	}
	tc, err := tftp.NewClient(tftpAddr)
	if err != nil {
		t.Fatal(err)
	}
	wt, err := tc.Receive("undionly.kpxe", "octet")
	if err != nil {
		t.Fatalf("TFTP while the BMC hangs: %v", err)
	}
	var got strings.Builder
	if _, err := wt.WriteTo(&got); err != nil || got.String() != "bios" {
		t.Errorf("TFTP: %q, %v", got.String(), err)
	}
	if _, err := c.Nodes(ctx); err != nil {
		t.Errorf("admin API while the BMC hangs: %v", err)
	}
	if took := time.Since(start); took > 400*time.Millisecond {
		t.Errorf("serving took %v while the BMC hung", took)
	}
	select {
	case err := <-failed:
		if err == nil || !strings.Contains(err.Error(), "power cycle n1 (52:54:00:00:00:01), BMC ipmi://10.0.9.11: the BMC did not answer in time") {
			t.Errorf("power cycle of a hung BMC: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the power action was not bounded by the timeout")
	}
	if strings.Contains(logs.String(), bmcPassword) {
		t.Error("the log shows the BMC password")
	}
}

// TestPowerThroughTheAPI: enroll -power, power status/off, a wrong
// password, node bmc: what the API answers and records; no answer, event
// or log line holds a password.
func TestPowerThroughTheAPI(t *testing.T) {
	lab := &bmctest.Lab{}
	f := lab.Add("10.0.9.11", &bmctest.BMC{User: "admin", Password: bmcPassword})
	wrong := lab.Add("10.0.9.12", &bmctest.BMC{User: "admin", Password: "another"})
	c, _, _, logs := runDaemon(t, lab, "bmc {\n  user = \"admin\"\n  timeout = \"500ms\"\n  power_on_enroll = true\n}\n")
	ctx := context.Background()

	// The site's power_on_enroll powers a node with a BMC into PXE.
	r, err := c.Enroll(ctx, api.EnrollRequest{MAC: "52:54:00:00:00:01", BMC: "ipmi://10.0.9.11", Labels: map[string]string{"firmware": "bios"}})
	if err != nil || r.Power == nil || r.Power.Error != "" || f.State() != bmc.On {
		t.Fatalf("enroll: %+v %v, power %s", r.Power, err, f.State())
	}
	if calls := strings.Join(f.Calls(), ", "); calls != "open, state, boot pxe legacy, power on, close" {
		t.Errorf("calls %q", calls)
	}
	if last := r.History[len(r.History)-1].Cause; !strings.HasPrefix(last, "power install via ipmi://10.0.9.11: next boot: PXE, legacy, once") {
		t.Errorf("the reply's history ends with %q", last)
	}
	// -power=false overrides the site.
	if r, err := c.Enroll(ctx, api.EnrollRequest{MAC: "52:54:00:00:00:03", Hostname: "n3", BMC: "ipmi://10.0.9.11", Power: new(bool)}); err != nil || r.Power != nil {
		t.Errorf("enroll -power=false: %+v %v", r.Power, err)
	}

	st, err := c.Power(ctx, "n1", api.PowerRequest{Action: api.PowerStatus})
	if err != nil || st.State != "on" {
		t.Errorf("status: %+v %v", st, err)
	}
	if _, err := c.Power(ctx, "n1", api.PowerRequest{Action: api.PowerOff}); err != nil || f.State() != bmc.Off {
		t.Errorf("off: %v, %s", err, f.State())
	}

	// A wrong password: enroll stands, the power result says why.
	r, err = c.Enroll(ctx, api.EnrollRequest{MAC: "52:54:00:00:00:02", Hostname: "n2", BMC: "ipmi://10.0.9.12"})
	if err != nil || r.Power == nil || !strings.Contains(r.Power.Error, "power install n2 (52:54:00:00:00:02), BMC ipmi://10.0.9.12: the BMC refused the user name or password") {
		t.Errorf("enroll with a wrong password: %+v %v", r.Power, err)
	}
	if _, err := c.Power(ctx, "n2", api.PowerRequest{Action: api.PowerOn}); err == nil || !strings.Contains(err.Error(), "BMC ipmi://10.0.9.12") {
		t.Errorf("power on with a wrong password: %v", err)
	}
	if len(wrong.Calls()) != 2 {
		t.Errorf("calls %q", wrong.Calls())
	}

	// Refused before anything is done.
	for _, req := range []api.EnrollRequest{
		{MAC: "52:54:00:00:00:09", BMC: "ipmi://admin:" + bmcPassword + "@10.0.9.19"},
		{MAC: "52:54:00:00:00:09", BMC: "ipmi://10.0.9.19", BMCCredentials: "admin:" + bmcPassword},
		{MAC: "52:54:00:00:00:09", Power: func() *bool { b := true; return &b }()},
		{MAC: "52:54:00:00:00:09", BMC: "redfish+http://10.0.9.19"},
		{MAC: "52:54:00:00:00:09", Labels: map[string]string{"firmware": "coreboot"}},
	} {
		if _, err := c.Enroll(ctx, req); err == nil || strings.Contains(err.Error(), bmcPassword) {
			t.Errorf("enroll %+v: %v", req, err)
		}
	}
	if _, err := c.Power(ctx, "n9", api.PowerRequest{Action: api.PowerOn}); err == nil {
		t.Error("power on an unknown node")
	}
	if _, err := c.Power(ctx, "n1", api.PowerRequest{Action: "reboot"}); err == nil {
		t.Error("an unknown action was taken")
	}

	// node bmc: set with a file reference, then remove.
	n, err := c.SetBMC(ctx, "n3", api.BMCRequest{URL: "redfish://10.0.9.13", Credentials: "file:/etc/bootstrapd/bmc/n3"})
	if err != nil || n.BMC == nil || n.BMC.Credentials != "file:/etc/bootstrapd/bmc/n3" {
		t.Fatalf("node bmc: %+v %v", n.BMC, err)
	}
	if n, err = c.SetBMC(ctx, "n3", api.BMCRequest{}); err != nil || n.BMC != nil {
		t.Errorf("node bmc none: %+v %v", n.BMC, err)
	}
	if _, err := c.Power(ctx, "n3", api.PowerRequest{Action: api.PowerOn}); err == nil || !strings.Contains(err.Error(), "has no BMC") {
		t.Errorf("power on without a BMC: %v", err)
	}

	// Nothing the API or the log shows holds the password.
	nodes, _ := c.Nodes(ctx)
	var events []string
	c.Events(ctx, api.EventQuery{}, func(e inventory.LogEvent) error {
		b, _ := json.Marshal(e)
		events = append(events, string(b))
		return nil
	})
	out, _ := json.Marshal(nodes)
	for name, s := range map[string]string{"nodes": string(out), "events": strings.Join(events, "\n"), "log": logs.String()} {
		if strings.Contains(s, bmcPassword) {
			t.Errorf("%s show the BMC password", name)
		}
	}
	if !strings.Contains(strings.Join(events, "\n"), "power off via ipmi://10.0.9.11") {
		t.Errorf("no power off event in %s", strings.Join(events, "\n"))
	}
}
