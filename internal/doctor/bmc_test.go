package doctor

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bootstrapd/bootstrapd/internal/bmc"
	"github.com/bootstrapd/bootstrapd/internal/bmc/bmctest"
	"github.com/bootstrapd/bootstrapd/internal/config"
	"github.com/bootstrapd/bootstrapd/internal/daemon"
	"github.com/bootstrapd/bootstrapd/internal/inventory"
	"github.com/bootstrapd/bootstrapd/internal/store"
)

// TestCheckBMCs: with no daemon running, doctor reads the nodes from the
// store and logs in to each node's BMC: its power state, or what to fix
// for a wrong password, an unreachable or a hung BMC; nodes without one,
// and retired ones, are not asked; the password shows nowhere.
func TestCheckBMCs(t *testing.T) {
	const secret = "s3cret-doctor-bmc"
	t.Setenv(config.BMCPasswordEnv, secret)
	dir := t.TempDir()
	site := writeSite(t, dir, poolDHCP)
	src, _ := os.ReadFile(site)
	os.WriteFile(site, append(src, "\nbmc {\n  user = \"admin\"\n  timeout = \"200ms\"\n}\n"...), 0o644)
	s, err := config.Load(site)
	if err != nil {
		t.Fatal(err)
	}
	env := &Env{Site: s}
	if got := CheckBMCs(env); len(got) != 0 {
		t.Fatalf("before any store: %v", got)
	}

	db, err := store.Open(filepath.Join(s.StateDir, daemon.StoreFile))
	if err != nil {
		t.Fatal(err)
	}
	inv, err := inventory.Open(db, inventory.Pool{Subnet: s.Subnet, Range: s.Range, Lease: s.Lease}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, n := range []struct{ mac, host, url string }{
		{"52:54:00:00:00:01", "n1", "ipmi://10.0.9.11"},
		{"52:54:00:00:00:02", "n2", "redfish://10.0.9.12"},
		{"52:54:00:00:00:03", "n3", "ipmi://10.0.9.13"},
		{"52:54:00:00:00:04", "n4", "ipmi://10.0.9.99"},
		{"52:54:00:00:00:05", "n5", ""},
		{"52:54:00:00:00:06", "n6", "ipmi://10.0.9.16"},
	} {
		req := inventory.EnrollRequest{MAC: n.mac, Hostname: n.host}
		if n.url != "" {
			req.BMC = &inventory.BMC{URL: n.url}
		}
		if _, err := inv.Enroll(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	inv.Retire(ctx, "n6", "test")
	db.Close()

	lab := &bmctest.Lab{}
	lab.Add("10.0.9.11", &bmctest.BMC{Power: bmc.On})
	lab.Add("10.0.9.12", &bmctest.BMC{User: "admin", Password: "other"})
	lab.Add("10.0.9.13", &bmctest.BMC{Hang: true})
	retired := lab.Add("10.0.9.16", &bmctest.BMC{})
	env.OpenBMC = lab.Open
	start := time.Now()
	got := CheckBMCs(env)
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("took %v: the hung BMC was not bounded by the timeout", took)
	}
	want := []struct {
		name   string
		ok     bool
		detail string
		fix    string
	}{
		{"bmc n1", true, "ipmi://10.0.9.11: on (chassis power is on)", ""},
		{"bmc n2", false, "n2 (52:54:00:00:00:02), BMC redfish://10.0.9.12: the BMC refused the user name or password", "check the user and password in the site's bmc block"},
		{"bmc n3", false, "BMC ipmi://10.0.9.13: the BMC did not answer in time", "check that this machine reaches 10.0.9.13"},
		{"bmc n4", false, "BMC ipmi://10.0.9.99: 10.0.9.99: the BMC cannot be reached", "`bootstrapd node bmc n4 <url>`"},
	}
	if len(got) != len(want) {
		t.Fatalf("%d results, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		g := got[i]
		if g.Name != w.name || g.OK != w.ok || !strings.Contains(g.Detail, w.detail) || !strings.Contains(g.Fix, w.fix) {
			t.Errorf("result %d: %+v\nwant %s ok=%v detail ~%q fix ~%q", i, g, w.name, w.ok, w.detail, w.fix)
		}
		if strings.Contains(g.Detail+g.Fix, secret) {
			t.Errorf("%s shows the password", g.Name)
		}
	}
	if len(retired.Calls()) != 0 {
		t.Errorf("the retired node's BMC was asked: %q", retired.Calls())
	}
}
