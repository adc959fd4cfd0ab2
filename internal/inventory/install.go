package inventory

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"
	"unicode"
)

// Install tokens are the only credential of a node's installer: the node's
// script carries one, and with it the installer fetches its config, claims
// its join bundle once and reports. What binds them to the machine that is
// installing (docs/threat-model.md):
//
//   - a token is handed only to one address (Node.TokenAddr) and accepted
//     only from there;
//   - a node gets one token, and one join bundle, per install: after the
//     bundle is out no new token is minted (reinstall starts afresh);
//   - a second claim, a token from another address, or a script asked for
//     after the bundle is out is an Alert on the node and an event.

// ErrClaimedTwice is wrapped by ClaimJoin and JoinTarget the first time a
// bundle already handed out is claimed again: what it held must be made
// useless, since someone other than the node may hold it. Later attempts
// get ErrConflict alone.
var ErrClaimedTwice = errors.New("join bundle claimed twice")

// errElsewhere is a token presented from an address it was not handed to:
// already an alert, so not also a refused report.
var errElsewhere = errors.New("not from the address the token was handed to")

// maxStatus bounds an installer's progress text: it is stored with every
// report and printed by the CLI.
const maxStatus = 200

// StartInstall is called when a node fetches its install script from
// address from. It mints the one-time token the installer uses to report
// back, bound to from, and moves the node to installing. A node that
// reboots mid-install gets a fresh token (the old one stops working) until
// its join bundle has been claimed; after that it needs a reinstall, and
// asking is an alert.
func (inv *Inventory) StartInstall(ctx context.Context, mac string, from netip.Addr, ttl time.Duration) (_ Node, _ string, err error) {
	raw := make([]byte, 32)
	rand.Read(raw)
	token := base64.RawURLEncoding.EncodeToString(raw)
	sum := sha256.Sum256([]byte(token))

	inv.mu.Lock()
	defer inv.unlock(&err)
	n := inv.nodes[mac]
	if n == nil {
		return Node{}, "", fmt.Errorf("%w: %s", ErrNotFound, mac)
	}
	now := inv.now()
	if n.State == Installing && !n.JoinClaimed.IsZero() {
		inv.alert(ctx, n, fmt.Sprintf("install script asked for from %s after the join bundle was handed out", from))
		return Node{}, "", fmt.Errorf("%w: the join bundle of %s was handed out at %s; to install it again: bootstrapd reinstall %s",
			ErrConflict, n.Hostname, n.JoinClaimed.Format(time.RFC3339), n.Hostname)
	}
	next := n.clone()
	if next.State == Installing {
		next.History = append(next.History, Event{At: now, Cause: "install restarted (node booted the installer again)"})
	} else if err := next.move(now, Installing, "booted the installer", "node"); err != nil {
		return Node{}, "", err
	}
	next.TokenHash, next.TokenExpires, next.TokenAddr = sum[:], now.Add(ttl), from
	next.Deadline = next.TokenExpires
	if err := inv.save(&next); err != nil {
		return Node{}, "", err
	}
	return next.clone(), token, nil
}

// holder checks a token presented from address from: the node whose
// current, unexpired token it is, asked from the address it was handed to.
// A token from elsewhere is an alert: someone has it who should not.
// Callers hold mu.
func (inv *Inventory) holder(ctx context.Context, token string, from netip.Addr) (*Node, error) {
	n := inv.tokenHolder(token)
	switch {
	case n == nil || inv.now().After(n.TokenExpires):
		return nil, ErrToken
	case n.TokenAddr.IsValid() && from != n.TokenAddr:
		inv.alert(ctx, n, fmt.Sprintf("install token presented from %s; it was handed to %s", from, n.TokenAddr))
		return nil, fmt.Errorf("%w: %w", ErrToken, errElsewhere)
	}
	return n, nil
}

// NodeByToken returns the installing node whose current install token this
// is, asked from from, without using the token up: the installer fetches
// its files with it before it reports.
func (inv *Inventory) NodeByToken(ctx context.Context, token string, from netip.Addr) (_ Node, err error) {
	inv.mu.Lock()
	defer inv.unlock(&err)
	n, err := inv.holder(ctx, token, from)
	if err != nil {
		return Node{}, err
	}
	return n.clone(), nil
}

// Report is the installer calling back with its token from address from.
// The token must be the current one of a node that is installing, from
// the address it was handed to, and the MAC the caller gives (if any) must
// be that node's. status is one line of progress ("installing: packages"),
// "installed" (or empty) or "failed: why"; it is cut to maxStatus
// characters and stripped of control characters, since the CLI prints it.
func (inv *Inventory) Report(ctx context.Context, token string, from netip.Addr, mac, status string) (_ Node, err error) {
	inv.mu.Lock()
	defer inv.unlock(&err)
	n, err := inv.holder(ctx, token, from)
	if err != nil {
		if o := inv.nodes[mac]; o != nil && !errors.Is(err, errElsewhere) && o.State != Discovered {
			inv.note(o, Event{At: inv.now(), Cause: "refused an install report: unknown, used or expired token"})
		}
		return Node{}, err
	}
	now := inv.now()
	if mac != "" && mac != n.MAC {
		inv.log.WarnContext(ctx, "install report refused: token belongs to another node", "mac", n.MAC, "claimed_mac", mac)
		inv.note(n, Event{At: now, Cause: "refused an install report claiming another node's MAC"})
		return Node{}, ErrToken
	}
	status = cleanText(status, maxStatus)
	next := n.clone()
	switch {
	case status == "" || status == string(Installed):
		err = next.move(now, Installed, "installer reported success", "node")
	case strings.HasPrefix(status, "failed"):
		err = next.move(now, Failed, strings.TrimSpace(strings.TrimPrefix(status, "failed:")), "node")
	default:
		next.History = append(next.History, Event{At: now, Cause: status, Actor: "node"})
	}
	if err != nil {
		return Node{}, err
	}
	if err := inv.save(&next); err != nil {
		return Node{}, err
	}
	inv.log.InfoContext(ctx, "install report", "mac", n.MAC, "hostname", n.Hostname, "status", status, "state", next.State)
	return next.clone(), nil
}

