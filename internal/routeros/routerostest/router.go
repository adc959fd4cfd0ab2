package routerostest

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Options configure a Router.
type Options struct {
	// Version is the RouterOS release to behave like, "7.19" or "6.49"
	// (a patch level or suffix is ignored). Empty means "7.19".
	Version string
	// User and Password are the account in /user (group full) a client
	// logs in with. Empty User means "admin"; the password may be empty,
	// as on a fresh router.
	User, Password string
	// TLS serves api-ssl; nil means a self-signed certificate made by New.
	TLS *tls.Config
}

// Router is a RouterOS device as seen over its API. Its methods are safe
// for concurrent use; each connection's commands are answered in order.
type Router struct {
	verText string
	tlsConf *tls.Config
	cert    *x509.Certificate

	mu       sync.Mutex
	st       *store
	commands []string
	fails    []failure
	raws     []rawReply
	hung     bool
	resume   chan struct{}
	conns    map[net.Conn]struct{}
	lns      []net.Listener

	closed    chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup
}

// failure is a FailNext still to fire.
type failure struct{ path, command, message string }

// New builds a router in its factory state for the release: ether1..ether5
// in /interface, the services, the read/write/full groups and the login
// user. It panics on a version it cannot read, which is a bug in the test.
func New(opts Options) *Router {
	if opts.Version == "" {
		opts.Version = "7.19"
	}
	if opts.User == "" {
		opts.User = "admin"
	}
	ver, err := parseVersion(opts.Version)
	if err != nil {
		panic(err)
	}
	r := &Router{
		verText: opts.Version,
		st:      newStore(ver),
		conns:   map[net.Conn]struct{}{},
		closed:  make(chan struct{}),
	}
	if opts.TLS != nil {
		r.tlsConf, r.cert = opts.TLS, leaf(opts.TLS)
	} else if r.tlsConf, r.cert, err = SelfSigned(); err != nil {
		panic(err)
	}
	r.factoryReset(opts)
	return r
}

// factoryReset seeds what a fresh router has.
func (r *Router) factoryReset(opts Options) {
	r.st.tables[pathResource].rows[0].vals["version"] = resourceVersion(r.verText, r.st.ver)
	for i := 1; i <= 5; i++ {
		name := "ether" + strconv.Itoa(i)
		r.Seed(pathInterface, map[string]string{
			"name": name, "default-name": name, "type": "ether", "mtu": "1500",
			"actual-mtu": "1500", "mac-address": macFor(name),
		})
	}
	// The console's print order; the ids are this router's, not a real
	// one's, which differ between releases: clients must read them.
	for _, s := range []struct{ name, port, disabled string }{
		{"telnet", "23", "false"}, {"ftp", "21", "false"}, {"www", "80", "false"},
		{"ssh", "22", "false"}, {"www-ssl", "443", "true"}, {"api", "8728", "false"},
		{"winbox", "8291", "false"}, {"api-ssl", "8729", "false"},
	} {
		r.Seed(pathService, map[string]string{"name": s.name, "port": s.port, "disabled": s.disabled})
	}
	for _, g := range []struct{ name, policy string }{
		{"read", "local,telnet,ssh,reboot,read,test,winbox,password,web,sniff,sensitive,api,romon,!ftp,!write,!policy"},
		{"write", "local,telnet,ssh,reboot,read,write,test,winbox,password,web,sniff,sensitive,api,romon,!ftp,!policy"},
		{"full", "local,telnet,ssh,ftp,reboot,read,write,policy,test,winbox,password,web,sniff,sensitive,api,romon"},
	} {
		r.Seed(pathGroup, map[string]string{"name": g.name, "policy": g.policy})
	}
	r.Seed(pathUser, map[string]string{"name": opts.User, "group": "full", "password": opts.Password})
}

// Version is the release the router behaves like, as given in Options or
// the last Upgrade.
func (r *Router) Version() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.verText
}

// Certificate is the certificate api-ssl presents.
func (r *Router) Certificate() *x509.Certificate { return r.cert }

// Fingerprint is the SHA-256 of the api-ssl certificate, lowercase hex.
func (r *Router) Fingerprint() string { return Fingerprint(r.cert) }

