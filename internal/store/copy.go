package store

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Target is a store Copy writes into: DB or Etcd.
type Target interface {
	Ranger
	PutAllThen(then func(error), entries ...Entry) error
}

// copyBatch is how many records Copy writes per transaction: well inside
// etcd's limits (maxTxnOps, maxTxnBytes) for records the size of a node.
const copyBatch = 32

// Copied is how many records of each bucket Copy copied.
type Copied map[string]int

// Bucket is one Copy copies; a numbered one keeps its numbering going.
type Bucket struct {
	Name     string
	Numbered bool
}

// Copy copies buckets from one store to another, records as they are
// (numbered ones under their numbers, so followers resume where they
// were). It refuses a target that holds any record in them unless force,
// which first removes what the target holds there; and a shared target
// that instances are serving from. It checks the counts after.
func Copy(ctx context.Context, from Ranger, to Target, buckets []Bucket, force bool) (Copied, error) {
	if e, ok := to.(*Etcd); ok {
		if live, err := e.live(ctx); err != nil {
			return nil, err
		} else if len(live) > 0 {
			return nil, fmt.Errorf("%s is in use by running instances (%v): stop them before copying into it", e.Path(), live)
		}
	}
	for _, bk := range buckets {
		b := bk.Name
		held, err := count(to, b)
		if err != nil {
			return nil, err
		}
		if held == 0 {
			continue
		}
		if !force {
			return nil, fmt.Errorf("%s already holds %d %s records: copying would mix two inventories; use -force to replace what it holds", pathOf(to), held, b)
		}
		if err := clearBucket(to, b); err != nil {
			return nil, err
		}
	}
	out := Copied{}
	for _, bk := range buckets {
		b := bk.Name
		var batch []Entry
		var last uint64
		flush := func() error {
			if len(batch) == 0 {
				return nil
			}
			err := wait(to, batch)
			batch = batch[:0]
			return err
		}
		err := from.Range(b, "", func(k string, v []byte, _ int64) error {
			batch = append(batch, Entry{Bucket: b, Key: k, Value: json.RawMessage(v), Rev: Unchecked})
			out[b]++
			if bk.Numbered && len(k) == 8 {
				last = max(last, seqOf(k))
			}
			if len(batch) == copyBatch {
				return flush()
			}
			return nil
		})
		if err == nil {
			err = flush()
		}
		if err != nil {
			return out, fmt.Errorf("copy %s: %w (the target holds part of it: copy again with -force)", b, err)
		}
		if e, ok := to.(*Etcd); ok && last > 0 {
			if err := e.setCounter(ctx, b, last); err != nil {
				return out, err
			}
		}
	}
	for _, bk := range buckets {
		n, err := count(to, bk.Name)
		if err != nil {
			return out, err
		}
		if n != out[bk.Name] {
			return out, fmt.Errorf("copied %d %s records but the target holds %d", out[bk.Name], bk.Name, n)
		}
	}
	return out, nil
}

func pathOf(s any) string {
	if p, ok := s.(interface{ Path() string }); ok {
		return p.Path()
	}
	return "the target"
}

func count(s Ranger, bucket string) (int, error) {
	n := 0
	err := s.Range(bucket, "", func(string, []byte, int64) error { n++; return nil })
	return n, err
}

// clearBucket removes every record of bucket from s.
func clearBucket(s Target, bucket string) error {
	var keys []string
	if err := s.Range(bucket, "", func(k string, _ []byte, _ int64) error { keys = append(keys, k); return nil }); err != nil {
		return err
	}
	for len(keys) > 0 {
		n := min(len(keys), copyBatch)
		var batch []Entry
		for _, k := range keys[:n] {
			batch = append(batch, Entry{Bucket: bucket, Key: k, Delete: true, Rev: Unchecked})
		}
		if err := wait(s, batch); err != nil {
			return fmt.Errorf("clear %s: %w", bucket, err)
		}
		keys = keys[n:]
	}
	return nil
}

// wait writes entries as one transaction and waits for it.
func wait(s Target, entries []Entry) error {
	done := make(chan error, 1)
	if err := s.PutAllThen(func(err error) { done <- err }, entries...); err != nil {
		return err
	}
	return <-done
}

// live is the instances serving from e now (listed under members).
func (e *Etcd) live(ctx context.Context) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	resp, err := e.cli.Get(ctx, e.prefix+membersDir, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return nil, unavailable(err)
	}
	var out []string
	for _, kv := range resp.Kvs {
		out = append(out, string(kv.Key[len(e.prefix+membersDir):]))
	}
	return out, nil
}

// setCounter makes n the last number given in bucket.
func (e *Etcd) setCounter(ctx context.Context, bucket string, n uint64) error {
	ctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	resp, err := e.cli.Put(ctx, e.prefix+seqDir+bucket, strconv.FormatUint(n, 10))
	if err != nil {
		return fmt.Errorf("set the %s counter: %w", bucket, unavailable(err))
	}
	e.mu.Lock()
	e.seqs[bucket] = seq{n: n, rev: resp.Header.Revision}
	e.mu.Unlock()
	return nil
}
