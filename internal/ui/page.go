package ui

import (
	"embed"
	"encoding/json"
	"fmt"
	"html"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"time"
)

//go:embed assets
var assets embed.FS

// CookieName is the session cookie. It is scoped to Path "/ui/": the admin
// API's own routes never look at it.
const CookieName = "bootstrapd_session"

// Prefix is where the page lives on the admin listeners, and the only
// paths the `bootstrapd ui` proxy forwards.
const Prefix = "/ui/"

// LoginPath is the link the CLI prints, with ?code=.
const LoginPath = Prefix + "login"

// DataPrefix is where the page reads the daemon's state: Page hands these
// requests to Data once the session is checked.
const DataPrefix = Prefix + "api/"

// Page serves everything under Prefix: the login link, and, to a browser
// with a session, the page, its assets and its data.
type Page struct {
	Logins *Logins
	// Data serves DataPrefix: read-only views of the admin API (nodes,
	// health, the event stream). Page lets a request through only with a
	// live session, so Data itself checks nothing.
	Data http.Handler
	Log  *slog.Logger
}

// Handler returns the routes under Prefix.
func (p *Page) Handler() http.Handler {
	static, err := fs.Sub(assets, "assets")
	if err != nil {
		panic(err) // the embed directive above names the directory
	}
	files := http.StripPrefix(Prefix, http.FileServerFS(static))
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+LoginPath, p.login)
	mux.Handle("GET "+Prefix+"{$}", p.guard(files))
	mux.Handle("GET "+Prefix+"app.js", p.guard(files))
	mux.Handle("GET "+Prefix+"style.css", p.guard(files))
	mux.Handle(DataPrefix, p.guard(p.Data))
	return headers(mux)
}

// headers sets what every reply under Prefix carries: nothing cached (the
// page shows live state, and a login reply must not be replayed from a
// cache), no referrer (the login URL has the code in it), no framing, and
// a policy that lets the page load only its own files.
func headers(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Cache-Control", "no-store")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
		next.ServeHTTP(w, r)
	})
}

// login trades ?code= for a session cookie and sends the browser on to the
// page, so the code leaves the address bar (and is spent either way).
func (p *Page) login(w http.ResponseWriter, r *http.Request) {
	code := r.URL.Query().Get("code")
	if code == "" {
		p.refuse(w, r, http.StatusUnauthorized, "no login code")
		return
	}
	id, exp, err := p.Logins.Redeem(code)
	if err != nil {
		p.refuse(w, r, http.StatusForbidden, err.Error())
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name: CookieName, Value: id, Path: Prefix, Expires: exp,
		MaxAge: int(time.Until(exp).Seconds()),
		// The page's script never needs it, and nothing from another site
		// may ride on it: the data routes trust the cookie alone.
		HttpOnly: true, SameSite: http.SameSiteStrictMode,
		// Over the TCP listener with TLS; the local proxy is plain HTTP
		// on loopback, where a Secure cookie would not be sent back.
		Secure: r.TLS != nil,
	})
	p.Log.Info("status page login", "remote", r.RemoteAddr, "session_expires", exp.Format(time.RFC3339))
	http.Redirect(w, r, Prefix, http.StatusSeeOther)
}

// guard lets a request through only with a live session cookie.
func (p *Page) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c, err := r.Cookie(CookieName); err == nil && p.Logins.Valid(c.Value) {
			next.ServeHTTP(w, r)
			return
		}
		p.refuse(w, r, http.StatusUnauthorized, "not logged in")
	})
}

// howTo is what every refusal tells the person in front of it.
const howTo = "On the machine running bootstrapd, run `bootstrapd ui` and open the link it prints: " +
	"it works once, within a few minutes."

// refuse answers a request without a session: JSON to the page's script,
// a short page saying how to get a link to a person. The reason is logged
// but never what was presented.
func (p *Page) refuse(w http.ResponseWriter, r *http.Request, code int, reason string) {
	p.Log.Warn("status page request refused", "reason", reason, "remote", r.RemoteAddr, "path", r.URL.Path)
	if strings.HasPrefix(r.URL.Path, DataPrefix) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(map[string]string{"error": reason + ". " + howTo})
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	fmt.Fprintf(w, `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>bootstrapd: log in</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body>
<h1>bootstrapd status page</h1>
<p id="refused"><strong>%s.</strong></p>
<p>%s</p>
</body></html>
`, html.EscapeString(capitalize(reason)), html.EscapeString(howTo))
}

func capitalize(s string) string {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return s
	}
	return string(s[0]-'a'+'A') + s[1:]
}
