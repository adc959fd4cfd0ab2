package cluster

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/bootstrapd/bootstrapd/internal/cluster/clustertest"
)

// TestInitWorkloadIdentity: JWT auth, its config and the worker role are
// made once and then left alone; a hand edit is put back; another auth
// method at jwt-nomad is refused, not replaced.
func TestInitWorkloadIdentity(t *testing.T) {
	t.Parallel()
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"keys":[]}`))
	}))
	defer jwks.Close()
	srv, v, w := testVault(t, nil)
	url := jwks.URL + "/.well-known/jwks.json"

	got, err := v.InitWorkloadIdentity(t.Context(), url, "concourse-worker", "concourse-worker")
	w.checkErr(t, err)
	if err != nil || len(got) != 3 {
		t.Fatalf("first init: %q %v", got, err)
	}
	if again, err := v.InitWorkloadIdentity(t.Context(), url, "concourse-worker", "concourse-worker"); err != nil || len(again) != 0 {
		t.Fatalf("second init changed %q (%v)", again, err)
	}
	root := rootClient(t, srv)
	role, err := root.Logical().Read("auth/jwt-nomad/role/concourse-worker")
	if err != nil || role == nil || roleField(role.Data["token_policies"]) != PolicyConcourseWorker || roleField(role.Data["bound_claims"]) != "map[nomad_job_id:concourse-worker]" {
		t.Fatalf("role: %+v %v", role, err)
	}
	if _, err := root.Logical().Write("auth/jwt-nomad/role/concourse-worker", map[string]any{"token_policies": "default", "role_type": "jwt", "user_claim": "sub", "bound_audiences": "x"}); err != nil {
		t.Fatal(err)
	}
	fixed, err := v.InitWorkloadIdentity(t.Context(), url, "concourse-worker", "concourse-worker")
	if err != nil || len(fixed) != 1 || !strings.HasPrefix(fixed[0], "updated JWT role concourse-worker (") {
		t.Fatalf("after a hand edit: %q %v", fixed, err)
	}

	other := clustertest.StartVault(t)
	if err := rootClient(t, other).Sys().EnableAuthWithOptions("jwt-nomad", &vaultapi.EnableAuthOptions{Type: "userpass"}); err != nil {
		t.Fatal(err)
	}
	v2, w2 := newWatchedVault(t, VaultConfig{Addr: other.Addr}, other.RootToken)
	_, err = v2.InitWorkloadIdentity(t.Context(), url, "concourse-worker", "concourse-worker")
	w2.checkErr(t, err)
	if err == nil || !strings.Contains(err.Error(), "jwt-nomad/ is a userpass auth method, not jwt") {
		t.Fatalf("userpass at jwt-nomad: %v", err)
	}
}
