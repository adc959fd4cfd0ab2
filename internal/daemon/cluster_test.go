package daemon

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/bootstrapd/bootstrapd/internal/cluster"
	"github.com/bootstrapd/bootstrapd/internal/cluster/clustertest"
	"github.com/bootstrapd/bootstrapd/internal/config"
	"github.com/bootstrapd/bootstrapd/internal/inventory"
	"github.com/bootstrapd/bootstrapd/internal/inventory/inventorytest"
)

type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestVoidRevokesTheBundle: voiding a bundle claimed twice, against a real
// Vault (1.14.1): the node token its wrapped token unwraps to is revoked,
// the worker key deleted, and the node's history says so; nothing secret
// is logged.
func TestVoidRevokesTheBundle(t *testing.T) {
	ctx := context.Background()
	srv := clustertest.StartVault(t)
	logs := &logBuf{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	v, err := cluster.NewVault(cluster.VaultConfig{Addr: srv.Addr, Token: srv.RootToken}, log)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Init(ctx); err != nil {
		t.Fatal(err)
	}
	inv := inventorytest.New(t, log)
	const mac = "52:54:00:00:00:01"
	if _, err := inv.Enroll(ctx, inventory.EnrollRequest{MAC: mac, Hostname: "n1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := v.PutWorkerKey(ctx, "n1"); err != nil {
		t.Fatal(err)
	}
	tok, err := v.NodeToken(ctx, "n1")
	if err != nil {
		t.Fatal(err)
	}
	// What the thief did with the bundle: unwrapped the node token.
	thief, _ := vaultapi.NewClient(&vaultapi.Config{Address: srv.Addr})
	thief.SetToken("")
	sec, err := thief.Logical().Unwrap(tok.Wrapped)
	if err != nil {
		t.Fatal(err)
	}
	thief.SetToken(sec.Auth.ClientToken)
	if _, err := thief.Auth().Token().LookupSelf(); err != nil {
		t.Fatalf("the stolen token does not work before the void: %v", err)
	}

	ops := &clusterOps{Cluster: Cluster{Vault: v}, site: &config.Site{}, inv: inv, log: log}
	n, _ := inv.Node(mac)
	n.VaultAccessor = tok.Accessor
	ops.Void(ctx, n)

	if _, err := thief.Auth().Token().LookupSelf(); err == nil {
		t.Error("the stolen node token still works after the void")
	}
	root, _ := vaultapi.NewClient(&vaultapi.Config{Address: srv.Addr})
	root.SetToken(srv.RootToken)
	if s, _ := root.Logical().Read("kv/metadata/concourse/workers/n1"); s != nil {
		t.Error("the worker key outlived the void")
	}
	got, _ := inv.Node(mac)
	if last := got.History[len(got.History)-1].Cause; !strings.Contains(last, "join bundle voided") {
		t.Errorf("last event %q", last)
	}
	for _, secret := range []string{srv.RootToken, tok.Wrapped, sec.Auth.ClientToken} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("a secret (%.6s...) is in the log", secret)
		}
	}
}

// TestArrangeWithoutNomadAPI: a site that names no Nomad API arranges
// itself from its own settings, and asks for no introduction tokens.
func TestArrangeWithoutNomadAPI(t *testing.T) {
	for _, integration := range []string{"", cluster.VaultToken, cluster.VaultWorkloadIdentity} {
		a, err := (Cluster{}).Arrange(context.Background(), &config.Nomad{VaultIntegration: integration})
		if err != nil || a.VaultIntegration != integration || a.Introduction || a.Why == "" {
			t.Errorf("Arrange(%q) = %+v, %v", integration, a, err)
		}
	}
}

// TestArrangeFromTheServers: with an API, the servers' version decides,
// and a site's choice they cannot honour is an error naming the address
// and the version. The servers are clustertest.NomadAPI, a stand-in
// answering as Nomad's v1.11.x API documentation describes.
func TestArrangeFromTheServers(t *testing.T) {
	for _, tt := range []struct {
		version, integration string
		want                 string // VaultIntegration, or part of the error
		intro                bool
	}{
		{"1.11.3", "", cluster.VaultWorkloadIdentity, true},
		{"1.6.1", "", cluster.VaultToken, false},
		{"1.10.0", cluster.VaultToken, "removed the token integration", false},
	} {
		fake := clustertest.StartNomadAPI(t, clustertest.NomadAPIOptions{Version: tt.version})
		n, err := cluster.NewNomad(cluster.NomadConfig{Addr: fake.Addr}, nil)
		if err != nil {
			t.Fatal(err)
		}
		a, err := (Cluster{Nomad: n}).Arrange(context.Background(), &config.Nomad{Address: fake.Addr, VaultIntegration: tt.integration})
		switch {
		case tt.want == cluster.VaultToken || tt.want == cluster.VaultWorkloadIdentity:
			if err != nil || a.VaultIntegration != tt.want || a.Introduction != tt.intro {
				t.Errorf("%s: %+v, %v", tt.version, a, err)
			}
		case err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), fake.Addr):
			t.Errorf("%s with %q: %v, want an error naming %s and %q", tt.version, tt.integration, err, fake.Addr, tt.want)
		}
	}
}
