package netlab

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// startDnsmasq runs dnsmasq inside the lab as DHCP (+ TFTP from /usr/lib/ipxe)
// server on the bridge only. It is the known-good peer that proves the harness.
func startDnsmasq(t *testing.T, lab *Lab, extra ...string) (logPath string) {
	t.Helper()
	dir := t.TempDir()
	logPath = filepath.Join(dir, "dnsmasq.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	base := lab.Prefix.Masked().Addr().As4()
	args := []string{
		"--no-daemon", "--conf-file=/dev/null", "--port=0", "--user=root",
		"--no-ping", // its ICMP probe before each offer costs 3 s
		"--interface=" + lab.Bridge, "--bind-interfaces",
		fmt.Sprintf("--dhcp-range=%d.%d.%d.100,%d.%d.%d.200,1h", base[0], base[1], base[2], base[0], base[1], base[2]),
		"--dhcp-leasefile=" + filepath.Join(dir, "leases"), "--pid-file=" + filepath.Join(dir, "pid"),
		"--log-dhcp", "--log-facility=-",
	}
	cmd := lab.Command(context.Background(), "dnsmasq", append(args, extra...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("dnsmasq: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("dnsmasq log:\n%s", tail(string(b), 60))
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := lab.Ready(ctx, "udp", ":67"); err != nil {
		t.Fatal(err)
	}
	return logPath
}

func TestHostDHCPWithDnsmasq(t *testing.T) {
	t.Parallel()
	lab := NewLab(t, "10.78.0.1/24")
	host := lab.AddHost(t, "")
	startDnsmasq(t, lab, "--dhcp-boot=netlab.0")

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	lease, err := host.UDHCPC(ctx, "-V", "PXEClient:Arch:00000:UNDI:002001")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(lease["ip"], "10.78.0.") || lease["serverid"] != "10.78.0.1" || lease["boot_file"] != "netlab.0" {
		t.Fatalf("unexpected lease %v", lease)
	}
	t.Logf("udhcpc lease %s/%s boot_file %s in %v", lease["ip"], lease["mask"], lease["boot_file"], time.Since(start).Round(time.Millisecond))

	// The address is really on the host's interface, and the lab can reach it.
	addrs, err := host.Command(ctx, "ip", "-4", "-o", "addr", "show", "dev", host.Iface).Output()
	if err != nil || !strings.Contains(string(addrs), "inet "+lease["ip"]+"/") {
		t.Fatalf("host address: %v %s", err, addrs)
	}
	if out, err := lab.Command(ctx, "busybox", "ping", "-c", "1", "-W", "2", lease["ip"]).CombinedOutput(); err != nil {
		t.Fatalf("lab cannot ping host %s: %v\n%s", lease["ip"], err, out)
	}
}

func TestListenAndDialInNamespace(t *testing.T) {
	t.Parallel()
	lab := NewLab(t, "10.79.0.1/24")
	host := lab.AddHost(t, "10.79.0.2/24")
	l := lab.Listen(t, "tcp", "10.79.0.1:0")
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "hello from the lab")
	})}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := host.Ready(ctx, "tcp", l.Addr().String()); err != nil {
		t.Fatal(err)
	}
	resp, err := host.HTTPClient().Get("http://" + l.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	// The host process's own namespace cannot reach the lab: it is isolated.
	if c, err := net.DialTimeout("tcp", l.Addr().String(), 500*time.Millisecond); err == nil {
		c.Close()
		t.Fatalf("lab address %s reachable from the host namespace", l.Addr())
	}
}

// bootServer is the HTTP side of a PXE boot: iPXE script, kernel, initramfs, a
// blob to fetch, and the /report callback, served from inside the lab.
type bootServer struct {
	url     string
	reports chan string
	blobSum string
	start   time.Time

	mu     sync.Mutex
	events []string // request log with times, printed by the test (not by handlers)
}

func newBootServer(t *testing.T, lab *Lab) *bootServer {
	vmlinuz, initramfs := Kernel(t)
	l := lab.Listen(t, "tcp", lab.Addr.String()+":0")
	b := &bootServer{url: "http://" + l.Addr().String(), reports: make(chan string, 4), start: time.Now()}
	blob := make([]byte, 256<<10)
	_, _ = rand.Read(blob)
	b.blobSum = fmt.Sprintf("%x", sha256.Sum256(blob))

	mux := http.NewServeMux()
	mux.HandleFunc("/boot.ipxe", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "#!ipxe\nkernel %s/vmlinuz %s\ninitrd %s/initramfs.gz\nboot\n",
			b.url, KernelArgs(b.url+"/report", b.url+"/blob"), b.url)
	})
	mux.HandleFunc("/vmlinuz", func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, vmlinuz) })
	mux.HandleFunc("/initramfs.gz", func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, initramfs) })
	mux.HandleFunc("/blob", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(blob) })
	mux.HandleFunc("POST /report", func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		b.reports <- r.PostForm.Get("mac")
	})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.mu.Lock()
		b.events = append(b.events, fmt.Sprintf("%6.1fs %s %s from %s", time.Since(b.start).Seconds(), r.Method, r.URL.Path, r.RemoteAddr))
		b.mu.Unlock()
		mux.ServeHTTP(w, r)
	})}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return b
}

