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

func TestParseInterspersed(t *testing.T) {
	cases := []struct {
		args    []string
		pos     []string
		profile string
		json    bool
	}{
		{[]string{"52:54:00:aa:bb:cc"}, []string{"52:54:00:aa:bb:cc"}, "", false},
		{[]string{"-profile", "p", "52:54:00:aa:bb:cc"}, []string{"52:54:00:aa:bb:cc"}, "p", false},
		{[]string{"52:54:00:aa:bb:cc", "-profile", "p", "-json"}, []string{"52:54:00:aa:bb:cc"}, "p", true},
		{[]string{"show", "--profile=p", "n1"}, []string{"show", "n1"}, "p", false},
		{[]string{"--", "-x"}, []string{"-x"}, "", false},
	}
	for _, c := range cases {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		profile := fs.String("profile", "", "")
		asJSON := fs.Bool("json", false, "")
		pos, err := parse(fs, &env{stderr: &bytes.Buffer{}}, c.args)
		if err != nil || !slices.Equal(pos, c.pos) || *profile != c.profile || *asJSON != c.json {
			t.Errorf("parse(%q) = %q profile=%q json=%v err=%v", c.args, pos, *profile, *asJSON, err)
		}
	}
}

func runCLI(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(context.Background(), &env{stdout: &out, stderr: &errb, getenv: func(string) string { return "" }}, args)
	return code, out.String(), errb.String()
}

func TestExitCodes(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "netboot"), 0o755)
	for _, f := range []string{"undionly.kpxe", "snponly.efi"} {
		os.WriteFile(filepath.Join(dir, "netboot", f), nil, 0o644)
	}
	good := filepath.Join(dir, "good.hcl")
	os.WriteFile(good, []byte("interface = \"eth1\"\ndhcp {\n  subnet = \"10.0.0.0/24\"\n}\n"), 0o644)
	bad := filepath.Join(dir, "bad.hcl")
	os.WriteFile(bad, []byte("interface = \"eth1\"\ndhcp {\n  subnet = \"10.0.0.0/33\"\n}\n"), 0o644)
	cases := []struct {
		args []string
		code int
		out  string // in stdout or stderr
	}{
		{[]string{"version"}, 0, "bootstrapd dev"},
		{nil, 0, "usage: bootstrapd"},
		{[]string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{[]string{"check", "-config", good}, 0, "good.hcl: ok"},
		{[]string{"check", "-config", bad}, 1, "bad.hcl:3: subnet"},
		{[]string{"check", "-nope"}, 2, "flag provided but not defined: -nope"},
		{[]string{"enroll"}, 2, "usage: bootstrapd enroll <mac>"},
		{[]string{"nodes", "-addr", "unix://" + filepath.Join(dir, "none.sock")}, 1, "is `bootstrapd serve` running?"},
	}
	for _, c := range cases {
		code, out, errOut := runCLI(c.args...)
		if code != c.code || !strings.Contains(out+errOut, c.out) {
			t.Errorf("bootstrapd %q: exit %d, output %q %q; want exit %d mentioning %q", c.args, code, out, errOut, c.code, c.out)
		}
	}
}
