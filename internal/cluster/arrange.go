package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"time"
)

// The two ways Nomad jobs read Vault secrets.
const (
	// VaultToken is the token integration (Nomad < 1.10, seeds 000 and
	// 003): the servers hold a Vault token from the nomad-cluster token
	// role and derive task tokens for a job's vault { policies }.
	VaultToken = "token"
	// VaultWorkloadIdentity (Nomad >= 1.7): tasks log in to Vault's JWT
	// auth with their Nomad-signed identity under a job's vault { role }.
	VaultWorkloadIdentity = "workload_identity"
)

// Version is a Nomad release, as its servers report it.
type Version struct{ Major, Minor, Patch int }

var versionRE = regexp.MustCompile(`^v?(\d+)\.(\d+)\.(\d+)`)

// ParseVersion reads "1.6.1", "v1.11.3", "1.6.1-dev" or a build tag such
// as "1.6.1+ent"; what follows the three numbers is ignored.
func ParseVersion(s string) (Version, error) {
	m := versionRE.FindStringSubmatch(s)
	if m == nil {
		return Version{}, fmt.Errorf("nomad version %q is not MAJOR.MINOR.PATCH", s)
	}
	var v Version
	v.Major, _ = strconv.Atoi(m[1])
	v.Minor, _ = strconv.Atoi(m[2])
	v.Patch, _ = strconv.Atoi(m[3])
	return v, nil
}

func (v Version) String() string { return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch) }

// AtLeast reports whether v is major.minor or newer.
func (v Version) AtLeast(major, minor int) bool {
	return v.Major > major || v.Major == major && v.Minor >= minor
}

func (v Version) less(o Version) bool {
	if v.Major != o.Major {
		return v.Major < o.Major
	}
	if v.Minor != o.Minor {
		return v.Minor < o.Minor
	}
	return v.Patch < o.Patch
}

// Arrangement is how nodes join a cluster of one Nomad version and how the
// worker job reads Vault there.
type Arrangement struct {
	Version          Version
	VaultIntegration string // VaultToken or VaultWorkloadIdentity
	Introduction     bool   // nodes get a client introduction token
	Why              string // one line saying what was chosen and why, for doctor
}

// Arrange decides the arrangement for servers of version v. integration
// is the site's choice ("" decides by version: token below 1.7, workload
// identity from 1.7, where the token way is deprecated, and from 1.10,
// where it is gone); intro is the site's choice for introduction tokens
// (nil: wherever the servers have them, from 1.11). A choice the servers
// cannot honour is an error that names their version.
func Arrange(v Version, integration string, intro *bool) (Arrangement, error) {
	a := Arrangement{Version: v, VaultIntegration: integration}
	var why string
	switch integration {
	case "":
		if v.AtLeast(1, 7) {
			a.VaultIntegration = VaultWorkloadIdentity
			why = "workload identity for Vault (Nomad >= 1.7; the token integration is deprecated there and gone from 1.10)"
		} else {
			a.VaultIntegration = VaultToken
			why = "the token integration for Vault (Nomad < 1.7 has no workload identity for Vault)"
		}
	case VaultToken:
		if v.AtLeast(1, 10) {
			return a, fmt.Errorf("the Nomad servers run %s, which removed the token integration for Vault (gone in 1.10): set vault_integration = %q", v, VaultWorkloadIdentity)
		}
		why = "the token integration for Vault (as configured)"
	case VaultWorkloadIdentity:
		if !v.AtLeast(1, 7) {
			return a, fmt.Errorf("the Nomad servers run %s, which has no workload identity for Vault (from 1.7): set vault_integration = %q or upgrade Nomad", v, VaultToken)
		}
		why = "workload identity for Vault (as configured)"
	default:
		return a, fmt.Errorf("vault integration %q is not %q or %q", integration, VaultToken, VaultWorkloadIdentity)
	}
	have := v.AtLeast(1, 11)
	switch {
	case intro == nil && have:
		a.Introduction = true
		why += "; client introduction tokens (Nomad >= 1.11)"
	case intro == nil:
		why += "; no client introduction tokens (they arrived in Nomad 1.11)"
	case *intro && !have:
		return a, fmt.Errorf("the Nomad servers run %s, which has no client introduction tokens (from 1.11): remove introduction = true", v)
	case *intro:
		a.Introduction = true
		why += "; client introduction tokens (as configured)"
	default:
		why += "; no client introduction tokens (introduction = false)"
	}
	a.Why = "Nomad " + v.String() + ": " + why
	return a, nil
}

