package inventory

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"
)

func TestEnrollMACNotations(t *testing.T) {
	for _, in := range []string{"52:54:00:AA:BB:CC", "52-54-00-aa-bb-cc", "5254.00aa.bbcc", "525400aabbcc"} {
		t.Run(in, func(t *testing.T) {
			ti := newTestInv(t, testPool)
			n := ti.enroll(t, EnrollRequest{MAC: in, Profile: "void"})
			const want = "52:54:00:aa:bb:cc"
			if n.MAC != want {
				t.Fatalf("MAC = %q, want %q", n.MAC, want)
			}
			if _, ok := ti.Node(want); !ok {
				t.Fatalf("node not stored under %s", want)
			}
			if len(ti.Nodes()) != 1 {
				t.Fatalf("%d nodes, want 1", len(ti.Nodes()))
			}
			// Every notation finds it again.
			for _, ref := range []string{"52:54:00:aa:bb:cc", "52-54-00-AA-BB-CC", "5254.00aa.bbcc", n.Hostname} {
				if f, err := ti.Find(ref); err != nil || f.MAC != want {
					t.Errorf("Find(%q) = %v, %v", ref, f.MAC, err)
				}
			}
		})
	}
}

func TestEnrollRefusals(t *testing.T) {
	const (
		macA = "52:54:00:00:00:0a"
		macB = "52:54:00:00:00:0b"
	)
	for _, tc := range []struct {
		name string
		req  EnrollRequest
		want []string // substrings of the error
		is   error
	}{
		{"invalid MAC", EnrollRequest{MAC: "52:54:00:aa:bb"}, []string{"not an Ethernet MAC"}, nil},
		{"MAC that is not hex", EnrollRequest{MAC: "web1"}, []string{"not an Ethernet MAC"}, nil},
		{"same MAC again", EnrollRequest{MAC: "52-54-00-00-00-0A"}, []string{macA, "web1", "enrolled"}, ErrConflict},
		{"hostname taken", EnrollRequest{MAC: macB, Hostname: "web1"}, []string{"web1", macA}, ErrConflict},
		{"hostname taken, other case", EnrollRequest{MAC: macB, Hostname: "WEB1"}, []string{"WEB1", macA}, ErrConflict},
		{"hostname with a space", EnrollRequest{MAC: macB, Hostname: "web 2"}, []string{"not a DNS label"}, nil},
		{"hostname with a newline", EnrollRequest{MAC: macB, Hostname: "web2\nkernel http://x/k"}, []string{"not a DNS label"}, nil},
		{"hostname with a dot", EnrollRequest{MAC: macB, Hostname: "web2.lab"}, []string{"not a DNS label"}, nil},
		{"hostname starting with -", EnrollRequest{MAC: macB, Hostname: "-web2"}, []string{"not a DNS label"}, nil},
		{"hostname too long", EnrollRequest{MAC: macB, Hostname: strings.Repeat("a", 64)}, []string{"not a DNS label"}, nil},
		{"IP taken", EnrollRequest{MAC: macB, IP: addr("10.0.0.5")}, []string{"10.0.0.5", "web1", macA}, ErrConflict},
		{"IP outside the subnet", EnrollRequest{MAC: macB, IP: addr("192.168.1.5")}, []string{"192.168.1.5", "outside", "10.0.0.0/24"}, nil},
		{"bad boot method", EnrollRequest{MAC: macB, BootMethod: "pxe"}, []string{"pxe"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ti := newTestInv(t, testPool)
			a := ti.enroll(t, EnrollRequest{MAC: macA, Hostname: "web1", IP: addr("10.0.0.5")})
			_, err := ti.Enroll(ctx, tc.req)
			if err == nil {
				t.Fatal("Enroll succeeded, want a refusal")
			}
			for _, s := range tc.want {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %v is not %v", err, tc.is)
			}
			if _, ok := ti.Node(macB); ok {
				t.Error("a refused enroll created the node")
			}
			if got := ti.mustNode(t, macA); got.State != Enrolled || len(got.History) != len(a.History) {
				t.Errorf("a refused enroll changed the existing node: %+v", got)
			}
		})
	}
}