// cleanText makes text from the network safe to store and print: one line,
// no control characters (terminal escapes included), at most max runes.
func cleanText(s string, max int) string {
	s = strings.Map(func(r rune) rune {
		switch {
		case r == '\t' || r == '\n' || r == '\r':
			return ' '
		case unicode.IsControl(r) || r == unicode.ReplacementChar || unicode.Is(unicode.Cf, r):
			return -1
		}
		return r
	}, s)
	if r := []rune(s); len(r) > max {
		s = string(r[:max]) + "..."
	}
	return strings.TrimSpace(s)
}

// JoinTarget is the node a join bundle would be for, checked as ClaimJoin
// will check it, so credentials are minted only for a claim that can
// succeed. Like ClaimJoin, it returns the node with ErrClaimedTwice.
func (inv *Inventory) JoinTarget(ctx context.Context, token string, from netip.Addr) (_ Node, err error) {
	inv.mu.Lock()
	defer inv.unlock(&err)
	cur, err := inv.claimable(ctx, token, from)
	if cur == nil {
		return Node{}, err
	}
	return cur.clone(), err
}

// claimable checks a claim: the token as holder does, and a bundle not yet
// handed out. A second claim is an alert, and the first one comes back as
// ErrClaimedTwice (with the node) so the caller voids what the bundle
// held. Callers hold mu.
func (inv *Inventory) claimable(ctx context.Context, token string, from netip.Addr) (*Node, error) {
	cur, err := inv.holder(ctx, token, from)
	if err != nil {
		return nil, err
	}
	if !cur.JoinClaimed.IsZero() {
		first := !strings.HasPrefix(cur.Alert, "join bundle claimed twice")
		inv.alert(ctx, cur, fmt.Sprintf("join bundle claimed twice (again from %s); what it held is revoked", from))
		err := fmt.Errorf("%w: the join bundle of %s was already claimed at %s", ErrConflict, cur.Hostname, cur.JoinClaimed.Format(time.RFC3339))
		if first {
			err = fmt.Errorf("%w (%w)", err, ErrClaimedTwice)
			// Whoever has the token may not be the node: it opens nothing
			// more. The install fails at its deadline unless reinstalled.
			void := inv.nodes[cur.MAC].clone()
			void.TokenHash, void.TokenExpires, void.TokenAddr = nil, time.Time{}, netip.Addr{}
			inv.noteOn(&void, Event{At: inv.now(), Cause: "install token voided", Actor: "bootstrapd"})
		}
		return inv.nodes[cur.MAC], err
	}
	return cur, nil
}

// ClaimJoin hands out a node's join bundle, once per install: the token
// must be the node's current one, from its address, and the bundle must
// not have been claimed already (it carries credentials). accessor is that
// of the Vault token in the bundle, if any, recorded in the same write.
// The first repeated claim fails with ErrClaimedTwice and returns the node,
// whose recorded accessor the caller revokes.
func (inv *Inventory) ClaimJoin(ctx context.Context, token string, from netip.Addr, accessor string) (_ Node, err error) {
	inv.mu.Lock()
	defer inv.unlock(&err)
	cur, err := inv.claimable(ctx, token, from)
	if err != nil {
		if cur != nil {
			return cur.clone(), err
		}
		return Node{}, err
	}
	next := cur.clone()
	next.JoinClaimed = inv.now()
	if accessor != "" {
		next.VaultAccessor = accessor
	}
	next.History = append(next.History, Event{At: next.JoinClaimed, Cause: "join bundle claimed", Actor: "node"})
	if err := inv.save(&next); err != nil {
		return Node{}, err
	}
	inv.log.InfoContext(ctx, "join bundle claimed", "mac", next.MAC, "hostname", next.Hostname)
	return next.clone(), nil
}

// alert records a sign of someone else using n's install: on the node
// (Alert, shown by `bootstrapd nodes`), as an event (repeats counted, not
// appended), and in the log. Callers hold mu.
func (inv *Inventory) alert(ctx context.Context, n *Node, what string) {
	inv.log.WarnContext(ctx, "ALERT: "+what, "mac", n.MAC, "hostname", n.Hostname)
	next := n.clone()
	next.Alert = what
	inv.noteOn(&next, Event{At: inv.now(), Cause: "ALERT: " + alertKind(what), Actor: "network"})
}

// alertKind is the part of an alert that names what happened, without the
// addresses: repeats of one kind are one event with a count.
func alertKind(what string) string {
	for _, sep := range []string{" (", " from "} {
		if i := strings.Index(what, sep); i > 0 {
			return what[:i]
		}
	}
	return what
}

// tokenHolder is the node whose current install token this is, or nil:
// looked up by the token's hash (only hashes are stored), then compared in
// constant time. Callers hold mu.
func (inv *Inventory) tokenHolder(token string) *Node {
	sum := sha256.Sum256([]byte(token))
	n := inv.nodes[inv.tokens[sum]]
	if n == nil || len(n.TokenHash) == 0 || subtle.ConstantTimeCompare(n.TokenHash, sum[:]) != 1 {
		return nil
	}
	return n
}
