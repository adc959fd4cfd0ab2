// Package store is bootstrapd's one embedded database file.
//
// It is a thin layer over bbolt: named buckets of JSON values. Every write
// has been fsynced when Put returns, which is what lets the DHCP
// server promise that a lease is on disk before its ACK leaves. Writes are
// made durable in a journal beside the bbolt file and applied to it in
// bulk (journal.go).
package store

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// DB is an open store file and its journal (journal.go). A write is
// durable once it is in the journal; the journal's records reach the bbolt
// file at checkpoints, and every read applies them first, so a read sees
// every write that has returned.
type DB struct {
	bolt   *bolt.DB
	path   string
	writes chan write
	done   chan struct{} // closed when the committer has ended

	// mu makes Close and the sends on writes exclusive: a send on a closed
	// channel would panic. Senders share it.
	mu        sync.RWMutex
	closed    bool
	closeOnce sync.Once
	closeErr  error

	// commitMu is held by whoever commits: the committer goroutine, or a
	// caller of PutJSONNow committing on its own goroutine. It guards the
	// fields below (Open's before the committer starts, Close's after it
	// ends).
	commitMu sync.Mutex
	// queued counts the writes sent to the committer and not yet answered.
	// PutJSONNow commits on its caller's goroutine only when it is 0, so
	// no write sent before it can be committed after it.
	queued       atomic.Int64
	journal      *journal
	pending      map[string]map[string][]byte // journaled, not yet in bbolt: bucket -> key -> value (nil: delete)
	checkpointAt int64                        // journal size that triggers a checkpoint
	nextAt       int64                        // the next one, later after a failed one
	records      atomic.Int64                 // journal records written, for tests
}

// write is one caller's changes, waiting for the committer. They are
// committed in the same transaction: all or none.
type write struct {
	changes []change
	done    chan error  // a caller waiting (Put, PutAll, PutJSON), or
	then    func(error) // one that is called back (PutJSONThen)
	sync    bool        // a reader: no changes, apply the journal to bbolt
}

func (w *write) answer(err error) {
	if w.then != nil {
		w.then(err)
		return
	}
	w.done <- err
}

type change struct {
	bucket, key string
	value       []byte // nil: delete the key
}

// Entry is one value for PutAll, or with Delete, a key to remove.
type Entry struct {
	Bucket, Key string
	Value       any
	Delete      bool
}

// initialMmap is the size of bbolt's first mapping of the store file
// (see open).
const initialMmap = 128 << 20

// maxGroup bounds one commit, so a burst cannot make a single record
// (and the wait of its first writer) arbitrarily long.
const maxGroup = 2000

// Open opens (creating if needed) the store file at path with mode 0600 and
// its directory with 0700: leases and token hashes are nobody else's business.
// The journal, path + ".journal", is replayed into the store file.
func Open(path string) (*DB, error) { return open(path, options{checkpointAt: defaultCheckpointAt}) }

// options are the knobs tests turn.
type options struct {
	checkpointAt int64 // journal size that triggers a checkpoint
	buffered     bool  // journal through the page cache even where O_DIRECT works
}

func open(path string, o options) (*DB, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create state directory: %w", err)
	}
	// InitialMmapSize: a checkpoint puts thousands of keys in one
	// transaction, and each time the file outgrew the mapping bbolt mapped
	// it again and first copied every key and value of every node the
	// transaction had touched out of the old mapping (node.dereference: 12
	// allocations per lease in BenchmarkDORA). Address space is cheap; the
	// file still grows only as needed.
	b, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second, InitialMmapSize: initialMmap})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, fmt.Errorf("open store %s: another bootstrapd holds it (file is locked)", path)
		}
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	// The journal is opened under bbolt's file lock: one process at a time.
	j, data, err := openJournal(path, o.buffered)
	if err != nil {
		b.Close()
		return nil, err
	}
	db := &DB{bolt: b, path: path, writes: make(chan write, maxGroup), done: make(chan struct{}),
		journal: j, pending: map[string]map[string][]byte{}, checkpointAt: o.checkpointAt, nextAt: o.checkpointAt}
	if err := db.replay(data); err != nil {
		j.close()
		b.Close()
		return nil, err
	}
	go db.commit()
	return db, nil
}

