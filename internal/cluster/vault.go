package cluster

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
)

// Defaults for VaultConfig.
const (
	// DefaultVaultMount is the KV v2 mount holding Concourse's secrets.
	// Seed 000's policies, templates and key script all address
	// kv/data/concourse/..., i.e. a mount named "kv" with concourse/{web,
	// db,workers} inside; its two `vault kv put concourse/web` lines would
	// need a mount named "concourse" that none of its policies cover, so
	// they are the post's slip, not its layout.
	DefaultVaultMount   = "kv"
	DefaultVaultRole    = "bootstrapd-node"
	DefaultVaultWrapTTL = 10 * time.Minute

	// nodeTokenPeriod is the token_period of the node role, as for seed
	// 003's nomad-cluster role: a node must renew its token within 72h or
	// the token lapses. A node powered off over a weekend keeps it; one
	// gone for good loses it even if nobody retires it.
	nodeTokenPeriod = 72 * time.Hour
)

// Names of the policies Init writes. Nomad jobs (through the JWT role of
// workload identity) and operators refer to them, so they are fixed.
const (
	PolicyConcourseWeb    = "concourse-web"
	PolicyConcourseWorker = "concourse-worker"
	PolicyConcourseDB     = "concourse-db"
)

// VaultConfig says which Vault to use and how bootstrapd lays out its part.
type VaultConfig struct {
	Addr   string // e.g. https://vault.lab:8200
	Token  string // never logged; see TokenFrom
	CACert string // PEM file to verify Vault's certificate; "" = system roots
	// Mount is the KV v2 mount for Concourse secrets; DefaultVaultMount
	// (why "kv": see there).
	Mount string
	// Role is the token role node tokens are minted from. The node policy
	// Init writes has the same name. Default DefaultVaultRole.
	Role string
	// WrapTTL is how long the single-use wrapping token in a join bundle
	// stays claimable. Default DefaultVaultWrapTTL.
	WrapTTL time.Duration
	// NodePolicies are further policies a node token carries beside the
	// node policy, maintained by the operator (Init does not write them).
	NodePolicies []string
}

// LogValue keeps the token out of logs even when a whole config is logged.
func (c VaultConfig) LogValue() slog.Value {
	return slog.GroupValue(slog.String("addr", c.Addr), slog.String("mount", c.Mount),
		slog.String("role", c.Role), slog.Duration("wrap_ttl", c.WrapTTL))
}

// String keeps the token out of %v.
func (c VaultConfig) String() string {
	return fmt.Sprintf("vault %s (mount %s, role %s)", c.Addr, c.Mount, c.Role)
}

// Vault is bootstrapd's client for its part of Vault. Every method is
// idempotent, so the reconciler may retry any of them.
type Vault struct {
	cfg    VaultConfig
	client *vaultapi.Client
	log    *slog.Logger
	genKey func() (privPEM, authorizedKey []byte, err error) // GenerateWorkerKey; tests reuse one key
}

