package pxe

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"

	"github.com/bootstrapd/bootstrapd/internal/config"
	"github.com/bootstrapd/bootstrapd/internal/inventory"
)

// FuzzDHCPReply feeds arbitrary bytes, parsed as the server parses them,
// through the reply path in every mode and on both ports: it must not
// panic, must answer within a bound, and whatever it answers must encode.
func FuzzDHCPReply(f *testing.F) {
	for _, a := range []iana.Arch{iana.INTEL_X86PC, iana.EFI_X86_64, iana.EFI_BC, iana.EFI_ARM64, iana.Arch(16)} {
		for _, mac := range []string{enrolled, "02:00:00:00:00:99"} {
			m, _ := dhcpv4.NewDiscovery(macAddr(mac), dhcpv4.WithOption(dhcpv4.OptClientArch(a)),
				dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003016")),
				dhcpv4.WithOption(dhcpv4.OptUserClass("iPXE")))
			f.Add(m.ToBytes(), 67)
			r, _ := dhcpv4.NewRequestFromOffer(m)
			if r != nil {
				f.Add(r.ToBytes(), 4011)
			}
		}
	}
	f.Add([]byte{1, 1, 6, 0}, 67)
	f.Add(bytes.Repeat([]byte{0xff}, 600), 67)
	hs := map[string]*DHCP{}
	for _, mode := range []string{config.ModeReservation, config.ModePool, config.ModeProxy} {
		hs[mode] = newDHCP(f, mode)
	}
	f.Fuzz(func(t *testing.T, data []byte, port int) {
		req, err := dhcpv4.FromBytes(data)
		if err != nil {
			return // the server drops what does not parse
		}
		if port != PXEPort {
			port = 67
		}
		for mode, h := range hs {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			start := time.Now()
			reply, _ := h.Reply(ctx, req, port)
			cancel()
			if d := time.Since(start); d > 2*time.Second {
				t.Fatalf("%s: reply took %s", mode, d)
			}
			if reply != nil {
				if _, err := dhcpv4.FromBytes(reply.ToBytes()); err != nil {
					t.Fatalf("%s: reply does not parse back: %v", mode, err)
				}
			}
		}
	})
}

// FuzzNodeHTTP sends arbitrary requests to the node-facing handler: no
// panic, no token or secret in the log, no 5xx but the documented ones.
func FuzzNodeHTTP(f *testing.F) {
	for _, s := range []struct{ method, target, body string }{
		{"GET", "/boot.ipxe", ""},
		{"GET", "/ipxe?mac=" + nhMAC, ""},
		{"GET", "/ipxe?mac=%zz", ""},
		{"GET", "/assets/void/vmlinuz", ""},
		{"GET", "/assets/..%2f..%2fetc/passwd", ""},
		{"POST", "/install/forged/status", "mac=" + nhMAC + "&status=installed"},
		{"POST", "/install/forged/join", ""},
		{"GET", "/install/forged/config/autoinstall.cfg", ""},
	} {
		f.Add(s.method, s.target, s.body)
	}
	fx := newNodeHTTP(f)
	fx.enroll(f, inventory.EnrollRequest{MAC: nhMAC})
	f.Fuzz(func(t *testing.T, method, target, body string) {
		if !strings.HasPrefix(target, "/") || strings.ContainsAny(target, " \r\n") {
			return // not a request line net/http would accept
		}
		if _, err := url.ParseRequestURI(target); err != nil {
			return
		}
		switch method {
		case "GET", "POST", "PUT", "HEAD", "DELETE":
		default:
			return
		}
		r := httptest.NewRequest(method, target, strings.NewReader(body))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		w := httptest.NewRecorder()
		done := make(chan struct{})
		go func() { fx.handler.ServeHTTP(w, r); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("%s %q hangs", method, target)
		}
		if w.Code >= 500 && w.Code != http.StatusServiceUnavailable {
			t.Fatalf("%s %q: %d %s", method, target, w.Code, w.Body)
		}
		if strings.Contains(w.Body.String(), nhSecret) {
			t.Fatalf("%s %q served the secret", method, target)
		}
	})
}

func macAddr(s string) net.HardwareAddr {
	hw, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return hw
}
