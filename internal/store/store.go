// Package store keeps bootstrapd's state: named buckets of JSON values,
// in one of two backends. DB is an embedded bbolt file, the default: one
// bootstrapd owns it. Etcd (etcd.go) is a key prefix in an etcd cluster
// that several bootstrapd instances share.
//
// In both, a write has been made durable (fsynced; in etcd, committed by a
// quorum) when it is answered, which is what lets the DHCP server promise
// that a lease is stored before its ACK leaves. The bbolt backend makes
// writes durable in a journal beside its file and applies them to it in
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
	seqs         map[string]uint64            // last number given in each numbered bucket
	follow       func([]Change)               // set by Follow before the first write
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
	value       []byte   // nil: delete the key
	num         Numbered // numbered at commit: key and value are set then
	rev         int64    // Entry.Rev, for Etcd
	claim       bool     // Entry.Claim, for Etcd
}

// Entry is one value for PutAll, or with Delete, a key to remove.
type Entry struct {
	Bucket, Key string
	Value       any
	Delete      bool
	// Rev is the version of the record the writer decided from, for a
	// store that several instances write (Etcd): 0 for "there was none",
	// a revision from Range or a Change, or Own for "the one I last wrote
	// myself". The write fails with ErrConflict if the record is not that
	// version any more. DB has one writer and does not look at it.
	Rev int64
	// Numbered entries get their key from the store when they are
	// committed: the next number of their bucket (see Seq), without gaps.
	// Value must be Numbered; Key is ignored.
	Numbered bool
	// Claim entries exist only to order this write with others of the
	// same key in a shared store: a backend with one writer skips them.
	Claim bool
}

// Entry.Rev values that are not revisions.
const (
	// Own is a record this instance wrote last.
	Own int64 = -1
	// Unchecked writes the record whatever its version (a numbered
	// entry being deleted: nobody changes those).
	Unchecked int64 = -2
)

// Numbered is a value that carries its own number (an event with its
// sequence number): the store gives it the number when it commits it.
type Numbered interface {
	WithSeq(seq uint64) any
}

// SeqKey is the key a Numbered entry is stored under.
func SeqKey(seq uint64) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], seq)
	return string(b[:])
}

// Change is a write the store has committed, as its follower is told of
// it: every numbered entry, in number order, and (from a shared store)
// every record another instance wrote.
type Change struct {
	Bucket, Key string
	Value       []byte // nil: the key was deleted
	Rev         int64  // the record's version, for the next write's Entry.Rev
	Seq         uint64 // a numbered entry's number
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
		journal: j, pending: map[string]map[string][]byte{}, checkpointAt: o.checkpointAt, nextAt: o.checkpointAt,
		seqs: map[string]uint64{}}
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
	group, numbered, undo := db.number(group)
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
		} else {
			maps.Copy(db.seqs, undo) // the numbers stay unused
		}
	}
	if err == nil && len(numbered) > 0 && db.follow != nil {
		db.follow(numbered)
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

// number gives the numbered entries of group their numbers and encodes
// them. A write with one that does not encode is answered with the error
// and left out. It returns the group to commit, the changes to tell the
// follower of once it is durable, and the counters as they were, to put
// back if it is not.
func (db *DB) number(group []write) ([]write, []Change, map[string]uint64) {
	var out []Change
	var undo map[string]uint64
	kept := group[:0]
	for _, w := range group {
		var err error
		for i := range w.changes {
			c := &w.changes[i]
			if c.num == nil {
				continue
			}
			if undo == nil {
				undo = map[string]uint64{}
			}
			if _, ok := undo[c.bucket]; !ok {
				undo[c.bucket] = db.seq(c.bucket)
			}
			seq := db.seqs[c.bucket] + 1
			if c.value, err = json.Marshal(c.num.WithSeq(seq)); err != nil {
				err = fmt.Errorf("encode %s #%d: %w", c.bucket, seq, err)
				break
			}
			db.seqs[c.bucket], c.key, c.num = seq, SeqKey(seq), nil
			out = append(out, Change{Bucket: c.bucket, Key: c.key, Value: c.value, Seq: seq})
		}
		if err != nil {
			maps.Copy(db.seqs, undo) // this write's numbers, and those after, are given again
			w.answer(err)
			continue
		}
		kept = append(kept, w)
	}
	return kept, out, undo
}

// seq is the last number given in bucket: on first use, the last key in
// the bbolt file (a journal staged since Open holds only keys numbered
// since, which counted).
func (db *DB) seq(bucket string) uint64 {
	if n, ok := db.seqs[bucket]; ok {
		return n
	}
	var n uint64
	db.bolt.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket([]byte(bucket)); b != nil {
			if k, _ := b.Cursor().Last(); len(k) == 8 {
				n = binary.BigEndian.Uint64(k)
			}
		}
		return nil
	})
	if keys := db.pending[bucket]; keys != nil {
		for k, v := range keys {
			if len(k) == 8 && v != nil {
				n = max(n, binary.BigEndian.Uint64([]byte(k)))
			}
		}
	}
	db.seqs[bucket] = n
	return n
}

