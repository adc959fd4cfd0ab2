package routerostest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/bootstrapd/bootstrapd/internal/tlspin"
)

// SelfSigned makes a certificate for localhost, 127.0.0.1 and ::1, valid
// for a day: the test router's api-ssl certificate when the test brings
// none (a router installs one for api-ssl to work with Go's TLS, which
// lacks the anonymous-DH ciphers RouterOS uses without one, reference
// section 1), and any other test's TLS server's. It is its own CA so a
// client may trust it through a CA file as well as by pinning its
// fingerprint. It is the module's one maker of test certificates.
func SelfSigned() (*tls.Config, *x509.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("routerostest: key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, nil, fmt.Errorf("routerostest: serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "routerostest"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		// Client too: a test etcd that asks its clients for a
		// certificate signed by this one takes this one.
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("routerostest: certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("routerostest: certificate: %w", err)
	}
	conf := &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}},
		MinVersion:   tls.VersionTLS12,
	}
	return conf, cert, nil
}

// PEM returns the first certificate of conf and its key, PEM-encoded, for
// tests that hand them over as files (a tls_cert_file, a CA file).
func PEM(conf *tls.Config) (cert, key []byte, err error) {
	if len(conf.Certificates) == 0 || len(conf.Certificates[0].Certificate) == 0 {
		return nil, nil, fmt.Errorf("routerostest: no certificate in the config")
	}
	c := conf.Certificates[0]
	der, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		return nil, nil, fmt.Errorf("routerostest: key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// CertFiles writes a new SelfSigned certificate and its key into dir as
// NAME.crt (mode 0644) and NAME.key (0600), for tests that configure TLS
// by file, and returns their paths. The certificate is its own CA, so the
// .crt file is also what a client trusts.
func CertFiles(t testing.TB, dir, name string) (cert, key string) {
	t.Helper()
	conf, _, err := SelfSigned()
	if err != nil {
		t.Fatal(err)
	}
	c, k, err := PEM(conf)
	if err != nil {
		t.Fatal(err)
	}
	cert, key = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(cert, c, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, k, 0o600); err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// leaf returns the first certificate of a test-supplied config, if any.
func leaf(conf *tls.Config) *x509.Certificate {
	if len(conf.Certificates) == 0 || len(conf.Certificates[0].Certificate) == 0 {
		return nil
	}
	if c := conf.Certificates[0].Leaf; c != nil {
		return c
	}
	c, err := x509.ParseCertificate(conf.Certificates[0].Certificate[0])
	if err != nil {
		return nil
	}
	return c
}

// Fingerprint is the SHA-256 of a certificate's DER bytes in lowercase hex,
// the form a client pins.
func Fingerprint(cert *x509.Certificate) string { return tlspin.Fingerprint(cert.Raw) }
