package e2e

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/bootstrapd/bootstrapd/internal/bmc/redfishtest"
	"github.com/bootstrapd/bootstrapd/internal/inventory"
	"github.com/bootstrapd/bootstrapd/internal/netlab"
	"github.com/bootstrapd/bootstrapd/internal/routeros/routerostest"
	"github.com/bootstrapd/bootstrapd/internal/testlog"
)

// TestIPMIPower: a powered-off VM behind OpenIPMI's BMC simulator.
// `enroll -bmc ipmi://... -power -wait installed` takes it to installed
// with no test code touching QEMU after setup: bootstrapd asks for a
// one-time PXE boot (ipmi_sim refuses it: a recorded warning, the VM
// boots the network first anyway) and powers it on over IPMI 2.0, the
// VM PXE-boots the test kernel, which reports back and powers off. Then
// `power status|on|off` follow the VM's QEMU process, `reinstall -power`
// cycles the running node into its installer again, and retire (the
// site's power_off_on_retire) powers it off. The BMC password, in a
// 0600 file the site names, appears in no log, event, output or argv.
func TestIPMIPower(t *testing.T) {
	const password = "Ipmi-e2e-7f3a9c"
	b := startBMCLab(t, "10.85.0", `  user = "admin"
  password_file = "bmc-password"
  timeout = "5s"
  power_off_on_retire = true`, password)
	mac := "52:54:00:85:00:01"
	vm := netlab.StartIPMINode(t, netlab.IPMIOpts{QEMU: netlab.QEMUOpts{Lab: b.lab, MAC: mac}, Port: 6230, Password: password})
	if vm.Running() {
		t.Fatal("VM on before enroll")
	}

	start := time.Now()
	b.mustCLI(t, "enroll", mac, "-hostname", "n1", "-bmc", vm.URL(), "-power", "-wait", "installed")
	t.Logf("enroll -power -wait installed: %v", time.Since(start).Round(time.Second))
	// The VM prints its report's success once the daemon has answered it.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if _, err := vm.WaitConsole(ctx, "NETLAB: report ok"); err != nil {
		t.Fatalf("installed, but: %v", err)
	}
	// ipmi_sim refuses the one-time PXE boot: a warning, then power on.
	b.waitEvent(t, mac, 5*time.Second, "power install via "+vm.URL(), "one-time PXE boot refused")
	b.waitEvent(t, mac, 5*time.Second, "power install via "+vm.URL(), "power up")

	// The test kernel powers the VM off after its report.
	if err := vm.WaitPower(ctx, false); err != nil {
		t.Fatal(err)
	}
	if got := b.powerState(t, "n1"); got != "off" {
		t.Errorf("power status of a VM that powered itself off: %s", got)
	}

	// Powered on again, the installed node is sent to its disk.
	from := len(vm.Console())
	b.mustCLI(t, "power", "on", "n1")
	if err := vm.WaitPower(ctx, true); err != nil {
		t.Fatal(err)
	}
	if _, err := vm.WaitConsoleFrom(ctx, from, "is installed; booting the local disk"); err != nil {
		t.Fatal(err)
	}
	if got := b.powerState(t, "n1"); got != "on" {
		t.Errorf("power status of a running VM: %s", got)
	}
	b.assertNoSecret(t, password) // while every process is up: bootstrapd, ipmi_sim, QEMU

	// reinstall -power cycles the running node into its installer.
	from = len(vm.Console())
	b.mustCLI(t, "reinstall", "n1", "-power")
	if _, err := vm.WaitConsoleFrom(ctx, from, "NETLAB: report ok"); err != nil {
		t.Fatalf("reinstall -power: %v", err)
	}
	eventually(t, 10*time.Second, "n1 installed again", func() bool { return b.node(t, mac).State == inventory.Installed })
	b.waitEvent(t, mac, 5*time.Second, "power install via "+vm.URL(), "was on")
	if err := vm.WaitPower(ctx, false); err != nil {
		t.Fatal(err)
	}

	b.mustCLI(t, "power", "on", "n1")
	if err := vm.WaitPower(ctx, true); err != nil {
		t.Fatal(err)
	}
	b.mustCLI(t, "power", "off", "n1")
	if err := vm.WaitPower(ctx, false); err != nil {
		t.Fatalf("power off: %v", err)
	}
	b.waitEvent(t, mac, 5*time.Second, "power off via "+vm.URL(), "[api]")

	// retire powers the node off when the site says so.
	b.mustCLI(t, "power", "on", "n1")
	if err := vm.WaitPower(ctx, true); err != nil {
		t.Fatal(err)
	}
	b.mustCLI(t, "retire", "n1", "-wait")
	if err := vm.WaitPower(ctx, false); err != nil {
		t.Fatalf("retire: %v", err)
	}
	if n := b.node(t, mac); n.State != inventory.Retired {
		t.Errorf("state %s after retire -wait", n.State)
	}
	b.waitEvent(t, mac, 5*time.Second, "power off via "+vm.URL(), "[bootstrapd]")
	b.assertNoSecret(t, password)
}

