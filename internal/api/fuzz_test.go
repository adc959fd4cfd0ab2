package api

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// FuzzAdminAPI sends arbitrary requests to the admin API over a real
// inventory: no panic, no hang, no 5xx from input, and every error a JSON
// body saying what was wrong.
func FuzzAdminAPI(f *testing.F) {
	for _, s := range []struct{ method, target, body string }{
		{"GET", "/v1/nodes", ""},
		{"POST", "/v1/nodes", `{"mac":"52:54:00:aa:bb:01","hostname":"n1","labels":{"disk":"/dev/sda"}}`},
		{"POST", "/v1/nodes", `{"mac":"52:54:00:aa:bb:02","ip":"10.77.0.255"}`},
		{"POST", "/v1/nodes", `{"mac":"zz","hostname":"` + strings.Repeat("a", 300) + `"}`},
		{"GET", "/v1/nodes/n1", ""},
		{"POST", "/v1/nodes/n1/retire", ""},
		{"POST", "/v1/nodes/n1/reinstall", ""},
		{"GET", "/v1/events?since=0", ""},
		{"GET", "/v1/events?since=-1&node=%00", ""},
		{"GET", "/v1/leases", ""},
		{"GET", "/v1/profiles", ""},
		{"GET", "/v1/health", ""},
		{"POST", "/v1/ui/codes", ""},
		{"GET", "/ui/login?code=x", ""},
		{"GET", "/ui/api/nodes", ""},
	} {
		f.Add(s.method, s.target, s.body)
	}
	s, _ := newServer(f, slog.New(slog.NewTextHandler(io.Discard, nil)))
	h := s.Handler()
	f.Fuzz(func(t *testing.T, method, target, body string) {
		if !strings.HasPrefix(target, "/") || strings.ContainsAny(target, " \r\n") {
			return // not a request line net/http accepts
		}
		if _, err := url.ParseRequestURI(target); err != nil {
			return
		}
		switch method {
		case "GET", "POST", "PUT", "DELETE":
		default:
			return
		}
		// Following the event log streams until the client goes: this one
		// goes after a second.
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		r := httptest.NewRequest(method, target, strings.NewReader(body)).WithContext(ctx)
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		done := make(chan struct{})
		go func() { h.ServeHTTP(w, r); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("%s %q hangs", method, target)
		}
		if w.Code >= 500 && w.Code != http.StatusServiceUnavailable {
			t.Fatalf("%s %q %q: %d %s", method, target, body, w.Code, w.Body)
		}
	})
}
