package config

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const pinned = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// TestPinFingerprint: the pin goes into the router block as one line under
// api, aligned like it, or replaces the value of one already there; every
// other byte of the file (comments, tabs, spacing, other blocks) stays as
// it was, and so does the file's mode. Sites it cannot edit safely are
// refused at their line with nothing written.
func TestPinFingerprint(t *testing.T) {
	cases := []struct {
		name, before, after string
		line                int
		want                string // an error, or ""
	}{
		{
			name: "added under api, aligned",
			before: "# my lab\ninterface = \"eth1\" # the rack side\n\nrouter {\n  api           = \"192.0.2.2:8729\"      # api-ssl\n" +
				"  user          = \"bootstrapd\"\n\tinterface = \"bridge\"   # tab-indented, on purpose\n}\n\nvault {\n  address = \"x\"\n}\n",
			after: "# my lab\ninterface = \"eth1\" # the rack side\n\nrouter {\n  api           = \"192.0.2.2:8729\"      # api-ssl\n" +
				"  fingerprint   = \"" + pinned + "\"\n" +
				"  user          = \"bootstrapd\"\n\tinterface = \"bridge\"   # tab-indented, on purpose\n}\n\nvault {\n  address = \"x\"\n}\n",
			line: 6,
		},
		{
			name:   "added, api unaligned",
			before: "router {\n    api = \"h:8729\"\n}\n",
			after:  "router {\n    api = \"h:8729\"\n    fingerprint = \"" + pinned + "\"\n}\n",
			line:   3,
		},
		{
			name:   "replaced",
			before: "router {\n  api         = \"h:8729\"\n  fingerprint = \"aa:bb\" # old\n}\n",
			after:  "router {\n  api         = \"h:8729\"\n  fingerprint = \"" + pinned + "\" # old\n}\n",
			line:   3,
		},
		{name: "ca_file", before: "router {\n  api = \"h:8729\"\n  ca_file = \"ca.pem\"\n}\n", line: 3, want: "remove that line"},
		{name: "one line", before: "router { api = \"h:8729\" }\n", line: 1, want: "yourself"},
		{name: "no router", before: "interface = \"eth1\"\n", line: 1, want: "no router block"},
		{name: "two routers", before: "router {\n  api = \"a:1\"\n}\nrouter {\n  api = \"b:1\"\n}\n", line: 4, want: "second router block"},
		{name: "syntax", before: "router {\n  api = \n}\n", line: 2, want: ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "site.hcl")
			if err := os.WriteFile(p, []byte(c.before), 0o640); err != nil {
				t.Fatal(err)
			}
			line, changed, err := PinFingerprint(p, pinned)
			got, _ := os.ReadFile(p)
			if c.after == "" {
				if err == nil || !strings.HasPrefix(err.Error(), p+":"+strconv.Itoa(c.line)+":") || !strings.Contains(err.Error(), c.want) {
					t.Errorf("error %v, want at line %d mentioning %q", err, c.line, c.want)
				}
				if string(got) != c.before {
					t.Errorf("the file changed:\n%s", got)
				}
				return
			}
			if err != nil || !changed || line != c.line {
				t.Fatalf("PinFingerprint: line %d changed %v err %v; want line %d", line, changed, err, c.line)
			}
			if string(got) != c.after {
				t.Errorf("file:\n%s\nwant:\n%s", got, c.after)
			}
			if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o640 {
				t.Errorf("mode %v", fi.Mode())
			}
			if api, err := RouterAPI(p); err != nil || !strings.HasSuffix(api, ":8729") {
				t.Errorf("RouterAPI: %q %v", api, err)
			}
			// Again: nothing to change.
			if line2, changed, err := PinFingerprint(p, pinned); err != nil || changed || line2 != line {
				t.Errorf("again: line %d changed %v err %v", line2, changed, err)
			}
			if entries, _ := os.ReadDir(filepath.Dir(p)); len(entries) != 1 {
				t.Errorf("left behind: %v", entries)
			}
		})
	}
	if _, _, err := PinFingerprint(filepath.Join(t.TempDir(), "x.hcl"), "abc"); err == nil || !strings.Contains(err.Error(), "SHA-256") {
		t.Errorf("a bad fingerprint: %v", err)
	}
}
