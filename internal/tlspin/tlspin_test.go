package tlspin

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestConfig(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	pin := Fingerprint(srv.Certificate().Raw)
	colons := strings.ToUpper(pin[:2]) + ":" + pin[2:]
	for _, tc := range []struct {
		name, fingerprint, err string
	}{
		{"pinned", pin, ""},
		{"pinned, upper case with colons", colons, ""},
		{"another certificate", strings.Repeat("ab", 32), "the router's certificate fingerprint " + pin + " does not match the pinned " + strings.Repeat("ab", 32)},
		{"no pin: the chain, which a self-signed certificate fails", "", "certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conf, err := Config("127.0.0.1", nil, tc.fingerprint, "the router")
			if err != nil {
				t.Fatal(err)
			}
			c, err := tls.Dial("tcp", srv.Listener.Addr().String(), conf)
			if err == nil {
				c.Close()
			}
			if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Errorf("dial: %v, want %q", err, tc.err)
			}
		})
	}
	for _, bad := range []string{"abc", strings.Repeat("zz", 32), strings.Repeat("ab", 31)} {
		if _, err := Config("h", nil, bad, "the BMC"); err == nil {
			t.Errorf("fingerprint %q accepted", bad)
		}
	}
}
