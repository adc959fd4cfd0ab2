package e2e

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/bootstrapd/bootstrapd/internal/cluster/clustertest"
	"github.com/bootstrapd/bootstrapd/internal/inventory"
	"github.com/bootstrapd/bootstrapd/internal/netlab"
	"github.com/bootstrapd/bootstrapd/internal/profile"
)

// voidStandIn is the VOID STAND-IN (scripts/standin-void.sh): a NETBOOT
// tarball whose installer stands in for Void's autoinstaller, and a package
// repository stand-in built from Debian's binaries and the real Nomad.
func voidStandIn(t *testing.T) (netbootTarball, repoDir string) {
	t.Helper()
	return netlab.VoidStandIn(t, clustertest.Binary(t, "nomad"))
}

// operatorKey makes the operator's SSH key pair for a site in dir: the
// private key is kept in dir (operatorSigner reads it), the public key is
// returned as one authorized_keys line.
func operatorKey(t *testing.T, dir string) string {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "operator@laptop")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "operator_ed25519"), pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sshPub))) + " operator@laptop"
}

// nodeSSH runs command on the node at addr as root, with the operator's
// key from dir, over the lab's namespace.
func nodeSSH(ctx context.Context, lab *netlab.Lab, dir, addr, command string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, "operator_ed25519"))
	if err != nil {
		return "", err
	}
	signer, err := ssh.ParsePrivateKey(b)
	if err != nil {
		return "", err
	}
	hostport := net.JoinHostPort(addr, "22")
	c, err := lab.NS.Dial(ctx, "tcp", hostport)
	if err != nil {
		return "", err
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(time.Minute)
	}
	c.SetDeadline(deadline)
	conn, chans, reqs, err := ssh.NewClientConn(c, hostport, &ssh.ClientConfig{User: "root",
		Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		// A test VM's host key is made at its first boot: nothing to pin.
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 30 * time.Second})
	if err != nil {
		c.Close()
		return "", err
	}
	client := ssh.NewClient(conn, chans, reqs)
	defer client.Close()
	s, err := client.NewSession()
	if err != nil {
		return "", err
	}
	defer s.Close()
	out, err := s.CombinedOutput(command)
	return string(out), err
}

// debugfsCat reads a file from the root filesystem (the last partition) of
// the node's disk image after the VM is gone.
func debugfsCat(t *testing.T, image, path string) string {
	t.Helper()
	out, err := exec.Command("debugfs", "-R", "cat "+path, rootFS(t, image)).Output()
	if err != nil {
		t.Fatalf("debugfs cat %s (apt-get install e2fsprogs): %v", path, err)
	}
	return string(out)
}

// rootFS names the image's last partition, where the installer puts the
// root filesystem, the way e2fsprogs opens a filesystem inside a file.
func rootFS(t *testing.T, image string) string {
	t.Helper()
	out, err := exec.Command("sfdisk", "--json", image).Output()
	if err != nil {
		t.Fatalf("sfdisk --json %s (apt-get install fdisk): %v", image, err)
	}
	var pt struct {
		PartitionTable struct {
			SectorSize int `json:"sectorsize"`
			Partitions []struct {
				Start int64 `json:"start"`
			} `json:"partitions"`
		} `json:"partitiontable"`
	}
	if err := json.Unmarshal(out, &pt); err != nil || len(pt.PartitionTable.Partitions) == 0 {
		t.Fatalf("partitions of %s: %v\n%s", image, err, out)
	}
	ps := pt.PartitionTable.Partitions
	sector := int64(pt.PartitionTable.SectorSize)
	if sector == 0 {
		sector = 512
	}
	return image + "?offset=" + strconv.FormatInt(ps[len(ps)-1].Start*sector, 10)
}

// voidSite lays out a reservation-mode site on lab (its /24) with the
// real void-nomad profile, Nomad servers at .10, the operator's key for the
// join bundle (operatorKey), the stand-in installer imported as the Void
// NETBOOT files and the repository stand-in served on the lab's :8081, and
// starts bootstrapd on it. repo is the URL for the xbps_repository label.
func voidSite(t *testing.T, lab *netlab.Lab) (dir string, d *daemon, repo string) {
	t.Helper()
	dir = t.TempDir()
	root, _ := netlab.RepoRoot()
	net4 := lab.Prefix.Masked().Addr().As4()
	writeSite(t, lab, dir, fmt.Sprintf(`  mode   = "reservation"
  subnet = %q
  router = %q`, lab.Prefix.Masked().String(), lab.Addr.String()), `default_profile = "void-nomad"
profiles_dir    = "`+filepath.Join(root, "profiles")+`"
nomad {
  servers = ["`+fmt.Sprintf("%d.%d.%d.10", net4[0], net4[1], net4[2])+`:4647"]
}
node {
  authorized_keys = "keys"
}`)
	os.WriteFile(filepath.Join(dir, "keys"), []byte(operatorKey(t, dir)+"\n"), 0o644)
	tarball, repoDir := voidStandIn(t)
	repo = netlab.ServeDir(t, lab.NS, net.JoinHostPort(lab.Addr.String(), "8081"), repoDir)
	out, err := exec.Command(binary(t), "netboot", "import", tarball, "-dir", filepath.Join(dir, "netboot")).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "imported") {
		t.Fatalf("netboot import: %v\n%s", err, out)
	}
	return dir, startDaemon(t, lab, dir), repo
}

