package api

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bootstrapd/bootstrapd/internal/inventory"
	"github.com/bootstrapd/bootstrapd/internal/routeros/routerostest"
	"github.com/bootstrapd/bootstrapd/internal/ui"
)

// TestHealthCache: however many ask at once and however often, the checks
// run once per healthTTL, and a caller that gives up does not cancel the
// run the others wait for.
func TestHealthCache(t *testing.T) {
	var runs atomic.Int32
	release := make(chan struct{})
	run := func(ctx context.Context) []HealthCheck {
		runs.Add(1)
		<-release
		return []HealthCheck{{Name: "router", OK: true, Detail: "RouterOS 7.19"}, {Name: "vault", Detail: "sealed", Fix: "unseal it"}}
	}
	var c healthCache
	impatient, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.get(impatient, run); err == nil {
		t.Error("a caller whose context ended got a report")
	}
	var wg sync.WaitGroup
	reports := make([]HealthReport, 8)
	for i := range reports {
		wg.Go(func() {
			var err error
			if reports[i], err = c.get(context.Background(), run); err != nil {
				t.Error(err)
			}
		})
	}
	time.Sleep(50 * time.Millisecond)
	close(release)
	wg.Wait()
	if n := runs.Load(); n != 1 {
		t.Errorf("the checks ran %d times for 9 callers at once, want 1", n)
	}
	for _, r := range reports {
		if r.OK || len(r.Checks) != 2 || r.CheckedAt.IsZero() {
			t.Errorf("report %+v: want not OK (vault failed), both checks, a time", r)
		}
	}
	if _, err := c.get(context.Background(), run); err != nil || runs.Load() != 1 {
		t.Errorf("a call within healthTTL ran the checks again (%d runs, %v)", runs.Load(), err)
	}
	c.mu.Lock()
	c.last.CheckedAt = time.Now().Add(-healthTTL)
	c.mu.Unlock()
	if _, err := c.get(context.Background(), run); err != nil || runs.Load() != 2 {
		t.Errorf("a stale report was served without running the checks (%d runs, %v)", runs.Load(), err)
	}
}

// statusSite runs one API server as the daemon does with api.listen and
// TLS: on the socket as is, and on TLS over TCP behind the token, the
// status page excepted. It returns the HTTPS base URL, the socket path,
// the CA file that trusts the server, and the log.
func statusSite(t *testing.T) (string, string, string, *lockedBuffer) {
	t.Helper()
	logs := &lockedBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, _ := newServer(t, log)
	s.Health = func(context.Context) []HealthCheck {
		return []HealthCheck{{Name: "router", OK: true, Detail: "RouterOS 7.19"}}
	}
	ca, key := routerostest.CertFiles(t, t.TempDir(), "api")
	pair, err := tls.LoadX509KeyPair(ca, key)
	if err != nil {
		t.Fatal(err)
	}
	conf := &tls.Config{Certificates: []tls.Certificate{pair}}
	base, sock := listenBoth(t, s, conf)
	return base, sock, ca, logs
}

// browser is an HTTP client with a cookie jar that trusts ca, as a
// browser that accepted the daemon's certificate would be.
func browser(t *testing.T, ca string) *http.Client {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c, err := ClientConfig{Addr: "https://x", Token: "x", CACert: ca}.Client()
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, Transport: c.http.Transport}
}