// replay applies the journal's records that bbolt does not hold yet, after
// a crash (a clean Close leaves none).
func (db *DB) replay(data []byte) error {
	var applied uint64
	err := db.bolt.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket([]byte(metaBucket)); b != nil {
			if v := b.Get([]byte(appliedKey)); len(v) == 8 {
				applied = binary.BigEndian.Uint64(v)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("open store %s: %w", db.path, err)
	}
	last, err := records(data, applied, db.journal.crc, func(_ uint64, body []byte) error {
		return decodeChanges(body, db.stage)
	})
	if err != nil {
		return fmt.Errorf("open store %s: journal record %d does not decode (%w); moving %s aside opens the store without the writes the journal holds",
			db.path, last+1, err, db.journal.path)
	}
	db.journal.seq = last
	if last == applied {
		return nil
	}
	if err := db.checkpoint(); err != nil {
		return fmt.Errorf("open store %s: %w", db.path, err)
	}
	return nil
}

// stage notes a journaled change for the next checkpoint. A later change
// of the same key replaces an earlier one: only the last value matters.
func (db *DB) stage(c change) {
	keys := db.pending[c.bucket]
	if keys == nil {
		keys = map[string][]byte{}
		db.pending[c.bucket] = keys
	}
	keys[c.key] = c.value
}

// checkpoint applies the pending changes to bbolt in one transaction that
// also records the number of the last journal record, then starts the
// journal over.
func (db *DB) checkpoint() error {
	if len(db.pending) == 0 {
		db.journal.reset()
		return nil
	}
	err := db.bolt.Update(func(tx *bolt.Tx) error {
		// In key order: bbolt's cursor then walks each leaf once.
		for _, name := range slices.Sorted(maps.Keys(db.pending)) {
			b, err := bucket(tx, name)
			if err != nil {
				return fmt.Errorf("bucket %s: %w", name, err)
			}
			keys := db.pending[name]
			for _, k := range slices.Sorted(maps.Keys(keys)) {
				if err := apply(b, change{bucket: name, key: k, value: keys[k]}); err != nil {
					return fmt.Errorf("%s/%s: %w", name, k, err)
				}
			}
		}
		meta, err := bucket(tx, metaBucket)
		if err != nil {
			return err
		}
		return meta.Put([]byte(appliedKey), binary.BigEndian.AppendUint64(nil, db.journal.seq))
	})
	if err != nil {
		return fmt.Errorf("apply store journal to %s: %w", db.path, err)
	}
	db.pending = map[string]map[string][]byte{}
	db.journal.reset()
	return nil
}

// commit is the only writer. It takes everything that is waiting, appends
// it to the journal as one record (one fdatasync), answers every waiter,
// and goes again. So a commit carries whatever arrived while the previous
// one was on disk: under load, groups grow with the arrival rate instead of
// falling behind it. (bbolt's own Batch closes a batch on a timer; once an
// fsync takes longer than the timer, batches are cut faster than they
// commit and the backlog grows without bound.) It ends when Close closes
// writes, after answering everything sent before.
func (db *DB) commit() {
	defer close(db.done)
	group := make([]write, 0, maxGroup)
	for {
		w, ok := <-db.writes
		if !ok {
			return
		}
		group = append(group[:0], w)
	drain:
		for len(group) < maxGroup {
			select {
			case w, ok := <-db.writes:
				if !ok {
					break drain
				}
				group = append(group, w)
			default:
				break drain
			}
		}
		db.commitMu.Lock()
		db.group(group, false)
		db.commitMu.Unlock()
		db.queued.Add(-int64(len(group)))
		clear(group) // no callback or change outlives its group here
	}
}

// group commits group; raw: see journal.pwriteDirect.
func (db *DB) group(group []write, raw bool) {
	n, readers := 0, false
	for _, w := range group {
		n += len(w.changes)
		readers = readers || w.sync
	}
	var err error
	if n > 0 {
		if err = db.journal.append(group, raw); err == nil {
			db.records.Add(1)
			for _, w := range group {
				for _, c := range w.changes {
					db.stage(c)
				}
			}
		}
	}
	// The writes are durable: answer them before any checkpoint.
	for i := range group {
		if !group[i].sync {
			group[i].answer(err)
		}
	}
	if !readers && db.journal.off < db.nextAt {
		return
	}
	cerr := db.checkpoint()
	if cerr == nil {
		db.nextAt = db.checkpointAt
	} else if !readers {
		// Nobody to tell (the journal still holds every write): try again
		// when it has grown by as much again, not at every record.
		db.nextAt = db.journal.off + db.checkpointAt
	}
	for i := range group {
		if group[i].sync {
			group[i].answer(cerr)
		}
	}
}

// bucket opens the named bucket, creating it the first time. Looking it up
// first spares CreateBucketIfNotExists's copies of the name when it exists.
func bucket(tx *bolt.Tx, name string) (*bolt.Bucket, error) {
	if b := tx.Bucket([]byte(name)); b != nil {
		return b, nil
	}
	return tx.CreateBucketIfNotExists([]byte(name))
}

func apply(b *bolt.Bucket, c change) error {
	if c.value == nil {
		return b.Delete([]byte(c.key))
	}
	return b.Put([]byte(c.key), c.value)
}

// check refuses what bbolt would refuse at a checkpoint. A write is
// acknowledged when it is in the journal, long before bbolt sees it, so
// whatever bbolt would refuse must be refused here: at a checkpoint it
// would be too late to tell the writer.
func (c change) check() error {
	switch {
	case c.bucket == "":
		return errors.New("empty bucket name")
	case c.bucket == metaBucket:
		return fmt.Errorf("bucket name %q is the store's own", c.bucket)
	case c.key == "":
		return fmt.Errorf("%s: empty key", c.bucket)
	case len(c.bucket) > bolt.MaxKeySize || len(c.key) > bolt.MaxKeySize:
		return fmt.Errorf("%.40s/%.40s: bucket name or key longer than %d bytes", c.bucket, c.key, bolt.MaxKeySize)
	case len(c.value) > bolt.MaxValueSize:
		return fmt.Errorf("%s/%s: value longer than %d bytes", c.bucket, c.key, bolt.MaxValueSize)
	}
	return nil
}

// send hands w to the committer. After Close it fails.
func (db *DB) send(w write) error {
	db.mu.RLock()
	defer db.mu.RUnlock()
	if db.closed {
		return errors.New("store is closed")
	}
	db.queued.Add(1)
	db.writes <- w
	return nil
}

func (db *DB) submit(w write) error {
	w.done = make(chan error, 1)
	if err := db.send(w); err != nil {
		return err
	}
	return <-w.done
}

// Path is the file the store lives in.
func (db *DB) Path() string { return db.path }

// Close commits the writes already sent, applies the journal to the store
// file and closes both. Writes after Close fail.
func (db *DB) Close() error {
	db.closeOnce.Do(func() {
		db.mu.Lock()
		db.closed = true
		close(db.writes)
		db.mu.Unlock()
		<-db.done
		db.closeErr = errors.Join(db.checkpoint(), db.journal.close(), db.bolt.Close())
	})
	return db.closeErr
}

// Put stores v as JSON under bucket/key. It returns after the write is durable.
func (db *DB) Put(bucket, key string, v any) error {
	return db.PutAll(Entry{Bucket: bucket, Key: key, Value: v})
}

// PutAll stores several values (and removes the keys of Delete entries) in
// one transaction: after a crash either all of it happened or none.
func (db *DB) PutAll(entries ...Entry) error {
	w, err := encode(entries)
	if err != nil {
		return err
	}
	return db.submit(w)
}

// PutAllThen is PutAll without the wait, as PutJSONThen is PutJSON's: it
// returns once the write is queued behind every write sent before it, and
// then is called on the store's writer goroutine once it is durable (nil)
// or has failed. then must be quick and must not write to the store. When
// PutAllThen returns an error, then is not called. It is for a caller that
// must send writes in an order it decides under its own lock, and wait for
// them after releasing it (the inventory: so that node writes made at once
// share a commit).
func (db *DB) PutAllThen(then func(error), entries ...Entry) error {
	w, err := encode(entries)
	if err != nil {
		return err
	}
	w.then = then
	return db.send(w)
}

// encode makes entries one write.
func encode(entries []Entry) (write, error) {
	w := write{changes: make([]change, len(entries))}
	for i, e := range entries {
		c := change{bucket: e.Bucket, key: e.Key}
		if !e.Delete {
			data, err := json.Marshal(e.Value)
			if err != nil {
				return write{}, fmt.Errorf("encode %s/%s: %w", e.Bucket, e.Key, err)
			}
			c.value = data
		}
		if err := c.check(); err != nil {
			return write{}, fmt.Errorf("store: %w", err)
		}
		w.changes[i] = c
	}
	return w, nil
}

// PutJSON stores data, which is already JSON, under bucket/key, and returns
// after the write is durable. It is for values written on a hot path (a
// lease per DHCP ACK) whose owner encodes them without reflection. data
// must not change afterwards: the store keeps it until the next checkpoint.
func (db *DB) PutJSON(bucket, key string, data []byte) error {
	c := change{bucket: bucket, key: key, value: data}
	if err := c.check(); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return db.submit(write{changes: []change{c}})
}

// PutJSONThen is PutJSON without the wait: it returns at once, and then is
// called once the write is durable (nil) or has failed. It is for a caller
// that would otherwise keep a goroutine waiting per write (the DHCP server,
// per ACK). then runs on the store's writer goroutine, with the writes of
// its group waiting: it must be quick and must not write to the store.
// When PutJSONThen returns an error, then is not called.
func (db *DB) PutJSONThen(bucket, key string, data []byte, then func(error)) error {
	c := change{bucket: bucket, key: key, value: data}
	if err := c.check(); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return db.send(write{changes: []change{c}, then: then})
}

// PutJSONNow is PutJSONThen that commits on the caller's goroutine when
// the store is idle (nothing queued or being committed) and the disk is
// fast, and calls then before it returns; otherwise it is PutJSONThen. It
// is for a caller that knows no other write is coming soon (the DHCP
// listener, when its socket holds no further packet): handing the write
// to the committer goroutine would wake a thread for it (a futex wake, two
// context switches, and a thread spinning for work before it sleeps),
// which at 1000 exchanges/s cost as much CPU as the write. Under load the
// committer is busy and writes are grouped as before.
func (db *DB) PutJSONNow(bucket, key string, data []byte, then func(error)) error {
	c := change{bucket: bucket, key: key, value: data}
	if err := c.check(); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	w := write{changes: []change{c}, then: then}
	db.mu.RLock()
	if db.closed {
		db.mu.RUnlock()
		return errors.New("store is closed")
	}
	if db.queued.Load() == 0 && db.commitMu.TryLock() {
		if db.queued.Load() == 0 && db.journal.slow == 0 {
			db.group([]write{w}, true)
			db.commitMu.Unlock()
			db.mu.RUnlock()
			return nil
		}
		db.commitMu.Unlock()
	}
	db.mu.RUnlock()
	return db.send(w)
}

// sync waits until every write that has returned is in the bbolt file.
func (db *DB) sync() error {
	return db.submit(write{sync: true})
}

// Load decodes every value in bucket, in key order, calling fn for each.
func Load[T any](db *DB, bucket string, fn func(key string, v T) error) error {
	return LoadFrom(db, bucket, "", fn)
}

// LoadFrom is Load starting at the first key >= from.
func LoadFrom[T any](db *DB, bucket, from string, fn func(key string, v T) error) error {
	if err := db.sync(); err != nil {
		return fmt.Errorf("read %s: %w", bucket, err)
	}
	return db.bolt.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucket))
		if b == nil {
			return nil
		}
		c := b.Cursor()
		for k, data := c.Seek([]byte(from)); k != nil; k, data = c.Next() {
			var v T
			if err := json.Unmarshal(data, &v); err != nil {
				return fmt.Errorf("decode %s/%s: %w", bucket, k, err)
			}
			if err := fn(string(k), v); err != nil {
				return err
			}
		}
		return nil
	})
}
