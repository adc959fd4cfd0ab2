package inventory

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestDeadlines(t *testing.T) {
	cases := []struct {
		name    string
		advance time.Duration
		report  bool // the installer reports before the deadline
		restart bool // the daemon restarts while the node is installing
		want    State
		reason  string
	}{
		{name: "reports in time", advance: 30 * time.Minute, report: true, want: Installed},
		{name: "before the deadline", advance: 59 * time.Minute, want: Installing},
		{name: "deadline passes", advance: 61 * time.Minute, want: Failed, reason: "install timed out"},
		{name: "deadline passes while down", advance: 61 * time.Minute, restart: true, want: Failed, reason: "install timed out"},
		{name: "restart keeps the deadline", advance: 30 * time.Minute, restart: true, want: Installing},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ti := newTestInv(t, testPool)
			mac := "52:54:00:00:00:01"
			token := ti.install(t, mac, time.Hour)
			if c.restart {
				ti = ti.reopen(t, testPool)
			}
			ti.clock.Advance(c.advance)
			if c.report {
				if _, err := ti.Report(ctx, token, anywhere, mac, "installed"); err != nil {
					t.Fatal(err)
				}
			}
			next, _ := ti.expire(ctx)
			n := ti.mustNode(t, mac)
			if n.State != c.want || n.Reason != c.reason {
				t.Fatalf("state %s (%q), want %s (%q)", n.State, n.Reason, c.want, c.reason)
			}
			if c.want == Installing && !next.Equal(testStart.Add(time.Hour)) {
				t.Errorf("next deadline %v, want %v", next, testStart.Add(time.Hour))
			}
			if c.want != Installing && (!n.Deadline.IsZero() || !next.IsZero()) {
				t.Errorf("deadline left after leaving installing: node %v, next %v", n.Deadline, next)
			}
			if c.want == Failed {
				last := n.History[len(n.History)-1]
				if last.Actor != "bootstrapd" || last.From != Installing {
					t.Errorf("timeout event %+v", last)
				}
			}
		})
	}
}

func TestEventLog(t *testing.T) {
	ti := newTestInv(t, testPool)
	evs, wait, err := ti.Events(0)
	if err != nil || len(evs) != 0 {
		t.Fatalf("empty log: %v %v", evs, err)
	}
	mac := "52:54:00:00:00:01"
	ti.enroll(t, EnrollRequest{MAC: mac, Hostname: "n7"})
	select {
	case <-wait:
	default:
		t.Fatal("followers were not woken by a new event")
	}
	ti.install(t, mac, time.Hour)
	ti.Report(ctx, "forged", anywhere, mac, "installed") // refused: recorded too
	evs, _, _ = ti.Events(0)
	var got []string
	for i, e := range evs {
		if e.Seq != uint64(i+1) || e.MAC != mac || e.Hostname != "n7" {
			t.Errorf("event %d: %+v", i, e)
		}
		got = append(got, string(e.To)+":"+e.Cause)
	}
	want := "enrolled:enroll|installing:booted the installer|:refused an install report: unknown, used or expired token"
	if strings.Join(got, "|") != want {
		t.Errorf("events\n%s\nwant\n%s", strings.Join(got, "|"), want)
	}
	// After a restart the log is read back, numbering continues, and a
	// follower can start after any event.
	ti = ti.reopen(t, testPool)
	ti.move(t, mac, Failed)
	evs, _, _ = ti.Events(2)
	if len(evs) != 2 || evs[0].Seq != 3 || evs[1].Seq != 4 || evs[1].To != Failed {
		t.Errorf("events after 2, across a restart: %+v", evs)
	}
}

func TestEventsOlderThanMemory(t *testing.T) {
	ti := newTestInv(t, testPool)
	mac := "52:54:00:00:00:01"
	ti.enroll(t, EnrollRequest{MAC: mac})
	for i := range 2*recentEvents + 10 {
		ti.Note(ctx, mac, fmt.Sprintf("note %d", i), "test")
	}
	evs, _, err := ti.Events(0)
	if err != nil || len(evs) != 2*recentEvents+11 || evs[0].Seq != 1 {
		t.Fatalf("reading from the store: %d events, first %+v, err %v", len(evs), evs[0], err)
	}
}

