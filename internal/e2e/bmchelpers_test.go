package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bootstrapd/bootstrapd/internal/bmc/redfishtest"
	"github.com/bootstrapd/bootstrapd/internal/inventory"
	"github.com/bootstrapd/bootstrapd/internal/netlab"
)

// bmcLab is a lab whose bootstrapd has a bmc block and boots the netlab
// test kernel (an install that reports back in about half a minute), and
// which keeps every CLI output it saw: the BMC password must be in none.
type bmcLab struct {
	lab    *netlab.Lab
	d      *daemon
	dir    string
	prefix string // "10.85.0": the lab is PREFIX.1/24

	mu      sync.Mutex
	outputs []string
}

// newBMCLab makes the lab PREFIX.1/24 and a site directory; start runs
// bootstrapd there. Between the two, BMC stand-ins can be set up in the
// lab, and their certificates' fingerprints put in the bmc block.
func newBMCLab(t *testing.T, prefix string) *bmcLab {
	t.Helper()
	return &bmcLab{lab: netlab.NewLab(t, prefix+".1/24"), dir: t.TempDir(), prefix: prefix}
}

// start runs bootstrapd in reservation mode with the site's bmc block
// body given; a non-empty password is written to bmc-password in the
// site directory (0600) for the block's password_file to name.
func (b *bmcLab) start(t *testing.T, bmcBody, password string) {
	t.Helper()
	if password != "" {
		b.writeBMCPassword(t, "bmc-password", password)
	}
	writeSite(t, b.lab, b.dir, fmt.Sprintf(`  mode = "reservation"
  subnet = "%s.0/24"`, b.prefix), fmt.Sprintf(`default_profile = "netlab"
bmc {
%s
}`, bmcBody))
	withBootFixture(t, b.dir)
	b.d = startDaemon(t, b.lab, b.dir)
	// iPXE waits ~14 s for IPv6 autoconfiguration without a router
	// advertisement; a real lab router sends them.
	b.lab.StartRA(t)
}

// startBMCLab is newBMCLab then start.
func startBMCLab(t *testing.T, prefix, bmcBody, password string) *bmcLab {
	t.Helper()
	b := newBMCLab(t, prefix)
	b.start(t, bmcBody, password)
	return b
}

// serveRedfish serves the Redfish stand-in over HTTPS on the lab's
// address at port until the test ends, and returns it with its
// redfish:// URL.
func (b *bmcLab) serveRedfish(t *testing.T, port int, o redfishtest.Options) (*redfishtest.Server, string) {
	t.Helper()
	srv, err := redfishtest.New(o)
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort(b.lab.Addr.String(), fmt.Sprint(port))
	l := b.lab.Listen(t, "tcp", addr)
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return srv, "redfish://" + addr
}

