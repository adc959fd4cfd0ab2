package routerostest

import (
	"bufio"
	"crypto/md5" //nolint:gosec // RouterOS's pre-6.43 login is MD5 by definition
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"strings"
	"time"
)

const (
	// maxWord caps one word; see errWordTooLong.
	maxWord = 16 << 20
	// maxBeforeLogin is how many sentences a client may send before a
	// successful /login [I: the manual says there is a limit, not what].
	maxBeforeLogin = 16
)

// session is one client connection.
type session struct {
	r        *Router
	c        net.Conn
	service  string // api or api-ssl
	loggedIn bool
	before   int    // sentences sent before login
	nonce    []byte // the legacy login's challenge, once asked for
}

// serve answers one connection's sentences in order until it closes.
func (r *Router) serve(c net.Conn, service string) {
	defer r.wg.Done()
	defer func() {
		r.mu.Lock()
		delete(r.conns, c)
		r.mu.Unlock()
		c.Close()
	}()
	s := &session{r: r, c: c, service: service}
	if id, ok := r.addConnectionRow(c, service); ok {
		defer r.dropConnectionRow(id)
	}
	// A hung router gives no TLS handshake: a client's dial deadline is
	// what must end the wait, as with a router that stopped mid-handshake.
	if tc, ok := c.(*tls.Conn); ok {
		if !r.waitIfHung() || tc.Handshake() != nil {
			return
		}
	}
	br := bufio.NewReader(c)
	for {
		// A hung router still reads (so tests can see what was sent) but
		// answers nothing: the wait is between reading and replying only.
		words, err := readSentence(br, maxWord)
		var werr wireError
		switch {
		case errors.As(err, &werr):
			s.write([][]string{{"!fatal", fatalProtocol}})
			return
		case err != nil:
			return
		case len(words) == 0:
			continue // the manual: empty sentences are ignored
		}
		r.record(words[0])
		if !r.waitIfHung() {
			return
		}
		if raw, ok := r.takeRaw(words[0]); ok {
			s.sendRaw(raw)
			return
		}
		replies, last := s.dispatch(words)
		if s.write(replies) != nil || last {
			return
		}
	}
}

func (s *session) write(sentences [][]string) error {
	var b []byte
	for _, sen := range sentences {
		b = append(b, encodeSentence(sen...)...)
	}
	_, err := s.c.Write(b)
	return err
}

// sendRaw writes a RawNext's bytes; it stops early when the client has
// gone (a write fails) or the router closes.
func (s *session) sendRaw(raw Raw) {
	for i, chunk := range raw.Chunks {
		if i > 0 && raw.Gap > 0 {
			select {
			case <-time.After(raw.Gap):
			case <-s.r.closed:
				return
			}
		}
		if _, err := s.c.Write(chunk); err != nil {
			return
		}
	}
	if raw.Hold > 0 {
		// Reading until the client hangs up (or Hold passes) notices a
		// client that gave up; Close ends the read too.
		_ = s.c.SetReadDeadline(time.Now().Add(raw.Hold))
		_, _ = io.Copy(io.Discard, s.c)
	}
}

func (r *Router) record(word string) {
	r.mu.Lock()
	r.commands = append(r.commands, word)
	r.mu.Unlock()
}

// fatal is !fatal with its bare-word reason; the tag, if any, goes after
// the reason so the reason stays the word that follows !fatal, as in the
// manual's /quit transcript.
func fatal(req *request, reason string) [][]string {
	s := []string{"!fatal", reason}
	if req != nil && req.tagged {
		s = append(s, ".tag="+req.tag)
	}
	return [][]string{s}
}

// trapDone is a failed command's reply.
func trapDone(t *trap) [][]string { return [][]string{t.sentence(), {"!done"}} }

// dispatch answers one sentence; last says the connection ends after it.
func (s *session) dispatch(words []string) (replies [][]string, last bool) {
	req := parseRequest(words)
	switch req.word {
	case "/quit":
		return fatal(req, fatalQuit), true
	case "/login":
		if !s.loggedIn {
			s.before++
		}
		return req.withTag(s.login(req)), false
	}
	if !s.loggedIn {
		s.before++
		if s.before > maxBeforeLogin {
			return fatal(req, fatalTooManyBefore), true
		}
		return req.withTag(trapDone(errNotLoggedIn())), false
	}
	if req.word == "/cancel" {
		// Commands here finish before the next sentence is read, so there
		// is never anything left to cancel.
		return req.withTag(done()), false
	}
	return req.withTag(s.r.run(req)), false
}

