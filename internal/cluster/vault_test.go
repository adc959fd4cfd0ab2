package cluster

import (
	"bytes"
	"errors"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/bootstrapd/bootstrapd/internal/cluster/clustertest"
)

// secretWatch collects bootstrapd's log output and every secret a test
// comes across, and fails the test if any secret shows up in the log or in
// an error bootstrapd returned.
type secretWatch struct {
	mu      sync.Mutex
	log     bytes.Buffer
	secrets []string
}

func (w *secretWatch) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.log.Write(p)
}

// add records secrets to look for; for a PEM key, its first base64 line.
func (w *secretWatch) add(secrets ...string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, s := range secrets {
		if lines := strings.Split(s, "\n"); len(lines) > 2 && strings.HasPrefix(s, "-----BEGIN") {
			s = lines[1]
		}
		if s != "" {
			w.secrets = append(w.secrets, s)
		}
	}
}

// checkErr fails t if err's text holds a secret seen so far.
func (w *secretWatch) checkErr(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, s := range w.secrets {
		if strings.Contains(err.Error(), s) {
			t.Errorf("error %q shows a secret", err)
		}
	}
}

func newWatchedVault(t *testing.T, cfg VaultConfig, token string) (*Vault, *secretWatch) {
	t.Helper()
	w := &secretWatch{}
	w.add(token)
	cfg.Token = token
	v, err := NewVault(cfg, slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		for _, s := range w.secrets {
			if bytes.Contains(w.log.Bytes(), []byte(s)) {
				t.Errorf("a secret (%.8s...) is in the log:\n%s", s, w.log.String())
			}
		}
	})
	return v, w
}

// testVault starts a dev Vault and a Vault client on it that reuses one
// worker key (see testWorkerKey), with Init done.
func testVault(t *testing.T, keys *testWorkerKey) (*clustertest.VaultServer, *Vault, *secretWatch) {
	t.Helper()
	srv := clustertest.StartVault(t)
	v, w := newWatchedVault(t, VaultConfig{Addr: srv.Addr}, srv.RootToken)
	if keys != nil {
		v.genKey = keys.gen
	}
	if _, err := v.Init(t.Context()); err != nil {
		t.Fatal(err)
	}
	return srv, v, w
}

// rootClient is a plain API client with the root token, to look at what
// bootstrapd did the way an operator would.
func rootClient(t *testing.T, srv *clustertest.VaultServer) *vaultapi.Client {
	t.Helper()
	c, err := vaultapi.NewClient(&vaultapi.Config{Address: srv.Addr})
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken(srv.RootToken)
	return c
}

func TestNewVault(t *testing.T) {
	ok := VaultConfig{Addr: "https://vault.lab:8200", Token: "hvs.X"}
	v, err := NewVault(ok, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c := v.cfg; c.Mount != "kv" || c.Role != "bootstrapd-node" || c.WrapTTL != 10*time.Minute {
		t.Errorf("defaults: got %+v", c)
	}
	for _, tc := range []struct {
		name    string
		edit    func(*VaultConfig)
		wantErr string
	}{
		{"no address", func(c *VaultConfig) { c.Addr = "" }, "no address"},
		{"not a URL", func(c *VaultConfig) { c.Addr = "vault.lab:8200" }, "not an http(s) URL"},
		{"no token", func(c *VaultConfig) { c.Token = "" }, "no token"},
		{"short wrap", func(c *VaultConfig) { c.WrapTTL = time.Millisecond }, "minimum"},
		{"mount escapes", func(c *VaultConfig) { c.Mount = "kv/../sys" }, "mount"},
		{"mount glob", func(c *VaultConfig) { c.Mount = "kv*" }, "mount"},
		{"role path", func(c *VaultConfig) { c.Role = "a/b" }, "role"},
		{"node policy glob", func(c *VaultConfig) { c.NodePolicies = []string{"*"} }, "node policy"},
		{"missing CA", func(c *VaultConfig) { c.CACert = "/nonexistent/ca.pem" }, "/nonexistent/ca.pem"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.edit(&c)
			_, err := NewVault(c, nil)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("NewVault = %v, want error with %q", err, tc.wantErr)
			}
			if strings.Contains(err.Error(), "hvs.X") {
				t.Fatalf("error shows the token: %v", err)
			}
		})
	}
	// The config and a token value print without their secrets.
	nt := NodeToken{Wrapped: "hvs.WRAPPED", Accessor: "acc"}
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("x", "cfg", v.cfg, "t", nt)
	for _, s := range []string{buf.String(), v.cfg.String(), nt.String()} {
		if strings.Contains(s, "hvs.") {
			t.Errorf("secret printed: %s", s)
		}
	}
}