// writeBMCPassword writes a password file (0600, no newline) in the site
// directory and returns its path.
func (b *bmcLab) writeBMCPassword(t *testing.T, name, password string) string {
	t.Helper()
	p := filepath.Join(b.dir, name)
	if err := os.WriteFile(p, []byte(password), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// cli runs a bootstrapd command and keeps its output.
func (b *bmcLab) cli(t *testing.T, args ...string) (string, error) {
	t.Helper()
	out, err := b.d.cli(t, args...)
	b.mu.Lock()
	b.outputs = append(b.outputs, "$ bootstrapd "+strings.Join(args, " ")+"\n"+out)
	b.mu.Unlock()
	return out, err
}

func (b *bmcLab) mustCLI(t *testing.T, args ...string) string {
	t.Helper()
	out, err := b.cli(t, args...)
	if err != nil {
		t.Fatalf("bootstrapd %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// node is the node's record, history included.
func (b *bmcLab) node(t *testing.T, mac string) inventory.Node {
	t.Helper()
	return node(t, b.d, mac)
}

// waitEvent waits until a line of `bootstrapd events -node MAC` (the
// node's name, then what happened and who did it) holds every one of the
// substrings, and returns that line.
func (b *bmcLab) waitEvent(t *testing.T, mac string, timeout time.Duration, substrs ...string) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		out, _ := b.d.cli(t, "events", "-node", mac)
		for _, line := range strings.Split(out, "\n") {
			all := true
			for _, s := range substrs {
				all = all && strings.Contains(line, s)
			}
			if all {
				return line
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no event of %s with %q in %v; its events:\n%s", mac, substrs, timeout, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// powerState is what `power status -json` says of the node's power
// ("on", "off"), or the whole output when it says no state.
func (b *bmcLab) powerState(t *testing.T, node string) string {
	t.Helper()
	out := b.mustCLI(t, "power", "status", node, "-json")
	var r struct{ State, Error string }
	if err := json.Unmarshal([]byte(out), &r); err != nil || r.State == "" {
		return out
	}
	return r.State
}

// assertNoSecret fails if secret appears in bootstrapd's log, any CLI
// output this lab saw, the event log, any node's record, or the command
// line of any process in the lab's namespace (bootstrapd, ipmi_sim, the
// VMs) or of this test process.
func (b *bmcLab) assertNoSecret(t *testing.T, secret string) {
	t.Helper()
	if secret == "" {
		t.Fatal("assertNoSecret: empty secret")
	}
	where := map[string]string{"bootstrapd's log": b.d.log.String()}
	events, _ := b.d.cli(t, "events")
	where["bootstrapd events"] = events
	nodes, _ := b.d.cli(t, "nodes", "-json")
	where["bootstrapd nodes -json"] = nodes
	for _, mac := range macsIn(nodes) {
		out, _ := b.d.cli(t, "node", "show", mac, "-json")
		where["node show "+mac] = out
	}
	b.mu.Lock()
	where["the CLI's outputs"] = strings.Join(b.outputs, "\n")
	b.mu.Unlock()
	pids := append(nsPIDs(b.lab.Name()), os.Getpid())
	for _, pid := range pids {
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		where[fmt.Sprintf("argv of pid %d (%s)", pid, strings.ReplaceAll(string(cmdline), "\x00", " "))] = string(cmdline)
	}
	for name, text := range where {
		if strings.Contains(text, secret) {
			t.Errorf("the BMC password appears in %s", name)
		}
	}
	if len(pids) < 2 {
		t.Errorf("no process found in the lab's namespace (bootstrapd runs there)")
	}
}

// macsIn finds the "mac" values in nodes -json output.
func macsIn(nodesJSON string) []string {
	var macs []string
	for _, f := range strings.Split(nodesJSON, `"mac":"`)[1:] {
		if i := strings.IndexByte(f, '"'); i > 0 {
			macs = append(macs, f[:i])
		}
	}
	return macs
}

// nsPIDs lists the processes in a network namespace.
func nsPIDs(ns string) []int {
	out, _ := exec.Command("ip", "netns", "pids", ns).Output()
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		var pid int
		if _, err := fmt.Sscan(f, &pid); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// probeServices checks that bootstrapd still serves nodes: a host on the
// LAN, enrolled for it, gets a DHCP lease, fetches an iPXE binary over
// TFTP and the boot script over HTTP. It returns an error rather than failing, so it can run from
// a goroutine while a BMC call hangs.
func (b *bmcLab) probeServices(ctx context.Context, host *netlab.Host) error {
	lease, err := host.UDHCPC(ctx)
	if err != nil {
		return fmt.Errorf("DHCP: %w", err)
	}
	if lease["serverid"] != b.lab.Addr.String() {
		return fmt.Errorf("DHCP lease from %s, want %s", lease["serverid"], b.lab.Addr)
	}
	tftp := host.Command(ctx, "busybox", "tftp", "-g", "-r", "undionly.kpxe", "-l", "/dev/null", b.lab.Addr.String())
	if out, err := tftp.CombinedOutput(); err != nil {
		return fmt.Errorf("TFTP: %v: %s", err, out)
	}
	client := b.lab.HTTPClient()
	client.Timeout = 5 * time.Second
	resp, err := client.Get("http://" + b.lab.Addr.String() + ":8080/boot.ipxe")
	if err != nil {
		return fmt.Errorf("HTTP: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(string(body), "#!ipxe") {
		return fmt.Errorf("HTTP /boot.ipxe: %s %.80q", resp.Status, body)
	}
	return nil
}
