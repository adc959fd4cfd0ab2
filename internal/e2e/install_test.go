package e2e

import (
	"bufio"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestInstall runs `make install` into a DESTDIR and checks what lands
// where, with which mode, that nothing is enabled, and that the systemd
// unit is one systemd accepts.
func TestInstall(t *testing.T) {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	const (
		unit   = "etc/systemd/system/bootstrapd.service"
		run    = "etc/sv/bootstrapd/run"
		logRun = "etc/sv/bootstrapd/log/run"
	)
	cases := []struct {
		name string
		vars []string
		bin  string // where the binary goes, under DESTDIR
		want map[string]fs.FileMode
	}{
		{
			name: "both init systems", vars: []string{"SYSTEMD=1", "RUNIT=1"}, bin: "usr/local/bin/bootstrapd",
			want: map[string]fs.FileMode{
				"usr/local/bin/bootstrapd": 0o755, "etc/bootstrapd/site.hcl.example": 0o644,
				unit: 0o644, run: 0o755, logRun: 0o755,
			},
		},
		{
			name: "neither, other prefix", vars: []string{"SYSTEMD=0", "RUNIT=0", "PREFIX=/usr"}, bin: "usr/bin/bootstrapd",
			want: map[string]fs.FileMode{"usr/bin/bootstrapd": 0o755, "etc/bootstrapd/site.hcl.example": 0o644},
		},
		{
			name: "systemd, other prefix", vars: []string{"SYSTEMD=1", "RUNIT=0", "PREFIX=/opt/bootstrapd"}, bin: "opt/bootstrapd/bin/bootstrapd",
			want: map[string]fs.FileMode{"opt/bootstrapd/bin/bootstrapd": 0o755, "etc/bootstrapd/site.hcl.example": 0o644, unit: 0o644},
		},
	}
	// The profiles go to PREFIX/share/bootstrapd/profiles, where
	// examples/lab.hcl (the installed site.hcl.example) looks for them.
	prefixes := map[string]string{"usr/local/bin/bootstrapd": "usr/local", "usr/bin/bootstrapd": "usr", "opt/bootstrapd/bin/bootstrapd": "opt/bootstrapd"}
	for _, c := range cases {
		for _, f := range []string{"void-nomad.hcl", "concourse-worker.nomad.hcl.tmpl", "void-nomad/autoinstall.cfg.tmpl", "void-nomad/postinstall.sh.tmpl"} {
			c.want[prefixes[c.bin]+"/share/bootstrapd/profiles/"+f] = 0o644
		}
		t.Run(c.name, func(t *testing.T) {
			dest := t.TempDir()
			cmd := exec.Command("make", append([]string{"install", "DESTDIR=" + dest}, c.vars...)...)
			cmd.Dir = root
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("make install: %v\n%s", err, out)
			}

			// Exactly these files: in particular no *.wants/ link and no
			// /var/service link, since install must not enable anything.
			got := map[string]fs.FileMode{}
			err = filepath.WalkDir(dest, func(p string, d fs.DirEntry, err error) error {
				if err != nil || d.IsDir() {
					return err
				}
				fi, err := d.Info()
				if err != nil {
					return err
				}
				rel, _ := filepath.Rel(dest, p)
				got[rel] = fi.Mode()
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			for name, mode := range c.want {
				if m, ok := got[name]; !ok {
					t.Errorf("%s not installed", name)
				} else if m != mode {
					t.Errorf("%s has mode %v, want %v", name, m, mode)
				}
			}
			for name := range got {
				if _, ok := c.want[name]; !ok {
					t.Errorf("%s installed too", name)
				}
			}

			if out, err := exec.Command(filepath.Join(dest, c.bin), "version").CombinedOutput(); err != nil || !strings.HasPrefix(string(out), "bootstrapd ") {
				t.Errorf("installed binary: %v: %s", err, out)
			}
			example, _ := os.ReadFile(filepath.Join(dest, "etc/bootstrapd/site.hcl.example"))
			lab, _ := os.ReadFile(filepath.Join(root, "examples/lab.hcl"))
			if len(example) == 0 || string(example) != string(lab) {
				t.Error("site.hcl.example is not examples/lab.hcl")
			}
			if _, ok := c.want[unit]; ok {
				checkUnit(t, filepath.Join(dest, unit), "/"+c.bin, filepath.Join(dest, c.bin))
			}
			if _, ok := c.want[run]; ok {
				checkRunit(t, filepath.Join(dest, run), filepath.Join(dest, logRun))
			}
		})
	}
}

// checkUnit parses the unit as INI and checks the keys that make it behave
// (always, since systemd-analyze may be missing), then has systemd verify it
// when systemd-analyze is installed.
func checkUnit(t *testing.T, path, exe, installed string) {
	t.Helper()
	ini := parseINI(t, path)
	want := map[string]map[string]string{
		"Service": {
			"Type":           "simple",
			"ExecStart":      exe + " serve -config /etc/bootstrapd/site.hcl",
			"Restart":        "on-failure",
			"KillSignal":     "SIGTERM",
			"StateDirectory": "bootstrapd",
			"ProtectSystem":  "strict",
		},
		"Install": {"WantedBy": "multi-user.target"},
	}
	for sec, keys := range want {
		for k, v := range keys {
			if got := ini[sec][k]; !slices.Contains(got, v) {
				t.Errorf("[%s] %s = %q, want %q", sec, k, got, v)
			}
		}
	}
	// The daemon binds 67 and 69 and binds DHCP to one interface; without
	// these caps it would fail at start under the unit's bounding set.
	caps := strings.Join(ini["Service"]["CapabilityBoundingSet"], " ")
	for _, c := range []string{"CAP_NET_BIND_SERVICE", "CAP_NET_RAW"} {
		if !strings.Contains(caps, c) {
			t.Errorf("CapabilityBoundingSet %q lacks %s", caps, c)
		}
	}
	// /run for the admin socket, the state dir for the store.
	rw := strings.Join(ini["Service"]["ReadWritePaths"], " ")
	for _, p := range []string{"/run", "/var/lib/bootstrapd"} {
		if !slices.Contains(strings.Fields(rw), p) {
			t.Errorf("ReadWritePaths %q lacks %s", rw, p)
		}
	}

	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Log("systemd-analyze not installed; checked the unit as INI only")
		return
	}
	// verify insists that ExecStart exists, and the unit names the path it
	// will have on the target, so verify a copy naming the DESTDIR binary.
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cp := filepath.Join(t.TempDir(), "bootstrapd.service")
	if err := os.WriteFile(cp, []byte(strings.ReplaceAll(string(data), "ExecStart="+exe, "ExecStart="+installed)), 0o644); err != nil {
		t.Fatal(err)
	}
	// verify exits 0 on unknown keys and bad values (it only warns), so
	// any output at all is a failure.
	out, err := exec.Command(sa, "verify", cp).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// parseINI reads a systemd unit: sections of Key=Value lines, where a key
// may repeat.
func parseINI(t *testing.T, path string) map[string]map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]map[string][]string{}
	sec := ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			sec = line[1 : len(line)-1]
			out[sec] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || sec == "" || strings.TrimSpace(k) == "" {
				t.Errorf("%s:%d: not a Key=Value line in a section: %q", path, n, line)
				continue
			}
			k = strings.TrimSpace(k)
			out[sec][k] = append(out[sec][k], strings.TrimSpace(v))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// checkRunit checks the run scripts' last command, which is what runsv
// supervises, and that shellcheck (when installed) is happy with them.
func checkRunit(t *testing.T, run, logRun string) {
	t.Helper()
	for path, want := range map[string][]string{
		run:    {"exec 2>&1", "exec bootstrapd serve -config /etc/bootstrapd/site.hcl"},
		logRun: {"exec svlogd "},
	} {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(string(b), "#!/bin/sh\n") {
			t.Errorf("%s does not start with #!/bin/sh", path)
		}
		for _, w := range want {
			if !strings.Contains(string(b), "\n"+w) {
				t.Errorf("%s has no line %q", path, w)
			}
		}
		if sc, err := exec.LookPath("shellcheck"); err == nil {
			if out, err := exec.Command(sc, path).CombinedOutput(); err != nil {
				t.Errorf("shellcheck %s: %v\n%s", path, err, out)
			}
		}
	}
}