// TestVaultUnreachable: every operation against a Vault that is not there
// fails naming the address, without the token.
func TestVaultUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := "http://" + l.Addr().String()
	l.Close() // nothing listens there now
	v, w := newWatchedVault(t, VaultConfig{Addr: addr}, "hvs.UNREACHABLE")
	// The client retries a refused connection twice, 1 to 1.5 s apart:
	// right for the daemon, 15 s of waiting here for the same errors.
	v.client.SetMaxRetries(0)
	ctx := t.Context()
	_, initErr := v.Init(ctx)
	_, tokErr := v.NodeToken(ctx, "n7")
	_, putErr := v.PutWorkerKey(ctx, "n7")
	for name, err := range map[string]error{
		"Check":           v.Check(ctx),
		"Init":            initErr,
		"NodeToken":       tokErr,
		"PutWorkerKey":    putErr,
		"DeleteWorkerKey": v.DeleteWorkerKey(ctx, "n7"),
		"Revoke":          v.Revoke(ctx, "someaccessor"),
	} {
		if err == nil || !strings.Contains(err.Error(), addr) {
			t.Errorf("%s: %v, want an error naming %s", name, err, addr)
		}
		w.checkErr(t, err)
		t.Logf("%s: %v", name, err)
	}
}

func TestVaultInit(t *testing.T) {
	t.Parallel()
	srv := clustertest.StartVault(t)
	v, w := newWatchedVault(t, VaultConfig{Addr: srv.Addr, NodePolicies: []string{"site-extra"}}, srv.RootToken)
	ctx := t.Context()
	root := rootClient(t, srv)

	got, err := v.Init(ctx)
	w.checkErr(t, err)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"enabled KV v2 secrets engine at kv/",
		"created policy concourse-web",
		"created policy concourse-worker",
		"created policy concourse-db",
		"created policy bootstrapd-node",
		"created token role bootstrapd-node",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("first Init:\n got %q\nwant %q", got, want)
	}
	if got, err := v.Init(ctx); err != nil || len(got) != 0 {
		t.Fatalf("second Init = %q, %v; want no changes", got, err)
	}

	mounts, err := root.Sys().ListMounts()
	if err != nil {
		t.Fatal(err)
	}
	if m := mounts["kv/"]; m == nil || m.Type != "kv" || m.Options["version"] != "2" {
		t.Errorf("kv/ mount: %+v", m)
	}
	role, err := root.Logical().Read("auth/token/roles/bootstrapd-node")
	if err != nil || role == nil {
		t.Fatalf("read role: %v", err)
	}
	for k, want := range map[string]string{
		"allowed_policies":        "bootstrapd-node,site-extra",
		"orphan":                  "true",
		"renewable":               "true",
		"token_period":            "259200",
		"token_explicit_max_ttl":  "0",
		"token_no_default_policy": "true",
		"token_type":              "service",
	} {
		if got := roleField(role.Data[k]); got != want {
			t.Errorf("role %s = %q, want %q", k, got, want)
		}
	}

	// Drift is put back, and reported as an update of what drifted.
	if err := root.Sys().PutPolicy(PolicyConcourseWeb, `path "kv/*" { capabilities = ["read"] }`); err != nil {
		t.Fatal(err)
	}
	if _, err := root.Logical().Write("auth/token/roles/bootstrapd-node", map[string]any{"token_period": "1h", "orphan": false}); err != nil {
		t.Fatal(err)
	}
	got, err = v.Init(ctx)
	want = []string{"updated policy concourse-web", "updated token role bootstrapd-node (orphan, token_period)"}
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("Init after drift = %q, %v; want %q", got, err, want)
	}
	if got, err := v.Init(ctx); err != nil || len(got) != 0 {
		t.Fatalf("Init after repair = %q, %v; want no changes", got, err)
	}
	if err := v.Check(ctx); err != nil {
		t.Errorf("Check with the root token: %v", err)
	}
}

