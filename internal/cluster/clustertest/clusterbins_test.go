package clustertest

import (
	"archive/zip"
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const bslLicense = `License text copyright (c) 2020 MariaDB Corporation Ab, All Rights Reserved.
"Business Source License" is a trademark of MariaDB Corporation Ab.

Parameters

Licensor:             HashiCorp, Inc.
Licensed Work:        Nomad Version 1.7.0 or later.
`

const mplLicense = `Copyright (c) 2015 HashiCorp, Inc.

Mozilla Public License, version 2.0

1. Definitions
`

// fakeProxy writes a Go module proxy in a folder (GOPROXY=file://...)
// serving one module version: a main package and the LICENSE given.
func fakeProxy(t *testing.T, module, version, license string) string {
	t.Helper()
	dir := t.TempDir()
	at := filepath.Join(dir, filepath.FromSlash(module), "@v")
	if err := os.MkdirAll(at, 0o755); err != nil {
		t.Fatal(err)
	}
	gomod := "module " + module + "\n\ngo 1.21\n"
	var zb bytes.Buffer
	zw := zip.NewWriter(&zb)
	for name, body := range map[string]string{
		"go.mod":  gomod,
		"LICENSE": license,
		"main.go": "package main\n\nfunc main() { println(\"fake peer\") }\n",
	} {
		w, err := zw.Create(module + "@" + version + "/" + name)
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte(body))
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string][]byte{
		"list":            []byte(version + "\n"),
		version + ".info": []byte(`{"Version":"` + version + `"}`),
		version + ".mod":  []byte(gomod),
		version + ".zip":  zb.Bytes(),
	} {
		if err := os.WriteFile(filepath.Join(at, name), body, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// runClusterbins runs scripts/clusterbins.sh for one fake nomad module,
// with a module cache of its own.
func runClusterbins(t *testing.T, module, version, license string) (out, binDir string, err error) {
	t.Helper()
	proxy := fakeProxy(t, module, version, license)
	binDir = t.TempDir()
	modcache := t.TempDir()
	goBin, lerr := exec.LookPath("go")
	if lerr != nil {
		goBin = "/usr/local/go/bin/go"
	}
	env := []string{
		"PATH=" + filepath.Dir(goBin) + ":/usr/bin:/bin", "HOME=" + t.TempDir(),
		"GOPROXY=file://" + proxy, "GOSUMDB=off", "GOMODCACHE=" + modcache, "GOTOOLCHAIN=local",
		"ONLY=nomad", "NOMAD_MODULE=" + module, "NOMAD_VERSION=" + version, "NOMAD_PIN=",
	}
	t.Cleanup(func() {
		// The module cache is read-only; go clean removes it.
		c := exec.Command(goBin, "clean", "-modcache")
		c.Env = env
		_ = c.Run()
	})
	cmd := exec.Command("sh", filepath.Join(repoRoot(t), "scripts", "clusterbins.sh"), binDir)
	cmd.Env = env
	cmd.Dir = t.TempDir()
	b, err := cmd.CombinedOutput()
	return string(b), binDir, err
}

func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("../../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "scripts", "clusterbins.sh")); err != nil {
		t.Fatalf("no scripts/clusterbins.sh above the test: %v", err)
	}
	return dir
}

// TestClusterbinsLicenceGuard: clusterbins.sh refuses to build a module
// whose LICENSE is the Business Source License, naming the file and its
// first line, and builds one under the MPL: the guard is what stands
// between the tests and a BSL Nomad or Vault.
func TestClusterbinsLicenceGuard(t *testing.T) {
	t.Parallel()
	t.Run("BSL refused", func(t *testing.T) {
		t.Parallel()
		out, bin, err := runClusterbins(t, "example.com/fakenomad", "v1.7.0", bslLicense)
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() == 0 {
			t.Fatalf("clusterbins.sh accepted a BSL module: %v\n%s", err, out)
		}
		if !strings.Contains(out, "refusing example.com/fakenomad@v1.7.0") ||
			!strings.Contains(out, "example.com/fakenomad@v1.7.0/LICENSE") ||
			!strings.Contains(out, "License text copyright (c) 2020 MariaDB Corporation Ab") {
			t.Errorf("refusal does not name the module, its LICENSE and the first line:\n%s", out)
		}
		if _, err := os.Stat(filepath.Join(bin, "nomad-v1.7.0", "nomad")); err == nil {
			t.Error("a binary was built anyway")
		}
	})
	t.Run("MPL built", func(t *testing.T) {
		t.Parallel()
		out, bin, err := runClusterbins(t, "example.com/fakenomad", "v1.6.9", mplLicense)
		if err != nil {
			t.Fatalf("clusterbins.sh refused an MPL module: %v\n%s", err, out)
		}
		got, err := exec.Command(filepath.Join(bin, "bin", "nomad")).CombinedOutput()
		if err != nil || !strings.Contains(string(got), "fake peer") {
			t.Errorf("built binary: %v %q", err, got)
		}
	})
}
