package e2e

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bootstrapd/bootstrapd/internal/netlab"
)

// TestShutdown: SIGTERM (what runit's `sv down` and systemd send) stops the
// daemon cleanly and quickly: exit status 0, "bootstrapd stopped" logged,
// the admin socket removed, the store and the ports released so a new
// daemon starts on the same state directory at once, and a client's lease
// from before the stop is still its lease after the restart.
func TestShutdown(t *testing.T) {
	lab := netlab.NewLab(t, "10.93.0.1/24")
	dir := t.TempDir()
	site := writeSite(t, lab, dir, `  mode       = "pool"
  subnet     = "10.93.0.0/24"
  range      = ["10.93.0.100", "10.93.0.120"]
  lease_time = "10m"`, "")
	d := startDaemon(t, lab, dir)

	// A client with a lease, still running (udhcpc -f), as a node would be.
	host := lab.AddHost(t, "")
	script := filepath.Join(dir, "udhcpc.sh")
	if err := os.WriteFile(script, []byte(udhcpcScript), 0o755); err != nil {
		t.Fatal(err)
	}
	events := filepath.Join(dir, "events")
	read := func() string { b, _ := os.ReadFile(events); return string(b) }
	client := host.Command(context.Background(), "udhcpc", "-f", "-i", host.Iface, "-s", script, "-t", "5", "-T", "1")
	if err := client.Start(); err != nil {
		t.Fatalf("udhcpc (apt-get install udhcpc): %v", err)
	}
	t.Cleanup(func() { client.Process.Kill(); client.Wait() })
	eventually(t, 15*time.Second, "udhcpc bound", func() bool { return strings.Contains(read(), "bound ") })
	before := leases(t, d)[host.MAC]
	if !before.IP.IsValid() {
		t.Fatalf("no lease for %s in the store", host.MAC)
	}

	// doctor beside the live daemon: its ports are its own, not conflicts.
	doctor := func() string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		out, err := lab.Command(ctx, d.bin, "doctor", "-config", site).CombinedOutput()
		if err != nil {
			t.Errorf("doctor: %v\n%s", err, out)
		}
		return string(out)
	}
	if out := doctor(); !strings.Contains(out, "OK   admin socket: a bootstrapd is serving on "+d.sock+" (0 nodes)") {
		t.Errorf("doctor beside a live daemon did not say it is running:\n%s", out)
	}

	// A TFTP transfer whose client has gone quiet (powered off mid-boot):
	// one block read, never acknowledged. The stop must not wait out the
	// transfer's retries, which take longer than systemd and runit wait
	// before they SIGKILL: the TFTP server wakes the transfer and ends it.
	stalled := host.ListenPacket(t, "udp4", ":0")
	if _, err := stalled.WriteTo([]byte("\x00\x01undionly.kpxe\x00octet\x00"), &net.UDPAddr{IP: lab.Addr.AsSlice(), Port: 69}); err != nil {
		t.Fatal(err)
	}
	stalled.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, _, err := stalled.ReadFrom(make([]byte, 2048)); err != nil || n < 4 {
		t.Fatalf("no first TFTP block: %d bytes, %v", n, err)
	}

	start := time.Now()
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.done:
	case <-time.After(5 * time.Second):
		t.Fatalf("bootstrapd still running 5s after SIGTERM:\n%s", tailLines(d.log.String(), 30))
	}
	stopped := time.Since(start)
	t.Logf("stopped in %v", stopped.Round(time.Millisecond))
	if code := d.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit status %d after SIGTERM (%v), want 0:\n%s", code, d.cmd.ProcessState, tailLines(d.log.String(), 30))
	}
	if !strings.Contains(d.log.String(), `"msg":"bootstrapd stopped"`) {
		t.Errorf("no \"bootstrapd stopped\" in the log:\n%s", tailLines(d.log.String(), 30))
	}
	if !strings.Contains(d.log.String(), `"err":"server shutting down"`) || stopped > 2*time.Second {
		t.Errorf("the stalled transfer was not ended by the stop (stopped in %v, want well under the 3 s grace):\n%s", stopped, tailLines(d.log.String(), 30))
	}
	if _, err := os.Stat(d.sock); err == nil {
		t.Errorf("admin socket %s left behind", d.sock)
	}

	// Everything it held is free again: doctor finds no daemon and no port
	// taken, which is what the next start needs.
	out := doctor()
	for _, want := range []string{"OK   admin socket: " + d.sock + " is free", "OK   dhcp port 67: 67/udp on br0 is free",
		"OK   tftp port: 10.93.0.1:69/udp is free", "OK   http port: 10.93.0.1:8080/tcp is free"} {
		if !strings.Contains(out, want) {
			t.Errorf("after the stop, doctor did not say %q:\n%s", want, out)
		}
	}

	// Right away on the same state directory: the store's lock is gone
	// (startDaemon fails if this one exits at start, as it would after 2s
	// waiting for a lock still held).
	d2 := startDaemon(t, lab, dir)
	after, ok := leases(t, d2)[host.MAC]
	if !ok || after.IP != before.IP {
		t.Fatalf("after the restart the lease is %+v (present %v), want %s as before", after, ok, before.IP)
	}
	// The client renews the address it has (a unicast REQUEST to the
	// server), and the new daemon ACKs it.
	time.Sleep(1100 * time.Millisecond) // lease times have second resolution
	if err := client.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "udhcpc renew", func() bool { return strings.Contains(read(), "renew ip="+before.IP.String()+" ") })
	if renewed := leases(t, d2)[host.MAC]; renewed.IP != before.IP || !renewed.Expires.After(before.Expires) {
		t.Errorf("renewal after the restart: before %+v, after %+v", before, renewed)
	}
	// udhcpc deconfigures once when it starts; again would mean a NAK.
	if n := strings.Count(read(), "deconfig "); n > 1 {
		t.Errorf("udhcpc lost its address across the restart:\n%s", read())
	}
}
