package api

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

const (
	testToken  = "c2VjcmV0LXRva2VuLWZvci10ZXN0cw"
	wrongToken = "d3JvbmctdG9rZW4tZm9yLXRlc3Rz"
)

// lockedBuffer collects log lines written by server goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// serveBoth runs one API server as the daemon does when api.listen is set:
// on a unix socket as is, and on TCP behind the token. It returns the TCP
// base URL, the socket path and the captured log.
func serveBoth(t *testing.T) (string, string, *lockedBuffer) {
	t.Helper()
	logs := &lockedBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, _ := newServer(t, log)
	base, sock := listenBoth(t, s, nil)
	return base, sock, logs
}

// listenBoth serves s on a unix socket and on TCP behind testToken, with
// TLS when conf is set, and returns the TCP base URL and the socket path.
func listenBoth(t *testing.T, s *Server, conf *tls.Config) (string, string) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "api.sock")
	ul, err := ListenUnix(sock)
	if err != nil {
		t.Fatal(err)
	}
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + tl.Addr().String()
	if conf != nil {
		tl, base = tls.NewListener(tl, conf), "https://"+tl.Addr().String()
	}
	for l, h := range map[net.Listener]http.Handler{ul: s.Handler(), tl: s.TCPHandler(testToken)} {
		srv := &http.Server{Handler: h}
		go srv.Serve(l)
		t.Cleanup(func() { srv.Close() })
	}
	return base, sock
}

func TestTCPNeedsToken(t *testing.T) {
	base, _, logs := serveBoth(t)
	do := func(method, path, auth, body string) (int, http.Header, string) {
		t.Helper()
		req, err := http.NewRequest(method, base+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(b)
	}
	for _, tc := range []struct {
		name, method, path, auth, body string
		code                           int
	}{
		{"no token", "GET", "/v1/nodes", "", "", 401},
		{"no token, enroll", "POST", "/v1/nodes", "", `{"mac":"52:54:00:aa:bb:09"}`, 401},
		{"wrong token", "GET", "/v1/nodes", "Bearer " + wrongToken, "", 401},
		{"token prefix", "GET", "/v1/nodes", "Bearer " + testToken[:len(testToken)-1], "", 401},
		{"empty bearer", "GET", "/v1/nodes", "Bearer ", "", 401},
		{"basic auth", "GET", "/v1/nodes", "Basic " + testToken, "", 401},
		{"bare token", "GET", "/v1/nodes", testToken, "", 401},
		{"right token", "GET", "/v1/nodes", "Bearer " + testToken, "", 200},
		{"scheme case", "GET", "/v1/leases", "bearer " + testToken, "", 200},
		{"right token, enroll", "POST", "/v1/nodes", "Bearer " + testToken, `{"mac":"52:54:00:aa:bb:01"}`, 201},
		// Valid JSON that would enroll if the body limit did not apply.
		{"right token, too big", "POST", "/v1/nodes", "Bearer " + testToken, "{" + strings.Repeat(" ", maxBody) + `"mac":"52:54:00:aa:bb:02"}`, 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, h, body := do(tc.method, tc.path, tc.auth, tc.body)
			if code != tc.code {
				t.Fatalf("%d %s, want %d", code, body, tc.code)
			}
			if code == 400 && !strings.Contains(body, "too large") {
				t.Errorf("oversized body refused for another reason: %s", body)
			}
			if code != 401 {
				return
			}
			if got := h.Get("WWW-Authenticate"); got != "Bearer" {
				t.Errorf("WWW-Authenticate %q, want Bearer", got)
			}
			var e Error
			if err := json.Unmarshal([]byte(body), &e); err != nil || !strings.Contains(e.Error, "BOOTSTRAPD_TOKEN") {
				t.Errorf("401 body %q (%v), want a JSON error naming BOOTSTRAPD_TOKEN", body, err)
			}
		})
	}
	// The refused enroll did not happen; the accepted one did.
	if code, _, body := do("GET", "/v1/nodes/52:54:00:aa:bb:09", "Bearer "+testToken, ""); code != 404 {
		t.Errorf("node enrolled without a token: %d %s", code, body)
	}

	out := logs.String()
	if !strings.Contains(out, "level=WARN") || !strings.Contains(out, "remote=127.0.0.1:") {
		t.Errorf("refusals not logged at Warn with the remote address:\n%s", out)
	}
	// Neither the token nor a wrong one presented is ever logged, nor any
	// part of them long enough to matter.
	for _, secret := range []string{testToken[:12], wrongToken[:12]} {
		if strings.Contains(out, secret) {
			t.Errorf("log contains a presented token:\n%s", out)
		}
	}
}

func TestClientOverTCP(t *testing.T) {
	base, sock, _ := serveBoth(t)
	ctx := context.Background()

	c, err := NewClient(base, testToken+"\n")
	if err != nil {
		t.Fatal(err)
	}
	if n, err := c.Enroll(ctx, EnrollRequest{MAC: "52:54:00:aa:bb:01"}); err != nil || n.Hostname != "n1" {
		t.Fatalf("enroll over TCP with the token: %+v %v", n, err)
	}

	c, err = NewClient(base, wrongToken)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Nodes(ctx); err == nil || !strings.Contains(err.Error(), "BOOTSTRAPD_TOKEN") || strings.Contains(err.Error(), wrongToken) {
		t.Errorf("wrong token: %v, want an error naming BOOTSTRAPD_TOKEN but not the token", err)
	}

	// The socket needs no token: its file mode is its access control.
	c, err = NewClient("unix://"+sock, "")
	if err != nil {
		t.Fatal(err)
	}
	if nodes, err := c.Nodes(ctx); err != nil || len(nodes) != 1 {
		t.Errorf("nodes over the socket without a token: %v %v", nodes, err)
	}
}

func TestClientRefusesTCPWithoutToken(t *testing.T) {
	for _, addr := range []string{"http://10.77.0.1:8081", "https://bootstrapd.example:8081"} {
		for _, token := range []string{"", " \n"} {
			if _, err := NewClient(addr, token); err == nil || !strings.Contains(err.Error(), "set BOOTSTRAPD_TOKEN") {
				t.Errorf("NewClient(%q, %q): %v, want an error saying to set BOOTSTRAPD_TOKEN", addr, token, err)
			}
		}
	}
	if _, err := NewClient("unix:///run/bootstrapd.sock", ""); err != nil {
		t.Errorf("socket without a token: %v", err)
	}
}

func TestEmptyTokenRefusesAll(t *testing.T) {
	h := RequireToken("", slog.New(slog.NewTextHandler(io.Discard, nil)))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Error("handler reached with an empty configured token")
	}))
	for _, auth := range []string{"", "Bearer", "Bearer ", "Bearer x"} {
		req, _ := http.NewRequest("GET", "/v1/nodes", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != 401 {
			t.Errorf("Authorization %q: %d, want 401", auth, w.Code)
		}
	}
}
