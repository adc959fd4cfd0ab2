package routerostest

import (
	"bytes"
	"context"
	"crypto/md5" //nolint:gosec // the legacy login under test is MD5
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-routeros/routeros/v3"
)

func TestCommands(t *testing.T) {
	r, c := testRouter(t, "7.19")
	run(t, c, "/ip/address/print")
	run(t, c, "/ip/pool/add", "=name=p", "=ranges=10.0.0.1-10.0.0.9")
	deviceError(t, c, "/ip/pool/add", "=name=p", "=ranges=10.0.0.1-10.0.0.9")
	want := []string{"/login", "/ip/address/print", "/ip/pool/add", "/ip/pool/add"}
	if got := r.Commands(); !slices.Equal(got, want) {
		t.Errorf("Commands() = %q, want %q", got, want)
	}
}

func TestFailNext(t *testing.T) {
	r, c := testRouter(t, "7.19")
	r.FailNext(pathAddress, "add", "failure: router busy")
	run(t, c, "/ip/pool/add", "=name=p", "=ranges=10.0.0.1-10.0.0.9") // not the target
	de := deviceError(t, c, "/ip/address/add", "=address=10.0.0.1/24", "=interface=ether1")
	if de.Sentence.Map["message"] != "failure: router busy" {
		t.Errorf("trap: %v", de)
	}
	if n := len(r.Rows(pathAddress)); n != 0 {
		t.Errorf("the failed add created %d rows", n)
	}
	run(t, c, "/ip/address/add", "=address=10.0.0.1/24", "=interface=ether1") // once only
}

