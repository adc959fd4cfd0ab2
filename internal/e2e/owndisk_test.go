package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
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

// rack is a provisioning network with everything a node's second life
// needs on it, as seeds 000 and 004 lay it out: Vault (1.14.1) and a
// Nomad server (1.6.1) with the token integration, a Nomad client "web"
// running seed 000's web job with the TSA stand-in, the package
// repository stand-in, and bootstrapd with the real void-nomad profile.
type rack struct {
	lab   *netlab.Lab
	dir   string
	d     *daemon
	vault *clustertest.VaultServer
	nomad *clustertest.NomadServer
	nc    *nomadapi.Client
	vc    *vaultapi.Client
	tsa   *tsa
	repo  string // the package repository stand-in's URL
}

// newRack builds a rack on cidr (the lab's bridge address and prefix).
func newRack(t *testing.T, cidr string) *rack {
	t.Helper()
	lab := netlab.NewLab(t, cidr)
	host := lab.Addr.String()
	at := clustertest.Place{NS: lab.NS, Addr: host, Iface: lab.Bridge}
	r := &rack{lab: lab, dir: t.TempDir()}
	r.vault = clustertest.StartVaultIn(t, at)
	r.vc, _ = vaultapi.NewClient(&vaultapi.Config{Address: r.vault.Addr, HttpClient: r.vault.HTTP})
	r.vc.SetToken(r.vault.RootToken)

	nomadBin := clustertest.Binary(t, "nomad")
	netbootTar, repoDir := netlab.VoidStandIn(t, nomadBin)
	r.repo = netlab.ServeDir(t, lab.NS, net.JoinHostPort(host, "8081"), repoDir)

	// The site: reservation-mode DHCP with the lab as router, the real
	// profile, the operator's key, Vault, and (below) Nomad.
	root, _ := netlab.RepoRoot()
	os.WriteFile(filepath.Join(r.dir, "vault-token"), []byte(r.vault.RootToken), 0o600)
	os.WriteFile(filepath.Join(r.dir, "keys"), []byte(operatorKey(t, r.dir)+"\n"), 0o644)
	writeSite(t, lab, r.dir, fmt.Sprintf(`  mode   = "reservation"
  subnet = %q
  router = %q`, lab.Prefix.Masked().String(), host), fmt.Sprintf(`server_address  = %q
default_profile = "void-nomad"
profiles_dir    = %q
node {
  authorized_keys = "keys"
}
vault {
  address    = %q
  token_file = "vault-token"
  wrap_ttl   = "15m"
}
package_cache {
  upstream = %q
}
`, host, filepath.Join(root, "profiles"), r.vault.Addr, r.repo))
	site := filepath.Join(r.dir, "site.hcl")
	r.d = &daemon{bin: binary(t), sock: filepath.Join(r.dir, "api.sock"), ns: lab.NS}

	// The servers' Vault token, then the servers: a client in a TCG VM on
	// a busy machine may miss a heartbeat by seconds, not minutes.
	serverToken := filepath.Join(r.dir, "nomad-vault-token")
	r.d.labCLI(t, "cluster", "server-token", "-config", site, serverToken)
	tok, _ := os.ReadFile(serverToken)
	r.nomad = clustertest.StartNomadWith(t, clustertest.NomadOptions{ACL: true, Vault: r.vault,
		VaultToken: strings.TrimSpace(string(tok)), At: at, HeartbeatGrace: 30 * time.Second})
	r.nc, _ = nomadapi.NewClient(&nomadapi.Config{Address: r.nomad.Addr, SecretID: r.nomad.Token, HttpClient: r.nomad.HTTP})

	// The web node and its TSA stand-in.
	webCfg, err := cluster.ClientConfig(cluster.ClientParams{Name: "web", Servers: []string{r.nomad.RPC}, ACL: true, RawExec: true,
		VaultAddr: r.vault.Addr, VaultIntegration: cluster.VaultToken})
	if err != nil {
		t.Fatal(err)
	}
	web := clustertest.StartClient(t, r.nomad, webCfg, "")
	r.tsa = newTSA(t, r.nc, web, net.JoinHostPort(host, "2222"))

	addNomad(t, r.dir, r.nomad.Addr, r.nomad.RPC, r.nomad.Token, fmt.Sprintf(`  tsa_host        = %q
  tsa_public_key  = %q
  stand_in_worker = %q
`, r.tsa.addr, r.tsa.publicKeyLine(), concourseStandIn(t)))
	if out := r.d.labCLI(t, "cluster", "init", "-config", site); !strings.Contains(out, "registered job concourse-worker") {
		t.Fatalf("cluster init:\n%s", out)
	}
	r.tsa.start(t, lab)
	if out, err := r.d.cli(t, "netboot", "import", netbootTar, "-dir", filepath.Join(r.dir, "netboot"), "-name", "void"); err != nil {
		t.Fatalf("netboot import: %v\n%s", err, out)
	}
	r.d = startDaemon(t, lab, r.dir)
	return r
}

