package profile

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/bootstrapd/bootstrapd/internal/hclq"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// hostile values for the quoting functions; "CANARY" is replaced by a
// directory that must stay empty: any payload that runs creates a file there.
var hostile = []string{
	"",
	"plain",
	"it's",
	"'",
	"''",
	`'\''`,
	`"double" "quotes"`,
	"$(touch CANARY/dollar-paren)",
	"`touch CANARY/backtick`",
	"${HOME}$HOME$$ $0 $1 $@ $*",
	"'; touch CANARY/semicolon; '",
	`"; touch CANARY/dq; "`,
	"; rm -rf / ; touch CANARY/rm",
	"a\nb\n",
	"\n'\n$(touch CANARY/newline)\n'\n",
	"trailing newline\n",
	"tab\there\rcarriage",
	`back\slash\\ \n \' \"`,
	"\\",
	"ünïcödé ✓ 日本語 🚀",
	"line\u2028sep\u2029para",
	"bell\a esc\x1b del\x7f c1\u0085",
	"not utf-8: \xff\xfe",
	"* ? [a-z] ~ # & | < > ( ) { } !",
	"${x} %{if true}y%{endif} $${z} %%{w} ${ %{",
	"$", "%", "${", "%{", "$$", "a$", "a%",
	"}}{{ .Hostname }}",
	"-e", "-n", "--", "=", "x=1 y=2",
}

func canaryValues(t *testing.T) (dir string, values []string) {
	t.Helper()
	dir = t.TempDir()
	for _, v := range hostile {
		values = append(values, strings.ReplaceAll(v, "CANARY", dir))
	}
	return dir, values
}

func assertEmptyDir(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		t.Errorf("a payload ran: %s exists", filepath.Join(dir, e.Name()))
	}
}

// shells are the POSIX shells on this machine to try shq with: sh is
// required, bash and busybox sh are tried when present.
func shells(t *testing.T) [][]string {
	t.Helper()
	if _, err := exec.LookPath("sh"); err != nil {
		t.Fatal("no sh on PATH")
	}
	out := [][]string{{"sh"}}
	if _, err := exec.LookPath("bash"); err == nil {
		out = append(out, []string{"bash", "--posix"})
	}
	if _, err := exec.LookPath("busybox"); err == nil {
		out = append(out, []string{"busybox", "sh"})
	}
	return out
}