// TestWakeOnLAN: `enroll -wol` and `power on -wol` send the node's magic
// packet on the provisioning interface; a machine on the LAN receives
// each as a UDP broadcast to 255.255.255.255:9 from bootstrapd's address
// whose 102 bytes are six 0xff and the MAC sixteen times.
func TestWakeOnLAN(t *testing.T) {
	b := startBMCLab(t, "10.85.3", `  timeout = "5s"`, "")
	sleeper := b.lab.AddHost(t, "")
	capture := sleeper.Capture(t, sleeper.Iface)
	mac := sleeper.MAC
	hw, _ := net.ParseMAC(mac)
	want := append(bytes.Repeat([]byte{0xff}, 6), bytes.Repeat(hw, 16)...)

	for _, args := range [][]string{
		{"enroll", mac, "-hostname", "sleeper", "-wol"},
		{"power", "on", "sleeper", "-wol"},
	} {
		b.mustCLI(t, args...)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		frame, err := capture.Next(ctx, func(f []byte) bool {
			u, ok := netlab.ParseUDP(f)
			return ok && u.Dst.Port() == 9
		})
		cancel()
		if err != nil {
			t.Fatalf("%s: no magic packet reached the LAN: %v", strings.Join(args[:2], " "), err)
		}
		u, _ := netlab.ParseUDP(frame)
		if !bytes.Equal(u.Payload, want) {
			t.Errorf("%s: magic packet payload (%d bytes) %x, want %x", strings.Join(args[:2], " "), len(u.Payload), u.Payload, want)
		}
		if u.DstMAC.String() != "ff:ff:ff:ff:ff:ff" || u.Dst.String() != "255.255.255.255:9" || u.Src.Addr() != b.lab.Addr {
			t.Errorf("%s: magic packet %s -> %s (Ethernet to %s), want a broadcast from %s", strings.Join(args[:2], " "), u.Src, u.Dst, u.DstMAC, b.lab.Addr)
		}
	}
	b.waitEvent(t, mac, 5*time.Second, "power wake via Wake-on-LAN", "br0", "[api]")
}

// TestRedfishPower: the same hands-off install against the Redfish
// service stand-in (HTTPS, its certificate pinned by fingerprint in the
// site), whose ComputerSystem drives a QEMU VM through QMP. bootstrapd
// PATCHes a one-time PXE boot override (Pxe, Once, and the mode: Legacy
// for a node it knows nothing of, UEFI for one labelled firmware=uefi),
// which the stand-in sees the power-on boot with, and resets the system
// on; `power off` ends the QEMU process; retire powers it off.
func TestRedfishPower(t *testing.T) {
	for i, tc := range []struct {
		firmware, mode string
		enroll         []string
	}{
		{"bios", "Legacy", nil},
		{"uefi", "UEFI", []string{"-label", "firmware=uefi"}},
	} {
		t.Run(tc.firmware, func(t *testing.T) {
			redfishPower(t, fmt.Sprintf("10.85.%d", 10+i), tc.firmware, tc.mode, tc.enroll...)
		})
	}
}

