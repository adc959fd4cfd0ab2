package concoursetest

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/crypto/ssh"
)

// Bounds on key files: a private key is a few KiB; an authorized keys
// file holds one line (well under 1 KiB for RSA 4096) per worker.
const (
	maxKeyFile         = 64 << 10
	maxAuthorizedFile  = 4 << 20
	maxAuthorizedLines = 10000
)

// readBounded reads at most limit bytes of path, refusing larger files
// and anything but a regular file (a FIFO would block the read forever).
func readBounded(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	return b, nil
}

// ReadHostKey loads the TSA's host key: any private key x/crypto/ssh
// reads (PEM RSA, PKCS#8, OpenSSH ed25519), unencrypted.
func ReadHostKey(path string) (ssh.Signer, error) {
	b, err := readBounded(path, maxKeyFile)
	if err != nil {
		return nil, fmt.Errorf("TSA host key: %w", err)
	}
	s, err := ssh.ParsePrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("TSA host key %s: %w", path, err)
	}
	return s, nil
}

// ParseWorkerKey reads a worker's private key as the real worker does
// (jwt.ParseRSAPrivateKeyFromPEM): RSA only, PEM, PKCS#1 or PKCS#8. An
// ed25519 or OpenSSH-format key, which x/crypto would take, is refused
// here because Concourse refuses it: the stand-in must not pass a key the
// real worker cannot load.
func ParseWorkerKey(b []byte) (ssh.Signer, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("no PEM block: the worker key must be an RSA key in PEM form (-----BEGIN RSA PRIVATE KEY-----)")
	}
	var key crypto.PrivateKey
	var err error
	switch block.Type {
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("PEM block %q: the worker key must be RSA PRIVATE KEY (PKCS#1) or PRIVATE KEY (PKCS#8), as Concourse loads it", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("worker key: %w", err)
	}
	rk, ok := key.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("worker key is %T: Concourse workers load RSA keys only", key)
	}
	return ssh.NewSignerFromKey(rk)
}

// ParseAuthorizedKeys reads an authorized_keys file's keys (options and
// comments are ignored, as the TSA ignores them). Blank lines and lines
// starting with # are skipped; any other line that is not a key is an
// error, so a mangled file is noticed rather than half used.
func ParseAuthorizedKeys(b []byte) ([]ssh.PublicKey, error) {
	var keys []ssh.PublicKey
	for i, line := range bytes.Split(b, []byte("\n")) {
		if i >= maxAuthorizedLines {
			return nil, fmt.Errorf("more than %d lines", maxAuthorizedLines)
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		k, _, _, _, err := ssh.ParseAuthorizedKey(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", i+1, err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// ReadAuthorizedKeys is ParseAuthorizedKeys of a file.
func ReadAuthorizedKeys(path string) ([]ssh.PublicKey, error) {
	b, err := readBounded(path, maxAuthorizedFile)
	if err != nil {
		return nil, err
	}
	keys, err := ParseAuthorizedKeys(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return keys, nil
}

// Key types Keygen writes.
const (
	KeyRSA     = "rsa"
	KeyEd25519 = "ed25519"
)

// Keygen writes a new private key to path (mode 0600; RSA as PKCS#1 PEM,
// as `concourse generate-key -t ssh` writes it, ed25519 in OpenSSH form)
// and its public key in authorized_keys form to path.pub. It returns the
// public key.
func Keygen(path, kind string) (ssh.PublicKey, error) {
	var priv crypto.Signer
	var block *pem.Block
	switch kind {
	case KeyRSA:
		k, err := rsa.GenerateKey(rand.Reader, 3072)
		if err != nil {
			return nil, err
		}
		priv, block = k, &pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}
	case KeyEd25519:
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		if block, err = ssh.MarshalPrivateKey(k, ""); err != nil {
			return nil, err
		}
		priv = k
	default:
		return nil, fmt.Errorf("key type %q is not %q or %q", kind, KeyRSA, KeyEd25519)
	}
	pub, err := ssh.NewPublicKey(priv.Public())
	if err != nil {
		return nil, err
	}
	if err := writeFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		return nil, err
	}
	return pub, writeFile(path+".pub", ssh.MarshalAuthorizedKey(pub), 0o644)
}

// writeFile replaces path with data through a temporary file, so an
// existing file's looser mode is not kept and a reader never sees half.
func writeFile(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".keygen-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
