package pxe

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/bootstrapd/bootstrapd/internal/inventory"
)

// Join is what goes into every node's join bundle.
type Join struct {
	NomadServers   []string // host:port
	AuthorizedKeys []byte   // root's SSH keys
}

// bundleFile is one file of a join bundle, relative to the node's root.
type bundleFile struct {
	path string
	mode int64
	body []byte
}

// files lists the bundle for node n. Later stages add the node's Vault
// token and Nomad introduction token here: the bundle is how credentials
// reach a node, once, over its install token.
func (j Join) files(n inventory.Node) []bundleFile {
	var out []bundleFile
	if len(j.NomadServers) > 0 {
		quoted := make([]string, len(j.NomadServers))
		for i, s := range j.NomadServers {
			quoted[i] = strconv.Quote(s)
		}
		out = append(out, bundleFile{"etc/nomad.d/20-join.hcl", 0o640, fmt.Appendf(nil,
			"# Written by bootstrapd for %s (%s).\nclient {\n  servers = [%s]\n}\n", n.Hostname, n.MAC, strings.Join(quoted, ", "))})
	}
	if len(j.AuthorizedKeys) > 0 {
		out = append(out, bundleFile{"root/.ssh/authorized_keys", 0o600, j.AuthorizedKeys})
	}
	return out
}

// join hands the node its bundle, as a tar to extract into the target
// root, once per install.
func (h *NodeHTTP) join(w http.ResponseWriter, r *http.Request) {
	n, err := h.Booter.ClaimJoin(r.Context(), r.PathValue("token"))
	switch {
	case errors.Is(err, inventory.ErrToken):
		http.Error(w, "unknown or expired install token", http.StatusForbidden)
		return
	case errors.Is(err, inventory.ErrConflict):
		http.Error(w, err.Error(), http.StatusGone)
		return
	case err != nil:
		http.Error(w, "cannot hand out the join bundle", http.StatusInternalServerError)
		return
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	now := time.Now()
	dirs := map[string]bool{}
	for _, f := range h.Join.files(n) {
		// Parent directories first, so modes like root/.ssh 0700 are set
		// by the archive rather than by whatever tar defaults to.
		parts := strings.Split(f.path, "/")
		for i := 1; i < len(parts); i++ {
			d := strings.Join(parts[:i], "/") + "/"
			if !dirs[d] {
				dirs[d] = true
				mode := int64(0o755)
				if strings.HasSuffix(d, "/.ssh/") {
					mode = 0o700
				}
				tw.WriteHeader(&tar.Header{Name: d, Typeflag: tar.TypeDir, Mode: mode, ModTime: now})
			}
		}
		tw.WriteHeader(&tar.Header{Name: f.path, Typeflag: tar.TypeReg, Mode: f.mode, Size: int64(len(f.body)), ModTime: now})
		tw.Write(f.body)
	}
	if err := tw.Close(); err != nil {
		http.Error(w, "cannot build the join bundle", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/x-tar")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(buf.Bytes())
}