func redfishPower(t *testing.T, prefix, firmware, mode string, enroll ...string) {
	const password = "Redfish-e2e-5b1d"
	b := newBMCLab(t, prefix)
	mac := "52:54:00:85:01:01"
	vm := netlab.NewMachine(t, netlab.QEMUOpts{Lab: b.lab, MAC: mac, Firmware: firmware})
	srv, url := b.serveRedfish(t, 8443, redfishtest.Options{User: "admin", Password: password, Machine: vm})
	b.start(t, fmt.Sprintf(`  user = "admin"
  password_file = "bmc-password"
  fingerprint = %q
  timeout = "5s"
  power_off_on_retire = true`, srv.Fingerprint), password)

	start := time.Now()
	b.mustCLI(t, append([]string{"enroll", mac, "-hostname", "n1", "-bmc", url, "-power", "-wait", "installed"}, enroll...)...)
	t.Logf("enroll -power -wait installed: %v", time.Since(start).Round(time.Second))
	// The VM prints its report's success once the daemon has answered it.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if _, err := vm.WaitConsole(ctx, "NETLAB: report ok"); err != nil {
		t.Fatalf("installed, but: %v", err)
	}
	current, boots := srv.Boot(0)
	if len(boots) == 0 || boots[0] != (redfishtest.BootOverride{Target: "Pxe", Enabled: "Once", Mode: mode}) {
		t.Errorf("the power-on booted with override %+v, want Pxe, Once, %s", boots, mode)
	}
	if current.Enabled != "Disabled" {
		t.Errorf("the Once override is still set after its boot: %+v", current)
	}
	b.waitEvent(t, mac, 5*time.Second, "power install via "+url, "Boot override set: Pxe, Once, "+mode)
	var patched, reset bool
	for _, r := range srv.Requests() {
		if r.Method == "PATCH" && r.Path == srv.SystemPath(0) && r.Status/100 == 2 {
			boot, _ := r.Body["Boot"].(map[string]any)
			want := map[string]any{"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Once", "BootSourceOverrideMode": mode}
			for k, v := range want {
				if boot[k] != v {
					t.Errorf("PATCH %s: Boot.%s = %v, want %v", r.Path, k, boot[k], v)
				}
			}
			patched = true
		}
		if r.Method == "POST" && strings.HasSuffix(r.Path, "/Actions/ComputerSystem.Reset") && r.Status/100 == 2 {
			reset = true
		}
		// Only the service root and logging in go without credentials.
		open := r.Path == "/redfish" || r.Path == "/redfish/v1" || (r.Method == "POST" && r.Path == "/redfish/v1/SessionService/Sessions")
		if r.Auth == "" && !open {
			t.Errorf("unauthenticated request %s %s", r.Method, r.Path)
		}
	}
	if !patched || !reset {
		t.Errorf("boot override PATCHed %v, Reset POSTed %v; requests:\n%v", patched, reset, srv.Requests())
	}

	// The test kernel powers the VM off after its report.
	eventually(t, time.Minute, "the VM powering itself off", func() bool { return !vm.Running() })
	if got := b.powerState(t, "n1"); got != "off" {
		t.Errorf("power status of a VM that powered itself off: %s", got)
	}
	from := len(vm.Console())
	b.mustCLI(t, "power", "on", "n1")
	if _, err := vm.WaitConsoleFrom(ctx, from, "is installed; booting the local disk"); err != nil {
		t.Fatal(err)
	}
	if got := b.powerState(t, "n1"); got != "on" {
		t.Errorf("power status of a running VM: %s", got)
	}
	b.mustCLI(t, "power", "off", "n1")
	if vm.Running() {
		t.Error("VM still running after power off")
	}
	b.mustCLI(t, "power", "on", "n1")
	b.mustCLI(t, "retire", "n1", "-wait")
	eventually(t, 30*time.Second, "retire powering the VM off", func() bool { return !vm.Running() })
	b.waitEvent(t, mac, 5*time.Second, "power off via "+url, "[bootstrapd]")
	if srv.Sessions() != 0 {
		t.Errorf("%d Redfish sessions left open", srv.Sessions())
	}
	b.assertNoSecret(t, password)
}

