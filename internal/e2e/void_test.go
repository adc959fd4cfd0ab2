package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bootstrapd/bootstrapd/internal/inventory"
	"github.com/bootstrapd/bootstrapd/internal/netlab"
	"github.com/bootstrapd/bootstrapd/internal/profile"
)

// standInNetboot builds what an operator would import for Void: a NETBOOT
// tarball whose initrd is the netlab initramfs with the stand-in installer
// (testdata/voidinstaller) laid over it as a second archive (the kernel
// unpacks both, the later one wins).
func standInNetboot(t *testing.T, dir string) string {
	t.Helper()
	vmlinuz, initramfs := netlab.Kernel(t)
	root, err := netlab.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	overlay := filepath.Join(dir, "overlay")
	if out, err := exec.Command("sh", "-c", `set -e
mkdir -p "$2/stubs"
cp "$1/init" "$1/target-passwd" "$2/"
cp "$1"/stubs/* "$2/stubs/"
chmod 0755 "$2/init" "$2/target-passwd" "$2"/stubs/*
cd "$2" && find . | sort | cpio -o -H newc -R 0:0 --quiet | gzip -9 > ../overlay.cpio.gz`,
		"sh", filepath.Join(root, "testdata", "voidinstaller"), overlay).CombinedOutput(); err != nil {
		t.Fatalf("building the stand-in installer: %v\n%s", err, out)
	}
	base, _ := os.ReadFile(initramfs)
	over, _ := os.ReadFile(filepath.Join(dir, "overlay.cpio.gz"))
	kernel, _ := os.ReadFile(vmlinuz)

	p := filepath.Join(dir, "void-x86_64-NETBOOT-20260101.tar.gz")
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, f := range []struct {
		name string
		body []byte
	}{{"vmlinuz", kernel}, {"initrd", append(base, over...)}} {
		tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.body)), Typeflag: tar.TypeReg})
		tw.Write(f.body)
	}
	tw.Close()
	gz.Close()
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// debugfsCat reads a file from the node's disk image after the VM is gone.
func debugfsCat(t *testing.T, image, path string) string {
	t.Helper()
	out, err := exec.Command("debugfs", "-R", "cat "+path, image).Output()
	if err != nil {
		t.Fatalf("debugfs cat %s (apt-get install e2fsprogs): %v", path, err)
	}
	return string(out)
}

// voidSite lays out a reservation-mode site on lab (its /24) with the
// real void-nomad profile, Nomad servers at .10, root's keys for the join
// bundle, and the stand-in installer imported as the Void NETBOOT files,
// and starts bootstrapd on it.
func voidSite(t *testing.T, lab *netlab.Lab) (string, *daemon) {
	t.Helper()
	dir := t.TempDir()
	root, _ := netlab.RepoRoot()
	net := lab.Prefix.Masked().Addr().As4()
	writeSite(t, lab, dir, fmt.Sprintf(`  mode   = "reservation"
  subnet = %q`, lab.Prefix.Masked().String()), `default_profile = "void-nomad"
profiles_dir    = "`+filepath.Join(root, "profiles")+`"
nomad {
  servers = ["`+fmt.Sprintf("%d.%d.%d.10", net[0], net[1], net[2])+`:4647"]
}
node {
  authorized_keys = "keys"
}`)
	os.WriteFile(filepath.Join(dir, "keys"), []byte("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAtest operator@laptop\n"), 0o644)
	out, err := exec.Command(binary(t), "netboot", "import", standInNetboot(t, dir), "-dir", filepath.Join(dir, "netboot")).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "imported") {
		t.Fatalf("netboot import: %v\n%s", err, out)
	}
	return dir, startDaemon(t, lab, dir)
}

// startInstall boots the enrolled node mac in QEMU (BIOS) with a fresh
// 64 MiB virtio disk in dir, and returns the VM and the disk image.
func startInstall(t *testing.T, lab *netlab.Lab, dir, mac string) (*netlab.QEMU, string) {
	t.Helper()
	disk := filepath.Join(dir, "disk.img")
	if err := os.WriteFile(disk, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(disk, 64<<20); err != nil {
		t.Fatal(err)
	}
	vm := netlab.StartQEMU(t, netlab.QEMUOpts{Lab: lab, MAC: mac, Firmware: "bios",
		Args: []string{"-drive", "file=" + disk + ",format=raw,if=virtio"}})
	return vm, disk
}

// TestVoidInstall installs a node with the real void-nomad profile under a
// real kernel: PXE -> iPXE -> kernel + imported initrd -> the stand-in
// installer sources the rendered autoinstall.cfg, formats the disk and runs
// the rendered post-install script, which claims the join bundle, writes
// /etc/nomad.d, reports each step and reboots. The node ends installed, its
// disk holds the rendered config, and its next boot is the local-boot one.
func TestVoidInstall(t *testing.T) {
	lab := netlab.NewLab(t, "10.99.0.1/24")
	lab.StartRA(t)
	dir, d := voidSite(t, lab)
	root, _ := netlab.RepoRoot()
	mac := "52:54:00:99:00:01"
	d.mustCLI(t, "enroll", mac, "-hostname", "n1", "-label", "disk=/dev/vda", "-label", `rack=r2 "it's $(here)"`)
	vm, disk := startInstall(t, lab, dir, mac)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if _, err := vm.WaitConsole(ctx, "bootstrapd postinstall: installed; rebooting"); err != nil {
		t.Fatalf("the install did not finish: %v", err)
	}
	vm.Wait(ctx)

	n := node(t, d, mac)
	if n.State != inventory.Installed {
		t.Fatalf("node %s (%s), want installed", n.State, n.Reason)
	}
	var reports []string
	for _, ev := range n.History {
		if ev.Actor == "node" {
			reports = append(reports, ev.Cause)
		}
	}
	if got := strings.Join(reports, " | "); !strings.Contains(got, "installing: packages") || !strings.HasSuffix(got, "installer reported success") {
		t.Errorf("reports: %s", got)
	}

	// What the post-install script left on the disk.
	for path, want := range map[string]string{
		"/etc/hostname":               "n1",
		"/etc/nomad.d/20-join.hcl":    `servers = ["10.99.0.10:4647"]`,
		"/etc/nomad.d/base.hcl":       `node_class = "ci"`,
		"/root/.ssh/authorized_keys":  "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAtest",
		"/var/log/stubs.log":          "passwd -l root",
		"/etc/runit/runsvdir/default": "",
	} {
		if got := debugfsCat(t, disk, path); !strings.Contains(got, want) {
			t.Errorf("%s on the node's disk: %q, want it to contain %q", path, got, want)
		}
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
	if got := debugfsCat(t, disk, "/etc/nomad.d/base.hcl"); want == "" || got != want {
		t.Errorf("/etc/nomad.d/base.hcl on the disk:\n%s\nrendered:\n%s", got, want)
	}
	ls, _ := exec.Command("debugfs", "-R", "ls -l /etc/nomad.d", disk).Output()
	if !strings.Contains(string(ls), "100640") {
		t.Errorf("/etc/nomad.d modes:\n%s", ls)
	}

	// Next power-on: local disk.
	again := netlab.StartQEMU(t, netlab.QEMUOpts{Lab: lab, MAC: mac, Firmware: "bios"})
	if _, err := again.WaitConsole(ctx, "is installed; booting the local disk"); err != nil {
		t.Fatalf("second boot did not get the local-boot script: %v", err)
	}
}
