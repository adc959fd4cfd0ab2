package concoursetest

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/bootstrapd/bootstrapd/internal/cluster"
	"github.com/bootstrapd/bootstrapd/internal/testlog"
)

// waitFor waits until s holds want.
func waitFor(t *testing.T, s *testlog.Buffer, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(s.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in\n%s", want, s.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// workerKey is a worker key as bootstrapd writes it to Vault.
func workerKey(t *testing.T) (pemBytes []byte, signer ssh.Signer) {
	t.Helper()
	pemBytes, _, err := cluster.GenerateWorkerKey()
	if err != nil {
		t.Fatal(err)
	}
	signer, err = ParseWorkerKey(pemBytes)
	if err != nil {
		t.Fatal(err)
	}
	return pemBytes, signer
}

// tsaEnv is a stand-in TSA on loopback.
type tsaEnv struct {
	tsa        *TSA
	addr       string
	events     *testlog.Buffer
	authorized string
	hostPub    ssh.PublicKey
}

func startTSA(t *testing.T, maxConns int, keys ...ssh.Signer) *tsaEnv {
	t.Helper()
	dir := t.TempDir()
	hostPub, err := Keygen(filepath.Join(dir, "tsa_host_key"), KeyEd25519)
	if err != nil {
		t.Fatal(err)
	}
	host, err := ReadHostKey(filepath.Join(dir, "tsa_host_key"))
	if err != nil {
		t.Fatal(err)
	}
	e := &tsaEnv{events: &testlog.Buffer{}, authorized: filepath.Join(dir, "authorized_worker_keys"), hostPub: hostPub}
	e.authorize(t, keys...)
	e.tsa = &TSA{HostKey: host, AuthorizedKeys: e.authorized, Events: e.events, MaxConns: maxConns, KeepAlive: time.Second}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr = ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.tsa.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return e
}

// authorize rewrites the authorized keys file with keys.
func (e *tsaEnv) authorize(t *testing.T, keys ...ssh.Signer) {
	t.Helper()
	var b []byte
	for _, k := range keys {
		b = append(b, ssh.MarshalAuthorizedKey(k.PublicKey())...)
	}
	if err := os.WriteFile(e.authorized, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func (e *tsaEnv) worker(name string, key ssh.Signer, out *testlog.Buffer) *WorkerClient {
	return &WorkerClient{Worker: Worker{Name: name, Platform: "linux"}, TSAHosts: []string{e.addr},
		TSAKeys: []ssh.PublicKey{e.hostPub}, TSAKeyOf: "tsa_host_key.pub", Key: key, Out: out,
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond, KeepAlive: time.Second}
}

// runWorker runs w until the test ends.
func runWorker(t *testing.T, w *WorkerClient) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestTSA drives the stand-in TSA with the stand-in worker over real SSH
// on loopback.
func TestTSA(t *testing.T) {
	_, good := workerKey(t)
	_, other := workerKey(t)
	fp := ssh.FingerprintSHA256(good.PublicKey())
	for _, tt := range []struct {
		name string
		run  func(t *testing.T, e *tsaEnv, w *WorkerClient, out *testlog.Buffer)
	}{
		{"registration is recorded", func(t *testing.T, e *tsaEnv, w *WorkerClient, out *testlog.Buffer) {
			runWorker(t, w)
			waitFor(t, e.events, "stand-in TSA: worker n1 registered (key "+fp+")\n")
			waitFor(t, out, "stand-in worker: n1 registered with the TSA at "+e.addr+" (key "+fp+")")
			if r, ok := e.tsa.Workers()["n1"]; !ok || r.Key != fp || r.Worker.Platform != "linux" {
				t.Errorf("registrations %+v", e.tsa.Workers())
			}
		}},
		{"an unknown key is refused, logged, and retried", func(t *testing.T, e *tsaEnv, _ *WorkerClient, out *testlog.Buffer) {
			w := e.worker("n2", other, out)
			runWorker(t, w)
			ofp := ssh.FingerprintSHA256(other.PublicKey())
			waitFor(t, e.events, "stand-in TSA: refused key "+ofp+" from 127.0.0.1:")
			msg := "stand-in worker: the TSA at " + e.addr + " refused key " + ofp
			waitFor(t, out, msg)
			time.Sleep(300 * time.Millisecond)
			if n := strings.Count(out.String(), msg); n < 2 {
				t.Errorf("the worker tried %d times, want it to keep trying:\n%s", n, out)
			}
			if len(e.tsa.Workers()) != 0 {
				t.Errorf("registrations %+v", e.tsa.Workers())
			}
		}},
		{"a key removed from the file is refused at the next connection", func(t *testing.T, e *tsaEnv, w *WorkerClient, _ *testlog.Buffer) {
			if err := w.Land(ctxT(t)); err != nil {
				t.Fatal(err)
			}
			waitFor(t, e.events, "worker n1 landed")
			e.authorize(t, other)
			err := w.Retire(ctxT(t))
			if err == nil || !strings.Contains(err.Error(), "refused key "+fp) {
				t.Errorf("Retire after the key was removed: %v", err)
			}
			waitFor(t, e.events, "stand-in TSA: refused key "+fp)
		}},
		{"a TSA with another host key is refused by the worker", func(t *testing.T, e *tsaEnv, w *WorkerClient, out *testlog.Buffer) {
			_, otherHost, err := ed25519.GenerateKey(rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			otherPub, _ := ssh.NewPublicKey(otherHost.Public())
			w.TSAKeys = []ssh.PublicKey{otherPub}
			err = w.Retire(ctxT(t))
			var hk *HostKeyError
			if !errors.As(err, &hk) || hk.Key != ssh.FingerprintSHA256(e.hostPub) {
				t.Errorf("Retire against an unexpected host key: %v", err)
			}
			runWorker(t, w)
			waitFor(t, out, "has host key "+ssh.FingerprintSHA256(e.hostPub)+", which is not in tsa_host_key.pub")
			if strings.Contains(e.events.String(), "retired") || len(e.tsa.Workers()) != 0 {
				t.Errorf("the TSA saw the worker:\n%s", e.events)
			}
		}},
		{"a TSA with a host key of another type is refused by the worker", func(t *testing.T, e *tsaEnv, w *WorkerClient, _ *testlog.Buffer) {
			w.TSAKeys = []ssh.PublicKey{other.PublicKey()} // RSA; the TSA's is ed25519
			err := w.Retire(ctxT(t))
			var hk *HostKeyError
			if !errors.As(err, &hk) || !strings.Contains(err.Error(), "offers no host key of the type in tsa_host_key.pub") {
				t.Errorf("Retire against a host key of another type: %v", err)
			}
		}},
		{"retire-worker retires a registered worker", func(t *testing.T, e *tsaEnv, w *WorkerClient, out *testlog.Buffer) {
			runWorker(t, w)
			waitFor(t, e.events, "worker n1 registered")
			if err := w.Retire(ctxT(t)); err != nil {
				t.Fatal(err)
			}
			waitFor(t, e.events, "stand-in TSA: worker n1 retired\n")
			waitFor(t, out, "stand-in worker: n1 retired\n")
			if _, ok := e.tsa.Workers()["n1"]; ok {
				t.Error("n1 still registered after retiring")
			}
		}},
		{"a lost connection is re-registered", func(t *testing.T, e *tsaEnv, w *WorkerClient, _ *testlog.Buffer) {
			runWorker(t, w)
			waitFor(t, e.events, "worker n1 registered")
			// A second registration of the name (another connection)
			// replaces the first; the first's end must not unregister it.
			w2 := e.worker("n1", good, &testlog.Buffer{})
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); w2.Run(ctx) }()
			for strings.Count(e.events.String(), "worker n1 registered") < 2 {
				time.Sleep(10 * time.Millisecond)
			}
			cancel()
			<-done
			time.Sleep(100 * time.Millisecond)
			if _, ok := e.tsa.Workers()["n1"]; ok {
				t.Errorf("n1 registered after its newest connection ended:\n%s", e.events)
			}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := startTSA(t, 0, good)
			out := &testlog.Buffer{}
			tt.run(t, e, e.worker("n1", good, out), out)
		})
	}
}

// rawSession authenticates with key and runs command with stdin,
// returning the exit status.
func rawSession(t *testing.T, e *tsaEnv, key ssh.Signer, command string, stdin []byte) (int, string) {
	t.Helper()
	c, err := ssh.Dial("tcp", e.addr, &ssh.ClientConfig{User: "worker", Auth: []ssh.AuthMethod{ssh.PublicKeys(key)},
		HostKeyCallback: ssh.FixedHostKey(e.hostPub), Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	s.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	s.Stderr = &stderr
	err = s.Run(command)
	var exit *ssh.ExitError
	switch {
	case err == nil:
		return 0, stderr.String()
	case errors.As(err, &exit):
		return exit.ExitStatus(), stderr.String()
	}
	t.Fatalf("%s: %v", command, err)
	return 0, ""
}

// TestTSARefuses: what no worker sends is refused with a status and a
// reason, and registers nothing.
func TestTSARefuses(t *testing.T) {
	_, key := workerKey(t)
	e := startTSA(t, 0, key)
	big := append([]byte(`{"name":"n1","platform":"`), bytes.Repeat([]byte("x"), MaxWorkerJSON)...)
	for _, tt := range []struct {
		name, command string
		stdin         []byte
		want          string
	}{
		{"oversize JSON", ForwardWorker, append(big, `"}`...), "larger than 65536 bytes"},
		{"not JSON", ForwardWorker, []byte("hello"), "worker JSON"},
		{"no name", ForwardWorker, []byte(`{"platform":"linux"}`), "no name"},
		{"name with a space", ForwardWorker, []byte(`{"name":"n1 registered"}`), "has a space"},
		{"two values", RetireWorker, []byte(`{"name":"n1"}{"name":"n2"}`), "more than one value"},
		{"unknown command", "rm -rf /", []byte(`{"name":"n1"}`), `unknown command "rm"`},
		{"empty command", "", nil, "empty command"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, stderr := rawSession(t, e, key, tt.command, tt.stdin)
			if code != 1 || !strings.Contains(stderr, tt.want) {
				t.Errorf("exit %d, stderr %q; want 1 and %q", code, stderr, tt.want)
			}
			if len(e.tsa.Workers()) != 0 {
				t.Errorf("registered %+v", e.tsa.Workers())
			}
		})
	}
	if code, _ := rawSession(t, e, key, SweepContainers, []byte(`{"name":"n1"}`)); code != 0 {
		t.Errorf("sweep-containers: exit %d", code)
	}
	waitFor(t, e.events, "stand-in TSA: refused worker JSON from 127.0.0.1:")
}

// TestTSAMaxConns: connections over the limit are closed at once, and a
// slot is free again when a connection ends.
func TestTSAMaxConns(t *testing.T) {
	_, key := workerKey(t)
	e := startTSA(t, 1, key)
	first, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // accepted and holding the slot
	second, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	second.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := second.Read(make([]byte, 64)); err == nil {
		t.Errorf("a connection over the limit was served (%d bytes)", n)
	}
	second.Close()
	first.Close()
	time.Sleep(100 * time.Millisecond)
	if code, _ := rawSession(t, e, key, LandWorker, []byte(`{"name":"n1"}`)); code != 0 {
		t.Errorf("after the slot was freed: exit %d", code)
	}
}
