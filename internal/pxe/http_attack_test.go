package pxe

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bootstrapd/bootstrapd/internal/inventory"
)

// from sends one request through the handler as if from addr.
func (f *nhFixture) from(addr, method, target string, body io.Reader) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, target, body)
	r.RemoteAddr = addr + ":40000"
	if body != nil {
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	w := httptest.NewRecorder()
	f.handler.ServeHTTP(w, r)
	return w
}

// TestScriptOnlyToTheReservation: where bootstrapd hands out addresses, a
// node's install script (and token) is served only to its reservation;
// anyone else who knows the MAC gets a script without one, and the node
// stays enrolled.
func TestScriptOnlyToTheReservation(t *testing.T) {
	f := newNodeHTTP(t)
	f.h.Reservations = true
	f.enroll(t, inventory.EnrollRequest{MAC: nhMAC})
	n, _ := f.inv.Node(nhMAC)
	w := f.from("10.77.0.66", "GET", "/ipxe?mac="+nhMAC, nil)
	if strings.Contains(w.Body.String(), "/install/") || !strings.Contains(w.Body.String(), "served only to its address "+n.IP.String()) {
		t.Fatalf("script for another address:\n%s", w.Body)
	}
	if got := f.state(t, nhMAC); got != inventory.Enrolled {
		t.Fatalf("node %s after a refused script", got)
	}
	w = f.from(n.IP.String(), "GET", "/ipxe?mac="+nhMAC, nil)
	if !nhTokenRE.MatchString(w.Body.String()) {
		t.Fatalf("no script for the node's own address:\n%s", w.Body)
	}
}

// TestTokenOnlyFromItsAddress: where bootstrapd hands out no addresses,
// the token is bound to whoever fetched the script; the same token from
// elsewhere opens nothing and is an alert.
func TestTokenOnlyFromItsAddress(t *testing.T) {
	f := newNodeHTTP(t)
	f.enroll(t, inventory.EnrollRequest{MAC: nhMAC})
	tok := f.installToken(t, nhMAC) // fetched from 192.0.2.1
	for _, c := range []struct{ method, target string }{
		{"GET", "/install/" + tok + "/config/autoinstall.cfg"},
		{"POST", "/install/" + tok + "/status"},
		{"POST", "/install/" + tok + "/join"},
	} {
		if w := f.from("192.0.2.99", c.method, c.target, strings.NewReader("mac="+nhMAC)); w.Code != http.StatusForbidden {
			t.Errorf("%s %s from another address: %d", c.method, c.target, w.Code)
		}
	}
	if n, _ := f.inv.Node(nhMAC); !strings.Contains(n.Alert, "presented from 192.0.2.99") {
		t.Errorf("alert %q", n.Alert)
	}
	if w := f.from("192.0.2.1", "POST", "/install/"+tok+"/join", nil); w.Code != http.StatusOK {
		t.Errorf("join from the node's address: %d %s", w.Code, w.Body)
	}
}

// trickle is a body that must never be read.
type trickle struct{ t *testing.T }

func (b trickle) Read([]byte) (int, error) {
	b.t.Error("the body of a report with a bad token was read")
	time.Sleep(time.Hour)
	return 0, io.EOF
}