// NewVault checks cfg, fills in defaults and makes the client. It does not
// contact Vault: that is Check's job, so a daemon starts with Vault down.
// TLS and retry settings still come from the VAULT_* environment as for the
// vault CLI (VAULT_CLIENT_CERT, VAULT_MAX_RETRIES...), but never the
// address, the token or VAULT_WRAP_TTL.
func NewVault(cfg VaultConfig, log *slog.Logger) (*Vault, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg.Mount = cmp.Or(strings.Trim(cfg.Mount, "/"), DefaultVaultMount)
	// The node policy is named after the role, and Vault lowercases
	// policy names: a mixed-case role would never compare equal in Init.
	cfg.Role = strings.ToLower(cmp.Or(cfg.Role, DefaultVaultRole))
	if cfg.WrapTTL == 0 {
		cfg.WrapTTL = DefaultVaultWrapTTL
	}
	u, err := url.Parse(cfg.Addr)
	switch {
	case cfg.Addr == "":
		return nil, errors.New("vault: no address: set the Vault address (VAULT_ADDR)")
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return nil, fmt.Errorf("vault: address %q is not an http(s) URL such as https://vault.lab:8200", cfg.Addr)
	case cfg.Token == "":
		return nil, errors.New("vault: no token: give a token file or set VAULT_TOKEN")
	case cfg.WrapTTL < time.Second:
		return nil, fmt.Errorf("vault: wrap TTL %s is under Vault's minimum of 1s", cfg.WrapTTL)
	case !vaultName(cfg.Mount, true):
		return nil, fmt.Errorf("vault: mount %q: use letters, digits, '-', '_', '.' and '/' between path parts", cfg.Mount)
	case !vaultName(cfg.Role, false):
		return nil, fmt.Errorf("vault: role name %q: use letters, digits, '-', '_' and '.'", cfg.Role)
	}
	cfg.NodePolicies = slices.Clone(cfg.NodePolicies)
	for i, p := range cfg.NodePolicies {
		// Vault lowercases policy names; so do we, so Init compares alike.
		cfg.NodePolicies[i] = strings.ToLower(p)
		if !vaultName(p, false) {
			return nil, fmt.Errorf("vault: node policy name %q: use letters, digits, '-', '_' and '.'", p)
		}
	}

	vc := vaultapi.DefaultConfig()
	if vc.Error != nil {
		return nil, fmt.Errorf("vault: client settings from VAULT_* environment: %w", vc.Error)
	}
	vc.Address = cfg.Addr
	vc.AgentAddress = "" // VAULT_AGENT_ADDR would silently replace Addr
	vc.CloneToken = true // NodeToken's clone must carry the token
	if cfg.CACert != "" {
		if err := vc.ConfigureTLS(&vaultapi.TLSConfig{CACert: cfg.CACert}); err != nil {
			return nil, fmt.Errorf("vault: CA certificate %s: %w", cfg.CACert, err)
		}
	}
	c, err := vaultapi.NewClient(vc)
	if err != nil {
		return nil, fmt.Errorf("vault: client for %s: %w", cfg.Addr, err)
	}
	c.SetToken(cfg.Token) // NewClient took VAULT_TOKEN; ours wins
	// With no lookup function the client wraps every response when
	// VAULT_WRAP_TTL is set in our environment. Only NodeToken wraps, on a
	// clone.
	c.SetWrappingLookupFunc(func(string, string) string { return "" })
	return &Vault{cfg: cfg, client: c, log: log, genKey: GenerateWorkerKey}, nil
}

// vaultName tells whether s is a plain Vault name (mount paths may have
// '/' between parts): no "..", no globs, nothing to escape a path.
func vaultName(s string, slash bool) bool {
	parts := []string{s}
	if slash {
		parts = strings.Split(s, "/")
	}
	for _, p := range parts {
		if p == "" || p == "." || p == ".." {
			return false
		}
		for _, c := range p {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("-_.", c)) {
				return false
			}
		}
	}
	return true
}

// NodeToken is a node's Vault token as it goes into a join bundle.
type NodeToken struct {
	Wrapped  string    // single-use wrapping token: a secret, never logged
	Accessor string    // accessor of the wrapped node token: what retire revokes
	Expires  time.Time // when Wrapped can no longer be unwrapped
}

// LogValue keeps the wrapping token out of logs.
func (t NodeToken) LogValue() slog.Value {
	return slog.GroupValue(slog.String("accessor", t.Accessor), slog.Time("expires", t.Expires))
}

// String keeps the wrapping token out of %v.
func (t NodeToken) String() string {
	return fmt.Sprintf("node token %s (wrapped until %s)", t.Accessor, t.Expires.Format(time.RFC3339))
}

