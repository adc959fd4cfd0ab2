package netlab

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// OVMF firmware from Debian's ovmf package, as CODE/VARS pairs that belong
// together. The non-secure-boot builds need no SMM and work with QEMU's default
// i440fx machine (q35 works too). Debian 12 ships both sizes; later releases
// only the 4 MB one. VARS is copied per VM because the firmware writes to it.
var ovmfPairs = [][2]string{
	{"/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd"},
	{"/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"},
}

func ovmf() (code, vars string, err error) {
	for _, p := range ovmfPairs {
		if _, err := os.Stat(p[0]); err == nil {
			return p[0], p[1], nil
		}
	}
	return "", "", fmt.Errorf("no OVMF firmware in /usr/share/OVMF (apt-get install ovmf)")
}

// QEMUOpts describes a PXE client VM.
type QEMUOpts struct {
	Lab *Lab   // required: QEMU runs inside Lab's namespace
	Tap string // tap from Lab.AddTap; one is added when empty
	MAC string // NIC address; random 52:54:00:xx:xx:xx when empty
	// Firmware is "bios" (default): SeaBIOS with an e1000 whose option ROM is
	// Debian's iPXE, so the first DHCP request already carries user class "iPXE";
	// or "uefi": OVMF with a virtio-net NIC without option ROM, so EDK2's own PXE
	// runs (arch 7, no user class) and must TFTP an iPXE binary first.
	Firmware string
	MemoryMB int      // default 512
	Args     []string // extra QEMU arguments

	// Disk is a raw disk image attached as virtio-blk (or NVMe), booted
	// after the network: the firmware tries PXE first and falls through to
	// the disk when iPXE exits, as a PXE-provisioned machine is set up.
	// SeaBIOS follows bootindex (NIC 1, disk 2). OVMF is given a boot order
	// in NVRAM instead, see seedOVMFVars: with bootindex on the devices it
	// would rewrite BootOrder from QEMU's list at every boot, undoing what
	// the installed system writes there (efibootmgr).
	Disk string
	NVMe bool // attach Disk as an NVMe controller (/dev/nvme0n1) instead
	// Reboot lets a guest reboot (no -no-reboot): the VM lives on through
	// reboots as a machine does, instead of QEMU exiting.
	Reboot bool
}

// QEMU is a running VM. Its serial console is captured to a file.
type QEMU struct {
	MAC     string
	Tap     string
	console string
	qmp     string // the QMP monitor's unix socket
	cmd     *exec.Cmd
	done    chan struct{}
	err     error // set before done is closed
	started time.Time
}

// StartQEMU boots a VM from the network (TCG: KVM guests' traffic never reached
// the tap on these machines). The VM is killed when the test ends; if the test
// failed, the tail of its console is logged.
func StartQEMU(t testing.TB, opts QEMUOpts) *QEMU {
	t.Helper()
	cl := opts.commandLine(t)
	q, err := cl.start(filepath.Join(cl.dir, "console.log"))
	if err != nil {
		t.Fatalf("netlab: %v", err)
	}
	t.Logf("netlab: %s", strings.Join(q.cmd.Args, " "))
	t.Cleanup(func() {
		q.kill()
		if t.Failed() {
			t.Logf("netlab: last console lines of VM %s (seconds since start):\n%s", q.MAC, tail(q.TimedConsole(), 40))
		}
	})
	return q
}

// qemuCommand is a VM's QEMU command line and the files it names. It is
// the one place the command line is built: StartQEMU runs it, an IPMI
// node's start script execs it when the simulated BMC powers the node on,
// and a Machine runs it at each power-on.
type qemuCommand struct {
	lab  *Lab
	mac  string
	tap  string
	dir  string // the test's directory for this VM: console, OVMF VARS
	qmp  string // QMP socket (in a short directory of its own)
	args []string
}

