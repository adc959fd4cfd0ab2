package config

import (
	"os"
	"path/filepath"
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
		{"package_cache good", "package_cache {\n  upstream = \"https://repo-default.voidlinux.org/current\"\n}\n", "", 0, ""},
		{"package_cache not a URL", "package_cache {\n  upstream = \"repo-default.voidlinux.org\"\n}\n", "", 6, "package_cache upstream"},
		{"package_cache credentials in the URL", "package_cache {\n  upstream = \"https://u:tok3n@mirror.lab/current\"\n}\n", "", 6, "holds credentials"},
		{"package_cache too large", "package_cache {\n  upstream = \"http://mirror.lab/current\"\n  max_gib = 100000\n}\n", "", 7, "max_gib 100000"},
		{"package_cache bad revalidate", "package_cache {\n  upstream = \"http://mirror.lab/current\"\n  revalidate = \"often\"\n}\n", "", 7, "revalidate"},
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

// TestStandInWorker: nomad.stand_in_worker must be an executable file,
// relative to the site file, and comes only with what the stand-in worker
// connects with; each mistake is reported at a line, naming the setting.
func TestStandInWorker(t *testing.T) {
	const head = "interface = \"br0\"\ndhcp {\n  mode = \"off\"\n}\nvault {\n  address = \"https://vault.lab:8200\"\n}\n" // lines 1-7
	const tsa = "  tsa_host = \"10.77.0.1:2222\"\n  tsa_public_key = \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIF4bJkC1pr3cYbSwbRzr4W5hpAKH3FoQytDeGyGOiKUd tsa\"\n"
	nomad := func(lines string) string {
		return "nomad {\n  servers = [\"10.0.0.1:4647\"]\n  vault_integration = \"token\"\n" + lines + "}\n" // nomad on line 8, lines from 11
	}
	for _, tt := range []struct {
		name, body string
		line       int
		want       string // "" for success
	}{
		{"good", head + nomad("  stand_in = true\n  stand_in_worker = \"bin/concourse-standin\"\n"+tsa), 0, ""},
		{"missing", head + nomad("  stand_in = true\n  stand_in_worker = \"bin/nope\"\n"+tsa), 12, "no such file"},
		{"not executable", head + nomad("  stand_in = true\n  stand_in_worker = \"bin/plain\"\n"+tsa), 12, "not executable"},
		{"directory", head + nomad("  stand_in = true\n  stand_in_worker = \"bin\"\n"+tsa), 12, "not a regular file"},
		{"without stand_in", head + nomad("  stand_in_worker = \"bin/concourse-standin\"\n"+tsa), 11, "needs stand_in = true"},
		{"without tsa_host", head + nomad("  stand_in = true\n  stand_in_worker = \"bin/concourse-standin\"\n  tsa_public_key = \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIF4bJkC1pr3cYbSwbRzr4W5hpAKH3FoQytDeGyGOiKUd\"\n"), 8, "needs tsa_host"},
		{"tsa_host without port", head + nomad("  stand_in = true\n  stand_in_worker = \"bin/concourse-standin\"\n  tsa_host = \"10.77.0.1\"\n"), 13, "needs tsa_host"},
		{"without tsa_public_key", head + nomad("  stand_in = true\n  stand_in_worker = \"bin/concourse-standin\"\n  tsa_host = \"10.77.0.1:2222\"\n"), 8, "needs tsa_public_key"},
		{"bad tsa_public_key", head + nomad("  stand_in = true\n  stand_in_worker = \"bin/concourse-standin\"\n  tsa_host = \"10.77.0.1:2222\"\n  tsa_public_key = \"ssh-rsa AAAA\"\n"), 14, "needs tsa_public_key"},
		{"without vault", "interface = \"br0\"\ndhcp {\n  mode = \"off\"\n}\nnomad {\n  stand_in = true\n  stand_in_worker = \"bin/concourse-standin\"\n" + tsa + "}\n", 7, "needs a vault block"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("VAULT_TOKEN", "tok3n-vault")
			t.Setenv("NOMAD_TOKEN", "")
			p := writeSite(t, tt.body)
			bin := filepath.Join(filepath.Dir(p), "bin")
			if err := os.Mkdir(bin, 0o755); err != nil {
				t.Fatal(err)
			}
			for name, mode := range map[string]os.FileMode{"concourse-standin": 0o755, "plain": 0o644} {
				if err := os.WriteFile(filepath.Join(bin, name), []byte("#!/bin/sh\n"), mode); err != nil {
					t.Fatal(err)
				}
			}
			s, err := Load(p)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if want := filepath.Join(bin, "concourse-standin"); s.Nomad.StandInWorker != want {
					t.Errorf("stand_in_worker %q, want %q", s.Nomad.StandInWorker, want)
				}
				return
			}
			if prefix := p + ":" + strconv.Itoa(tt.line) + ":"; err == nil || !strings.HasPrefix(err.Error(), prefix) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want %q... mentioning %q", err, prefix, tt.want)
			}
		})
	}
}
