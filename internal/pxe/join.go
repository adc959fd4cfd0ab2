package pxe

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/bootstrapd/bootstrapd/internal/inventory"
)

// Join is what goes into every node's join bundle.
type Join struct {
	NomadServers   []string // host:port
	AuthorizedKeys []byte   // root's SSH keys
	// Cluster, when set, mints the node's cluster credentials and its
	// Nomad client config, which then replaces the plain servers file.
	Cluster Credentials
}

// Credentials mints what a node needs to join the cluster. The bundle is
// how credentials reach a node: once, over its install token.
type Credentials interface {
	// Mint returns the node's bundle files and the accessor of the Vault
	// token among them ("" if none), to be revoked on retire.
	Mint(ctx context.Context, n inventory.Node) (files []BundleFile, accessor string, err error)
	// Discard revokes what Mint made for a bundle that was not handed out.
	Discard(ctx context.Context, accessor string)
	// Void makes what n's handed-out bundle held useless: it was claimed
	// twice, so someone other than the node may hold it.
	Void(ctx context.Context, n inventory.Node)
}

// BundleFile is one file of a join bundle, relative to the node's root.
type BundleFile struct {
	Path string
	Mode int64
	Body []byte
}

// files lists the bundle for node n.
func (j Join) files(n inventory.Node) []BundleFile {
	var out []BundleFile
	if len(j.NomadServers) > 0 && j.Cluster == nil {
		quoted := make([]string, len(j.NomadServers))
		for i, s := range j.NomadServers {
			quoted[i] = strconv.Quote(s)
		}
		out = append(out, BundleFile{"etc/nomad.d/20-join.hcl", 0o640, fmt.Appendf(nil,
			"# Written by bootstrapd for %s (%s).\nclient {\n  servers = [%s]\n}\n", n.Hostname, n.MAC, strings.Join(quoted, ", "))})
	}
	if len(j.AuthorizedKeys) > 0 {
		out = append(out, BundleFile{"root/.ssh/authorized_keys", 0o600, j.AuthorizedKeys})
	}
	return out
}

// join hands the node its bundle, as a tar to extract into the target
// root, once per install, to the address its token was handed to. A
// second claim voids what the first one got: one of the two was not the
// node.
func (h *NodeHTTP) join(w http.ResponseWriter, r *http.Request) {
	ctx, token, from := r.Context(), r.PathValue("token"), remote(r)
	files, accessor, prev, err := h.mint(ctx, token, from)
	if err != nil {
		h.joinFailed(w, err)
		return
	}
	n, err := h.Booter.ClaimJoin(ctx, token, from, accessor)
	if err != nil && h.Join.Cluster != nil && accessor != "" {
		// Someone claimed it meanwhile: what was minted must not live on.
		h.Join.Cluster.Discard(context.WithoutCancel(ctx), accessor)
	}
	if err != nil {
		h.joinFailed(w, err)
		h.voidIfTwice(ctx, n, err)
		return
	}
	if prev != "" && prev != accessor && h.Join.Cluster != nil {
		// A reinstall's bundle replaces the last one: the node token that
		// one held (on the old disk, or in anyone's hands) must not live on
		// until retire.
		h.Join.Cluster.Discard(context.WithoutCancel(ctx), prev)
	}
	files = append(h.Join.files(n), files...)
	h.sendBundle(w, files)
}

// voidIfTwice voids the handed-out bundle of n the first time it is
// claimed again.
func (h *NodeHTTP) voidIfTwice(ctx context.Context, n inventory.Node, err error) {
	if !errors.Is(err, inventory.ErrClaimedTwice) {
		return
	}
	h.Log.Error("ALERT: join bundle claimed twice; revoking what it held", "mac", n.MAC, "hostname", n.Hostname)
	if h.Join.Cluster != nil {
		h.Join.Cluster.Void(context.WithoutCancel(ctx), n)
	}
}

// mint makes the node's cluster credentials before its claim is recorded,
// so a Vault or Nomad that is away fails the claim (the node retries) rather
// than using it up. prev is the accessor of the node's last bundle.
func (h *NodeHTTP) mint(ctx context.Context, token string, from netip.Addr) (files []BundleFile, accessor, prev string, err error) {
	n, err := h.Booter.JoinTarget(ctx, token, from)
	if err != nil {
		h.voidIfTwice(ctx, n, err)
		return nil, "", "", err
	}
	if h.Join.Cluster == nil {
		return nil, "", "", nil
	}
	files, accessor, err = h.Join.Cluster.Mint(ctx, n)
	if err != nil {
		h.Log.Warn("cannot mint cluster credentials; the node will retry", "mac", n.MAC, "hostname", n.Hostname, "err", err)
		return nil, "", "", errMint
	}
	return files, accessor, n.VaultAccessor, nil
}

var errMint = errors.New("cluster credentials unavailable")

func (h *NodeHTTP) joinFailed(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, inventory.ErrToken):
		http.Error(w, "unknown or expired install token", http.StatusForbidden)
	case errors.Is(err, inventory.ErrConflict):
		http.Error(w, err.Error(), http.StatusGone)
	case errors.Is(err, errMint):
		w.Header().Set("Retry-After", "10")
		http.Error(w, "Vault or Nomad cannot be reached to mint this node's credentials; retry", http.StatusServiceUnavailable)
	default:
		http.Error(w, "cannot hand out the join bundle", http.StatusInternalServerError)
	}
}

func (h *NodeHTTP) sendBundle(w http.ResponseWriter, files []BundleFile) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	now := time.Now()
	dirs := map[string]bool{}
	for _, f := range files {
		// Parent directories first, so modes like root/.ssh 0700 are set
		// by the archive rather than by whatever tar defaults to.
		parts := strings.Split(f.Path, "/")
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
		tw.WriteHeader(&tar.Header{Name: f.Path, Typeflag: tar.TypeReg, Mode: f.Mode, Size: int64(len(f.Body)), ModTime: now})
		tw.Write(f.Body)
	}
	if err := tw.Close(); err != nil {
		http.Error(w, "cannot build the join bundle", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/x-tar")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(buf.Bytes())
}
