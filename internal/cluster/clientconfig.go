package cluster

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/bootstrapd/bootstrapd/internal/hclq"
)

// ClientParams is one node's Nomad client configuration, as it goes into
// the node's join bundle (written to /etc/nomad.d/ by the post-install
// script). The names and labels in it come from enrollment, so every value
// is quoted by ClientConfig: a hostile label cannot add configuration.
type ClientParams struct {
	Name       string // node name: the hostname; intro token claims and the worker's KV key use it
	Region     string // "" leaves Nomad's default ("global")
	Datacenter string
	NodePool   string
	NodeClass  string

	// Servers are host:port of the servers' RPC (4647), joined directly;
	// RetryJoin entries (host:port or go-discover "provider=..." strings)
	// are retried until one answers. At least one of the two is needed.
	Servers   []string
	RetryJoin []string

	Meta   map[string]string
	Worker bool // the profile marks this node for Concourse workers: meta concourse_worker = "true"

	DataDir string // default /var/lib/nomad; the intro token goes to <DataDir>/client/intro_token.jwt

	// ACL turns on ACL enforcement in the client agent: clients need no
	// token to register, but they enforce ACLs on alloc exec and fs.
	ACL bool

	// TLS file paths on the node; all three or none.
	TLSCAFile, TLSCertFile, TLSKeyFile string

	// VaultAddr, when set, enables Vault on the client, which holds no
	// Vault token either way. With VaultIntegration VaultWorkloadIdentity
	// tasks log in to Vault at JWT auth path VaultJWTPath (default
	// "jwt-nomad") with their Nomad-signed identity; with VaultToken the
	// servers derive task tokens for the client, and the block has only the
	// address (Nomad < 1.7 knows no jwt_auth_backend_path).
	VaultAddr, VaultIntegration, VaultJWTPath, VaultCAFile string

	RawExec bool // enable the raw_exec driver (tests and the demo's stand-in worker)
}

// WorkerMetaKey is the node meta key the Concourse worker job is
// constrained on; only nodes whose profile says "worker" carry it.
const WorkerMetaKey = "concourse_worker"

// Default values for ClientParams fields left empty.
const (
	DefaultDataDir      = "/var/lib/nomad"
	DefaultVaultJWTPath = "jwt-nomad"
)

// cloudFingerprinters are denied on every client: on bare metal they only
// wait for instance metadata services that are not there, and newer Nomad
// releases fail to set up their IMDS client without this (lab notes).
const cloudFingerprinters = "env_aws,env_gce,env_azure,env_digitalocean"

