package config

import (
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// Vault is where node tokens and Concourse worker keys come from. Its
// token comes from token_file (mode 0600) or VAULT_TOKEN, never a flag.
type Vault struct {
	Address   string `hcl:"address"`
	TokenFile string `hcl:"token_file,optional"`
	CAFile    string `hcl:"ca_file,optional"`
	KVMount   string `hcl:"kv_mount,optional"` // KV v2 mount of concourse/...; default "kv"
	Role      string `hcl:"role,optional"`     // token role of node tokens; default "bootstrapd-node"
	WrapTTL   string `hcl:"wrap_ttl,optional"` // how long a join bundle's wrapped token lasts; default 10m

	WrapTTLD time.Duration
	token    string
}

// Token is the Vault token read at load.
func (v *Vault) Token() string { return v.token }

// String describes the block without the token.
func (v Vault) String() string { return "vault " + v.Address }

// Nomad is the cluster nodes join: servers is what nodes dial; address,
// when set, is the API bootstrapd uses to watch nodes join, run the
// Concourse worker job and drain nodes on retire.
type Nomad struct {
	Servers   []string `hcl:"servers,optional"`    // host:port of the servers' RPC (4647)
	Address   string   `hcl:"address,optional"`    // the servers' HTTP API, e.g. http://10.77.0.10:4646
	TokenFile string   `hcl:"token_file,optional"` // or NOMAD_TOKEN
	CAFile    string   `hcl:"ca_file,optional"`
	Region    string   `hcl:"region,optional"`
	// Introduction: a client introduction token per node. Unset, nodes get
	// one wherever the servers have them (Nomad >= 1.11); true insists
	// (servers older than 1.11 are an error), false never asks.
	Introduction *bool `hcl:"introduction,optional"`
	// VaultIntegration is how the worker job reads Vault: "token" (the
	// servers hold a Vault token; Nomad < 1.10) or "workload_identity"
	// (Nomad >= 1.7). Unset, it follows the servers' version.
	VaultIntegration string `hcl:"vault_integration,optional"`
	// WorkerTemplate is the Concourse worker job template; default
	// concourse-worker.nomad.hcl.tmpl in the profiles directory.
	WorkerTemplate string `hcl:"worker_template,optional"`
	TSAHost        string `hcl:"tsa_host,optional"`
	TSAPublicKey   string `hcl:"tsa_public_key,optional"`
	// WorkerVaultRole is the Vault JWT role the worker job logs in with
	// to read its key (workload identity); default "concourse-worker".
	WorkerVaultRole string `hcl:"worker_vault_role,optional"`
	// StandIn runs a stand-in worker (raw_exec, no Concourse): the demo.
	StandIn bool `hcl:"stand_in,optional"`
	// StandInWorker is a concourse-standin binary (a stand-in, not
	// Concourse): bootstrapd serves it to nodes, and the stand-in worker
	// task runs it to register with the TSA at tsa_host with its key from
	// Vault, so ready means the TSA took the key. Needs stand_in, tsa_host,
	// tsa_public_key and a vault block.
	StandInWorker string `hcl:"stand_in_worker,optional"`
	RawExec       bool   `hcl:"raw_exec,optional"`       // enable raw_exec on nodes
	DrainDeadline string `hcl:"drain_deadline,optional"` // default 1h

	DrainDeadlineD time.Duration
	token          string
}

// Token is the Nomad ACL token read at load ("" without ACLs).
func (n *Nomad) Token() string { return n.token }

func (s *Site) clusterDefaults(dir string) {
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	if v := s.Vault; v != nil {
		abs(&v.TokenFile)
		abs(&v.CAFile)
		if v.KVMount == "" {
			v.KVMount = "kv"
		}
		if v.Role == "" {
			v.Role = "bootstrapd-node"
		}
	}
	if n := s.Nomad; n != nil {
		abs(&n.TokenFile)
		abs(&n.CAFile)
		if n.WorkerVaultRole == "" {
			n.WorkerVaultRole = "concourse-worker"
		}
		if n.WorkerTemplate == "" {
			n.WorkerTemplate = filepath.Join(s.ProfilesDir, "concourse-worker.nomad.hcl.tmpl")
		}
		abs(&n.WorkerTemplate)
		abs(&n.StandInWorker)
	}
}

func (s *Site) validateCluster() error {
	if v := s.Vault; v != nil {
		if err := s.httpURL("vault.address", v.Address, "https://vault.lab:8200"); err != nil {
			return err
		}
		v.WrapTTLD = 10 * time.Minute
		if v.WrapTTL != "" {
			d, err := time.ParseDuration(v.WrapTTL)
			if err != nil || d < time.Minute || d > 24*time.Hour {
				return s.Errorf("vault.wrap_ttl", "wrap_ttl %q must be a duration from 1m to 24h, like \"10m\"", v.WrapTTL)
			}
			v.WrapTTLD = d
		}
		var err error
		if v.token, err = s.credential("vault.token_file", v.TokenFile, "VAULT_TOKEN", "Vault token", true); err != nil {
			return err
		}
	}
	if n := s.Nomad; n != nil {
		switch n.VaultIntegration {
		case "", "token", "workload_identity":
		default:
			return s.Errorf("nomad.vault_integration", "vault_integration %q must be \"token\" (Nomad < 1.10) or \"workload_identity\" (Nomad >= 1.7)", n.VaultIntegration)
		}
		if n.Address == "" && n.Introduction != nil && *n.Introduction {
			return s.Errorf("nomad.introduction", "introduction = true needs address: bootstrapd mints introduction tokens through the servers' API")
		}
		if err := s.checkStandInWorker(n); err != nil {
			return err
		}
		if n.Address == "" && n.VaultIntegration == "" && s.Vault != nil {
			// Nothing to read the servers' version from.
			return s.Errorf("nomad", "set vault_integration (\"token\" or \"workload_identity\") or address: without the servers' API bootstrapd cannot tell which way their jobs read Vault")
		}
	}
	if n := s.Nomad; n != nil && n.Address != "" {
		if err := s.httpURL("nomad.address", n.Address, "http://10.77.0.10:4646"); err != nil {
			return err
		}
		n.DrainDeadlineD = time.Hour
		if n.DrainDeadline != "" {
			d, err := time.ParseDuration(n.DrainDeadline)
			if err != nil || d < time.Second {
				return s.Errorf("nomad.drain_deadline", "drain_deadline %q must be a duration, like \"1h\"", n.DrainDeadline)
			}
			n.DrainDeadlineD = d
		}
		// Nomad without ACLs needs no token.
		var err error
		if n.token, err = s.credential("nomad.token_file", n.TokenFile, "NOMAD_TOKEN", "Nomad token", false); err != nil {
			return err
		}
		if _, err := os.Stat(n.WorkerTemplate); err != nil {
			return s.Errorf("nomad.worker_template", "worker job template: %v", err)
		}
	}
	return nil
}

// httpURL checks the http(s) URL at key.
func (s *Site) httpURL(key, v, example string) error {
	if u, err := url.Parse(v); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return s.Errorf(key, "%s %q is not a URL like %q", strings.ReplaceAll(key, ".", " "), v, example)
	}
	return nil
}

