package e2e

import (
	"archive/tar"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/bootstrapd/bootstrapd/internal/cluster/clustertest"
	"github.com/bootstrapd/bootstrapd/internal/inventory"
	"github.com/bootstrapd/bootstrapd/internal/netlab"
)

const workerProfile = `profile "worker" {
  kernel          = "vmlinuz"
  cmdline         = "bootstrapd.report={{.StatusURL}}"
  install_timeout = "1h"
  nomad {
    datacenter = "dc1"
    node_pool  = "default"
    node_class = "ci"
    meta       = { concourse_worker = "true" }
  }
}
`

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestClusterEnrollment runs bootstrapd against real Vault and Nomad (ACLs
// on, client introduction strict): cluster init, then one node from
// enrolled to ready and back to retired. The node's install is played over
// HTTP (the PXE tests prove that part); its Nomad client agent runs from
// exactly the join bundle.
func TestClusterEnrollment(t *testing.T) {
	netlab.NeedRoot(t)
	nomad := clustertest.StartNomad(t)
	vault := clustertest.StartVault(t)
	dir, httpAddr := clusterSite(t, vault.Addr, vault.RootToken, nomad.Addr, nomad.RPC, nomad.Token)

	d := &daemon{bin: binary(t)}
	initOut, err := d.cli(t, "cluster", "init", "-config", filepath.Join(dir, "site.hcl"))
	if err != nil || !strings.Contains(initOut, "concourse-worker") {
		t.Fatalf("cluster init: %v\n%s", err, initOut)
	}
	if again, err := d.cli(t, "cluster", "init", "-config", filepath.Join(dir, "site.hcl")); err != nil || !strings.Contains(again, "No changes") {
		t.Errorf("second cluster init: %v\n%s", err, again)
	}
	// Workload identity as `nomad setup vault` sets it up: Vault trusts the
	// servers' JWKS and the worker job's tasks get the worker policy.
	for _, want := range []string{"enabled JWT auth at jwt-nomad/", "created JWT auth config (jwks_url " + nomad.Addr + "/.well-known/jwks.json)", "created JWT role concourse-worker"} {
		if !strings.Contains(initOut, want) {
			t.Errorf("cluster init did not say %q:\n%s", want, initOut)
		}
	}

	// Doctor notices a site that would leave nodes without the
	// introduction token these servers insist on.
	noIntro := filepath.Join(dir, "no-intro.hcl")
	site, _ := os.ReadFile(filepath.Join(dir, "site.hcl"))
	os.WriteFile(noIntro, []byte(strings.Replace(string(site), "introduction    = true", "introduction    = false", 1)), 0o644)
	if out, err := d.cli(t, "doctor", "-config", noIntro); err == nil || !strings.Contains(out, "FAIL nomad") || !strings.Contains(out, "introduction = true") {
		t.Errorf("doctor with introduction off against strict servers: %v\n%s", err, out)
	}

	d = startDaemon(t, nil, dir)
	const mac = "52:54:00:c1:00:01"
	d.mustCLI(t, "enroll", mac, "-hostname", "n1")
	client := &http.Client{Timeout: 30 * time.Second}
	status := installScript(t, client, httpAddr, mac)
	joinURL := strings.TrimSuffix(status, "/status") + "/join"
	report(t, client, status, mac, "installing: packages")

	// The join bundle: client config, introduction token, wrapped token.
	resp, err := client.PostForm(joinURL, url.Values{"mac": {mac}})
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("join: %v %v", err, resp.Status)
	}
	files := map[string][]byte{}
	tr := tar.NewReader(resp.Body)
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		b, _ := io.ReadAll(tr)
		if h.Typeflag == tar.TypeReg {
			files[h.Name] = b
			if h.Mode&0o077 != 0 && !strings.HasSuffix(h.Name, ".hcl") {
				t.Errorf("%s has mode %o", h.Name, h.Mode)
			}
		}
	}
	resp.Body.Close()
	hcl, intro, wrapped := files["etc/nomad.d/20-join.hcl"], string(files["var/lib/nomad/client/intro_token.jwt"]), strings.TrimSpace(string(files["etc/bootstrapd/vault-token.wrapped"]))
	if len(hcl) == 0 || intro == "" || wrapped == "" {
		t.Fatalf("join bundle: %v", keys(files))
	}
	if again, _ := client.PostForm(joinURL, url.Values{"mac": {mac}}); again == nil || again.StatusCode != http.StatusGone {
		t.Errorf("second claim: %v", again)
	}
	report(t, client, status, mac, "installed")

	// The worker key is in Vault before the node joins.
	vc, _ := vaultapi.NewClient(&vaultapi.Config{Address: vault.Addr})
	vc.SetToken(vault.RootToken)
	if s, err := vc.Logical().Read("kv/data/concourse/workers/n1"); err != nil || s == nil {
		t.Fatalf("worker key: %v %v", s, err)
	}

	// The node boots from disk: its Nomad client starts from the bundle.
	agent := clustertest.StartClient(t, nomad, hcl, intro)
	eventually(t, 90*time.Second, "n1 ready", func() bool { return nodeState(t, d, "n1") == inventory.Ready })

	// The wrapped token unwraps once, to a token whose accessor bootstrapd
	// recorded.
	n := nodeJSON(t, d, "n1")
	unwrapper, _ := vaultapi.NewClient(&vaultapi.Config{Address: vault.Addr})
	unwrapper.SetToken("")
	sec, err := unwrapper.Logical().Unwrap(wrapped)
	if err != nil || sec == nil || sec.Auth == nil || sec.Auth.Accessor != n.VaultAccessor {
		t.Fatalf("unwrap: %v %+v (recorded accessor %q)", err, sec, n.VaultAccessor)
	}
	if _, err := unwrapper.Logical().Unwrap(wrapped); err == nil {
		t.Error("the wrapped token unwrapped twice")
	}

	d.mustCLI(t, "retire", "n1")
	eventually(t, 90*time.Second, "n1 retired", func() bool { return nodeState(t, d, "n1") == inventory.Retired })
	agent.Stop()
	events := d.mustCLI(t, "events", "-node", mac)
	t.Logf("events of n1:\n%s", events)
	for _, step := range []string{"retire: nomad: drained", "retire: vault: worker key deleted", "retire: vault: node token revoked", "retire: nomad: node purged"} {
		if !strings.Contains(events, step) {
			t.Errorf("events lack %q:\n%s", step, events)
		}
	}
	if _, err := vc.Auth().Token().LookupAccessor(n.VaultAccessor); err == nil {
		t.Error("the node token outlived retire")
	}
	if s, _ := vc.Logical().Read("kv/metadata/concourse/workers/n1"); s != nil {
		t.Error("the worker key outlived retire")
	}
	for name, secret := range map[string]string{"vault root token": vault.RootToken, "nomad token": nomad.Token, "wrapped token": wrapped, "intro token": intro} {
		if secret != "" && strings.Contains(d.log.String(), secret) {
			t.Errorf("the %s is in the daemon's log", name)
		}
	}
}

