// Package store is bootstrapd's one embedded database file.
//
// It is a thin layer over bbolt: named buckets of JSON values. Every write
// has been fsynced when Put or Delete returns, which is what lets the DHCP
// server promise that a lease is on disk before its ACK leaves.
package store

import (
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
	bolt *bolt.DB
	path string
}

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
	// Concurrent writers (one per DHCP packet) are folded into one fsync by
	// Batch. A short delay keeps a lone ACK fast; under load the batch fills
	// by size instead.
	b.MaxBatchDelay = time.Millisecond
	b.MaxBatchSize = 500
	return &DB{bolt: b, path: path}, nil
}

// Path is the file the store lives in.
func (db *DB) Path() string { return db.path }

// Close flushes and closes the file.
func (db *DB) Close() error { return db.bolt.Close() }

// Put stores v as JSON under bucket/key. It returns after the write is durable.
func (db *DB) Put(bucket, key string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s/%s: %w", bucket, key, err)
	}
	return db.bolt.Batch(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte(bucket))
		if err != nil {
			return err
		}
		return b.Put([]byte(key), data)
	})
}

// Delete removes bucket/key; a missing key is not an error.
func (db *DB) Delete(bucket, key string) error {
	return db.bolt.Batch(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucket))
		if b == nil {
			return nil
		}
		return b.Delete([]byte(key))
	})
}

// Get decodes bucket/key into v and reports whether it was there.
func (db *DB) Get(bucket, key string, v any) (bool, error) {
	var found bool
	err := db.bolt.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucket))
		if b == nil {
			return nil
		}
		data := b.Get([]byte(key))
		if data == nil {
			return nil
		}
		found = true
		return json.Unmarshal(data, v)
	})
	return found, err
}

// Load decodes every value in bucket, in key order, calling fn for each.
func Load[T any](db *DB, bucket string, fn func(key string, v T) error) error {
	return db.bolt.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucket))
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, data []byte) error {
			var v T
			if err := json.Unmarshal(data, &v); err != nil {
				return fmt.Errorf("decode %s/%s: %w", bucket, k, err)
			}
			return fn(string(k), v)
		})
	})
}