func TestShqSourcedRoundTrip(t *testing.T) {
	canary, values := canaryValues(t)
	dir := t.TempDir()
	for _, shell := range shells(t) {
		for i, v := range values {
			q, err := shq(v)
			if err != nil {
				t.Fatalf("shq(%q): %v", v, err)
			}
			// As a sourced config file, with something after it on the
			// same line and the next, as the installer's config has.
			file := filepath.Join(dir, "cfg")
			if err := os.WriteFile(file, []byte("v="+q+"\nafter=ok\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			args := append(append([]string{}, shell[1:]...), "-c", `. "$1"; printf %s "$v"`, "sh", file)
			out, err := exec.Command(shell[0], args...).Output()
			if err != nil {
				t.Fatalf("%s: sourcing v=%s: %v", shell[0], q, err)
			}
			if string(out) != v {
				t.Errorf("%s #%d: sourced %s, got %q, want %q", shell[0], i, q, out, v)
			}
			// As an argument: exactly one word, whatever it holds.
			script := "set -- " + q + "; printf '%s|%s' \"$#\" \"$1\""
			out, err = exec.Command(shell[0], append(append([]string{}, shell[1:]...), "-c", script)...).Output()
			if err != nil {
				t.Fatalf("%s: set -- %s: %v", shell[0], q, err)
			}
			if want := "1|" + v; string(out) != want {
				t.Errorf("%s #%d: as an argument %s gives %q, want %q", shell[0], i, q, out, want)
			}
		}
	}
	assertEmptyDir(t, canary)
}

func TestShqForm(t *testing.T) {
	for v, want := range map[string]string{
		"":         "''",
		"abc":      "'abc'",
		"it's":     `'it'\''s'`,
		"a\nb":     "'a\nb'",
		"$(x) `y`": "'$(x) `y`'",
	} {
		if got, err := shq(v); err != nil || got != want {
			t.Errorf("shq(%q) = %q, %v; want %q", v, got, err, want)
		}
	}
	if _, err := shq("a\x00b"); err == nil {
		t.Error("shq accepted a NUL byte")
	}
}

// validUTF8 is what hclq promises to preserve: invalid bytes become U+FFFD.
func validUTF8(s string) string {
	var b strings.Builder
	for _, r := range s {
		b.WriteRune(r) // invalid bytes decode as utf8.RuneError
	}
	return b.String()
}

func TestHclqRoundTrip(t *testing.T) {
	_, values := canaryValues(t)
	values = append(values, "nul\x00byte", "ctl\x01\x02\x1f")
	for _, v := range values {
		q := hclq.Quote(v)
		want := validUTF8(v)
		if !utf8.ValidString(q) || strings.ContainsAny(q, "\n\r\u2028\u2029") {
			t.Errorf("hclq(%q) = %q: not one line of UTF-8", v, q)
		}
		// HCL 2 native syntax, as an attribute and as an object key and
		// value; no evaluation context, so an interpolation left in would
		// fail ("Variables not allowed").
		src := "a = " + q + "\nm = { " + q + " = " + q + " }\n"
		f, diags := hclsyntax.ParseConfig([]byte(src), "t.hcl", hcl.InitialPos)
		if diags.HasErrors() {
			t.Errorf("hclq(%q) = %s does not parse: %v", v, q, diags)
			continue
		}
		attrs, _ := f.Body.JustAttributes()
		a, diags := attrs["a"].Expr.Value(nil)
		if diags.HasErrors() {
			t.Errorf("hclq(%q) = %s does not evaluate: %v", v, q, diags)
			continue
		}
		if got := a.AsString(); got != want {
			t.Errorf("hclq(%q) = %s reads back as %q in HCL", v, q, got)
		}
		m, diags := attrs["m"].Expr.Value(nil)
		if diags.HasErrors() {
			t.Errorf("hclq(%q) as a key: %v", v, diags)
			continue
		}
		if got := m.GetAttr(want); got.AsString() != want {
			t.Errorf("hclq(%q) as a key reads back as %#v", v, m)
		}
		// JSON: the same literal is a JSON string with the same value.
		var s string
		if err := json.Unmarshal([]byte(q), &s); err != nil || s != want {
			t.Errorf("hclq(%q) = %s as JSON: %q, %v", v, q, s, err)
		}
	}
	for v, want := range map[string]string{
		"plain":   `"plain"`,
		`a"b\c`:   `"a\"b\\c"`,
		"${x}":    `"\u0024{x}"`,
		"%{x}":    `"\u0025{x}"`,
		"$x %x":   `"$x %x"`,
		"ü\n":     `"ü\n"`,
		"\x00":    `"\u0000"`,
		"\xff":    "\"\uFFFD\"",
		"$${x}":   `"$\u0024{x}"`,
		"a\tb\rc": `"a\tb\rc"`,
	} {
		if got := hclq.Quote(v); got != want {
			t.Errorf("hclq(%q) = %s, want %s", v, got, want)
		}
	}
}

// The functions are there for every template, command line included.
func TestFuncsInTemplates(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"p.hcl": `profile "p" {
  kernel    = "k"
  cmdline   = "x={{hclq .Hostname}}"
  templates = { "f" = "f.tmpl" }
}`,
		"f.tmpl": `h={{shq .Hostname}} d={{with index .Labels "disk"}}{{shq .}}{{else}}none{{end}} j={{shq .JoinURL}}`,
	})
	ps, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	p := ps["p"]
	if s, err := p.RenderCmdline(Data{Hostname: "n'1"}); err != nil || s != `x="n'1"` {
		t.Fatalf("cmdline = %q, %v", s, err)
	}
	out, err := p.Render("f", Data{Hostname: "n'1", Labels: map[string]string{"disk": "/dev/vda"}, JoinURL: "http://s/j"})
	if want := `h='n'\''1' d='/dev/vda' j='http://s/j'`; err != nil || string(out) != want {
		t.Fatalf("render = %q, %v; want %q", out, err, want)
	}
	if _, err := p.Render("f", Data{Hostname: "a\x00b"}); err == nil || !strings.Contains(err.Error(), "NUL") {
		t.Fatalf("NUL in a shq value: %v", err)
	}
	if p.sample().JoinURL != "http://10.0.0.254:8080/install/TOKEN/join" {
		t.Fatalf("sample JoinURL = %q", p.sample().JoinURL)
	}
}