// TestStatusOverTLS: the TCP listener mints codes only with the token; the
// page and its data open with a code's link and a session, not with the
// token; the session cookie is Secure; a code is good once; and neither
// the token, nor a code, nor a session is logged.
func TestStatusOverTLS(t *testing.T) {
	base, _, ca, logs := statusSite(t)
	ctx := context.Background()

	if _, err := (ClientConfig{Addr: base, Token: testToken}).Client(); err != nil {
		t.Fatal(err)
	}
	plain, _ := NewClient(base, testToken)
	if _, err := plain.Nodes(ctx); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("a self-signed daemon trusted without BOOTSTRAPD_CACERT: %v", err)
	}
	noToken, _ := (ClientConfig{Addr: base, Token: wrongToken, CACert: ca}).Client()
	if _, err := noToken.LoginCode(ctx); err == nil {
		t.Error("a login code minted without the token")
	}
	c, err := (ClientConfig{Addr: base, Token: testToken, CACert: ca}).Client()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Enroll(ctx, EnrollRequest{MAC: "52:54:00:aa:bb:01"}); err != nil {
		t.Fatal(err)
	}
	code, err := c.LoginCode(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if code.Path != "/ui/login?code="+code.Code || time.Until(code.Expires) > ui.DefaultCodeTTL || c.Socket() {
		t.Errorf("login code %+v", code)
	}

	b := browser(t, ca)
	// The token opens nothing under /ui/: the page takes sessions only.
	req, _ := http.NewRequest("GET", base+"/ui/api/nodes", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	if resp, err := b.Do(req); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("/ui/api/nodes with the bearer token: %v %v", resp.StatusCode, err)
	}
	resp, err := b.Get(c.URL(code.Path))
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Request.URL.Path != "/ui/" || resp.Request.URL.RawQuery != "" || !strings.Contains(string(page), `id="progress"`) {
		t.Fatalf("login link ended at %s with %d:\n%.300s", resp.Request.URL, resp.StatusCode, page)
	}
	var session string
	for _, ck := range b.Jar.Cookies(resp.Request.URL) {
		session = ck.Value
	}
	if session == "" {
		t.Fatal("no session cookie for /ui/")
	}
	// Secure is not readable from the jar; ask again on a fresh client.
	code2, _ := c.LoginCode(ctx)
	nr, _ := http.NewRequest("GET", c.URL(code2.Path), nil)
	r2, err := b.Transport.RoundTrip(nr)
	if err != nil {
		t.Fatal(err)
	}
	r2.Body.Close()
	if ck := r2.Cookies(); len(ck) != 1 || !ck[0].Secure || !ck[0].HttpOnly || ck[0].SameSite != http.SameSiteStrictMode {
		t.Errorf("session cookie over TLS: %+v, want Secure, HttpOnly, SameSite=Strict", ck)
	}

	var snap Snapshot
	getJSON(t, b, base+"/ui/api/nodes", &snap)
	if len(snap.Nodes) != 1 || snap.Seq == 0 || snap.Nodes[0].TokenHash != nil {
		t.Errorf("snapshot %+v", snap)
	}
	var rep HealthReport
	getJSON(t, b, base+"/ui/api/health", &rep)
	if !rep.OK || len(rep.Checks) != 1 || rep.Checks[0].Name != "router" {
		t.Errorf("health %+v", rep)
	}
	if h, err := c.Health(ctx); err != nil || !h.OK {
		t.Errorf("GET /v1/health with the token: %+v %v", h, err)
	}
	// A session opens the page, not the admin API.
	if resp, err := b.Get(base + "/v1/nodes"); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("/v1/nodes with a session cookie: %v %v", resp.StatusCode, err)
	}
	if resp, err := b.Get(c.URL(code.Path)); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("replayed code: %v %v", resp.StatusCode, err)
	}
	for _, secret := range []string{testToken, code.Code, code2.Code, session} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("the log holds a secret:\n%s", logs)
		}
	}
}

func getJSON(t *testing.T, c *http.Client, url string, v any) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

