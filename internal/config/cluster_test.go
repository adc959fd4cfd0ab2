package config

import (
	"strconv"
	"strings"
	"testing"
)

// TestClusterBlocks: the vault and nomad blocks' mistakes are reported at
// their line, and a token is never printed.
func TestClusterBlocks(t *testing.T) {
	const head = "interface = \"br0\"\ndhcp {\n  mode = \"off\"\n}\n" // lines 1-4
	cases := []struct {
		name, body, env string
		line            int
		want            string // "" for success
	}{
		{"vault good", "vault {\n  address = \"https://vault.lab:8200\"\n}\n", "tok3n-vault", 0, ""},
		{"vault no token", "vault {\n  address = \"https://vault.lab:8200\"\n}\n", "", 5, "VAULT_TOKEN"},
		{"vault bad address", "vault {\n  address = \"vault.lab:8200\"\n}\n", "tok3n-vault", 6, `vault address "vault.lab:8200" is not a URL`},
		{"vault bad wrap_ttl", "vault {\n  address = \"https://vault.lab:8200\"\n  wrap_ttl = \"5s\"\n}\n", "tok3n-vault", 7, "from 1m to 24h"},
		{"vault token file missing", "vault {\n  address = \"https://vault.lab:8200\"\n  token_file = \"nope\"\n}\n", "", 7, "no such file"},
		{"nomad without ACLs needs no token", "nomad {\n  address = \"http://10.0.0.1:4646\"\n  worker_template = \"/dev/null\"\n}\n", "", 0, ""},
		{"nomad bad address", "nomad {\n  address = \"10.0.0.1:4646\"\n}\n", "", 6, "nomad address"},
		{"nomad bad drain", "nomad {\n  address = \"http://10.0.0.1:4646\"\n  drain_deadline = \"soon\"\n}\n", "", 7, "drain_deadline"},
		{"nomad no template", "nomad {\n  address = \"http://10.0.0.1:4646\"\n  worker_template = \"/nonexistent.tmpl\"\n}\n", "", 7, "worker job template"},
		{"nomad unknown vault integration", "nomad {\n  address = \"http://10.0.0.1:4646\"\n  worker_template = \"/dev/null\"\n  vault_integration = \"approle\"\n}\n", "", 8, `vault_integration "approle"`},
		{"nomad servers only, vault, integration unsaid", "vault {\n  address = \"https://vault.lab:8200\"\n}\nnomad {\n  servers = [\"10.0.0.1:4647\"]\n}\n", "tok3n-vault", 8, "set vault_integration"},
		{"nomad servers only, vault, integration said", "vault {\n  address = \"https://vault.lab:8200\"\n}\nnomad {\n  servers = [\"10.0.0.1:4647\"]\n  vault_integration = \"token\"\n}\n", "tok3n-vault", 0, ""},
		{"discovery max_nodes too large", "discovery {\n  max_nodes = 1000000\n}\n", "", 6, "max_nodes 1000000"},
		{"discovery forget_after bad", "discovery {\n  forget_after = \"forever\"\n}\n", "", 6, "forget_after"},
		{"discovery good", "discovery {\n  max_nodes = 64\n  forget_after = \"1h\"\n}\n", "", 0, ""},
		{"nomad introduction without address", "nomad {\n  servers = [\"10.0.0.1:4647\"]\n  introduction = true\n}\n", "", 7, "introduction = true needs address"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv("VAULT_TOKEN", c.env)
			t.Setenv("NOMAD_TOKEN", "")
			p := writeSite(t, head+c.body)
			s, err := Load(p)
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if s.Vault != nil && s.Vault.Token() != c.env {
					t.Errorf("vault token %q", s.Vault.Token())
				}
				return
			}
			if err == nil {
				t.Fatal("Load succeeded, want an error")
			}
			if prefix := p + ":" + strconv.Itoa(c.line) + ":"; !strings.HasPrefix(err.Error(), prefix) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q, want %q... mentioning %q", err, prefix, c.want)
			}
			if strings.Contains(err.Error(), "tok3n") {
				t.Errorf("error %q shows the token", err)
			}
		})
	}
}
