package pxe

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bootstrapd/bootstrapd/internal/inventory"
	"github.com/bootstrapd/bootstrapd/internal/profile"
	"github.com/bootstrapd/bootstrapd/internal/store"
)

const (
	nhBase   = "http://10.77.0.1:8080"
	nhSecret = "SECRET-OUTSIDE-THE-NETBOOT-DIR\n"
	nhMAC    = "52:54:00:aa:bb:01"
	nhOther  = "52:54:00:aa:bb:02"
)

const nhProfiles = `
profile "void" {
  description     = "Void Linux, unattended"
  kernel          = "void/vmlinuz"
  initrd          = ["void/initrd.img", "void/extra.img"]
  cmdline         = <<-EOT
    root=/dev/null   auto
    autourl={{.ConfigURL}}
    status={{.StatusURL}} hostname={{.Hostname}} ip={{.IP}}
  EOT
  install_timeout = "30m"
}

profile "tiny" {
  kernel  = "void/vmlinuz"
  cmdline = "quiet"
}
`

// nhBuf is a log sink that handler goroutines and the test may share.
type nhBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *nhBuf) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *nhBuf) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

type nhFixture struct {
	inv     *inventory.Inventory
	h       *NodeHTTP
	handler http.Handler
	log     *nhBuf
	kernel  []byte
	initrd  []byte
	dbPath  string
}

func newNodeHTTP(t testing.TB) *nhFixture {
	t.Helper()
	dir := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}

	// The netboot directory, with a secret beside it that must never be served.
	netboot := filepath.Join(dir, "netboot")
	must(os.MkdirAll(filepath.Join(netboot, "void", "sub"), 0o755))
	f := &nhFixture{log: &nhBuf{}}
	f.kernel = make([]byte, 100_000)
	for i := range f.kernel {
		f.kernel[i] = byte(i * 7)
	}
	f.initrd = []byte("initrd bytes\n")
	must(os.WriteFile(filepath.Join(netboot, "void", "vmlinuz"), f.kernel, 0o644))
	must(os.WriteFile(filepath.Join(netboot, "void", "initrd.img"), f.initrd, 0o644))
	must(os.WriteFile(filepath.Join(dir, "secret.txt"), []byte(nhSecret), 0o644))
	must(os.Symlink(filepath.Join(dir, "secret.txt"), filepath.Join(netboot, "escape")))
	must(os.Symlink("../secret.txt", filepath.Join(netboot, "escape-rel")))
	must(os.Symlink("void/initrd.img", filepath.Join(netboot, "alias")))
	root, err := os.OpenRoot(netboot)
	must(err)
	t.Cleanup(func() { root.Close() })

	profiles := filepath.Join(dir, "profiles")
	must(os.MkdirAll(profiles, 0o755))
	must(os.WriteFile(filepath.Join(profiles, "void.hcl"), []byte(nhProfiles), 0o644))
	ps, err := profile.LoadDir(profiles)
	must(err)

	f.dbPath = filepath.Join(dir, "state", "db")
	db, err := store.Open(f.dbPath)
	must(err)
	t.Cleanup(func() { db.Close() })
	log := slog.New(slog.NewJSONHandler(f.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	f.inv, err = inventory.Open(db, inventory.Pool{
		Subnet: netip.MustParsePrefix("10.77.0.0/24"),
		Range:  [2]netip.Addr{netip.MustParseAddr("10.77.0.100"), netip.MustParseAddr("10.77.0.110")},
		Lease:  time.Hour,
	}, log)
	must(err)

	f.h = &NodeHTTP{Booter: f.inv, Profiles: ps, DefaultProfile: "void", Assets: root, BaseURL: nhBase, Log: log}
	f.handler = f.h.Handler()
	return f
}

// do sends one request through the whole handler, logging included.
func (f *nhFixture) do(method, target string, body io.Reader, hdr ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, target, body)
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	f.handler.ServeHTTP(w, r)
	return w
}

func (f *nhFixture) report(token string, form url.Values) *httptest.ResponseRecorder {
	return f.do("POST", "/install/"+token+"/status", strings.NewReader(form.Encode()),
		"Content-Type", "application/x-www-form-urlencoded")
}

func (f *nhFixture) enroll(t testing.TB, req inventory.EnrollRequest) {
	t.Helper()
	if _, err := f.inv.Enroll(context.Background(), req); err != nil {
		t.Fatal(err)
	}
}

