package main

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestParseArgs(t *testing.T) {
	cases := []struct {
		args    []string
		pos     []string
		profile string
		json    bool
		wait    string // "" off, else the state
		err     string
	}{
		{args: []string{"52:54:00:aa:bb:cc"}, pos: []string{"52:54:00:aa:bb:cc"}},
		{args: []string{"-profile", "p", "52:54:00:aa:bb:cc"}, pos: []string{"52:54:00:aa:bb:cc"}, profile: "p"},
		{args: []string{"52:54:00:aa:bb:cc", "-profile", "p", "-json"}, pos: []string{"52:54:00:aa:bb:cc"}, profile: "p", json: true},
		{args: []string{"show", "--profile=p", "n1"}, pos: []string{"show", "n1"}, profile: "p"},
		{args: []string{"--", "-x"}, pos: []string{"-x"}},
		// -wait takes a state as the next word only when it is one.
		{args: []string{"-wait", "ready", "m"}, pos: []string{"m"}, wait: "ready"},
		{args: []string{"m", "-wait", "READY"}, pos: []string{"m"}, wait: "ready"},
		{args: []string{"-wait", "m"}, pos: []string{"m"}, wait: "installed"},
		{args: []string{"m", "-wait"}, pos: []string{"m"}, wait: "installed"},
		{args: []string{"-wait=joined", "m"}, pos: []string{"m"}, wait: "joined"},
		{args: []string{"-wait=soon", "m"}, err: `"soon" is not a state to wait for`},
		{args: []string{"m", "-profile"}, err: "flag needs an argument: -profile"},
		{args: []string{"-nope", "m"}, err: "flag provided but not defined: -nope"},
		{args: []string{"-h"}, err: flag.ErrHelp.Error()},
	}
	for _, c := range cases {
		fs := newFlagSet([]string{"t"})
		profile := fs.String("profile", "", "")
		asJSON := fs.Bool("json", false, "")
		wait := &waitFlag{state: "installed"}
		fs.Var(wait, "wait", "")
		pos, err := parseArgs(fs, c.args)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("parseArgs(%q): %v, want %q", c.args, err, c.err)
			}
			continue
		}
		gotWait := ""
		if wait.on {
			gotWait = string(wait.state)
		}
		if err != nil || !slices.Equal(pos, c.pos) || *profile != c.profile || *asJSON != c.json || gotWait != c.wait {
			t.Errorf("parseArgs(%q) = %q profile=%q json=%v wait=%q err=%v", c.args, pos, *profile, *asJSON, gotWait, err)
		}
	}
}

// cli runs bootstrapd in-process with its daemon address at addr (a
// socket nobody listens on unless a test serves one) and returns the exit
// code, stdout and stderr.
func cli(ctx context.Context, addr string, args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	getenv := func(k string) string {
		if k == "BOOTSTRAPD_ADDR" {
			return addr
		}
		return ""
	}
	code := run(ctx, &env{stdout: &out, stderr: &errb, getenv: getenv}, args)
	return code, out.String(), errb.String()
}

// leaf is a command that runs (not a group of subcommands), with its path.
type leaf struct {
	path []string
	cmd  command
}

// leaves walks the command table.
func leaves() (out []leaf, groups [][]string) {
	var walk func(path []string, cs []command)
	walk = func(path []string, cs []command) {
		for _, c := range cs {
			p := append(slices.Clone(path), c.name)
			if len(c.subs) > 0 {
				groups = append(groups, p)
				walk(p, c.subs)
				continue
			}
			out = append(out, leaf{p, c})
		}
	}
	walk(nil, commands())
	return out, groups
}

