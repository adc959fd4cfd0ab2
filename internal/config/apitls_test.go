package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/bootstrapd/bootstrapd/internal/routeros/routerostest"
)

// testPair is a certificate and its key, PEM, from the module's one test
// certificate maker.
func testPair(t *testing.T) (cert, key []byte) {
	t.Helper()
	conf, _, err := routerostest.SelfSigned()
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err = routerostest.PEM(conf)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// writeMode writes a file with exactly mode, whatever the umask.
func writeMode(t *testing.T, path string, b []byte, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, b, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// TestAPITLS: the TCP admin listener's certificate and key come as a pair
// of readable PEM files, the key held like the token; every mistake is an
// error at the line to change.
func TestAPITLS(t *testing.T) {
	cert, key := testPair(t)
	_, otherKey := testPair(t)
	const listen = "  listen = \"127.0.0.1:8081\"\n  token_file = \"api-token\"\n"
	const both = "  tls_cert_file = \"api.crt\"\n  tls_key_file = \"api.key\"\n"
	cases := []struct {
		name      string
		api       string
		cert, key []byte      // written beside the site file unless nil
		keyMode   os.FileMode // default 0600
		line      int
		want      string // "" for success
	}{
		{"good", listen + both, cert, key, 0, 0, ""},
		{"none", listen, nil, nil, 0, 0, ""},
		{"cert without key", listen + "  tls_cert_file = \"api.crt\"\n", cert, nil, 0, 8, "tls_key_file is not: set both"},
		{"key without cert", listen + "  tls_key_file = \"api.key\"\n", nil, key, 0, 8, "tls_cert_file is not: set both"},
		{"TLS without listen", both, cert, key, 0, 6, "listen is not set"},
		{"missing cert", listen + both, nil, key, 0, 8, "no such file"},
		{"missing key", listen + both, cert, nil, 0, 9, "no such file"},
		{"world-readable key", listen + both, cert, key, 0o644, 9, "chmod 600"},
		{"not PEM", listen + both, []byte("hello"), key, 0, 8, "are not a PEM certificate and its private key"},
		{"another's key", listen + both, cert, otherKey, 0, 8, "are not a PEM certificate and its private key"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := writeSite(t, "interface = \"br0\"\ndhcp {\n  mode = \"off\"\n}\napi {\n"+c.api+"}\n")
			dir := filepath.Dir(p)
			writeMode(t, filepath.Join(dir, "api-token"), []byte("tok"), 0o600)
			if c.cert != nil {
				writeMode(t, filepath.Join(dir, "api.crt"), c.cert, 0o644)
			}
			if c.key != nil {
				mode := c.keyMode
				if mode == 0 {
					mode = 0o600
				}
				writeMode(t, filepath.Join(dir, "api.key"), c.key, mode)
			}
			s, err := Load(p)
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if got := s.API.Certificate() != nil; got != (c.cert != nil) {
					t.Errorf("Certificate loaded: %v, want %v", got, c.cert != nil)
				}
				for _, out := range []string{s.String(), fmt.Sprint(s.API), fmt.Sprintf("%+v", *s.API)} {
					if strings.Contains(out, "PRIVATE KEY") {
						t.Errorf("the key is printed: %s", out)
					}
				}
				return
			}
			if err == nil {
				t.Fatal("Load succeeded, want an error")
			}
			if prefix := p + ":" + strconv.Itoa(c.line) + ":"; !strings.HasPrefix(err.Error(), prefix) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q, want it at %s and mentioning %q", err, prefix, c.want)
			}
		})
	}
}