func (f *nhFixture) state(t *testing.T, mac string) inventory.State {
	t.Helper()
	n, ok := f.inv.Node(mac)
	if !ok {
		t.Fatalf("no node %s", mac)
	}
	return n.State
}

func (f *nhFixture) moveTo(t *testing.T, mac string, path ...inventory.State) {
	t.Helper()
	for _, s := range path {
		if _, err := f.inv.Move(context.Background(), mac, s, "test", "test"); err != nil {
			t.Fatal(err)
		}
	}
}

var nhTokenRE = regexp.MustCompile(`/install/([A-Za-z0-9_-]+)/status`)

// installToken fetches the node's script and returns the token in it.
func (f *nhFixture) installToken(t *testing.T, mac string) string {
	t.Helper()
	w := f.do("GET", "/ipxe?mac="+mac, nil)
	m := nhTokenRE.FindStringSubmatch(w.Body.String())
	if w.Code != 200 || m == nil {
		t.Fatalf("install script: %d\n%s", w.Code, w.Body)
	}
	return m[1]
}

func TestHTTPBootScript(t *testing.T) {
	f := newNodeHTTP(t)
	w := f.do("GET", "/boot.ipxe", nil)
	body := w.Body.String()
	if w.Code != 200 || !strings.HasPrefix(body, "#!ipxe\n") {
		t.Fatalf("%d\n%s", w.Code, body)
	}
	// The whole script: a returning node script ends iPXE with "exit 1",
	// which UEFI firmware takes as "try the next boot option".
	want := `#!ipxe
set tries:int32 0
:retry
chain --autofree ` + nhBase + `/ipxe?mac=${net0/mac} && exit 1 ||
inc tries
iseq ${tries} 3 && goto giveup ||
echo bootstrapd: no script yet, retrying in 3s
sleep 3
goto retry
:giveup
echo bootstrapd: giving up; falling back to the next boot device
exit 1
`
	if body != want {
		t.Fatalf("boot script:\n%s\nwant:\n%s", body, want)
	}
	if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("Content-Type = %q", ct)
	}
	if w := f.do("POST", "/boot.ipxe", nil); w.Code != http.StatusMethodNotAllowed {
		t.Fatalf("POST /boot.ipxe = %d", w.Code)
	}
}