// Listen serves the plain API (RouterOS's api service) on 127.0.0.1 and
// returns its address. The router is closed when the test ends.
func (r *Router) Listen(t testing.TB) string {
	t.Helper()
	return r.listen(t, "api")
}

// ListenTLS serves api-ssl on 127.0.0.1 with the router's certificate.
func (r *Router) ListenTLS(t testing.TB) string {
	t.Helper()
	return r.listen(t, "api-ssl")
}

func (r *Router) listen(t testing.TB, service string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("routerostest: listen: %v", err)
	}
	return r.Serve(t, ln, service == "api-ssl")
}

// Serve answers on a listener the test opened itself (inside a network
// namespace, say): api-ssl when withTLS, else plain api. It returns the
// listener's address; the router is closed when the test ends.
func (r *Router) Serve(t testing.TB, ln net.Listener, withTLS bool) string {
	t.Helper()
	t.Cleanup(r.Close)
	if err := r.ServeListener(ln, withTLS); err != nil {
		t.Fatalf("routerostest: %v", err)
	}
	return ln.Addr().String()
}

// ServeListener is Serve outside a test (the demo's stand-in router): the
// caller closes the router.
func (r *Router) ServeListener(ln net.Listener, withTLS bool) error {
	service := "api"
	if withTLS {
		service = "api-ssl"
	}
	r.mu.Lock()
	select {
	case <-r.closed:
		r.mu.Unlock()
		ln.Close()
		return errors.New("listen on a closed router")
	default:
	}
	r.lns = append(r.lns, ln)
	r.wg.Add(1)
	r.mu.Unlock()
	go r.accept(ln, service)
	return nil
}

func (r *Router) accept(ln net.Listener, service string) {
	defer r.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		if !r.serviceAllows(service, c.RemoteAddr()) {
			c.Close()
			continue
		}
		if service == "api-ssl" {
			c = tls.Server(c, r.tlsConf)
		}
		r.mu.Lock()
		select {
		case <-r.closed:
			r.mu.Unlock()
			c.Close()
			return
		default:
		}
		r.conns[c] = struct{}{}
		r.wg.Add(1)
		r.mu.Unlock()
		go r.serve(c, service)
	}
}

// serviceAllows applies the service's address list (available-from on
// 7.24): a connection from elsewhere is closed at once, before any word
// [I: how a real router refuses it, RST or FIN, is not documented]. An
// empty list lets everyone in, as on a fresh router.
func (r *Router) serviceAllows(service string, remote net.Addr) bool {
	ta, ok := remote.(*net.TCPAddr)
	if !ok {
		return true
	}
	from := ta.AddrPort().Addr().Unmap()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, row := range r.st.tables[pathService].rows {
		if row.vals["name"] != service || row.vals["dynamic"] == "true" {
			continue
		}
		list := row.vals["address"] + row.vals["available-from"] // one of them exists
		if list == "" {
			return true
		}
		for _, item := range strings.Split(list, ",") {
			if p, err := parsePrefix(strings.TrimSpace(item)); err == nil && p.Contains(from) {
				return true
			}
		}
		return false
	}
	return true
}

// Close stops the listeners, drops every connection and waits for them.
func (r *Router) Close() {
	r.closeOnce.Do(func() {
		r.mu.Lock()
		close(r.closed)
		for _, ln := range r.lns {
			ln.Close()
		}
		for c := range r.conns {
			c.Close()
		}
		r.mu.Unlock()
		r.wg.Wait()
	})
}

// Commands returns every command word received, on every connection, in
// order: "/login", "/ip/address/print", "/ip/address/add", ...
func (r *Router) Commands() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.commands)
}

// FailNext makes the next command on the menu path ("/ip/address") with the
// command name ("add") fail with !trap =message=message (and !done) instead
// of running, as a router refusing a change mid-apply would.
func (r *Router) FailNext(path, command, message string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fails = append(r.fails, failure{path, command, message})
}

