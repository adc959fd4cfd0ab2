package inventory

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/bootstrapd/bootstrapd/internal/bmc"
)

// BMC is a node's baseboard management controller: where it is and, when
// not the site's default, where its credentials are. Both are references,
// never secrets, so the node record, its history and the API can show them.
type BMC struct {
	// URL is ipmi://host[:port] or redfish://host[:port][/redfish/v1/Systems/<id>].
	URL string `json:"url"`
	// Credentials is "" (the site's bmc block), file:/abs/path (a 0600
	// file holding user:password) or vault:<mount>/<path> (a KV v2 secret
	// with user and password).
	Credentials string `json:"credentials,omitempty"`
}

// String is the BMC as events name it.
func (b BMC) String() string {
	if b.Credentials == "" {
		return b.URL
	}
	return b.URL + " (credentials " + b.Credentials + ")"
}

// SchemeRedfishHTTP is Redfish over plain HTTP, which sends the password
// in the clear: the daemon refuses it unless the site's bmc block says
// insecure_http = true.
const SchemeRedfishHTTP = "redfish+http"

// ParseBMC checks a BMC's URL (bmc.ParseTarget: ipmi://, redfish:// or
// redfish+http://, host, port, a Redfish system path) and its credential
// reference, and returns them in canonical form. A URL that carries a user
// or password is refused: it was typed on a command line, which every
// user of the machine can read.
func ParseBMC(rawURL, creds string) (BMC, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return BMC{}, fmt.Errorf("BMC %q is not a URL like ipmi://10.0.9.11 or redfish://10.0.9.11", rawURL)
	}
	if u.User != nil {
		return BMC{}, fmt.Errorf("BMC URL %s://%s carries credentials: never put them on a command line (every user can read it in ps); "+
			"give the URL without them, and the credentials by reference: the site's bmc block, or -bmc-credentials file:/etc/bootstrapd/bmc/<node> or vault:kv/bmc/<node>", u.Scheme, u.Host)
	}
	t, err := bmc.ParseTarget(u)
	if err != nil {
		return BMC{}, err
	}
	if err := checkCredentialRef(creds); err != nil {
		return BMC{}, err
	}
	return BMC{URL: (&url.URL{Scheme: t.Scheme, Host: u.Host, Path: t.SystemPath}).String(), Credentials: creds}, nil
}

// Credential reference kinds.
const (
	CredsFile  = "file:"
	CredsVault = "vault:"
)

// checkCredentialRef says why ref is not a credential reference, or nil.
func checkCredentialRef(ref string) error {
	switch {
	case ref == "":
		return nil
	case strings.HasPrefix(ref, CredsFile):
		p := strings.TrimPrefix(ref, CredsFile)
		if !filepath.IsAbs(p) || filepath.Clean(p) != p {
			return fmt.Errorf("BMC credentials %q: the file is an absolute path on the daemon's machine, like file:/etc/bootstrapd/bmc/n7", ref)
		}
		return nil
	case strings.HasPrefix(ref, CredsVault):
		p := strings.TrimPrefix(ref, CredsVault)
		mount, rest, ok := strings.Cut(p, "/")
		if !ok || mount == "" || rest == "" || strings.Contains(p, "//") || strings.Contains(p, "..") || strings.HasSuffix(p, "/") ||
			strings.TrimLeft(p, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-/") != "" {
			return fmt.Errorf("BMC credentials %q: a Vault reference is vault:<kv v2 mount>/<path>, like vault:kv/bmc/n7", ref)
		}
		return nil
	}
	if strings.Contains(ref, ":") && !strings.Contains(ref, "/") {
		// user:password, typed where a reference goes: say so without
		// repeating it.
		return fmt.Errorf("BMC credentials are a reference, never the password itself (argv is public): file:/etc/bootstrapd/bmc/<node> or vault:kv/bmc/<node>")
	}
	return fmt.Errorf("BMC credentials %q are not file:/path or vault:<mount>/<path>", ref)
}

// BMCHost is the host (and port) of a BMC URL, for messages.
func BMCHost(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return rawURL
	}
	if h, p, err := net.SplitHostPort(u.Host); err == nil {
		return net.JoinHostPort(h, p)
	}
	return u.Host
}

// SetBMC gives a node a BMC, changes it, or (nil) removes it. It takes
// effect at the next power action.
func (inv *Inventory) SetBMC(ctx context.Context, ref string, b *BMC, actor string) (Node, error) {
	if b != nil {
		pb, err := ParseBMC(b.URL, b.Credentials)
		if err != nil {
			return Node{}, err
		}
		b = &pb
	}
	cause := "bmc removed"
	if b != nil {
		cause = "bmc " + b.String()
	}
	next, err := inv.setting(ref, " (enroll -bmc gives it its BMC)", actor, func(n *Node) string {
		n.BMC = b
		return cause
	})
	if err == nil {
		inv.log.InfoContext(ctx, "node bmc", "mac", next.MAC, "hostname", next.Hostname, "bmc", cause)
	}
	return next, err
}

// InstallRetrier retries an install that missed its deadline (by a power
// cycle, through the node's BMC) instead of failing the node.
type InstallRetrier interface {
	// RetryWindow says whether n's missed install is retried, and how long
	// the retry has to start the installer and finish. It is asked under
	// the inventory's lock, which DHCP replies take: it must be quick and
	// must not call the inventory.
	RetryWindow(n Node) (time.Duration, bool)
	// Retry starts the retry recorded on n. It is called outside the lock
	// and must not block: a BMC can hang.
	Retry(ctx context.Context, n Node)
}

// retry sends n, whose install deadline has passed, round again: back to
// enrolled (a fresh install token and join bundle, as a reinstall) with a
// new deadline, one more retry counted. It reports whether it did. Callers
// hold mu.
func (inv *Inventory) retry(ctx context.Context, n *Node, now time.Time) (Node, bool) {
	if inv.Retrier == nil || (n.State != Installing && n.State != Enrolled) {
		return Node{}, false
	}
	window, ok := inv.Retrier.RetryWindow(n.clone())
	if !ok || window <= 0 {
		return Node{}, false
	}
	next := n.clone()
	next.InstallRetries++
	cause := fmt.Sprintf("install timed out; retry %d: power cycle and PXE boot", next.InstallRetries)
	if n.State == Enrolled {
		// The last retry never reached the installer.
		cause = fmt.Sprintf("installer not booted in time; retry %d: power cycle and PXE boot", next.InstallRetries)
		next.History = append(next.History, Event{At: now, Cause: cause, Actor: "bootstrapd"})
	} else if err := next.move(now, Enrolled, cause, "bootstrapd"); err != nil {
		return Node{}, false
	}
	next.Deadline = now.Add(window)
	if err := inv.save(&next); err != nil {
		inv.log.ErrorContext(ctx, "record an install retry", "mac", n.MAC, "err", err)
		return Node{}, false
	}
	inv.log.WarnContext(ctx, "install retried", "mac", n.MAC, "hostname", n.Hostname, "retry", next.InstallRetries)
	return next.clone(), true
}