func TestHTTPNodeScript(t *testing.T) {
	kernelLine := regexp.MustCompile(`(?m)^kernel (\S+) initrd=initrd0 initrd=initrd1 (.*)$`)
	for _, tc := range []struct {
		name    string
		mac     string // as the node sends it
		setup   func(t *testing.T, f *nhFixture)
		code    int
		has     []string
		hasNot  []string
		state   inventory.State // after the request; "" for no node
		checkFn func(t *testing.T, f *nhFixture, body string)
	}{
		{
			name:   "unknown MAC is recorded and sent away",
			mac:    nhMAC,
			code:   200,
			has:    []string{"#!ipxe", "not enrolled", "bootstrapd enroll " + nhMAC, "exit"},
			hasNot: []string{"kernel", "initrd", "sanboot"},
			state:  inventory.Discovered,
			checkFn: func(t *testing.T, f *nhFixture, body string) {
				if n, _ := f.inv.Node(nhMAC); n.Arch != "ipxe" || n.LastSeen.IsZero() {
					t.Fatalf("discovered over HTTP only: arch %q, last seen %v", n.Arch, n.LastSeen)
				}
			},
		},
		{
			name:   "discovered MAC again",
			mac:    nhMAC,
			setup:  func(t *testing.T, f *nhFixture) { f.inv.Seen(context.Background(), nhMAC, "efi-x64") },
			code:   200,
			has:    []string{"not enrolled", "exit"},
			hasNot: []string{"kernel"},
			state:  inventory.Discovered,
			checkFn: func(t *testing.T, f *nhFixture, body string) {
				// The arch DHCP saw is kept; iPXE is not an arch.
				if n, _ := f.inv.Node(nhMAC); n.Arch != "efi-x64" || len(n.History) != 1 {
					t.Fatalf("after the iPXE request: arch %q, %d events", n.Arch, len(n.History))
				}
			},
		},
		{
			name: "enrolled node gets the installer",
			mac:  strings.ToUpper(strings.ReplaceAll(nhMAC, ":", "-")),
			setup: func(t *testing.T, f *nhFixture) {
				f.enroll(t, inventory.EnrollRequest{MAC: nhMAC, Hostname: "n7", IP: netip.MustParseAddr("10.77.0.7")})
			},
			code: 200,
			has: []string{
				"#!ipxe",
				"initrd --name initrd0 " + nhBase + "/assets/void/initrd.img\n",
				"initrd --name initrd1 " + nhBase + "/assets/void/extra.img\n",
				"kernel " + nhBase + "/assets/void/vmlinuz ",
				"\nboot\n",
			},
			hasNot: []string{"exit"},
			state:  inventory.Installing,
			checkFn: func(t *testing.T, f *nhFixture, body string) {
				m := kernelLine.FindStringSubmatch(body)
				if m == nil {
					t.Fatalf("no kernel line with both initrds:\n%s", body)
				}
				tok := nhTokenRE.FindStringSubmatch(m[2])
				if tok == nil {
					t.Fatalf("cmdline %q carries no status URL with a token", m[2])
				}
				want := "root=/dev/null auto autourl=" + nhBase + "/install/" + tok[1] + "/config status=" +
					nhBase + "/install/" + tok[1] + "/status hostname=n7 ip=10.77.0.7"
				if m[2] != want {
					t.Fatalf("cmdline\n %q\nwant\n %q", m[2], want)
				}
				// The token in the script is the one the inventory will accept.
				if w := f.report(tok[1], url.Values{"mac": {nhMAC}}); w.Code != 200 || f.state(t, nhMAC) != inventory.Installed {
					t.Fatalf("report with the script's token: %d %s", w.Code, w.Body)
				}
			},
		},
		{
			name: "default profile for a node without one; profile without initrd",
			mac:  nhMAC,
			setup: func(t *testing.T, f *nhFixture) {
				f.enroll(t, inventory.EnrollRequest{MAC: nhMAC, Profile: "tiny"})
			},
			code:   200,
			has:    []string{"with profile tiny", "kernel " + nhBase + "/assets/void/vmlinuz quiet\nboot\n"},
			hasNot: []string{"initrd"},
			state:  inventory.Installing,
		},
		{
			name: "installing node that boots again gets a new token",
			mac:  nhMAC,
			setup: func(t *testing.T, f *nhFixture) {
				f.enroll(t, inventory.EnrollRequest{MAC: nhMAC})
				old := f.installToken(t, nhMAC)
				t.Cleanup(func() {
					if w := f.report(old, url.Values{"mac": {nhMAC}}); w.Code != http.StatusForbidden {
						t.Errorf("the previous token still works: %d", w.Code)
					}
				})
			},
			code:  200,
			has:   []string{"kernel "},
			state: inventory.Installing,
		},
		{
			name: "installed, exit",
			mac:  nhMAC,
			setup: func(t *testing.T, f *nhFixture) {
				f.enroll(t, inventory.EnrollRequest{MAC: nhMAC, BootMethod: inventory.BootExit})
				f.moveTo(t, nhMAC, inventory.Installing, inventory.Installed)
			},
			code:   200,
			has:    []string{"#!ipxe", "installed", "\nexit\n"},
			hasNot: []string{"kernel", "sanboot"},
			state:  inventory.Installed,
		},
		{
			name: "installed, sanboot",
			mac:  nhMAC,
			setup: func(t *testing.T, f *nhFixture) {
				f.enroll(t, inventory.EnrollRequest{MAC: nhMAC, BootMethod: inventory.BootSanboot})
				f.moveTo(t, nhMAC, inventory.Installing, inventory.Installed)
			},
			code:   200,
			has:    []string{"#!ipxe", "\nsanboot "},
			hasNot: []string{"kernel", "\nexit"},
			state:  inventory.Installed,
		},
		{
			name: "installed, none",
			mac:  nhMAC,
			setup: func(t *testing.T, f *nhFixture) {
				f.enroll(t, inventory.EnrollRequest{MAC: nhMAC, BootMethod: inventory.BootNone})
				f.moveTo(t, nhMAC, inventory.Installing, inventory.Installed)
			},
			code:   http.StatusNotFound,
			hasNot: []string{"#!ipxe"},
			state:  inventory.Installed,
		},
		{
			name: "ready node boots its disk",
			mac:  nhMAC,
			setup: func(t *testing.T, f *nhFixture) {
				f.enroll(t, inventory.EnrollRequest{MAC: nhMAC, BootMethod: inventory.BootSanboot})
				f.moveTo(t, nhMAC, inventory.Installing, inventory.Installed, inventory.Joined, inventory.Ready)
			},
			code:   200,
			has:    []string{"sanboot"},
			hasNot: []string{"kernel"},
			state:  inventory.Ready,
		},
		{
			name: "failed node is not reinstalled",
			mac:  nhMAC,
			setup: func(t *testing.T, f *nhFixture) {
				f.enroll(t, inventory.EnrollRequest{MAC: nhMAC})
				f.moveTo(t, nhMAC, inventory.Failed)
			},
			code:   200,
			has:    []string{"#!ipxe", "failed", "exit"},
			hasNot: []string{"kernel", "sanboot"},
			state:  inventory.Failed,
		},
		{
			name: "retired node is not reinstalled",
			mac:  nhMAC,
			setup: func(t *testing.T, f *nhFixture) {
				f.enroll(t, inventory.EnrollRequest{MAC: nhMAC})
				f.moveTo(t, nhMAC, inventory.Retiring, inventory.Retired)
			},
			code:   200,
			has:    []string{"#!ipxe", "retired", "exit"},
			hasNot: []string{"kernel", "sanboot"},
			state:  inventory.Retired,
		},
		{
			name: "profile not loaded",
			mac:  nhMAC,
			setup: func(t *testing.T, f *nhFixture) {
				f.enroll(t, inventory.EnrollRequest{MAC: nhMAC, Profile: "gone"})
			},
			code:   200,
			has:    []string{"#!ipxe", `"gone"`, "not loaded", "exit"},
			hasNot: []string{"kernel"},
			state:  inventory.Enrolled, // no token minted for an install that cannot start
		},
		{name: "bad MAC", mac: "52:54:00:aa:bb", code: http.StatusBadRequest, hasNot: []string{"#!ipxe"}},
		{name: "no MAC", mac: "", code: http.StatusBadRequest, hasNot: []string{"#!ipxe"}},
		{name: "iPXE variable not expanded", mac: "${net0/mac}", code: http.StatusBadRequest, hasNot: []string{"#!ipxe"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newNodeHTTP(t)
			if tc.setup != nil {
				tc.setup(t, f)
			}
			w := f.do("GET", "/ipxe?mac="+url.QueryEscape(tc.mac), nil)
			body := w.Body.String()
			if w.Code != tc.code {
				t.Fatalf("status %d, want %d\n%s", w.Code, tc.code, body)
			}
			for _, s := range tc.has {
				if !strings.Contains(body, s) {
					t.Errorf("script lacks %q:\n%s", s, body)
				}
			}
			for _, s := range tc.hasNot {
				if strings.Contains(body, s) {
					t.Errorf("script has %q:\n%s", s, body)
				}
			}
			n, ok := f.inv.Node(nhMAC)
			switch {
			case tc.state == "" && ok:
				t.Errorf("a node was recorded: %+v", n)
			case tc.state != "" && (!ok || n.State != tc.state):
				t.Errorf("node state %q (known %v), want %s", n.State, ok, tc.state)
			}
			if tc.checkFn != nil {
				tc.checkFn(t, f, body)
			}
		})
	}
}

