package pxe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"mime"
	"net/http"
	"net/netip"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bootstrapd/bootstrapd/internal/httpcount"
	"github.com/bootstrapd/bootstrapd/internal/inventory"
	"github.com/bootstrapd/bootstrapd/internal/profile"
)

// Booter is what the node-facing HTTP server needs from the inventory.
// Every use of an install token says which address it came from: a token
// is accepted only from the address its script was served to.
type Booter interface {
	Node(mac string) (inventory.Node, bool)
	Seen(ctx context.Context, mac, arch string)
	Note(ctx context.Context, mac, cause, actor string) error
	StartInstall(ctx context.Context, mac string, from netip.Addr, ttl time.Duration) (inventory.Node, string, error)
	Report(ctx context.Context, token string, from netip.Addr, mac, status string) (inventory.Node, error)
	NodeByToken(ctx context.Context, token string, from netip.Addr) (inventory.Node, error)
	JoinTarget(ctx context.Context, token string, from netip.Addr) (inventory.Node, error)
	ClaimJoin(ctx context.Context, token string, from netip.Addr, accessor string) (inventory.Node, error)
}

// NodeHTTP serves iPXE scripts, netboot assets and installer callbacks.
type NodeHTTP struct {
	Booter         Booter
	Profiles       map[string]*profile.Profile
	DefaultProfile string
	Assets         *os.Root // the netboot directory
	// Verify, when set, checks an asset before it is served (the sha256
	// recorded when it was imported).
	Verify interface {
		Check(name string, f *os.File, fi fs.FileInfo) error
	}
	BaseURL string // how nodes reach us, e.g. http://10.77.0.1:8080
	Join    Join   // what every node's join bundle holds
	// Reservations says bootstrapd's DHCP hands nodes their addresses
	// (modes reservation and pool): a node's install script, and with it
	// its install token, is then served only to the node's reserved
	// address. Otherwise (proxy, off) the token is bound to whichever
	// address fetched the script.
	Reservations bool
	// StandInWorker is the concourse-standin binary (a stand-in, not
	// Concourse) served at StandInPath for the stand-in worker job; ""
	// serves nothing there.
	StandInWorker string
	// Packages, when set, is the package cache, served at PackagesPath
	// (pkgcache: the nodes' XBPS repository, fetched upstream once).
	Packages http.Handler
	Log      *slog.Logger

	metrics *httpMetrics
	refused *quietLog
}

// Register adds the HTTP counters to reg.
func (h *NodeHTTP) Register(reg prometheus.Registerer) {
	h.metrics = newHTTPMetrics(reg)
	h.refused = newQuietLog(h.Log, "http", reg)
}

// route names a request for metrics: a few fixed values, never a path
// (paths carry MACs and tokens, and would make unbounded label sets).
func route(p string) string {
	for _, r := range []string{"/boot.ipxe", "/ipxe", "/assets/", "/install/", "/stand-in/", PackagesPath} {
		if strings.HasPrefix(p, r) {
			return strings.Trim(r, "/")
		}
	}
	return "other"
}

// Handler returns the routes.
func (h *NodeHTTP) Handler() http.Handler {
	if h.refused == nil { // not registered: logged, not counted
		h.refused = newQuietLog(h.Log, "http", nil)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /boot.ipxe", h.bootScript)
	mux.HandleFunc("GET /ipxe", h.nodeScript)
	mux.HandleFunc("GET /assets/{path...}", h.asset)
	mux.HandleFunc("POST /install/{token}/status", h.status)
	mux.HandleFunc("GET /install/{token}/config/{name}", h.config)
	mux.HandleFunc("POST /install/{token}/join", h.join)
	mux.HandleFunc("GET "+StandInPath, h.standIn)
	if h.Packages != nil {
		mux.Handle(PackagesPath, http.StripPrefix(strings.TrimSuffix(PackagesPath, "/"), h.Packages))
	}
	return h.logged(mux)
}

// PackagesPath is where nodes find the package cache's repository.
const PackagesPath = "/xbps/"

// StandInPath is where nodes fetch the stand-in worker binary.
const StandInPath = "/stand-in/concourse-standin"

// logged writes one line per request; refused ones (4xx and 5xx, which
// anyone can cause) through the rate-limited log. Install tokens are cut
// out of the path first: they are credentials, and logs are read by many.
func (h *NodeHTTP) logged(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := httpcount.New(w)
		next.ServeHTTP(rec, r)
		h.metrics.observe(route(r.URL.Path), rec.Status, rec.Bytes)
		ok := rec.Status < 400
		if ok && !h.Log.Enabled(r.Context(), slog.LevelInfo) {
			// The line would be dropped: skip building it (redaction,
			// formatting, a dozen allocations) on every asset request.
			return
		}
		args := []any{"method", r.Method, "path", cleanLog(RedactPath(r.URL.Path)), "status", rec.Status, "bytes", rec.Bytes,
			"remote", r.RemoteAddr, "duration", time.Since(start).Round(time.Microsecond)}
		if !ok {
			h.refused.Warn("http_"+strconv.Itoa(rec.Status), "http", args...)
			return
		}
		h.Log.InfoContext(r.Context(), "http", args...)
	})
}