// checkStandInWorker checks nomad.stand_in_worker: an executable regular
// file, and the settings the stand-in worker connects with.
func (s *Site) checkStandInWorker(n *Nomad) error {
	if n.StandInWorker == "" {
		return nil
	}
	const key = "nomad.stand_in_worker"
	fi, err := os.Stat(n.StandInWorker)
	switch {
	case err != nil:
		return s.Errorf(key, "stand_in_worker: %v (build it: go build -o concourse-standin ./internal/concoursetest/standin)", err)
	case !fi.Mode().IsRegular():
		return s.Errorf(key, "stand_in_worker %s is not a regular file", n.StandInWorker)
	case fi.Mode().Perm()&0o111 == 0:
		return s.Errorf(key, "stand_in_worker %s is not executable (chmod +x it)", n.StandInWorker)
	case !n.StandIn:
		return s.Errorf(key, "stand_in_worker needs stand_in = true: it is the stand-in worker's binary")
	case s.Vault == nil:
		return s.Errorf(key, "stand_in_worker needs a vault block: the stand-in worker reads its key from Vault")
	}
	if _, port, err := net.SplitHostPort(n.TSAHost); err != nil || port == "" {
		return s.Errorf("nomad.tsa_host", "stand_in_worker needs tsa_host, the TSA's host:port (like \"10.77.0.1:2222\"), not %q", n.TSAHost)
	}
	if _, _, _, rest, err := ssh.ParseAuthorizedKey([]byte(n.TSAPublicKey)); err != nil || len(rest) != 0 {
		return s.Errorf("nomad.tsa_public_key", "stand_in_worker needs tsa_public_key, the TSA's host key as one authorized_keys line (the stand-in worker accepts no other host key)")
	}
	return nil
}
