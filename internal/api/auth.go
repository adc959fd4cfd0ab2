package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"log/slog"
	"net/http"
	"strings"
)

// RequireToken returns middleware that lets a request through only if it
// carries "Authorization: Bearer <token>". It guards the TCP listener; the
// unix socket does without, as its file mode already says who may connect.
//
// A refusal is a 401 with a JSON error and "WWW-Authenticate: Bearer", and
// is logged at Warn with the remote address so that probing shows up, but
// never with what was presented: a wrong token is often a right token for
// something else, or this one with a typo.
func RequireToken(token string, log *slog.Logger) func(http.Handler) http.Handler {
	// Comparing digests rather than the strings keeps the comparison
	// constant-time in the length too: ConstantTimeCompare returns at once
	// when the lengths differ, which would tell a caller the token's length.
	want := sha256.Sum256([]byte(token))
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			got, reason := bearer(r)
			if reason == "" {
				sum := sha256.Sum256([]byte(got))
				// An empty configured token refuses everything rather than
				// matching an empty "Bearer ": fail closed.
				if token == "" || subtle.ConstantTimeCompare(sum[:], want[:]) != 1 {
					reason = "wrong token"
				}
			}
			if reason != "" {
				log.Warn("admin API request refused", "reason", reason, "remote", r.RemoteAddr, "method", r.Method, "path", r.URL.Path)
				w.Header().Set("WWW-Authenticate", "Bearer")
				reply(w, http.StatusUnauthorized, Error{Error: "unauthorized (" + reason + "): set BOOTSTRAPD_TOKEN to the contents of the daemon's api token_file"})
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// bearer returns the token of an "Authorization: Bearer" header, or why
// there is none.
func bearer(r *http.Request) (token, reason string) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return "", "no token"
	}
	scheme, tok, _ := strings.Cut(h, " ")
	// The scheme is case-insensitive (RFC 9110, section 11.1).
	if !strings.EqualFold(scheme, "Bearer") {
		return "", "not a bearer token"
	}
	if tok = strings.TrimSpace(tok); tok == "" {
		return "", "no token"
	}
	return tok, ""
}