// cleanLog cuts what a client sent to a loggable size.
func cleanLog(s string) string {
	const max = 256
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}

// remote is the address a request came from.
func remote(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// RedactPath replaces the token in /install/<token>/... with "REDACTED".
// It works on segments rather than on a prefix: a request for an unclean
// path (//install/<token>/status, /./install/...) is logged as sent, before
// the router redirects it, and must not carry the token into the log either.
func RedactPath(p string) string {
	parts := strings.Split(p, "/")
	for i := 0; i+1 < len(parts); i++ {
		if strings.EqualFold(parts[i], "install") {
			parts[i+1] = "REDACTED"
			i++
		}
	}
	return strings.Join(parts, "/")
}

// bootScript is the same for every node: it asks for the node's own script
// by MAC, retrying a few times because a flaky link at this point otherwise
// ends in the firmware's "no bootable device".
//
// A node script that returns (local boot, not enrolled) hands the machine
// back to its firmware, and iPXE leaves with a failure status on purpose:
// after a boot option returns EFI_SUCCESS, UEFI firmware may stop at its
// boot menu instead of trying the next option (UEFI spec 3.1.1; OVMF
// does), while an error makes it go on down BootOrder to the disk. SeaBIOS
// moves on either way (docs/local-boot.md).
func (h *NodeHTTP) bootScript(w http.ResponseWriter, r *http.Request) {
	ipxe(w, `#!ipxe
set tries:int32 0
:retry
chain --autofree %s/ipxe?mac=${net0/mac} && exit 1 ||
inc tries
iseq ${tries} 3 && goto giveup ||
echo bootstrapd: no script yet, retrying in 3s
sleep 3
goto retry
:giveup
echo bootstrapd: giving up; falling back to the next boot device
exit 1
`, h.BaseURL)
}

func ipxe(w http.ResponseWriter, format string, args ...any) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	fmt.Fprintf(w, format, args...)
}