func TestEnrollAutoHostname(t *testing.T) {
	ti := newTestInv(t, testPool)
	ti.enroll(t, EnrollRequest{MAC: "52:54:00:00:00:01", Hostname: "n1"})
	ti.enroll(t, EnrollRequest{MAC: "52:54:00:00:00:03", Hostname: "n3"})
	ti.enroll(t, EnrollRequest{MAC: "52:54:00:00:00:05", Hostname: "web"})
	ti.enroll(t, EnrollRequest{MAC: "52:54:00:00:00:06", Hostname: "N4"})
	ti.enroll(t, EnrollRequest{MAC: "52:54:00:00:00:07", Hostname: strings.Repeat("a", 63)})
	var got []string
	for i := 10; i < 13; i++ {
		got = append(got, ti.enroll(t, EnrollRequest{MAC: fmt.Sprintf("52:54:00:00:00:%02x", i)}).Hostname)
	}
	if want := "n2 n5 n6"; strings.Join(got, " ") != want {
		t.Fatalf("auto hostnames = %v, want %s", got, want)
	}
}

func TestEnrollAutoIP(t *testing.T) {
	ti := newTestInv(t, poolOf("10.0.0.100", "10.0.0.103"))
	// .100 is leased to a pool client, .101 is reserved for another node,
	// .102 is offered (not yet committed) to a third client.
	leased := "52:54:00:00:00:a1"
	if _, err := ti.Commit(ctx, leased, addr("10.0.0.100"), true); err != nil {
		t.Fatal(err)
	}
	ti.enroll(t, EnrollRequest{MAC: "52:54:00:00:00:a2", IP: addr("10.0.0.101")})
	if ip, err := ti.Offer("52:54:00:00:00:a3", addr("10.0.0.102"), true); err != nil || ip != addr("10.0.0.102") {
		t.Fatalf("setup offer = %v, %v", ip, err)
	}

	n := ti.enroll(t, EnrollRequest{MAC: "52:54:00:00:00:01"})
	if n.IP != addr("10.0.0.103") {
		t.Fatalf("auto IP = %v, want 10.0.0.103 (the only one neither leased, reserved nor offered)", n.IP)
	}
	// Now the pool is used up: the next enroll says so rather than doubling up.
	if _, err := ti.Enroll(ctx, EnrollRequest{MAC: "52:54:00:00:00:02"}); err == nil || !strings.Contains(err.Error(), "no free address") {
		t.Fatalf("enroll with no address left = %v, want a 'no free address' error", err)
	}
	// The reservation holds against pool clients.
	if ip, err := ti.Offer("52:54:00:00:00:b1", addr("10.0.0.103"), true); err == nil && ip == addr("10.0.0.103") {
		t.Fatal("a pool client was offered an address reserved for an enrolled node")
	}
	// And an explicit IP leased to someone else is refused, naming the holder.
	_, err := ti.Enroll(ctx, EnrollRequest{MAC: "52:54:00:00:00:02", IP: addr("10.0.0.100")})
	if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), leased) {
		t.Fatalf("enroll on a leased address = %v, want a conflict naming %s", err, leased)
	}
}

func TestEnrollDiscovered(t *testing.T) {
	ti := newTestInv(t, testPool)
	mac := "52:54:00:00:00:01"
	ti.Seen(ctx, mac, "efi-x64")
	d := ti.mustNode(t, mac)
	if d.State != Discovered || d.Arch != "efi-x64" || !d.LastSeen.Equal(testStart) {
		t.Fatalf("discovered node = %+v", d)
	}
	ti.clock.Advance(time.Minute)
	n := ti.enroll(t, EnrollRequest{MAC: mac, Profile: "void", Actor: "alice"})
	if n.State != Enrolled || n.Arch != "efi-x64" || !n.Created.Equal(testStart) || !n.IP.IsValid() {
		t.Fatalf("enrolled node = %+v", n)
	}
	want := Event{At: testStart.Add(time.Minute), From: Discovered, To: Enrolled, Cause: "enroll", Actor: "alice"}
	if len(n.History) != 2 || n.History[1] != want {
		t.Fatalf("history = %+v, want [discovered, %+v]", n.History, want)
	}
	// Seen again on an enrolled node does not demote it.
	ti.Seen(ctx, mac, "bios")
	if got := ti.mustNode(t, mac); got.State != Enrolled || got.Arch != "bios" {
		t.Fatalf("after Seen: %+v", got)
	}
}

