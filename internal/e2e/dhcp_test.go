package e2e

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/bootstrapd/bootstrapd/internal/inventory"
	"github.com/bootstrapd/bootstrapd/internal/netlab"
	"github.com/bootstrapd/bootstrapd/internal/testlog"
)

const poolDHCP = `  mode       = "pool"
  subnet     = "10.91.0.0/24"
  range      = ["10.91.0.100", "10.91.0.120"]
  router     = "10.91.0.1"
  dns        = ["10.91.0.1"]
  domain     = "lab.test"
  lease_time = "10m"`

// udhcpcScript records every udhcpc event with the values it was given and
// configures the address, as a real client's script would (renewals are
// unicast to it). It never touches resolv.conf: that file is the host's.
const udhcpcScript = `#!/bin/sh
echo "$1 ip=$ip mask=$subnet router=$router dns=$dns domain=$domain host=$hostname lease=$lease" >> "$(dirname "$0")/events"
case "$1" in
bound|renew) ip addr flush dev "$interface"; ip addr add "$ip/$subnet" dev "$interface" ;;
deconfig) ip addr flush dev "$interface" ;;
esac
`

// dhclientScript is the part of dhclient-script that matters here: the
// address on the interface. Debian's own script would rewrite the host's
// resolv.conf.
const dhclientScript = `#!/bin/sh
case "$reason" in
BOUND|RENEW|REBIND|REBOOT) ip addr flush dev "$interface"; ip addr add "$new_ip_address/$new_subnet_mask" dev "$interface" ;;
RELEASE|EXPIRE|STOP) ip addr flush dev "$interface" ;;
esac
`

func leases(t *testing.T, d *daemon) map[string]inventory.Lease {
	t.Helper()
	var ls []inventory.Lease
	if err := json.Unmarshal([]byte(d.mustCLI(t, "leases", "-json")), &ls); err != nil {
		t.Fatal(err)
	}
	out := map[string]inventory.Lease{}
	for _, l := range ls {
		out[l.MAC] = l
	}
	return out
}

func TestPoolModeUdhcpc(t *testing.T) {
	lab := netlab.NewLab(t, "10.91.0.1/24")
	dir := t.TempDir()
	writeSite(t, lab, dir, poolDHCP, "")
	d := startDaemon(t, lab, dir)
	host := lab.AddHost(t, "")

	script := filepath.Join(dir, "udhcpc.sh")
	os.WriteFile(script, []byte(udhcpcScript), 0o755)
	events := filepath.Join(dir, "events")
	cmd := host.Command(context.Background(), "udhcpc", "-f", "-i", host.Iface, "-s", script, "-t", "5", "-T", "1")
	if err := cmd.Start(); err != nil {
		t.Fatalf("udhcpc (apt-get install udhcpc): %v", err)
	}
	defer cmd.Process.Kill()
	read := func() string { b, _ := os.ReadFile(events); return string(b) }
	eventually(t, 15*time.Second, "udhcpc bound", func() bool { return strings.Contains(read(), "bound ") })
	bound := read()
	for _, want := range []string{"ip=10.91.0.1", "mask=255.255.255.0", "router=10.91.0.1", "dns=10.91.0.1", "domain=lab.test", "lease=600"} {
		if !strings.Contains(bound, want) {
			t.Errorf("udhcpc bound without %q: %s", want, bound)
		}
	}
	first := leases(t, d)[host.MAC]
	if !first.IP.IsValid() || first.Expires.Before(time.Now().Add(9*time.Minute)) {
		t.Fatalf("lease in the store: %+v", first)
	}

	// SIGUSR1: renew (a unicast REQUEST with ciaddr).
	time.Sleep(1100 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGUSR1)
	eventually(t, 10*time.Second, "udhcpc renew", func() bool { return strings.Contains(read(), "renew ") })
	renewed := leases(t, d)[host.MAC]
	if renewed.IP != first.IP || !renewed.Expires.After(first.Expires) {
		t.Errorf("renewal did not extend the lease: before %+v after %+v", first, renewed)
	}

	// SIGUSR2: release. The lease ends now; the record stays for affinity.
	cmd.Process.Signal(syscall.SIGUSR2)
	eventually(t, 10*time.Second, "release recorded", func() bool {
		l := leases(t, d)[host.MAC]
		return !l.Expires.After(time.Now())
	})
}