// nodeScript decides what this node boots now, from its state.
func (h *NodeHTTP) nodeScript(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	mac, err := inventory.ParseMAC(r.URL.Query().Get("mac"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	n, ok := h.Booter.Node(mac)
	if !ok || n.State == inventory.Discovered {
		// Keep the arch DHCP saw (BIOS or which EFI): it is what the
		// operator needs to know, and "ipxe" is not an arch. Only a node
		// never seen on DHCP (the router answered it) is marked "ipxe".
		arch := "ipxe"
		if ok && n.Arch != "" {
			arch = n.Arch
		}
		h.Booter.Seen(ctx, mac, arch)
		ipxe(w, "#!ipxe\necho bootstrapd: %s is not enrolled. To install it: bootstrapd enroll %s\nsleep 10\nexit\n", mac, mac)
		return
	}
	switch n.State {
	case inventory.Enrolled, inventory.Installing:
		if from := remote(r); h.Reservations && n.IP.IsValid() && from != n.IP {
			// Only the node itself, at its reservation, gets a token: its
			// MAC is no secret (every DHCP packet carries it).
			h.refused.Warn("script_elsewhere", "install script refused: not asked from the node's address", "mac", mac, "remote", from, "node_ip", n.IP)
			h.Booter.Note(ctx, n.MAC, "refused an install script asked for from another address", "network")
			ipxe(w, "#!ipxe\necho bootstrapd: the install script of %s is served only to its address %s\nsleep 10\nexit 1\n", mac, n.IP)
			return
		}
		h.installScript(w, r, n)
	case inventory.Installed, inventory.Joined, inventory.Ready:
		h.localBoot(w, n)
	default:
		ipxe(w, "#!ipxe\necho bootstrapd: %s (%s) is %s; nothing to install\nsleep 10\nexit\n", n.Hostname, mac, n.State)
	}
}

func (h *NodeHTTP) profileFor(n inventory.Node) (*profile.Profile, error) {
	name := n.Profile
	if name == "" {
		name = h.DefaultProfile
	}
	p := h.Profiles[name]
	if p == nil {
		return nil, fmt.Errorf("node %s has profile %q, which is not loaded", n.MAC, name)
	}
	return p, nil
}

func (h *NodeHTTP) installScript(w http.ResponseWriter, r *http.Request, n inventory.Node) {
	ctx := r.Context()
	p, err := h.profileFor(n)
	if err != nil {
		h.Log.ErrorContext(ctx, "cannot build install script", "err", err)
		ipxe(w, "#!ipxe\necho bootstrapd: %s\nsleep 30\nexit 1\n", err)
		return
	}
	started, token, err := h.Booter.StartInstall(ctx, n.MAC, remote(r), p.Timeout)
	if errors.Is(err, inventory.ErrConflict) {
		// Its bundle is out: no new token until the operator reinstalls.
		ipxe(w, "#!ipxe\necho bootstrapd: %s\nsleep 30\nexit 1\n", err)
		return
	}
	if err != nil {
		h.Log.ErrorContext(ctx, "cannot start install", "mac", n.MAC, "err", err)
		http.Error(w, "cannot start install", http.StatusInternalServerError)
		return
	}
	n = started
	script, err := p.IPXEScript(h.data(n, p, token))
	if err != nil {
		h.Log.ErrorContext(ctx, "cannot render the install script", "profile", p.Name, "err", err)
		http.Error(w, "profile error", http.StatusInternalServerError)
		return
	}
	h.Log.InfoContext(ctx, "install script served", "mac", n.MAC, "hostname", n.Hostname, "profile", p.Name)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(script)
}

// data is what a profile's templates see for node n.
func (h *NodeHTTP) data(n inventory.Node, p *profile.Profile, token string) profile.Data {
	d := profile.Data{
		MAC: n.MAC, Hostname: n.Hostname, IP: n.IP.String(), Profile: p.Name, Labels: n.Labels, Server: h.BaseURL,
		StatusURL: h.BaseURL + "/install/" + token + "/status",
		ConfigURL: h.BaseURL + "/install/" + token + "/config",
		JoinURL:   h.BaseURL + "/install/" + token + "/join",
	}
	if h.Packages != nil {
		d.PackageCache = h.BaseURL + strings.TrimSuffix(PackagesPath, "/")
	}
	if d.Labels == nil {
		d.Labels = map[string]string{}
	}
	if p.Nomad != nil {
		d.Nomad = *p.Nomad
	}
	return d
}

// config serves one of the node's rendered profile templates (its install
// config, say). Only the node's current install token opens it.
func (h *NodeHTTP) config(w http.ResponseWriter, r *http.Request) {
	token := r.PathValue("token")
	n, err := h.Booter.NodeByToken(r.Context(), token, remote(r))
	if err != nil {
		http.Error(w, "unknown or expired install token", http.StatusForbidden)
		return
	}
	p, err := h.profileFor(n)
	if err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	out, err := p.Render(r.PathValue("name"), h.data(n, p, token))
	switch {
	case errors.Is(err, profile.ErrNoTemplate):
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	case err != nil:
		h.Log.ErrorContext(r.Context(), "render template", "mac", n.MAC, "profile", p.Name, "err", err)
		http.Error(w, "template error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(out)
}

// localBoot hands an installed node back to its disk. Firmware varies in
// which method works, so the method is per node.
func (h *NodeHTTP) localBoot(w http.ResponseWriter, n inventory.Node) {
	switch n.BootMethod {
	case inventory.BootSanboot:
		ipxe(w, "#!ipxe\necho bootstrapd: %s is installed; booting the local disk\nsanboot --no-describe --drive 0x80\n", n.Hostname)
	case inventory.BootNone:
		// No script at all: iPXE's chain fails and the firmware moves on.
		http.Error(w, "installed; boot from disk", http.StatusNotFound)
	default:
		ipxe(w, "#!ipxe\necho bootstrapd: %s is installed; booting the local disk\nexit\n", n.Hostname)
	}
}

// asset serves netboot files with Range support. The os.Root refuses any
// path that would leave the netboot directory, symlinks included. The name
// is cleaned first (the integrity checker caches by name: every spelling
// of one file must be one name), and only regular files are served: a
// FIFO opened for reading would wait for a writer forever, so the open
// does not block and the type is checked on what was opened.
func (h *NodeHTTP) asset(w http.ResponseWriter, r *http.Request) {
	name := path.Clean(r.PathValue("path"))
	f, fi, ok := openRegular(w, func(flag int) (*os.File, error) { return h.Assets.OpenFile(name, flag, 0) })
	if !ok {
		return
	}
	defer f.Close()
	if h.Verify != nil {
		if err := h.Verify.Check(name, f, fi); err != nil {
			// A node would boot something other than what was imported:
			// refuse, loudly, rather than install from a corrupt file.
			h.Log.ErrorContext(r.Context(), "asset not served", "path", name, "err", err)
			http.Error(w, "netboot file failed its integrity check", http.StatusInternalServerError)
			return
		}
	}
	// A name whose extension has no registered type (vmlinuz,
	// undionly.kpxe) gets nginx's default_type. Left unset,
	// http.ServeContent reads the file's first 512 bytes to sniff a type
	// and seeks back: two syscalls on every request, for a header no boot
	// loader reads.
	if mime.TypeByExtension(path.Ext(name)) == "" {
		w.Header().Set("Content-Type", "application/octet-stream")
	}
	if fi.Size() < sendfileMin {
		w = copied{w}
	}
	http.ServeContent(w, r, fi.Name(), fi.ModTime(), f)
}

// sendfileMin is the smallest file sent with sendfile(2). Below it a copy
// through a buffer costs less: with sendfile, net/http reads and writes
// the headers with the first 512 bytes, then sends the rest in another
// call, and the 74 KB iPXE binary went at 0.82-0.91 of nginx's requests/s;
// copied, at 1.08-1.22 (`make bench-files`, side by side). Kernels,
// initrds and squashfs images, where the copy would be most of the CPU (a
// fifth of it in the boot storm), are well above it.
const sendfileMin = 1 << 20

// copied is a ResponseWriter whose ReadFrom copies through a pooled
// buffer and Write, as net/http does for a connection without sendfile.
type copied struct{ http.ResponseWriter }

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (c copied) ReadFrom(r io.Reader) (int64, error) {
	buf := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(buf)
	return io.CopyBuffer(struct{ io.Writer }{c.ResponseWriter}, r, *buf)
}

// openRegular opens a file to serve, without blocking, and answers 404
// (403 for a permission or path error) unless it is a regular file.
func openRegular(w http.ResponseWriter, open func(flag int) (*os.File, error)) (*os.File, fs.FileInfo, bool) {
	f, err := open(os.O_RDONLY | syscall.O_NONBLOCK)
	if err != nil {
		code := http.StatusNotFound
		if !errors.Is(err, fs.ErrNotExist) {
			code = http.StatusForbidden
		}
		http.Error(w, http.StatusText(code), code)
		return nil, nil, false
	}
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		f.Close()
		http.Error(w, "not a file", http.StatusNotFound)
		return nil, nil, false
	}
	return f, fi, true
}

// standIn serves the stand-in worker binary, when the site has one, with
// Range support (Nomad's artifact fetcher may resume). Its integrity is
// the job's business: the worker job names its sha256, and Nomad refuses
// anything else, whoever answered the node.
func (h *NodeHTTP) standIn(w http.ResponseWriter, r *http.Request) {
	if h.StandInWorker == "" {
		http.NotFound(w, r)
		return
	}
	f, fi, ok := openRegular(w, func(flag int) (*os.File, error) { return os.OpenFile(h.StandInWorker, flag, 0) })
	if !ok {
		return
	}
	defer f.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(w, r, fi.Name(), fi.ModTime(), f)
}

// status takes the installer's report. The token in the path is the only
// credential; it is never logged, and it is checked before the body is
// read: nobody without it can make the server wait for a body.
func (h *NodeHTTP) status(w http.ResponseWriter, r *http.Request) {
	const maxReport = 4 << 10 // a line of progress and a MAC
	if _, err := h.Booter.NodeByToken(r.Context(), r.PathValue("token"), remote(r)); err != nil {
		http.Error(w, "unknown or expired install token", http.StatusForbidden)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxReport)
	var err error
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct == "multipart/form-data" {
		err = r.ParseMultipartForm(maxReport)
	} else {
		err = r.ParseForm()
	}
	if err != nil {
		badBody(w, err)
		return
	}
	// The form parsers read only the body types they know. Anything else
	// would leave status empty, which means success: a failure reported as
	// JSON must not mark the node installed, and the size limit must hold
	// whatever the body is.
	if n, err := io.Copy(io.Discard, r.Body); err != nil {
		badBody(w, err)
		return
	} else if n > 0 {
		http.Error(w, "send the report as a form: mac=...&status=...", http.StatusUnsupportedMediaType)
		return
	}
	mac := r.PostFormValue("mac")
	if mac != "" {
		if mac, err = inventory.ParseMAC(mac); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
	}
	n, err := h.Booter.Report(r.Context(), r.PathValue("token"), remote(r), mac, r.PostFormValue("status"))
	if err != nil {
		code := http.StatusInternalServerError
		if errors.Is(err, inventory.ErrToken) {
			code = http.StatusForbidden
		} else if errors.Is(err, inventory.ErrConflict) {
			code = http.StatusConflict
		}
		http.Error(w, err.Error(), code)
		return
	}
	fmt.Fprintf(w, "ok %s %s\n", n.Hostname, n.State)
}

func badBody(w http.ResponseWriter, err error) {
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		http.Error(w, "report too large", http.StatusRequestEntityTooLarge)
		return
	}
	http.Error(w, "bad form", http.StatusBadRequest)
}