// NodeToken mints node's token from the role, response-wrapped: Vault
// answers with a single-use wrapping token that the node unwraps itself,
// so the node token never passes through bootstrapd's memory, store or the
// join bundle in the clear, and a bundle claimed twice shows as a failed
// unwrap. The token carries an entity alias named after the node, which is
// what the node policy's path template resolves to.
func (v *Vault) NodeToken(ctx context.Context, node string) (NodeToken, error) {
	if err := checkNodeHostname(node); err != nil {
		return NodeToken{}, err
	}
	// Wrapping is set on a clone: the shared client is used concurrently
	// by the reconciler, and a wrapped answer to any other call is lost.
	wc, err := v.client.Clone()
	if err != nil {
		return NodeToken{}, fmt.Errorf("vault: clone client: %w", err)
	}
	ttl := fmt.Sprintf("%ds", int(v.cfg.WrapTTL.Seconds()))
	wc.SetWrappingLookupFunc(func(string, string) string { return ttl })
	s, err := wc.Auth().Token().CreateWithRoleWithContext(ctx, &vaultapi.TokenCreateRequest{
		Policies:    v.nodePolicies(),
		Metadata:    map[string]string{"node": node, "created_by": "bootstrapd"},
		DisplayName: "node-" + node,
		EntityAlias: node,
	}, v.cfg.Role)
	if err != nil {
		return NodeToken{}, v.wrapErr("create node token for "+node+" at auth/token/create/"+v.cfg.Role, err)
	}
	if s == nil || s.WrapInfo == nil || s.WrapInfo.Token == "" || s.WrapInfo.WrappedAccessor == "" {
		// Something between us and Vault dropped X-Vault-Wrap-TTL. A token
		// we were handed in the clear must not outlive this call.
		if s != nil && s.Auth != nil && s.Auth.Accessor != "" {
			_ = v.Revoke(ctx, s.Auth.Accessor)
		}
		return NodeToken{}, fmt.Errorf("vault %s: token for %s came back without response wrapping (a proxy dropping X-Vault-Wrap-TTL?); any unwrapped token was revoked", v.cfg.Addr, node)
	}
	t := NodeToken{
		Wrapped:  s.WrapInfo.Token,
		Accessor: s.WrapInfo.WrappedAccessor,
		Expires:  s.WrapInfo.CreationTime.Add(time.Duration(s.WrapInfo.TTL) * time.Second),
	}
	v.log.Info("vault: minted wrapped node token", "node", node, "token", t)
	return t, nil
}

// nodePolicies are the policies of a node token and the role's
// allowed_policies: the node policy Init writes, then the operator's.
func (v *Vault) nodePolicies() []string {
	ps := append([]string{v.cfg.Role}, v.cfg.NodePolicies...)
	slices.Sort(ps)
	return slices.Compact(ps)
}

// Revoke revokes the token behind accessor (and its children). A token
// already revoked or expired counts as revoked, so retire can run twice.
// Depending on its version, Vault answers an unknown accessor with success
// and the warning "No token found with this accessor" (1.21: its accessor
// index entry goes with the token) or 400 "invalid accessor", and one whose
// token is mid-revocation with 400 "token not found".
func (v *Vault) Revoke(ctx context.Context, accessor string) error {
	if accessor == "" {
		return errors.New("vault: revoke: empty token accessor")
	}
	s, err := v.client.Logical().WriteWithContext(ctx, "auth/token/revoke-accessor", map[string]any{"accessor": accessor})
	var re *vaultapi.ResponseError
	gone := errors.As(err, &re) && re.StatusCode == 400 && slices.ContainsFunc(re.Errors, func(m string) bool {
		return strings.Contains(m, "token not found") || strings.Contains(m, "invalid accessor")
	})
	switch {
	case gone || err == nil && s != nil && slices.ContainsFunc(s.Warnings, func(m string) bool {
		return strings.Contains(m, "No token found")
	}):
		v.log.Info("vault: token already gone", "accessor", accessor)
	case err != nil:
		return v.wrapErr("revoke token by accessor "+accessor+" (auth/token/revoke-accessor)", err)
	default:
		v.log.Info("vault: revoked token", "accessor", accessor)
	}
	return nil
}