// TestVaultInitRefusesOtherEngine: Init never takes over a mount that
// holds something other than KV v2; it says what is there and what to do.
func TestVaultInitRefusesOtherEngine(t *testing.T) {
	t.Parallel()
	srv := clustertest.StartVault(t)
	root := rootClient(t, srv)
	for _, tc := range []struct {
		mount   string
		input   vaultapi.MountInput
		wantErr string
	}{
		{"kv1", vaultapi.MountInput{Type: "kv", Options: map[string]string{"version": "1"}}, "kv1/ is a KV version 1 mount; bootstrapd needs KV v2 there: upgrade it with `vault kv enable-versioning kv1/`"},
		{"kvplain", vaultapi.MountInput{Type: "kv"}, "KV version 1"},
		{"pki", vaultapi.MountInput{Type: "pki"}, `pki/ is a "pki" secrets engine, not KV v2`},
	} {
		t.Run(tc.mount, func(t *testing.T) {
			if err := root.Sys().Mount(tc.mount, &tc.input); err != nil {
				t.Fatal(err)
			}
			v, w := newWatchedVault(t, VaultConfig{Addr: srv.Addr, Mount: tc.mount}, srv.RootToken)
			got, err := v.Init(t.Context())
			w.checkErr(t, err)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), srv.Addr) {
				t.Fatalf("Init = %q, %v; want an error naming %s with %q", got, err, srv.Addr, tc.wantErr)
			}
			if len(got) != 0 {
				t.Errorf("Init changed %q before refusing", got)
			}
		})
	}
}

// nodeClient is a client holding only tok, as a node would.
func nodeClient(t *testing.T, srv *clustertest.VaultServer, tok string) *vaultapi.Client {
	t.Helper()
	c := rootClient(t, srv)
	c.SetToken(tok)
	return c
}

