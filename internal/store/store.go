// Package store is bootstrapd's one embedded database file.
//
// It is a thin layer over bbolt: named buckets of JSON values. Every write
// has been fsynced when Put returns, which is what lets the DHCP
// server promise that a lease is on disk before its ACK leaves.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// DB is an open store file.
type DB struct {
	bolt   *bolt.DB
	path   string
	writes chan write
	stop   context.CancelFunc
	done   chan struct{}
}

// write is one caller's changes, waiting for the committer. They are
// committed in the same transaction: all or none.
type write struct {
	changes []change
	done    chan error
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

// maxGroup bounds one commit, so a burst cannot make a single transaction
// (and the wait of its first writer) arbitrarily long.
const maxGroup = 2000

// Open opens (creating if needed) the store file at path with mode 0600 and
// its directory with 0700: leases and token hashes are nobody else's business.
func Open(path string) (*DB, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create state directory: %w", err)
	}
	b, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, fmt.Errorf("open store %s: another bootstrapd holds it (file is locked)", path)
		}
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	ctx, stop := context.WithCancel(context.Background())
	db := &DB{bolt: b, path: path, writes: make(chan write, maxGroup), stop: stop, done: make(chan struct{})}
	go db.commit(ctx)
	return db, nil
}

// commit is the only writer. It takes everything that is waiting, commits it
// in one transaction (one fsync), answers every waiter, and goes again. So a
// commit carries whatever arrived while the previous one was on disk: under
// load, batches grow with the arrival rate instead of falling behind it.
// (bbolt's own Batch closes a batch on a timer; once an fsync takes longer
// than the timer, batches are cut faster than they commit and the backlog
// grows without bound.)
func (db *DB) commit(ctx context.Context) {
	defer close(db.done)
	group := make([]write, 0, maxGroup)
	for {
		select {
		case <-ctx.Done():
			return
		case w := <-db.writes:
			group = append(group[:0], w)
		}
	drain:
		for len(group) < maxGroup {
			select {
			case w := <-db.writes:
				group = append(group, w)
			default:
				break drain
			}
		}
		err := db.update(group)
		if err != nil && len(group) > 1 {
			// One bad write must not fail the others: retry them alone.
			for _, w := range group {
				w.done <- db.update([]write{w})
			}
			continue
		}
		for _, w := range group {
			w.done <- err
		}
	}
}

func (db *DB) update(group []write) error {
	return db.bolt.Update(func(tx *bolt.Tx) error {
		// A group is mostly writes to one bucket (leases, under DHCP load):
		// the last bucket is kept, not looked up again for every change.
		var b *bolt.Bucket
		var name string
		for _, w := range group {
			for _, c := range w.changes {
				if b == nil || name != c.bucket {
					var err error
					if b, err = bucket(tx, c.bucket); err != nil {
						return fmt.Errorf("%s/%s: %w", c.bucket, c.key, err)
					}
					name = c.bucket
				}
				if err := apply(b, c); err != nil {
					return fmt.Errorf("%s/%s: %w", c.bucket, c.key, err)
				}
			}
		}
		return nil
	})
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

func (db *DB) submit(w write) error {
	w.done = make(chan error, 1)
	select {
	case db.writes <- w:
	case <-db.done:
		return errors.New("store is closed")
	}
	select {
	case err := <-w.done:
		return err
	case <-db.done:
		return errors.New("store closed before the write was committed")
	}
}

// Path is the file the store lives in.
func (db *DB) Path() string { return db.path }

// Close stops the committer and closes the file. Writes must have returned.
func (db *DB) Close() error {
	db.stop()
	<-db.done
	return db.bolt.Close()
}

// Put stores v as JSON under bucket/key. It returns after the write is durable.
func (db *DB) Put(bucket, key string, v any) error {
	return db.PutAll(Entry{Bucket: bucket, Key: key, Value: v})
}

// PutAll stores several values (and removes the keys of Delete entries) in
// one transaction: after a crash either all of it happened or none.
func (db *DB) PutAll(entries ...Entry) error {
	w := write{changes: make([]change, len(entries))}
	for i, e := range entries {
		if e.Delete {
			w.changes[i] = change{bucket: e.Bucket, key: e.Key}
			continue
		}
		data, err := json.Marshal(e.Value)
		if err != nil {
			return fmt.Errorf("encode %s/%s: %w", e.Bucket, e.Key, err)
		}
		w.changes[i] = change{bucket: e.Bucket, key: e.Key, value: data}
	}
	return db.submit(w)
}

// PutJSON stores data, which is already JSON, under bucket/key, and returns
// after the write is durable. It is for values written on a hot path (a
// lease per DHCP ACK) whose owner encodes them without reflection.
func (db *DB) PutJSON(bucket, key string, data []byte) error {
	return db.submit(write{changes: []change{{bucket: bucket, key: key, value: data}}})
}

// Load decodes every value in bucket, in key order, calling fn for each.
func Load[T any](db *DB, bucket string, fn func(key string, v T) error) error {
	return LoadFrom(db, bucket, "", fn)
}

// LoadFrom is Load starting at the first key >= from.
func LoadFrom[T any](db *DB, bucket, from string, fn func(key string, v T) error) error {
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
