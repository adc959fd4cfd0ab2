package store

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Errors from a shared store (Etcd). After either, the store reads the
// records the write touched again and tells the follower (Follow) of them,
// so that what the writer holds in memory is what is stored.
var (
	// ErrConflict: a record was not the version the write was decided
	// from (Entry.Rev): another instance changed it first.
	ErrConflict = errors.New("changed by another instance at the same time")
	// ErrUnavailable: etcd did not answer in time, or has no quorum. The
	// write may or may not have been committed.
	ErrUnavailable = errors.New("etcd is unavailable")
)

// EtcdConfig is where the shared store is.
type EtcdConfig struct {
	Endpoints                 []string
	CAFile, CertFile, KeyFile string // TLS, as etcd's own --cacert, --cert, --key
	Prefix                    string // every key starts with it; default "/bootstrapd/"
	Timeout                   time.Duration
}

// DefaultEtcdPrefix is where the keys go when the site does not say.
const DefaultEtcdPrefix = "/bootstrapd/"

const (
	// maxTxnOps is etcd's default --max-txn-ops: a transaction may have
	// this many compares, and this many operations in each branch.
	maxTxnOps = 128
	// defaultEtcdTimeout bounds one request: a write that takes longer
	// fails with ErrUnavailable (etcd without quorum does not answer).
	defaultEtcdTimeout = 5 * time.Second
	// seqDir holds each numbered bucket's counter: prefix + seqDir + bucket.
	seqDir = "_seq/"
)

// Etcd is the store as a key prefix in an etcd cluster, shared by several
// bootstrapd instances: key <prefix><bucket>/<key>, the value as it is.
//
// Each instance keeps what it needs in memory and decides from it; a write
// says which version of each record it was decided from (Entry.Rev) and is
// one etcd transaction that commits only if they are still current. So two
// instances can never both turn one address into a lease, whatever their
// memories held: the second write fails with ErrConflict. Numbered entries
// are numbered from a counter key compared in the same transaction: gap-free
// and in commit order across instances. What other instances write reaches
// the follower through a watch.
//
// One goroutine commits, taking whatever writes are waiting as one
// transaction (as DB's committer does): a write is not answered until a
// quorum has it.
type Etcd struct {
	cli     *clientv3.Client
	prefix  string
	timeout time.Duration
	log     *slog.Logger

	ctx       context.Context // ends the watch, re-reads and probes at Close
	cancel    context.CancelFunc
	writes    chan write    // closed by Close, after which the committer ends
	committed chan struct{} // closed when the committer has ended
	wg        sync.WaitGroup

	// closeMu makes Close and sends on writes exclusive.
	closeMu sync.RWMutex
	closed  bool
	closing atomic.Bool // Close is waiting for the committer

	// mu guards what follows. The committer holds it across a
	// transaction, so that the watch never sees one of this instance's
	// revisions before it is known to be this instance's.
	mu        sync.Mutex
	own       map[int64]bool   // revisions committed here that the watch has not passed
	known     map[string]int64 // key -> revision of this instance's last write (Own); 0 after it failed
	seen      map[string]int64 // key -> newest revision the follower was told of, or written here
	seqs      map[string]seq   // numbered bucket -> its counter
	snap      int64            // the revision Range reads until Follow
	follow    func([]Change)
	unread    map[string]bool // keys to read again (after a write whose outcome is unknown)
	outMu     sync.Mutex      // guards outbox
	outbox    [][]Change      // told, not yet delivered
	outReady  chan struct{}   // a send wakes deliver
	rereading bool            // rereadLoop is running

	health    sync.Mutex
	healthErr error // nil while etcd answers writes
	failures  int   // requests failed in a row
}

// seq is a numbered bucket's counter: its last number and the counter
// key's revision.
type seq struct {
	n   uint64
	rev int64
}

