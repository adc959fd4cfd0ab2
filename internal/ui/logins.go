// Package ui is the status page for the person at the rack: one HTML page,
// its script and its style sheet, embedded in the binary (no CDN: a rack
// often has no way out), served by the daemon on the admin side only.
//
// A browser cannot carry the admin API's bearer token, and the token must
// never go in a URL, so the page has a login of its own: the CLI asks the
// admin API for a one-time code (Logins.NewCode), prints a link with it,
// and the browser trades the code for a session cookie (Logins.Redeem).
// Everything is in memory and bounded: a restart logs everyone out, which
// is the right answer for a page that is a convenience, not a record.
package ui

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"sync"
	"time"
)

// Limits bound the codes and sessions kept in memory. The zero value of a
// field takes its default.
type Limits struct {
	// CodeTTL is how long a login code waits to be used: long enough to
	// copy a link from a terminal into a browser, short enough that a code
	// seen over a shoulder is stale.
	CodeTTL time.Duration
	// MaxCodes is how many unused codes are kept; minting one more forgets
	// the oldest.
	MaxCodes int
	// SessionTTL is how long a browser stays logged in: a shift at the rack.
	SessionTTL time.Duration
	// MaxSessions is how many sessions are kept; logging in once more ends
	// the oldest.
	MaxSessions int
}

// Defaults for Limits.
const (
	DefaultCodeTTL     = 2 * time.Minute
	DefaultMaxCodes    = 16
	DefaultSessionTTL  = 12 * time.Hour
	DefaultMaxSessions = 32
)

// ErrCode is Redeem's answer to a code that is unknown, used or expired.
// The three are not told apart: a caller probing for codes learns nothing.
var ErrCode = errors.New("this login link was already used or has expired")

// Logins holds the login codes and the sessions they were traded for.
//
// Both are kept as SHA-256 digests of the secret: a map lookup compares
// keys in time that depends on how much of them matches, and comparing
// digests of what a client sent tells it nothing about the secret.
type Logins struct {
	limits Limits
	now    func() time.Time

	mu       sync.Mutex
	codes    map[digest]time.Time // -> expiry
	sessions map[digest]time.Time // -> expiry
}

type digest [sha256.Size]byte

// NewLogins returns an empty set of logins bounded by l.
func NewLogins(l Limits) *Logins {
	if l.CodeTTL <= 0 {
		l.CodeTTL = DefaultCodeTTL
	}
	if l.MaxCodes <= 0 {
		l.MaxCodes = DefaultMaxCodes
	}
	if l.SessionTTL <= 0 {
		l.SessionTTL = DefaultSessionTTL
	}
	if l.MaxSessions <= 0 {
		l.MaxSessions = DefaultMaxSessions
	}
	return &Logins{limits: l, now: time.Now, codes: map[digest]time.Time{}, sessions: map[digest]time.Time{}}
}

// Limits returns the bounds in force, defaults filled in.
func (l *Logins) Limits() Limits { return l.limits }

// NewCode mints a login code, valid once until the returned time.
func (l *Logins) NewCode() (string, time.Time, error) {
	code, key, err := secret()
	if err != nil {
		return "", time.Time{}, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	exp := l.now().Add(l.limits.CodeTTL)
	add(l.codes, key, exp, l.limits.MaxCodes, l.now())
	return code, exp, nil
}

// Redeem trades a code for a new session: the code is gone afterwards,
// whether or not this succeeds, so a replay is refused.
func (l *Logins) Redeem(code string) (string, time.Time, error) {
	key := sha256.Sum256([]byte(code))
	l.mu.Lock()
	exp, ok := l.codes[key]
	delete(l.codes, key)
	now := l.now()
	l.mu.Unlock()
	if !ok || !now.Before(exp) {
		return "", time.Time{}, ErrCode
	}
	id, skey, err := secret()
	if err != nil {
		return "", time.Time{}, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	sexp := now.Add(l.limits.SessionTTL)
	add(l.sessions, skey, sexp, l.limits.MaxSessions, now)
	return id, sexp, nil
}

// Valid reports whether id is a live session.
func (l *Logins) Valid(id string) bool {
	if id == "" {
		return false
	}
	key := sha256.Sum256([]byte(id))
	l.mu.Lock()
	defer l.mu.Unlock()
	exp, ok := l.sessions[key]
	if ok && !l.now().Before(exp) {
		delete(l.sessions, key)
		return false
	}
	return ok
}

// Counts returns how many codes and sessions are held, expired ones
// included until they are next swept: for tests of the bounds.
func (l *Logins) Counts() (codes, sessions int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.codes), len(l.sessions)
}

// add puts key in m, first sweeping what has expired and then, if m is
// still full, the entry that expires first (the oldest, as every entry of
// m has the same lifetime). The operator who just ran `bootstrapd ui` is
// never locked out by the ones before; the memory stays bounded.
func add(m map[digest]time.Time, key digest, exp time.Time, max int, now time.Time) {
	for k, e := range m {
		if !now.Before(e) {
			delete(m, k)
		}
	}
	for len(m) >= max {
		var oldest digest
		first := true
		for k, e := range m {
			if first || e.Before(m[oldest]) {
				oldest, first = k, false
			}
		}
		delete(m, oldest)
	}
	m[key] = exp
}

// secretBytes is the size of codes and session IDs: 256 bits, not
// guessable within any number of requests the daemon would answer.
const secretBytes = 32

// secret returns a new random secret in URL-safe base64 and its digest.
func secret() (string, digest, error) {
	b := make([]byte, secretBytes)
	if _, err := rand.Read(b); err != nil {
		return "", digest{}, err
	}
	s := base64.RawURLEncoding.EncodeToString(b)
	return s, sha256.Sum256([]byte(s)), nil
}