// commandLine fills in opts' defaults (a tap, a MAC, 512 MB) and builds
// the command line. Files it needs are removed when the test ends.
func (opts QEMUOpts) commandLine(t testing.TB) *qemuCommand {
	t.Helper()
	if opts.Lab == nil {
		t.Fatal("netlab: QEMUOpts.Lab is required")
	}
	if opts.Tap == "" {
		opts.Tap = opts.Lab.AddTap(t)
	}
	if opts.MAC == "" {
		opts.MAC = "52:54:00" + randomMAC()[8:]
	}
	if opts.MemoryMB == 0 {
		opts.MemoryMB = 512
	}
	dir := t.TempDir()
	// A unix socket path must stay short (108 bytes); test names make
	// t.TempDir() long.
	mon, err := os.MkdirTemp("", "qmon")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(mon) })
	qmp := filepath.Join(mon, "qmp")
	args := []string{
		"-accel", "tcg", "-m", fmt.Sprint(opts.MemoryMB),
		"-nographic",
		"-qmp", "unix:" + qmp + ",server=on,wait=off",
		"-netdev", "tap,id=n0,ifname=" + opts.Tap + ",script=no,downscript=no",
	}
	if !opts.Reboot {
		args = append(args, "-no-reboot")
	}
	var disk []string // the disk's -drive and -device, bootindex appended by the caller
	if opts.Disk != "" {
		dev := "virtio-blk-pci,drive=d0,addr=0x4"
		if opts.NVMe {
			dev = "nvme,drive=d0,serial=standin0,addr=0x4"
		}
		disk = []string{"-drive", "file=" + opts.Disk + ",format=raw,if=none,id=d0", "-device", dev}
	}
	switch opts.Firmware {
	case "", "bios":
		nic := "e1000,netdev=n0,mac=" + opts.MAC
		if disk == nil {
			args = append(args, "-boot", "n", "-device", nic)
		} else {
			disk[3] += ",bootindex=2"
			args = append(append(args, "-device", nic+",bootindex=1"), disk...)
		}
	case "uefi":
		code, varsTemplate, err := ovmf()
		if err != nil {
			t.Fatalf("netlab: %v", err)
		}
		vars := filepath.Join(dir, "OVMF_VARS.fd")
		if err := copyFile(varsTemplate, vars); err != nil {
			t.Fatalf("netlab: OVMF vars: %v", err)
		}
		args = append(args,
			"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+code,
			"-drive", "if=pflash,format=raw,unit=1,file="+vars)
		// romfile= drops the iPXE ROM so EDK2's VirtioNetDxe + PXE boot it.
		nic := "virtio-net-pci,netdev=n0,mac=" + opts.MAC + ",romfile="
		if disk == nil {
			// bootindex makes it the first boot option (no disks anyway).
			args = append(args, "-device", nic+",bootindex=1")
		} else {
			nic += ",addr=0x3"
			args = append(append(append(args, ovmfNoIPv6...), "-device", nic), disk...)
			seedOVMFVars(t, dir, args, nic, disk)
		}
	default:
		t.Fatalf("netlab: unknown firmware %q (want bios or uefi)", opts.Firmware)
	}
	args = append(args, opts.Args...)
	return &qemuCommand{lab: opts.Lab, mac: opts.MAC, tap: opts.Tap, dir: dir, qmp: qmp, args: args}
}

// start runs QEMU in the lab's namespace, its output appended to console
// (and console.timed): a machine powered on again keeps one console
// history, as a serial console server would. It needs no testing.TB, so a
// stand-in BMC can power a VM on from its own goroutine.
func (c *qemuCommand) start(console string) (*QEMU, error) {
	q := &QEMU{MAC: c.mac, Tap: c.tap, console: console, qmp: c.qmp, done: make(chan struct{})}
	out, err := newConsoleWriter(q.console)
	if err != nil {
		return nil, err
	}
	q.cmd = c.lab.Command(context.Background(), "qemu-system-x86_64", c.args...)
	q.cmd.Stdout, q.cmd.Stderr = out, out // -nographic: serial console on stdout
	q.started = time.Now()
	out.start = q.started
	if err := q.cmd.Start(); err != nil {
		out.Close()
		return nil, fmt.Errorf("starting qemu: %w", err)
	}
	go func() {
		q.err = q.cmd.Wait()
		out.Close()
		close(q.done)
	}()
	return q, nil
}

// kill ends QEMU at once if it still runs and waits for it.
func (q *QEMU) kill() {
	select {
	case <-q.done:
	default:
		_ = q.cmd.Process.Kill()
		<-q.done
	}
}

// ovmfNoIPv6 turns off OVMF's IPv6 network boot (PXEv6 and HTTPv6), so
// that a BootOrder with the network first holds PXEv4 and HTTPv4 only:
// when iPXE exits to boot the disk, the firmware does not spend a DHCPv6
// timeout per IPv6 option before it reaches the disk.
var ovmfNoIPv6 = []string{
	"-fw_cfg", "name=opt/org.tianocore/IPv6PXESupport,string=no",
	"-fw_cfg", "name=opt/org.tianocore/IPv6Support,string=no",
}

