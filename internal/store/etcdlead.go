package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// Instances sharing a store find each other through keys bound to etcd
// sessions: a session is a lease that the instance keeps alive, and that
// etcd ends (deleting its keys) when the instance stops renewing it for
// SessionTTL: killed, cut off, or without a quorum to renew it with. These
// keys start with '_' and are not the follower's business.
const (
	membersDir = "_members/"
	leaderDir  = "_leader"
	routersDir = "_routers/" // an election per router
)

// SessionTTL is how long a silent instance keeps its leadership and its
// share of a segment. It bounds how long a dead instance's work waits for
// another to take it (that, plus a watch event).
const SessionTTL = 3 * time.Second

// Lead runs fn whenever this instance (name) is the leader: one instance
// at a time, chosen through an etcd election. fn's context ends when the
// leadership does (the session lapsed, or ctx ended); Lead then campaigns
// again until ctx ends. fn must return when its context ends.
func (e *Etcd) Lead(ctx context.Context, name string, fn func(context.Context)) {
	e.campaign(ctx, e.prefix+leaderDir, "leading: cluster watch, retire teardown and deadlines run here", name, fn)
}

// LeadRouter is Lead for one router (named by its API address): of the
// instances whose sites name that router, one at a time syncs it. Racks
// with routers of their own each have their router kept by one of their
// own instances, whichever leads the rest.
func (e *Etcd) LeadRouter(ctx context.Context, router, name string, fn func(context.Context)) {
	e.campaign(ctx, e.routerElection(router), "syncing the router from here", name, fn)
}

// RouterSyncer says which instance syncs router ("" when none does).
func (e *Etcd) RouterSyncer(ctx context.Context, router string) string {
	ctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	return e.elected(ctx, e.routerElection(router))
}

func (e *Etcd) routerElection(router string) string {
	return e.prefix + routersDir + strings.ReplaceAll(router, "/", "_")
}

// elected is the name the leader of an election campaigned with ("" when
// none leads, or etcd cannot say).
func (e *Etcd) elected(ctx context.Context, election string) string {
	resp, err := e.cli.Get(ctx, election+"/", clientv3.WithFirstCreate()...)
	if err != nil || len(resp.Kvs) == 0 {
		return ""
	}
	return string(resp.Kvs[0].Value)
}

func (e *Etcd) campaign(ctx context.Context, election, msg, name string, fn func(context.Context)) {
	for ctx.Err() == nil {
		err := e.session(ctx, func(s *concurrency.Session) error {
			el := concurrency.NewElection(s, election)
			if err := el.Campaign(ctx, name); err != nil {
				return err
			}
			e.log.Info(msg, "instance", name)
			lctx, cancel := context.WithCancel(ctx)
			done := make(chan struct{})
			go func() {
				defer close(done)
				fn(lctx)
			}()
			select {
			case <-s.Done():
				e.log.Warn("leadership lost: the etcd session lapsed; another instance takes over", "instance", name, "election", strings.TrimPrefix(election, e.prefix))
			case <-ctx.Done():
			}
			cancel()
			<-done
			// Hand over at once when stopping, rather than after the TTL.
			rctx, rcancel := context.WithTimeout(context.Background(), time.Second)
			defer rcancel()
			el.Resign(rctx)
			return nil
		})
		if err != nil && ctx.Err() == nil {
			e.log.Warn("cannot campaign for leadership; trying again", "instance", name, "election", strings.TrimPrefix(election, e.prefix), "err", err)
			sleep(ctx, time.Second)
		}
	}
}

// Members keeps this instance (name) listed in group for as long as ctx
// lasts, and calls fn with the names of every instance listed there, this
// one included and sorted, each time they change. While etcd cannot be
// reached fn is not called: the last list stands.
func (e *Etcd) Members(ctx context.Context, group, name string, fn func([]string)) {
	// A group is a key segment (a subnet's '/' would make two).
	dir := e.prefix + membersDir + strings.ReplaceAll(group, "/", "_") + "/"
	for ctx.Err() == nil {
		err := e.session(ctx, func(s *concurrency.Session) error {
			if _, err := e.cli.Put(ctx, dir+name, name, clientv3.WithLease(s.Lease())); err != nil {
				return err
			}
			resp, err := e.cli.Get(ctx, dir, clientv3.WithPrefix(), clientv3.WithKeysOnly())
			if err != nil {
				return err
			}
			names := map[string]bool{}
			for _, kv := range resp.Kvs {
				names[strings.TrimPrefix(string(kv.Key), dir)] = true
			}
			tell := func() {
				list := make([]string, 0, len(names))
				for n := range names {
					list = append(list, n)
				}
				slices.Sort(list)
				fn(list)
			}
			tell()
			wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
			defer cancel()
			ch := e.cli.Watch(wctx, dir, clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1))
			for {
				select {
				case <-s.Done():
					return errors.New("session lapsed")
				case w, ok := <-ch:
					if !ok || w.Err() != nil {
						return errors.New("watch ended")
					}
					for _, ev := range w.Events {
						n := strings.TrimPrefix(string(ev.Kv.Key), dir)
						names[n] = ev.Type == clientv3.EventTypePut
						if !names[n] {
							delete(names, n)
						}
					}
					tell()
				}
			}
		})
		if ctx.Err() == nil {
			e.log.Warn("lost touch with the other instances on this segment; joining again", "group", group, "err", err)
			sleep(ctx, 500*time.Millisecond)
		}
	}
}

// session runs fn with a new session, closed (its keys deleted) after.
func (e *Etcd) session(ctx context.Context, fn func(*concurrency.Session) error) error {
	s, err := concurrency.NewSession(e.cli, concurrency.WithTTL(int(SessionTTL/time.Second)), concurrency.WithContext(ctx))
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		e.cli.Revoke(cctx, s.Lease())
		s.Orphan()
	}()
	return fn(s)
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// Status is what doctor says of a shared store.
type Status struct {
	Members   int      // etcd members in the cluster
	Instances []string // bootstrapd instances serving from the store
	Leader    string   // the instance that leads ("" when none does)
}

// Status reads the cluster's membership, checks that it has a quorum (a
// linearizable read needs one, as a write does), and lists the instances
// and the leader.
func (e *Etcd) Status(ctx context.Context) (Status, error) {
	ctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	var st Status
	ml, err := e.cli.MemberList(ctx)
	if err != nil {
		return st, unavailable(err)
	}
	st.Members = len(ml.Members)
	resp, err := e.cli.Get(ctx, e.prefix+membersDir, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return st, fmt.Errorf("%w: no quorum among its %d members (%w)", ErrUnavailable, st.Members, err)
	}
	for _, kv := range resp.Kvs {
		k := string(kv.Key[len(e.prefix+membersDir):])
		if _, name, ok := strings.Cut(k, "/"); ok && !slices.Contains(st.Instances, name) {
			st.Instances = append(st.Instances, name)
		}
	}
	slices.Sort(st.Instances)
	st.Leader = e.elected(ctx, e.prefix+leaderDir)
	return st, nil
}
