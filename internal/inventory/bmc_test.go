package inventory

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestParseBMC(t *testing.T) {
	cases := []struct {
		url, creds string
		want       string // the canonical URL, or the error's words
		ok         bool
	}{
		{"ipmi://10.0.9.11", "", "ipmi://10.0.9.11", true},
		{"IPMI://10.0.9.11:6230/", "", "ipmi://10.0.9.11:6230", true},
		{"redfish://10.0.9.11", "", "redfish://10.0.9.11", true},
		{"redfish://bmc7.lab:8443/redfish/v1/Systems/1/", "file:/etc/bootstrapd/bmc/n7", "redfish://bmc7.lab:8443/redfish/v1/Systems/1", true},
		{"redfish+http://10.0.9.11", "vault:kv/bmc/n7", "redfish+http://10.0.9.11", true},
		{"ipmi://[fd00::11]:623", "", "ipmi://[fd00::11]:623", true},
		{"ipmi://admin:hunter2@10.0.9.11", "", "carries credentials", false},
		{"redfish://admin@10.0.9.11", "", "carries credentials", false},
		{"http://10.0.9.11", "", "is not ipmi, redfish or redfish+http", false},
		{"10.0.9.11", "", "is not ipmi, redfish", false},
		{"ipmi://10.0.9.11/x", "", "an IPMI URL has no path", false},
		{"redfish://10.0.9.11/redfish/v1/Chassis/1", "", "/redfish/v1/Systems/<id>", false},
		{"ipmi://10.0.9.11?cipher=0", "", "no query", false},
		{"ipmi://10.0.9.11:70000", "", "1 to 65535", false},
		{"ipmi://10.0.9.11", "admin:hunter2", "never the password", false},
		{"ipmi://10.0.9.11", "file:bmc/n7", "absolute path", false},
		{"ipmi://10.0.9.11", "file:/etc/../etc/x", "absolute path", false},
		{"ipmi://10.0.9.11", "vault:kv", "vault:<kv v2 mount>/<path>", false},
		{"ipmi://10.0.9.11", "vault:kv/../x", "vault:<kv v2 mount>/<path>", false},
		{"ipmi://10.0.9.11", "vault:kv/bmc n7", "vault:<kv v2 mount>/<path>", false},
		{"ipmi://10.0.9.11", "https://vault.lab/kv/bmc", "are not file:/path", false},
	}
	for _, c := range cases {
		b, err := ParseBMC(c.url, c.creds)
		switch {
		case c.ok && (err != nil || b.URL != c.want || b.Credentials != c.creds):
			t.Errorf("ParseBMC(%q, %q) = %+v, %v; want %s", c.url, c.creds, b, err, c.want)
		case !c.ok && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("ParseBMC(%q, %q) = %v, want an error mentioning %q", c.url, c.creds, err, c.want)
		case err != nil && strings.Contains(err.Error(), "hunter2"):
			t.Errorf("ParseBMC(%q, %q) repeats the password: %v", c.url, c.creds, err)
		}
	}
}

func TestEnrollAndSetBMC(t *testing.T) {
	ti := newTestInv(t, testPool)
	const mac = "52:54:00:00:00:01"
	n := ti.enroll(t, EnrollRequest{MAC: mac, BMC: &BMC{URL: "IPMI://10.0.9.11/"}})
	if n.BMC == nil || n.BMC.URL != "ipmi://10.0.9.11" {
		t.Fatalf("enrolled BMC %+v", n.BMC)
	}
	if _, err := ti.Enroll(ctx, EnrollRequest{MAC: "52:54:00:00:00:02", BMC: &BMC{URL: "ipmi://a:b@c"}}); err == nil {
		t.Fatal("a BMC URL with credentials was enrolled")
	}
	n, err := ti.SetBMC(ctx, n.Hostname, &BMC{URL: "redfish://10.0.9.12", Credentials: "vault:kv/bmc/n1"}, "op")
	if err != nil || n.BMC.URL != "redfish://10.0.9.12" || n.BMC.Credentials != "vault:kv/bmc/n1" {
		t.Fatalf("SetBMC = %+v, %v", n.BMC, err)
	}
	if got := lastCause(n); got != "bmc redfish://10.0.9.12 (credentials vault:kv/bmc/n1)" {
		t.Errorf("event %q", got)
	}
	// A copy is a copy: changing it does not change the stored node.
	n.BMC.URL = "ipmi://elsewhere"
	if ti.mustNode(t, mac).BMC.URL != "redfish://10.0.9.12" {
		t.Error("the stored node's BMC changed through a copy")
	}
	if n, err = ti.SetBMC(ctx, mac, nil, "op"); err != nil || n.BMC != nil || lastCause(n) != "bmc removed" {
		t.Fatalf("SetBMC(nil) = %+v, %v", n.BMC, err)
	}
	if _, err := ti.SetBMC(ctx, mac, &BMC{URL: "ftp://x"}, "op"); err == nil {
		t.Error("SetBMC took a bad URL")
	}
	ti.Seen(ctx, "52:54:00:00:00:09", "bios")
	if _, err := ti.SetBMC(ctx, "52:54:00:00:00:09", &BMC{URL: "ipmi://x"}, "op"); !errors.Is(err, ErrConflict) {
		t.Errorf("SetBMC on a discovered node = %v, want ErrConflict", err)
	}
	// The BMC survives a restart.
	ti.SetBMC(ctx, mac, &BMC{URL: "ipmi://10.0.9.13"}, "op")
	if ti = ti.reopen(t, testPool); ti.mustNode(t, mac).BMC.URL != "ipmi://10.0.9.13" {
		t.Error("the BMC was not stored")
	}
}

