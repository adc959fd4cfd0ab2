package daemon

import (
	"context"
	"errors"
	"fmt"
	"strings"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/bootstrapd/bootstrapd/internal/bmc"
	"github.com/bootstrapd/bootstrapd/internal/config"
	"github.com/bootstrapd/bootstrapd/internal/inventory"
)

// credentials finds a BMC's credentials from its node's reference: the
// site's bmc block by default, a file (user:password, mode 0600), or a
// Vault KV v2 secret (user and password) read with bootstrapd's own token.
// They are read at each action, so a changed password takes effect at once
// and none is kept in memory longer than one login.
type credentials struct {
	site  *config.Site
	vault *vaultapi.Client // nil without a vault block
}

func newCredentials(site *config.Site) (*credentials, error) {
	c := &credentials{site: site}
	if v := site.Vault; v != nil {
		vc := vaultapi.DefaultConfig()
		if vc.Error != nil {
			return nil, fmt.Errorf("vault: client settings from VAULT_* environment: %w", vc.Error)
		}
		vc.Address = v.Address
		vc.AgentAddress = "" // VAULT_AGENT_ADDR would silently replace the site's address
		if v.CAFile != "" {
			if err := vc.ConfigureTLS(&vaultapi.TLSConfig{CACert: v.CAFile}); err != nil {
				return nil, fmt.Errorf("vault: CA certificate %s: %w", v.CAFile, err)
			}
		}
		client, err := vaultapi.NewClient(vc)
		if err != nil {
			return nil, fmt.Errorf("vault: client for %s: %w", v.Address, err)
		}
		client.SetToken(v.Token())
		c.vault = client
	}
	return c, nil
}

// get returns the credentials for b. Errors name the reference and say
// what to put there, never a password.
func (c *credentials) get(ctx context.Context, b inventory.BMC) (bmc.Credentials, error) {
	ref := b.Credentials
	switch {
	case ref == "":
		if c.site.BMC.User == "" {
			return bmc.Credentials{}, fmt.Errorf("no credentials for it: set user and password_file in the site's bmc block (%s), or give the node its own with `bootstrapd node bmc <node> %s -bmc-credentials file:/etc/bootstrapd/bmc/<node>`", c.site.Path, b.URL)
		}
		return bmc.Credentials{User: c.site.BMC.User, Password: c.site.BMC.Password()}, nil
	case strings.HasPrefix(ref, inventory.CredsFile):
		return fileCredentials(strings.TrimPrefix(ref, inventory.CredsFile))
	case strings.HasPrefix(ref, inventory.CredsVault):
		return c.fromVault(ctx, strings.TrimPrefix(ref, inventory.CredsVault))
	}
	return bmc.Credentials{}, fmt.Errorf("credentials %q are not file:/path or vault:<mount>/<path>", ref)
}

// fileCredentials reads user:password from the first line of a file that
// only its owner can read (the password may hold colons; the user may not).
func fileCredentials(path string) (bmc.Credentials, error) {
	v, err := config.ReadSecret(path)
	if err != nil {
		return bmc.Credentials{}, fmt.Errorf("credentials file %v", err)
	}
	line, _, _ := strings.Cut(v, "\n")
	user, pass, ok := strings.Cut(strings.TrimSpace(line), ":")
	if !ok || user == "" || pass == "" {
		return bmc.Credentials{}, fmt.Errorf("credentials file %s does not hold user:password on its first line", path)
	}
	return bmc.Credentials{User: user, Password: pass}, nil
}

// fromVault reads a KV v2 secret at mount/path with fields user (or
// username) and password.
func (c *credentials) fromVault(ctx context.Context, ref string) (bmc.Credentials, error) {
	if c.vault == nil {
		return bmc.Credentials{}, fmt.Errorf("credentials vault:%s, but the site has no vault block: add one (README: Vault, Nomad and Concourse) or use a file:/path reference", ref)
	}
	mount, path, _ := strings.Cut(ref, "/")
	s, err := c.vault.KVv2(mount).Get(ctx, path)
	if err != nil {
		if errors.Is(err, vaultapi.ErrSecretNotFound) {
			return bmc.Credentials{}, fmt.Errorf("credentials vault:%s: no such secret in KV v2 mount %s; write it with `vault kv put -mount=%s %s user=... password=...`", ref, mount, mount, path)
		}
		return bmc.Credentials{}, fmt.Errorf("credentials vault:%s: %s", ref, vaultCauseOf(err))
	}
	user, _ := s.Data["user"].(string)
	if user == "" {
		user, _ = s.Data["username"].(string)
	}
	pass, _ := s.Data["password"].(string)
	if user == "" || pass == "" {
		return bmc.Credentials{}, fmt.Errorf("credentials vault:%s have no user and password fields; write them with `vault kv put -mount=%s %s user=... password=...`", ref, mount, path)
	}
	return bmc.Credentials{User: user, Password: pass}, nil
}

// vaultCauseOf is a Vault error on one line, without the request URL.
func vaultCauseOf(err error) string {
	var re *vaultapi.ResponseError
	if errors.As(err, &re) {
		return fmt.Sprintf("Vault answered HTTP %d: %s", re.StatusCode, strings.Join(re.Errors, "; "))
	}
	return err.Error()
}
