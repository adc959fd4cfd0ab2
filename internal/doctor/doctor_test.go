package doctor

import (
	"bytes"
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

	"github.com/bootstrapd/bootstrapd/internal/netlab"
	"github.com/bootstrapd/bootstrapd/internal/routeros/routerostest"
)

const poolDHCP = `  mode   = "pool"
  subnet = "10.98.0.0/24"`

// writeSite lays out a site that passes every check inside a lab holding
// 10.98.0.1/24 on br0: boot files, one profile with its kernel and initrd,
// state and the admin socket under dir.
func writeSite(t *testing.T, dir, dhcp string) string {
	t.Helper()
	files := map[string]string{
		"netboot/undionly.kpxe":         "bios",
		"netboot/snponly.efi":           "efi",
		"netboot/demo/vmlinuz":          "kernel",
		"netboot/demo/initramfs.gz":     "initrd",
		"profiles/demo.hcl":             demoProfile,
		"profiles/autoinstall.cfg.tmpl": "hostname={{.Hostname}}\nend_script={{.ConfigURL}}/post.sh\n",
		"site.hcl":                      fmt.Sprintf(siteFmt, dhcp),
		"elsewhere/undionly.kpxe":       "bios, outside the netboot directory",
		"elsewhere/not-a-profile.md":    "",
	}
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "site.hcl")
}

const siteFmt = `interface       = "br0"
state_dir       = "state"
default_profile = "demo"

dhcp {
%s
}

api {
  socket = "api.sock"
}
`

const demoProfile = `profile "demo" {
  kernel  = "demo/vmlinuz"
  initrd  = ["demo/initramfs.gz"]
  cmdline = "console=ttyS0 bootstrapd.report={{.StatusURL}}"
  templates = {
    "autoinstall.cfg" = "autoinstall.cfg.tmpl"
  }
}
`

// edit rewrites a file under dir.
func edit(t *testing.T, dir, name string, f func(string) string) {
	t.Helper()
	p := filepath.Join(dir, name)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(f(string(b))), 0o644); err != nil {
		t.Fatal(err)
	}
}

// serveAPI stands in for a running bootstrapd's admin API on the socket.
func serveAPI(t *testing.T, path string, h http.HandlerFunc) {
	t.Helper()
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
}

