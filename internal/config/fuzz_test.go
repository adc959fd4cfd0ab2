package config

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/bootstrapd/bootstrapd/internal/routeros/routerostest"
)

// fuzzSeeds are sites that load, between them using every block, so the
// fuzzer starts from the shapes real sites have. Paths are relative: they
// name the files loadFuzzed writes beside site.hcl.
func fuzzSeeds() []string {
	return []string{
		"interface = \"br0\"\ndhcp {\n  subnet = \"10.77.0.0/24\"\n}\n",
		"interface = \"br0\"\ndhcp {\n  mode = \"off\"\n}\n",
		`interface       = "prov0"
server_address  = "10.77.0.2"
state_dir       = "state"
default_profile = "void-nomad"
dhcp {
  mode       = "pool"
  subnet     = "10.77.0.0/24"
  range      = ["10.77.0.100", "10.77.0.199"]
  router     = "10.77.0.1"
  dns        = ["10.77.0.1"]
  domain     = "lab.example"
  lease_time = "12h"
}
boot {
  bios = "undionly.kpxe"
}
tftp {
  listen  = ":69"
  blksize = 1468
}
http {
  listen = ":8080"
}
api {
  socket     = "api.sock"
  listen     = "10.77.0.2:8081"
  token_file = "secret"
}
node {
  authorized_keys = "authorized_keys"
}
discovery {
  max_nodes    = 512
  forget_after = "24h"
}
router {
  api           = "10.77.0.1:8729"
  ca_file       = "ca.pem"
  password_file = "secret"
  identity      = "lab-gw"
  interface     = "bridge"
  vlan_id       = 77
  api_from      = ["10.77.0.2", "10.77.0.0/24"]
  timeout       = "5s"
  bootstrap {
    interface = "ether1"
    address   = "192.0.2.2/30"
    operator  = "192.0.2.1"
  }
}
vault {
  address    = "https://vault.lab.example:8200"
  token_file = "secret"
  ca_file    = "ca.pem"
  wrap_ttl   = "10m"
}
nomad {
  servers         = ["10.77.0.10:4647"]
  address         = "https://nomad.lab.example:4646"
  token_file      = "secret"
  worker_template = "worker.tmpl"
  drain_deadline  = "1h"
  introduction    = true
}
`,
		`interface = "br0"
dhcp {
  mode   = "proxy"
  subnet = "10.77.0.0/24"
  router = "10.77.0.254"
}
router {
  api         = "10.77.0.254:8729"
  fingerprint = "1cef6972e0e8c4526982e255f759d89c77d52b640b99a3111a2fb9da531d842a"
  interface   = "ether2"
  dhcp        = "router"
}
nomad {
  servers           = ["10.77.0.1:4647"]
  vault_integration = "workload_identity"
}
`,
	}
}

// testCA is a PEM certificate for the seeds' ca_file.
func testCA(tb testing.TB) []byte {
	tb.Helper()
	conf, _, err := routerostest.SelfSigned()
	if err != nil {
		tb.Fatal(err)
	}
	cert, _, err := routerostest.PEM(conf)
	if err != nil {
		tb.Fatal(err)
	}
	return cert
}

// fuzzEnv sets the credentials' fallbacks, so sites without token files
// get as far as those with them.
func fuzzEnv(tb testing.TB) {
	tb.Setenv("VAULT_TOKEN", "fuzz-vault")
	tb.Setenv("NOMAD_TOKEN", "fuzz-nomad")
	tb.Setenv(RouterPasswordEnv, "fuzz-router")
}

// loadFuzzed loads src as site.hcl in a fresh directory holding the boot
// files (writeSite) and the files the seeds name.
func loadFuzzed(t *testing.T, ca, src []byte) (string, *Site, error) {
	t.Helper()
	p := writeSite(t, string(src))
	dir := filepath.Dir(p)
	for _, f := range []struct {
		name, body string
		mode       os.FileMode
	}{
		{"secret", "fuzz-secret\n", 0o600},
		{"authorized_keys", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFuzz fuzz\n", 0o644},
		{"worker.tmpl", "job {}\n", 0o644},
		{"ca.pem", string(ca), 0o644},
	} {
		// WriteFile's mode passes through the umask, which only removes bits.
		if err := os.WriteFile(filepath.Join(dir, f.name), []byte(f.body), f.mode); err != nil {
			t.Fatal(err)
		}
	}
	s, err := Load(p)
	return p, s, err
}

// FuzzLoad: any bytes as a site file load or fail with an error that
// starts with file:line, never a panic; what loads is inside the bounds
// the rest of bootstrapd relies on (subnet size, range, lease).
func FuzzLoad(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add([]byte(s))
	}
	ca := testCA(f)
	fuzzEnv(f)
	f.Fuzz(func(t *testing.T, src []byte) {
		p, s, err := loadFuzzed(t, ca, src)
		if err != nil {
			if !regexp.MustCompile(`^` + regexp.QuoteMeta(p) + `:[0-9]+: `).MatchString(err.Error()) {
				t.Fatalf("error without %s:line: %q", p, err)
			}
			return
		}
		checkLoaded(t, s)
	})
}

// TestFuzzSeedsLoad: the seeds are good sites, so the fuzzer mutates sites
// that get through validation rather than ones stopped at the top.
func TestFuzzSeedsLoad(t *testing.T) {
	ca := testCA(t)
	fuzzEnv(t)
	for i, src := range fuzzSeeds() {
		_, s, err := loadFuzzed(t, ca, []byte(src))
		if err != nil {
			t.Fatalf("seed %d: %v", i, err)
		}
		checkLoaded(t, s)
	}
}

// checkLoaded asserts what every loaded site promises.
func checkLoaded(t *testing.T, s *Site) {
	t.Helper()
	if s.Lease < MinLeaseTime || s.Lease > MaxLeaseTime {
		t.Fatalf("lease %v loaded, outside %v..%v", s.Lease, MinLeaseTime, MaxLeaseTime)
	}
	if b := s.TFTP.BlockSize; b < 512 || b > 65464 {
		t.Fatalf("blksize %d loaded", b)
	}
	if d := s.Discovery; d == nil || d.MaxNodes < 1 || d.MaxNodes > 65536 || d.ForgetAfterD < time.Minute || d.ForgetAfterD > 30*24*time.Hour {
		t.Fatalf("discovery %+v loaded", d)
	}
	if !s.Subnet.IsValid() {
		if s.DHCP.Mode == ModeReservation || s.DHCP.Mode == ModePool {
			t.Fatalf("mode %s loaded without a subnet", s.DHCP.Mode)
		}
		return
	}
	p := s.Subnet
	if p.Bits() < MinSubnetBits || p.Bits() > MaxSubnetBits || p != p.Masked() || !p.Addr().Is4() {
		t.Fatalf("subnet %s loaded", p)
	}
	lo, hi := s.Range[0], s.Range[1]
	if !p.Contains(lo) || !p.Contains(hi) || hi.Less(lo) || lo == p.Addr() || hi == lastAddr(p) {
		t.Fatalf("range %s-%s loaded for %s", lo, hi, p)
	}
	if r := s.Router; r != nil && (!r.Address.IsValid() || !p.Contains(r.Address.Addr()) || r.Address.Bits() != p.Bits()) {
		t.Fatalf("router address %s loaded for %s", r.Address, p)
	}
}