// metaKey is what Nomad constraints can name as ${meta.<key>}.
var metaKey = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*$`)

// ClientConfig renders the client agent configuration for one node.
//
// Nomad reads agent configuration with HCL version 1 (only jobspecs moved
// to HCL 2), so values are quoted in the subset both versions read the
// same way: the escapes \" \\ \n \r \t \uNNNN, with "${" and "%{" written
// as \u0024{ and \u0025{. HCL 2's own "$${" escape would reach Nomad as a
// literal "$${", and a raw "${" makes HCL 1 copy everything up to the
// matching "}" unescaped, quotes included.
func ClientConfig(c ClientParams) ([]byte, error) {
	if c.Name == "" {
		return nil, errors.New("nomad client config: node name is empty")
	}
	if len(c.Servers) == 0 && len(c.RetryJoin) == 0 {
		return nil, fmt.Errorf("nomad client config for %s: no servers: set the servers (host:4647) or retry_join", c.Name)
	}
	tlsFiles := 0
	for _, f := range []string{c.TLSCAFile, c.TLSCertFile, c.TLSKeyFile} {
		if f != "" {
			tlsFiles++
		}
	}
	if c.VaultAddr != "" && c.VaultIntegration != VaultToken && c.VaultIntegration != VaultWorkloadIdentity {
		return nil, fmt.Errorf("nomad client config for %s: vault integration %q is not %q or %q", c.Name, c.VaultIntegration, VaultToken, VaultWorkloadIdentity)
	}
	if tlsFiles != 0 && tlsFiles != 3 {
		return nil, fmt.Errorf("nomad client config for %s: tls needs the CA, certificate and key files together (have %d of 3)", c.Name, tlsFiles)
	}
	meta := make(map[string]string, len(c.Meta)+1)
	for k, v := range c.Meta {
		if !metaKey.MatchString(k) {
			return nil, fmt.Errorf("nomad client config for %s: meta key %q: use letters, digits, _ . - (constraints name it as ${meta.<key>})", c.Name, k)
		}
		meta[k] = v
	}
	if c.Worker {
		meta[WorkerMetaKey] = "true"
	}

	w := &hclWriter{}
	w.line(0, "# Nomad client agent configuration written by bootstrapd for this node's")
	w.line(0, "# join bundle. Re-enrolling the node rewrites it; local changes belong in")
	w.line(0, "# another file in this directory.")
	w.attr(0, "name", c.Name)
	w.attrIf(0, "region", c.Region)
	w.attrIf(0, "datacenter", c.Datacenter)
	w.attr(0, "data_dir", cmp.Or(c.DataDir, DefaultDataDir))
	w.blank()
	w.line(0, "client {")
	w.raw(1, "enabled", "true")
	w.attrIf(1, "node_pool", c.NodePool)
	w.attrIf(1, "node_class", c.NodeClass)
	if len(c.Servers) > 0 {
		w.list(1, "servers", c.Servers)
	}
	if len(c.RetryJoin) > 0 {
		w.line(1, "server_join {")
		w.list(2, "retry_join", c.RetryJoin)
		w.line(1, "}")
	}
	if len(meta) > 0 {
		w.object(1, "meta", meta)
	}
	w.object(1, "options", map[string]string{"fingerprint.denylist": cloudFingerprinters})
	w.line(0, "}")
	if c.ACL {
		w.blank()
		w.line(0, "acl {")
		w.raw(1, "enabled", "true")
		w.line(0, "}")
	}
	if tlsFiles == 3 {
		w.blank()
		w.line(0, "tls {")
		w.raw(1, "http", "true")
		w.raw(1, "rpc", "true")
		w.attr(1, "ca_file", c.TLSCAFile)
		w.attr(1, "cert_file", c.TLSCertFile)
		w.attr(1, "key_file", c.TLSKeyFile)
		// The server's certificate must name server.<region>.nomad: a client
		// certificate from the same CA cannot pose as a server.
		w.raw(1, "verify_server_hostname", "true")
		w.line(0, "}")
	}
	if c.VaultAddr != "" {
		w.blank()
		w.line(0, "vault {")
		w.raw(1, "enabled", "true")
		w.attr(1, "address", c.VaultAddr)
		if c.VaultIntegration == VaultWorkloadIdentity {
			w.attr(1, "jwt_auth_backend_path", cmp.Or(c.VaultJWTPath, DefaultVaultJWTPath))
		}
		w.attrIf(1, "ca_file", c.VaultCAFile)
		w.line(0, "}")
	}
	if c.RawExec {
		w.blank()
		w.line(0, `plugin "raw_exec" {`)
		w.line(1, "config {")
		w.raw(2, "enabled", "true")
		w.line(1, "}")
		w.line(0, "}")
	}
	if w.err != nil {
		return nil, fmt.Errorf("nomad client config for %q: %w", c.Name, w.err)
	}
	return w.buf.Bytes(), nil
}

// hclWriter writes HCL one line at a time; the first value that cannot be
// quoted is kept in err and the output is then discarded by the caller.
type hclWriter struct {
	buf bytes.Buffer
	err error
}

func (w *hclWriter) line(depth int, s string) {
	w.buf.WriteString(strings.Repeat("  ", depth))
	w.buf.WriteString(s)
	w.buf.WriteByte('\n')
}

func (w *hclWriter) blank() { w.buf.WriteByte('\n') }

func (w *hclWriter) raw(depth int, key, value string) { w.line(depth, key+" = "+value) }

func (w *hclWriter) quote(s string) string {
	q, err := hclQuote(s)
	if err != nil && w.err == nil {
		w.err = err
	}
	return q
}

func (w *hclWriter) attr(depth int, key, value string) { w.raw(depth, key, w.quote(value)) }

func (w *hclWriter) attrIf(depth int, key, value string) {
	if value != "" {
		w.attr(depth, key, value)
	}
}

func (w *hclWriter) list(depth int, key string, values []string) {
	q := make([]string, len(values))
	for i, v := range values {
		q[i] = w.quote(v)
	}
	w.raw(depth, key, "["+strings.Join(q, ", ")+"]")
}

// object writes key = { "k" = "v" ... } with sorted, quoted keys: the
// attribute form takes any key text, where a block would need identifiers.
func (w *hclWriter) object(depth int, key string, m map[string]string) {
	w.line(depth, key+" = {")
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		w.line(depth+1, w.quote(k)+" = "+w.quote(m[k]))
	}
	w.line(depth, "}")
}

// hclQuote returns s as a double-quoted string that HCL 1 (Nomad's agent
// configuration) and HCL 2 (jobspecs, hclsyntax) both read back as exactly
// s, with no interpolation or template directive. Invalid UTF-8 is refused
// rather than replaced: the value would not be the one asked for.
func hclQuote(s string) (string, error) {
	if !utf8.ValidString(s) {
		return "", fmt.Errorf("value %q is not valid UTF-8", s)
	}
	return hclq.Quote(s), nil
}
