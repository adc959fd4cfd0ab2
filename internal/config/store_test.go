package config

import (
	"strconv"
	"strings"
	"testing"
)

// TestStore: the store block is optional; with it, each mistake is an
// error at its line that says what to write instead, and credentials in an
// endpoint are not echoed.
func TestStore(t *testing.T) {
	site := func(body string) string { // body starts at line 3
		return "interface = \"br0\"\nstore {\n" + body + "}\ndhcp {\n  subnet = \"10.0.0.0/24\"\n}\n"
	}
	cases := []struct {
		name, src string
		line      int
		want      string // "" for success
	}{
		{"etcd", site("  name = \"rack1-a\"\n  etcd {\n    endpoints = [\"http://10.0.0.11:2379\", \"http://10.0.0.12:2379\"]\n  }\n"), 0, ""},
		{"no etcd block", site("  name = \"a\"\n"), 2, "without an etcd block"},
		{"no endpoints", site("  etcd {\n    endpoints = []\n  }\n"), 4, "endpoints is empty"},
		{"not a URL", site("  etcd {\n    endpoints = [\"10.0.0.11:2379\"]\n  }\n"), 4, "not a client URL"},
		{"credentials", site("  etcd {\n    endpoints = [\"http://root:hunter2@10.0.0.11:2379\"]\n  }\n"), 4, "without credentials"},
		{"http with TLS", site("  etcd {\n    endpoints = [\"http://10.0.0.11:2379\"]\n    ca_file = \"/etc/hostname\"\n  }\n"), 4, "use https://"},
		{"cert without key", site("  etcd {\n    endpoints = [\"https://10.0.0.11:2379\"]\n    cert_file = \"/etc/hostname\"\n  }\n"), 5, "go together"},
		{"missing CA", site("  etcd {\n    endpoints = [\"https://10.0.0.11:2379\"]\n    ca_file = \"/nonexistent/ca.pem\"\n  }\n"), 5, "no such file"},
		{"prefix", site("  etcd {\n    endpoints = [\"http://10.0.0.11:2379\"]\n    prefix = \"bootstrapd\"\n  }\n"), 5, "start and end with '/'"},
		{"timeout", site("  etcd {\n    endpoints = [\"http://10.0.0.11:2379\"]\n    timeout = \"1h\"\n  }\n"), 5, "from 100ms to 1m"},
		{"name", site("  name = \"a b\"\n  etcd {\n    endpoints = [\"http://10.0.0.11:2379\"]\n  }\n"), 3, "store name"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := Load(writeSite(t, c.src))
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if s.Store.Etcd.Prefix != "/bootstrapd/" || s.Store.Etcd.TimeoutD == 0 || s.Store.Name == "" {
					t.Errorf("defaults not applied: %+v %+v", s.Store, s.Store.Etcd)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one saying %q", err, c.want)
			}
			if want := ":" + strconv.Itoa(c.line) + ":"; !strings.Contains(err.Error(), want) {
				t.Errorf("error %q is not at line %d", err, c.line)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error echoes the password: %v", err)
			}
		})
	}
}