func TestHTTPAssets(t *testing.T) {
	f := newNodeHTTP(t)
	for _, tc := range []struct {
		name, target, rng string
		code              int
		want              []byte // exact body, when 2xx
		ctype             string // Content-Type, when set
	}{
		// No extension, no registered type: nginx's default, not a sniff.
		{name: "kernel", target: "/assets/void/vmlinuz", code: 200, want: f.kernel, ctype: "application/octet-stream"},
		{name: "initrd", target: "/assets/void/initrd.img", code: 200, want: f.initrd},
		{name: "symlink inside the dir", target: "/assets/alias", code: 200, want: f.initrd},
		{name: "range", target: "/assets/void/vmlinuz", rng: "bytes=1000-1999", code: 206, want: f.kernel[1000:2000]},
		{name: "open range", target: "/assets/void/vmlinuz", rng: "bytes=99990-", code: 206, want: f.kernel[99990:]},
		{name: "suffix range", target: "/assets/void/vmlinuz", rng: "bytes=-10", code: 206, want: f.kernel[len(f.kernel)-10:]},
		{name: "unsatisfiable range", target: "/assets/void/vmlinuz", rng: "bytes=200000-", code: 416},
		{name: "missing", target: "/assets/void/nope", code: 404},
		{name: "dot-dot, escaped slash", target: "/assets/..%2fsecret.txt", code: 403},
		{name: "dot-dot deeper", target: "/assets/void/..%2f..%2fsecret.txt", code: 403},
		{name: "absolute path", target: "/assets/%2f" + "etc%2fpasswd", code: 403},
		{name: "absolute path to the secret", target: "/assets/" + url.PathEscape("/") + "tmp", code: 403},
		{name: "symlink out, absolute", target: "/assets/escape", code: 403},
		{name: "symlink out, relative", target: "/assets/escape-rel", code: 403},
		{name: "directory", target: "/assets/void", code: 404},
		{name: "directory, slash", target: "/assets/void/", code: 404},
		{name: "root directory", target: "/assets/", code: 404},
		{name: "directory below", target: "/assets/void/sub", code: 404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var hdr []string
			if tc.rng != "" {
				hdr = []string{"Range", tc.rng}
			}
			w := f.do("GET", tc.target, nil, hdr...)
			body := w.Body.Bytes()
			if w.Code != tc.code {
				t.Fatalf("%s: status %d, want %d (%q)", tc.target, w.Code, tc.code, firstBytes(body))
			}
			if bytes.Contains(body, []byte("SECRET")) || bytes.Contains(body, []byte("vmlinuz")) || bytes.Contains(body, []byte("root:")) {
				t.Fatalf("%s leaked content: %q", tc.target, firstBytes(body))
			}
			if tc.want != nil && !bytes.Equal(body, tc.want) {
				t.Fatalf("%s: got %d bytes, not the %d expected", tc.target, len(body), len(tc.want))
			}
			if ct := w.Header().Get("Content-Type"); tc.ctype != "" && ct != tc.ctype {
				t.Errorf("%s: Content-Type %q, want %q", tc.target, ct, tc.ctype)
			}
			if tc.code == 206 {
				if cr := w.Header().Get("Content-Range"); !strings.HasPrefix(cr, "bytes ") || !strings.HasSuffix(cr, "/100000") {
					t.Fatalf("Content-Range = %q", cr)
				}
			}
		})
	}
}

