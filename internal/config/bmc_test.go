package config

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

const bmcSecret = "bmc-pa55-w0rd"

// TestBMCBlock: the bmc block's defaults, its mistakes at their lines, and
// a password that no printing of the site shows. The block starts at line 6.
func TestBMCBlock(t *testing.T) {
	const head = "interface = \"br0\"\ndhcp {\n  subnet = \"10.77.0.0/24\"\n}\n"
	cases := []struct {
		name, body string // "" body: no bmc block at all
		env        string // BOOTSTRAPD_BMC_PASSWORD
		line       int
		want       string // "" for success
		check      func(t *testing.T, b *BMC)
	}{
		{name: "no block: defaults, no credentials", check: func(t *testing.T, b *BMC) {
			if b.TimeoutD != DefaultBMCTimeout || b.User != "" || b.Password() != "" || b.PowerOnEnroll || b.InstallRetries != 0 {
				t.Errorf("defaults %+v", b)
			}
		}},
		{name: "user and password file", body: "  user = \"admin\"\n  password_file = \"bmc-pw\"\n  timeout = \"3s\"\n  install_retries = 2\n  power_on_enroll = true\n  power_off_on_retire = true\n",
			check: func(t *testing.T, b *BMC) {
				if b.Password() != bmcSecret || b.TimeoutD != 3*time.Second || b.InstallRetries != 2 || !b.PowerOnEnroll || !b.PowerOffOnRetire {
					t.Errorf("block %+v, password ok %v", b, b.Password() == bmcSecret)
				}
			}},
		{name: "password from the environment", body: "  user = \"admin\"\n", env: bmcSecret, check: func(t *testing.T, b *BMC) {
			if b.Password() != bmcSecret {
				t.Error("the password from BOOTSTRAPD_BMC_PASSWORD was not taken")
			}
		}},
		{name: "environment without a user is not a credential", body: "  timeout = \"1s\"\n", env: bmcSecret, check: func(t *testing.T, b *BMC) {
			if b.Password() != "" {
				t.Error("a password without a user was kept")
			}
		}},
		{name: "fingerprint with colons", body: "  fingerprint = \"" + strings.Repeat("ab:", 31) + "ab\"\n"},
		{name: "ca file", body: "  ca_file = \"ca.pem\"\n", check: func(t *testing.T, b *BMC) {
			if b.RootCAs == nil {
				t.Error("no CA pool")
			}
		}},
		{name: "insecure http", body: "  insecure_http = true\n"},
		{name: "user without password", body: "  user = \"admin\"\n", line: 6, want: "BOOTSTRAPD_BMC_PASSWORD"},
		{name: "password file without user", body: "  password_file = \"bmc-pw\"\n", line: 7, want: "user is not"},
		{name: "password file readable by others", body: "  user = \"admin\"\n  password_file = \"bmc-pw-open\"\n", line: 8, want: "chmod 600"},
		{name: "bad timeout", body: "  timeout = \"forever\"\n", line: 7, want: "from 100ms to 5m0s"},
		{name: "timeout too short", body: "  timeout = \"1ms\"\n", line: 7, want: "from 100ms"},
		{name: "too many retries", body: "  install_retries = 50\n", line: 7, want: "0..10"},
		{name: "negative retries", body: "  install_retries = -1\n", line: 7, want: "0..10"},
		{name: "bad fingerprint", body: "  fingerprint = \"abc\"\n", line: 7, want: "SHA-256"},
		{name: "fingerprint and ca", body: "  fingerprint = \"" + strings.Repeat("0", 64) + "\"\n  ca_file = \"ca.pem\"\n", line: 7, want: "not both"},
		{name: "insecure with fingerprint", body: "  insecure_http = true\n  fingerprint = \"" + strings.Repeat("0", 64) + "\"\n", line: 8, want: "plain HTTP"},
		{name: "missing ca", body: "  ca_file = \"nope.pem\"\n", line: 7, want: "no such file"},
		{name: "ca not pem", body: "  ca_file = \"bmc-pw\"\n", line: 7, want: "holds no PEM"},
		{name: "unknown key", body: "  password = \"hunter2\"\n", line: 7, want: "Unsupported argument"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv(BMCPasswordEnv, c.env)
			src := head
			if c.body != "" {
				src += "\nbmc {\n" + c.body + "}\n"
			}
			p := writeSite(t, src)
			dir := filepath.Dir(p)
			writeMode(t, filepath.Join(dir, "bmc-pw"), []byte(bmcSecret+"\n"), 0o600)
			writeMode(t, filepath.Join(dir, "bmc-pw-open"), []byte(bmcSecret+"\n"), 0o644)
			cert, _ := testPair(t)
			writeMode(t, filepath.Join(dir, "ca.pem"), cert, 0o644)
			s, err := Load(p)
			if c.want != "" {
				if err == nil {
					t.Fatal("Load succeeded, want an error")
				}
				if prefix := p + ":" + strconv.Itoa(c.line) + ":"; !strings.HasPrefix(err.Error(), prefix) || !strings.Contains(err.Error(), c.want) {
					t.Errorf("error %q, want %q... mentioning %q", err, prefix, c.want)
				}
				if strings.Contains(err.Error(), bmcSecret) {
					t.Errorf("the error shows the password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.check != nil {
				c.check(t, s.BMC)
			}
			for _, out := range []string{fmt.Sprint(s.BMC), fmt.Sprintf("%+v", *s.BMC), fmt.Sprintf("%v", s)} {
				if strings.Contains(out, bmcSecret) {
					t.Errorf("the password is printed: %s", out)
				}
			}
		})
	}
}
