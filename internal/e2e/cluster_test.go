package e2e

import (
	"archive/tar"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	nomadapi "github.com/hashicorp/nomad/api"
	vaultapi "github.com/hashicorp/vault/api"

	"github.com/bootstrapd/bootstrapd/internal/cluster"
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

// TestClusterEnrollment runs bootstrapd against real Vault (1.14.1) and
// Nomad (1.6.1, ACLs on) with the token integration, as seeds 000 and 003
// run it: the servers' Vault token from `cluster server-token`, cluster
// init, then one node from enrolled to ready, where ready means the
// worker read its key from Vault through Nomad, and back to retired. A
// stand-in of Concourse's web node renders seed 000's
// authorized_worker_keys template after the join and after the retire.
// The node's install is played over HTTP (the PXE tests prove that part);
// its Nomad client agent runs from exactly the join bundle.
func TestClusterEnrollment(t *testing.T) {
	netlab.NeedRoot(t)
	vault := clustertest.StartVault(t)
	dir, httpAddr := clusterSite(t, vault.Addr, vault.RootToken)
	site := filepath.Join(dir, "site.hcl")
	d := &daemon{bin: binary(t)}

	// The servers' token first: Nomad refuses jobs with a vault block
	// until its servers have the integration.
	serverToken := filepath.Join(dir, "nomad-vault-token")
	out, err := d.cli(t, "cluster", "server-token", "-config", site, serverToken)
	if err != nil || !strings.Contains(out, "created policy nomad-server") || !strings.Contains(out, "created token role nomad-cluster") {
		t.Fatalf("cluster server-token: %v\n%s", err, out)
	}
	tok, err := os.ReadFile(serverToken)
	fi, _ := os.Stat(serverToken)
	if err != nil || fi.Mode().Perm() != 0o600 || len(tok) < 10 || strings.Contains(out, strings.TrimSpace(string(tok))) {
		t.Fatalf("the servers' token file: %v, mode %v, or the token was printed:\n%s", err, fi.Mode(), out)
	}
	if again, err := d.cli(t, "cluster", "server-token", "-config", site, serverToken); err == nil || !strings.Contains(again, "exists") {
		t.Errorf("a second server-token over the first: %v\n%s", err, again)
	}
	nomad := clustertest.StartNomadWith(t, clustertest.NomadOptions{ACL: true, Vault: vault, VaultToken: strings.TrimSpace(string(tok))})
	addNomad(t, dir, nomad.Addr, nomad.RPC, nomad.Token, "")

	initOut, err := d.cli(t, "cluster", "init", "-config", site)
	if err != nil || !strings.Contains(initOut, "registered job concourse-worker") {
		t.Fatalf("cluster init: %v\n%s", err, initOut)
	}
	if !strings.Contains(initOut, "Nomad 1.6.1: the token integration for Vault") {
		t.Errorf("cluster init does not say which arrangement it chose:\n%s", initOut)
	}
	if again, err := d.cli(t, "cluster", "init", "-config", site); err != nil || !strings.Contains(again, "No changes") {
		t.Errorf("second cluster init: %v\n%s", err, again)
	}
	// Doctor says which arrangement it found, and refuses what these
	// servers cannot do.
	if out, err := d.cli(t, "doctor", "-config", site); !strings.Contains(out, "no client introduction tokens (they arrived in Nomad 1.11)") {
		t.Errorf("doctor: %v\n%s", err, out)
	}
	withIntro := filepath.Join(dir, "with-intro.hcl")
	b, _ := os.ReadFile(site)
	os.WriteFile(withIntro, []byte(strings.Replace(string(b), "  stand_in ", "  introduction = true\n  stand_in ", 1)), 0o644)
	if out, err := d.cli(t, "doctor", "-config", withIntro); err == nil || !strings.Contains(out, "FAIL nomad") || !strings.Contains(out, "run 1.6.1, which has no client introduction tokens") {
		t.Errorf("doctor with introduction = true against Nomad 1.6: %v\n%s", err, out)
	}

	// Concourse's web node, stand-in: a client of its own that renders the
	// authorized_worker_keys template with the concourse-web policy.
	webCfg, err := cluster.ClientConfig(cluster.ClientParams{Name: "web", Servers: []string{nomad.RPC}, ACL: true, RawExec: true,
		VaultAddr: vault.Addr, VaultIntegration: cluster.VaultToken})
	if err != nil {
		t.Fatal(err)
	}
	clustertest.StartClient(t, nomad, webCfg, "")
	nc, err := nomadapi.NewClient(&nomadapi.Config{Address: nomad.Addr, SecretID: nomad.Token})
	if err != nil {
		t.Fatal(err)
	}

	d = startDaemon(t, nil, dir)
	const mac = "52:54:00:c1:00:01"
	d.mustCLI(t, "enroll", mac, "-hostname", "n1")
	client := &http.Client{Timeout: 30 * time.Second}
	status := installScript(t, client, httpAddr, mac)
	joinURL := strings.TrimSuffix(status, "/status") + "/join"
	report(t, client, status, mac, "installing: packages")

	// The join bundle: client config and wrapped token; no introduction
	// token, which Nomad 1.6 does not have.
	files := joinBundle(t, client, joinURL, mac)
	hcl, wrapped := files["etc/nomad.d/20-join.hcl"], strings.TrimSpace(string(files["etc/bootstrapd/vault-token.wrapped"]))
	if len(hcl) == 0 || wrapped == "" || len(files) != 2 {
		t.Fatalf("join bundle: %v", keys(files))
	}
	if !strings.Contains(string(hcl), "address = "+strconv.Quote(vault.Addr)) || strings.Contains(string(hcl), "jwt_auth_backend_path") {
		t.Errorf("the client's vault block is not the token integration's:\n%s", hcl)
	}
	report(t, client, status, mac, "installed")

	// The worker key is in Vault before the node joins.
	vc, _ := vaultapi.NewClient(&vaultapi.Config{Address: vault.Addr})
	vc.SetToken(vault.RootToken)
	key, err := vc.KVv2("kv").Get(t.Context(), "concourse/workers/n1")
	if err != nil {
		t.Fatalf("worker key: %v", err)
	}
	pub, _ := key.Data["public_key"].(string)
	if pub = strings.TrimSpace(pub); pub == "" {
		t.Fatalf("worker key without a public_key: %d fields", len(key.Data))
	}

	// The node boots from disk: its Nomad client starts from the bundle,
	// the worker renders its key from Vault through Nomad, checks it, runs.
	agent := clustertest.StartClient(t, nomad, hcl, "")
	eventually(t, 90*time.Second, "n1 ready", func() bool { return nodeState(t, d, "n1") == inventory.Ready })
	if out := workerOutput(t, nc, "n1", "key-check"); !strings.Contains(out, "stand-in worker: key for n1 read from Vault") {
		t.Errorf("the worker's key check did not say it read the key: %q", out)
	}
	if got := webKeys(t, nc, 1); !strings.Contains(got, pub) {
		t.Errorf("authorized_worker_keys lacks n1's key after the join:\n%s", got)
	}

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
	if got := webKeys(t, nc, 2); strings.Contains(got, pub) || strings.TrimSpace(got) != "" {
		t.Errorf("authorized_worker_keys still has a key after retire:\n%s", got)
	}
	for name, secret := range map[string]string{"vault root token": vault.RootToken, "nomad token": nomad.Token, "wrapped token": wrapped,
		"servers' vault token": strings.TrimSpace(string(tok))} {
		if secret != "" && strings.Contains(d.log.String(), secret) {
			t.Errorf("the %s is in the daemon's log", name)
		}
	}
}

// joinBundle claims a node's join bundle, as its post-install script
// does, and returns its files; secrets in it must be readable by root only.
func joinBundle(t *testing.T, client *http.Client, joinURL, mac string) map[string][]byte {
	t.Helper()
	resp, err := client.PostForm(joinURL, url.Values{"mac": {mac}})
	if err != nil {
		t.Fatalf("join: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("join: %s", resp.Status)
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
	return files
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

// workerSiteDir is a directory for a loopback-only site: a netboot
// directory with Debian's iPXE binaries and a stand-in kernel, and the
// worker profile.
func workerSiteDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	nb := filepath.Join(dir, "netboot")
	os.MkdirAll(filepath.Join(dir, "profiles"), 0o755)
	os.MkdirAll(nb, 0o755)
	for _, f := range []string{"undionly.kpxe", "snponly.efi"} {
		copyFile(t, filepath.Join("/usr/lib/ipxe", f), filepath.Join(nb, f))
	}
	os.WriteFile(filepath.Join(nb, "vmlinuz"), []byte("not a kernel"), 0o644)
	os.WriteFile(filepath.Join(dir, "profiles", "worker.hcl"), []byte(workerProfile), 0o644)
	return dir
}

// clusterSite lays out a loopback-only site (dhcp off) with one worker
// profile and the given Vault; it returns the directory and the node HTTP
// address. addNomad adds the nomad block.
func clusterSite(t *testing.T, vaultAddr, vaultToken string) (string, string) {
	t.Helper()
	dir := workerSiteDir(t)
	os.WriteFile(filepath.Join(dir, "vault-token"), []byte(vaultToken), 0o600)
	httpAddr := fmt.Sprintf("127.0.0.1:%d", netlab.FreePort(t, "tcp"))
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
`, netlab.FreePort(t, "tcp"), httpAddr, vaultAddr)
	os.WriteFile(filepath.Join(dir, "site.hcl"), []byte(site), 0o644)
	return dir, httpAddr
}

// addNomad adds the nomad block, with extra lines in it, to the site in dir.
func addNomad(t *testing.T, dir, nomadAddr, nomadRPC, nomadToken, extra string) {
	t.Helper()
	root, err := netlab.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "nomad-token"), []byte(nomadToken), 0o600)
	f, err := os.OpenFile(filepath.Join(dir, "site.hcl"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fmt.Fprintf(f, `nomad {
  servers         = [%q]
  address         = %q
  token_file      = "nomad-token"
  stand_in        = true
  raw_exec        = true
  drain_deadline  = "10s"
  worker_template = %q
%s}
`, nomadRPC, nomadAddr, filepath.Join(root, "profiles", "concourse-worker.nomad.hcl.tmpl"), extra)
}

// TestClusterUnreachable: with Vault and Nomad away, the join claim is
// answered 503 and not used up, doctor says what is wrong, and retire
// records its failing step and keeps retrying instead of claiming done.
func TestClusterUnreachable(t *testing.T) {
	netlab.NeedRoot(t)
	gone := fmt.Sprintf("http://127.0.0.1:%d", netlab.FreePort(t, "tcp"))
	dir, httpAddr := clusterSite(t, gone, "vault-tok")
	addNomad(t, dir, gone, "127.0.0.1:4647", "nomad-tok", "")
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

// TestClusterJoinNewerNomad: against servers newer than the open-source
// test agent, the join bundle follows their version: workload identity
// (the client's vault block names the JWT auth path) and a client
// introduction token minted for the node. Vault is real (1.14.1); Nomad
// is clustertest.NomadAPI, a stand-in answering as the Nomad v1.11.x API
// documentation describes, not Nomad.
func TestClusterJoinNewerNomad(t *testing.T) {
	netlab.NeedRoot(t)
	vault := clustertest.StartVault(t)
	const nomadToken = "5eed5eed-0000-4000-8000-00000000000a"
	fake := clustertest.StartNomadAPI(t, clustertest.NomadAPIOptions{Version: "1.11.3", Enforcement: "strict", ACLToken: nomadToken})
	dir, httpAddr := clusterSite(t, vault.Addr, vault.RootToken)
	addNomad(t, dir, fake.Addr, "127.0.0.1:4647", nomadToken, "")
	// The Vault side of cluster init (its Nomad side would register the
	// worker job, which needs a real Nomad's job parser).
	v, err := cluster.NewVault(cluster.VaultConfig{Addr: vault.Addr, Token: vault.RootToken}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Init(t.Context()); err != nil {
		t.Fatal(err)
	}

	d := startDaemon(t, nil, dir)
	if out, err := d.cli(t, "doctor", "-config", filepath.Join(dir, "site.hcl")); !strings.Contains(out, "Nomad 1.11.3: workload identity for Vault") ||
		!strings.Contains(out, "client introduction tokens (Nomad >= 1.11)") {
		t.Errorf("doctor: %v\n%s", err, out)
	}
	const mac = "52:54:00:c1:00:03"
	d.mustCLI(t, "enroll", mac, "-hostname", "n3")
	client := &http.Client{Timeout: 30 * time.Second}
	status := installScript(t, client, httpAddr, mac)
	files := joinBundle(t, client, strings.TrimSuffix(status, "/status")+"/join", mac)
	hcl, intro := string(files["etc/nomad.d/20-join.hcl"]), string(files["var/lib/nomad/client/intro_token.jwt"])
	if !strings.Contains(hcl, `jwt_auth_backend_path = "jwt-nomad"`) || intro == "" || len(files["etc/bootstrapd/vault-token.wrapped"]) == 0 {
		t.Fatalf("join bundle %v:\n%s", keys(files), hcl)
	}
	reqs := fake.IntroRequests()
	if len(reqs) != 1 || reqs[0].NodeName != "n3" || reqs[0].NodePool != "default" {
		t.Errorf("introduction token requests: %+v", reqs)
	}
	if strings.Contains(d.log.String(), intro) || strings.Contains(d.log.String(), nomadToken) {
		t.Error("a Nomad token is in the daemon's log")
	}
}
