package main

import (
	"context"
	"encoding/json"
	"flag"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bootstrapd/bootstrapd/internal/api"
	"github.com/bootstrapd/bootstrapd/internal/bmc"
	"github.com/bootstrapd/bootstrapd/internal/bmc/bmctest"
	"github.com/bootstrapd/bootstrapd/internal/config"
	"github.com/bootstrapd/bootstrapd/internal/daemon"
	"github.com/bootstrapd/bootstrapd/internal/inventory/inventorytest"
	"github.com/bootstrapd/bootstrapd/internal/profile"
)

// TestPowerCommands runs the power commands, enroll -power and node bmc
// against the admin API with power control over fake BMCs: what they print,
// their exit codes, and that no output holds a password.
func TestPowerCommands(t *testing.T) {
	const secret = "cli-s3cret"
	dir := t.TempDir()
	creds := filepath.Join(dir, "n1")
	if err := os.WriteFile(creds, []byte("admin:"+secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	lab := &bmctest.Lab{}
	f := lab.Add("10.0.9.11", &bmctest.BMC{User: "admin", Password: secret})
	lab.Add("10.0.9.12", &bmctest.BMC{User: "admin", Password: "other"})
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	inv := inventorytest.New(t, log)
	site := &config.Site{Interface: "prov0", Path: "site.hcl", BMC: &config.BMC{TimeoutD: time.Second}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p, err := daemon.NewPower(ctx, site, daemon.PowerConfig{Inv: inv, Open: lab.Open, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	s := &api.Server{Inv: inv, Log: log, Power: p, DefaultProfile: "plain",
		Profiles: map[string]*profile.Profile{"plain": {Name: "plain", Kernel: "vmlinuz", Timeout: time.Hour}}}
	sock := filepath.Join(dir, "api.sock")
	l, err := api.ListenUnix(sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: s.Handler()}
	go srv.Serve(l)
	defer srv.Close()
	addr := "unix://" + sock

	cases := []struct {
		args []string
		code int
		out  string // in stdout or stderr
	}{
		{[]string{"enroll", "52:54:00:00:00:01", "-bmc", "ipmi://10.0.9.11", "-bmc-credentials", "file:" + creds, "-power", "-label", "firmware=bios"}, 0,
			"n1 (52:54:00:00:00:01), BMC ipmi://10.0.9.11: next boot: PXE, legacy, once; power on: done (was off)"},
		{[]string{"enroll", "52:54:00:00:00:04", "-hostname", "n4", "-bmc", "ipmi://10.0.9.11", "-bmc-credentials", "file:" + creds, "-power", "-json"}, 0,
			`"answer": "next boot: PXE, legacy, once; power cycle: done (was on)"`},
		{[]string{"power", "status", "n1"}, 0, "n1 (52:54:00:00:00:01) is on (BMC ipmi://10.0.9.11: chassis power is on)"},
		{[]string{"power", "-json", "cycle", "n1"}, 0, `"answer": "power cycle: done (was on)"`},
		{[]string{"power", "off", "n1"}, 0, "n1 (52:54:00:00:00:01), BMC ipmi://10.0.9.11: power off: done (was on)"},
		{[]string{"node", "show", "n1"}, 0, "bmc:      ipmi://10.0.9.11, credentials file:" + creds},
		{[]string{"enroll", "52:54:00:00:00:02", "-hostname", "n2", "-bmc", "ipmi://10.0.9.12", "-bmc-credentials", "file:" + creds, "-power"}, 1,
			"power install n2 (52:54:00:00:00:02), BMC ipmi://10.0.9.12: the BMC refused the user name or password; the node is enrolled"},
		{[]string{"power", "on", "n2"}, 1, "bootstrapd power on: power on n2 (52:54:00:00:00:02), BMC ipmi://10.0.9.12: the BMC refused the user name or password"},
		{[]string{"power", "on", "n9"}, 1, "neither a known MAC nor a hostname"},
		{[]string{"reinstall", "n1", "-power"}, 0, "n1 (52:54:00:00:00:01), BMC ipmi://10.0.9.11: next boot: PXE, legacy, once; power on: done (was off)"},
		{[]string{"reinstall", "n1", "-power", "-wol"}, 1, "-power or -wol, not both"},
		{[]string{"enroll", "52:54:00:00:00:03", "-bmc", "ipmi://admin:" + secret + "@10.0.9.13"}, 1, "carries credentials"},
		{[]string{"enroll", "52:54:00:00:00:03", "-bmc", "ipmi://10.0.9.13", "-bmc-credentials", "admin:" + secret}, 1, "never the password itself"},
		{[]string{"enroll", "52:54:00:00:00:03", "-power"}, 1, "-power needs the node's BMC"},
		{[]string{"node", "bmc", "n1", "none", "-bmc-credentials", "file:/x"}, 2, "-bmc-credentials goes with a BMC URL, not none"},
		{[]string{"node", "bmc", "n1", "none"}, 0, "n1 (52:54:00:00:00:01) has no BMC now"},
		{[]string{"power", "on", "n1"}, 1, "n1 (52:54:00:00:00:01) has no BMC"},
		{[]string{"node", "bmc", "n1", "redfish://10.0.9.11"}, 0, "n1 (52:54:00:00:00:01): BMC redfish://10.0.9.11, the site's credentials"},
		{[]string{"power", "status"}, 2, "bootstrapd power status: missing <mac|hostname>"},
		{[]string{"power", "reboot", "n1"}, 2, `unknown subcommand "reboot"`},
		{[]string{"power", "off", "-wol", "n1"}, 2, "flag provided but not defined: -wol"},
	}
	for _, c := range cases {
		code, out, errOut := cli(context.Background(), addr, c.args...)
		if code != c.code || !strings.Contains(out+errOut, c.out) {
			t.Errorf("bootstrapd %q: exit %d, output %q %q; want exit %d mentioning %q", c.args, code, out, errOut, c.code, c.out)
		}
		if slices.Contains(c.args, "-json") && c.code == 0 && !json.Valid([]byte(out)) {
			t.Errorf("bootstrapd %q: stdout is not one JSON document: %s", c.args, out)
		}
		if strings.Contains(out+errOut, secret) && !strings.Contains(strings.Join(c.args, " "), secret) {
			t.Errorf("bootstrapd %q printed the password", c.args)
		}
		if strings.Contains(strings.Join(c.args, " "), secret) && strings.Count(out+errOut, secret) > 0 {
			t.Errorf("bootstrapd %q repeated the password it was given: %s%s", c.args, out, errOut)
		}
	}
	if f.State() != bmc.On {
		t.Errorf("after reinstall -power the machine is %s", f.State())
	}
}

// TestNoFlagTakesASecret: every secret comes from a file or the
// environment; a flag would put it in argv, which every user can read.
func TestNoFlagTakesASecret(t *testing.T) {
	ls, _ := leaves()
	for _, l := range ls {
		fs := newFlagSet(nil)
		l.cmd.setup(fs, &env{getenv: func(string) string { return "" }})
		fs.VisitAll(func(f *flag.Flag) {
			for _, w := range []string{"password", "passwd", "secret", "token"} {
				if strings.Contains(strings.ToLower(f.Name), w) {
					t.Errorf("bootstrapd %s has -%s", strings.Join(l.path, " "), f.Name)
				}
			}
		})
	}
}