func keys(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func nodeJSON(t *testing.T, d *daemon, ref string) inventory.Node {
	t.Helper()
	var n inventory.Node
	if err := json.Unmarshal([]byte(d.mustCLI(t, "node", "show", ref, "-json")), &n); err != nil {
		t.Fatal(err)
	}
	return n
}

func nodeState(t *testing.T, d *daemon, ref string) inventory.State { return nodeJSON(t, d, ref).State }

// clusterSite lays out a loopback-only site (dhcp off) with one worker
// profile and the given Vault and Nomad; it returns the directory and the
// node HTTP address.
func clusterSite(t *testing.T, vaultAddr, vaultToken, nomadAddr, nomadRPC, nomadToken string) (string, string) {
	t.Helper()
	root, err := netlab.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	nb := filepath.Join(dir, "netboot")
	os.MkdirAll(filepath.Join(dir, "profiles"), 0o755)
	os.MkdirAll(nb, 0o755)
	for _, f := range []string{"undionly.kpxe", "snponly.efi"} {
		copyFile(t, filepath.Join("/usr/lib/ipxe", f), filepath.Join(nb, f))
	}
	os.WriteFile(filepath.Join(nb, "vmlinuz"), []byte("not a kernel"), 0o644)
	os.WriteFile(filepath.Join(dir, "profiles", "worker.hcl"), []byte(workerProfile), 0o644)
	os.WriteFile(filepath.Join(dir, "vault-token"), []byte(vaultToken), 0o600)
	os.WriteFile(filepath.Join(dir, "nomad-token"), []byte(nomadToken), 0o600)
	httpAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	site := fmt.Sprintf(`interface       = "lo"
server_address  = "127.0.0.1"
state_dir       = "state"
default_profile = "worker"
dhcp {
  mode = "off"
}
tftp {
  listen = "127.0.0.1:%d"
}
http {
  listen = %q
}
api {
  socket = "api.sock"
}
vault {
  address    = %q
  token_file = "vault-token"
  wrap_ttl   = "5m"
}
nomad {
  servers         = [%q]
  address         = %q
  token_file      = "nomad-token"
  introduction    = true
  stand_in        = true
  raw_exec        = true
  drain_deadline  = "10s"
  worker_vault_role = "concourse-worker"
  worker_template = %q
}
`, freePort(t), httpAddr, vaultAddr, nomadRPC, nomadAddr, filepath.Join(root, "profiles", "concourse-worker.nomad.hcl.tmpl"))
	os.WriteFile(filepath.Join(dir, "site.hcl"), []byte(site), 0o644)

	return dir, httpAddr
}

// TestClusterUnreachable: with Vault and Nomad away, the join claim is
// answered 503 and not used up, doctor says what is wrong, and retire
// records its failing step and keeps retrying instead of claiming done.
func TestClusterUnreachable(t *testing.T) {
	netlab.NeedRoot(t)
	gone := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	dir, httpAddr := clusterSite(t, gone, "vault-tok", gone, "127.0.0.1:4647", "nomad-tok")
	d := startDaemon(t, nil, dir)
	const mac = "52:54:00:c1:00:02"
	d.mustCLI(t, "enroll", mac, "-hostname", "n2")
	client := &http.Client{Timeout: 30 * time.Second}
	status := installScript(t, client, httpAddr, mac)
	joinURL := strings.TrimSuffix(status, "/status") + "/join"
	for range 2 {
		resp, err := client.PostForm(joinURL, url.Values{"mac": {mac}})
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
			t.Fatalf("join with Vault away: %s %s", resp.Status, body)
		}
	}
	if n := nodeJSON(t, d, "n2"); !n.JoinClaimed.IsZero() {
		t.Error("a failed claim used the bundle up")
	}
	out, err := d.cli(t, "doctor", "-config", filepath.Join(dir, "site.hcl"))
	if err == nil || !strings.Contains(out, "FAIL vault") || !strings.Contains(out, "FAIL nomad") || !strings.Contains(out, gone) {
		t.Errorf("doctor with Vault and Nomad away: %v\n%s", err, out)
	}
	d.mustCLI(t, "retire", "n2")
	eventually(t, 30*time.Second, "a failed retire step recorded", func() bool {
		return strings.Contains(d.mustCLI(t, "events", "-node", mac), "retire: nomad: drained failed, retrying")
	})
	if st := nodeState(t, d, "n2"); st != inventory.Retiring {
		t.Errorf("n2 is %s with its teardown undone, want retiring", st)
	}
	for _, secret := range []string{"vault-tok", "nomad-tok"} {
		if strings.Contains(d.log.String(), secret) || strings.Contains(out, secret) {
			t.Errorf("%s leaked into the log or doctor's output", secret)
		}
	}
}

// installScript fetches a node's iPXE script, as its iPXE would, and
// returns the status URL with its install token.
func installScript(t *testing.T, client *http.Client, httpAddr, mac string) string {
	t.Helper()
	resp, err := client.Get("http://" + httpAddr + "/ipxe?mac=" + url.QueryEscape(mac))
	if err != nil {
		t.Fatal(err)
	}
	script, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`bootstrapd\.report=(\S+)`).FindSubmatch(script)
	if m == nil {
		t.Fatalf("no install script:\n%s", script)
	}
	return string(m[1])
}