// kvPath is the API path of path in the KV v2 mount, under kind "data" or
// "metadata", as policies and error messages spell it.
func (v *Vault) kvPath(kind, path string) string {
	return v.cfg.Mount + "/" + kind + "/" + path
}

// vaultError puts what we were doing and where in front of Vault's own
// message, on one line (api.ResponseError's text spans several), and keeps
// the original for errors.As.
type vaultError struct {
	addr, op string
	err      error
}

func (e *vaultError) Unwrap() error { return e.err }

func (e *vaultError) Error() string {
	return fmt.Sprintf("vault %s: %s: %s", e.addr, e.op, vaultCause(e.err))
}

// vaultCause is the part of err that says what went wrong: Vault's own
// messages, or the network error without the URL (the op names the path).
func vaultCause(err error) string {
	var re *vaultapi.ResponseError
	var ue *url.Error
	switch {
	case errors.As(err, &re):
		msg := strings.Join(re.Errors, "; ")
		if len(msg) > 300 { // a proxy's HTML page, say
			msg = msg[:300] + "..."
		}
		return fmt.Sprintf("HTTP %d: %s", re.StatusCode, cmp.Or(msg, "no message"))
	case errors.As(err, &ue):
		return ue.Err.Error()
	}
	return err.Error()
}

func (v *Vault) wrapErr(op string, err error) error {
	return &vaultError{addr: v.cfg.Addr, op: op, err: err}
}

// Init makes Vault ready for bootstrapd: the KV v2 mount, the Concourse
// policies, the node policy and the node token role. It compares before it
// writes, so it can run at every start, and returns one line per change
// (none when everything was already so). Something else sitting at the
// mount is an error, never replaced.
func (v *Vault) Init(ctx context.Context) ([]string, error) {
	var changes []string
	note := func(s string) {
		changes = append(changes, s)
		v.log.Info("vault: init", "change", s)
	}
	if err := v.initMount(ctx, note); err != nil {
		return changes, err
	}
	auths, err := v.client.Sys().ListAuthWithContext(ctx)
	if err != nil {
		return changes, v.wrapErr("list auth methods (sys/auth)", err)
	}
	tokenAuth, ok := auths["token/"]
	if !ok || tokenAuth.Accessor == "" {
		return changes, fmt.Errorf("vault %s: no token auth method in sys/auth", v.cfg.Addr)
	}
	for _, p := range v.policies(tokenAuth.Accessor) {
		old, err := v.client.Sys().GetPolicyWithContext(ctx, p.name)
		if err != nil {
			return changes, v.wrapErr("read policy "+p.name, err)
		}
		if old == p.rules {
			continue
		}
		if err := v.client.Sys().PutPolicyWithContext(ctx, p.name, p.rules); err != nil {
			return changes, v.wrapErr("write policy "+p.name, err)
		}
		if old == "" {
			note("created policy " + p.name)
		} else {
			note("updated policy " + p.name)
		}
	}
	return changes, v.initRole(ctx, note)
}

// initMount enables the KV v2 engine at the mount, or checks that the one
// there is KV v2: a KV v1 mount would take the same paths without versions,
// check-and-set or metadata, and every policy here would miss it.
func (v *Vault) initMount(ctx context.Context, note func(string)) error {
	mounts, err := v.client.Sys().ListMountsWithContext(ctx)
	if err != nil {
		return v.wrapErr("list secrets engines (sys/mounts)", err)
	}
	m, ok := mounts[v.cfg.Mount+"/"]
	switch {
	case !ok:
		err := v.client.Sys().MountWithContext(ctx, v.cfg.Mount, &vaultapi.MountInput{
			Type:        "kv",
			Description: "bootstrapd: Concourse secrets (concourse/web, concourse/db, concourse/workers/<node>)",
			Options:     map[string]string{"version": "2"},
		})
		if err != nil {
			return v.wrapErr("enable KV v2 at "+v.cfg.Mount+"/", err)
		}
		note("enabled KV v2 secrets engine at " + v.cfg.Mount + "/")
	case m.Type == "kv" && m.Options["version"] == "2":
	case m.Type == "kv" || m.Type == "generic":
		return fmt.Errorf("vault %s: %s/ is a KV version 1 mount; bootstrapd needs KV v2 there: "+
			"upgrade it with `vault kv enable-versioning %s/` or configure another mount", v.cfg.Addr, v.cfg.Mount, v.cfg.Mount)
	default:
		return fmt.Errorf("vault %s: %s/ is a %q secrets engine, not KV v2: configure another mount", v.cfg.Addr, v.cfg.Mount, m.Type)
	}
	return nil
}