// Unclean paths are cleaned by the router before they reach the file
// server; whatever the reply, it must not carry anything from outside.
func TestHTTPAssetsUncleanPaths(t *testing.T) {
	f := newNodeHTTP(t)
	srv := httptest.NewServer(f.handler)
	defer srv.Close()
	for _, p := range []string{"/assets/../secret.txt", "/assets/void/../../secret.txt", "/assets//etc/passwd", "/assets/./../secret.txt"} {
		req, err := http.NewRequest("GET", srv.URL, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.URL.Opaque = p // sent exactly as written, not cleaned by the client
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode < 400 || bytes.Contains(body, []byte("SECRET")) || bytes.Contains(body, []byte("root:")) {
			t.Errorf("%s: %d %q", p, resp.StatusCode, firstBytes(body))
		}
	}
}

func nhMultipart(fields map[string]string) (io.Reader, string) {
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	for k, v := range fields {
		mw.WriteField(k, v)
	}
	mw.Close()
	return &b, mw.FormDataContentType()
}

func firstBytes(b []byte) []byte {
	if len(b) > 80 {
		return b[:80]
	}
	return b
}

func TestHTTPStatus(t *testing.T) {
	form := func(kv ...string) url.Values {
		v := url.Values{}
		for i := 0; i+1 < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return v
	}
	for _, tc := range []struct {
		name   string
		send   func(f *nhFixture, token string) *httptest.ResponseRecorder
		code   int
		body   string // substring of the reply
		state  inventory.State
		reason string
	}{
		{
			name:  "ok",
			send:  func(f *nhFixture, tok string) *httptest.ResponseRecorder { return f.report(tok, form("mac", nhMAC)) },
			code:  200,
			body:  "ok n1 installed",
			state: inventory.Installed,
		},
		{
			name: "ok, MAC in another notation",
			send: func(f *nhFixture, tok string) *httptest.ResponseRecorder {
				return f.report(tok, form("mac", "5254.00aa.bb01", "status", "installed"))
			},
			code:  200,
			state: inventory.Installed,
		},
		{
			name: "replay",
			send: func(f *nhFixture, tok string) *httptest.ResponseRecorder {
				f.report(tok, form("mac", nhMAC))
				return f.report(tok, form("mac", nhMAC))
			},
			code:  http.StatusForbidden,
			state: inventory.Installed,
		},
		{
			name:  "wrong MAC",
			send:  func(f *nhFixture, tok string) *httptest.ResponseRecorder { return f.report(tok, form("mac", nhOther)) },
			code:  http.StatusForbidden,
			state: inventory.Installing,
		},
		{
			name: "unknown token",
			send: func(f *nhFixture, tok string) *httptest.ResponseRecorder {
				return f.report("x"+tok, form("mac", nhMAC))
			},
			code:  http.StatusForbidden,
			state: inventory.Installing,
		},
		{
			name: "malformed MAC",
			send: func(f *nhFixture, tok string) *httptest.ResponseRecorder {
				return f.report(tok, form("mac", "52:54:00:aa"))
			},
			code:  http.StatusBadRequest,
			state: inventory.Installing,
		},
		{
			name: "failure",
			send: func(f *nhFixture, tok string) *httptest.ResponseRecorder {
				return f.report(tok, form("mac", nhMAC, "status", "failed: disk: no such device"))
			},
			code:   200,
			body:   "ok n1 failed",
			state:  inventory.Failed,
			reason: "disk: no such device",
		},
		{
			name: "progress",
			send: func(f *nhFixture, tok string) *httptest.ResponseRecorder {
				return f.report(tok, form("mac", nhMAC, "status", "installing: packages"))
			},
			code:  200,
			body:  "ok n1 installing",
			state: inventory.Installing,
		},
		{
			name: "oversized form",
			send: func(f *nhFixture, tok string) *httptest.ResponseRecorder {
				return f.report(tok, form("mac", nhMAC, "pad", strings.Repeat("x", 70<<10)))
			},
			code:  http.StatusRequestEntityTooLarge,
			state: inventory.Installing,
		},
		{
			name: "oversized body of another type",
			send: func(f *nhFixture, tok string) *httptest.ResponseRecorder {
				return f.do("POST", "/install/"+tok+"/status", bytes.NewReader(make([]byte, 70<<10)),
					"Content-Type", "application/octet-stream")
			},
			code:  http.StatusRequestEntityTooLarge,
			state: inventory.Installing,
		},
		{
			name: "multipart form",
			send: func(f *nhFixture, tok string) *httptest.ResponseRecorder {
				body, ct := nhMultipart(map[string]string{"mac": nhMAC, "status": "failed: no disk"})
				return f.do("POST", "/install/"+tok+"/status", body, "Content-Type", ct)
			},
			code:   200,
			state:  inventory.Failed,
			reason: "no disk",
		},
		{
			name: "oversized multipart form",
			send: func(f *nhFixture, tok string) *httptest.ResponseRecorder {
				body, ct := nhMultipart(map[string]string{"mac": nhMAC, "status": "failed: x", "pad": strings.Repeat("x", 70<<10)})
				return f.do("POST", "/install/"+tok+"/status", body, "Content-Type", ct)
			},
			code:  http.StatusRequestEntityTooLarge,
			state: inventory.Installing,
		},
		{
			// A report the server cannot read must not count as success.
			name: "JSON body",
			send: func(f *nhFixture, tok string) *httptest.ResponseRecorder {
				return f.do("POST", "/install/"+tok+"/status", strings.NewReader(`{"mac":"`+nhMAC+`","status":"failed: x"}`),
					"Content-Type", "application/json")
			},
			code:  http.StatusUnsupportedMediaType,
			state: inventory.Installing,
		},
		{
			name: "empty POST is success",
			send: func(f *nhFixture, tok string) *httptest.ResponseRecorder {
				return f.do("POST", "/install/"+tok+"/status", nil)
			},
			code:  200,
			body:  "ok n1 installed",
			state: inventory.Installed,
		},
		{
			name: "GET is not a report",
			send: func(f *nhFixture, tok string) *httptest.ResponseRecorder {
				return f.do("GET", "/install/"+tok+"/status?mac="+nhMAC, nil)
			},
			code:  http.StatusMethodNotAllowed,
			state: inventory.Installing,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newNodeHTTP(t)
			f.enroll(t, inventory.EnrollRequest{MAC: nhMAC, Hostname: "n1"})
			f.enroll(t, inventory.EnrollRequest{MAC: nhOther, Hostname: "n2"})
			tok := f.installToken(t, nhMAC)
			w := tc.send(f, tok)
			if w.Code != tc.code || !strings.Contains(w.Body.String(), tc.body) {
				t.Fatalf("reply %d %q, want %d with %q", w.Code, w.Body, tc.code, tc.body)
			}
			n, _ := f.inv.Node(nhMAC)
			if n.State != tc.state || n.Reason != tc.reason {
				t.Fatalf("node %s (%q), want %s (%q)", n.State, n.Reason, tc.state, tc.reason)
			}
			if o, _ := f.inv.Node(nhOther); o.State != inventory.Enrolled {
				t.Fatalf("the other node moved to %s", o.State)
			}
		})
	}
}

