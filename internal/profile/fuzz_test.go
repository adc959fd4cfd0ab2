package profile

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// FuzzLoadDir: any profile file, with any template file beside it, loads
// or fails naming the file, never panics; every profile that loads renders
// an iPXE script for a plain node, and for any node either renders one no
// value has added a line, command or comment to, or refuses; its templates
// render or fail, never panic.
func FuzzLoadDir(f *testing.F) {
	f.Add([]byte(good), []byte(""), "n7", "r1")
	f.Add([]byte(`profile "p" {
  kernel    = "void/vmlinuz"
  initrd    = ["void/initrd", "void/extra.img"]
  cmdline   = "auto autourl={{.ConfigURL}}/a.cfg host={{.Hostname}} rack={{index .Labels \"rack\"}} {{hclq .MAC}}"
  templates = { "a.cfg" = "t.tmpl" }
  local_boot = "exit"
  install_timeout = "45m"
  nomad {
    datacenter = "dc1"
    node_pool  = "default"
    node_class = "ci"
    meta       = { concourse_worker = "true" }
  }
}
`), []byte("hostname={{shq .Hostname}}\nrack={{with index .Labels \"rack\"}}{{shq .}}{{else}}none{{end}}\n{{range $k, $v := .Nomad.Meta}}{{hclq $k}} = {{hclq $v}}\n{{end}}status={{shq .StatusURL}}\n"),
		"n1", "rack 7'\n$(x)")
	f.Add([]byte("profile \"a\" {\n  kernel = \"k\"\n  cmdline = <<-EOT\n    quiet\n    x={{.IP}}\n  EOT\n}\n"), []byte("{{.Nope}}"), "", "")
	f.Fuzz(func(t *testing.T, src, tmpl []byte, hostname, label string) {
		dir := t.TempDir()
		hcl := filepath.Join(dir, "p.hcl")
		for name, b := range map[string][]byte{hcl: src, filepath.Join(dir, "t.tmpl"): tmpl} {
			if err := os.WriteFile(name, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		ps, err := LoadDir(dir)
		if err != nil && !strings.Contains(err.Error(), hcl) {
			t.Fatalf("error does not name %s: %v", hcl, err)
		}
		for _, p := range ps {
			// What loads renders for a plain node: every check on the
			// profile's own values was made at load, at their lines.
			out, err := p.IPXEScript(p.sample())
			if err != nil {
				t.Fatalf("profile %s loaded but renders no script for a plain node: %v", p.Name, err)
			}
			checkScript(t, p, out)
			d := p.sample()
			d.Hostname, d.Labels = hostname, map[string]string{"rack": label, "disk": label}
			if out, err := p.IPXEScript(d); err == nil {
				checkScript(t, p, out)
			}
			for name := range p.Templates {
				_, _ = p.Render(name, d)
			}
		}
	})
}

// fuzzNode is what FuzzVoidNomad varies: every node value and profile
// value the void-nomad templates write, by its place in placeholders.
type fuzzNode struct {
	hostname, mac, disk, timezone, repo, dc, pool, class, metaKey, metaVal string
}

func (n fuzzNode) values() []string {
	return []string{n.hostname, n.mac, n.disk, n.timezone, n.repo, n.dc, n.pool, n.class, n.metaKey, n.metaVal}
}

// data is the node as the HTTP handler hands it to the templates.
func (n fuzzNode) data(p *Profile) Data {
	// The URLs carry a token made from the hostname given here; they are
	// not what is fuzzed, so the same for every node.
	d := voidData(p, n.mac, "fuzz", map[string]string{"disk": n.disk, "timezone": n.timezone, "xbps_repository": n.repo})
	d.Hostname = n.hostname
	d.Nomad = Nomad{Datacenter: n.dc, NodePool: n.pool, NodeClass: n.class, Meta: map[string]string{n.metaKey: n.metaVal}}
	return d
}

// placeholders is n with every non-empty value replaced by PH<i>: the same
// template branches ({{with}} skips empty values), and quoted values that
// are easy to find in the output.
func (n fuzzNode) placeholders() (fuzzNode, []string) {
	vs := n.values()
	for i, v := range vs {
		if v != "" {
			vs[i] = fmt.Sprintf("PH%d", i)
		}
	}
	return fuzzNode{vs[0], vs[1], vs[2], vs[3], vs[4], vs[5], vs[6], vs[7], vs[8], vs[9]}, n.values()
}

// readShellWord reads, from the start of s, one word as a POSIX shell does
// when it is made only of single-quoted parts and \' (shq's form): inside
// single quotes every byte is itself. It returns the word's value and
// length, or ok false when s does not start with such a word.
func readShellWord(s string) (val string, n int, ok bool) {
	var b strings.Builder
	for n < len(s) {
		switch {
		case s[n] == '\'':
			end := strings.IndexByte(s[n+1:], '\'')
			if end < 0 {
				return "", 0, false
			}
			b.WriteString(s[n+1 : n+1+end])
			n += end + 2
		case strings.HasPrefix(s[n:], `\'`):
			b.WriteByte('\'')
			n += 2
		default:
			return b.String(), n, n > 0
		}
	}
	return b.String(), n, n > 0
}

// readHCLString reads a double-quoted string literal from the start of s
// (hclq's form, which reads the same in HCL and JSON) and decodes it.
func readHCLString(s string) (val string, n int, ok bool) {
	if !strings.HasPrefix(s, `"`) {
		return "", 0, false
	}
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			if err := json.Unmarshal([]byte(s[:i+1]), &val); err != nil {
				return "", 0, false
			}
			return val, i + 1, true
		case '\n':
			return "", 0, false
		}
	}
	return "", 0, false
}

