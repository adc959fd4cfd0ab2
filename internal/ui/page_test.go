package ui

import (
	"bytes"
	"crypto/tls"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// newPage is a Page whose data route answers "data", and its log.
func newPage(t testing.TB) (*Page, *bytes.Buffer) {
	t.Helper()
	var logs bytes.Buffer
	data := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "data") })
	return &Page{Logins: NewLogins(Limits{}), Data: data, Log: slog.New(slog.NewTextHandler(&logs, nil))}, &logs
}

func get(h http.Handler, target string, cookie *http.Cookie, secure bool) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodGet, target, nil)
	if cookie != nil {
		r.AddCookie(cookie)
	}
	if secure {
		r.TLS = &tls.ConnectionState{}
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// TestLoginFlow: without a session every page and data route is refused
// with how to get a link; the link logs in once, sets a cookie scripts and
// other sites cannot use, and sends the browser to the page without the
// code; the cookie then opens everything.
func TestLoginFlow(t *testing.T) {
	for _, secure := range []bool{false, true} {
		p, logs := newPage(t)
		h := p.Handler()
		for _, path := range []string{"/ui/", "/ui/app.js", "/ui/style.css", "/ui/api/nodes", "/ui/login", "/ui/login?code=nope"} {
			w := get(h, path, nil, secure)
			if w.Code != http.StatusUnauthorized && w.Code != http.StatusForbidden {
				t.Errorf("%s without a session: %d", path, w.Code)
			}
			if !strings.Contains(w.Body.String(), "bootstrapd ui") {
				t.Errorf("%s refusal does not say how to get a link:\n%s", path, w.Body)
			}
			if w.Header().Get("Cache-Control") != "no-store" || w.Header().Get("Referrer-Policy") != "no-referrer" {
				t.Errorf("%s headers: %v", path, w.Header())
			}
		}
		if w := get(h, "/ui/api/nodes", nil, secure); w.Header().Get("Content-Type") != "application/json" {
			t.Errorf("a data route's refusal is %q, want JSON for the script", w.Header().Get("Content-Type"))
		}

		code, _, _ := p.Logins.NewCode()
		w := get(h, "/ui/login?code="+code, nil, secure)
		if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/ui/" {
			t.Fatalf("login: %d to %q, want 303 to /ui/", w.Code, w.Header().Get("Location"))
		}
		cookies := w.Result().Cookies()
		if len(cookies) != 1 {
			t.Fatalf("login set %d cookies", len(cookies))
		}
		c := cookies[0]
		if c.Name != CookieName || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/ui/" || c.Secure != secure || c.MaxAge <= 0 {
			t.Errorf("session cookie %+v: want HttpOnly, SameSite=Strict, Path=/ui/, Secure=%v, a lifetime", c, secure)
		}
		if again := get(h, "/ui/login?code="+code, nil, secure); again.Code != http.StatusForbidden || len(again.Result().Cookies()) != 0 {
			t.Errorf("replayed code: %d, cookies %v", again.Code, again.Result().Cookies())
		}

		for path, want := range map[string]string{"/ui/": "<table id=\"nodes\">", "/ui/app.js": "EventSource", "/ui/style.css": "progress", "/ui/api/nodes": "data"} {
			w := get(h, path, &http.Cookie{Name: CookieName, Value: c.Value}, secure)
			if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), want) {
				t.Errorf("%s with the session: %d\n%.200s", path, w.Code, w.Body)
			}
		}
		if w := get(h, "/ui/nope", &http.Cookie{Name: CookieName, Value: c.Value}, secure); w.Code != http.StatusNotFound {
			t.Errorf("an unknown path: %d", w.Code)
		}
		for _, secret := range []string{code, c.Value} {
			if strings.Contains(logs.String(), secret) {
				t.Errorf("the log has a secret:\n%s", logs)
			}
		}
		if !strings.Contains(logs.String(), "status page login") {
			t.Errorf("the login is not logged:\n%s", logs)
		}
	}
}

// TestPageOffline: the page names nothing outside the daemon, so it works
// on a rack with no way out.
func TestPageOffline(t *testing.T) {
	for _, f := range []string{"assets/index.html", "assets/app.js", "assets/style.css"} {
		b, err := assets.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, bad := range []string{"http://", "https://", "//cdn", "@import"} {
			if bytes.Contains(b, []byte(bad)) {
				t.Errorf("%s names %q: the page must work offline", f, bad)
			}
		}
	}
}