// TestGrammar holds every command and subcommand to the one grammar: -h
// and -help at every level exit 0 with a usage line that shows the
// arguments; flags go before or after the arguments; a mistake prints one
// error line and the usage, and exits 2; a command that gets past its
// usage only fails (exit 1) for want of a site file or a daemon.
func TestGrammar(t *testing.T) {
	dir := t.TempDir()
	dead := "unix://" + filepath.Join(dir, "none.sock")
	missing := filepath.Join(dir, "missing.hcl")
	ctx := context.Background()
	ls, groups := leaves()
	if len(ls) < 20 || len(groups) < 4 {
		t.Fatalf("walked %d commands and %d groups: is the table or the walk wrong?", len(ls), len(groups))
	}

	help := [][]string{{"-h"}, {"-help"}, {"--help"}, {"help"}}
	for _, g := range append(groups, nil) {
		name := strings.TrimSpace("bootstrapd " + strings.Join(g, " "))
		for _, h := range help {
			args := append(slices.Clone(g), h...)
			if h[0] == "help" {
				args = append(slices.Clone(h), g...)
			}
			code, out, errOut := cli(ctx, dead, args...)
			if code != 0 || !strings.HasPrefix(out, "usage: "+name+" <") || errOut != "" {
				t.Errorf("%q: exit %d, %q %q; want exit 0 and %q", args, code, firstLine(out), errOut, "usage: "+name+" <...")
			}
		}
		code, _, errOut := cli(ctx, dead, g...)
		if code != exitUsage || !strings.HasPrefix(errOut, name+": missing ") || !strings.Contains(errOut, "\nusage: "+name+" <") {
			t.Errorf("%q with nothing after it: exit %d, %q", name, code, firstLine(errOut))
		}
		code, _, errOut = cli(ctx, dead, append(slices.Clone(g), "no-such-thing")...)
		if code != exitUsage || !strings.Contains(firstLine(errOut), `"no-such-thing"`) {
			t.Errorf("%q no-such-thing: exit %d, %q", name, code, firstLine(errOut))
		}
	}

	for _, l := range ls {
		name := "bootstrapd " + strings.Join(l.path, " ")
		t.Run(strings.Join(l.path, "_"), func(t *testing.T) {
			fs := newFlagSet(nil)
			l.cmd.setup(fs, &env{getenv: func(string) string { return "" }})
			wantUsage := "usage: " + usageLine(append([]string{"bootstrapd"}, l.path...), l.cmd, hasFlags(l.cmd, &env{getenv: os.Getenv}))
			if !strings.Contains(wantUsage, strings.Join(l.cmd.args, " ")) {
				t.Fatalf("usage line %q lacks the arguments %q", wantUsage, l.cmd.args)
			}
			for _, h := range help[:2] {
				code, out, errOut := cli(ctx, dead, append(slices.Clone(l.path), h...)...)
				if code != 0 || firstLine(out) != wantUsage || errOut != "" || strings.Contains(out, "Usage of") {
					t.Errorf("%s %s: exit %d, %q, stderr %q; want exit 0 and %q", name, h[0], code, firstLine(out), errOut, wantUsage)
				}
				// Help after the arguments too.
				args := slices.Concat(l.path, placeholders(l.cmd.args), h)
				if code, out, _ := cli(ctx, dead, args...); code != 0 || firstLine(out) != wantUsage {
					t.Errorf("%q: exit %d, %q", args, code, firstLine(out))
				}
			}

			// One line for the mistake, then the usage; the flag package's
			// own messages nowhere.
			mistakes := [][]string{slices.Concat(l.path, placeholders(l.cmd.args), []string{"-no-such-flag"})}
			if len(l.cmd.args) > 0 {
				mistakes = append(mistakes, l.path, slices.Concat(l.path, placeholders(l.cmd.args), []string{"extra"}))
			} else {
				mistakes = append(mistakes, slices.Concat(l.path, []string{"extra"}))
			}
			for _, args := range mistakes {
				code, out, errOut := cli(ctx, dead, args...)
				lines := strings.Split(errOut, "\n")
				if code != exitUsage || out != "" || len(lines) < 2 || !strings.HasPrefix(lines[0], name+": ") ||
					lines[1] != wantUsage || strings.Count(errOut, lines[0]) != 1 || strings.Contains(errOut, "Usage of") {
					t.Errorf("%q: exit %d, stdout %q, stderr:\n%s\nwant exit 2, one error line, then %q", args, code, out, errOut, wantUsage)
				}
			}

			// Flags before and after the arguments: the command gets past
			// its usage either way.
			var flagArgs []string
			switch {
			case fs.Lookup("config") != nil:
				flagArgs = []string{"-config", missing}
			case fs.Lookup("addr") != nil:
				flagArgs = []string{"-addr", dead}
			default:
				return // version: nothing to place
			}
			for _, args := range [][]string{
				slices.Concat(l.path, flagArgs, placeholders(l.cmd.args)),
				slices.Concat(l.path, placeholders(l.cmd.args), flagArgs),
			} {
				if code, _, errOut := cli(ctx, dead, args...); code != exitFailed {
					t.Errorf("%q: exit %d (%s), want 1: it fails for want of a site or a daemon, past its usage", args, code, firstLine(errOut))
				}
			}
		})
	}
}