// matchRendered checks got (rendered with the fuzzed values) against want
// (rendered with placeholders): the same text everywhere but at the
// placeholders, and at each one a single shell word (for 'PHi') or HCL
// string (for "PHi") that reads back as value i. So no value runs, ends a
// here-document or is cut short, whatever it holds.
func matchRendered(t *testing.T, name, got, want string, values []string) {
	t.Helper()
	pos := 0
	last := 0
	placeholder := regexp.MustCompile(`'PH[0-9]'|"PH[0-9]"`)
	for _, m := range placeholder.FindAllStringIndex(want, -1) {
		lit := want[last:m[0]]
		if !strings.HasPrefix(got[pos:], lit) {
			t.Fatalf("%s: text before %s differs at byte %d:\n got %q\nwant %q", name, want[m[0]:m[1]], pos, head(got[pos:]), head(lit))
		}
		pos += len(lit)
		tok := want[m[0]:m[1]]
		i := int(tok[3] - '0')
		read, wantVal := readShellWord, values[i]
		if tok[0] == '"' {
			read, wantVal = readHCLString, validUTF8(values[i])
		}
		v, n, ok := read(got[pos:])
		if !ok || v != wantVal {
			t.Fatalf("%s: value %d %q is written as %q, which reads back as %q (ok %v)", name, i, values[i], head(got[pos:]), v, ok)
		}
		pos += n
		last = m[1]
	}
	if got[pos:] != want[last:] {
		t.Fatalf("%s: text after the last value differs:\n got %q\nwant %q", name, head(got[pos:]), head(want[last:]))
	}
}

func head(s string) string {
	if len(s) > 120 {
		return s[:120] + "..."
	}
	return s
}

// FuzzVoidNomad: whatever a node's values (hostname, MAC, labels) and the
// profile's Nomad values hold, the void-nomad profile's autoinstall.cfg and
// postinstall.sh hold each as one quoted word (shq) or HCL string (hclq)
// that reads back as the value, and are otherwise what the template says;
// the iPXE script has no line, command or comment a value added. A NUL,
// which no shell word can hold, is the one refusal.
func FuzzVoidNomad(f *testing.F) {
	p := voidProfile(f)
	f.Add("n1", "52:54:00:aa:bb:01", "", "", "", "dc1", "default", "ci", "concourse_worker", "true")
	f.Add("n2", "52:54:00:aa:bb:02", "/dev/vda", "Europe/Berlin", "https://mirror.example/void/current", "", "", "", "", "")
	for _, v := range hostile {
		f.Add(v, "52:54:00:aa:bb:03", v, v, v, v, v, v, v, v)
	}
	f.Add("n3\nBOOTSTRAPD_NOMAD_HCL", "x", "'", "\\", "$(x)", "a\nBOOTSTRAPD_NOMAD_HCL\n", "${x}", "%{y}", "k\"", "\u2028")
	f.Fuzz(func(t *testing.T, hostname, mac, disk, timezone, repo, dc, pool, class, metaKey, metaVal string) {
		n := fuzzNode{hostname, mac, disk, timezone, repo, dc, pool, class, metaKey, metaVal}
		ph, values := n.placeholders()
		d, pd := n.data(p), ph.data(p)
		for _, name := range []string{"autoinstall.cfg", "postinstall.sh"} {
			want, err := p.Render(name, pd)
			if err != nil {
				t.Fatalf("%s with placeholders: %v", name, err)
			}
			got, err := p.Render(name, d)
			if err != nil {
				if !strings.Contains(err.Error(), "NUL") || !strings.Contains(strings.Join(values, ""), "\x00") {
					t.Fatalf("%s: %v", name, err)
				}
				continue
			}
			matchRendered(t, name, string(got), string(want), values)
		}
		if out, err := p.IPXEScript(d); err == nil {
			checkScript(t, p, out)
		}
	})
}
