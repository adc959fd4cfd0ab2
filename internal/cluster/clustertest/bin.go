// Package clustertest runs the real vault and nomad binaries for the
// cluster package's tests: dev-mode servers on loopback, one per test,
// stopped when the test ends. Both are open-source releases (Vault 1.14.1,
// Nomad 1.6.1, built by scripts/clusterbins.sh); what newer Nomad releases
// added is answered by NomadAPI, a stand-in labelled as such.
package clustertest

import (
	"os"
	"path/filepath"
	"testing"
)

// defaultBinDir is where scripts/clusterbins.sh links the current builds.
const defaultBinDir = "/var/cache/bootstrapd-test/cluster/bin"

// Binary returns the path of the vault or nomad binary the tests run:
// $BOOTSTRAPD_TEST_BIN_DIR/<name>, else the clusterbins.sh cache. A missing
// binary fails the test rather than skipping it: CI builds them, and a
// skipped cluster test would pass without testing anything.
func Binary(t testing.TB, name string) string {
	t.Helper()
	dir := os.Getenv("BOOTSTRAPD_TEST_BIN_DIR")
	if dir == "" {
		dir = defaultBinDir
	}
	p := filepath.Join(dir, name)
	fi, err := os.Stat(p)
	if err == nil && (!fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0) {
		err = os.ErrPermission
	}
	if err != nil {
		t.Fatalf("clustertest: no runnable %s at %s (%v): run scripts/clusterbins.sh to build it, or set BOOTSTRAPD_TEST_BIN_DIR", name, p, err)
	}
	return p
}
