package inventory

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestTokenBoundToAddress: a token handed to one address is refused from
// any other, for every use (config, report, bundle), and each such use is
// an alert on the node; from its own address it works.
func TestTokenBoundToAddress(t *testing.T) {
	ti := newTestInv(t, testPool)
	mac := "52:54:00:00:00:01"
	ti.enroll(t, EnrollRequest{MAC: mac, Hostname: "n1"})
	node, thief := addr("10.0.0.100"), addr("10.0.0.66")
	_, tok, err := ti.StartInstall(ctx, mac, node, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for name, use := range map[string]func() error{
		"config": func() error { _, err := ti.NodeByToken(ctx, tok, thief); return err },
		"report": func() error { _, err := ti.Report(ctx, tok, thief, mac, "installed"); return err },
		"mint":   func() error { _, err := ti.JoinTarget(ctx, tok, thief); return err },
		"claim":  func() error { _, err := ti.ClaimJoin(ctx, tok, thief, "acc"); return err },
	} {
		if err := use(); !errors.Is(err, ErrToken) {
			t.Errorf("%s from another address: %v, want ErrToken", name, err)
		}
	}
	n := ti.mustNode(t, mac)
	if !strings.Contains(n.Alert, "presented from 10.0.0.66") || !n.JoinClaimed.IsZero() || n.State != Installing {
		t.Fatalf("after the thief: alert %q, claimed %v, state %s", n.Alert, n.JoinClaimed, n.State)
	}
	// Four refused uses are one event, counted.
	last := n.History[len(n.History)-1]
	if last.Cause != "ALERT: install token presented" || last.Count != 4 {
		t.Errorf("alert event %+v", last)
	}
	if _, err := ti.ClaimJoin(ctx, tok, node, "acc"); err != nil {
		t.Fatalf("claim from the node's own address: %v", err)
	}
	if _, err := ti.Report(ctx, tok, node, mac, "installed"); err != nil {
		t.Fatalf("report from the node's own address: %v", err)
	}
}

// TestOneBundlePerInstall: once the bundle is out, a new script (a node
// rebooting mid-install, or someone asking with its MAC) mints no token
// and reopens nothing; it is an alert. A second claim is an alert and,
// the first time, ErrClaimedTwice with the node, so the caller revokes its
// accessor. Reinstall clears the alert and starts afresh.
func TestOneBundlePerInstall(t *testing.T) {
	ti := newTestInv(t, testPool)
	mac := "52:54:00:00:00:01"
	ti.enroll(t, EnrollRequest{MAC: mac, Hostname: "n1"})
	tok := ti.install(t, mac, time.Hour)
	if _, err := ti.ClaimJoin(ctx, tok, anywhere, "acc-1"); err != nil {
		t.Fatal(err)
	}
	if _, tok2, err := ti.StartInstall(ctx, mac, anywhere, time.Hour); !errors.Is(err, ErrConflict) || tok2 != "" || !strings.Contains(err.Error(), "bootstrapd reinstall n1") {
		t.Fatalf("a new token after the bundle was out: %q, %v", tok2, err)
	}
	if n := ti.mustNode(t, mac); n.JoinClaimed.IsZero() || !strings.Contains(n.Alert, "after the join bundle was handed out") {
		t.Fatalf("after the refused script: claimed %v, alert %q", n.JoinClaimed, n.Alert)
	}
	n, err := ti.ClaimJoin(ctx, tok, anywhere, "acc-2")
	if !errors.Is(err, ErrClaimedTwice) || n.VaultAccessor != "acc-1" {
		t.Fatalf("second claim: %v, node accessor %q; want ErrClaimedTwice and the first bundle's accessor", err, n.VaultAccessor)
	}
	if _, err := ti.JoinTarget(ctx, tok, anywhere); !errors.Is(err, ErrToken) {
		t.Fatalf("third attempt: %v, want ErrToken (the install token was voided with the bundle)", err)
	}
	if _, err := ti.Report(ctx, tok, anywhere, mac, "installed"); !errors.Is(err, ErrToken) {
		t.Fatalf("a report with the voided token: %v", err)
	}
	if a := ti.mustNode(t, mac).Alert; !strings.HasPrefix(a, "join bundle claimed twice") {
		t.Errorf("alert %q", a)
	}
	if _, err := ti.Reinstall(ctx, mac, "op"); err != nil {
		t.Fatal(err)
	}
	if n := ti.mustNode(t, mac); n.Alert != "" || !n.JoinClaimed.IsZero() {
		t.Errorf("after reinstall: alert %q, claimed %v", n.Alert, n.JoinClaimed)
	}
	tok3 := ti.install(t, mac, time.Hour)
	if _, err := ti.ClaimJoin(ctx, tok3, anywhere, "acc-3"); err != nil {
		t.Errorf("claim after reinstall: %v", err)
	}
}

// TestTokenIndexSurvivesRestart: tokens are found by their hash's index,
// which is rebuilt from the store; a token replaced by a newer one is gone
// from it.
func TestTokenIndexSurvivesRestart(t *testing.T) {
	ti := newTestInv(t, testPool)
	mac := "52:54:00:00:00:01"
	old := ti.install(t, mac, time.Hour)
	tok := ti.install(t, mac, time.Hour) // the node rebooted before its claim
	ti = ti.reopen(t, testPool)
	if _, err := ti.NodeByToken(ctx, tok, anywhere); err != nil {
		t.Errorf("current token after a restart: %v", err)
	}
	if _, err := ti.NodeByToken(ctx, old, anywhere); !errors.Is(err, ErrToken) {
		t.Errorf("replaced token: %v", err)
	}
	if len(ti.tokens) != 1 {
		t.Errorf("token index holds %d entries, want 1", len(ti.tokens))
	}
}

func TestStatusTextCleaned(t *testing.T) {
	ti := newTestInv(t, testPool)
	mac := "52:54:00:00:00:01"
	tok := ti.install(t, mac, time.Hour)
	n, err := ti.Report(ctx, tok, anywhere, mac, "installing: \x1b]0;pwned\x07\x1b[31mred\x1b[0m\r\nfake line"+strings.Repeat("x", 70<<10))
	if err != nil {
		t.Fatal(err)
	}
	got := n.History[len(n.History)-1].Cause
	if strings.ContainsAny(got, "\x1b\x07\r\n") || len([]rune(got)) > maxStatus+3 || !strings.HasPrefix(got, "installing: ]0;pwned[31mred[0m  fake line") {
		t.Errorf("stored status %q (%d runes)", got[:min(len(got), 80)], len([]rune(got)))
	}
}

func TestEnrollRefusesNetworkAndBroadcast(t *testing.T) {
	ti := newTestInv(t, testPool) // 10.0.0.0/24
	for _, ip := range []string{"10.0.0.0", "10.0.0.255"} {
		if _, err := ti.Enroll(ctx, EnrollRequest{MAC: "52:54:00:00:00:09", IP: addr(ip)}); err == nil || !strings.Contains(err.Error(), "network or broadcast") {
			t.Errorf("enroll at %s: %v", ip, err)
		}
	}
	if _, err := ti.Enroll(ctx, EnrollRequest{MAC: "52:54:00:00:00:09", IP: addr("10.0.0.254")}); err != nil {
		t.Errorf("enroll at a host address: %v", err)
	}
}
