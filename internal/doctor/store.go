package doctor

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/bootstrapd/bootstrapd/internal/daemon"
	"github.com/bootstrapd/bootstrapd/internal/store"
)

// CheckStore asks the site's etcd, when it has a store block, whether it
// has a quorum (without one, no lease is given and no node enrolled), and
// which instances serve from it, lead, and sync the site's router.
func CheckStore(e *Env) []Result {
	if e.Site.Store == nil || e.Site.Store.Etcd == nil {
		return nil
	}
	eps := strings.Join(e.Site.Store.Etcd.Endpoints, ",")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	db, err := daemon.OpenStore(ctx, e.Site, slog.New(slog.DiscardHandler))
	if err != nil {
		return []Result{{Name: "store", Detail: oneLine(err.Error()) + "; no new leases or enrollments until it has one (valid leases are renewed from memory)",
			Fix: "start the etcd members that are down until a majority runs (`etcdctl --endpoints " + eps + " endpoint health` says which), and check the store block's endpoints and TLS files"}}
	}
	defer db.Close()
	etcd := db.(*store.Etcd)
	st, err := etcd.Status(ctx)
	if err != nil {
		return []Result{{Name: "store", Detail: "etcd " + eps + ": " + oneLine(err.Error()) + "; no new leases or enrollments until it has one (valid leases are renewed from memory)",
			Fix: "start the etcd members that are down until a majority runs (`etcdctl --endpoints " + eps + " endpoint health` says which)"}}
	}
	leader := st.Leader
	if leader == "" {
		leader = "none yet"
	}
	instances := strings.Join(st.Instances, ", ")
	if instances == "" {
		instances = "none"
	}
	detail := fmt.Sprintf("etcd %s%s: %d members, quorum; instances serving: %s; leader: %s", eps, e.Site.Store.Etcd.Prefix, st.Members, instances, leader)
	if r := e.Site.Router; r != nil {
		syncer := etcd.RouterSyncer(ctx, r.API)
		if syncer == "" {
			syncer = "none yet"
		}
		detail += "; router " + r.API + " synced by: " + syncer
	}
	return []Result{{Name: "store", OK: true, Detail: detail}}
}