// TestReportTokenBeforeBody: a report's token is checked before its body
// is read, so nobody without one can hold the server with a slow body.
func TestReportTokenBeforeBody(t *testing.T) {
	f := newNodeHTTP(t)
	done := make(chan *httptest.ResponseRecorder, 1)
	go func() { done <- f.from("192.0.2.1", "POST", "/install/forged/status", trickle{t}) }()
	select {
	case w := <-done:
		if w.Code != http.StatusForbidden {
			t.Errorf("report with a forged token: %d", w.Code)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the server waited for the body of a report with a forged token")
	}
}

// TestAssetFIFO: a FIFO in the netboot directory is refused at once (it
// used to hang the request, waiting for a writer).
func TestAssetFIFO(t *testing.T) {
	f := newNodeHTTP(t)
	dir := t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	f.h.Assets = root
	done := make(chan int, 1)
	go func() { done <- f.do("GET", "/assets/fifo", nil).Code }()
	select {
	case code := <-done:
		if code != http.StatusNotFound {
			t.Errorf("FIFO: %d, want 404", code)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("GET of a FIFO hangs")
	}
}

// names records what the checker was asked about.
type names struct {
	mu   sync.Mutex
	seen []string
}

func (n *names) Check(name string, _ *os.File, _ os.FileInfo) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.seen = append(n.seen, name)
	return nil
}

// TestAssetCheckedByCleanName: every spelling of a file reaches the
// integrity checker (which caches by name) as one name.
func TestAssetCheckedByCleanName(t *testing.T) {
	f := newNodeHTTP(t)
	v := &names{}
	f.h.Verify = v
	for _, target := range []string{"/assets/void/initrd.img", "/assets/void%2F.%2Finitrd.img", "/assets/void%2Fsub%2F..%2Finitrd.img"} {
		if w := f.do("GET", target, nil); w.Code != http.StatusOK {
			t.Fatalf("%s: %d", target, w.Code)
		}
	}
	for _, n := range v.seen {
		if n != "void/initrd.img" {
			t.Errorf("checker asked about %q", n)
		}
	}
}

// voids records what the join handler asked to void or discard; each
// Mint makes a new accessor.
type voids struct {
	mu        sync.Mutex
	minted    int
	voided    []inventory.Node
	discarded []string
}

func (v *voids) Mint(context.Context, inventory.Node) ([]BundleFile, string, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.minted++
	return []BundleFile{{Path: "etc/bootstrapd/vault-token.wrapped", Mode: 0o600, Body: []byte("s.wrapped")}}, fmt.Sprintf("accessor-%d", v.minted), nil
}
func (v *voids) Discard(_ context.Context, accessor string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.discarded = append(v.discarded, accessor)
}
func (v *voids) Void(_ context.Context, n inventory.Node) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.voided = append(v.voided, n)
}

// claimedOnce is an enrolled node whose bundle, minted by a voids, has
// been claimed once with tok.
func claimedOnce(t *testing.T) (f *nhFixture, v *voids, tok string) {
	t.Helper()
	f = newNodeHTTP(t)
	v = &voids{}
	f.h.Join.Cluster = v
	f.enroll(t, inventory.EnrollRequest{MAC: nhMAC})
	tok = f.installToken(t, nhMAC)
	if w := f.do("POST", "/install/"+tok+"/join", nil); w.Code != http.StatusOK {
		t.Fatalf("first claim: %d", w.Code)
	}
	return f, v, tok
}

// TestSecondClaimVoids: the first repeated claim of a bundle voids what it
// held (the first claim's accessor), once; the token opens nothing more.
func TestSecondClaimVoids(t *testing.T) {
	f, v, tok := claimedOnce(t)
	if w := f.do("POST", "/install/"+tok+"/join", nil); w.Code != http.StatusGone {
		t.Fatalf("second claim: %d", w.Code)
	}
	if w := f.do("POST", "/install/"+tok+"/join", nil); w.Code != http.StatusForbidden {
		t.Fatalf("third claim: %d, want 403 (the token was voided)", w.Code)
	}
	if len(v.voided) != 1 || v.voided[0].VaultAccessor != "accessor-1" {
		t.Fatalf("voided %+v, want the first claim's accessor once", v.voided)
	}
	if n, _ := f.inv.Node(nhMAC); !strings.HasPrefix(n.Alert, "join bundle claimed twice") {
		t.Errorf("alert %q", n.Alert)
	}
}

// TestReinstallDiscardsTheLastBundle: the bundle of a reinstall replaces
// the last one, whose node token is revoked then, not at retire.
func TestReinstallDiscardsTheLastBundle(t *testing.T) {
	f, v, _ := claimedOnce(t)
	if _, err := f.inv.Reinstall(context.Background(), nhMAC, "op"); err != nil {
		t.Fatal(err)
	}
	tok := f.installToken(t, nhMAC)
	if w := f.do("POST", "/install/"+tok+"/join", nil); w.Code != http.StatusOK {
		t.Fatalf("reinstall's claim: %d", w.Code)
	}
	if n, _ := f.inv.Node(nhMAC); n.VaultAccessor != "accessor-2" || len(v.discarded) != 1 || v.discarded[0] != "accessor-1" {
		t.Errorf("accessor %q, discarded %q; want accessor-2 recorded and accessor-1 revoked", n.VaultAccessor, v.discarded)
	}
}
