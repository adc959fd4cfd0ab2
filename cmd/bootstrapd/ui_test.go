package main

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestUIListen: the page's proxy listens on loopback only, since whoever
// can connect to it can try its login.
func TestUIListen(t *testing.T) {
	for _, c := range []struct {
		addr string
		ok   bool
	}{
		{"127.0.0.1:0", true},
		{"[::1]:0", true},
		{"0.0.0.0:0", false},
		{":0", false},
		{"10.77.0.1:8088", false},
		{"localhost:0", false},
		{"8088", false},
	} {
		l, err := listenLoopback(c.addr)
		if l != nil {
			l.Close()
		}
		var ue usageError
		if c.ok && err != nil && !errors.As(err, &ue) {
			// [::1] may be missing on a machine without IPv6.
			t.Logf("%s: %v", c.addr, err)
			continue
		}
		if c.ok != (err == nil) {
			t.Errorf("listenLoopback(%q): %v, want ok=%v", c.addr, err, c.ok)
		}
		if !c.ok && !errors.As(err, &ue) {
			t.Errorf("listenLoopback(%q): %v, want a usage error", c.addr, err)
		}
	}
}

// TestUISameHost: the proxy answers only requests for the address it
// printed, so a name rebound to 127.0.0.1 by another site gets nothing.
func TestUISameHost(t *testing.T) {
	h := sameHost("127.0.0.1:8088", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	for host, want := range map[string]int{
		"127.0.0.1:8088":      http.StatusOK,
		"localhost:8088":      http.StatusOK,
		"127.0.0.1:8089":      http.StatusMisdirectedRequest,
		"attacker.test:8088":  http.StatusMisdirectedRequest,
		"":                    http.StatusMisdirectedRequest,
		"127.0.0.1.nip.io:80": http.StatusMisdirectedRequest,
	} {
		r := httptest.NewRequest(http.MethodGet, "/ui/", nil)
		r.Host = host
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != want {
			t.Errorf("Host %q: %d, want %d", host, w.Code, want)
		}
	}
}