func TestReenrollRetired(t *testing.T) {
	ti := newTestInv(t, testPool)
	mac := "52:54:00:00:00:01"
	ti.enroll(t, EnrollRequest{MAC: mac, Hostname: "old", IP: addr("10.0.0.5")})
	ti.move(t, mac, Retiring)
	ti.move(t, mac, Retired)
	// A retired node's name and address are free for others...
	ti.enroll(t, EnrollRequest{MAC: "52:54:00:00:00:02", Hostname: "old", IP: addr("10.0.0.5")})
	// ...and the retired node itself can come back.
	n := ti.enroll(t, EnrollRequest{MAC: mac, Hostname: "new", IP: addr("10.0.0.6")})
	if n.State != Enrolled || n.Hostname != "new" || n.IP != addr("10.0.0.6") {
		t.Fatalf("re-enrolled = %+v", n)
	}
	if last := n.History[len(n.History)-1]; last.From != Retired || last.To != Enrolled {
		t.Fatalf("last event = %+v, want retired -> enrolled", last)
	}
	// The new holder of 10.0.0.5 is the one that gets it over DHCP.
	if ip, err := ti.Offer("52:54:00:00:00:02", netip.Addr{}, false); err != nil || ip != addr("10.0.0.5") {
		t.Fatalf("Offer to the new holder = %v, %v", ip, err)
	}
	if ip, err := ti.Offer(mac, netip.Addr{}, false); err != nil || ip != addr("10.0.0.6") {
		t.Fatalf("Offer to the re-enrolled node = %v, %v", ip, err)
	}
}

func TestReenrollElsewhereFreesOldAddress(t *testing.T) {
	ti := newTestInv(t, poolOf("10.0.0.100", "10.0.0.101"))
	mac := "52:54:00:00:00:01"
	if n := ti.enroll(t, EnrollRequest{MAC: mac}); n.IP != addr("10.0.0.100") {
		t.Fatalf("setup: auto IP %v", n.IP)
	}
	ti.move(t, mac, Retiring)
	ti.move(t, mac, Retired)
	ti.enroll(t, EnrollRequest{MAC: mac, IP: addr("10.0.0.6")})
	// Both pool addresses are free now, in this process as after a restart.
	for _, restarted := range []bool{false, true} {
		if restarted {
			ti = ti.reopen(t, poolOf("10.0.0.100", "10.0.0.101"))
		}
		ip, err := ti.Offer(macA, addr("10.0.0.100"), true)
		if err != nil || ip != addr("10.0.0.100") {
			t.Fatalf("restarted=%v: pool client asking for the old address got %v, %v", restarted, ip, err)
		}
		if ip := ti.offer(t, mac, none, false); ip != addr("10.0.0.6") {
			t.Fatalf("restarted=%v: re-enrolled node offered %v", restarted, ip)
		}
	}
}

func TestEnrollFailedIsConflict(t *testing.T) {
	// A failed node leaves failed by Move (reinstall), not by a second enroll
	// that would silently change its name and address.
	ti := newTestInv(t, testPool)
	mac := "52:54:00:00:00:01"
	ti.enroll(t, EnrollRequest{MAC: mac})
	ti.move(t, mac, Failed)
	if _, err := ti.Enroll(ctx, EnrollRequest{MAC: mac}); !errors.Is(err, ErrConflict) {
		t.Fatalf("Enroll of a failed node = %v, want ErrConflict", err)
	}
}

// install puts a fresh node into installing and returns its token.
func (ti *testInv) install(t *testing.T, mac string, ttl time.Duration) string {
	t.Helper()
	if _, ok := ti.Node(mac); !ok {
		ti.enroll(t, EnrollRequest{MAC: mac})
	}
	n, token, err := ti.StartInstall(ctx, mac, anywhere, ttl)
	if err != nil {
		t.Fatal(err)
	}
	if n.State != Installing || token == "" {
		t.Fatalf("StartInstall = %s, %q", n.State, token)
	}
	return token
}

func lastCause(n Node) string {
	if len(n.History) == 0 {
		return ""
	}
	return n.History[len(n.History)-1].Cause
}