func TestVaultNodeToken(t *testing.T) {
	t.Parallel()
	keys := &testWorkerKey{}
	srv, v, w := testVault(t, keys)
	ctx := t.Context()
	for _, n := range []string{"n7", "n8"} {
		if _, err := v.PutWorkerKey(ctx, n); err != nil {
			t.Fatal(err)
		}
	}

	before := time.Now()
	nt, err := v.NodeToken(ctx, "n7")
	w.checkErr(t, err)
	if err != nil {
		t.Fatal(err)
	}
	w.add(nt.Wrapped)
	if nt.Wrapped == "" || nt.Accessor == "" {
		t.Fatalf("NodeToken = %v", nt)
	}
	if d := nt.Expires.Sub(before); d < 9*time.Minute || d > 11*time.Minute {
		t.Errorf("wrapping token expires in %s, want the default WrapTTL of 10m", d)
	}

	// What a node does: look the wrapping token up (was it made where we
	// expect?), then unwrap it, which works exactly once.
	anon := nodeClient(t, srv, "")
	look, err := anon.Logical().Write("sys/wrapping/lookup", map[string]any{"token": nt.Wrapped})
	if err != nil {
		t.Fatal(err)
	}
	if p := look.Data["creation_path"]; p != "auth/token/create/bootstrapd-node" {
		t.Errorf("wrapping token creation_path = %v", p)
	}
	sec, err := nodeClient(t, srv, "").Logical().Unwrap(nt.Wrapped)
	if err != nil || sec == nil || sec.Auth == nil {
		t.Fatalf("unwrap: %v, %+v", err, sec)
	}
	tok := sec.Auth.ClientToken
	w.add(tok)
	if _, err := nodeClient(t, srv, "").Logical().Unwrap(nt.Wrapped); err == nil {
		t.Fatal("second unwrap of the same wrapping token worked")
	}
	a := sec.Auth
	if a.Accessor != nt.Accessor {
		t.Errorf("unwrapped accessor %s, NodeToken.Accessor %s", a.Accessor, nt.Accessor)
	}
	if !slices.Equal(a.TokenPolicies, []string{"bootstrapd-node"}) || !a.Orphan || !a.Renewable {
		t.Errorf("node token: policies %v orphan %v renewable %v; want [bootstrapd-node], orphan, renewable", a.TokenPolicies, a.Orphan, a.Renewable)
	}
	node := nodeClient(t, srv, tok)
	self, err := node.Auth().Token().LookupSelf()
	if err != nil {
		t.Fatal(err)
	}
	if m, _ := self.Data["meta"].(map[string]any); m["node"] != "n7" {
		t.Errorf("node token metadata %v, want node=n7", self.Data["meta"])
	}
	if r := self.Data["role"]; r != "bootstrapd-node" {
		t.Errorf("node token role %v", r)
	}
	// Periodic: a renewal ignores the increment asked for and resets the
	// TTL to the period (lookup shows no "period" for a role's period, so
	// this is how it shows). The node renews itself: the default policy
	// is off, the node policy allows it.
	if a.LeaseDuration != 259200 {
		t.Errorf("node token TTL %ds, want the 72h period", a.LeaseDuration)
	}
	renewed, err := node.Auth().Token().RenewSelf(3600)
	if err != nil {
		t.Fatalf("node token cannot renew itself: %v", err)
	}
	if d := renewed.Auth.LeaseDuration; d != 259200 {
		t.Errorf("renewed for 1h, TTL is now %ds: not periodic (want 259200)", d)
	}

	// The node policy: its own worker key and nothing else.
	if s, err := node.KVv2("kv").Get(ctx, "concourse/workers/n7"); err != nil || s.Data["private_key"] == nil {
		t.Errorf("node token reading its own worker key: %v", err)
	}
	for _, p := range []string{"concourse/workers/n8", "concourse/web"} {
		if _, err := node.KVv2("kv").Get(ctx, p); !isStatus(err, 403) {
			t.Errorf("node token reading kv/%s: %v, want 403", p, err)
		}
	}

	// Revoke, twice: the second finds the token gone and is fine with it.
	for i := range 2 {
		err := v.Revoke(ctx, nt.Accessor)
		w.checkErr(t, err)
		if err != nil {
			t.Fatalf("Revoke #%d: %v", i+1, err)
		}
	}
	if _, err := node.Auth().Token().LookupSelf(); !isStatus(err, 403) {
		t.Errorf("revoked token still looks itself up: %v", err)
	}
	if err := v.Revoke(ctx, "nosuchaccessor"); err != nil {
		t.Errorf("Revoke of an unknown accessor: %v", err)
	}
	if log := w.log.String(); strings.Count(log, "vault: revoked token") != 1 || strings.Count(log, "vault: token already gone") != 2 {
		t.Errorf("want one revocation and two already gone in the log:\n%s", log)
	}
	if _, err := v.NodeToken(ctx, "../n8"); err == nil {
		t.Error("NodeToken took a node name with a path in it")
	}
}

func isStatus(err error, code int) bool {
	var re *vaultapi.ResponseError
	return errors.As(err, &re) && re.StatusCode == code
}