// A 200 ms deadline holds when the router stops answering: the way
// bootstrapd must talk to go-routeros, which ignores the context in sync
// mode (reference section 2), is a net.Conn with deadlines.
func TestHangHoldsDeadlines(t *testing.T) {
	r := New(Options{Password: "secret"})
	addr := r.Listen(t)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := routeros.NewClient(conn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login("admin", "secret"); err != nil {
		t.Fatal(err)
	}

	r.Hang()
	if err := conn.SetDeadline(time.Now().Add(200 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = c.Run("/ip/address/print")
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("Run on a hung router: %v, want a timeout", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("deadline of 200ms took %v", d)
	}
	// The router reads on its own goroutine, which a loaded machine may
	// not have scheduled yet when the client's deadline fires.
	for wait := time.Now().Add(5 * time.Second); !slices.Contains(r.Commands(), "/ip/address/print"); {
		if time.Now().After(wait) {
			t.Fatal("the command sent while hung was not received")
		}
		time.Sleep(10 * time.Millisecond)
	}

	// A TLS client gets no handshake while the router hangs.
	tlsAddr := r.ListenTLS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start = time.Now()
	if c2, err := routeros.DialTLSContext(ctx, tlsAddr, "admin", "secret", pinned(r.Fingerprint())); err == nil {
		c2.Close()
		t.Fatal("DialTLS to a hung router succeeded")
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("TLS dial deadline of 200ms took %v", d)
	}

	// After Resume the router answers again.
	r.Resume()
	c3, err := routeros.Dial(addr, "admin", "secret")
	if err != nil {
		t.Fatalf("after Resume: %v", err)
	}
	c3.Close()
}

// pinned trusts exactly one certificate, by its SHA-256.
func pinned(fingerprint string) *tls.Config {
	return &tls.Config{
		InsecureSkipVerify: true, //nolint:gosec // VerifyPeerCertificate checks the pin
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return errors.New("no certificate")
			}
			cert, err := x509.ParseCertificate(raw[0])
			if err != nil {
				return err
			}
			if got := Fingerprint(cert); got != fingerprint {
				return fmt.Errorf("fingerprint %s, want %s", got, fingerprint)
			}
			return nil
		},
	}
}

func TestTLS(t *testing.T) {
	r := New(Options{Password: "secret"})
	addr := r.ListenTLS(t)

	c, err := routeros.DialTLS(addr, "admin", "secret", pinned(r.Fingerprint()))
	if err != nil {
		t.Fatalf("pinned fingerprint: %v", err)
	}
	rep, err := c.Run("/ip/service/print", "?connection=true", "=.proplist=name,port")
	if err != nil || len(rep.Re) != 1 || rep.Re[0].Map["name"] != "api-ssl" {
		t.Errorf("connection row over TLS: %v, %v", rep, err)
	}
	c.Close()

	// The certificate is its own CA, so a CA file works too.
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: r.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(b)
	c, err = routeros.DialTLS(addr, "admin", "secret", &tls.Config{RootCAs: pool})
	if err != nil {
		t.Fatalf("CA file: %v", err)
	}
	c.Close()

	if c, err := routeros.DialTLS(addr, "admin", "secret", pinned(strings.Repeat("0", 64))); err == nil {
		c.Close()
		t.Error("a wrong pin was accepted")
	}
	if c, err := routeros.DialTLS(addr, "admin", "secret", &tls.Config{}); err == nil {
		c.Close()
		t.Error("an unknown self-signed certificate was trusted")
	}
}

// Connections are independent; ids from parallel adds never collide.
func TestConcurrentClients(t *testing.T) {
	r := New(Options{Password: "secret"})
	addr := r.Listen(t)
	const clients, adds = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := routeros.Dial(addr, "admin", "secret")
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			for j := range adds {
				name := fmt.Sprintf("n%d-%d.lab", i, j)
				if _, err := c.Run("/ip/dns/static/add", "=name="+name, "=address=10.0.0.1"); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, row := range r.Rows(pathDNSStatic) {
		if seen[row[".id"]] {
			t.Fatalf("id %s twice", row[".id"])
		}
		seen[row[".id"]] = true
	}
	if len(seen) != clients*adds {
		t.Errorf("%d records, want %d", len(seen), clients*adds)
	}
}

// The pre-6.43 challenge login still works, as on 6.43 to 6.45.
func TestLegacyLogin(t *testing.T) {
	r := New(Options{Version: "6.49", Password: "secret"})
	rc := dialRaw(t, r.Listen(t))
	rc.send(encodeSentence("/login"))
	words, err := readSentence(rc.br, maxWord)
	if err != nil || len(words) != 2 || words[0] != "!done" || !strings.HasPrefix(words[1], "=ret=") {
		t.Fatalf("challenge: %q, %v", words, err)
	}
	challenge, err := hex.DecodeString(strings.TrimPrefix(words[1], "=ret="))
	if err != nil {
		t.Fatal(err)
	}
	h := md5.New() //nolint:gosec // see import
	h.Write([]byte{0})
	h.Write([]byte("secret"))
	h.Write(challenge)
	rc.send(encodeSentence("/login", "=name=admin", "=response=00"+hex.EncodeToString(h.Sum(nil))))
	rc.expect([]string{"!done"})
}

func TestSeedAndRows(t *testing.T) {
	r := New(Options{})
	id := r.Seed(pathAddress, map[string]string{"address": "192.0.2.2/30", "interface": "ether1", "comment": "bootstrap"})
	rows := r.Rows(pathAddress)
	if len(rows) != 1 || rows[0][".id"] != id || rows[0]["network"] != "192.0.2.0" || rows[0]["comment"] != "bootstrap" {
		t.Errorf("Rows after Seed: %v", rows)
	}
	if got := r.Seed(pathIdentity, map[string]string{"name": "lab"}); got != "" {
		t.Errorf("Seed on a singleton returned %q", got)
	}
	if got := r.Rows(pathIdentity)[0]["name"]; got != "lab" {
		t.Errorf("identity %q", got)
	}
	if users := r.Rows(pathUser); users[0]["name"] != "admin" || users[0]["password"] != "" {
		t.Errorf("default user: %v", users)
	}
	for _, bad := range []func(){
		func() { r.Seed("/ip/nope", nil) },
		func() { r.Seed(pathAddress, map[string]string{"colour": "red"}) },
		func() { r.Seed(pathService, map[string]string{"available-from": "x"}) }, // 7.24+ only
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Error("Seed accepted a bad path or property")
				}
			}()
			bad()
		}()
	}
	if r.Version() != "7.19" {
		t.Errorf("default version %q", r.Version())
	}
}

// TestRawNext: the next matching command gets the raw bytes, trickled
// Gap apart, and the connection closes after them; other commands and
// later ones are answered as usual.
func TestRawNext(t *testing.T) {
	r := New(Options{Password: "secret"})
	addr := r.Listen(t)
	r.RawNext("/ip/address/print", Raw{Chunks: [][]byte{{0xF0, 0xFF}, {0xFF, 0xFF, 0xFF}}, Gap: 50 * time.Millisecond})
	rc := dialRaw(t, addr)
	rc.send(encodeSentence("/login", "=name=admin", "=password=secret"))
	rc.expect([]string{"!done"})
	rc.send(encodeSentence("/ip/pool/print")) // not the target
	rc.expect([]string{"!empty"})
	rc.expect([]string{"!done"})
	start := time.Now()
	rc.send(encodeSentence("/ip/address/print"))
	got := make([]byte, 5)
	if _, err := io.ReadFull(rc.br, got); err != nil || !bytes.Equal(got, []byte{0xF0, 0xFF, 0xFF, 0xFF, 0xFF}) {
		t.Fatalf("raw reply % x, %v", got, err)
	}
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Errorf("two chunks 50ms apart came in %v", d)
	}
	rc.expectClosed()
	// Once only.
	c, err := routeros.Dial(addr, "admin", "secret")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	run(t, c, "/ip/address/print")
}

