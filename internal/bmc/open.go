package bmc

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Errors that say what kind of failure a BMC error is. Every error Open
// and the BMC methods return wraps one of them (or ErrBootUnsupported)
// besides the cause, so a caller can tell a wrong password from a BMC
// that does not answer without reading the words.
var (
	ErrAuth        = errors.New("the BMC refused the user name or password")
	ErrUnreachable = errors.New("the BMC cannot be reached")
	ErrTimeout     = errors.New("the BMC did not answer in time")
	ErrCipherSuite = errors.New("the BMC offers no IPMI cipher suite bootstrapd accepts (17 or 3)")
	ErrProtocol    = errors.New("the BMC answered with something bootstrapd cannot use")
	ErrCertificate = errors.New("the BMC's certificate is not the one trusted")
	ErrSettings    = errors.New("the BMC settings are incomplete")
)

// DefaultTimeout bounds each call when Options.Timeout is zero.
const DefaultTimeout = 10 * time.Second

// Options say how to reach and trust a BMC. The zero value is usable for
// IPMI; Redfish over HTTPS needs RootCAs or Fingerprint.
type Options struct {
	// RootCAs verifies a Redfish BMC's certificate chain, or Fingerprint
	// pins its certificate: the SHA-256 of its DER bytes in hex (colons
	// allowed), as the router block's fingerprint. BMCs ship self-signed
	// certificates, so a pin is the usual choice.
	RootCAs     *x509.CertPool
	Fingerprint string
	// Timeout bounds every call (Open, each method, Close): a BMC that
	// stops answering fails the call instead of holding it. Zero means
	// DefaultTimeout.
	Timeout time.Duration
	// Log receives one line per action with the BMC's answer; never a
	// password. Nil discards.
	Log *slog.Logger
	// Dial reaches the BMC (UDP for IPMI, TCP for Redfish). Nil means a
	// plain net.Dialer; tests pass one that dials inside a network
	// namespace.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

func (o Options) timeout() time.Duration {
	if o.Timeout <= 0 {
		return DefaultTimeout
	}
	return o.Timeout
}

func (o Options) logger() *slog.Logger {
	if o.Log == nil {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return o.Log
}

func (o Options) dialer() func(ctx context.Context, network, addr string) (net.Conn, error) {
	if o.Dial != nil {
		return o.Dial
	}
	var d net.Dialer
	return d.DialContext
}

// Target is a parsed -bmc URL: which protocol, where, and (Redfish) which
// system, if the URL names one.
type Target struct {
	Scheme string // "ipmi", "redfish" or "redfish+http"
	Host   string // host name or address, without brackets
	Port   int
	// SystemPath is the Redfish ComputerSystem's path
	// (/redfish/v1/Systems/<id>), empty to discover it.
	SystemPath string
}

// Name is how errors and logs name the BMC: scheme://host:port, never
// credentials.
func (t Target) Name() string {
	return t.Scheme + "://" + net.JoinHostPort(t.Host, strconv.Itoa(t.Port))
}

// Address is host:port.
func (t Target) Address() string { return net.JoinHostPort(t.Host, strconv.Itoa(t.Port)) }

// systemsPrefix is where Redfish keeps ComputerSystems (DSP0266's fixed
// URIs).
const systemsPrefix = "/redfish/v1/Systems/"

// ParseTarget checks a -bmc URL: ipmi://host[:port] (623 by default),
// redfish://host[:port][/redfish/v1/Systems/<id>] (HTTPS, 443) or
// redfish+http://... (plain HTTP, 80, for labs that ask for it). It
// refuses credentials in the URL (they would sit in argv and in the
// inventory), queries, fragments and other paths, saying what to write
// instead.
func ParseTarget(u *url.URL) (Target, error) {
	if u == nil {
		return Target{}, errors.New("no BMC URL: want ipmi://host or redfish://host")
	}
	if u.User != nil {
		// Name nothing of the userinfo: it may hold a password.
		return Target{}, fmt.Errorf("BMC %s://%s: the URL carries credentials; give them in the site's bmc block (user, password_file) instead", u.Scheme, u.Host)
	}
	t := Target{Scheme: strings.ToLower(u.Scheme), Host: u.Hostname()}
	var port int
	switch t.Scheme {
	case "ipmi":
		port = 623
	case "redfish":
		port = 443
	case "redfish+http":
		port = 80
	default:
		return Target{}, fmt.Errorf("BMC URL %q: scheme %q is not ipmi, redfish or redfish+http", u.Redacted(), u.Scheme)
	}
	if t.Host == "" || u.Opaque != "" {
		return Target{}, fmt.Errorf("BMC URL %q: no host; write %s://HOST[:PORT]", u.Redacted(), t.Scheme)
	}
	if !validHost(t.Host) {
		return Target{}, fmt.Errorf("BMC URL %q: host %q is neither an IP address nor a DNS name", u.Redacted(), t.Host)
	}
	if p := u.Port(); p != "" {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil || n == 0 {
			return Target{}, fmt.Errorf("BMC URL %q: port %q is not a number from 1 to 65535", u.Redacted(), p)
		}
		port = int(n)
	}
	t.Port = port
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return Target{}, fmt.Errorf("BMC URL %q: no query or fragment allowed", u.Redacted())
	}
	path := strings.TrimSuffix(u.Path, "/")
	switch {
	case path == "":
	case t.Scheme == "ipmi":
		return Target{}, fmt.Errorf("BMC URL %q: an IPMI URL has no path; write ipmi://HOST[:PORT]", u.Redacted())
	case strings.HasPrefix(path, systemsPrefix) && validID(path[len(systemsPrefix):]):
		t.SystemPath = path
	default:
		return Target{}, fmt.Errorf("BMC URL %q: the path must be %s<id> (one system) or nothing (discover it)", u.Redacted(), systemsPrefix)
	}
	return t, nil
}

// validHost reports whether h is an IP address or a DNS name: url.Parse
// lets through bracketed hosts that are neither ("[:]"), which no dialer
// reaches and whose URL does not parse back.
func validHost(h string) bool {
	if _, err := netip.ParseAddr(h); err == nil {
		return true
	}
	if len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return false
			}
		}
	}
	return true
}

// validID reports whether s can be one path segment of a Redfish URI.
func validID(s string) bool {
	return s != "" && s != "." && s != ".." && !strings.ContainsAny(s, "/?#%\\ \t\r\n")
}

// Open logs in to the BMC u names and returns it ready for calls. The
// caller closes it (which ends a Redfish session). Errors name the BMC and
// say what to fix; they never hold the password.
func Open(ctx context.Context, u *url.URL, c Credentials, o Options) (BMC, error) {
	t, err := ParseTarget(u)
	if err != nil {
		return nil, err
	}
	switch t.Scheme {
	case "ipmi":
		return openIPMI(ctx, t, c, o)
	default:
		return openRedfish(ctx, t, c, o)
	}
}

// failure builds the error every path returns: the BMC's name, what was
// being done, the kind (one of the Err values above), the cause, and what
// to do about it.
func failure(t Target, op string, kind, cause error, fix string) error {
	msg := fmt.Sprintf("BMC %s: %s: %%w", t.Name(), op)
	args := []any{kind}
	if cause != nil {
		msg += ": %w"
		args = append(args, cause)
	}
	if fix != "" {
		msg += " (" + fix + ")"
	}
	return fmt.Errorf(msg, args...)
}

// classify picks the kind of a transport failure: a timeout, or a BMC
// that cannot be reached (refused, no route, a name that does not
// resolve).
func classify(err error) error {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return ErrTimeout
	default:
		return ErrUnreachable
	}
}