// TestVaultConcoursePolicies: tokens with Init's Concourse policies reach
// exactly what seed 000's templates read.
func TestVaultConcoursePolicies(t *testing.T) {
	t.Parallel()
	srv, v, _ := testVault(t, &testWorkerKey{})
	ctx := t.Context()
	root := rootClient(t, srv)
	for _, p := range []string{"concourse/web", "concourse/db"} {
		if _, err := root.KVv2("kv").Put(ctx, p, map[string]any{"x": "y"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := v.PutWorkerKey(ctx, "n7"); err != nil {
		t.Fatal(err)
	}
	type access struct {
		path string // API path under /v1/
		list bool
		ok   bool
	}
	for _, tc := range []struct {
		policy string
		checks []access
	}{
		{PolicyConcourseWeb, []access{
			{"kv/data/concourse/web", false, true},
			{"kv/data/concourse/db", false, true},
			{"kv/data/concourse/workers/n7", false, true},
			{"kv/metadata/concourse/workers/", true, true},
			{"kv/metadata/concourse/", true, false},
		}},
		{PolicyConcourseWorker, []access{
			{"kv/data/concourse/workers/n7", false, true},
			{"kv/data/concourse/web", false, true},
			{"kv/data/concourse/db", false, false},
			{"kv/metadata/concourse/workers/", true, false},
		}},
		{PolicyConcourseDB, []access{
			{"kv/data/concourse/db", false, true},
			{"kv/data/concourse/web", false, false},
			{"kv/data/concourse/workers/n7", false, false},
		}},
	} {
		t.Run(tc.policy, func(t *testing.T) {
			s, err := root.Auth().Token().Create(&vaultapi.TokenCreateRequest{Policies: []string{tc.policy}, NoDefaultPolicy: true, TTL: "5m"})
			if err != nil {
				t.Fatal(err)
			}
			c := nodeClient(t, srv, s.Auth.ClientToken)
			for _, a := range tc.checks {
				var err error
				if a.list {
					_, err = c.Logical().ListWithContext(ctx, a.path)
				} else {
					_, err = c.Logical().ReadWithContext(ctx, a.path)
				}
				if (err == nil) != a.ok {
					t.Errorf("%s (list %v): %v, want allowed=%v", a.path, a.list, err, a.ok)
				}
			}
			// No Concourse policy writes worker keys: bootstrapd does.
			if _, err := c.KVv2("kv").Put(ctx, "concourse/workers/n7", map[string]any{"public_key": "x"}); !isStatus(err, 403) {
				t.Errorf("%s wrote a worker key: %v", tc.policy, err)
			}
		})
	}
}

// TestVaultCheck: doctor's Vault check passes for a good setup and says
// what to fix for each way it can be wrong.
func TestVaultCheck(t *testing.T) {
	t.Parallel()
	srv, v, w := testVault(t, nil)
	ctx := t.Context()
	root := rootClient(t, srv)
	limited, err := root.Auth().Token().Create(&vaultapi.TokenCreateRequest{Policies: []string{PolicyConcourseWeb}, TTL: "5m"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, token, role, wantErr string
	}{
		{"root token", srv.RootToken, "", ""},
		{"bogus token", "hvs.BOGUSBOGUS", "", "rejects bootstrapd's token"},
		{"no role", srv.RootToken, "other-role", `token role "other-role" does not exist: run bootstrapd's vault init`},
		{"weak token", limited.Auth.ClientToken, "", `lacks "update" on auth/token/create/bootstrapd-node`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, w := newWatchedVault(t, VaultConfig{Addr: srv.Addr, Role: tc.role}, tc.token)
			err := v.Check(ctx)
			w.checkErr(t, err)
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("Check = %v, want %q", err, tc.wantErr)
			}
		})
	}
	if err := root.Sys().Seal(); err != nil {
		t.Fatal(err)
	}
	err = v.Check(ctx)
	w.checkErr(t, err)
	if err == nil || !strings.Contains(err.Error(), srv.Addr+" is sealed: unseal it") {
		t.Fatalf("Check of a sealed Vault = %v", err)
	}
}
