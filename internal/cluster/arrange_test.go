package cluster

import (
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/bootstrapd/bootstrapd/internal/cluster/clustertest"
	"github.com/bootstrapd/bootstrapd/internal/testlog"
)

func TestParseVersion(t *testing.T) {
	for in, want := range map[string]Version{
		"1.6.1": {1, 6, 1}, "v1.11.3": {1, 11, 3}, "1.6.1-dev": {1, 6, 1}, "1.10.0+ent": {1, 10, 0}, "2.0.5": {2, 0, 5},
	} {
		if got, err := ParseVersion(in); err != nil || got != want {
			t.Errorf("ParseVersion(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "1.6", "one.two.three", "x1.6.1"} {
		if _, err := ParseVersion(bad); err == nil || !strings.Contains(err.Error(), "MAJOR.MINOR.PATCH") {
			t.Errorf("ParseVersion(%q): %v", bad, err)
		}
	}
}

// TestArrange: the Vault integration and introduction tokens each Nomad
// version gets, by default and as a site asks, and the refusals that name
// the version.
func TestArrange(t *testing.T) {
	yes, no := true, false
	for _, tt := range []struct {
		version     string
		integration string
		intro       *bool
		want        string // VaultIntegration, or the error's text
		introWant   bool
	}{
		{"1.6.1", "", nil, VaultToken, false},
		{"1.6.3", VaultToken, &no, VaultToken, false},
		{"1.7.0", "", nil, VaultWorkloadIdentity, false},
		{"1.9.7", VaultToken, nil, VaultToken, false}, // deprecated, still there
		{"1.10.0", "", nil, VaultWorkloadIdentity, false},
		{"1.11.3", "", nil, VaultWorkloadIdentity, true},
		{"1.11.3", "", &no, VaultWorkloadIdentity, false},
		{"2.0.5", VaultWorkloadIdentity, &yes, VaultWorkloadIdentity, true},
		{"1.6.1", VaultWorkloadIdentity, nil, "run 1.6.1, which has no workload identity for Vault", false},
		{"1.10.0", VaultToken, nil, "run 1.10.0, which removed the token integration", false},
		{"1.10.2", "", &yes, "run 1.10.2, which has no client introduction tokens", false},
		{"1.6.1", "approle", nil, `vault integration "approle"`, false},
	} {
		v, err := ParseVersion(tt.version)
		if err != nil {
			t.Fatal(err)
		}
		a, err := Arrange(v, tt.integration, tt.intro)
		switch {
		case tt.want != VaultToken && tt.want != VaultWorkloadIdentity:
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Arrange(%s, %q, %v) = %+v, %v; want error %q", v, tt.integration, tt.intro, a, err, tt.want)
			}
		case err != nil || a.VaultIntegration != tt.want || a.Introduction != tt.introWant || !strings.HasPrefix(a.Why, "Nomad "+tt.version+": "):
			t.Errorf("Arrange(%s, %q, %v) = %+v, %v; want %s, introduction %v", v, tt.integration, tt.intro, a, err, tt.want, tt.introWant)
		}
	}
}

// TestNomadNewerThanTheTestAgent covers what Nomad 1.6 (the open-source
// test agent) lacks, against clustertest.NomadAPI: a stand-in answering as
// the Nomad v1.11.x HTTP API documentation describes, not Nomad.
func TestNomadNewerThanTheTestAgent(t *testing.T) {
	t.Parallel()
	const token = "0badcafe-0000-4000-8000-000000000001"
	fake := clustertest.StartNomadAPI(t, clustertest.NomadAPIOptions{Version: "1.11.3", Enforcement: "strict", ACLToken: token})
	logs := &testlog.Buffer{}
	n, err := NewNomad(NomadConfig{Addr: fake.Addr, Token: token}, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Check(t.Context()); err != nil {
		t.Fatalf("Check: %v", err)
	}
	v, err := n.ServerVersion(t.Context())
	if err != nil || v != (Version{1, 11, 3}) {
		t.Fatalf("ServerVersion = %v, %v", v, err)
	}
	a, err := Arrange(v, "", nil)
	if err != nil || a.VaultIntegration != VaultWorkloadIdentity || !a.Introduction {
		t.Errorf("Arrange(%s) = %+v, %v", v, a, err)
	}
	if strict, err := n.IntroductionEnforced(t.Context()); err != nil || !strict {
		t.Errorf("IntroductionEnforced = %v, %v; the servers run strict", strict, err)
	}
	jwt, err := n.IntroToken(t.Context(), "n7", 10*time.Minute)
	if err != nil || strings.Count(jwt, ".") != 2 {
		t.Fatalf("IntroToken = %q, %v", jwt, err)
	}
	reqs := fake.IntroRequests()
	if len(reqs) != 1 || reqs[0].NodeName != "n7" || reqs[0].NodePool != "default" || reqs[0].TTL != 10*time.Minute {
		t.Errorf("intro token requests %+v", reqs)
	}
	// The version is read once, not per join bundle.
	n.ServerVersion(t.Context())
	if got := strings.Count(strings.Join(fake.Requests(), "\n"), "/v1/agent/members"); got != 1 {
		t.Errorf("the servers' version was read %d times", got)
	}
	if strings.Contains(logs.String(), jwt) || strings.Contains(logs.String(), token) {
		t.Error("a token is in the log")
	}

	// A token without node:read or agent:read cannot tell the version:
	// the error names the address and what the token needs, not the token.
	bad, _ := NewNomad(NomadConfig{Addr: fake.Addr, Token: "11111111-2222-4333-8444-555555555555"}, nil)
	if _, err := bad.ServerVersion(t.Context()); err == nil || !strings.Contains(err.Error(), fake.Addr) ||
		!strings.Contains(err.Error(), "node:read") || strings.Contains(err.Error(), "11111111") {
		t.Errorf("ServerVersion with a token the servers refuse: %v", err)
	}
}

// TestWorkloadIdentityLogin: with the JWT auth InitWorkloadIdentity sets
// up in a real Vault, trusting the JWKS of NomadAPI (a stand-in answering
// as Nomad's v1.11.x API docs describe), a workload identity of the
// worker job logs in and reads a worker key; one of another job, or for
// another audience, is refused.
func TestWorkloadIdentityLogin(t *testing.T) {
	t.Parallel()
	fake := clustertest.StartNomadAPI(t, clustertest.NomadAPIOptions{})
	srv, v, _ := testVault(t, nil)
	if _, err := v.InitWorkloadIdentity(t.Context(), fake.JWKSURL(), "concourse-worker", DefaultWorkerJob); err != nil {
		t.Fatal(err)
	}
	root := rootClient(t, srv)
	if _, err := root.KVv2("kv").Put(t.Context(), "concourse/workers/n7", map[string]any{"private_key": "PEM"}); err != nil {
		t.Fatal(err)
	}
	identity := func(job, aud string) string {
		now := time.Now().Unix()
		return fake.SignIdentity(map[string]any{
			"aud": aud, "iat": now, "nbf": now, "exp": now + 300, "sub": "global:default:" + job + ":worker:worker",
			"nomad_namespace": "default", "nomad_job_id": job, "nomad_task": "worker", "nomad_allocation_id": "a1",
		})
	}
	login := func(jwt string) (*vaultapi.Client, error) {
		c, _ := vaultapi.NewClient(&vaultapi.Config{Address: srv.Addr})
		c.SetToken("")
		s, err := c.Logical().Write("auth/jwt-nomad/login", map[string]any{"role": "concourse-worker", "jwt": jwt})
		if err != nil {
			return nil, err
		}
		if !slices.Contains(s.Auth.Policies, PolicyConcourseWorker) {
			return nil, fmt.Errorf("policies %v", s.Auth.Policies)
		}
		c.SetToken(s.Auth.ClientToken)
		return c, nil
	}
	c, err := login(identity(DefaultWorkerJob, "vault.io"))
	if err != nil {
		t.Fatalf("the worker job's identity: %v", err)
	}
	if s, err := c.KVv2("kv").Get(t.Context(), "concourse/workers/n7"); err != nil || s.Data["private_key"] != "PEM" {
		t.Errorf("the worker's token reads its key: %v %v", s, err)
	}
	for name, jwt := range map[string]string{
		"another job":      identity("web", "vault.io"),
		"another audience": identity(DefaultWorkerJob, "nomadproject.io"),
		"not signed by the servers": func() string {
			other := clustertest.StartNomadAPI(t, clustertest.NomadAPIOptions{})
			now := time.Now().Unix()
			return other.SignIdentity(map[string]any{"aud": "vault.io", "iat": now, "nbf": now, "exp": now + 300, "nomad_namespace": "default", "nomad_job_id": DefaultWorkerJob, "nomad_task": "worker"})
		}(),
	} {
		if _, err := login(jwt); err == nil {
			t.Errorf("%s: logged in", name)
		}
	}
}
