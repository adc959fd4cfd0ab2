package config

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// writeSite puts src in a temp dir beside a netboot dir holding the default
// boot files, so that only what a case changes can fail.
func writeSite(t *testing.T, src string) string {
	t.Helper()
	dir := t.TempDir()
	nb := filepath.Join(dir, "netboot")
	if err := os.Mkdir(nb, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"undionly.kpxe", "snponly.efi"} {
		if err := os.WriteFile(filepath.Join(nb, f), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p := filepath.Join(dir, "site.hcl")
	if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestMinimalSiteGetsDefaults(t *testing.T) {
	p := writeSite(t, "interface = \"br0\"\ndhcp {\n  subnet = \"10.77.0.0/24\"\n}\n")
	s, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(p)
	want := []struct{ name, got, want string }{
		{"mode", s.DHCP.Mode, ModeReservation},
		{"range start", s.Range[0].String(), "10.77.0.128"},
		{"range end", s.Range[1].String(), "10.77.0.254"},
		{"netboot", s.NetbootDir, filepath.Join(dir, "netboot")},
		{"profiles", s.ProfilesDir, filepath.Join(dir, "profiles")},
		{"state", s.StateDir, DefaultStateDir},
		{"socket", s.API.Socket, DefaultSocket},
		{"bios", s.Boot.BIOS, "undionly.kpxe"},
		{"efi", s.Boot.EFI, "snponly.efi"},
		{"http", s.HTTP.Listen, ":8080"},
	}
	for _, w := range want {
		if w.got != w.want {
			t.Errorf("%s = %q, want %q", w.name, w.got, w.want)
		}
	}
	if s.Lease != time.Hour || s.TFTP.BlockSize != 1468 {
		t.Errorf("lease %v blksize %d", s.Lease, s.TFTP.BlockSize)
	}
	if s.Subnet != netip.MustParsePrefix("10.77.0.0/24") {
		t.Errorf("subnet %v", s.Subnet)
	}
}

func TestFullSite(t *testing.T) {
	p := writeSite(t, `
interface      = "eth1"
server_address = "10.77.0.1"
state_dir      = "state"
dhcp {
  mode       = "pool"
  subnet     = "10.77.0.0/24"
  range      = ["10.77.0.10", "10.77.0.20"]
  router     = "10.77.0.1"
  dns        = ["10.77.0.1", "9.9.9.9"]
  domain     = "lab.example"
  lease_time = "10m"
}
tftp {
  blksize = 512
}
`)
	s, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if s.Range != [2]netip.Addr{netip.MustParseAddr("10.77.0.10"), netip.MustParseAddr("10.77.0.20")} {
		t.Errorf("range %v", s.Range)
	}
	if s.Server != netip.MustParseAddr("10.77.0.1") || s.Lease != 10*time.Minute {
		t.Errorf("server %v lease %v", s.Server, s.Lease)
	}
	if s.StateDir != filepath.Join(filepath.Dir(p), "state") {
		t.Errorf("relative state_dir not resolved against the site file: %s", s.StateDir)
	}
}

func TestConfigErrors(t *testing.T) {
	cases := []struct {
		name, src string
		line      int
		want      string
	}{
		{"unknown key", "interface = \"br0\"\ndhcp {\n  subnet = \"10.0.0.0/24\"\n  subnett = \"x\"\n}\n", 4, "subnett"},
		{"unknown block", "interface = \"br0\"\nrouterr {\n}\n", 2, "routerr"},
		{"missing interface", "dhcp {\n  subnet = \"10.0.0.0/24\"\n}\n", 1, "interface"},
		{"bad cidr", "interface = \"br0\"\ndhcp {\n  subnet = \"10.0.0.300/24\"\n}\n", 3, "not an IPv4 CIDR"},
		{"host bits", "interface = \"br0\"\ndhcp {\n  subnet = \"10.0.0.5/24\"\n}\n", 3, `did you mean "10.0.0.0/24"`},
		{"range outside", "interface = \"br0\"\ndhcp {\n  subnet = \"10.0.0.0/24\"\n  range = [\"10.0.0.10\", \"10.0.1.10\"]\n}\n", 4, "outside subnet 10.0.0.0/24"},
		{"range reversed", "interface = \"br0\"\ndhcp {\n  subnet = \"10.0.0.0/24\"\n  range = [\"10.0.0.50\", \"10.0.0.10\"]\n}\n", 4, "after its end"},
		{"range broadcast", "interface = \"br0\"\ndhcp {\n  subnet = \"10.0.0.0/24\"\n  range = [\"10.0.0.10\", \"10.0.0.255\"]\n}\n", 4, "broadcast"},
		{"range one", "interface = \"br0\"\ndhcp {\n  subnet = \"10.0.0.0/24\"\n  range = [\"10.0.0.10\"]\n}\n", 4, "exactly two"},
		{"bad mode", "interface = \"br0\"\ndhcp {\n  mode = \"full\"\n}\n", 3, "not one of reservation, pool, proxy, off"},
		{"pool without subnet", "interface = \"br0\"\ndhcp {\n  mode = \"pool\"\n}\n", 2, "needs subnet"},
		{"router outside", "interface = \"br0\"\ndhcp {\n  subnet = \"10.0.0.0/24\"\n  router = \"10.9.0.1\"\n}\n", 4, "outside subnet"},
		{"bad dns", "interface = \"br0\"\ndhcp {\n  subnet = \"10.0.0.0/24\"\n  dns = [\"x\"]\n}\n", 4, "dns server"},
		{"bad lease", "interface = \"br0\"\ndhcp {\n  subnet = \"10.0.0.0/24\"\n  lease_time = \"5s\"\n}\n", 4, "from 1m to 168h"},
		{"bad blksize", "interface = \"br0\"\ndhcp {\n  mode = \"off\"\n}\ntftp {\n  blksize = 70000\n}\n", 6, "outside 512..65464"},
		{"missing boot file", "interface = \"br0\"\ndhcp {\n  mode = \"off\"\n}\nboot {\n  efi = \"ipxe.efi\"\n}\n", 6, "boot file ipxe.efi is missing"},
		{"syntax", "interface = \"br0\n", 1, ""},
		{"bad server", "interface = \"br0\"\nserver_address = \"nope\"\ndhcp {\n  mode = \"off\"\n}\n", 2, "server_address"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := writeSite(t, c.src)
			_, err := Load(p)
			if err == nil {
				t.Fatal("Load succeeded, want an error")
			}
			prefix := p + ":" + strconv.Itoa(c.line) + ":"
			if !strings.HasPrefix(err.Error(), prefix) {
				t.Errorf("error %q does not start with %q", err, prefix)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not mention %q", err, c.want)
			}
		})
	}
}

// TestAPIToken covers the TCP admin listener: it needs a token file that
// exists, is not empty, and only its owner can read; the token is read at
// load and never printed.
func TestAPIToken(t *testing.T) {
	const secret = "s3cr3t-t0ken-value"
	site := func(api string) string {
		return "interface = \"br0\"\ndhcp {\n  mode = \"off\"\n}\napi {\n" + api + "}\n"
	}
	cases := []struct {
		name  string
		api   string
		token string      // written to api-token beside the site file unless empty
		mode  os.FileMode // of api-token
		line  int
		want  string // "" for success
	}{
		{"listen without token_file", "  listen = \"127.0.0.1:8081\"\n", "", 0, 6, "without a token is refused"},
		{"bad listen", "  listen = \"8081\"\n  token_file = \"api-token\"\n", secret, 0o600, 6, "not host:port"},
		{"missing token file", "  listen = \"127.0.0.1:8081\"\n  token_file = \"api-token\"\n", "", 0, 7, "no such file"},
		{"empty token file", "  listen = \"127.0.0.1:8081\"\n  token_file = \"api-token\"\n", " \n\t\n", 0o600, 7, "is empty"},
		{"world-readable token file", "  listen = \"127.0.0.1:8081\"\n  token_file = \"api-token\"\n", secret, 0o644, 7, "chmod 600 "},
		{"group-readable token file", "  listen = \"127.0.0.1:8081\"\n  token_file = \"api-token\"\n", secret, 0o640, 7, "mode 0640"},
		{"good", "  listen = \"127.0.0.1:8081\"\n  token_file = \"api-token\"\n", "\n" + secret + "\n", 0o600, 0, ""},
		{"no listen, no token needed", "  token_file = \"api-token\"\n", "", 0, 0, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := writeSite(t, site(c.api))
			tokenFile := filepath.Join(filepath.Dir(p), "api-token")
			if c.token != "" {
				if err := os.WriteFile(tokenFile, []byte(c.token), c.mode); err != nil {
					t.Fatal(err)
				}
				// WriteFile's mode is filtered by the umask.
				if err := os.Chmod(tokenFile, c.mode); err != nil {
					t.Fatal(err)
				}
			}
			s, err := Load(p)
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if s.API.TokenFile != tokenFile {
					t.Errorf("token_file %q, want %q resolved against the site file", s.API.TokenFile, tokenFile)
				}
				want := ""
				if s.API.Listen != "" {
					want = secret
				}
				if s.API.Token() != want {
					t.Errorf("token %q, want %q trimmed", s.API.Token(), want)
				}
				for _, out := range []string{s.String(), fmt.Sprint(s.API), fmt.Sprintf("%+v", *s.API), fmt.Sprintf("%+v", s)} {
					if strings.Contains(out, secret) {
						t.Errorf("the token is printed: %s", out)
					}
				}
				return
			}
			if err == nil {
				t.Fatal("Load succeeded, want an error")
			}
			prefix := p + ":" + strconv.Itoa(c.line) + ":"
			if !strings.HasPrefix(err.Error(), prefix) {
				t.Errorf("error %q does not start with %q", err, prefix)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not mention %q", err, c.want)
			}
			// Errors at the token_file line (7) name the file, resolved.
			if c.line == 7 && !strings.Contains(err.Error(), tokenFile) {
				t.Errorf("error %q does not name the token file %s", err, tokenFile)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error %q contains the token", err)
			}
		})
	}
}
