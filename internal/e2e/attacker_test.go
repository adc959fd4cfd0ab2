package e2e

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bootstrapd/bootstrapd/internal/inventory"
	"github.com/bootstrapd/bootstrapd/internal/netlab"
)

// TestAttackerCannotTakeTheBundle plays the attacker of the threat model
// (docs/threat-model.md) on the provisioning bridge: a second host that
// knows an installing node's MAC (every DHCP packet carries it). It cannot
// get the node's script, token or bundle; the real node, a QEMU VM, still
// installs and claims its bundle. Then the attacker presents the token it
// sniffed from the node's plain-HTTP requests while the node installs:
// from its own address it is refused, an alert on the node; once the node
// is installed and off, not even from the node's own address, taken over,
// does it open anything. (A second claim from the node's address during
// the install, and what voiding the bundle revokes, are tested in
// internal/pxe and internal/daemon.)
func TestAttackerCannotTakeTheBundle(t *testing.T) {
	lab := netlab.NewLab(t, "10.98.0.1/24")
	lab.StartRA(t)
	dir, d, repo := voidSite(t, lab)
	const mac = "52:54:00:98:00:01"
	d.mustCLI(t, "enroll", mac, "-hostname", "n1", "-label", "disk=/dev/vda", "-label", "xbps_repository="+repo)
	nodeIP := node(t, d, mac).IP.String()
	base := "http://10.98.0.1:8080"

	attacker := lab.AddHost(t, "10.98.0.66/24")
	web := attacker.HTTPClient()
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := web.Get(base + path)
		if err != nil {
			t.Fatalf("attacker GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	post := func(path string) (int, string) {
		t.Helper()
		resp, err := web.PostForm(base+path, url.Values{"mac": {mac}})
		if err != nil {
			t.Fatalf("attacker POST %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	// Before the node boots: its script (and token) only for its address.
	code, body := get("/ipxe?mac=" + mac)
	if strings.Contains(body, "/install/") || !strings.Contains(body, "served only to its address "+nodeIP) {
		t.Fatalf("the attacker got the node's script: %d\n%s", code, body)
	}
	if st := node(t, d, mac).State; st != inventory.Enrolled {
		t.Fatalf("the attacker's request moved the node to %s", st)
	}

	// The real node installs and claims its bundle, while the attacker
	// listens on a mirror port of the bridge and presents the node's token
	// from its own address as soon as it sees it.
	stolen := sniff(t, lab, regexp.MustCompile(`/install/([A-Za-z0-9_-]{20,})/`))
	vm, disk := startInstall(t, lab, dir, mac)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var token string
	select {
	case token = <-stolen:
	case <-ctx.Done():
		t.Fatal("the node's HTTP traffic showed no install token to steal")
	}
	if st := node(t, d, mac).State; st != inventory.Installing {
		t.Fatalf("the token was stolen with the node %s; the test needs it installing", st)
	}
	for what, try := range map[string]func() (int, string){
		"config": func() (int, string) { return get("/install/" + token + "/config/autoinstall.cfg") },
		"bundle": func() (int, string) { return post("/install/" + token + "/join") },
		"report": func() (int, string) { return post("/install/" + token + "/status") },
	} {
		if code, body := try(); code != http.StatusForbidden {
			t.Errorf("%s with the stolen token from another address: %d %s", what, code, body)
		}
	}
	if _, err := vm.WaitConsole(ctx, "bootstrapd postinstall: installed; rebooting"); err != nil {
		t.Fatalf("the node did not install: %v", err)
	}
	vm.Wait(ctx)
	n := node(t, d, mac)
	if n.State != inventory.Installed || n.JoinClaimed.IsZero() {
		t.Fatalf("node %s, claimed %v; want installed with its bundle", n.State, n.JoinClaimed)
	}
	if keys := debugfsCat(t, disk, "/root/.ssh/authorized_keys"); !strings.Contains(keys, "operator@laptop") {
		t.Errorf("the node's bundle did not reach its disk: %q", keys)
	}
	if !strings.Contains(n.Alert, "install token presented from 10.98.0.66") {
		t.Errorf("no alert for the stolen token: %q", n.Alert)
	}

	// With the node off, the attacker takes over its address (and makes
	// the server's ARP entry point at itself, as a gratuitous ARP would):
	// the token opens nothing any more.
	if out, err := exec.Command("ip", "-n", attacker.Name(), "addr", "add", nodeIP+"/24", "dev", attacker.Iface).CombinedOutput(); err != nil {
		t.Fatalf("take over %s: %v %s", nodeIP, err, out)
	}
	exec.Command("ip", "-n", lab.Name(), "neigh", "del", nodeIP, "dev", lab.Bridge).Run()
	web.Transport.(*http.Transport).DialContext = attacker.DialFrom(netip.MustParseAddr(nodeIP))
	if code, body := post("/install/" + token + "/join"); code != http.StatusForbidden {
		t.Errorf("claim from the node's address after its install: %d %s", code, body)
	}
	if code, _ := get("/install/" + token + "/config/autoinstall.cfg"); code != http.StatusForbidden {
		t.Errorf("the token still opens the node's config after its install: %d", code)
	}
	if out := d.mustCLI(t, "nodes"); !strings.Contains(out, "installed !") || !strings.Contains(out, "! n1 ("+mac+"): install token presented from 10.98.0.66") {
		t.Errorf("bootstrapd nodes does not show the alert:\n%s", out)
	}
	// The event log has the alert once; the node's history counts repeats.
	if events := d.mustCLI(t, "events", "-node", mac); !strings.Contains(events, "ALERT: install token presented [network]") {
		t.Errorf("events lack the alert:\n%s", events)
	}
	if show := d.mustCLI(t, "node", "show", mac); !strings.Contains(show, "ALERT: install token presented (x3) [network]") || !strings.Contains(show, "ALERT:    install token presented from 10.98.0.66") {
		t.Errorf("node show lacks the counted alert:\n%s", show)
	}
	if strings.Contains(d.log.String(), token) {
		t.Error("the install token is in the daemon's log")
	}
}

// sniff reads every frame crossing the lab's bridge (what a mirror port
// or a hub would show an attacker) and sends the first match of re's
// first group.
func sniff(t *testing.T, lab *netlab.Lab, re *regexp.Regexp) <-chan string {
	t.Helper()
	var fd int
	err := lab.Do(func() (err error) {
		fd, err = syscall.Socket(syscall.AF_PACKET, syscall.SOCK_RAW, int(htons(syscall.ETH_P_ALL)))
		if err != nil {
			return err
		}
		ifi, err := net.InterfaceByName(lab.Bridge)
		if err != nil {
			return err
		}
		return syscall.Bind(fd, &syscall.SockaddrLinklayer{Protocol: htons(syscall.ETH_P_ALL), Ifindex: ifi.Index})
	})
	if err != nil {
		t.Fatalf("sniffer on %s: %v", lab.Bridge, err)
	}
	// A read timeout, so that the reader notices the test ending.
	syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &syscall.Timeval{Sec: 1})
	found := make(chan string, 1)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65536)
		for {
			select {
			case <-stop:
				return
			default:
			}
			n, _, err := syscall.Recvfrom(fd, buf, 0)
			if err != nil {
				continue
			}
			if m := re.FindSubmatch(buf[:n]); m != nil {
				select {
				case found <- string(m[1]):
				default:
				}
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-done; syscall.Close(fd) })
	return found
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
