package netlab

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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
}

// QEMU is a running VM. Its serial console is captured to a file.
type QEMU struct {
	MAC     string
	Tap     string
	console string
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
	if opts.Lab == nil {
		t.Fatal("netlab: StartQEMU needs QEMUOpts.Lab")
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
	args := []string{
		"-accel", "tcg", "-m", fmt.Sprint(opts.MemoryMB),
		"-nographic", "-no-reboot",
		"-netdev", "tap,id=n0,ifname=" + opts.Tap + ",script=no,downscript=no",
	}
	switch opts.Firmware {
	case "", "bios":
		args = append(args, "-boot", "n", "-device", "e1000,netdev=n0,mac="+opts.MAC)
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
			"-drive", "if=pflash,format=raw,unit=1,file="+vars,
			// romfile= drops the iPXE ROM so EDK2's VirtioNetDxe + PXE boot it;
			// bootindex makes it the first boot option (no disks anyway).
			"-device", "virtio-net-pci,netdev=n0,mac="+opts.MAC+",romfile=,bootindex=1")
	default:
		t.Fatalf("netlab: unknown firmware %q (want bios or uefi)", opts.Firmware)
	}
	args = append(args, opts.Args...)

	q := &QEMU{MAC: opts.MAC, Tap: opts.Tap, console: filepath.Join(dir, "console.log"), done: make(chan struct{})}
	out, err := newConsoleWriter(q.console)
	if err != nil {
		t.Fatal(err)
	}
	q.cmd = opts.Lab.Command(context.Background(), "qemu-system-x86_64", args...)
	q.cmd.Stdout, q.cmd.Stderr = out, out // -nographic: serial console on stdout
	t.Logf("netlab: %s", strings.Join(q.cmd.Args, " "))
	q.started = time.Now()
	out.start = q.started
	if err := q.cmd.Start(); err != nil {
		out.Close()
		t.Fatalf("netlab: starting qemu: %v", err)
	}
	go func() {
		q.err = q.cmd.Wait()
		out.Close()
		close(q.done)
	}()
	t.Cleanup(func() {
		select {
		case <-q.done:
		default:
			_ = q.cmd.Process.Kill()
			<-q.done
		}
		if t.Failed() {
			t.Logf("netlab: last console lines of VM %s (seconds since start):\n%s", q.MAC, tail(q.TimedConsole(), 40))
		}
	})
	return q
}

// Console returns what the VM printed on its serial console so far, with
// carriage returns and terminal escape sequences removed.
func (q *QEMU) Console() string {
	b, _ := os.ReadFile(q.console)
	return cleanConsole(string(b))
}

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
	for {
		exited := false
		select {
		case <-q.done:
			exited = true
		default:
		}
		for _, line := range strings.Split(q.Console(), "\n") {
			if strings.Contains(line, substr) {
				return line, nil
			}
		}
		if exited {
			return "", fmt.Errorf("netlab: VM %s exited (%v) without printing %q", q.MAC, q.err, substr)
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("netlab: VM %s did not print %q: %w", q.MAC, substr, ctx.Err())
		case <-q.done:
		case <-time.After(200 * time.Millisecond):
		}
	}
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
	raw, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	timed, err := os.Create(path + ".timed")
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

func (w *consoleWriter) Close() {
	if len(w.line) > 0 {
		_, _ = w.Write([]byte{'\n'})
	}
	w.raw.Close()
	w.timed.Close()
}