// login is /login: =name= =password= (RouterOS >= 6.43), or the legacy
// challenge (a bare /login returns =ret=, then =name= =response=).
func (s *session) login(req *request) [][]string {
	name, _ := req.attr("name")
	if pw, ok := req.attr("password"); ok {
		return s.loginResult(s.r.authenticate(name, func(stored string) bool { return stored == pw }))
	}
	if resp, ok := req.attr("response"); ok && s.nonce != nil {
		nonce := s.nonce
		s.nonce = nil
		return s.loginResult(s.r.authenticate(name, func(stored string) bool {
			h := md5.New() //nolint:gosec // see import
			h.Write([]byte{0})
			h.Write([]byte(stored))
			h.Write(nonce)
			return resp == "00"+hex.EncodeToString(h.Sum(nil))
		}))
	}
	if len(req.attrs) == 0 {
		s.nonce = make([]byte, 16)
		_, _ = rand.Read(s.nonce)
		return [][]string{{"!done", "=ret=" + hex.EncodeToString(s.nonce)}}
	}
	return trapDone(errLogin())
}

func (s *session) loginResult(ok bool) [][]string {
	if !ok {
		return trapDone(errLogin())
	}
	s.loggedIn = true
	return done()
}

// authenticate checks a user in /user: enabled and the password right.
func (r *Router) authenticate(name string, password func(stored string) bool) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, row := range r.st.tables[pathUser].rows {
		if row.vals["name"] == name && row.vals["disabled"] != "true" {
			return password(row.vals["password"])
		}
	}
	return false
}

// run executes a logged-in command.
func (r *Router) run(req *request) [][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	m, cmd, t := r.st.resolve(req.word)
	if t != nil {
		return [][]string{t.sentence(), errNoSuchCommandPrefix().sentence(), {"!done"}}
	}
	if msg, ok := r.takeFailure(m.path, cmd); ok {
		return trapDone(&trap{message: msg})
	}
	out, t := r.st.exec(m, cmd, req)
	if t != nil {
		return trapDone(t)
	}
	return out
}

// resolve splits a command word into its menu and command, or names the
// first word RouterOS would not know.
func (s *store) resolve(word string) (*menu, string, *trap) {
	parts := strings.Split(strings.TrimPrefix(word, "/"), "/")
	for i, part := range parts {
		dir := "/" + strings.Join(parts[:i], "/")
		if i == len(parts)-1 {
			m := s.menus[dir]
			if m == nil || !m.commands[part] {
				return nil, "", errNoSuchCommand(part)
			}
			return m, part, nil
		}
		if !s.isDir(dir + pathSep(dir) + part) {
			return nil, "", errNoSuchCommand(part)
		}
	}
	return nil, "", errNoSuchCommand(word)
}

func pathSep(dir string) string {
	if dir == "/" {
		return ""
	}
	return "/"
}

// isDir reports whether p is a menu or a directory holding menus.
func (s *store) isDir(p string) bool {
	for path := range s.menus {
		if path == p || strings.HasPrefix(path, p+"/") {
			return true
		}
	}
	return false
}

// addConnectionRow lists a connection in /ip/service from 7.19, as RouterOS
// does (terraform-provider-routeros #769).
func (r *Router) addConnectionRow(c net.Conn, service string) (uint64, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.st.ver.atLeast(v(7, 19)) {
		return 0, false
	}
	port := "8728"
	if service == "api-ssl" {
		port = "8729"
	}
	row := r.st.insert(r.st.menus[pathService], map[string]string{
		"name": service, "port": port, "dynamic": "true", "connection": "true",
		"local": c.LocalAddr().String(), "remote": c.RemoteAddr().String(),
	}, 0)
	return row.id, true
}

func (r *Router) dropConnectionRow(id uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.st.remove(r.st.menus[pathService], map[uint64]bool{id: true})
}