// retrier retries nodes with a BMC up to max times, with a window of an
// hour, and records what it was asked to retry.
type retrier struct {
	max     int
	mu      sync.Mutex
	retried []Node
}

func (r *retrier) RetryWindow(n Node) (time.Duration, bool) {
	return time.Hour, n.BMC != nil && n.InstallRetries < r.max
}

func (r *retrier) Retry(_ context.Context, n Node) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.retried = append(r.retried, n)
}

// TestInstallRetries: an install that misses its deadline is retried (back
// to enrolled, a new deadline, an event) as many times as the Retrier
// allows, then fails saying how many retries it had; a retry that never
// reaches the installer counts too; reinstall starts the count afresh.
func TestInstallRetries(t *testing.T) {
	cases := []struct {
		name   string
		bmc    bool
		max    int
		booted []bool // per deadline: whether the node booted the installer before it
		want   []string
		reason string
	}{
		{name: "no BMC: fails at once", max: 2, booted: []bool{true}, reason: "install timed out"},
		{name: "no retries allowed", bmc: true, max: 0, booted: []bool{true}, reason: "install timed out"},
		{name: "two retries, then failed", bmc: true, max: 2, booted: []bool{true, true, true},
			want:   []string{"install timed out; retry 1: power cycle and PXE boot", "install timed out; retry 2: power cycle and PXE boot"},
			reason: "install timed out after 2 power-cycle retries"},
		{name: "a retry that never boots the installer", bmc: true, max: 2, booted: []bool{true, false, false},
			want:   []string{"install timed out; retry 1: power cycle and PXE boot", "installer not booted in time; retry 2: power cycle and PXE boot"},
			reason: "installer not booted in time after 2 power-cycle retries"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ti := newTestInv(t, testPool)
			r := &retrier{max: c.max}
			ti.Retrier = r
			const mac = "52:54:00:00:00:01"
			req := EnrollRequest{MAC: mac}
			if c.bmc {
				req.BMC = &BMC{URL: "ipmi://10.0.9.11"}
			}
			ti.enroll(t, req)
			var causes []string
			for i, booted := range c.booted {
				if booted {
					ti.install(t, mac, 30*time.Minute)
				}
				ti.clock.Advance(2 * time.Hour)
				_, retried := ti.expire(ctx)
				n := ti.mustNode(t, mac)
				if i < len(c.want) {
					if len(retried) != 1 || n.State != Enrolled || n.InstallRetries != i+1 || !n.Deadline.Equal(ti.clock.Now().Add(time.Hour)) {
						t.Fatalf("deadline %d: retried %d, node %s retries %d deadline %v", i+1, len(retried), n.State, n.InstallRetries, n.Deadline)
					}
					causes = append(causes, lastCause(n))
					continue
				}
				if len(retried) != 0 || n.State != Failed || n.Reason != c.reason {
					t.Fatalf("deadline %d: retried %d, node %s %q; want failed: %q", i+1, len(retried), n.State, n.Reason, c.reason)
				}
			}
			if strings.Join(causes, "\n") != strings.Join(c.want, "\n") {
				t.Errorf("retry events:\n%s\nwant:\n%s", strings.Join(causes, "\n"), strings.Join(c.want, "\n"))
			}
			if c.bmc && c.max > 0 {
				if n, err := ti.Reinstall(ctx, mac, "op"); err != nil || n.InstallRetries != 0 {
					t.Errorf("reinstall: retries %d, %v; want a fresh count", n.InstallRetries, err)
				}
			}
		})
	}
}