// seedOVMFVars gives a fresh OVMF VARS file (unit 1 in args) a BootOrder
// with the network first and the disk second, as an operator sets up a
// machine to be provisioned by PXE, by booting OVMF once with the same
// devices (same PCI addresses and MAC) plus bootindex (NIC 1, disk 2) and
// a dead network, until it starts PXE: by then it has written BootOrder.
//
// Why not bootindex on the real VM: OVMF then rewrites BootOrder from
// QEMU's "bootorder" fw_cfg list at every boot (QemuBootOrderLib's
// SetBootOrderFromQemu): the listed devices' options first, in QEMU's
// order, an efibootmgr entry on the disk (HD(...) short form, matched to
// the disk) among them. The new entry that grub-install puts first would be
// put back behind the network at the next boot, hiding the real failure
// (the node never PXE-boots again, MAAS LP #1642298) and any fix of it.
// Without bootindex QEMU gives no list, and the firmware follows NVRAM as
// a real machine does; but a fresh VARS file would then get OVMF's default
// order, disks before the network.
func seedOVMFVars(t testing.TB, dir string, args []string, nic string, disk []string) {
	t.Helper()
	seed := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		switch {
		case args[i] == "-netdev" || args[i] == "-qmp":
			i++ // replaced below, or not needed
		case args[i] == "-device" && args[i+1] == nic:
			i++
		case args[i] == "-device" && args[i+1] == disk[3]:
			i++
		default:
			seed = append(seed, args[i])
		}
	}
	seed = append(seed, "-netdev", "user,id=n0,restrict=on",
		"-device", nic+",bootindex=1", "-device", disk[3]+",bootindex=2")
	log := filepath.Join(dir, "ovmf-seed.log")
	out, err := os.Create(log)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd := exec.Command("qemu-system-x86_64", seed...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("netlab: seeding OVMF's BootOrder: %v", err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		b, _ := os.ReadFile(log)
		if strings.Contains(string(b), "Start PXE over IPv4") {
			break
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			t.Fatalf("netlab: seeding OVMF's BootOrder: no PXE start in 2 minutes:\n%s", cleanConsole(string(b)))
		}
		time.Sleep(100 * time.Millisecond)
	}
	// SIGTERM: QEMU flushes the VARS file before it exits.
	_ = cmd.Process.Signal(syscall.SIGTERM)
	_ = cmd.Wait()
}

// Reset presses the VM's reset button (QEMU's system_reset): the firmware
// starts over, as after a power cycle, NVRAM kept.
func (q *QEMU) Reset() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := qmpExecute(ctx, q.qmp, "system_reset"); err != nil {
		return fmt.Errorf("netlab: VM %s: %w", q.MAC, err)
	}
	return nil
}

// PowerOff pulls the VM's plug: QEMU exits at once, nothing is flushed in
// the guest. Done is closed after it.
func (q *QEMU) PowerOff() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := qmpExecute(ctx, q.qmp, "quit")
	select {
	case <-q.done:
	case <-ctx.Done():
		q.kill()
	}
	if err != nil {
		return fmt.Errorf("netlab: VM %s: %w", q.MAC, err)
	}
	return nil
}

// Console returns what the VM printed on its serial console so far, with
// carriage returns and terminal escape sequences removed.
func (q *QEMU) Console() string { return readConsole(q.console) }

// TimedConsole is Console with each line prefixed by the seconds since QEMU
// started when the line was completed: where a slow boot spends its time.
func (q *QEMU) TimedConsole() string {
	b, _ := os.ReadFile(q.console + ".timed")
	return string(b)
}

// ConsolePath is the file the raw console is written to.
func (q *QEMU) ConsolePath() string { return q.console }

// Elapsed is the time since QEMU was started.
func (q *QEMU) Elapsed() time.Duration { return time.Since(q.started) }

// Wait waits for QEMU to exit (the fixture's /init powers off) and returns its
// exit error, or ctx's error if ctx ends first.
func (q *QEMU) Wait(ctx context.Context) error {
	select {
	case <-q.done:
		return q.err
	case <-ctx.Done():
		return fmt.Errorf("netlab: VM %s still running: %w", q.MAC, ctx.Err())
	}
}

// Done is closed when QEMU has exited.
func (q *QEMU) Done() <-chan struct{} { return q.done }

// WaitConsole waits until a console line contains substr and returns that line.
// It fails early if QEMU exits without printing it.
func (q *QEMU) WaitConsole(ctx context.Context, substr string) (string, error) {
	return q.WaitConsoleFrom(ctx, 0, substr)
}

