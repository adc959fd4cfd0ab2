package cluster

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	vaultapi "github.com/hashicorp/vault/api"
)

// TestTokenIntegration: the Vault side of Nomad's token integration, as
// the servers use it: their token (orphan, periodic, nomad-server) creates
// task tokens from the nomad-cluster role with the Concourse policies, and
// nothing more; Init is idempotent and puts a hand edit back.
func TestTokenIntegration(t *testing.T) {
	t.Parallel()
	srv, v, w := testVault(t, nil)
	got, err := v.InitTokenIntegration(t.Context())
	w.checkErr(t, err)
	if err != nil || !slices.Equal(got, []string{"created policy nomad-server", "created token role nomad-cluster"}) {
		t.Fatalf("first init: %q %v", got, err)
	}
	if again, err := v.InitTokenIntegration(t.Context()); err != nil || len(again) != 0 {
		t.Fatalf("second init changed %q (%v)", again, err)
	}
	root := rootClient(t, srv)
	if _, err := root.Logical().Write("auth/token/roles/nomad-cluster", map[string]any{"allowed_policies": "default,root"}); err != nil {
		t.Fatal(err)
	}
	if fixed, err := v.InitTokenIntegration(t.Context()); err != nil || len(fixed) != 1 || !strings.Contains(fixed[0], "allowed_policies") {
		t.Fatalf("after a hand edit: %q %v", fixed, err)
	}

	token, accessor, err := v.NomadServerToken(t.Context())
	if err != nil || token == "" || accessor == "" {
		t.Fatalf("NomadServerToken: %q %q %v", token, accessor, err)
	}
	w.add(token)
	look, err := root.Auth().Token().LookupAccessor(accessor)
	if err != nil {
		t.Fatal(err)
	}
	period, _ := look.Data["period"].(json.Number).Int64()
	if !slices.Contains(roleList(look.Data["policies"]), PolicyNomadServer) || period != int64(nomadServerTokenPeriod.Seconds()) ||
		look.Data["orphan"] != true || look.Data["renewable"] != true {
		t.Errorf("the servers' token: %v", look.Data)
	}

	// What the servers do with it (Nomad's vault client, token integration).
	nomad, _ := vaultapi.NewClient(&vaultapi.Config{Address: srv.Addr})
	nomad.SetToken(token)
	if _, err := nomad.Auth().Token().RenewSelf(0); err != nil {
		t.Errorf("renew-self: %v", err)
	}
	if r, err := nomad.Logical().Read("auth/token/roles/nomad-cluster"); err != nil || r == nil {
		t.Errorf("read the role: %v", err)
	}
	task, err := nomad.Auth().Token().CreateWithRole(&vaultapi.TokenCreateRequest{Policies: []string{PolicyConcourseWorker}}, NomadClusterRole)
	if err != nil || !slices.Contains(task.Auth.Policies, PolicyConcourseWorker) {
		t.Fatalf("a worker task token: %v", err)
	}
	if err := nomad.Auth().Token().RevokeAccessor(task.Auth.Accessor); err != nil {
		t.Errorf("revoke a task token: %v", err)
	}
	for _, p := range []string{PolicyNomadServer, "root", v.cfg.Role} {
		if _, err := nomad.Auth().Token().CreateWithRole(&vaultapi.TokenCreateRequest{Policies: []string{p}}, NomadClusterRole); err == nil {
			t.Errorf("the role gave a task token with %s", p)
		}
	}
	if _, err := nomad.Logical().Read("kv/data/concourse/web"); err == nil {
		t.Error("the servers' token reads Concourse secrets itself")
	}
}

func roleList(x any) []string {
	var out []string
	if l, ok := x.([]any); ok {
		for _, e := range l {
			s, _ := e.(string)
			out = append(out, s)
		}
	}
	return out
}