// Follow sets fn to be told of every numbered entry once it is durable, in
// number order, on the store's writer goroutine: fn must be quick and must
// not write to the store. Call it before the first write.
func (db *DB) Follow(fn func([]Change)) { db.follow = fn }

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
	case c.bucket[0] == '_':
		return fmt.Errorf("bucket name %q is the store's own (they start with '_')", c.bucket)
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
	w := write{changes: make([]change, 0, len(entries))}
	for _, e := range entries {
		if e.Claim {
			continue // one writer: nothing to order
		}
		c := change{bucket: e.Bucket, key: e.Key}
		if e.Numbered {
			n, ok := e.Value.(Numbered)
			if !ok {
				return write{}, fmt.Errorf("store: %s: a numbered entry's value must be Numbered, not %T", e.Bucket, e.Value)
			}
			c.key, c.num = SeqKey(0), n // checked as the 8 bytes it will be
		} else if !e.Delete {
			data, err := json.Marshal(e.Value)
			if err != nil {
				return write{}, fmt.Errorf("encode %s/%s: %w", e.Bucket, e.Key, err)
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

// PutJSONThen stores data, which is already JSON, under bucket/key (rev:
// see Entry.Rev). It returns at once, and then is called once the write
// is durable (nil) or has failed. It is for values written on a hot path
// (a lease per DHCP ACK) whose owner encodes them without reflection and
// would otherwise keep a goroutine waiting per write. data must not change
// afterwards: the store keeps it until the next checkpoint. then runs on the store's writer goroutine, with the writes of
// its group waiting: it must be quick and must not write to the store.
// When PutJSONThen returns an error, then is not called.
func (db *DB) PutJSONThen(bucket, key string, data []byte, _ int64, then func(error)) error {
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
func (db *DB) PutJSONNow(bucket, key string, data []byte, _ int64, then func(error)) error {
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

// Ranger is a store that can be read: DB or Etcd.
type Ranger interface {
	// Range calls fn for every record in bucket with a key >= from, in
	// key order, with the record's version (for Entry.Rev).
	Range(bucket, from string, fn func(key string, value []byte, rev int64) error) error
}

// Range reads bucket (see Ranger). Every write that has returned is seen.
// bbolt keeps no versions (it has one writer, which does not check
// them): rev is 0.
func (db *DB) Range(bucket, from string, fn func(key string, value []byte, rev int64) error) error {
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
			if err := fn(string(k), data, 0); err != nil {
				return err
			}
		}
		return nil
	})
}

// Load decodes every value in bucket, in key order, calling fn for each.
func Load[T any](r Ranger, bucket string, fn func(key string, v T) error) error {
	return LoadFrom(r, bucket, "", fn)
}

// LoadFrom is Load starting at the first key >= from.
func LoadFrom[T any](r Ranger, bucket, from string, fn func(key string, v T) error) error {
	return r.Range(bucket, from, func(k string, data []byte, _ int64) error {
		var v T
		if err := json.Unmarshal(data, &v); err != nil {
			return fmt.Errorf("decode %s/%s: %w", bucket, k, err)
		}
		return fn(k, v)
	})
}
