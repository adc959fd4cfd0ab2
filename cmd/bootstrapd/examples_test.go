package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bootstrapd/bootstrapd/internal/routeros/routerostest"
)

// TestExamples checks every site in examples/ with `bootstrapd check`.
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
			src, err := os.ReadFile(site)
			if err != nil {
				t.Fatal(err)
			}
			checkSite(t, string(src), profiles)
		})
	}
}

// TestReadmeSiteConfig loads the README's site config with `bootstrapd
// check`: the minimal site alone, then every block of the reference
// together, which is one complete site.
func TestReadmeSiteConfig(t *testing.T) {
	doc, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, _ := strings.Cut(string(doc), "\n## Site config\n")
	section, _, _ = strings.Cut(section, "\n## ")
	var blocks []string
	for _, part := range strings.Split(section, "```hcl\n")[1:] {
		block, _, _ := strings.Cut(part, "```")
		blocks = append(blocks, block)
	}
	if len(blocks) < 8 {
		t.Fatalf("the README's site config has %d hcl blocks, want the minimal site and one per block of the reference", len(blocks))
	}
	profiles, _ := filepath.Abs("../../profiles")
	t.Run("minimal", func(t *testing.T) { checkSite(t, blocks[0], profiles) })
	t.Run("reference", func(t *testing.T) { checkSite(t, strings.Join(blocks[1:], "\n"), profiles) })
}

// checkSite runs `bootstrapd check` on a site as an operator would after
// putting the files it names in place: the paths under /etc, /var/lib and
// so on are moved into a scratch root holding those files (secrets mode
// 0600, iPXE binaries, the repo's profiles).
func checkSite(t *testing.T, text, profiles string) {
	t.Helper()
	t.Setenv("BOOTSTRAPD_ROUTER_PASSWORD", "")
	root := t.TempDir()
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
		// netboot_dir is /var/lib/bootstrapd/netboot, the demo's, or the
		// default beside the site file.
		for _, nb := range []string{"/var/lib/bootstrapd/netboot", "/tmp/bootstrapd-demo/netboot", "/netboot"} {
			write(t, filepath.Join(root, nb, f), b, 0o644)
		}
	}
	if err := os.Symlink(profiles, filepath.Join(root, "profiles")); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"api-token", "router-password", "vault-token", "nomad-token", "bmc-password"} {
		write(t, filepath.Join(root, "etc/bootstrapd", s), []byte("s3cret-"+s+"\n"), 0o600)
		write(t, filepath.Join(root, "tmp/bootstrapd-demo", s), []byte("s3cret-"+s+"\n"), 0o600)
	}
	keys := []byte("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAtest ops@laptop\n")
	write(t, filepath.Join(root, "etc/bootstrapd/authorized_keys"), keys, 0o644)
	write(t, filepath.Join(root, "home/ops/.ssh/id_ed25519.pub"), keys, 0o644)
	// lab-ca.pem is any CA; api.crt and api.key the admin API's pair.
	if err := os.MkdirAll(filepath.Join(root, "etc/bootstrapd"), 0o755); err != nil {
		t.Fatal(err)
	}
	cert, _ := routerostest.CertFiles(t, filepath.Join(root, "etc/bootstrapd"), "api")
	if err := os.Link(cert, filepath.Join(root, "etc/bootstrapd/lab-ca.pem")); err != nil {
		t.Fatal(err)
	}
	// The demo builds its Concourse stand-in here before it starts.
	write(t, filepath.Join(root, "tmp/bootstrapd-demo/concourse-standin"), []byte("#!/bin/sh\n"), 0o755)
	p := filepath.Join(root, "site.hcl")
	write(t, p, []byte(text), 0o644)

	var out, errb bytes.Buffer
	e := &env{stdout: &out, stderr: &errb, getenv: func(string) string { return "" }}
	if rc := run(context.Background(), e, []string{"check", "-config", p}); rc != 0 {
		t.Fatalf("bootstrapd check: exit %d\n%s%s\nthe site:\n%s", rc, out.String(), errb.String(), text)
	}
	if strings.Contains(out.String()+errb.String(), "s3cret") {
		t.Error("check printed a secret")
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