// OpenEtcd connects to the cluster in c and checks that it answers.
func OpenEtcd(ctx context.Context, c EtcdConfig, log *slog.Logger) (*Etcd, error) {
	if len(c.Endpoints) == 0 {
		return nil, errors.New("etcd: no endpoints")
	}
	if c.Prefix == "" {
		c.Prefix = DefaultEtcdPrefix
	}
	if c.Timeout == 0 {
		c.Timeout = defaultEtcdTimeout
	}
	cfg := clientv3.Config{Endpoints: c.Endpoints, DialTimeout: c.Timeout, Logger: zap.NewNop(),
		// A connection that stops answering (a member in a partition) is
		// given up within seconds, so requests move to another member.
		DialKeepAliveTime: 2 * time.Second, DialKeepAliveTimeout: 2 * time.Second}
	if c.CAFile != "" || c.CertFile != "" || c.KeyFile != "" {
		tlsc, err := transport.TLSInfo{TrustedCAFile: c.CAFile, CertFile: c.CertFile, KeyFile: c.KeyFile}.ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("etcd TLS (ca_file %q, cert_file %q, key_file %q): %w", c.CAFile, c.CertFile, c.KeyFile, err)
		}
		cfg.TLS = tlsc
	}
	cli, err := clientv3.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("etcd %s: %w", strings.Join(c.Endpoints, ","), err)
	}
	e := &Etcd{cli: cli, prefix: c.Prefix, timeout: c.Timeout, log: log, writes: make(chan write, maxGroup), committed: make(chan struct{}), outReady: make(chan struct{}, 1),
		own: map[int64]bool{}, known: map[string]int64{}, seen: map[string]int64{}, seqs: map[string]seq{}, unread: map[string]bool{}}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	// Where Follow's watch starts, and the counters.
	rctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	resp, err := cli.Get(rctx, e.prefix+seqDir, clientv3.WithPrefix())
	if err != nil {
		defer cli.Close()
		// A member that answers a read of its own copy is up: the
		// cluster it is in has no quorum.
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		if _, serr := cli.Get(sctx, e.prefix+seqDir, clientv3.WithSerializable()); serr == nil {
			return nil, fmt.Errorf("etcd %s: %w: members answer, but there is no quorum among them (%w)", strings.Join(c.Endpoints, ","), ErrUnavailable, err)
		}
		if cfg.TLS != nil {
			// gRPC retries a refused handshake until the deadline and
			// says only that: say what the member said.
			if terr := tlsProbe(ctx, c.Endpoints[0], cfg.TLS); terr != nil {
				return nil, fmt.Errorf("etcd %s: %w: %w (check the store block's ca_file, cert_file and key_file)", strings.Join(c.Endpoints, ","), ErrUnavailable, terr)
			}
		}
		return nil, fmt.Errorf("etcd %s: %w: no member answers (%w)", strings.Join(c.Endpoints, ","), ErrUnavailable, err)
	}
	e.snap = resp.Header.Revision
	for _, kv := range resp.Kvs {
		n, _ := strconv.ParseUint(string(kv.Value), 10, 64)
		e.seqs[strings.TrimPrefix(string(kv.Key), e.prefix+seqDir)] = seq{n: n, rev: kv.ModRevision}
	}
	go e.commit()
	e.wg.Add(1)
	go e.probe()
	return e, nil
}

// tlsProbe makes one TLS connection to endpoint as the client would and
// returns what went wrong: a handshake refused, or a certificate the member
// asked for and rejected (with TLS 1.3 that comes after the handshake, so
// it reads briefly). nil when the member took the connection.
func tlsProbe(ctx context.Context, endpoint string, conf *tls.Config) error {
	u, err := url.Parse(endpoint)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	conf = conf.Clone()
	conf.NextProtos = []string{"h2"}
	if conf.ServerName == "" {
		conf.ServerName = u.Hostname()
	}
	conn, err := (&tls.Dialer{Config: conf}).DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return fmt.Errorf("TLS to %s: %w", u.Host, err)
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	if _, err := conn.Read(make([]byte, 1)); err != nil {
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			return nil
		}
		return fmt.Errorf("TLS to %s: %w", u.Host, err)
	}
	return nil
}