func TestInstallTokens(t *testing.T) {
	const (
		mac   = "52:54:00:00:00:01"
		other = "52:54:00:00:00:02"
	)
	for _, tc := range []struct {
		name string
		// run does the reports after StartInstall; it returns the last
		// Report's result.
		run       func(t *testing.T, ti *testInv, token string) (Node, error)
		wantErr   error
		state     State
		reason    string
		eventLike string // substring of the node's last event cause
	}{
		{
			name: "success",
			run: func(t *testing.T, ti *testInv, tok string) (Node, error) {
				return ti.Report(ctx, tok, anywhere, mac, "installed")
			},
			state:     Installed,
			eventLike: "success",
		},
		{
			name: "success without a MAC or status",
			run: func(t *testing.T, ti *testInv, tok string) (Node, error) {
				return ti.Report(ctx, tok, anywhere, "", "")
			},
			state: Installed,
		},
		{
			name: "replay",
			run: func(t *testing.T, ti *testInv, tok string) (Node, error) {
				if _, err := ti.Report(ctx, tok, anywhere, mac, "installed"); err != nil {
					t.Fatal(err)
				}
				return ti.Report(ctx, tok, anywhere, mac, "installed")
			},
			wantErr:   ErrToken,
			state:     Installed,
			eventLike: "refused an install report",
		},
		{
			name: "expired",
			run: func(t *testing.T, ti *testInv, tok string) (Node, error) {
				ti.clock.Advance(time.Hour + time.Second)
				return ti.Report(ctx, tok, anywhere, mac, "installed")
			},
			wantErr:   ErrToken,
			state:     Installing,
			eventLike: "expired",
		},
		{
			name: "another node's MAC",
			run: func(t *testing.T, ti *testInv, tok string) (Node, error) {
				return ti.Report(ctx, tok, anywhere, other, "installed")
			},
			wantErr:   ErrToken,
			state:     Installing,
			eventLike: "claiming another node's MAC",
		},
		{
			name: "garbage token",
			run: func(t *testing.T, ti *testInv, tok string) (Node, error) {
				return ti.Report(ctx, tok+"x", anywhere, mac, "installed")
			},
			wantErr:   ErrToken,
			state:     Installing,
			eventLike: "unknown, used or expired token",
		},
		{
			name: "restarted install voids the old token",
			run: func(t *testing.T, ti *testInv, tok string) (Node, error) {
				tok2 := ti.install(t, mac, time.Hour)
				if tok2 == tok {
					t.Fatal("StartInstall twice returned the same token")
				}
				if _, err := ti.Report(ctx, tok, anywhere, mac, "installed"); !errors.Is(err, ErrToken) {
					t.Fatalf("old token after restart: %v, want ErrToken", err)
				}
				if n := ti.mustNode(t, mac); n.State != Installing {
					t.Fatalf("old token moved the node to %s", n.State)
				}
				return ti.Report(ctx, tok2, anywhere, mac, "installed")
			},
			state: Installed,
		},
		{
			name: "failure with reason",
			run: func(t *testing.T, ti *testInv, tok string) (Node, error) {
				return ti.Report(ctx, tok, anywhere, mac, "failed: disk: no such device")
			},
			state:     Failed,
			reason:    "disk: no such device",
			eventLike: "disk: no such device",
		},
		{
			name: "progress, then success with the same token",
			run: func(t *testing.T, ti *testInv, tok string) (Node, error) {
				n, err := ti.Report(ctx, tok, anywhere, mac, "installing: packages")
				if err != nil {
					t.Fatal(err)
				}
				if n.State != Installing || lastCause(n) != "installing: packages" {
					t.Fatalf("progress report: state %s, last event %q", n.State, lastCause(n))
				}
				if got := ti.mustNode(t, mac); got.State != Installing || lastCause(got) != "installing: packages" {
					t.Fatalf("progress report not stored: %+v", got)
				}
				return ti.Report(ctx, tok, anywhere, mac, "installed")
			},
			state: Installed,
		},
		{
			name: "progress only",
			run: func(t *testing.T, ti *testInv, tok string) (Node, error) {
				return ti.Report(ctx, tok, anywhere, mac, "installing: packages")
			},
			state:     Installing,
			eventLike: "installing: packages",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ti := newTestInv(t, testPool)
			ti.enroll(t, EnrollRequest{MAC: other})
			tok := ti.install(t, mac, time.Hour)
			before := ti.mustNode(t, mac)
			n, err := tc.run(t, ti, tok)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Report = %v, want %v", err, tc.wantErr)
				}
			} else if err != nil {
				t.Fatalf("Report: %v", err)
			} else if n.State != tc.state {
				t.Fatalf("Report returned state %s, want %s", n.State, tc.state)
			}
			got := ti.mustNode(t, mac)
			if got.State != tc.state {
				t.Fatalf("state = %s, want %s", got.State, tc.state)
			}
			if got.Reason != tc.reason {
				t.Fatalf("reason = %q, want %q", got.Reason, tc.reason)
			}
			if tc.eventLike != "" && !strings.Contains(lastCause(got), tc.eventLike) {
				t.Fatalf("last event %+v does not mention %q", got.History[len(got.History)-1], tc.eventLike)
			}
			if tc.wantErr != nil && len(got.History) <= len(before.History) {
				t.Fatal("refused report was not recorded on the node")
			}
			if got.State != Installing && got.TokenHash != nil {
				t.Fatal("token hash kept after the install ended")
			}
			if o := ti.mustNode(t, other); len(o.History) != 1 || o.State != Enrolled {
				t.Fatalf("the other node was touched: %+v", o)
			}
			// What is recorded survives a restart.
			ti = ti.reopen(t, testPool)
			if again := ti.mustNode(t, mac); again.State != got.State || len(again.History) != len(got.History) {
				t.Fatalf("after reopen: %s with %d events, want %s with %d", again.State, len(again.History), got.State, len(got.History))
			}
		})
	}
}