// TestExitCodes pins the exit codes and messages of the cases the README's
// "Exit codes" and the issue name.
func TestExitCodes(t *testing.T) {
	dir := t.TempDir()
	dead := "unix://" + filepath.Join(dir, "none.sock")
	write(t, filepath.Join(dir, "netboot", "undionly.kpxe"), nil, 0o644)
	write(t, filepath.Join(dir, "netboot", "snponly.efi"), nil, 0o644)
	good := filepath.Join(dir, "good.hcl")
	write(t, good, []byte("interface = \"eth1\"\ndhcp {\n  subnet = \"10.0.0.0/24\"\n}\n"), 0o644)
	bad := filepath.Join(dir, "bad.hcl")
	write(t, bad, []byte("interface = \"eth1\"\ndhcp {\n  subnet = \"10.0.0.0/33\"\n}\n"), 0o644)
	noProfile := filepath.Join(dir, "default.hcl")
	write(t, noProfile, []byte("interface = \"eth1\"\ndefault_profile = \"void-nomad\"\ndhcp {\n  subnet = \"10.0.0.0/24\"\n}\n"), 0o644)
	cases := []struct {
		args []string
		code int
		out  string // in stdout or stderr
	}{
		{[]string{"version"}, 0, "bootstrapd dev"},
		{nil, 2, "bootstrapd: missing command"},
		{[]string{"-h"}, 0, "usage: bootstrapd <command>"},
		{[]string{"frobnicate"}, 2, `bootstrapd: unknown command "frobnicate"`},
		{[]string{"check", "-config", good}, 0, "good.hcl: ok"},
		{[]string{"check", "-config", bad}, 1, "bad.hcl:3: subnet"},
		// A default_profile that no profile file defines, at its line.
		{[]string{"check", "-config", noProfile}, 1, "default.hcl:2: default_profile \"void-nomad\" is not in"},
		{[]string{"check", "-nope"}, 2, "bootstrapd check: flag provided but not defined: -nope\nusage: bootstrapd check [flags]"},
		{[]string{"enroll"}, 2, "bootstrapd enroll: missing <mac>\nusage: bootstrapd enroll [flags] <mac>"},
		{[]string{"enroll", "-wait", "ready", "52:54:00:aa:bb:cc"}, 1, "is `bootstrapd serve` running?"},
		{[]string{"enroll", "52:54:00:aa:bb:cc", "-wait", "ready"}, 1, "is `bootstrapd serve` running?"},
		{[]string{"router", "-json", "plan"}, 1, "is `bootstrapd serve` running?"},
		{[]string{"router", "-addr", dead, "plan", "-prune"}, 1, "is `bootstrapd serve` running?"},
		{[]string{"router", "-h"}, 0, "usage: bootstrapd router <subcommand>"},
		{[]string{"router", "plan", "-h"}, 0, "usage: bootstrapd router plan [flags]"},
		{[]string{"node", "-h"}, 0, "bootstrapd node show [flags] <mac|hostname>"},
		{[]string{"node", "boot", "n1"}, 2, "bootstrapd node boot: missing exit|sanboot|none"},
		{[]string{"nodes"}, 1, "is `bootstrapd serve` running?"},
	}
	for _, c := range cases {
		code, out, errOut := cli(context.Background(), dead, c.args...)
		if code != c.code || !strings.Contains(out+errOut, c.out) {
			t.Errorf("bootstrapd %q: exit %d, output %q %q; want exit %d mentioning %q", c.args, code, out, errOut, c.code, c.out)
		}
	}
}