func TestPoolModeDhclient(t *testing.T) {
	lab := netlab.NewLab(t, "10.91.0.1/24")
	dir := t.TempDir()
	writeSite(t, lab, dir, poolDHCP, "")
	d := startDaemon(t, lab, dir)
	host := lab.AddHost(t, "")
	leaseFile := filepath.Join(dir, "dhclient.leases")
	script := filepath.Join(dir, "dhclient.sh")
	os.WriteFile(script, []byte(dhclientScript), 0o755)
	dhclient := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		base := []string{"-v", "-1", "-sf", script, "-lf", leaseFile, "-pf", filepath.Join(dir, "dhclient.pid")}
		out, err := host.Command(ctx, "dhclient", append(append(base, args...), host.Iface)...).CombinedOutput()
		if err != nil {
			t.Fatalf("dhclient %v (apt-get install isc-dhcp-client): %v\n%s", args, err, out)
		}
		return string(out)
	}
	out := dhclient()
	if !strings.Contains(out, "DHCPACK of 10.91.0.1") {
		t.Fatalf("dhclient got no ACK:\n%s", out)
	}
	first := leases(t, d)[host.MAC]
	// Stop the background dhclient, then start again from the lease file:
	// INIT-REBOOT, a REQUEST for the address it had, which must be ACKed.
	dhclient("-x")
	time.Sleep(1100 * time.Millisecond)
	out = dhclient()
	if !strings.Contains(out, "DHCPREQUEST for "+first.IP.String()) || !strings.Contains(out, "DHCPACK of "+first.IP.String()) {
		t.Fatalf("dhclient did not renew %s:\n%s", first.IP, out)
	}
	if again := leases(t, d)[host.MAC]; !again.Expires.After(first.Expires) {
		t.Errorf("renewal did not extend the lease: %+v then %+v", first, again)
	}
	dhclient("-r")
	if l := leases(t, d)[host.MAC]; l.Expires.After(time.Now()) {
		t.Errorf("lease still live after dhclient -r: %+v", l)
	}
}

func TestReservationModeAnswersOnlyEnrolled(t *testing.T) {
	lab := netlab.NewLab(t, "10.91.0.1/24")
	dir := t.TempDir()
	writeSite(t, lab, dir, `  mode = "reservation"
  subnet = "10.91.0.0/24"
  domain = "lab.test"`, stubProfile(t, dir))
	d := startDaemon(t, lab, dir)
	host := lab.AddHost(t, "")
	script := filepath.Join(dir, "udhcpc.sh")
	os.WriteFile(script, []byte(udhcpcScript), 0o755)
	udhcpc := func() (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		out, err := host.Command(ctx, "udhcpc", "-n", "-q", "-f", "-i", host.Iface, "-s", script, "-t", "3", "-T", "1").CombinedOutput()
		return string(out), err
	}
	if out, err := udhcpc(); err == nil {
		t.Fatalf("an unknown MAC got a lease in reservation mode:\n%s", out)
	} else if _, ok := err.(*exec.ExitError); !ok {
		t.Fatal(err)
	}
	d.mustCLI(t, "enroll", host.MAC, "-hostname", "n7", "-ip", "10.91.0.77")
	out, err := udhcpc()
	if err != nil {
		t.Fatalf("enrolled MAC got no lease: %v\n%s", err, out)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "events"))
	if !strings.Contains(string(b), "bound ip=10.91.0.77") || !strings.Contains(string(b), "host=n7") {
		t.Errorf("enrolled node bound with: %s", b)
	}
}

// TestAckedLeasesSurviveKill9: perfdhcp runs DORA for many clients while
// the daemon is killed with SIGKILL mid-stream. After a restart, every lease
// perfdhcp saw ACKed must be in the store: a lease is on disk before its ACK
// leaves.
func TestAckedLeasesSurviveKill9(t *testing.T) {
	lab := netlab.NewLab(t, "10.95.0.1/16")
	dir := t.TempDir()
	writeSite(t, lab, dir, `  mode   = "pool"
  subnet = "10.95.0.0/16"
  range  = ["10.95.1.0", "10.95.250.0"]`, "")
	d := startDaemon(t, lab, dir)
	host := lab.AddHost(t, "10.95.0.2/16")

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	perf := host.Command(ctx, "perfdhcp", "-4", "-l", host.Iface, "-r", "400", "-R", "20000", "-p", "4", "-x", "l", "10.95.0.1")
	out := &testlog.Buffer{}
	perf.Stdout, perf.Stderr = out, out
	if err := perf.Start(); err != nil {
		t.Fatalf("perfdhcp (apt-get install kea-admin): %v", err)
	}
	time.Sleep(2 * time.Second)
	d.cmd.Process.Kill()
	<-d.done
	perf.Wait() // exits non-zero: exchanges were lost, which is the point

	acked := perfdhcpACKs(out.String())
	if len(acked) < 100 {
		t.Fatalf("perfdhcp saw only %d ACKs before the kill; output:\n%s", len(acked), tailLines(out.String(), 30))
	}
	d = startDaemon(t, lab, dir)
	stored := leases(t, d)
	missing := 0
	for mac, ip := range acked {
		if l, ok := stored[mac]; !ok || l.IP.String() != ip || !l.Expires.After(time.Now()) {
			missing++
		}
	}
	t.Logf("%d ACKed before SIGKILL, %d in the store after restart", len(acked), len(stored))
	if missing > 0 {
		t.Errorf("%d of %d ACKed leases missing after SIGKILL and restart", missing, len(acked))
	}
}