type vaultPolicy struct{ name, rules string }

// policies are the ACL policies Init keeps, on seed 000's paths, written
// out in full so a change shows as a diff of text Vault stores verbatim.
//
// The node policy is per node: node tokens carry an entity alias named
// after the node on the token auth method (accessor tokenAuth), and the
// path template resolves to that alias name, so a node reads its own key
// and no other node's.
func (v *Vault) policies(tokenAuth string) []vaultPolicy {
	kv := v.cfg.Mount
	head := "# Written by bootstrapd (vault init); local edits are overwritten.\n"
	read := func(path string) string { return fmt.Sprintf("path %q {\n  capabilities = [\"read\"]\n}\n", path) }
	return []vaultPolicy{
		{PolicyConcourseWeb, head +
			read(kv+"/data/concourse/web") +
			read(kv+"/data/concourse/db") +
			read(kv+"/data/concourse/workers/*") +
			// LIST for authorized_worker_keys: {{range secrets ".../workers/"}}
			fmt.Sprintf("path %q {\n  capabilities = [\"list\"]\n}\n", kv+"/metadata/concourse/workers")},
		// Seed 000's worker also had update and delete on workers/*, for
		// its prestart task that made keys; bootstrapd makes them, so a
		// worker only reads. It still reads all of concourse/web for
		// tsa_host_key_pub, as the seed's templates do: that secret also
		// holds the TSA private key and session signing key, so split the
		// public key into its own path if workers are less trusted.
		{PolicyConcourseWorker, head +
			read(kv+"/data/concourse/workers/*") +
			read(kv+"/data/concourse/web")},
		{PolicyConcourseDB, head + read(kv+"/data/concourse/db")},
		{v.cfg.Role, head +
			read(fmt.Sprintf("%s/data/concourse/workers/{{identity.entity.aliases.%s.name}}", kv, tokenAuth)) +
			// A periodic token lives only as long as it is renewed, and the
			// role drops the default policy that would allow this.
			"path \"auth/token/renew-self\" {\n  capabilities = [\"update\"]\n}\n" +
			read("auth/token/lookup-self")},
	}
}

// initRole writes the node token role when it is absent or differs in a
// field bootstrapd sets. The pattern is seed 003's: periodic, renewable,
// orphan (a node token must not die with the bootstrapd token that made
// it), no explicit max TTL. Batch tokens cannot be periodic, hence service.
func (v *Vault) initRole(ctx context.Context, note func(string)) error {
	path := "auth/token/roles/" + v.cfg.Role
	want := map[string]any{
		"allowed_policies":        v.nodePolicies(),
		"allowed_policies_glob":   []string{},
		"orphan":                  true,
		"renewable":               true,
		"token_period":            int(nodeTokenPeriod.Seconds()),
		"token_explicit_max_ttl":  0,
		"token_no_default_policy": true,
		"token_type":              "service",
		// Any alias name: bootstrapd, the only holder of create on this
		// role, names each node's alias after the node (NodeToken).
		"allowed_entity_aliases": []string{"*"},
	}
	return v.ensure(ctx, path, "token role "+v.cfg.Role, want, note)
}

