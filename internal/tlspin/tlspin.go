// Package tlspin makes the TLS client configuration for a peer trusted by a
// CA or by the SHA-256 fingerprint of its certificate: RouterOS and BMCs
// ship self-signed certificates, whose chain means nothing, so a pin
// replaces chain verification and is checked in full on every handshake.
package tlspin

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// Config trusts the peer at host by roots (nil: the system's) and its
// name, or, when fingerprint is set, by that fingerprint alone (hex, any
// case, colons allowed). who names the peer in errors: "the router", "the BMC".
func Config(host string, roots *x509.CertPool, fingerprint, who string) (*tls.Config, error) {
	if fingerprint == "" {
		return &tls.Config{RootCAs: roots, ServerName: host, MinVersion: tls.VersionTLS12}, nil
	}
	want, err := Normalize(fingerprint)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, // replaced by the pin check below
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return fmt.Errorf("%s sent no certificate", who)
			}
			if got := Fingerprint(raw[0]); got != want {
				return fmt.Errorf("%s's certificate fingerprint %s does not match the pinned %s", who, got, want)
			}
			return nil
		},
	}, nil
}

// Fingerprint is the SHA-256 of a DER certificate in lower-case hex, the
// form Config compares.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// Normalize returns a fingerprint in Fingerprint's form, or an error if it
// is not a SHA-256 in hex.
func Normalize(fingerprint string) (string, error) {
	f := strings.ToLower(strings.ReplaceAll(fingerprint, ":", ""))
	if b, err := hex.DecodeString(f); err != nil || len(b) != sha256.Size {
		return "", errors.New("the fingerprint is not a SHA-256 in hex (64 hex digits, colons allowed)")
	}
	return f, nil
}
