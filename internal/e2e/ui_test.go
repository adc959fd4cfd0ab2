package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/bootstrapd/bootstrapd/internal/netlab"
	"github.com/bootstrapd/bootstrapd/internal/routeros/routerostest"
)

// statusPageDoc is the screenshot TestUI takes (with
// BOOTSTRAPD_UPDATE_DOCS=1) and checks is there (without).
const statusPageDoc = "docs/status-page.png"

// chromium is Debian's headless browser. CI must have it (scripts/deps.sh
// installs it): there a missing browser fails the test rather than
// skipping it, since a skipped browser test proves nothing.
func chromium(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("chromium is not installed; scripts/deps.sh installs it (apt-get install chromium)")
		}
		t.Skip("chromium is not installed (apt-get install chromium, or scripts/deps.sh); the status page's browser test needs it")
	}
	return p
}

// newBrowser starts a headless Chromium for the test and returns a context
// for one tab in it.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)),
		chromedp.WindowSize(1280, 900),
		// The daemon's TLS certificate in this test is self-signed; the
		// CLI's trust of it (BOOTSTRAPD_CACERT) is tested on its own.
		chromedp.IgnoreCertErrors,
		chromedp.UserDataDir(t.TempDir()),
	)
	if os.Geteuid() == 0 {
		// Chromium refuses to run as root with its sandbox.
		opts = append(opts, chromedp.NoSandbox)
	}
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// uiSite writes a site on loopback (DHCP off, node HTTP on a free port),
// with a router block for the test router (so the page has a health check
// to show and retire has a teardown to wait for) and the admin API on TCP
// with a token and TLS. It returns the directory, the node HTTP address,
// the TCP admin URL, the token and the CA file that trusts the daemon.
func uiSite(t *testing.T, routerAddr, fingerprint string) (dir, httpAddr, adminURL, token, ca string) {
	t.Helper()
	dir = workerSiteDir(t)
	token = "ui-test-api-token-5f3a9c"
	os.WriteFile(filepath.Join(dir, "api-token"), []byte(token+"\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "router-pw"), []byte(routerPassword), 0o600)
	ca, _ = routerostest.CertFiles(t, dir, "api")
	httpAddr = fmt.Sprintf("127.0.0.1:%d", netlab.FreePort(t, "tcp"))
	adminAddr := fmt.Sprintf("127.0.0.1:%d", netlab.FreePort(t, "tcp"))
	site := fmt.Sprintf(`interface       = "lo"
server_address  = "127.0.0.1"
state_dir       = "state"
default_profile = "worker"
dhcp {
  mode   = "off"
  subnet = "127.0.0.0/24"
  router = "127.0.0.254"
  domain = "rack.test"
}
tftp {
  listen = "127.0.0.1:%d"
}
http {
  listen = %q
}
api {
  socket        = "api.sock"
  listen        = %q
  token_file    = "api-token"
  tls_cert_file = "api.crt"
  tls_key_file  = "api.key"
}
router {
  api           = %q
  fingerprint   = %q
  password_file = "router-pw"
  timeout       = "2s"
  interface     = "ether2"
}
`, netlab.FreePort(t, "tcp"), httpAddr, adminAddr, routerAddr, fingerprint)
	os.WriteFile(filepath.Join(dir, "site.hcl"), []byte(site), 0o644)
	return dir, httpAddr, "https://" + adminAddr, token, ca
}

// uiLink is what `bootstrapd ui -json` prints.
type uiLink struct {
	URL     string    `json:"url"`
	Expires time.Time `json:"expires"`
	Serving string    `json:"serving"`
}

// startUI runs `bootstrapd ui -json` with env and returns the link it
// prints; a proxy it serves runs until the test ends.
func startUI(t *testing.T, d *daemon, env ...string) uiLink {
	t.Helper()
	cmd := exec.Command(d.bin, "ui", "-json")
	cmd.Env = append(os.Environ(), env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Signal(os.Interrupt); cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	var link uiLink
	if err != nil || json.Unmarshal([]byte(line), &link) != nil {
		t.Fatalf("bootstrapd ui printed %q (%v); stderr:\n%s", line, err, stderr.String())
	}
	return link
}

// waitJS polls a JavaScript expression in the page until it is true.
func waitJS(t *testing.T, ctx context.Context, what, expr string) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if _, err := chromedp.Run(tctx, chromedp.Poll[bool](expr, chromedp.WithPollingInterval(50*time.Millisecond))); err != nil {
		text, _ := chromedp.Run(ctx, chromedp.Evaluate[string]("document.body.innerText"))
		t.Fatalf("waiting for %s (%s): %v\npage:\n%s", what, expr, err, text)
	}
}

func js[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
	return v
}

// rowState is the expression for a node's state as its row shows it.
func rowState(mac string) string {
	return fmt.Sprintf(`(document.querySelector('#nodes tr[data-mac=%q] td.lifecycle .state') || {}).textContent`, mac)
}

// TestUI drives the status page in headless Chromium against a real
// daemon: refused without a link, `bootstrapd ui`'s link logs in once
// (through the local proxy to the socket, and on the daemon's own TLS
// listener), and a node enrolled and moved through its states with the
// CLI and its installer's callbacks shows up in the table, the progress
// bar and its history without the page reloading. The screenshot is
// docs/status-page.png. No secret reaches the daemon's log.
func TestUI(t *testing.T) {
	netlab.NeedRoot(t)
	ctx := newBrowser(t)
	rt := routerostest.New(routerostest.Options{Version: "7.19", User: "bootstrapd", Password: routerPassword})
	rl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	routerAddr := rt.Serve(t, rl, true)
	dir, httpAddr, adminURL, token, ca := uiSite(t, routerAddr, rt.Fingerprint())
	d := startDaemon(t, nil, dir)

	link := startUI(t, d, "BOOTSTRAPD_ADDR=unix://"+d.sock)
	if !strings.HasPrefix(link.URL, "http://"+link.Serving+"/ui/login?code=") || !strings.HasPrefix(link.Serving, "127.0.0.1:") {
		t.Fatalf("link %+v: want the local proxy's login URL", link)
	}
	code := link.URL[strings.Index(link.URL, "code=")+len("code="):]
	page := "http://" + link.Serving + "/ui/"

	// Without the link: refused, saying how to get one.
	resp, err := chromedp.Run(ctx, chromedp.NavigateResponse(page))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != http.StatusUnauthorized || !strings.Contains(js[string](t, ctx, "document.body.innerText"), "bootstrapd ui") {
		t.Errorf("the page without a session: %d\n%s", resp.Status, js[string](t, ctx, "document.body.innerText"))
	}

	// The link logs in and leaves the code behind.
	if err := chromedp.Do(ctx, chromedp.Navigate(link.URL)); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "the page to go live", `document.querySelector('#live').dataset.state === 'live'`)
	if loc := js[string](t, ctx, "location.href"); loc != page {
		t.Errorf("after login the browser is at %s, want %s without the code", loc, page)
	}
	cookies, err := chromedp.Run(ctx, chromedp.Action[[]*network.Cookie](func(ctx context.Context, tg *chromedp.Target) ([]*network.Cookie, error) {
		r, err := cdp.Call(ctx, tg, network.GetCookies, network.GetCookiesParams{})
		return r.Cookies, err
	}))
	if err != nil || len(cookies) != 1 || !cookies[0].HTTPOnly || cookies[0].SameSite != network.CookieSameSiteStrict {
		t.Fatalf("session cookie: %+v %v", cookies, err)
	}
	session := cookies[0].Value

	// The same link in another browser profile: refused, it was spent.
	other, cancelOther := chromedp.NewContext(ctx, chromedp.WithNewBrowserContext())
	defer cancelOther()
	resp, err = chromedp.Run(other, chromedp.NavigateResponse(link.URL))
	if err != nil {
		t.Fatal(err)
	}
	if text := js[string](t, other, "document.body.innerText"); resp.Status != http.StatusForbidden || !strings.Contains(text, "already used or has expired") {
		t.Errorf("the replayed link: %d\n%s", resp.Status, text)
	}
	cancelOther()

	// Mark the page: a reload would lose the mark.
	js[bool](t, ctx, "window.noReload = true")
	waitJS(t, ctx, "the router's health", `!!document.querySelector('#health tr[data-check="router"].ok')`)
	if got := js[string](t, ctx, "document.querySelector('#progress-text').textContent"); got != "0 of 0 ready" {
		t.Errorf("progress with no nodes: %q", got)
	}

	const n1, n2 = "52:54:00:c3:00:01", "52:54:00:c3:00:02"
	d.mustCLI(t, "enroll", n1, "-hostname", "n1")
	waitJS(t, ctx, "n1 enrolled", rowState(n1)+` === 'enrolled'`)
	waitJS(t, ctx, "the bar to count n1", `document.querySelector('#progress-text').textContent === '0 of 1 ready' && document.querySelector('#progress').max === 1`)

	// Its installer: the script makes it installing, the callback installed.
	client := &http.Client{Timeout: 10 * time.Second}
	status := installScript(t, client, httpAddr, n1)
	waitJS(t, ctx, "n1 installing", rowState(n1)+` === 'installing'`)
	if code := report(t, client, status, n1, "installed"); code != http.StatusOK {
		t.Fatalf("installed report: %d", code)
	}
	waitJS(t, ctx, "n1 installed", rowState(n1)+` === 'installed'`)
	d.mustCLI(t, "enroll", n2, "-hostname", "n2")
	waitJS(t, ctx, "the bar to count n2", `document.querySelector('#progress-text').textContent === '0 of 2 ready'`)

	// Its history, one click away.
	if err := chromedp.Do(ctx, chromedp.Click(fmt.Sprintf(`#nodes tr[data-mac=%q] button.node`, n1))); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "n1's history", `!document.querySelector('#history').hidden && document.querySelector('#history tbody').innerText.includes('installing → installed')`)
	screenshot(t, ctx)

	// Retire n2: retiring while the router's record goes, then retired,
	// and the bar stops counting it.
	d.mustCLI(t, "retire", n2)
	waitJS(t, ctx, "n2 retired", rowState(n2)+` === 'retired'`)
	waitJS(t, ctx, "the bar without n2", `document.querySelector('#progress-text').textContent === '0 of 1 ready'`)
	d.mustCLI(t, "reinstall", "n1")
	waitJS(t, ctx, "n1 back to enrolled", rowState(n1)+` === 'enrolled' && document.querySelector('#history tbody').innerText.includes('installed → enrolled')`)
	if !js[bool](t, ctx, "window.noReload === true") {
		t.Error("the page reloaded; it should follow the event stream in place")
	}

	// The daemon's TLS listener serves the same page through the same kind
	// of link, minted with the token, which goes in no URL.
	noCA := exec.Command(d.bin, "ui")
	noCA.Env = append(os.Environ(), "BOOTSTRAPD_ADDR="+adminURL, "BOOTSTRAPD_TOKEN="+token)
	if out, err := noCA.CombinedOutput(); err == nil || !strings.Contains(string(out), "certificate") {
		t.Errorf("`bootstrapd ui` trusted a self-signed daemon without BOOTSTRAPD_CACERT: %v\n%s", err, out)
	}
	tcpLink := startUI(t, d, "BOOTSTRAPD_ADDR="+adminURL, "BOOTSTRAPD_TOKEN="+token, "BOOTSTRAPD_CACERT="+ca)
	if !strings.HasPrefix(tcpLink.URL, adminURL+"/ui/login?code=") || tcpLink.Serving != "" || strings.Contains(tcpLink.URL, token) {
		t.Fatalf("TCP link %+v: want the daemon's own login URL", tcpLink)
	}
	tcp, cancelTCP := chromedp.NewContext(ctx, chromedp.WithNewBrowserContext())
	defer cancelTCP()
	if err := chromedp.Do(tcp, chromedp.Navigate(tcpLink.URL)); err != nil {
		t.Fatal(err)
	}
	waitJS(t, tcp, "the TLS page to go live with both nodes", `document.querySelector('#live').dataset.state === 'live' && document.querySelectorAll('#nodes tbody tr').length === 2`)
	tcpCookies, err := chromedp.Run(tcp, chromedp.Action[[]*network.Cookie](func(ctx context.Context, tg *chromedp.Target) ([]*network.Cookie, error) {
		r, err := cdp.Call(ctx, tg, network.GetCookies, network.GetCookiesParams{})
		return r.Cookies, err
	}))
	if err != nil || len(tcpCookies) != 1 || !tcpCookies[0].Secure {
		t.Errorf("session cookie over TLS: %+v %v, want Secure", tcpCookies, err)
	}

	// Never on the node-facing port.
	for _, path := range []string{"/ui/", "/ui/login?code=" + code, "/ui/api/nodes", "/v1/health"} {
		resp, err := client.Get("http://" + httpAddr + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("node HTTP port answers %s with %d, want 404", path, resp.StatusCode)
		}
	}

	log := d.log.String()
	for what, secret := range map[string]string{"api token": token, "login code": code, "session": session, "TLS login code": tcpLink.URL[strings.Index(tcpLink.URL, "code=")+5:]} {
		if strings.Contains(log, secret) {
			t.Errorf("the daemon's log holds the %s", what)
		}
	}
	for _, want := range []string{"status page login", "status page request refused"} {
		if !strings.Contains(log, want) {
			t.Errorf("the daemon's log lacks %q", want)
		}
	}
}

// screenshot writes the page to docs/status-page.png with
// BOOTSTRAPD_UPDATE_DOCS=1, and otherwise checks that it is there.
func screenshot(t *testing.T, ctx context.Context) {
	t.Helper()
	root, err := netlab.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(root, statusPageDoc)
	if os.Getenv("BOOTSTRAPD_UPDATE_DOCS") == "" {
		if fi, err := os.Stat(path); err != nil || fi.Size() == 0 {
			t.Errorf("%s: %v (BOOTSTRAPD_UPDATE_DOCS=1 go test -run TestUI ./internal/e2e/ writes it)", statusPageDoc, err)
		}
		return
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s (%d bytes)", statusPageDoc, len(png))
}
