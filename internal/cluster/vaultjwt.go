package cluster

import (
	"context"
	"fmt"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
)

// JWTAuthPath is where Nomad's workload identities log in to Vault: the
// path `nomad setup vault` uses and Nomad's client `vault` block defaults
// to (DefaultVaultJWTPath).
const JWTAuthPath = DefaultVaultJWTPath

// workloadTokenPeriod is how long a workload's Vault token lives between
// renewals; Nomad renews it while the task runs. As `nomad setup vault`.
const workloadTokenPeriod = 30 * time.Minute

// InitWorkloadIdentity does what `nomad setup vault` does, for the worker
// job only: JWT auth at jwt-nomad trusting the Nomad servers' JWKS, and a
// role the worker job's tasks log in with, bound to that job and granting
// the concourse-worker policy. Idempotent, like Init.
func (v *Vault) InitWorkloadIdentity(ctx context.Context, jwksURL, role, jobID string) ([]string, error) {
	var changes []string
	note := func(s string) {
		changes = append(changes, s)
		v.log.Info("vault: init", "change", s)
	}
	auths, err := v.client.Sys().ListAuthWithContext(ctx)
	if err != nil {
		return nil, v.wrapErr("list auth methods (sys/auth)", err)
	}
	switch a, ok := auths[JWTAuthPath+"/"]; {
	case !ok:
		if err := v.client.Sys().EnableAuthWithOptionsWithContext(ctx, JWTAuthPath, &vaultapi.EnableAuthOptions{Type: "jwt",
			Description: "Nomad workload identity (bootstrapd)"}); err != nil {
			return nil, v.wrapErr("enable JWT auth at "+JWTAuthPath, err)
		}
		note("enabled JWT auth at " + JWTAuthPath + "/")
	case a.Type != "jwt":
		return nil, fmt.Errorf("vault %s: %s/ is a %s auth method, not jwt; move it or disable it (vault auth disable %s)", v.cfg.Addr, JWTAuthPath, a.Type, JWTAuthPath)
	}
	if err := v.ensure(ctx, "auth/"+JWTAuthPath+"/config", "JWT auth config (jwks_url "+jwksURL+")", map[string]any{
		"jwks_url":           jwksURL,
		"jwt_supported_algs": []string{"EdDSA", "RS256"},
		"default_role":       role,
	}, note); err != nil {
		return changes, err
	}
	err = v.ensure(ctx, "auth/"+JWTAuthPath+"/role/"+role, "JWT role "+role, map[string]any{
		"role_type":               "jwt",
		"bound_audiences":         []string{"vault.io"},
		"bound_claims":            map[string]any{"nomad_job_id": jobID},
		"user_claim":              "/nomad_job_id",
		"user_claim_json_pointer": true,
		"claim_mappings":          map[string]any{"nomad_namespace": "nomad_namespace", "nomad_job_id": "nomad_job_id", "nomad_task": "nomad_task"},
		"token_type":              "service",
		"token_period":            int(workloadTokenPeriod.Seconds()),
		"token_policies":          []string{PolicyConcourseWorker},
	}, note)
	return changes, err
}
