package ui

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// FuzzLogin sends arbitrary codes and session cookies, the two things the
// page reads from the network: nothing but a minted code logs in, nothing
// but a session opens the page, and no input panics or yields a 5xx.
func FuzzLogin(f *testing.F) {
	for _, s := range []struct{ code, cookie string }{
		{"", ""},
		{"abc", "abc"},
		{strings.Repeat("A", 43), strings.Repeat("A", 43)},
		{"%00", "\x00"},
		{"a b;c=d", `"quoted"`},
	} {
		f.Add(s.code, s.cookie)
	}
	p, _ := newPage(f)
	h := p.Handler()
	f.Fuzz(func(t *testing.T, code, cookie string) {
		w := get(h, "/ui/login?code="+url.QueryEscape(code), nil, false)
		if w.Code != http.StatusUnauthorized && w.Code != http.StatusForbidden {
			t.Fatalf("login with %q: %d", code, w.Code)
		}
		r := httptest.NewRequest(http.MethodGet, "/ui/api/nodes", nil)
		r.Header.Set("Cookie", CookieName+"="+cookie)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		if rec.Code != http.StatusUnauthorized {
			t.Fatalf("data with cookie %q: %d", cookie, rec.Code)
		}
	})
}