// enroll enrolls a node for the void-nomad profile on its virtio disk.
// It has no xbps_repository label: it installs through bootstrapd's
// package cache of the repository stand-in.
func (r *rack) enroll(t *testing.T, mac, hostname string) {
	t.Helper()
	r.d.mustCLI(t, "enroll", mac, "-hostname", hostname, "-label", "disk=/dev/vda")
}

// cacheStats reads the package cache's counters from bootstrapd's
// /metrics.
func (r *rack) cacheStats(t *testing.T) map[string]float64 {
	t.Helper()
	resp, err := r.lab.HTTPClient().Get("http://" + net.JoinHostPort(r.lab.Addr.String(), "8080") + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	out := map[string]float64{}
	for _, l := range strings.Split(string(b), "\n") {
		name, v, ok := strings.Cut(l, " ")
		if rest, found := strings.CutPrefix(name, "bootstrapd_package_cache_"); ok && found {
			out[rest], _ = strconv.ParseFloat(v, 64)
		}
	}
	return out
}

// powerOn starts a node's VM with an empty disk; the VM reboots when the
// node asks (no -no-reboot), as a machine does.
func (r *rack) powerOn(t *testing.T, firmware, mac string) *netlab.QEMU {
	t.Helper()
	return netlab.StartQEMU(t, netlab.QEMUOpts{Lab: r.lab, MAC: mac, Firmware: firmware, MemoryMB: 1024, Reboot: true, Disk: newDisk(t, t.TempDir())})
}

// waitState waits for a node to reach state and returns the time since
// its power-on.
func (r *rack) waitState(t *testing.T, poweredOn time.Time, ref string, want inventory.State, limit time.Duration) time.Duration {
	t.Helper()
	eventually(t, limit, ref+" "+string(want), func() bool {
		n := nodeJSON(t, r.d, ref)
		if n.State == inventory.Failed {
			t.Fatalf("%s failed: %s", ref, n.Reason)
		}
		return n.State == want
	})
	return time.Since(poweredOn)
}

// TestOwnDisk is a node's whole life under real firmware: PXE install
// through the stand-in installer, which writes a bootable disk (packages
// from the repository stand-in, the real Nomad binary among them), the
// node reboots by itself, PXE-boots again, gets the local-boot script
// and its firmware boots the disk; runit starts the services the
// post-install script enabled; the Nomad client joins with exactly what
// the join bundle put on the disk; the worker job's allocation runs in
// the VM, reads its key from Vault through Nomad's template and
// registers with the TSA stand-in. Everything is asserted from outside
// the VM: Nomad's node list, the worker's output, the TSA's log.
// BIOS then retires the node; UEFI reinstalls it, which only works when
// the post-install script kept network boot first in BootOrder.
//
// The BIOS machine is powered on by hand before anyone enrolled it, as an
// operator collecting MACs would; the UEFI one is hands-off: a powered-off
// machine behind a BMC (OpenIPMI's ipmi_sim), which `enroll -bmc ...
// -power` powers on and `reinstall -power` cycles, with no test code
// touching the VM after it is set up.
func TestOwnDisk(t *testing.T) {
	for i, fw := range []string{"bios", "uefi"} {
		t.Run(fw, func(t *testing.T) {
			t.Parallel()
			r := newRack(t, fmt.Sprintf("10.96.%d.1/24", i))
			mac := fmt.Sprintf("52:54:00:96:%02x:01", i)
			var vm interface{ Console() string }
			var poweredOn time.Time
			if fw == "bios" {
				// bootstrapd lists it as discovered, the operator enrolls
				// it and presses reset.
				q := r.powerOn(t, fw, mac)
				vm, poweredOn = q, time.Now()
				eventually(t, 3*time.Minute, mac+" discovered", func() bool {
					out, err := r.d.cli(t, "node", "show", mac, "-json")
					var n inventory.Node
					return err == nil && json.Unmarshal([]byte(out), &n) == nil && n.State == inventory.Discovered
				})
				t.Logf("bios: discovered %s after power-on", q.Elapsed().Round(time.Second))
				r.enroll(t, mac, "n1")
				if err := q.Reset(); err != nil {
					t.Fatal(err)
				}
			} else {
				bmc := netlab.StartIPMINode(t, netlab.IPMIOpts{QEMU: netlab.QEMUOpts{Lab: r.lab, MAC: mac, Firmware: fw, MemoryMB: 1024, Disk: newDisk(t, t.TempDir())}})
				// The node's own BMC credentials, by reference: a 0600 file.
				creds := filepath.Join(r.dir, "bmc-n1")
				if err := os.WriteFile(creds, []byte(bmc.User+":"+bmc.Password+"\n"), 0o600); err != nil {
					t.Fatal(err)
				}
				vm, poweredOn = bmc, time.Now()
				r.d.mustCLI(t, "enroll", mac, "-hostname", "n1", "-label", "disk=/dev/vda", "-label", "firmware=uefi",
					"-bmc", bmc.URL(), "-bmc-credentials", "file:"+creds, "-power")
				// The daemon powers it on in the background, off the command's path.
				ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
				defer cancel()
				if err := bmc.WaitPower(ctx, true); err != nil {
					t.Fatalf("enroll -power did not power the machine on through its BMC: %v", err)
				}
			}
			installed := r.waitState(t, poweredOn, "n1", inventory.Installed, 10*time.Minute)
			// The packages came through bootstrapd's package cache.
			first := r.cacheStats(t)
			if first["upstream_bytes_total"] < 50<<20 || first["served_bytes_total"] < first["upstream_bytes_total"] {
				t.Errorf("package cache after the install: %v, want the packages (the 98 MB nomad among them) through it", first)
			}
			ready := r.waitState(t, poweredOn, "n1", inventory.Ready, 10*time.Minute)
			t.Logf("%s: power-on to installed %s, to ready %s", fw, installed.Round(time.Second), ready.Round(time.Second))
			n := nodeJSON(t, r.d, "n1")

			// The console tells the story in order: install, reboot, PXE,
			// local boot, runit.
			console := vm.Console()
			last := -1
			for _, mark := range []string{"bootstrapd postinstall: installed; rebooting", "is installed; booting the local disk", "runit", "nomad"} {
				i := strings.Index(console[last+1:], mark)
				if i < 0 {
					t.Errorf("console lacks %q after the previous step", mark)
					continue
				}
				last += 1 + i
			}

			// Nomad's view: the client in the VM, at the node's address.
			nodes, _, err := r.nc.Nodes().List(nil)
			if err != nil {
				t.Fatal(err)
			}
			var found *nomadapi.NodeListStub
			for _, s := range nodes {
				if s.Name == "n1" {
					found = s
				}
			}
			if found == nil || found.Address != n.IP.String() || found.Status != "ready" {
				t.Fatalf("Nomad's node n1: %+v, want ready at %s", found, n.IP)
			}
			// The worker's allocation in the VM: the key check read the key
			// from Vault and passed, the worker runs.
			allocs, _, err := r.nc.Nodes().Allocations(found.ID, nil)
			if err != nil {
				t.Fatal(err)
			}
			worker := ""
			for _, a := range allocs {
				if a.JobID != cluster.DefaultWorkerJob || a.ClientStatus != nomadapi.AllocClientStatusRunning {
					continue
				}
				if kc, w := a.TaskStates["key-check"], a.TaskStates[cluster.WorkerTask]; kc != nil && kc.State == "dead" && !kc.Failed && w != nil && w.State == "running" {
					worker = a.ID
				}
			}
			if worker == "" {
				t.Errorf("no running worker allocation on n1 whose key check passed: %d allocations", len(allocs))
			}
			// The web job's template renders authorized_worker_keys from a
			// LIST that consul-template polls every 5 minutes, so a TSA that
			// started before n1's key existed learns it only then (so does
			// the real web node): run it again rather than wait.
			r.tsa.start(t, r.lab)
			eventually(t, 2*time.Minute, "the TSA stand-in to record n1's worker", func() bool {
				return strings.Contains(r.tsa.log(t), "worker n1 registered")
			})

			if fw == "uefi" {
				// The running node is cycled through its BMC into a PXE boot.
				r.d.mustCLI(t, "reinstall", "n1", "-power")
				r.waitState(t, poweredOn, "n1", inventory.Installing, 5*time.Minute)
				r.waitState(t, poweredOn, "n1", inventory.Installed, 10*time.Minute)
				// The second install came from the cache: nothing more
				// downloaded (the indexes are fresh for 5 minutes), all of
				// it served again.
				again := r.cacheStats(t)
				if again["upstream_bytes_total"] != first["upstream_bytes_total"] || again["served_bytes_total"] < 2*first["served_bytes_total"] || again["hits_total"] == 0 {
					t.Errorf("package cache after the reinstall: %v, after the first install: %v; want no new upstream bytes", again, first)
				}
				t.Logf("package cache: upstream %.0f bytes, served %.0f bytes over two installs", again["upstream_bytes_total"], again["served_bytes_total"])
				return
			}

			key, err := r.vc.KVv2("kv").Get(t.Context(), "concourse/workers/n1")
			if err != nil {
				t.Fatal(err)
			}
			priv, _ := key.Data["private_key"].(string)
			r.d.mustCLI(t, "retire", "n1")
			r.waitState(t, poweredOn, "n1", inventory.Retired, 3*time.Minute)
			// The teardown drained the VM's client (its worker allocation
			// told to stop) before it purged the node from Nomad.
			if a, _, err := r.nc.Allocations().Info(worker, nil); err != nil || a.DesiredStatus != nomadapi.AllocDesiredStatusStop {
				t.Errorf("n1's worker allocation after retire: %v %v, want desired status stop", a, err)
			}
			if _, _, err := r.nc.Nodes().Info(found.ID, nil); err == nil {
				t.Errorf("Nomad still lists n1 after retire, want it purged")
			}
			r.tsa.start(t, r.lab)
			if err := r.tsa.login(t, r.lab, priv); err == nil || !strings.Contains(err.Error(), "unable to authenticate") {
				t.Errorf("the retired worker's key at the TSA: %v, want refused", err)
			}
			// Nomad's log collector writes the task's output a moment later.
			eventually(t, 30*time.Second, "the TSA stand-in to log the refusal", func() bool {
				return strings.Contains(r.tsa.log(t), "refused key")
			})
		})
	}
}

// labCLI runs a bootstrapd command inside the lab's namespace, where
// Vault and Nomad listen (cluster commands talk to them directly).
func (d *daemon) labCLI(t *testing.T, args ...string) string {
	t.Helper()
	out, err := d.output(d.ns.Command(context.Background(), d.bin, args...))
	if err != nil {
		t.Fatalf("bootstrapd %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}