// versionTTL is how long a server version read is trusted: servers are
// upgraded rarely, and every join bundle would otherwise ask again.
const versionTTL = 5 * time.Minute

// ServerVersion is the Nomad version the servers run: the oldest build
// tag among the alive servers in /v1/agent/members (node:read), else the
// agent's own version from /v1/agent/self (agent:read). It is cached for
// a few minutes.
func (n *Nomad) ServerVersion(ctx context.Context) (Version, error) {
	n.mu.Lock()
	if !n.versionAt.IsZero() && time.Since(n.versionAt) < versionTTL {
		v := n.version
		n.mu.Unlock()
		return v, nil
	}
	n.mu.Unlock()
	v, err := n.readVersion(ctx)
	if err != nil {
		return v, err
	}
	n.mu.Lock()
	n.version, n.versionAt = v, time.Now()
	n.mu.Unlock()
	return v, nil
}

func (n *Nomad) readVersion(ctx context.Context) (Version, error) {
	var members struct {
		Members []struct {
			Status string
			Tags   map[string]string
		}
	}
	_, err := n.client.Raw().Query("/v1/agent/members", &members, n.query(ctx))
	if err == nil {
		var oldest *Version
		for _, m := range members.Members {
			if m.Status != "alive" || m.Tags["role"] != "nomad" {
				continue
			}
			v, err := ParseVersion(m.Tags["build"])
			if err != nil {
				return Version{}, fmt.Errorf("nomad at %s: a server reports build %q: %w", n.addr, m.Tags["build"], err)
			}
			if oldest == nil || v.less(*oldest) {
				oldest = &v
			}
		}
		if oldest != nil {
			return *oldest, nil
		}
	}
	// A client agent, or a token without node:read: the agent's own.
	var self struct {
		Config struct{ Version struct{ Version string } } `json:"config"`
	}
	if _, err2 := n.client.Raw().Query("/v1/agent/self", &self, n.query(ctx)); err2 != nil {
		if err == nil {
			err = err2
		}
		return Version{}, n.fail("reading the servers' version (/v1/agent/members needs node:read)", err)
	}
	v, err := ParseVersion(self.Config.Version.Version)
	if err != nil {
		return Version{}, fmt.Errorf("nomad at %s: %w", n.addr, err)
	}
	return v, nil
}

// knownVersion is the cached server version, if one was read.
func (n *Nomad) knownVersion() (Version, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.version, !n.versionAt.IsZero()
}

// unsupported is what a 404 from servers that predate an API becomes: one
// line naming their version, not Nomad's HTTP text.
type unsupported struct {
	addr, what string
	version    Version
	err        error
}

func (e *unsupported) Error() string {
	return fmt.Sprintf("nomad at %s: %s: the servers run Nomad %s, which does not have this API (HTTP 404)", e.addr, e.what, e.version)
}

func (e *unsupported) Unwrap() error { return e.err }

// notFound turns a 404 into an unsupported error when the servers'
// version is known (or can be read now); it returns nil otherwise.
func (n *Nomad) notFound(ctx context.Context, what string, err error) error {
	if nomadStatus(err) != http.StatusNotFound {
		return nil
	}
	v, ok := n.knownVersion()
	if !ok {
		var verr error
		if v, verr = n.ServerVersion(ctx); verr != nil {
			return nil
		}
	}
	return &unsupported{addr: n.addr, what: what, version: v, err: err}
}

// ErrUnsupported is matched by errors.Is for a request the servers'
// version does not have.
var ErrUnsupported = errors.New("not supported by this Nomad version")

func (e *unsupported) Is(target error) bool { return target == ErrUnsupported }