// takeFailure consumes a pending FailNext for the command.
func (r *Router) takeFailure(path, command string) (string, bool) {
	for i, f := range r.fails {
		if f.path == path && f.command == command {
			r.fails = slices.Delete(r.fails, i, i+1)
			return f.message, true
		}
	}
	return "", false
}

// Raw is bytes a router sends in place of a reply, for testing a client's
// reader against what no RouterOS sends: a length prefix declaring 4 GiB,
// a word trickled a few bytes at a time, a stream cut mid-word.
type Raw struct {
	// Chunks are written one at a time, Gap apart.
	Chunks [][]byte
	Gap    time.Duration
	// Hold keeps the connection open after the last chunk (until the
	// client hangs up, Hold passes or the router closes), so a client
	// cannot mistake the end of the stream for the end of the trouble.
	Hold time.Duration
}

// rawReply is a RawNext still to fire.
type rawReply struct {
	word string
	raw  Raw
}

// RawNext makes the router answer the next command word ("/ip/address/print",
// "/login") with raw's bytes instead of its reply; the connection is closed
// afterwards, as what follows such bytes cannot be read by either side.
func (r *Router) RawNext(word string, raw Raw) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.raws = append(r.raws, rawReply{word, raw})
}

// takeRaw consumes a pending RawNext for the command word.
func (r *Router) takeRaw(word string) (Raw, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, rr := range r.raws {
		if rr.word == word {
			r.raws = slices.Delete(r.raws, i, i+1)
			return rr.raw, true
		}
	}
	return Raw{}, false
}

// Hang makes the router stop answering, with connections left open: new
// connections are accepted and sentences read, but nothing is sent (no TLS
// handshake either) until Resume or Close.
func (r *Router) Hang() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.hung {
		r.hung, r.resume = true, make(chan struct{})
	}
}

// Resume undoes Hang; held commands are then answered.
func (r *Router) Resume() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.hung {
		r.hung = false
		close(r.resume)
	}
}

// waitIfHung blocks while the router hangs; false means it was closed.
func (r *Router) waitIfHung() bool {
	r.mu.Lock()
	hung, resume := r.hung, r.resume
	r.mu.Unlock()
	if !hung {
		return true
	}
	select {
	case <-resume:
		return true
	case <-r.closed:
		return false
	}
}

// Seed creates a row as if configured before the test, bypassing the
// checks a client's add gets: read-only properties (dynamic=true, a lease's
// status) may be set and uniqueness is not enforced. It returns the new
// .id; on a singleton menu (/system/identity) it sets the properties and
// returns "". It panics on an unknown path or property, a bug in the test.
func (r *Router) Seed(path string, props map[string]string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	m, ok := r.st.menus[path]
	if !ok {
		panic(fmt.Sprintf("routerostest: Seed: no menu %s", path))
	}
	vals := map[string]string{}
	for k, val := range props {
		p, ok := m.prop(k)
		if !ok {
			panic(fmt.Sprintf("routerostest: Seed: %s has no property %s in %s", path, k, r.verText))
		}
		if p.kind == kindBool {
			val = normBool(val)
		}
		vals[k] = val
	}
	if m.singleton {
		for k, val := range vals {
			r.st.tables[path].rows[0].vals[k] = val
		}
		return ""
	}
	if m.autoName != "" && vals[m.nameKey] == "" {
		vals[m.nameKey] = r.st.freeName(m)
	}
	if m.derive != nil {
		m.derive(r.st, vals)
	}
	return idString(r.st.insert(m, vals, 0).id)
}

// Rows returns the rows of a menu as print shows them (with .id), plus
// write-only values such as a user's password, so tests can check them.
func (r *Router) Rows(path string) []map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	m, ok := r.st.menus[path]
	if !ok {
		panic(fmt.Sprintf("routerostest: Rows: no menu %s", path))
	}
	var out []map[string]string
	for _, row := range r.st.rows(m) {
		vals := map[string]string{}
		for _, p := range r.st.view(m, row) {
			vals[p.key] = p.value
		}
		for _, p := range m.props {
			if val, ok := row.vals[p.name]; ok && p.writeOnly {
				vals[p.name] = val
			}
		}
		out = append(out, vals)
	}
	return out
}