// ensure writes want at path unless every field of it already reads back
// the same, and notes what it created or which fields it updated.
func (v *Vault) ensure(ctx context.Context, path, what string, want map[string]any, note func(string)) error {
	old, err := v.client.Logical().ReadWithContext(ctx, path)
	if err != nil {
		return v.wrapErr("read "+path, err)
	}
	var differ []string
	for k, w := range want {
		if old == nil || roleField(old.Data[k]) != roleField(w) {
			differ = append(differ, k)
		}
	}
	if len(differ) == 0 {
		return nil
	}
	if _, err := v.client.Logical().WriteWithContext(ctx, path, want); err != nil {
		return v.wrapErr("write "+path, err)
	}
	if old == nil {
		note("created " + what)
	} else {
		slices.Sort(differ)
		note("updated " + what + " (" + strings.Join(differ, ", ") + ")")
	}
	return nil
}

func roleField(x any) string {
	var l []string
	switch x := x.(type) {
	case nil:
		return ""
	case []string:
		l = slices.Clone(x)
	case []any:
		for _, e := range x {
			l = append(l, fmt.Sprint(e))
		}
	default:
		return fmt.Sprint(x)
	}
	slices.Sort(l)
	return strings.Join(l, ",")
}

// Check is `bootstrapd doctor`'s look at Vault: reachable, initialized and
// unsealed, our token accepted, the node role there, and the token allowed
// what bootstrapd does. The first problem found is returned, saying what
// to fix.
func (v *Vault) Check(ctx context.Context) error {
	h, err := v.client.Sys().HealthWithContext(ctx)
	switch {
	case err != nil:
		return fmt.Errorf("cannot reach Vault at %s: %s: check the address (VAULT_ADDR), that Vault runs, and the CA certificate for https", v.cfg.Addr, vaultCause(err))
	case !h.Initialized:
		return fmt.Errorf("vault %s is not initialized: run `vault operator init`", v.cfg.Addr)
	case h.Sealed:
		return fmt.Errorf("vault %s is sealed: unseal it (`vault operator unseal`)", v.cfg.Addr)
	}
	if _, err := v.client.Auth().Token().LookupSelfWithContext(ctx); err != nil {
		var re *vaultapi.ResponseError
		if errors.As(err, &re) && re.StatusCode == 403 {
			return fmt.Errorf("vault %s rejects bootstrapd's token (expired, revoked or mistyped): put a valid one in the token file or VAULT_TOKEN", v.cfg.Addr)
		}
		return v.wrapErr("look up own token", err)
	}
	role, err := v.client.Logical().ReadWithContext(ctx, "auth/token/roles/"+v.cfg.Role)
	var re *vaultapi.ResponseError
	switch {
	case errors.As(err, &re) && re.StatusCode == 403:
		// The token may create from the role without reading it; the
		// capability check below still covers the role's use.
	case err != nil:
		return v.wrapErr("read token role "+v.cfg.Role, err)
	case role == nil:
		return fmt.Errorf("vault %s: token role %q does not exist: run bootstrapd's vault init", v.cfg.Addr, v.cfg.Role)
	}
	probe := workerKeyPath("doctor-probe")
	for _, need := range []struct{ path, capability, why string }{
		{"auth/token/create/" + v.cfg.Role, "update", "mint node tokens"},
		{"auth/token/revoke-accessor", "update", "revoke node tokens on retire"},
		{v.kvPath("data", probe), "create", "write worker keys"},
		{v.kvPath("metadata", probe), "read", "see whether a worker key exists"},
		{v.kvPath("metadata", probe), "delete", "delete worker keys on retire"},
	} {
		caps, err := v.client.Sys().CapabilitiesSelfWithContext(ctx, need.path)
		if err != nil {
			return v.wrapErr("capabilities of own token on "+need.path, err)
		}
		if !slices.Contains(caps, "root") && !slices.Contains(caps, need.capability) {
			return fmt.Errorf("vault %s: bootstrapd's token lacks %q on %s (has %v), needed to %s: add it to the token's policy",
				v.cfg.Addr, need.capability, need.path, caps, need.why)
		}
	}
	return nil
}
