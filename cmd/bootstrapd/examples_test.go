package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestExamples checks every site in examples/ with `bootstrapd check`, as
// an operator would after putting the files it names in place: the paths
// under /etc, /var/lib and so on are moved into a scratch root holding
// those files (secrets mode 0600, iPXE binaries, the repo's profiles).
func TestExamples(t *testing.T) {
	sites, _ := filepath.Glob("../../examples/*.hcl")
	demo, _ := filepath.Glob("../../examples/*/site.hcl")
	sites = append(sites, demo...)
	if len(sites) < 3 {
		t.Fatalf("found only %v", sites)
	}
	profiles, err := filepath.Abs("../../profiles")
	if err != nil {
		t.Fatal(err)
	}
	for _, site := range sites {
		t.Run(filepath.Base(filepath.Dir(site))+"/"+filepath.Base(site), func(t *testing.T) {
			t.Setenv("BOOTSTRAPD_ROUTER_PASSWORD", "")
			root := t.TempDir()
			src, err := os.ReadFile(site)
			if err != nil {
				t.Fatal(err)
			}
			text := string(src)
			for _, dir := range []string{"/var/lib/bootstrapd", "/etc/bootstrapd", "/home/ops", "/tmp/bootstrapd-demo", "/run"} {
				text = strings.ReplaceAll(text, `"`+dir, `"`+root+dir)
			}
			text = strings.ReplaceAll(text, `"/usr/local/share/bootstrapd/profiles"`, `"`+profiles+`"`)
			text = strings.ReplaceAll(text, `"../../profiles"`, `"`+profiles+`"`)
			for _, f := range []string{"undionly.kpxe", "snponly.efi"} {
				b, err := os.ReadFile(filepath.Join("/usr/lib/ipxe", f))
				if err != nil {
					t.Fatalf("no iPXE binaries (apt-get install ipxe): %v", err)
				}
				for _, nb := range []string{"/var/lib/bootstrapd/netboot", "/tmp/bootstrapd-demo/netboot"} {
					write(t, filepath.Join(root, nb, f), b, 0o644)
				}
			}
			for _, s := range []string{"api-token", "router-password", "vault-token", "nomad-token"} {
				write(t, filepath.Join(root, "etc/bootstrapd", s), []byte("s3cret-"+s+"\n"), 0o600)
				write(t, filepath.Join(root, "tmp/bootstrapd-demo", s), []byte("s3cret-"+s+"\n"), 0o600)
			}
			keys := []byte("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAtest ops@laptop\n")
			write(t, filepath.Join(root, "etc/bootstrapd/authorized_keys"), keys, 0o644)
			write(t, filepath.Join(root, "home/ops/.ssh/id_ed25519.pub"), keys, 0o644)
			write(t, filepath.Join(root, "etc/bootstrapd/lab-ca.pem"), testCA(t), 0o644)
			// The demo builds its Concourse stand-in here before it starts.
			write(t, filepath.Join(root, "tmp/bootstrapd-demo/concourse-standin"), []byte("#!/bin/sh\n"), 0o755)
			p := filepath.Join(root, "site.hcl")
			write(t, p, []byte(text), 0o644)

			var out, errb bytes.Buffer
			e := &env{stdout: &out, stderr: &errb, getenv: func(string) string { return "" }}
			if rc := run(context.Background(), e, []string{"check", "-config", p}); rc != 0 {
				t.Fatalf("bootstrapd check %s: exit %d\n%s%s", site, rc, out.String(), errb.String())
			}
			if strings.Contains(out.String()+errb.String(), "s3cret") {
				t.Error("check printed a secret")
			}
		})
	}
}

func write(t *testing.T, path string, b []byte, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func testCA(t *testing.T) []byte {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "lab CA"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