func TestDoctor(t *testing.T) {
	cases := []struct {
		name  string
		dhcp  string // the dhcp block's body; poolDHCP when empty
		setup func(t *testing.T, lab *netlab.Lab, dir string)
		// fail is the one check that must fail, "" when all must pass;
		// detail and fix are substrings its Detail and Fix must contain
		// (for passing runs, detail is looked for in any OK line).
		fail, detail, fix string
	}{
		{name: "all OK", detail: "kernel demo/vmlinuz, initrd demo/initramfs.gz, templates autoinstall.cfg; cmdline: console=ttyS0 bootstrapd.report=http://10.98.0.1:8080/install/TOKEN/status"},
		{name: "interface missing", setup: func(t *testing.T, lab *netlab.Lab, dir string) {
			edit(t, dir, "site.hcl", func(s string) string { return strings.Replace(s, `"br0"`, `"nope0"`, 1) })
		}, fail: "interface", detail: `no interface "nope0" on this machine`, fix: "set interface at " + "%DIR%/site.hcl:1"},
		{name: "interface down", setup: func(t *testing.T, lab *netlab.Lab, dir string) {
			run(t, "ip", "-n", lab.Name(), "link", "set", "br0", "down")
		}, fail: "interface", detail: "br0 is down", fix: "`ip link set br0 up`"},
		{name: "no address in the subnet", dhcp: `  mode   = "pool"
  subnet = "10.97.0.0/24"
  router = "10.97.0.1"`, fail: "interface", detail: "br0 has no IPv4 address in 10.97.0.0/24 (it has only 10.98.0.1/24)",
			fix: "`ip addr add 10.97.0.2/24 dev br0`, or set dhcp.subnet at %DIR%/site.hcl:7"},
		{name: "relayed subnet with server_address", dhcp: `  mode   = "pool"
  subnet = "10.97.0.0/24"`, setup: func(t *testing.T, lab *netlab.Lab, dir string) {
			edit(t, dir, "site.hcl", func(s string) string { return `server_address = "10.98.0.1"` + "\n" + s })
		}, detail: "br0 is up with 10.98.0.1/24; nodes will reach bootstrapd at 10.98.0.1; none of its addresses is in 10.97.0.0/24, which is fine only if"},
		{name: "DHCP port taken", setup: func(t *testing.T, lab *netlab.Lab, dir string) {
			lab.ListenPacket(t, "udp4", ":67")
		}, fail: "dhcp port 67", detail: "67/udp on br0 is in use by doctor.test (pid", fix: "except-interface=br0"},
		{name: "proxyDHCP port taken", dhcp: `  mode = "proxy"`, setup: func(t *testing.T, lab *netlab.Lab, dir string) {
			lab.ListenPacket(t, "udp4", ":4011")
		}, fail: "dhcp port 4011", detail: "4011/udp on br0 is in use by doctor.test", fix: "stop doctor.test"},
		{name: "TFTP port taken", setup: func(t *testing.T, lab *netlab.Lab, dir string) {
			lab.ListenPacket(t, "udp4", "10.98.0.1:69")
		}, fail: "tftp port", detail: "10.98.0.1:69/udp is in use by doctor.test", fix: "or set tftp.listen in"},
		{name: "HTTP port taken", setup: func(t *testing.T, lab *netlab.Lab, dir string) {
			lab.Listen(t, "tcp4", "10.98.0.1:8080")
		}, fail: "http port", detail: "10.98.0.1:8080/tcp is in use by doctor.test", fix: "or set http.listen in"},
		{name: "beside a running bootstrapd", setup: func(t *testing.T, lab *netlab.Lab, dir string) {
			// Its ports are held, as a live daemon holds them.
			lab.ListenPacket(t, "udp4", ":67")
			lab.Listen(t, "tcp4", "10.98.0.1:8080")
			serveAPI(t, filepath.Join(dir, "api.sock"), func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/v1/nodes" {
					http.NotFound(w, r)
					return
				}
				w.Write([]byte(`[{"mac":"52:54:00:aa:bb:cc"}]`))
			})
		}, detail: "a bootstrapd is serving on %DIR%/api.sock (1 node); the ports below are its own"},
		{name: "stale admin socket", setup: func(t *testing.T, lab *netlab.Lab, dir string) {
			l, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(dir, "api.sock"), Net: "unix"})
			if err != nil {
				t.Fatal(err)
			}
			l.SetUnlinkOnClose(false) // as after a SIGKILL
			l.Close()
		}, detail: "api.sock is left over from a bootstrapd that did not stop cleanly"},
		{name: "admin socket held by something else", setup: func(t *testing.T, lab *netlab.Lab, dir string) {
			serveAPI(t, filepath.Join(dir, "api.sock"), http.NotFound)
		}, fail: "admin socket", detail: "does not answer like bootstrapd: GET /v1/nodes answered 404", fix: "ss -xlp src"},
		{name: "missing boot file", setup: func(t *testing.T, lab *netlab.Lab, dir string) {
			os.Remove(filepath.Join(dir, "netboot", "snponly.efi"))
		}, fail: "site", detail: "site.hcl:1: boot file snponly.efi is missing", fix: "do what the message says"},
		{name: "boot file links out of netboot", setup: func(t *testing.T, lab *netlab.Lab, dir string) {
			p := filepath.Join(dir, "netboot", "undionly.kpxe")
			os.Remove(p)
			if err := os.Symlink(filepath.Join(dir, "elsewhere", "undionly.kpxe"), p); err != nil {
				t.Fatal(err)
			}
		}, fail: "netboot files", detail: "undionly.kpxe leaves %DIR%/netboot", fix: "copy the file into"},
		{name: "empty boot file", setup: func(t *testing.T, lab *netlab.Lab, dir string) {
			os.WriteFile(filepath.Join(dir, "netboot", "snponly.efi"), nil, 0o644)
		}, fail: "netboot files", detail: "snponly.efi is empty", fix: "copy snponly.efi again"},
		{name: "profile kernel missing", setup: func(t *testing.T, lab *netlab.Lab, dir string) {
			os.Remove(filepath.Join(dir, "netboot", "demo", "vmlinuz"))
		}, fail: "profile demo", detail: "demo/vmlinuz is missing from %DIR%/netboot",
			fix: "copy it to %DIR%/netboot/demo/vmlinuz, or fix the path in %DIR%/profiles/demo.hcl:1"},
		{name: "broken profile template", setup: func(t *testing.T, lab *netlab.Lab, dir string) {
			edit(t, dir, "profiles/demo.hcl", func(s string) string { return strings.Replace(s, "{{.StatusURL}}", "{{.StatusUrl}}", 1) })
		}, fail: "profiles", detail: "%DIR%/profiles/demo.hcl:4: cmdline template", fix: "edit the profile at the file:line named"},
		{name: "router answers", dhcp: poolDHCP + "\n  router = \"10.98.0.254\"", setup: func(t *testing.T, lab *netlab.Lab, dir string) {
			withRouter(t, lab, dir, "pw")
		}, detail: ": RouterOS 7.19 (stable), logged in as bootstrapd"},
		{name: "router refuses the password", dhcp: poolDHCP + "\n  router = \"10.98.0.254\"", setup: func(t *testing.T, lab *netlab.Lab, dir string) {
			withRouter(t, lab, dir, "wrong")
		}, fail: "router", detail: "login as bootstrapd", fix: "fingerprint (`bootstrapd router fingerprint`)"},
		{name: "site does not parse", setup: func(t *testing.T, lab *netlab.Lab, dir string) {
			edit(t, dir, "site.hcl", func(s string) string { return strings.Replace(s, "dhcp {", "dhcp {{", 1) })
		}, fail: "site", detail: "%DIR%/site.hcl:5", fix: "do what the message says"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			lab := netlab.NewLab(t, "10.98.0.1/24")
			dir := t.TempDir()
			dhcp := c.dhcp
			if dhcp == "" {
				dhcp = poolDHCP
			}
			site := writeSite(t, dir, dhcp)
			if c.setup != nil {
				c.setup(t, lab, dir)
			}
			var rs []Result
			// Inside the lab, so the interface lookups and the binds see
			// its br0 and its ports, not the host's.
			if err := lab.Do(func() error { rs = Run(context.Background(), site); return nil }); err != nil {
				t.Fatal(err)
			}
			var text bytes.Buffer
			WriteText(&text, rs)
			t.Logf("doctor said:\n%s", text.String())

			sub := func(s string) string { return strings.ReplaceAll(s, "%DIR%", dir) }
			detail, fix := sub(c.detail), sub(c.fix)
			if c.fail == "site" && len(rs) != 1 {
				t.Errorf("the site does not load, yet doctor went on to %d more checks", len(rs)-1)
			}
			found := false
			for _, r := range rs {
				switch {
				case r.Name == c.fail:
					found = true
					if r.OK {
						t.Errorf("%s passed, want FAIL", r.Name)
					}
					if !strings.Contains(r.Detail, detail) {
						t.Errorf("%s detail %q, want it to contain %q", r.Name, r.Detail, detail)
					}
					if !strings.Contains(r.Fix, fix) {
						t.Errorf("%s fix %q, want it to contain %q", r.Name, r.Fix, fix)
					}
				case !r.OK:
					t.Errorf("%s failed too: %s -> %s", r.Name, r.Detail, r.Fix)
				case c.fail == "" && strings.Contains(r.Detail, detail):
					found = true
				}
				if !r.OK && r.Fix == "" {
					t.Errorf("%s failed without a fix", r.Name)
				}
			}
			if !found {
				t.Errorf("no result named %q / saying %q", c.fail, detail)
			}
			if c.fail == "" && len(rs) < 9 {
				t.Errorf("only %d checks ran", len(rs))
			}
		})
	}
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

