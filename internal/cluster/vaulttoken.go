package cluster

import (
	"context"
	"fmt"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
)

// The token integration's names in Vault, as Nomad's documentation for it
// (v1.6) and seed 003 use them: the servers' token carries the
// nomad-server policy, and the servers mint task tokens from the
// nomad-cluster role (their create_from_role).
const (
	PolicyNomadServer = "nomad-server"
	NomadClusterRole  = "nomad-cluster"
)

// nomadServerTokenPeriod is the period of the servers' token and of the
// task tokens from the nomad-cluster role: 72h, as Nomad's documentation
// for the token integration sets them; Nomad renews both.
const nomadServerTokenPeriod = 72 * time.Hour

// nomadServerPolicy is Nomad's documented nomad-server policy: create,
// look up, renew and revoke task tokens against the nomad-cluster role.
func nomadServerPolicy() string {
	rule := func(path, capability, why string) string {
		return fmt.Sprintf("# %s\npath %q {\n  capabilities = [%q]\n}\n", why, path, capability)
	}
	return "# Written by bootstrapd (cluster init); local edits are overwritten.\n" +
		rule("auth/token/create/"+NomadClusterRole, "update", "Create task tokens from the nomad-cluster role.") +
		rule("auth/token/roles/"+NomadClusterRole, "read", "Check the role the task tokens come from.") +
		rule("auth/token/lookup-self", "read", "Check the servers' own token.") +
		rule("auth/token/lookup", "update", "Look up the tokens jobs are submitted with.") +
		rule("auth/token/revoke-accessor", "update", "Revoke task tokens no longer needed.") +
		rule("sys/capabilities-self", "update", "Check the servers' own capabilities.") +
		rule("auth/token/renew-self", "update", "Renew the servers' own (periodic) token.")
}

// InitTokenIntegration sets up Vault for Nomad's token integration (Nomad
// < 1.10): the nomad-server policy and the nomad-cluster token role the
// servers derive task tokens from. The role allows the Concourse policies
// only, and never nomad-server itself; its tokens are orphans (they do not
// die with the servers' token) and periodic, as Nomad requires. Idempotent.
func (v *Vault) InitTokenIntegration(ctx context.Context) ([]string, error) {
	var changes []string
	note := func(s string) {
		changes = append(changes, s)
		v.log.Info("vault: init", "change", s)
	}
	rules := nomadServerPolicy()
	old, err := v.client.Sys().GetPolicyWithContext(ctx, PolicyNomadServer)
	if err != nil {
		return nil, v.wrapErr("read policy "+PolicyNomadServer, err)
	}
	if old != rules {
		if err := v.client.Sys().PutPolicyWithContext(ctx, PolicyNomadServer, rules); err != nil {
			return nil, v.wrapErr("write policy "+PolicyNomadServer, err)
		}
		if old == "" {
			note("created policy " + PolicyNomadServer)
		} else {
			note("updated policy " + PolicyNomadServer)
		}
	}
	err = v.ensure(ctx, "auth/token/roles/"+NomadClusterRole, "token role "+NomadClusterRole, map[string]any{
		"allowed_policies":       []string{PolicyConcourseDB, PolicyConcourseWeb, PolicyConcourseWorker},
		"disallowed_policies":    []string{PolicyNomadServer},
		"orphan":                 true,
		"renewable":              true,
		"token_period":           int(nomadServerTokenPeriod.Seconds()),
		"token_explicit_max_ttl": 0,
	}, note)
	return changes, err
}

// NomadServerToken mints the token the Nomad servers hold for the token
// integration: an orphan, periodic token with the nomad-server policy
// (`vault token create -policy nomad-server -period 72h -orphan`). It
// returns the token, for the caller to write to a 0600 file and nowhere
// else, and its accessor, which may be shown.
func (v *Vault) NomadServerToken(ctx context.Context) (token, accessor string, err error) {
	s, err := v.client.Auth().Token().CreateOrphanWithContext(ctx, &vaultapi.TokenCreateRequest{
		Policies:    []string{PolicyNomadServer},
		Period:      nomadServerTokenPeriod.String(),
		DisplayName: "nomad-servers",
		Metadata:    map[string]string{"created_by": "bootstrapd"},
	})
	if err != nil {
		return "", "", v.wrapErr("create the Nomad servers' token (auth/token/create-orphan)", err)
	}
	if s == nil || s.Auth == nil || s.Auth.ClientToken == "" {
		return "", "", fmt.Errorf("vault %s: the Nomad servers' token came back empty", v.cfg.Addr)
	}
	v.log.Info("vault: minted the Nomad servers' token", "accessor", s.Auth.Accessor)
	return s.Auth.ClientToken, s.Auth.Accessor, nil
}