func TestStartInstallRefusedWhenNotEnrolled(t *testing.T) {
	ti := newTestInv(t, testPool)
	mac := "52:54:00:00:00:01"
	if _, _, err := ti.StartInstall(ctx, mac, anywhere, time.Hour); !errors.Is(err, ErrNotFound) {
		t.Fatalf("StartInstall of an unknown node = %v, want ErrNotFound", err)
	}
	ti.putIn(t, mac, Installed)
	if _, _, err := ti.StartInstall(ctx, mac, anywhere, time.Hour); !errors.Is(err, ErrConflict) {
		t.Fatalf("StartInstall of an installed node = %v, want ErrConflict", err)
	}
	if n := ti.mustNode(t, mac); n.State != Installed || n.TokenHash != nil {
		t.Fatalf("refused StartInstall changed the node: %+v", n)
	}
}

func TestTokenNotStoredInClear(t *testing.T) {
	ti := newTestInv(t, testPool)
	mac := "52:54:00:00:00:01"
	tok := ti.install(t, mac, time.Hour)
	n, err := ti.Report(ctx, tok, anywhere, mac, "installing: partitioning")
	if err != nil {
		t.Fatal(err)
	}
	// Both files: a write reaches the store file at the next checkpoint
	// and sits in the journal beside it until then.
	var raw []byte
	for _, p := range []string{ti.path, ti.path + ".journal"} {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		raw = append(raw, b...)
	}
	sum := sha256.Sum256([]byte(tok))
	// The hash is what is kept (JSON encodes []byte as standard base64):
	// finding it proves we are looking at the right bytes.
	if !bytes.Contains(raw, []byte(base64.StdEncoding.EncodeToString(sum[:]))) {
		t.Fatal("the token's hash is in neither the store file nor its journal; are these the right files?")
	}
	if bytes.Contains(raw, []byte(tok)) {
		t.Fatal("the install token is in the store file in clear")
	}
	if bytes.Contains([]byte(fmt.Sprintf("%+v", n)), []byte(tok)) {
		t.Fatal("the token is in the node record")
	}
}

// TestHistoryIsBounded: a client retrying a refused report is one event
// with a count, not 250 (they pushed the enroll event out of the history
// once); distinct notes beyond maxHistory drop the oldest notes, never a
// transition.
func TestHistoryIsBounded(t *testing.T) {
	inv := newTestInv(t, testPool)
	mac := "52:54:00:00:00:01"
	if _, err := inv.Enroll(ctx, EnrollRequest{MAC: mac}); err != nil {
		t.Fatal(err)
	}
	seq := func() uint64 { evs, _, _ := inv.Events(0); return evs[len(evs)-1].Seq }
	before := seq()
	for range 250 {
		inv.Report(ctx, "forged", anywhere, mac, "installed")
	}
	n, _ := inv.Node(mac)
	if len(n.History) != 2 || n.History[0].To != Enrolled || n.History[1].Count != 250 || !strings.Contains(n.History[1].Cause, "refused") {
		t.Fatalf("after 250 refused reports: %+v", n.History)
	}
	if got := seq() - before; got != 1 {
		t.Errorf("250 refused reports logged %d events, want 1", got)
	}
	// The repeats are not written one by one: the next flush has them.
	if c := storedNodes(t, inv)[mac].History[1].Count; c >= 250 {
		t.Errorf("every repeat was written at once (count %d on disk before the flush)", c)
	}
	inv.Flush()
	if c := storedNodes(t, inv)[mac].History[1].Count; c != 250 {
		t.Errorf("count on disk after the flush: %d, want 250", c)
	}
	for i := range maxHistory + 50 {
		if err := inv.Note(ctx, mac, fmt.Sprintf("note %d", i), "test"); err != nil {
			t.Fatal(err)
		}
	}
	n, _ = inv.Node(mac)
	if len(n.History) != maxHistory || n.History[0].To != Enrolled || n.History[len(n.History)-1].Cause != fmt.Sprintf("note %d", maxHistory+49) {
		t.Fatalf("history of %d events, first %+v, last %+v", len(n.History), n.History[0], n.History[len(n.History)-1])
	}
}
