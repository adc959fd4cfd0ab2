package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/bootstrapd/bootstrapd/internal/inventory"
	"github.com/bootstrapd/bootstrapd/internal/netlab"
	"github.com/bootstrapd/bootstrapd/internal/testlog"
)

// bootProfile boots the netlab test kernel, whose /init does DHCP and
// POSTs its MAC to the status URL: the same call-back a real installer
// makes when it is done.
const bootProfile = `profile "netlab" {
  description = "test kernel + busybox initramfs that reports back"
  kernel      = "netlab/vmlinuz"
  initrd      = ["netlab/initramfs.gz"]
  cmdline     = "console=ttyS0 panic=-1 bootstrapd.report={{.StatusURL}}"
}
`

// withBootFixture puts the test kernel and initramfs in the site's netboot
// directory and the profile that boots them in its profiles directory.
func withBootFixture(t *testing.T, dir string) {
	t.Helper()
	vmlinuz, initramfs := netlab.Kernel(t)
	nb := filepath.Join(dir, "netboot", "netlab")
	os.MkdirAll(nb, 0o755)
	for src, name := range map[string]string{vmlinuz: "vmlinuz", initramfs: "initramfs.gz"} {
		copyFile(t, src, filepath.Join(nb, name))
	}
	os.MkdirAll(filepath.Join(dir, "profiles"), 0o755)
	if err := os.WriteFile(filepath.Join(dir, "profiles", "netlab.hcl"), []byte(bootProfile), 0o644); err != nil {
		t.Fatal(err)
	}
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
}

func node(t *testing.T, d *daemon, mac string) inventory.Node {
	t.Helper()
	var n inventory.Node
	if err := json.Unmarshal([]byte(d.mustCLI(t, "node", "show", mac, "-json")), &n); err != nil {
		t.Fatal(err)
	}
	return n
}

// pxeInstall enrolls a VM, PXE-boots it and waits for its installer
// report, then boots it again and checks it is sent to its local disk.
func pxeInstall(t *testing.T, lab *netlab.Lab, d *daemon, firmware, mac string) {
	t.Helper()
	d.mustCLI(t, "enroll", mac, "-hostname", "n1")
	pxeInstallEnrolled(t, lab, d, firmware, mac)
}

// pxeInstallEnrolled is pxeInstall for a node enrolled already.
func pxeInstallEnrolled(t *testing.T, lab *netlab.Lab, d *daemon, firmware, mac string) {
	t.Helper()
	// Without a router advertisement iPXE waits ~14 s for IPv6 before it
	// uses its DHCP result; a real lab router usually sends them.
	lab.StartRA(t)
	start := time.Now()
	vm := netlab.StartQEMU(t, netlab.QEMUOpts{Lab: lab, MAC: mac, Firmware: firmware})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	if _, err := vm.WaitConsole(ctx, "NETLAB: report ok"); err != nil {
		t.Fatalf("%s VM did not report back: %v", firmware, err)
	}
	eventually(t, 10*time.Second, "node installed", func() bool { return node(t, d, mac).State == inventory.Installed })
	t.Logf("%s: power-on to installed in %v", firmware, time.Since(start).Round(time.Second))
	vm.Wait(ctx)

	n := node(t, d, mac)
	var path []string
	for _, ev := range n.History {
		if ev.To != "" {
			path = append(path, string(ev.To))
		}
	}
	if got := strings.Join(path, ">"); got != "enrolled>installing>installed" {
		t.Errorf("state history %s", got)
	}
	// The token is a credential: the log shows the report, never the token
	// (which the node saw on its kernel command line).
	if !strings.Contains(d.log.String(), `"path":"/install/REDACTED/status","status":200`) {
		t.Errorf("report not logged with its token redacted")
	}
	if m := regexp.MustCompile(`/install/([A-Za-z0-9_-]{20,})/status`).FindStringSubmatch(vm.Console()); m == nil {
		t.Error("no status URL with a token on the node's kernel command line")
	} else if strings.Contains(d.log.String(), m[1]) {
		t.Error("the install token appears in bootstrapd's log")
	}

	// Next power-on: the node is installed, so iPXE is told to boot the disk.
	again := netlab.StartQEMU(t, netlab.QEMUOpts{Lab: lab, MAC: mac, Firmware: firmware})
	if _, err := again.WaitConsole(ctx, "is installed; booting the local disk"); err != nil {
		t.Fatalf("second boot did not get the local-boot script: %v", err)
	}
	if node(t, d, mac).State != inventory.Installed {
		t.Error("second boot changed the node's state")
	}
}

