package netlab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// ipmitool runs Debian's ipmitool against the node's BMC from the lab, as
// a second, independent IPMI 2.0 client: cipher suite 3 (ipmi_sim refuses
// 17), the password read from the node's 0600 file (-f), never argv.
func ipmitool(ctx context.Context, n *IPMINode, lab *Lab, passwordFile string, args ...string) (string, error) {
	base := []string{"-I", "lanplus", "-C", "3", "-N", "1", "-R", "2",
		"-H", n.Addr.Addr().String(), "-p", fmt.Sprint(n.Addr.Port()), "-U", n.User, "-f", passwordFile}
	out, err := lab.Command(ctx, "ipmitool", append(base, args...)...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// TestIPMINode: ipmi_sim answers IPMI 2.0 on the lab's address; the VM is
// off (no QEMU process) until "power on" through the BMC starts it, and it
// boots the network first; "power off" ends the process; a wrong password
// is refused; the password is on no process's command line.
func TestIPMINode(t *testing.T) {
	// Fail, not skip: scripts/deps.sh installs it, and a skipped test
	// proves nothing.
	if _, err := exec.LookPath("ipmitool"); err != nil {
		t.Fatal("ipmitool not installed (scripts/deps.sh installs Debian's ipmitool): it is the independent client this test checks ipmi_sim with")
	}
	lab := NewLab(t, "10.79.0.1/24")
	n := StartIPMINode(t, IPMIOpts{QEMU: QEMUOpts{Lab: lab}, Port: 6230})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	run := func(args ...string) string {
		t.Helper()
		out, err := ipmitool(ctx, n, lab, n.PasswordFile, args...)
		if err != nil {
			t.Fatalf("ipmitool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	if got := run("power", "status"); got != "Chassis Power is off" {
		t.Fatalf("power status at start: %q", got)
	}
	if n.Running() {
		t.Fatal("VM running before power on")
	}

	start := time.Now()
	run("power", "on")
	if err := n.WaitPower(ctx, true); err != nil {
		t.Fatal(err)
	}
	// Network first: the e1000's iPXE ROM runs, not "No bootable device".
	if _, err := n.WaitConsole(ctx, "iPXE initialising devices"); err != nil {
		t.Fatal(err)
	}
	t.Logf("power on -> iPXE on the console in %v", time.Since(start).Round(100*time.Millisecond))
	if got := run("power", "status"); got != "Chassis Power is on" {
		t.Errorf("power status after power on: %q", got)
	}

	// The password file and lan.conf are the only places it is.
	for _, pid := range append(lab.pids(), os.Getpid()) {
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if strings.Contains(string(cmdline), n.Password) {
			t.Errorf("the BMC password is on the command line of pid %d: %q", pid, cmdline)
		}
	}
	if fi, err := os.Stat(n.PasswordFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("password file: %v, %v", fi.Mode(), err)
	}

	wrong := t.TempDir() + "/wrong"
	if err := os.WriteFile(wrong, []byte("not-"+n.Password), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := ipmitool(ctx, n, lab, wrong, "power", "status"); err == nil {
		t.Errorf("a wrong password was accepted: %s", out)
	}

	run("power", "off")
	if err := n.WaitPower(ctx, false); err != nil {
		t.Fatal(err)
	}
	if got := run("power", "status"); got != "Chassis Power is off" {
		t.Errorf("power status after power off: %q", got)
	}

	// A second power-on starts a new QEMU and appends to the same console.
	from := len(n.Console())
	run("power", "on")
	if _, err := n.WaitConsoleFrom(ctx, from, "iPXE initialising devices"); err != nil {
		t.Fatal(err)
	}

	// A power cycle boots the VM again.
	from = len(n.Console())
	run("power", "cycle")
	if _, err := n.WaitConsoleFrom(ctx, from, "iPXE initialising devices"); err != nil {
		t.Fatal(err)
	}
	if !n.Running() {
		t.Error("VM off after a power cycle")
	}
}
