package cluster

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	vaultapi "github.com/hashicorp/vault/api"
	"golang.org/x/crypto/ssh"
)

// workerKeyBits is the size of a Concourse worker key: 4096, as
// `concourse generate-key -t ssh` makes them. 3072 bits would do (NIST's
// 128-bit level) and is about 3x faster to generate, but the cost is paid
// once per node, and PutWorkerKey looks before it generates. Measured with
// BenchmarkRSAKeygen on the 2-core build machine under load: 3072 bits
// 0.19 s, 4096 bits 0.62 s a key (mean of 15; single keys vary 5x).
const workerKeyBits = 4096

// GenerateWorkerKey makes a Concourse worker key pair: the private key as
// PKCS#1 PEM ("RSA PRIVATE KEY", what `concourse generate-key -t ssh` and
// `ssh-keygen -m PEM` write) and the public key as one authorized_keys
// line. RSA because the worker loads --tsa-worker-private-key with
// jwt.ParseRSAPrivateKeyFromPEM: ed25519 or OpenSSH-format keys are refused.
func GenerateWorkerKey() (privPEM []byte, authorizedKey []byte, err error) {
	key, err := rsa.GenerateKey(rand.Reader, workerKeyBits)
	if err != nil {
		return nil, nil, fmt.Errorf("generate RSA worker key: %w", err)
	}
	pub, err := ssh.NewPublicKey(&key.PublicKey)
	if err != nil {
		return nil, nil, fmt.Errorf("encode worker public key: %w", err)
	}
	privPEM = pem.EncodeToMemory(&pem.Block{
		Type:  "RSA PRIVATE KEY",
		Bytes: x509.MarshalPKCS1PrivateKey(key),
	})
	return privPEM, ssh.MarshalAuthorizedKey(pub), nil
}

// workerKeyPath is the KV v2 path (inside the mount) of a node's worker
// key: the layout of seed 000, which the web node's authorized_worker_keys
// template ranges over and the worker's template reads by node name.
func workerKeyPath(node string) string { return "concourse/workers/" + node }

// checkNodeHostname refuses a node name that is not a hostname (RFC 1123
// labels joined by dots). The name becomes part of a Vault path and an
// entity alias, so "..", "/", "*", "+" and the like must never get through:
// with hostname characters only, a name cannot leave concourse/workers/.
func checkNodeHostname(node string) error {
	bad := func(why string) error {
		return fmt.Errorf("node name %q is not a hostname (%s)", node, why)
	}
	if node == "" {
		return bad("empty")
	}
	if len(node) > 253 {
		return bad("longer than 253 characters")
	}
	for _, label := range strings.Split(node, ".") {
		if label == "" || len(label) > 63 {
			return bad("each dot-separated label must be 1 to 63 characters")
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return bad("a label may not start or end with '-'")
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return bad("only letters, digits, '-' and '.' are allowed")
			}
		}
	}
	return nil
}

// PutWorkerKey makes sure node has a worker key in Vault, generating one
// only when there is none, and reports whether it wrote one. An existing
// key is kept: the running worker and the web node's authorized keys
// already agree on it. The write is check-and-set, so when two writers race
// the first one's key stands and the second reports created=false.
func (v *Vault) PutWorkerKey(ctx context.Context, node string) (created bool, err error) {
	if err := checkNodeHostname(node); err != nil {
		return false, err
	}
	path := workerKeyPath(node)
	kv := v.client.KVv2(v.cfg.Mount)

	// Look before generating: an RSA key costs a second of CPU, and the
	// reconciler calls this on every pass. cas 0 means "only if absent";
	// when every version is deleted or destroyed, nothing readable is left,
	// so write over the current version instead of leaving the worker
	// without a key forever.
	cas := 0
	md, err := kv.GetMetadata(ctx, path)
	switch {
	case errors.Is(err, vaultapi.ErrSecretNotFound):
	case err != nil:
		return false, v.wrapErr("read worker key metadata "+v.kvPath("metadata", path), err)
	default:
		cur, ok := md.Versions[fmt.Sprint(md.CurrentVersion)]
		if !ok || (cur.DeletionTime.IsZero() && !cur.Destroyed) {
			return false, nil
		}
		cas = md.CurrentVersion
	}

	priv, pub, err := v.genKey()
	if err != nil {
		return false, err
	}
	_, err = kv.Put(ctx, path, map[string]any{
		"private_key": string(priv),
		"public_key":  strings.TrimSpace(string(pub)),
	}, vaultapi.WithCheckAndSet(cas))
	if isCASMismatch(err) {
		v.log.Info("vault: worker key written by someone else first; keeping theirs", "node", node)
		return false, nil
	}
	if err != nil {
		return false, v.wrapErr("write worker key "+v.kvPath("data", path), err)
	}
	v.log.Info("vault: wrote worker key", "node", node, "path", v.kvPath("data", path))
	return true, nil
}

// DeleteWorkerKey removes node's worker key with every version and its
// metadata, so the web node's LIST of concourse/workers/ no longer shows
// it (a plain KV v2 delete would leave the key listed). Deleting a key that
// is not there succeeds: Vault answers 204 either way.
func (v *Vault) DeleteWorkerKey(ctx context.Context, node string) error {
	if err := checkNodeHostname(node); err != nil {
		return err
	}
	path := workerKeyPath(node)
	if err := v.client.KVv2(v.cfg.Mount).DeleteMetadata(ctx, path); err != nil {
		return v.wrapErr("delete worker key "+v.kvPath("metadata", path), err)
	}
	v.log.Info("vault: deleted worker key", "node", node)
	return nil
}

// isCASMismatch tells whether a KV v2 write was refused because the key's
// version moved (or appeared) since we looked: KV v2 answers 400 with
// "check-and-set parameter did not match the current version".
func isCASMismatch(err error) bool {
	var re *vaultapi.ResponseError
	if !errors.As(err, &re) || re.StatusCode != 400 {
		return false
	}
	for _, m := range re.Errors {
		if strings.Contains(m, "check-and-set") {
			return true
		}
	}
	return false
}