func (b *bootServer) log(t *testing.T) {
	b.mu.Lock()
	defer b.mu.Unlock()
	t.Logf("HTTP requests:\n%s", strings.Join(b.events, "\n"))
}

// TestQEMUPXEWithDnsmasq boots real firmware against dnsmasq (DHCP + TFTP) and
// an HTTP server in the lab, through iPXE to the fixture kernel, which reports
// its MAC back. bios: iPXE ROM -> DHCP -> script. uefi: EDK2 PXE -> TFTP ipxe.efi
// -> iPXE DHCP (user class iPXE) -> script.
func TestQEMUPXEWithDnsmasq(t *testing.T) {
	Kernel(t) // build the fixture once, before the parallel subtests time their boots
	for _, fw := range []string{"bios", "uefi"} {
		t.Run(fw, func(t *testing.T) {
			t.Parallel()
			lab := NewLab(t, "10.77.0.1/24")
			lab.StartRA(t) // saves iPXE ~14 s of waiting for IPv6 autoconfiguration
			srv := newBootServer(t, lab)
			logPath := startDnsmasq(t, lab,
				"--enable-tftp", "--tftp-root=/usr/lib/ipxe",
				"--dhcp-userclass=set:ipxe,iPXE", "--dhcp-match=set:ipxe,175",
				"--dhcp-match=set:efi64,option:client-arch,7",
				"--dhcp-boot=tag:ipxe,"+srv.url+"/boot.ipxe",
				"--dhcp-boot=tag:!ipxe,tag:efi64,ipxe.efi",
				"--dhcp-boot=tag:!ipxe,tag:!efi64,undionly.kpxe",
				// iPXE option 175.176 (no-pxedhcp): do not wait ~2 s for a proxyDHCP offer.
				"--dhcp-option=tag:ipxe,encap:175,176,1b",
			)
			q := StartQEMU(t, QEMUOpts{Lab: lab, Firmware: fw})
			defer srv.log(t)

			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			var mac string
			select {
			case mac = <-srv.reports:
			case <-q.Done(): // a failed boot powers off (or panics and exits) early
				select {
				case mac = <-srv.reports:
				default:
					t.Fatalf("%s: VM exited without reporting", fw)
				}
			case <-ctx.Done():
				t.Fatalf("%s: no report within the deadline", fw)
			}
			if mac != q.MAC {
				t.Fatalf("report for mac %q, want %q", mac, q.MAC)
			}
			t.Logf("%s: power-on -> report from %s in %v", fw, mac, q.Elapsed().Round(100*time.Millisecond))
			if err := q.Wait(ctx); err != nil {
				t.Fatalf("qemu: %v", err)
			}
			t.Logf("%s: power-on -> poweroff in %v", fw, q.Elapsed().Round(100*time.Millisecond))

			var milestones []string
			for _, l := range strings.Split(q.TimedConsole(), "\n") {
				for _, m := range []string{">>Start PXE", "BdsDxe: starting", "iPXE initialising", "Configuring", "boot.ipxe", "Linux version", "NETLAB:", "Power down"} {
					if strings.Contains(l, m) {
						milestones = append(milestones, l)
						break
					}
				}
			}
			t.Logf("%s console milestones (s since power-on):\n%s", fw, strings.Join(milestones, "\n"))
			if os.Getenv("NETLAB_DEBUG") != "" { // the whole timed console, to see where a boot spends time
				t.Log(q.TimedConsole())
			}
			console := q.Console()
			for _, want := range []string{"NETLAB: dhcp ok ip=10.77.0.", "NETLAB: fetch ok sha256=" + srv.blobSum, "NETLAB: report ok"} {
				if !strings.Contains(console, want) {
					t.Errorf("console lacks %q", want)
				}
			}
			dlog, _ := os.ReadFile(logPath)
			tftpd := strings.Contains(string(dlog), "sent /usr/lib/ipxe/ipxe.efi")
			if fw == "uefi" && !tftpd {
				t.Errorf("uefi: EDK2 did not fetch ipxe.efi over TFTP")
			}
			if fw == "bios" && strings.Contains(string(dlog), "sent /usr/lib/ipxe/") {
				t.Errorf("bios: unexpected TFTP transfer; the e1000 ROM is iPXE and should go straight to the script")
			}
		})
	}
}