func TestWrite(t *testing.T) {
	rs := []Result{
		{Name: "interface", OK: true, Detail: "br0 is up"},
		{Name: "http port", Detail: "10.98.0.1:8080/tcp is in use by nginx (pid 7)", Fix: "stop nginx (pid 7)"},
	}
	var text bytes.Buffer
	if err := WriteText(&text, rs); err != nil {
		t.Fatal(err)
	}
	want := "OK   interface: br0 is up\n" +
		"FAIL http port: 10.98.0.1:8080/tcp is in use by nginx (pid 7) -> stop nginx (pid 7)\n"
	if text.String() != want {
		t.Errorf("text:\n%s\nwant:\n%s", text.String(), want)
	}
	var js bytes.Buffer
	if err := WriteJSON(&js, rs); err != nil {
		t.Fatal(err)
	}
	var got Report
	if err := json.Unmarshal(js.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if got.OK || len(got.Checks) != 2 || got.Checks[1].Fix != "stop nginx (pid 7)" {
		t.Errorf("json: %s", js.String())
	}
	if Failed(rs) != 1 {
		t.Errorf("Failed = %d, want 1", Failed(rs))
	}
}

// withRouter adds a router block for a test router inside the lab whose
// password is "pw"; the site's password file says password.
func withRouter(t *testing.T, lab *netlab.Lab, dir, password string) {
	rt := routerostest.New(routerostest.Options{Version: "7.19", User: "bootstrapd", Password: "pw"})
	addr := rt.Serve(t, lab.Listen(t, "tcp", "10.98.0.1:0"), true)
	if err := os.WriteFile(filepath.Join(dir, "router-pw"), []byte(password), 0o600); err != nil {
		t.Fatal(err)
	}
	edit(t, dir, "site.hcl", func(s string) string {
		return strings.Replace(s, "dhcp {", `router {
  api           = "`+addr+`"
  fingerprint   = "`+rt.Fingerprint()+`"
  password_file = "router-pw"
  interface     = "ether2"
  timeout       = "2s"
}
dhcp {`, 1)
	})
}
