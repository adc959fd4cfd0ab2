package e2e

import (
	"archive/tar"
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/bootstrapd/bootstrapd/internal/inventory"
	"github.com/bootstrapd/bootstrapd/internal/netlab"
)

// fakeProfiles boot no real kernel: these tests play the node's part over
// HTTP, which is all the daemon sees of it.
const fakeProfiles = `profile "normal" {
  description     = "an hour to install"
  kernel          = "vmlinuz"
  cmdline         = "bootstrapd.report={{.StatusURL}} autourl={{.ConfigURL}}/node.cfg"
  install_timeout = "1h"
  templates       = { "node.cfg" = "node.cfg.tmpl" }
  nomad {
    datacenter = "lab"
  }
}
profile "quick" {
  description     = "fails unless it reports within 4s"
  kernel          = "vmlinuz"
  cmdline         = "bootstrapd.report={{.StatusURL}}"
  install_timeout = "4s"
  local_boot      = "sanboot"
}
`

func lifecycleSite(t *testing.T, lab *netlab.Lab) string {
	t.Helper()
	dir := t.TempDir()
	writeSite(t, lab, dir, `  mode   = "reservation"
  subnet = "10.97.0.0/24"`, `default_profile = "normal"
nomad {
  servers = ["10.97.0.10:4647"]
}
node {
  authorized_keys = "keys"
}`)
	os.WriteFile(filepath.Join(dir, "keys"), []byte("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAtest operator@laptop\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "netboot", "vmlinuz"), []byte("not a kernel"), 0o644)
	os.WriteFile(filepath.Join(dir, "profiles", "fake.hcl"), []byte(fakeProfiles), 0o644)
	os.WriteFile(filepath.Join(dir, "profiles", "node.cfg.tmpl"), []byte("hostname={{.Hostname}} rack={{index .Labels \"rack\"}} dc={{.Nomad.Datacenter}}\n"), 0o644)
	return dir
}

// nodeClient is an HTTP client whose requests come from the node's
// reserved address (added to the lab's bridge), as the node's would: its
// install script and token are served only there.
func nodeClient(t *testing.T, lab *netlab.Lab, d *daemon, mac string) *http.Client {
	t.Helper()
	ip := node(t, d, mac).IP
	if out, err := exec.Command("ip", "-n", lab.Name(), "addr", "add", ip.String()+"/32", "dev", lab.Bridge).CombinedOutput(); err != nil && !strings.Contains(string(out), "exists") {
		t.Fatalf("address %s for %s: %v %s", ip, mac, err, out)
	}
	return &http.Client{Transport: &http.Transport{DialContext: lab.DialFrom(ip), DisableKeepAlives: true}, Timeout: 30 * time.Second}
}

// bootInstaller does what a node's iPXE does: fetch its script. It returns
// the status URL (with the node's token) from the kernel command line.
func bootInstaller(t *testing.T, client *http.Client, mac string) string {
	t.Helper()
	resp, err := client.Get("http://10.97.0.1:8080/ipxe?mac=" + url.QueryEscape(mac))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	script, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`bootstrapd\.report=(\S+)`).FindSubmatch(script)
	if m == nil {
		t.Fatalf("no install script for %s:\n%s", mac, script)
	}
	return string(m[1])
}

func report(t *testing.T, client *http.Client, statusURL, mac, status string) int {
	t.Helper()
	resp, err := client.PostForm(statusURL, url.Values{"mac": {mac}, "status": {status}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestCLI(t *testing.T) {
	lab := netlab.NewLab(t, "10.97.0.1/24")
	d := startDaemon(t, lab, lifecycleSite(t, lab))

	d.mustCLI(t, "enroll", "52:54:00:97:00:02", "-hostname", "web2", "-ip", "10.97.0.12")
	d.mustCLI(t, "enroll", "52-54-00-97-00-01", "-hostname", "web1", "-ip", "10.97.0.11", "-profile", "quick")
	d.mustCLI(t, "enroll", "525400970003")

	// Golden table; SINCE is a duration, so it is normalised.
	got := regexp.MustCompile(`\d+s ago`).ReplaceAllString(d.mustCLI(t, "nodes"), "Ns ago")
	want := `HOSTNAME  MAC                IP           STATE     PROFILE  SINCE
n1        52:54:00:97:00:03  10.97.0.128  enrolled  normal   Ns ago
web1      52:54:00:97:00:01  10.97.0.11   enrolled  quick    Ns ago
web2      52:54:00:97:00:02  10.97.0.12   enrolled  normal   Ns ago
`
	if got != want {
		t.Errorf("nodes:\n%s\nwant:\n%s", got, want)
	}
	var nodes []inventory.Node
	if err := json.Unmarshal([]byte(d.mustCLI(t, "nodes", "-json")), &nodes); err != nil || len(nodes) != 3 || nodes[1].BootMethod != "sanboot" {
		t.Fatalf("nodes -json: %v %+v", err, nodes)
	}

	// Duplicates name the node that holds what was asked for.
	for _, c := range []struct{ args, want string }{
		{"52:54:00:97:00:01", "already enrolled as web1"},
		{"52:54:00:97:00:09 -hostname web2", "hostname web2 is taken by 52:54:00:97:00:02"},
		{"52:54:00:97:00:09 -ip 10.97.0.11", "address 10.97.0.11 is reserved for web1 (52:54:00:97:00:01)"},
		{"52:54:00:97:00:09 -profile nope", `no profile named "nope"`},
		{"not-a-mac", "is not an Ethernet MAC address"},
	} {
		out, err := d.cli(t, append([]string{"enroll"}, strings.Fields(c.args)...)...)
		if err == nil || !strings.Contains(out, c.want) {
			t.Errorf("enroll %s: %v %q, want it to say %q", c.args, err, out, c.want)
		}
	}

	// enroll -wait follows the node until it is installed.
	cmd := exec.Command(d.bin, "enroll", "52:54:00:97:00:04", "-hostname", "web4", "-label", "rack=r2", "-wait")
	cmd.Env = append(os.Environ(), "BOOTSTRAPD_ADDR=unix://"+d.sock)
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(stdout)
	expectLine := func(want string) {
		t.Helper()
		for lines.Scan() {
			if strings.Contains(lines.Text(), want) {
				return
			}
		}
		t.Fatalf("enroll -wait never printed %q", want)
	}
	expectLine("waiting for web4 to be installed")
	client := nodeClient(t, lab, d, "52:54:00:97:00:04")
	status := bootInstaller(t, client, "52:54:00:97:00:04")
	expectLine("enrolled -> installing: booted the installer")
	// The installer fetches its rendered config with the same token.
	for url, want := range map[string]string{
		strings.TrimSuffix(status, "/status") + "/config/node.cfg": "hostname=web4 rack=r2 dc=lab\n",
		"http://10.97.0.1:8080/install/forged/config/node.cfg":     "unknown or expired install token\n",
	} {
		resp, err := client.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != want {
			t.Errorf("GET %s: %d %q, want %q", url, resp.StatusCode, body, want)
		}
	}
	if code := report(t, client, status, "52:54:00:97:00:04", "installing: packages"); code != 200 {
		t.Fatalf("progress report: %d", code)
	}
	expectLine("web4: installing: packages [node]")

	// The join bundle: a tar to unpack over the new root, handed out once.
	joinURL := strings.TrimSuffix(status, "/status") + "/join"
	resp, err := client.Post(joinURL, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{}
	tr := tar.NewReader(resp.Body)
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		body, _ := io.ReadAll(tr)
		files[fmt.Sprintf("%s %o", h.Name, h.Mode)] = string(body)
	}
	resp.Body.Close()
	if !strings.Contains(files["etc/nomad.d/20-join.hcl 640"], `servers = ["10.97.0.10:4647"]`) ||
		!strings.HasPrefix(files["root/.ssh/authorized_keys 600"], "ssh-ed25519 ") || len(files) != 6 {
		t.Errorf("join bundle: %v", files)
	}
	if _, ok := files["root/.ssh/ 700"]; !ok {
		t.Errorf("join bundle without root/.ssh 0700: %v", files)
	}
	// (A second claim voids the bundle: internal/pxe tests it.)
	report(t, client, status, "52:54:00:97:00:04", "installed")
	expectLine("web4 is installed after")
	if err := cmd.Wait(); err != nil {
		t.Fatalf("enroll -wait exited with %v", err)
	}

	// The event log, whole and for one node.
	events := d.mustCLI(t, "events", "-node", "web4")
	for _, want := range []string{"#", "web4 (52:54:00:97:00:04)", "- -> enrolled: enroll [api]", "installing -> installed: installer reported success [node]"} {
		if !strings.Contains(events, want) {
			t.Errorf("events -node web4 lacks %q:\n%s", want, events)
		}
	}
	if strings.Contains(events, "web1") {
		t.Errorf("events -node web4 shows other nodes:\n%s", events)
	}
	if out := d.mustCLI(t, "profiles"); !strings.Contains(out, "normal (default)") || !strings.Contains(out, "quick") {
		t.Errorf("profiles:\n%s", out)
	}

	// reinstall and retire.
	if out := d.mustCLI(t, "reinstall", "web4"); !strings.Contains(out, "reinstalls on its next PXE boot") {
		t.Errorf("reinstall: %s", out)
	}
	d.mustCLI(t, "retire", "web2")
	if n := node(t, d, "52:54:00:97:00:02"); n.State != inventory.Retired {
		t.Errorf("after retire: %s", n.State)
	}
	d.mustCLI(t, "enroll", "52:54:00:97:00:05", "-hostname", "web2", "-ip", "10.97.0.12") // both free again
	if out, err := d.cli(t, "retire", "nosuch"); err == nil || !strings.Contains(out, "neither a known MAC nor a hostname") {
		t.Errorf("retire unknown: %v %s", err, out)
	}

	// What happened above, as Prometheus sees it.
	resp, err = client.Get("http://10.97.0.1:8080/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`bootstrapd_nodes{state="enrolled"} 4`, // n1, web1, web4 (reinstalled), the new web2
		`bootstrapd_nodes{state="retired"} 1`,
		`bootstrapd_http_requests_total{code="200",route="ipxe"} 1`,
		`bootstrapd_http_requests_total{code="200",route="install"} 4`, // config, progress, join, installed
		`bootstrapd_http_requests_total{code="403",route="install"} 1`, // the forged token
		`bootstrapd_unanswered_total{proto="http",reason="http_403"} 1`,
		`bootstrapd_state_duration_seconds_count{state="installing",to="installed"} 1`,
		`bootstrapd_tftp_transfers_total{result="ok"} 0`,
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// TestEnrollWaitReportsFailure: -wait ends with an error when the node
// fails, here by its install deadline.
func TestEnrollWaitReportsFailure(t *testing.T) {
	lab := netlab.NewLab(t, "10.97.0.1/24")
	d := startDaemon(t, lab, lifecycleSite(t, lab))
	done := make(chan struct{})
	var out string
	var err error
	go func() {
		out, err = d.cli(t, "enroll", "52:54:00:97:00:01", "-profile", "quick", "-wait=installed")
		close(done)
	}()
	eventually(t, 10*time.Second, "node enrolled", func() bool {
		o, _ := d.cli(t, "nodes")
		return strings.Contains(o, "52:54:00:97:00:01")
	})
	bootInstaller(t, nodeClient(t, lab, d, "52:54:00:97:00:01"), "52:54:00:97:00:01")
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("enroll -wait did not return after the node failed")
	}
	if err == nil || !strings.Contains(out, "failed: install timed out") {
		t.Errorf("enroll -wait: %v\n%s", err, out)
	}
}

// TestKill9WhileInstalling: nodes mid-install survive SIGKILL. After a
// restart the lease, the state and the install token are intact, and the
// deadlines still run: the quick node fails on time, the other reports in.
func TestKill9WhileInstalling(t *testing.T) {
	lab := netlab.NewLab(t, "10.97.0.1/24")
	dir := lifecycleSite(t, lab)
	d := startDaemon(t, lab, dir)
	host := lab.AddHost(t, "")
	d.mustCLI(t, "enroll", host.MAC, "-hostname", "slow", "-ip", "10.97.0.20")
	d.mustCLI(t, "enroll", "52:54:00:97:00:09", "-hostname", "fast", "-profile", "quick")
	if lease, err := host.UDHCPC(context.Background(), "-t", "3", "-T", "1"); err != nil || lease["ip"] != "10.97.0.20" {
		t.Fatalf("lease: %v %v", lease, err)
	}
	client := host.HTTPClient()
	slowStatus := bootInstaller(t, client, host.MAC)
	bootInstaller(t, nodeClient(t, lab, d, "52:54:00:97:00:09"), "52:54:00:97:00:09")

	d.cmd.Process.Kill()
	<-d.done
	d = startDaemon(t, lab, dir)

	if n := node(t, d, host.MAC); n.State != inventory.Installing || n.Deadline.IsZero() {
		t.Errorf("slow after restart: %s, deadline %v", n.State, n.Deadline)
	}
	if l := leases(t, d)[host.MAC]; l.IP.String() != "10.97.0.20" || !l.Expires.After(time.Now()) {
		t.Errorf("lease after restart: %+v", l)
	}
	eventually(t, 10*time.Second, "the quick node's deadline", func() bool {
		return node(t, d, "52:54:00:97:00:09").State == inventory.Failed
	})
	if n := node(t, d, "52:54:00:97:00:09"); n.Reason != "install timed out" {
		t.Errorf("fast failed with %q", n.Reason)
	}
	if code := report(t, client, slowStatus, host.MAC, "installed"); code != 200 {
		t.Fatalf("the token minted before the crash was refused: %d", code)
	}
	if code := report(t, client, slowStatus, host.MAC, "installed"); code != 403 {
		t.Errorf("replayed token: %d, want 403", code)
	}
	if n := node(t, d, host.MAC); n.State != inventory.Installed {
		t.Errorf("slow: %s", n.State)
	}
}