// newDisk makes an empty (sparse) 1 GiB disk image in dir.
func newDisk(t *testing.T, dir string) string {
	t.Helper()
	disk := filepath.Join(dir, "disk.img")
	if err := os.WriteFile(disk, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(disk, 1<<30); err != nil {
		t.Fatal(err)
	}
	return disk
}

// startInstall boots the enrolled node mac in QEMU (BIOS) with a fresh
// virtio disk in dir, and returns the VM and the disk image. The VM exits
// when the node reboots (-no-reboot).
func startInstall(t *testing.T, lab *netlab.Lab, dir, mac string) (*netlab.QEMU, string) {
	t.Helper()
	disk := newDisk(t, dir)
	return netlab.StartQEMU(t, netlab.QEMUOpts{Lab: lab, MAC: mac, Firmware: "bios", Disk: disk}), disk
}

// TestVoidInstall is a node's whole life under real firmware with the real
// void-nomad profile: PXE -> iPXE -> the stand-in installer partitions the
// disk (GPT + ESP on UEFI, on an NVMe disk: nvme0n1p1; dos on BIOS),
// installs base-system, the boot loader stand-in and, through the
// post-install script, nomad from the nonfree repository stand-in; the
// script claims the join bundle, enables the services, keeps network boot
// first on UEFI and reboots; the VM reboots by itself, PXE-boots again,
// gets the local-boot script (exit), the firmware boots the disk, the dracut
// stand-in mounts the root by UUID and runit starts nomad, sshd, dhcpcd and
// chronyd. Checked from the outside: the node's reports, then an SSH login
// with the operator's key at the node's reserved address (so its DHCP
// client bound it).
func TestVoidInstall(t *testing.T) {
	results := make(chan []localBootResult, 2)
	t.Run("firmware", func(t *testing.T) {
		voidInstall(t, results)
	})
	close(results)
	if !t.Failed() {
		checkLocalBootDoc(t, results)
	}
}

func voidInstall(t *testing.T, results chan<- []localBootResult) {
	for i, tc := range []struct {
		firmware, disk string
		nvme           bool
	}{
		{"bios", "/dev/vda", false},
		{"uefi", "/dev/nvme0n1", true},
	} {
		t.Run(tc.firmware, func(t *testing.T) {
			t.Parallel()
			lab := netlab.NewLab(t, fmt.Sprintf("10.99.%d.1/24", i))
			lab.StartRA(t)
			dir, d, repo := voidSite(t, lab)
			root, _ := netlab.RepoRoot()
			mac := fmt.Sprintf("52:54:00:99:%02x:01", i)
			args := []string{"enroll", mac, "-hostname", "n1", "-label", "disk=" + tc.disk, "-label", "xbps_repository=" + repo,
				"-label", `rack=r2 "it's $(here)"`}
			d.mustCLI(t, args...)
			vm := netlab.StartQEMU(t, netlab.QEMUOpts{Lab: lab, MAC: mac, Firmware: tc.firmware, MemoryMB: 1024,
				Disk: newDisk(t, dir), NVMe: tc.nvme, Reboot: true})
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
			defer cancel()
			step := func(what, line string) time.Duration {
				t.Helper()
				if _, err := vm.WaitConsole(ctx, line); err != nil {
					t.Fatalf("%s: %v", what, err)
				}
				return vm.Elapsed()
			}
			installed := step("the install", "bootstrapd postinstall: installed; rebooting")
			n := node(t, d, mac)
			if n.State != inventory.Installed {
				t.Fatalf("node %s (%s), want installed", n.State, n.Reason)
			}
			pxe := step("the second PXE boot", "is installed; booting the local disk")
			disk := step("the disk boot", "VOID stand-in runit: stage 2")
			var out string
			eventually(t, 5*time.Minute, "an SSH login at "+n.IP.String(), func() bool {
				c, cancel := context.WithTimeout(ctx, 30*time.Second)
				defer cancel()
				var err error
				out, err = nodeSSH(c, lab, dir, n.IP.String(), "sv status /var/service/*")
				return err == nil
			})
			sshd := vm.Elapsed()
			t.Logf("%s: power-on to installed %s, second PXE %s, disk boot (runit stage 2) %s, sshd answering %s",
				tc.firmware, installed.Round(time.Second), pxe.Round(time.Second), disk.Round(time.Second), sshd.Round(time.Second))

			var reports []string
			for _, ev := range n.History {
				if ev.Actor == "node" {
					reports = append(reports, ev.Cause)
				}
			}
			if got := strings.Join(reports, " | "); !strings.Contains(got, "installing: packages") || !strings.HasSuffix(got, "installer reported success") ||
				strings.Contains(got, "bootorder") != (tc.firmware == "uefi") {
				t.Errorf("reports: %s", got)
			}

			// The services the post-install script enabled, under runit.
			for _, svc := range []string{"nomad", "sshd", "dhcpcd", "chronyd"} {
				if !strings.Contains(out, "run: /var/service/"+svc+": (pid ") {
					t.Errorf("service %s is not running:\n%s", svc, out)
				}
			}
			run := func(cmd string) string {
				t.Helper()
				c, cancel := context.WithTimeout(ctx, time.Minute)
				defer cancel()
				out, err := nodeSSH(c, lab, dir, n.IP.String(), cmd)
				if err != nil {
					t.Fatalf("ssh %s: %v\n%s", cmd, err, out)
				}
				return out
			}
			// Nomad stays up (it cannot reach the servers at .10: no matter).
			nomadPID := func() string {
				f := strings.Fields(run("sv status /var/service/nomad"))
				if len(f) < 4 {
					return ""
				}
				return f[3]
			}
			pid := nomadPID()
			time.Sleep(10 * time.Second)
			if again := nomadPID(); pid == "" || again != pid {
				t.Errorf("nomad restarted: pid %s then %s\n%s", pid, again, run("sv status /var/service/nomad; ps"))
			}

			// What the post-install script left on the disk.
			for path, want := range map[string]string{
				"/etc/hostname":              "n1",
				"/etc/nomad.d/20-join.hcl":   fmt.Sprintf(`servers = ["10.99.%d.10:4647"]`, i),
				"/etc/nomad.d/base.hcl":      `node_class = "ci"`,
				"/root/.ssh/authorized_keys": "operator@laptop",
				"/var/log/stubs.log":         "passwd -l root",
				"/etc/shadow":                "root:!$6$",
				"/proc/mounts":               "cgroup2 /sys/fs/cgroup cgroup2",
			} {
				if got := run("cat " + path); !strings.Contains(got, want) {
					t.Errorf("%s on the node: %q, want it to contain %q", path, got, want)
				}
			}
			if got := strings.TrimSpace(run("hostname")); got != "n1" {
				t.Errorf("hostname %q", got)
			}
			// base.hcl is exactly what the profile renders for this node.
			profiles, err := profile.LoadDir(filepath.Join(root, "profiles"))
			if err != nil {
				t.Fatal(err)
			}
			p := profiles["void-nomad"]
			script, err := p.Render("postinstall.sh", profile.Data{MAC: mac, Hostname: "n1", Profile: p.Name, Labels: n.Labels, Nomad: *p.Nomad})
			if err != nil {
				t.Fatal(err)
			}
			const marker = "BOOTSTRAPD_NOMAD_HCL"
			_, rest, _ := strings.Cut(string(script), "<<'"+marker+"'\n")
			want, _, _ := strings.Cut(rest, marker+"\n")
			if got := run("cat /etc/nomad.d/base.hcl"); want == "" || got != want {
				t.Errorf("/etc/nomad.d/base.hcl on the node:\n%s\nrendered:\n%s", got, want)
			}
			if ls := run("ls -l /etc/nomad.d/"); !strings.Contains(ls, "-rw-r-----") {
				t.Errorf("/etc/nomad.d modes:\n%s", ls)
			}

			if tc.firmware == "uefi" {
				// The post-install script put the network back in front of
				// grub-install's entry, and the firmware followed NVRAM.
				efi := run("efibootmgr -v")
				order := ""
				entries := map[string]string{}
				for _, l := range strings.Split(efi, "\n") {
					if o, ok := strings.CutPrefix(l, "BootOrder: "); ok {
						order = strings.TrimSpace(o)
					}
					if len(l) > 8 && strings.HasPrefix(l, "Boot") && l[8] == '*' || len(l) > 8 && strings.HasPrefix(l, "Boot") && l[8] == ' ' {
						entries[l[4:8]] = l
					}
				}
				first, _, _ := strings.Cut(order, ",")
				if !strings.Contains(entries[first], "MAC(") || !strings.Contains(efi, "void_grub") {
					t.Errorf("efibootmgr: BootOrder %s does not start with a network entry, or no void_grub:\n%s", order, efi)
				}
				t.Logf("efibootmgr -v on the node:\n%s", efi)
			}

			// Every local-boot method on this firmware, for docs/local-boot.md.
			results <- localBootRuns(t, tc.firmware, d, vm)
		})
	}
}
