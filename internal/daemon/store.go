package daemon

import (
	"context"
	"log/slog"
	"path/filepath"

	"github.com/bootstrapd/bootstrapd/internal/config"
	"github.com/bootstrapd/bootstrapd/internal/inventory"
	"github.com/bootstrapd/bootstrapd/internal/store"
)

// Store is the inventory's store, which its opener closes.
type Store interface {
	inventory.Store
	Close() error
	Path() string
}

// OpenStore opens the store the site names: its etcd cluster when it has
// a store block, else the bbolt file in state_dir.
func OpenStore(ctx context.Context, site *config.Site, log *slog.Logger) (Store, error) {
	if site.Store == nil || site.Store.Etcd == nil {
		return store.Open(filepath.Join(site.StateDir, StoreFile))
	}
	e := site.Store.Etcd
	return store.OpenEtcd(ctx, store.EtcdConfig{Endpoints: e.Endpoints, CAFile: e.CAFile, CertFile: e.CertFile, KeyFile: e.KeyFile,
		Prefix: e.Prefix, Timeout: e.TimeoutD}, log.With("svc", "etcd"))
}
