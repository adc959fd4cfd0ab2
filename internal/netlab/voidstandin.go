package netlab

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// VoidStandInDirEnv overrides where scripts/standin-void.sh keeps its builds.
const VoidStandInDirEnv = "BOOTSTRAPD_TEST_VOID_DIR"

var voidStandIn struct {
	mu   sync.Mutex
	done map[string][2]string // nomad binary -> tarball, repository
}

// VoidStandIn returns the VOID STAND-IN built by scripts/standin-void.sh
// (once per process and nomad binary; the script caches by a hash of its
// inputs): netbootTarball is a Void-style NETBOOT tarball (vmlinuz, initrd)
// for `bootstrapd netboot import`, whose installer stands in for Void's
// autoinstaller (testdata/voidinstaller/init); repoDir is a package
// repository stand-in (repoDir/x86_64-repodata, <pkg>.tar, nonfree/...) to
// serve over HTTP (ServeDir) and name in the node's xbps_repository label.
// nomadBin is the real Nomad binary that becomes the nonfree "nomad" package.
func VoidStandIn(t testing.TB, nomadBin string) (netbootTarball, repoDir string) {
	t.Helper()
	voidStandIn.mu.Lock()
	defer voidStandIn.mu.Unlock()
	if r, ok := voidStandIn.done[nomadBin]; ok {
		return r[0], r[1]
	}
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	args := []string{filepath.Join(root, "scripts", "standin-void.sh")}
	if dir := os.Getenv(VoidStandInDirEnv); dir != "" {
		args = append(args, dir)
	}
	cmd := exec.Command("sh", args...)
	cmd.Env = append(os.Environ(), "NOMAD_BIN="+nomadBin)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("netlab: building the Void stand-in (scripts/standin-void.sh; scripts/deps.sh installs what it needs): %v\n%s", err, stderr.String())
	}
	dir := strings.TrimSpace(string(out))
	r := [2]string{filepath.Join(dir, "void-x86_64-NETBOOT-20260101.tar.gz"), filepath.Join(dir, "repo")}
	if voidStandIn.done == nil {
		voidStandIn.done = map[string][2]string{}
	}
	voidStandIn.done[nomadBin] = r
	return r[0], r[1]
}

// ServeDir serves the regular files under dir over plain HTTP on addr
// (host:port) inside ns, until the test ends, and returns the base URL
// (http://addr, no trailing slash). Directories are not listed and
// symbolic links are not followed out of dir.
func ServeDir(t testing.TB, ns NS, addr, dir string) string {
	t.Helper()
	ln := ns.Listen(t, "tcp", addr)
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			name := strings.TrimPrefix(filepath.Clean("/"+r.URL.Path), "/")
			f, err := root.Open(name)
			if err != nil {
				http.NotFound(w, r)
				return
			}
			defer f.Close()
			st, err := f.Stat()
			if err != nil || !st.Mode().IsRegular() {
				http.NotFound(w, r)
				return
			}
			http.ServeContent(w, r, name, st.ModTime(), f)
		}),
	}
	go srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		root.Close()
	})
	return "http://" + ln.Addr().String()
}