// TestBMCBadInput: a wrong password (ipmi_sim with another one), a BMC
// address nobody answers on, and a Redfish service that accepts
// connections and never answers. Each power action fails with an error
// naming the node and the BMC, in enroll's output (exit 1) and the node's
// events, within the site's bmc timeout; while the hanging BMC holds its
// call, a host on the LAN still gets its DHCP lease, an iPXE binary over
// TFTP and the boot script over HTTP. A Redfish system whose boot
// override is locked is powered on all the same, with a recorded warning.
func TestBMCBadInput(t *testing.T) {
	const password = "Right-pw-0c4e"
	b := newBMCLab(t, "10.85.2")
	// One certificate for both Redfish stand-ins, pinned in the site, so
	// the TLS handshake succeeds and the hanging one then hangs.
	cert, _, err := routerostest.SelfSigned()
	if err != nil {
		t.Fatal(err)
	}
	hangLog := &testlog.Buffer{}
	hang, hangURL := b.serveRedfish(t, 8443, redfishtest.Options{User: "admin", Password: password, Hang: true, TLS: cert,
		Log: slog.New(slog.NewTextHandler(hangLog, nil))})
	locked := &redfishtest.MemMachine{}
	_, lockedURL := b.serveRedfish(t, 8444, redfishtest.Options{User: "admin", Password: password, RefuseBoot: true, TLS: cert, Machine: locked})
	b.start(t, fmt.Sprintf(`  user = "admin"
  password_file = "bmc-password"
  fingerprint = %q
  timeout = "5s"`, hang.Fingerprint), password)
	wrong := netlab.StartIPMINode(t, netlab.IPMIOpts{QEMU: netlab.QEMUOpts{Lab: b.lab, MAC: "52:54:00:85:02:01"}, Port: 6230, Password: "Other-pw-91aa"})
	probe := b.lab.AddHost(t, "")
	b.mustCLI(t, "enroll", probe.MAC, "-hostname", "probe")

	for _, tc := range []struct {
		name, mac, bmc string
		want           string // what the error says is wrong
		probe          bool   // check DHCP and HTTP while the call is pending
	}{
		{"wrong-password", wrong.MAC, wrong.URL(), "refused the user name or password", false},
		{"unreachable", "52:54:00:85:02:02", "ipmi://10.85.2.99:623", "did not answer in time", false},
		{"hanging", "52:54:00:85:02:03", hangURL, "did not answer in time", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			type result struct {
				out string
				err error
				at  time.Time
			}
			done := make(chan result, 1)
			start := time.Now()
			go func() {
				out, err := b.cli(t, "enroll", tc.mac, "-hostname", tc.name, "-bmc", tc.bmc, "-power")
				done <- result{out, err, time.Now()}
			}()
			var probed time.Time
			if tc.probe {
				eventually(t, 5*time.Second, "bootstrapd's request to the hanging BMC", func() bool {
					return strings.Contains(hangLog.String(), "hanging")
				})
				ctx, cancel := context.WithTimeout(context.Background(), 6*time.Second)
				err := b.probeServices(ctx, probe)
				cancel()
				if err != nil {
					t.Errorf("while a BMC hangs: %v", err)
				}
				probed = time.Now()
				t.Logf("%s: DHCP, TFTP and HTTP answered %v after the power action started", tc.name, probed.Sub(start).Round(100*time.Millisecond))
			}
			// The node's history says which BMC failed and why.
			line := b.waitEvent(t, tc.mac, 30*time.Second, "power install "+tc.name, "BMC "+tc.bmc, tc.want)
			t.Logf("%s: event after %v: %s", tc.name, time.Since(start).Round(100*time.Millisecond), line)
			// So does enroll, which enrolled the node and exits 1.
			r := <-done
			if r.err == nil || !strings.Contains(r.out, tc.name) || !strings.Contains(r.out, tc.bmc) || !strings.Contains(r.out, tc.want) {
				t.Errorf("enroll -power: %v, want exit 1 naming the node %s and the BMC %s:\n%s", r.err, tc.name, tc.bmc, r.out)
			}
			if tc.probe && !probed.Before(r.at) {
				t.Errorf("the services were probed only after the BMC call ended")
			}
			if elapsed := time.Since(start); elapsed > 15*time.Second {
				t.Errorf("the failure took %v with a 5s bmc timeout", elapsed)
			}
		})
	}
	if wrong.Running() {
		t.Error("the VM behind a BMC that refused the password is on")
	}

	// A Redfish system whose boot override is locked: a recorded warning,
	// and the node is powered on to boot by its own boot order.
	mac := "52:54:00:85:02:04"
	out := b.mustCLI(t, "enroll", mac, "-hostname", "locked", "-bmc", lockedURL, "-power")
	if on, _ := locked.PowerState(context.Background()); !on || !strings.Contains(out, "warning") {
		t.Errorf("enroll -power with a locked boot override: machine on %v; output:\n%s", on, out)
	}
	b.waitEvent(t, mac, 5*time.Second, "power install via "+lockedURL, "warning: one-time PXE boot refused", "read only property")
	b.waitEvent(t, mac, 5*time.Second, "power install via "+lockedURL, "Reset On accepted")
	b.assertNoSecret(t, password)
}