// WaitConsoleFrom is WaitConsole over the console after its first from
// bytes (a len(Console()) taken earlier): what this boot printed, not the
// last one.
func (q *QEMU) WaitConsoleFrom(ctx context.Context, from int, substr string) (string, error) {
	line, exited, err := waitConsole(ctx, q.console, from, substr, q.done)
	switch {
	case exited:
		return "", fmt.Errorf("netlab: VM %s exited (%v) without printing %q", q.MAC, q.err, substr)
	case err != nil:
		return "", fmt.Errorf("netlab: VM %s did not print %q: %w", q.MAC, substr, err)
	}
	return line, nil
}

// waitConsole waits until a line of the console file at path, after its
// first from bytes, contains substr, and returns that line. done closed
// means no more will be written (exited is then true when nothing
// matched); a nil done never closes: a VM behind a BMC may be powered on
// again and add to the same console.
func waitConsole(ctx context.Context, path string, from int, substr string, done <-chan struct{}) (line string, exited bool, err error) {
	for {
		select {
		case <-done:
			exited = true
		default:
		}
		text := readConsole(path)
		if from < len(text) {
			text = text[from:]
		} else {
			text = ""
		}
		for _, line := range strings.Split(text, "\n") {
			if strings.Contains(line, substr) {
				return line, false, nil
			}
		}
		if exited {
			return "", true, nil
		}
		select {
		case <-ctx.Done():
			return "", false, ctx.Err()
		case <-done:
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// poweredConsole is the console of a VM behind a BMC (IPMINode,
// Machine): one file over all its power-ons, which the VM may be off
// between, so only ctx ends a wait. Embedded, it gives them Console,
// WaitConsole and WaitConsoleFrom.
type poweredConsole struct {
	path string
	who  string // "VM <mac> behind <bmc>", for errors
}

// Console is what the VM printed on its serial console over all its
// power-ons so far, cleaned as QEMU.Console is.
func (c poweredConsole) Console() string { return readConsole(c.path) }

// WaitConsole waits until a console line contains substr (from any boot).
func (c poweredConsole) WaitConsole(ctx context.Context, substr string) (string, error) {
	return c.WaitConsoleFrom(ctx, 0, substr)
}

// WaitConsoleFrom is WaitConsole after the console's first from bytes (a
// len(Console()) taken earlier): what a later boot printed.
func (c poweredConsole) WaitConsoleFrom(ctx context.Context, from int, substr string) (string, error) {
	line, _, err := waitConsole(ctx, c.path, from, substr, nil)
	if err != nil {
		return "", fmt.Errorf("netlab: %s did not print %q: %w", c.who, substr, err)
	}
	return line, nil
}

// readConsole is a console file's text, cleaned (see cleanConsole).
func readConsole(path string) string {
	b, _ := os.ReadFile(path)
	return cleanConsole(string(b))
}

// cleanConsole drops \r and ANSI escape sequences (SeaBIOS, OVMF and iPXE draw
// with them), so console text can be matched and logged.
func cleanConsole(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\r' || c == '\b':
		case c == 0x1b && i+1 < len(s) && s[i+1] == '[':
			i += 2
			for i < len(s) && (s[i] < 0x40 || s[i] > 0x7e) {
				i++
			}
		case c == 0x1b:
			i++ // two-byte sequence such as ESC c
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// consoleWriter stores QEMU's output raw and, line by line, cleaned and timed.
type consoleWriter struct {
	raw, timed *os.File
	start      time.Time
	line       []byte
}

func newConsoleWriter(path string) (*consoleWriter, error) {
	raw, err := appendFile(path)
	if err != nil {
		return nil, err
	}
	timed, err := appendFile(path + ".timed")
	if err != nil {
		raw.Close()
		return nil, err
	}
	return &consoleWriter{raw: raw, timed: timed}, nil
}

func (w *consoleWriter) Write(p []byte) (int, error) {
	for _, c := range p {
		if c != '\n' {
			w.line = append(w.line, c)
			continue
		}
		if l := strings.TrimSpace(cleanConsole(string(w.line))); l != "" {
			fmt.Fprintf(w.timed, "%7.2f %s\n", time.Since(w.start).Seconds(), l)
		}
		w.line = w.line[:0]
	}
	return w.raw.Write(p)
}

// appendFile opens path for appending, creating it: a VM powered on again
// adds to the console it had.
func appendFile(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
}

func (w *consoleWriter) Close() {
	if len(w.line) > 0 {
		_, _ = w.Write([]byte{'\n'})
	}
	w.raw.Close()
	w.timed.Close()
}