// perfdhcpACKs parses `perfdhcp -x l` output: MAC -> IP for every lease it
// saw ACKed (its client id is 01 followed by the MAC).
func perfdhcpACKs(out string) map[string]string {
	acked := map[string]string{}
	on := false
	for _, line := range strings.Split(out, "\n") {
		switch {
		case strings.HasPrefix(line, "***Leases for REQUEST-ACK"):
			on = true
			continue
		case strings.HasPrefix(line, "***"):
			on = false
		}
		f := strings.Split(line, ",")
		if !on || len(f) < 2 || len(f[0]) != 14 || !strings.HasPrefix(f[0], "01") {
			continue
		}
		m := f[0][2:]
		acked[m[0:2]+":"+m[2:4]+":"+m[4:6]+":"+m[6:8]+":"+m[8:10]+":"+m[10:12]] = strings.TrimSpace(f[1])
	}
	return acked
}

// TestMalformedPacketsKeepServing: garbage, truncated and non-Ethernet
// packets on port 67 are logged and dropped; the next real client is served.
func TestMalformedPacketsKeepServing(t *testing.T) {
	lab := netlab.NewLab(t, "10.91.0.1/24")
	dir := t.TempDir()
	writeSite(t, lab, dir, poolDHCP, "")
	d := startDaemon(t, lab, dir)
	attacker := lab.AddHost(t, "10.91.0.2/24")
	conn, err := attacker.Dial(context.Background(), "udp", "10.91.0.1:67")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	valid := validDiscover(t)
	tokenRing := append([]byte(nil), valid...)
	tokenRing[1] = 6 // htype token ring: not an Ethernet BOOTREQUEST
	for _, pkt := range [][]byte{
		[]byte("hello"),
		make([]byte, 300), // all zeros: no magic cookie
		tokenRing,
		valid[:240],                 // header and cookie, options cut off: ignored
		append(valid[:250:250], 53), // a stray byte after the options: tolerated
	} {
		if _, err := conn.Write(pkt); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 5*time.Second, "malformed packets logged", func() bool {
		return strings.Count(d.log.String(), `"level":"WARN"`) >= 3
	})
	client := lab.AddHost(t, "")
	if _, err := client.UDHCPC(context.Background(), "-t", "3", "-T", "1"); err != nil {
		t.Fatalf("no lease after malformed packets: %v", err)
	}
}

// validDiscover is a well-formed DISCOVER as bytes, to cut up.
func validDiscover(t *testing.T) []byte {
	t.Helper()
	m, err := dhcpv4.NewDiscovery(net.HardwareAddr{2, 0, 0, 0, 0, 9})
	if err != nil {
		t.Fatal(err)
	}
	return m.ToBytes()
}

// A client with no address that leaves the broadcast flag clear (iPXE on
// every boot, udhcpc by default) is answered in a frame to its MAC and
// yiaddr, as RFC 2131 4.1 says; one that sets the flag (udhcpc -B, most
// PXE ROMs) by broadcast. udhcpc checks the IP and UDP checksums of what
// it takes, so its binding also checks the frame bootstrapd built.
func TestRepliesAtHardwareAddress(t *testing.T) {
	lab := netlab.NewLab(t, "10.91.0.1/24")
	dir := t.TempDir()
	writeSite(t, lab, dir, poolDHCP, "")
	startDaemon(t, lab, dir)

	for _, c := range []struct {
		name      string
		args      []string
		broadcast bool
	}{
		{"flag clear", nil, false},
		{"flag set", []string{"-B"}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			host := lab.AddHost(t, "")
			capture := host.Capture(t, host.Iface)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			lease, err := host.UDHCPC(ctx, c.args...)
			if err != nil {
				t.Fatal(err)
			}
			for _, want := range []string{"OFFER", "ACK"} {
				frame, err := capture.Next(ctx, func(f []byte) bool {
					u, ok := netlab.ParseUDP(f)
					if !ok || u.Src.Port() != 67 || u.Dst.Port() != 68 {
						return false
					}
					m, err := dhcpv4.FromBytes(u.Payload)
					return err == nil && m.MessageType().String() == want
				})
				if err != nil {
					t.Fatalf("no %s seen by the client: %v", want, err)
				}
				u, _ := netlab.ParseUDP(frame)
				dstMAC, dstIP := host.MAC, lease["ip"]
				if c.broadcast {
					dstMAC, dstIP = "ff:ff:ff:ff:ff:ff", "255.255.255.255"
				}
				if u.DstMAC.String() != dstMAC || u.Dst.Addr().String() != dstIP || u.Src.Addr() != lab.Addr {
					t.Errorf("%s sent to %s at %s from %s, want %s at %s from %s", want, u.Dst.Addr(), u.DstMAC, u.Src.Addr(), dstIP, dstMAC, lab.Addr)
				}
			}
		})
	}
}