// TestStatusProxy: `bootstrapd ui`'s proxy to the socket forwards the page
// and nothing else: the socket's own routes need no token, so forwarding
// them would hand the admin API to every user of the machine.
func TestStatusProxy(t *testing.T) {
	_, sock, _, _ := statusSite(t)
	c, err := NewClient("unix://"+sock, "")
	if err != nil || !c.Socket() {
		t.Fatal(err)
	}
	proxy := httptest.NewServer(c.StatusProxy(slog.New(slog.DiscardHandler)))
	defer proxy.Close()
	for path, want := range map[string]int{"/v1/nodes": 404, "/v1/ui/codes": 404, "/ui/": 401, "/ui/api/nodes": 401, "/": 404} {
		resp, err := http.Get(proxy.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s through the proxy: %d, want %d", path, resp.StatusCode, want)
		}
	}
	code, err := c.LoginCode(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	jar, _ := cookiejar.New(nil)
	b := &http.Client{Jar: jar}
	resp, err := b.Get(proxy.URL + code.Path)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Request.URL.Path != "/ui/" {
		t.Errorf("login through the proxy: %d at %s", resp.StatusCode, resp.Request.URL)
	}
}

// TestEventSource: the page's stream sends each event with its number as
// its id, starting after ?since= or after a reconnecting browser's
// Last-Event-ID, and keeps going as events happen.
func TestEventSource(t *testing.T) {
	s, inv := newServer(t, slog.New(slog.DiscardHandler))
	ctx := context.Background()
	for _, mac := range []string{"52:54:00:aa:bb:01", "52:54:00:aa:bb:02"} {
		if _, err := inv.Enroll(ctx, inventory.EnrollRequest{MAC: mac, Actor: "test"}); err != nil {
			t.Fatal(err)
		}
	}
	last := inv.LastSeq()
	if last < 2 {
		t.Fatalf("LastSeq %d after two enrolls", last)
	}
	srv := httptest.NewServer(http.HandlerFunc(s.eventSource))
	defer srv.Close()
	for _, tc := range []struct {
		name, query, lastID string
		first               uint64
	}{
		{"from the start", "?since=0", "", 1},
		{"after since", "?since=1", "", 2},
		{"Last-Event-ID wins", "?since=0", "1", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(rctx, "GET", srv.URL+tc.query, nil)
			if tc.lastID != "" {
				req.Header.Set("Last-Event-ID", tc.lastID)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
				t.Fatalf("Content-Type %q", ct)
			}
			sc := bufio.NewScanner(resp.Body)
			next := func() (string, inventory.LogEvent) {
				t.Helper()
				var id string
				var ev inventory.LogEvent
				for sc.Scan() {
					line := sc.Text()
					switch {
					case strings.HasPrefix(line, "id: "):
						id = line[4:]
					case strings.HasPrefix(line, "data: "):
						if err := json.Unmarshal([]byte(line[6:]), &ev); err != nil {
							t.Fatal(err)
						}
					case line == "" && id != "":
						return id, ev
					}
				}
				t.Fatalf("stream ended: %v", sc.Err())
				return "", ev
			}
			id, ev := next()
			if ev.Seq != tc.first || id != strconv.FormatUint(ev.Seq, 10) {
				t.Errorf("first event %s %+v, want #%d", id, ev, tc.first)
			}
			for ev.Seq < last {
				_, ev = next()
			}
			// A new event arrives on the open stream.
			if err := inv.Note(ctx, "52:54:00:aa:bb:01", "a note for "+tc.name, "test"); err != nil {
				t.Fatal(err)
			}
			if _, ev = next(); ev.Seq <= last || ev.MAC != "52:54:00:aa:bb:01" {
				t.Errorf("live event %+v", ev)
			}
			last = inv.LastSeq()
		})
	}
	resp, err := http.Get(srv.URL + "?since=x")
	if err != nil || resp.StatusCode != 400 {
		t.Errorf("since=x: %v %v", resp.StatusCode, err)
	}

	// A stopping daemon ends the streams it is following.
	resp, err = http.Get(srv.URL + fmt.Sprintf("?since=%d", inv.LastSeq()))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	ended := make(chan error, 1)
	go func() { _, err := io.ReadAll(resp.Body); ended <- err }()
	s.EndStreams()
	s.EndStreams() // both admin listeners call it
	select {
	case err := <-ended:
		if err != nil {
			t.Errorf("the ended stream: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("EndStreams did not end an open stream")
	}
}