// TestRawNextHold: with Hold, the connection stays open after the bytes,
// until the client hangs up.
func TestRawNextHold(t *testing.T) {
	r, c := testRouter(t, "7.19")
	r.RawNext("/ip/address/print", Raw{Chunks: [][]byte{{0x05}}, Hold: time.Minute})
	res := make(chan error, 1)
	go func() { _, err := c.Run("/ip/address/print"); res <- err }()
	select {
	case err := <-res:
		t.Fatalf("the client's read ended (%v) while the router held the connection", err)
	case <-time.After(200 * time.Millisecond):
	}
	c.Close()
	<-res
	r.Close() // returns: the held session ended with the client
}

// TestReboot: a reboot ends every session, keeps the configuration, and
// the next login works.
func TestReboot(t *testing.T) {
	r, c := testRouter(t, "7.19")
	run(t, c, "/ip/pool/add", "=name=p", "=ranges=10.0.0.1-10.0.0.9")
	r.Reboot()
	if _, err := c.Run("/ip/pool/print"); err == nil {
		t.Fatal("the old session still answers after a reboot")
	}
	c2, err := routeros.Dial(r.lnAddr(t), "admin", "secret")
	if err != nil {
		t.Fatalf("login after a reboot: %v", err)
	}
	defer c2.Close()
	if got := names(run(t, c2, "/ip/pool/print"), "name"); !slices.Equal(got, []string{"p"}) {
		t.Errorf("pools after a reboot: %q", got)
	}
}

// TestUpgrade: an upgrade ends the sessions, reports the new version and
// carries renamed properties over; a downgrade carries them back.
func TestUpgrade(t *testing.T) {
	r, c := testRouter(t, "7.19")
	run(t, c, "/ip/service/set", "=.id=api-ssl", "=address=10.0.0.0/8")
	r.Upgrade("7.24.1")
	if _, err := c.Run("/ip/service/print"); err == nil {
		t.Fatal("the old session still answers after an upgrade")
	}
	for _, step := range []struct {
		version, prop, gone, resource string
	}{
		{"", "available-from", "address", "7.24.1 (stable)"},
		{"7.19", "address", "available-from", "7.19 (stable)"},
	} {
		if step.version != "" {
			r.Upgrade(step.version)
		}
		c2, err := routeros.Dial(r.lnAddr(t), "admin", "secret")
		if err != nil {
			t.Fatalf("login after the upgrade: %v", err)
		}
		if v := run(t, c2, "/system/resource/print").Re[0].Map["version"]; v != step.resource {
			t.Errorf("version %q, want %q", v, step.resource)
		}
		rep := run(t, c2, "/ip/service/print", "?name=api-ssl", "?dynamic=false")
		if got := rep.Re[0].Map; got[step.prop] != "10.0.0.0/8" || got[step.gone] != "" {
			t.Errorf("api-ssl after the move to %s: %v", r.Version(), got)
		}
		c2.Close()
	}
}

// TestServiceAddressList: a connection from outside the service's address
// list is closed before any word.
func TestServiceAddressList(t *testing.T) {
	for _, c := range []struct {
		version, prop, list string
		allowed             bool
	}{
		{"7.19", "address", "", true},
		{"7.19", "address", "10.0.0.0/8", false},
		{"7.19", "address", "10.0.0.0/8,127.0.0.1", true},
		{"7.24", "available-from", "192.0.2.1/32", false},
		{"7.24", "available-from", "127.0.0.0/8", true},
	} {
		r := New(Options{Version: c.version, Password: "secret"})
		addr := r.Listen(t)
		if c.list != "" {
			r.mu.Lock()
			for _, row := range r.st.tables[pathService].rows {
				if row.vals["name"] == "api" {
					row.vals[c.prop] = c.list
				}
			}
			r.mu.Unlock()
		}
		cl, err := routeros.Dial(addr, "admin", "secret")
		if (err == nil) != c.allowed {
			t.Errorf("%s %s=%q: login error %v, want allowed %v", c.version, c.prop, c.list, err, c.allowed)
		}
		if err == nil {
			cl.Close()
		}
	}
}

// lnAddr is the address of the router's first listener.
func (r *Router) lnAddr(t *testing.T) string {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.lns) == 0 {
		t.Fatal("the router listens nowhere")
	}
	return r.lns[0].Addr().String()
}