// Path says where the store is, for messages.
func (e *Etcd) Path() string { return "etcd:" + e.prefix }

func (e *Etcd) key(bucket, key string) string { return e.prefix + bucket + "/" + key }

// split is key's inverse; ok is false for the store's own keys (counters,
// members, the leader), which start with '_'.
func (e *Etcd) split(k []byte) (bucket, key string, ok bool) {
	s := strings.TrimPrefix(string(k), e.prefix)
	if strings.HasPrefix(s, "_") {
		return "", "", false
	}
	bucket, key, ok = strings.Cut(s, "/")
	return bucket, key, ok
}

// Range reads bucket as it is now, a page at a time (every page at the
// first one's revision). Follow's watch starts from Open's revision: what
// changed since is told again, and the follower ends up holding the
// latest.
func (e *Etcd) Range(bucket, from string, fn func(key string, value []byte, rev int64) error) error {
	var rev int64
	start, end := e.key(bucket, from), clientv3.GetPrefixRangeEnd(e.key(bucket, ""))
	for {
		ctx, cancel := context.WithTimeout(e.ctx, e.timeout)
		resp, err := e.cli.Get(ctx, start, clientv3.WithRange(end), clientv3.WithLimit(1000), clientv3.WithRev(rev))
		cancel()
		if err != nil {
			return fmt.Errorf("read %s from etcd: %w", bucket, unavailable(err))
		}
		rev = resp.Header.Revision
		for _, kv := range resp.Kvs {
			_, key, _ := e.split(kv.Key)
			if err := fn(key, kv.Value, kv.ModRevision); err != nil {
				return err
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return nil
		}
		start = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// Follow starts telling fn of every numbered entry (this instance's and
// others') and every record other instances write, in revision order, on
// one goroutine, from the snapshot Range read: fn must not write to the
// store and should be quick. Call it once, after loading.
func (e *Etcd) Follow(fn func([]Change)) {
	e.mu.Lock()
	e.follow = fn
	from := e.snap + 1
	e.mu.Unlock()
	e.wg.Add(2)
	go e.deliver(fn)
	go e.watch(from)
}

// watch applies the watch from revision from until Close. When etcd has
// compacted past what it needs, it reads every record again.
func (e *Etcd) watch(from int64) {
	defer e.wg.Done()
	for e.ctx.Err() == nil {
		ctx, cancel := context.WithCancel(clientv3.WithRequireLeader(e.ctx))
		ch := e.cli.Watch(ctx, e.prefix, clientv3.WithPrefix(), clientv3.WithRev(from), clientv3.WithProgressNotify())
		for resp := range ch {
			if err := resp.Err(); err != nil {
				if resp.CompactRevision != 0 {
					e.log.Warn("etcd compacted past this instance's watch; reading every record again", "from", from, "compacted", resp.CompactRevision)
					from = e.reread(resp.CompactRevision)
				} else if e.ctx.Err() == nil {
					e.log.Warn("etcd watch interrupted; resuming", "from", from, "err", err)
				}
				break
			}
			if len(resp.Events) > 0 {
				e.apply(resp.Events)
				from = resp.Events[len(resp.Events)-1].Kv.ModRevision + 1
			}
		}
		cancel()
		sleep(e.ctx, 500*time.Millisecond)
	}
}

// apply tells the follower of what the watch brought that it has not been
// told of.
func (e *Etcd) apply(evs []*clientv3.Event) {
	e.mu.Lock()
	// Counters first: a transaction's counter comes after the entries it
	// numbered, and a bucket is known to be numbered by its counter.
	for _, ev := range evs {
		if ks := string(ev.Kv.Key); strings.HasPrefix(ks, e.prefix+seqDir) && ev.Type == mvccpb.PUT {
			n, _ := strconv.ParseUint(string(ev.Kv.Value), 10, 64)
			b := strings.TrimPrefix(ks, e.prefix+seqDir)
			if cur := e.seqs[b]; ev.Kv.ModRevision > cur.rev {
				e.seqs[b] = seq{n: n, rev: ev.Kv.ModRevision}
			}
		}
	}
	var out []Change
	for _, ev := range evs {
		rev := ev.Kv.ModRevision
		bucket, key, ok := e.split(ev.Kv.Key)
		if !ok {
			continue
		}
		c := Change{Bucket: bucket, Key: key, Rev: rev}
		if ev.Type == mvccpb.PUT {
			c.Value = ev.Kv.Value
		}
		if _, numbered := e.seqs[bucket]; numbered && len(key) == 8 {
			if c.Value != nil {
				c.Seq = seqOf(key)
				out = append(out, c)
			}
			continue
		}
		k := key2(bucket, key)
		if e.own[rev] || rev <= e.seen[k] {
			continue
		}
		if c.Value == nil {
			// Gone: nothing of it is kept, so that keys that come and go
			// (discovered MACs) do not pile up here.
			delete(e.seen, k)
			delete(e.known, k)
		} else {
			e.seen[k] = rev
		}
		out = append(out, c)
	}
	if len(evs) > 0 {
		last := evs[len(evs)-1].Kv.ModRevision
		for r := range e.own {
			if r <= last {
				delete(e.own, r)
			}
		}
	}
	e.tell(out)
	e.mu.Unlock()
}

// tell queues cs for the follower; callers hold mu, so that what the
// watch, the committer and the re-reader tell arrives in the order they
// decided it (by seen). The follower is called on a goroutine of its own
// (deliver): it takes the inventory's lock, whose holder may be waiting
// for the committer to take a write.
func (e *Etcd) tell(cs []Change) {
	if len(cs) == 0 || e.follow == nil {
		return
	}
	e.outMu.Lock()
	e.outbox = append(e.outbox, cs)
	e.outMu.Unlock()
	select {
	case e.outReady <- struct{}{}:
	default:
	}
}

// deliver calls the follower with what tell queued, in order, until Close.
func (e *Etcd) deliver(fn func([]Change)) {
	defer e.wg.Done()
	for {
		select {
		case <-e.ctx.Done():
			return
		case <-e.outReady:
		}
		e.outMu.Lock()
		batches := e.outbox
		e.outbox = nil
		e.outMu.Unlock()
		for _, cs := range batches {
			fn(cs)
		}
	}
}

func key2(bucket, key string) string { return bucket + "/" + key }

func seqOf(key string) uint64 {
	var n uint64
	for i := range 8 {
		n = n<<8 | uint64(key[i])
	}
	return n
}

// reread reads every record again after the watch lost its place, tells
// the follower of all of them, and returns the revision to watch from.
// Numbered entries committed meanwhile are not told of: they are in the
// store, for whoever asks for them by number.
func (e *Etcd) reread(compacted int64) int64 {
	for e.ctx.Err() == nil {
		ctx, cancel := context.WithTimeout(e.ctx, e.timeout)
		resp, err := e.cli.Get(ctx, e.prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly(), clientv3.WithLimit(1))
		cancel()
		if err == nil {
			rev := resp.Header.Revision
			var out []Change
			e.mu.Lock()
			numbered := map[string]bool{}
			for b := range e.seqs {
				numbered[b] = true
			}
			e.mu.Unlock()
			err = e.rangeAll(rev, numbered, func(c Change) { out = append(out, c) })
			if err == nil {
				e.mu.Lock()
				for _, c := range out {
					e.seen[key2(c.Bucket, c.Key)] = max(e.seen[key2(c.Bucket, c.Key)], c.Rev)
				}
				e.tell(out)
				e.mu.Unlock()
				return rev + 1
			}
		}
		e.log.Warn("cannot read etcd again after compaction; retrying", "err", err)
		sleep(e.ctx, time.Second)
	}
	return compacted
}

// rangeAll calls fn for every record at revision rev, but numbered ones.
func (e *Etcd) rangeAll(rev int64, numbered map[string]bool, fn func(Change)) error {
	start, end := e.prefix, clientv3.GetPrefixRangeEnd(e.prefix)
	for {
		ctx, cancel := context.WithTimeout(e.ctx, e.timeout)
		resp, err := e.cli.Get(ctx, start, clientv3.WithRange(end), clientv3.WithLimit(1000), clientv3.WithRev(rev))
		cancel()
		if err != nil {
			return err
		}
		for _, kv := range resp.Kvs {
			if b, k, ok := e.split(kv.Key); ok && !(numbered[b] && len(k) == 8) {
				fn(Change{Bucket: b, Key: k, Value: kv.Value, Rev: kv.ModRevision})
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return nil
		}
		start = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// unavailable marks err as ErrUnavailable, keeping etcd's words.
func unavailable(err error) error {
	if errors.Is(err, ErrUnavailable) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// send hands w to the committer. After Close it fails.
func (e *Etcd) send(w write) error {
	e.closeMu.RLock()
	defer e.closeMu.RUnlock()
	if e.closed {
		return errors.New("store is closed")
	}
	e.writes <- w
	return nil
}

// PutAllThen sends entries as one transaction; then is called once a
// quorum has it, or with why not (ErrConflict, ErrUnavailable, or a
// refusal of the entries). then runs on the committer goroutine: it must
// be quick and must not write to the store.
func (e *Etcd) PutAllThen(then func(error), entries ...Entry) error {
	w, err := e.encode(entries)
	if err != nil {
		return err
	}
	w.then = then
	return e.send(w)
}

// PutJSONThen is PutAllThen for one value that is already JSON.
func (e *Etcd) PutJSONThen(bucket, key string, data []byte, rev int64, then func(error)) error {
	c := change{bucket: bucket, key: key, value: data, rev: rev}
	if err := c.check(); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return e.send(write{changes: []change{c}, then: then})
}

// PutJSONNow is PutJSONThen: a transaction waits for the network however
// it is sent.
func (e *Etcd) PutJSONNow(bucket, key string, data []byte, rev int64, then func(error)) error {
	return e.PutJSONThen(bucket, key, data, rev, then)
}

func (e *Etcd) encode(entries []Entry) (write, error) {
	w := write{changes: make([]change, 0, len(entries))}
	for _, en := range entries {
		c := change{bucket: en.Bucket, key: en.Key, rev: en.Rev, claim: en.Claim}
		switch {
		case en.Numbered:
			n, ok := en.Value.(Numbered)
			if !ok {
				return write{}, fmt.Errorf("store: %s: a numbered entry's value must be Numbered, not %T", en.Bucket, en.Value)
			}
			// The committer numbers it: if it encodes now, it will then.
			if _, err := json.Marshal(n.WithSeq(0)); err != nil {
				return write{}, fmt.Errorf("encode %s: %w", en.Bucket, err)
			}
			c.key, c.num = SeqKey(0), n
		case !en.Delete:
			data, err := json.Marshal(en.Value)
			if err != nil {
				return write{}, fmt.Errorf("encode %s/%s: %w", en.Bucket, en.Key, err)
			}
			c.value = data
		}
		if err := c.check(); err != nil {
			return write{}, fmt.Errorf("store: %w", err)
		}
		w.changes = append(w.changes, c)
	}
	return w, nil
}

// Healthy is nil while etcd takes writes, and says why not otherwise.
func (e *Etcd) Healthy() error {
	e.health.Lock()
	defer e.health.Unlock()
	return e.healthErr
}

// Close commits what was sent, stops the watch and closes the connection.
func (e *Etcd) Close() error {
	e.closeMu.Lock()
	if e.closed {
		e.closeMu.Unlock()
		return nil
	}
	e.closed = true
	e.closing.Store(true)
	close(e.writes)
	e.closeMu.Unlock()
	<-e.committed // what was sent is answered first
	e.cancel()
	e.wg.Wait()
	return e.cli.Close()
}
