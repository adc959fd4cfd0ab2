package netlab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// IPMIOpts describes a node behind a simulated BMC.
type IPMIOpts struct {
	// QEMU is the VM the BMC powers (Lab required). Reboot is always on:
	// IPMI "power reset" reaches the VM as a guest reset, which -no-reboot
	// would turn into QEMU exiting, i.e. a power-off.
	QEMU QEMUOpts
	// Port is the BMC's RMCP+ (UDP) port on the lab's address; 623, the
	// standard one, when 0. Two nodes in one lab need different ports.
	Port int
	// User and Password log in with administrator rights ("admin" and a
	// random password when empty). OpenIPMI's config parser splits on
	// white space and IPMI 2.0 passwords have at most 20 bytes, so a
	// password must fit both.
	User, Password string
}

// IPMINode is a VM behind OpenIPMI's BMC simulator (ipmi_sim, Debian's
// openipmi package), wired as the OpenIPMI docs describe: ipmi_sim speaks
// IPMI 2.0 LAN (RMCP+) on the lab's address and, at "power on", runs the
// VM's QEMU itself (its startcmd), whose ipmi-bmc-extern device connects
// back to ipmi_sim's VM serial port. The VM is off until something powers
// it on through the BMC; its power state is whether that QEMU process
// exists, which the test can see from outside (Running).
//
// The VM boots the network first (bootindex, as StartQEMU sets it up):
// ipmi_sim refuses "chassis bootdev pxe", so a one-time PXE boot cannot be
// set through it, and the machine must already be set up to PXE-boot.
type IPMINode struct {
	MAC, Tap string
	// Addr is the BMC's LAN interface.
	Addr netip.AddrPort
	User string
	// Password is the BMC password, also written (without a newline) to
	// PasswordFile, mode 0600, for tools and site files that read it
	// from a file: it never goes on a command line.
	Password     string
	PasswordFile string

	poweredConsole // QEMU's output, appended at each power-on

	pidfile string // QEMU's -pidfile: present while it runs
	simLog  string
	sim     *exec.Cmd
	simDone chan struct{}
}

// URL is the BMC's address as bootstrapd names it: ipmi://ADDR:PORT.
func (n *IPMINode) URL() string { return "ipmi://" + n.Addr.String() }

