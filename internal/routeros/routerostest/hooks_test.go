package routerostest

import (
	"context"
	"crypto/md5" //nolint:gosec // the legacy login under test is MD5
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
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