func TestRetireAndReinstall(t *testing.T) {
	ti := newTestInv(t, testPool)
	mac := "52:54:00:00:00:01"
	n := ti.enroll(t, EnrollRequest{MAC: mac, Hostname: "n7", IP: addr("10.0.0.50")})
	ti.install(t, mac, time.Hour)
	if n, err := ti.Reinstall(ctx, "n7", "cli"); err != nil || n.State != Enrolled || n.TokenHash != nil {
		t.Fatalf("reinstall: %+v %v", n, err)
	}
	ti.move(t, mac, Installing)
	ti.move(t, mac, Failed)
	if _, err := ti.Enroll(ctx, EnrollRequest{MAC: mac}); err == nil || !strings.Contains(err.Error(), "bootstrapd reinstall n7") {
		t.Errorf("enroll of a failed node: %v", err)
	}
	if n, err := ti.Reinstall(ctx, mac, "cli"); err != nil || n.State != Enrolled {
		t.Fatalf("reinstall of a failed node: %+v %v", n, err)
	}
	r, err := ti.Retire(ctx, "n7", "cli")
	if err != nil || r.State != Retired {
		t.Fatalf("retire: %+v %v", r, err)
	}
	var path []string
	for _, e := range r.History {
		path = append(path, string(e.To))
	}
	if got := strings.Join(path, ">"); got != "enrolled>installing>enrolled>installing>failed>enrolled>retiring>retired" {
		t.Errorf("history %s", got)
	}
	// Its hostname and address are free again, also after a restart.
	ti = ti.reopen(t, testPool)
	if o, err := ti.Enroll(ctx, EnrollRequest{MAC: "52:54:00:00:00:02", Hostname: "n7", IP: n.IP}); err != nil {
		t.Fatalf("reuse of a retired node's name and address: %v", err)
	} else if ip, _ := ti.Offer(o.MAC, n.IP, false); ip != n.IP {
		t.Errorf("the address went to %s", ip)
	}
	if _, err := ti.Retire(ctx, "nope", "cli"); !errors.Is(err, ErrNotFound) {
		t.Errorf("retire unknown: %v", err)
	}
	ti.Seen(ctx, "52:54:00:00:00:03", "bios")
	if _, err := ti.Retire(ctx, "52:54:00:00:00:03", "cli"); !errors.Is(err, ErrConflict) {
		t.Errorf("retire a discovered node: %v", err)
	}
}

// TestRetireSteps: with RetireSteps, retire stops at retiring with the
// steps pending on the node (kept across a restart); each StepDone takes
// one off and records it; a second retire changes nothing; FinishRetire
// retires it with nothing left pending.
func TestRetireSteps(t *testing.T) {
	ti := newTestInv(t, testPool)
	mac := "52:54:00:00:00:01"
	ti.enroll(t, EnrollRequest{MAC: mac, Hostname: "n7"})
	steps := func(Node) []string { return []string{"drain", "revoke token", "purge"} }
	ti.RetireSteps = steps
	n, err := ti.Retire(ctx, "n7", "cli")
	if err != nil || n.State != Retiring || strings.Join(n.Pending, ",") != "drain,revoke token,purge" {
		t.Fatalf("retire: %s pending %q, %v", n.State, n.Pending, err)
	}
	for _, c := range []struct {
		step, left string
	}{
		{"drain", "revoke token,purge"},
		{"drain", "revoke token,purge"}, // run again after a restart: recorded only
		{"purge", "revoke token"},
	} {
		if err := ti.StepDone(ctx, mac, c.step, "retire: "+c.step+" done", "bootstrapd"); err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(ti.mustNode(t, mac).Pending, ","); got != c.left {
			t.Errorf("after %s: pending %q, want %q", c.step, got, c.left)
		}
	}
	ti = ti.reopen(t, testPool)
	ti.RetireSteps = steps
	if n, err := ti.Retire(ctx, mac, "cli"); err != nil || n.State != Retiring || strings.Join(n.Pending, ",") != "revoke token" {
		t.Errorf("retire again after a restart: %s pending %q, %v", n.State, n.Pending, err)
	}
	if h := ti.mustNode(t, mac).History; h[len(h)-1].Cause != "retire: purge done" {
		t.Errorf("last event %+v", h[len(h)-1])
	}
	n, err = ti.FinishRetire(ctx, mac, "bootstrapd")
	if err != nil || n.State != Retired || n.Pending != nil {
		t.Errorf("finish: %s pending %q, %v", n.State, n.Pending, err)
	}
}