func TestHTTPTokenNeverLogged(t *testing.T) {
	f := newNodeHTTP(t)
	f.enroll(t, inventory.EnrollRequest{MAC: nhMAC, Hostname: "n1"})
	f.enroll(t, inventory.EnrollRequest{MAC: nhOther, Hostname: "n2"})
	old := f.installToken(t, nhMAC)
	tok := f.installToken(t, nhMAC) // a reboot: old is now void
	other := f.installToken(t, nhOther)
	tokens := []string{old, tok, other}

	steps := []struct {
		method, target string
		form           url.Values
		code           int
	}{
		{"POST", "/install/" + old + "/status", url.Values{"mac": {nhMAC}}, 403},
		{"POST", "/install/" + tok + "/status", url.Values{"mac": {nhMAC}, "status": {"installing: packages"}}, 200},
		{"POST", "/install/" + other + "/status", url.Values{"mac": {nhMAC}}, 403},
		{"POST", "/install/" + tok + "/status", url.Values{"mac": {"bogus"}}, 400},
		{"POST", "/install/" + tok + "/status", url.Values{"mac": {nhMAC}}, 200},
		{"POST", "/install/" + tok + "/status", url.Values{"mac": {nhMAC}}, 403},
		{"GET", "/install/" + other + "/status", nil, 405},
		{"GET", "/install/" + other + "/config", nil, 404},
		{"POST", "//install/" + other + "/status", url.Values{"mac": {nhOther}}, 307},
		{"POST", "/./install/" + other + "/status", url.Values{"mac": {nhOther}}, 307},
		{"POST", "/install/" + other, nil, 404},
		{"GET", "/install/" + other + "/", nil, 404},
	}
	for _, s := range steps {
		var body io.Reader
		var hdr []string
		if s.form != nil {
			body = strings.NewReader(s.form.Encode())
			hdr = []string{"Content-Type", "application/x-www-form-urlencoded"}
		}
		if w := f.do(s.method, s.target, body, hdr...); w.Code != s.code {
			t.Errorf("%s %s: %d, want %d", s.method, RedactPath(s.target), w.Code, s.code)
		}
	}
	logs := f.log.String()
	for _, tk := range tokens {
		if strings.Contains(logs, tk) {
			t.Fatalf("a token is in the log:\n%s", strings.ReplaceAll(logs, tk, "<TOKEN>"))
		}
	}
	for _, want := range []string{
		`"path":"/install/REDACTED/status","status":200`,
		`"path":"/install/REDACTED/status","status":403`,
		`"path":"/install/REDACTED/status","status":400`,
		`"path":"/ipxe"`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %s:\n%s", want, logs)
		}
	}
	// Nor is any token in the store file.
	raw, err := os.ReadFile(f.dbPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, tk := range tokens {
		if bytes.Contains(raw, []byte(tk)) {
			t.Fatal("a token is in the store file in clear")
		}
	}
}

func TestRedactPath(t *testing.T) {
	for in, want := range map[string]string{
		"/install/abc/status":            "/install/REDACTED/status",
		"/install/abc/config":            "/install/REDACTED/config",
		"/install/abc":                   "/install/REDACTED",
		"/install/abc/":                  "/install/REDACTED/",
		"//install/abc/status":           "//install/REDACTED/status",
		"/./install/abc/status":          "/./install/REDACTED/status",
		"/x/../install/abc/status":       "/x/../install/REDACTED/status",
		"/install/../install/abc/status": "/install/REDACTED/install/REDACTED/status",
		"/assets/void/vmlinuz":           "/assets/void/vmlinuz",
		"/ipxe":                          "/ipxe",
		"/installer/x":                   "/installer/x",
		"/":                              "/",
		"":                               "",
	} {
		if got := RedactPath(in); got != want {
			t.Errorf("RedactPath(%q) = %q, want %q", in, got, want)
		}
	}
}