// TestPXEBoot installs a node by PXE in reservation mode.
//   - bios: SeaBIOS with QEMU's iPXE NIC ROM. Its first DHCP request is
//     already iPXE's, so it goes straight to /boot.ipxe, no TFTP.
//   - uefi: OVMF's own PXE (arch 7, no iPXE) must TFTP the iPXE binary
//     first; iPXE then asks again and is sent to the script: the whole
//     firmware -> TFTP -> iPXE -> HTTP chain, with no loop.
func TestPXEBoot(t *testing.T) {
	for i, fw := range []string{"bios", "uefi"} {
		t.Run(fw, func(t *testing.T) {
			lab := netlab.NewLab(t, fmt.Sprintf("10.%d.0.1/24", 92+i))
			dir := t.TempDir()
			writeSite(t, lab, dir, fmt.Sprintf(`  mode = "reservation"
  subnet = "10.%d.0.0/24"`, 92+i), `default_profile = "netlab"`)
			withBootFixture(t, dir)
			d := startDaemon(t, lab, dir)
			mac := fmt.Sprintf("52:54:00:%d:00:01", 92+i)
			pxeInstall(t, lab, d, fw, mac)
			// iPXE leaves the broadcast flag clear: its ACK went to its MAC.
			if !regexp.MustCompile(`"reply":"ACK",.*"file":"http://[^"]*/boot.ipxe","to":"10\.[0-9.]+:68 at ` + mac).MatchString(d.log.String()) {
				t.Error("iPXE's ACK was not sent to its hardware address")
			}
			fetched := regexp.MustCompile(`"file":"snponly.efi","bytes":[1-9][0-9]*,.*"result":"ok"`).MatchString(d.log.String())
			if want := fw == "uefi"; fetched != want {
				t.Errorf("snponly.efi fetched over TFTP: %v, want %v", fetched, want)
			}
		})
	}
}

// TestProxyDHCPBesideDnsmasq: dnsmasq, on another host on the same segment,
// hands out addresses; bootstrapd in proxy mode only tells the PXE client
// what to boot. The VM must get its address from dnsmasq and its script from
// bootstrapd, and bootstrapd must lease nothing. BIOS iPXE takes the boot
// file from the proxy offer; UEFI firmware asks again on port 4011.
func TestProxyDHCPBesideDnsmasq(t *testing.T) {
	for _, fw := range []string{"bios", "uefi"} {
		t.Run(fw, func(t *testing.T) { proxyBoot(t, fw) })
	}
}

func proxyBoot(t *testing.T, firmware string) {
	lab := netlab.NewLab(t, "10.94.0.1/24")
	dir := t.TempDir()
	writeSite(t, lab, dir, `  mode = "proxy"`, `default_profile = "netlab"`)
	withBootFixture(t, dir)
	d := startDaemon(t, lab, dir)

	router := lab.AddHost(t, "10.94.0.2/24")
	leaseFile := filepath.Join(dir, "dnsmasq.leases")
	dnsmasq := router.Command(context.Background(), "dnsmasq", "--no-daemon", "--port=0", "--conf-file=/dev/null",
		"--interface="+router.Iface, "--bind-interfaces", "--dhcp-range=10.94.0.150,10.94.0.199,255.255.255.0,10m",
		"--dhcp-leasefile="+leaseFile, "--dhcp-authoritative", "--log-dhcp")
	dnsmasqLog := &testlog.Buffer{}
	dnsmasq.Stdout, dnsmasq.Stderr = dnsmasqLog, dnsmasqLog
	if err := dnsmasq.Start(); err != nil {
		t.Fatalf("dnsmasq (apt-get install dnsmasq-base): %v", err)
	}
	t.Cleanup(func() {
		dnsmasq.Process.Kill()
		dnsmasq.Wait()
		if t.Failed() {
			t.Logf("dnsmasq log:\n%s", tailLines(dnsmasqLog.String(), 40))
		}
	})

	mac := "52:54:00:94:00:01"
	d.mustCLI(t, "enroll", mac, "-hostname", "n1")
	lab.StartRA(t)
	vm := netlab.StartQEMU(t, netlab.QEMUOpts{Lab: lab, MAC: mac, Firmware: firmware})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	if _, err := vm.WaitConsole(ctx, "NETLAB: report ok"); err != nil {
		t.Fatalf("VM did not report back: %v", err)
	}
	// EDK2 gets no option 43, so it must ask port 4011 and be answered there.
	if firmware == "uefi" && !strings.Contains(d.log.String(), `"reply":"ACK","yiaddr":"0.0.0.0","file":"snponly.efi"`) {
		t.Error("UEFI client was not answered on port 4011")
	}
	if n := node(t, d, mac); n.State != inventory.Installed {
		t.Errorf("node state %s, want installed", n.State)
	}
	leases, _ := os.ReadFile(leaseFile)
	if !strings.Contains(string(leases), mac) || !strings.Contains(string(leases), "10.94.0.1") {
		t.Errorf("dnsmasq did not lease to the VM: %q", leases)
	}
	if out := d.mustCLI(t, "leases", "-json"); strings.TrimSpace(out) != "[]" {
		t.Errorf("proxy mode leased addresses: %s", out)
	}
	if !strings.Contains(d.log.String(), `"yiaddr":"0.0.0.0"`) {
		t.Error("no proxy offer (yiaddr 0.0.0.0) in bootstrapd's log")
	}
}