// StartIPMINode starts ipmi_sim for a powered-off VM in opts.QEMU.Lab's
// namespace. ipmi_sim, and the VM if it is on, are killed when the test
// ends; if the test failed, the tail of the console and ipmi_sim's output
// are logged.
func StartIPMINode(t testing.TB, opts IPMIOpts) *IPMINode {
	t.Helper()
	if _, err := exec.LookPath("ipmi_sim"); err != nil {
		t.Fatal("netlab: ipmi_sim not found (apt-get install openipmi)")
	}
	lab := opts.QEMU.Lab
	if lab == nil {
		t.Fatal("netlab: StartIPMINode needs IPMIOpts.QEMU.Lab")
	}
	if opts.Port == 0 {
		opts.Port = 623
	}
	if opts.User == "" {
		opts.User = "admin"
	}
	if opts.Password == "" {
		opts.Password = randomHex(8)
	}
	if err := simString(opts.User, 16); err != nil {
		t.Fatalf("netlab: IPMI user: %v", err)
	}
	if err := simString(opts.Password, 20); err != nil {
		t.Fatalf("netlab: IPMI password: %v", err)
	}
	dir := t.TempDir()
	if strings.ContainsAny(dir, "\" \t") {
		t.Fatalf("netlab: ipmi_sim cannot name %q in its config", dir)
	}
	serial := freeLoopbackPort(t, lab)
	n := &IPMINode{
		Addr:         netip.AddrPortFrom(lab.Addr, uint16(opts.Port)),
		User:         opts.User,
		Password:     opts.Password,
		PasswordFile: filepath.Join(dir, "password"),
		pidfile:      filepath.Join(dir, "qemu.pid"),
		simLog:       filepath.Join(dir, "ipmi_sim.log"),
		simDone:      make(chan struct{}),
	}

	q := opts.QEMU
	q.Reboot = true
	q.Args = append(append([]string(nil), q.Args...),
		"-pidfile", n.pidfile,
		// The BMC's system interface: QEMU connects to ipmi_sim's VM
		// serial port, retrying every 10 s until ipmi_sim listens.
		"-chardev", fmt.Sprintf("socket,id=ipmi0,host=127.0.0.1,port=%d,reconnect=10", serial),
		"-device", "ipmi-bmc-extern,id=bmc0,chardev=ipmi0",
		"-device", "isa-ipmi-kcs,bmc=bmc0")
	cl := q.commandLine(t)
	n.MAC, n.Tap = cl.mac, cl.tap
	n.poweredConsole = poweredConsole{path: filepath.Join(dir, "console.log"), who: fmt.Sprintf("VM %s behind %s", n.MAC, n.Addr)}

	// ipmi_sim runs startcmd as `/bin/sh -c "exec CMD"` and reads config
	// lines of at most 1024 bytes, less than a UEFI VM's command line: so
	// startcmd names a script, which execs QEMU with its output appended
	// to the console file (the process ipmi_sim watches is QEMU itself).
	script := filepath.Join(dir, "start-vm.sh")
	body := "#!/bin/sh\nexec qemu-system-x86_64 " + shellQuote(cl.args...) +
		" </dev/null >>" + shellQuote(n.path) + " 2>&1\n"
	if err := os.WriteFile(script, []byte(body), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(n.PasswordFile, []byte(n.Password), 0o600); err != nil {
		t.Fatal(err)
	}
	// The password is in lan.conf, never on ipmi_sim's command line.
	conf := filepath.Join(dir, "lan.conf")
	if err := os.WriteFile(conf, []byte(simLANConf(n, serial, script)), 0o600); err != nil {
		t.Fatal(err)
	}
	emu := filepath.Join(dir, "bmc.emu")
	if err := os.WriteFile(emu, []byte(simEmu), 0o644); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "state")
	if err := os.Mkdir(state, 0o700); err != nil {
		t.Fatal(err)
	}

	logf, err := os.Create(n.simLog)
	if err != nil {
		t.Fatal(err)
	}
	n.sim = lab.Command(context.Background(), "ipmi_sim", "-c", conf, "-f", emu, "-s", state, "-n")
	n.sim.Stdout, n.sim.Stderr = logf, logf
	t.Logf("netlab: ipmi_sim for VM %s on %s; power-on runs %s", n.MAC, n.Addr, strings.Join(append([]string{"qemu-system-x86_64"}, cl.args...), " "))
	if err := n.sim.Start(); err != nil {
		logf.Close()
		t.Fatalf("netlab: starting ipmi_sim: %v", err)
	}
	go func() { _ = n.sim.Wait(); logf.Close(); close(n.simDone) }()
	t.Cleanup(func() {
		// The VM first: ipmi_sim's own exit does not stop it.
		if pid := n.PID(); pid != 0 {
			if p, err := os.FindProcess(pid); err == nil {
				_ = p.Kill()
			}
		}
		_ = n.sim.Process.Kill()
		<-n.simDone
		if t.Failed() {
			log, _ := os.ReadFile(n.simLog)
			t.Logf("netlab: ipmi_sim output:\n%s\nlast console lines of VM %s:\n%s", tail(string(log), 20), n.MAC, tail(n.Console(), 40))
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := lab.Ready(ctx, "udp", n.Addr.String()); err != nil {
		log, _ := os.ReadFile(n.simLog)
		t.Fatalf("netlab: ipmi_sim: %v\n%s", err, log)
	}
	return n
}

// simLANConf is ipmi_sim's lan.conf (ipmi_lan(5)): one LAN channel on the
// node's address, the VM serial port for QEMU, the start command, and one
// administrator. No anonymous user (user 1) exists, and IPMI 1.5's
// "none" and "straight" (clear text) authentication are not offered.
func simLANConf(n *IPMINode, serial int, script string) string {
	return fmt.Sprintf(`name "netlab"
set_working_mc 0x20
  startlan 1
    addr %s %d
    priv_limit admin
    allowed_auths_callback md5
    allowed_auths_user md5
    allowed_auths_operator md5
    allowed_auths_admin md5
    guid a123456789abcdefa123456789abcdef
  endlan
  serial 15 127.0.0.1 %d codec VM
  startcmd "%s"
  startnow false
  poweroff_wait 5
  kill_wait 5
  user 2 true "%s" "%s" admin 10 md5
`, n.Addr.Addr(), n.Addr.Port(), serial, script, n.User, n.Password)
}

// simEmu sets up the simulated BMC (ipmi_sim_cmd(5)), as in the lab notes:
// a BMC at 0x20 with a SEL, whose SDRs persist in the state directory.
const simEmu = `mc_setbmc 0x20
mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr
sel_enable 0x20 1000 0x0a
mc_enable 0x20
`

// simString checks a user name or password for ipmi_sim's lan.conf: a
// quoted word of printable ASCII of at most max bytes.
func simString(s string, max int) error {
	if s == "" || len(s) > max {
		return fmt.Errorf("want 1 to %d bytes, got %d", max, len(s))
	}
	for _, c := range []byte(s) {
		if c <= ' ' || c > '~' || c == '"' {
			return errors.New("only printable ASCII without spaces or double quotes fits in ipmi_sim's config")
		}
	}
	return nil
}

// freeLoopbackPort finds a TCP port free on 127.0.0.1 inside the lab,
// for ipmi_sim's VM serial port: two nodes in one lab must not share one.
func freeLoopbackPort(t testing.TB, lab *Lab) int {
	t.Helper()
	var port int
	err := lab.Do(func() error {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		port = l.Addr().(*net.TCPAddr).Port
		return l.Close()
	})
	if err != nil {
		t.Fatalf("netlab: a free port in %s: %v", lab.NS, err)
	}
	return port
}

// shellQuote quotes each word for sh.
func shellQuote(words ...string) string {
	q := make([]string, len(words))
	for i, w := range words {
		q[i] = "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}

// PID is the VM's QEMU process id, or 0 when the VM is off. It reads
// QEMU's pidfile and checks the process is that QEMU (not a recycled
// pid, not a zombie not yet reaped by ipmi_sim).
func (n *IPMINode) PID() int {
	b, err := os.ReadFile(n.pidfile)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !bytes.Contains(cmdline, []byte(n.pidfile)) {
		return 0
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// "pid (comm) S ...": the state follows the last ')'.
	if i := bytes.LastIndexByte(stat, ')'); i < 0 || i+2 >= len(stat) || stat[i+2] == 'Z' {
		return 0
	}
	return pid
}

// Running reports whether the VM is powered on: its QEMU process exists.
func (n *IPMINode) Running() bool { return n.PID() != 0 }

// WaitPower waits until the VM is on (a QEMU process exists) or off.
func (n *IPMINode) WaitPower(ctx context.Context, on bool) error {
	for n.Running() != on {
		select {
		case <-ctx.Done():
			return fmt.Errorf("netlab: VM %s behind %s still powered %s: %w", n.MAC, n.Addr, onOff(!on), ctx.Err())
		case <-n.simDone:
			return fmt.Errorf("netlab: ipmi_sim for VM %s exited", n.MAC)
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil
}

func onOff(on bool) string {
	if on {
		return "on"
	}
	return "off"
}
