package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// maxTxnBytes bounds one transaction's values, well under etcd's default
// request limit of 1.5 MiB.
const maxTxnBytes = 1 << 20

// maxAttempts bounds how often a group is sent again because only a
// counter moved (another instance numbered entries meanwhile).
const maxAttempts = 20

// commit is the only writer, as DB's is: it takes every write waiting
// (as many as fit in one transaction), commits them together, answers
// them, and goes again. It ends when Close closes writes.
func (e *Etcd) commit() {
	defer close(e.committed)
	var carry *write // did not fit in the last group
	for {
		var group []write
		if carry != nil {
			group, carry = append(group, *carry), nil
		} else {
			w, ok := <-e.writes
			if !ok {
				return
			}
			group = append(group, w)
		}
		var size txnSize
		if !size.add(group[0]) {
			group[0].answer(fmt.Errorf("store: one write of %d records (%d bytes) is more than one etcd transaction takes (%d records, %d bytes)",
				len(group[0].changes), bytesOf(group[0]), maxTxnOps/2, maxTxnBytes))
			continue
		}
	drain:
		for {
			select {
			case w, ok := <-e.writes:
				if !ok {
					break drain
				}
				if !size.add(w) {
					carry = &w
					break drain
				}
				group = append(group, w)
			default:
				break drain
			}
		}
		e.txn(group)
	}
}

// txnSize counts what a group puts in one transaction: compares and gets
// (one per guarded key), operations, bytes, and the keys, which etcd
// allows once per transaction.
type txnSize struct {
	keys         map[string]bool
	ops, guarded int
	bytes        int
}

// add adds w if it fits; half of etcd's limits leaves room for counters.
func (s *txnSize) add(w write) bool {
	ops, guarded, keys := 0, 0, make([]string, 0, len(w.changes))
	for _, c := range w.changes {
		k := key2(c.bucket, c.key)
		if c.num == nil {
			if s.keys[k] {
				return false
			}
			keys = append(keys, k)
		} else if !s.keys[seqDir+c.bucket] {
			guarded++ // the counter
			keys = append(keys, seqDir+c.bucket)
		}
		ops++
		if c.num == nil && c.rev != Unchecked {
			guarded++
		}
	}
	if s.ops+ops > maxTxnOps/2 || s.guarded+guarded > maxTxnOps/2 || (s.bytes > 0 && s.bytes+bytesOf(w) > maxTxnBytes) {
		return false
	}
	if s.keys == nil {
		s.keys = map[string]bool{}
	}
	for _, k := range keys {
		s.keys[k] = true
	}
	s.ops, s.guarded, s.bytes = s.ops+ops, s.guarded+guarded, s.bytes+bytesOf(w)
	return true
}

func bytesOf(w write) int {
	n := 0
	for _, c := range w.changes {
		n += len(c.key) + len(c.value) + 256 // a numbered value is encoded later
	}
	return n
}

// txn commits group as one transaction. When a compare fails, the writes
// whose own records changed fail with ErrConflict and the rest go again.
func (e *Etcd) txn(group []write) {
	for attempt := 1; len(group) > 0; attempt++ {
		e.mu.Lock()
		t, refused := e.build(group)
		for _, w := range refused {
			e.forget(w)
			e.wake()
		}
		group = t.writes
		var resp *clientv3.TxnResponse
		var err error
		if len(group) > 0 && e.closing.Load() && e.Healthy() != nil {
			// Stopping with etcd down: do not make the stop wait a
			// timeout per transaction still queued.
			err = fmt.Errorf("not sent: stopping while etcd takes no writes (%w)", e.Healthy())
		} else if len(group) > 0 {
			ctx, cancel := context.WithTimeout(e.ctx, e.timeout)
			resp, err = e.cli.Txn(ctx).If(t.cmps...).Then(t.ops...).Else(t.gets...).Commit()
			cancel()
		}
		var refresh []Change
		var failed []write
		var conflicts []error // for the failed writes in order, after a conflict
		switch {
		case len(group) == 0:
		case err != nil:
			err = unavailable(err)
			for _, w := range group {
				e.forget(w)
			}
			failed, group = group, nil
			e.wake()
		case resp.Succeeded:
			rev := resp.Header.Revision
			e.own[rev] = true
			for _, w := range group {
				for _, c := range w.changes {
					switch k := key2(c.bucket, c.key); {
					case c.num != nil:
					case c.value == nil:
						delete(e.known, k)
						delete(e.seen, k)
					default:
						e.known[k], e.seen[k] = rev, rev
					}
				}
			}
			for b, n := range t.seqs {
				e.seqs[b] = seq{n: n, rev: rev}
			}
			failed, group = group, nil // answered with nil below
		default:
			cur := e.current(t, resp)
			var retry []write
			for _, w := range group {
				changed := e.changed(w, cur)
				if len(changed) == 0 {
					retry = append(retry, w)
					continue
				}
				e.forget(w)
				refresh = append(refresh, e.refresh(w, cur, resp.Header.Revision)...)
				failed = append(failed, w)
				conflicts = append(conflicts, fmt.Errorf("%w: %s", ErrConflict, strings.Join(changed, ", ")))
			}
			group = retry
			if attempt == maxAttempts {
				failed, group = append(failed, group...), nil
			}
		}
		e.tell(refresh)
		e.mu.Unlock()
		e.setHealth(err)
		for _, w := range refused {
			w.answer(fmt.Errorf("%w: it builds on a write of this instance's that failed", ErrConflict))
		}
		for i, w := range failed {
			switch {
			case i < len(conflicts):
				w.answer(conflicts[i])
			case resp != nil && !resp.Succeeded: // out of attempts
				w.answer(fmt.Errorf("%w: other instances kept numbering entries first", ErrConflict))
			default:
				w.answer(err)
			}
		}
	}
}

// built is one transaction.
type built struct {
	writes    []write
	cmps      []clientv3.Cmp
	ops, gets []clientv3.Op
	guards    map[string]int64  // key -> the revision compared
	seqs      map[string]uint64 // numbered bucket -> its counter after
	counters  []string          // numbered buckets, in the order of their gets
	getKeys   []string          // guarded keys, in the order of their gets
}

// build makes group's transaction; callers hold mu. A write that says it
// builds on one of this instance's writes that failed (Own, after a
// failure) is refused at once: it would otherwise commit changes made on
// top of a change that never happened.
func (e *Etcd) build(group []write) (built, []write) {
	t := built{guards: map[string]int64{}, seqs: map[string]uint64{}}
	var refused []write
	for _, w := range group {
		ok := true
		for _, c := range w.changes {
			if c.num == nil && c.rev == Own && e.known[key2(c.bucket, c.key)] == 0 {
				ok = false
			}
		}
		if !ok {
			refused = append(refused, w)
			continue
		}
		t.writes = append(t.writes, w)
		for i := range w.changes {
			c := &w.changes[i]
			if c.num != nil {
				if _, ok := t.seqs[c.bucket]; !ok {
					cur := e.seqs[c.bucket]
					t.seqs[c.bucket] = cur.n
					t.counters = append(t.counters, c.bucket)
					k := e.prefix + seqDir + c.bucket
					t.cmps = append(t.cmps, clientv3.Compare(clientv3.ModRevision(k), "=", cur.rev))
				}
				n := t.seqs[c.bucket] + 1
				t.seqs[c.bucket] = n
				data, _ := json.Marshal(c.num.WithSeq(n)) // encode tried it
				t.ops = append(t.ops, clientv3.OpPut(e.key(c.bucket, SeqKey(n)), string(data)))
				continue
			}
			k := key2(c.bucket, c.key)
			if c.rev != Unchecked {
				rev := c.rev
				if rev == Own {
					rev = e.known[k]
				}
				t.guards[k] = rev
				t.getKeys = append(t.getKeys, k)
				t.cmps = append(t.cmps, clientv3.Compare(clientv3.ModRevision(e.key(c.bucket, c.key)), "=", rev))
			}
			if c.value == nil {
				t.ops = append(t.ops, clientv3.OpDelete(e.key(c.bucket, c.key)))
			} else {
				t.ops = append(t.ops, clientv3.OpPut(e.key(c.bucket, c.key), string(c.value)))
			}
		}
	}
	// The Else branch reads the counters, then the guarded records
	// (current reads them back in that order).
	for _, b := range t.counters {
		t.ops = append(t.ops, clientv3.OpPut(e.prefix+seqDir+b, strconv.FormatUint(t.seqs[b], 10)))
		t.gets = append(t.gets, clientv3.OpGet(e.prefix+seqDir+b))
	}
	for _, k := range t.getKeys {
		b, key := splitKey2(k)
		t.gets = append(t.gets, clientv3.OpGet(e.key(b, key)))
	}
	return t, refused
}

// current reads what a failed transaction's Else branch got: each guarded
// key's revision (0: absent), and the counters, which it updates.
func (e *Etcd) current(t built, resp *clientv3.TxnResponse) map[string]*Change {
	cur := map[string]*Change{}
	rs := resp.Responses
	for i, b := range t.counters {
		if kvs := rs[i].GetResponseRange().GetKvs(); len(kvs) > 0 {
			n, _ := strconv.ParseUint(string(kvs[0].Value), 10, 64)
			if kvs[0].ModRevision > e.seqs[b].rev {
				e.seqs[b] = seq{n: n, rev: kvs[0].ModRevision}
			}
		}
	}
	for i, k := range t.getKeys {
		r := rs[len(t.counters)+i].GetResponseRange()
		c := &Change{Rev: 0}
		c.Bucket, c.Key = splitKey2(k)
		if kvs := r.GetKvs(); len(kvs) > 0 {
			c.Value, c.Rev = kvs[0].Value, kvs[0].ModRevision
		}
		cur[k] = c
	}
	return cur
}

func splitKey2(k string) (string, string) {
	for i := range len(k) {
		if k[i] == '/' {
			return k[:i], k[i+1:]
		}
	}
	return k, ""
}

// changed is the records w was decided from that are not current any
// more ("bucket/key"); none: w may be sent again.
func (e *Etcd) changed(w write, cur map[string]*Change) []string {
	var out []string
	for _, c := range w.changes {
		if c.num != nil || c.rev == Unchecked {
			continue
		}
		k := key2(c.bucket, c.key)
		want := c.rev
		if want == Own {
			want = e.known[k]
		}
		if cur[k] == nil || cur[k].Rev != want {
			out = append(out, k)
		}
	}
	return out
}

// forget notes that w's records are not what this instance last wrote:
// a later write that builds on them (Own) is refused until they are read
// again.
func (e *Etcd) forget(w write) {
	for _, c := range w.changes {
		if c.num == nil {
			e.known[key2(c.bucket, c.key)] = 0
			e.unread[key2(c.bucket, c.key)] = true
		}
	}
}

// refresh is what the follower is told of w's records after a conflict:
// each as it is now (a deleted one at the revision it was found absent at).
func (e *Etcd) refresh(w write, cur map[string]*Change, at int64) []Change {
	var out []Change
	for _, c := range w.changes {
		if c.num != nil || c.rev == Unchecked {
			continue
		}
		k := key2(c.bucket, c.key)
		now := cur[k]
		if now == nil {
			continue
		}
		rev := now.Rev
		if rev == 0 {
			rev = at
		}
		if rev < e.seen[k] {
			continue
		}
		e.seen[k] = rev
		delete(e.unread, k)
		out = append(out, Change{Bucket: now.Bucket, Key: now.Key, Value: now.Value, Rev: now.Rev})
	}
	return out
}

// wake starts the re-reader, if it is not running.
func (e *Etcd) wake() {
	if e.rereading {
		return
	}
	e.rereading = true
	e.wg.Add(1)
	go e.rereadLoop()
}

// rereadLoop reads the records of writes whose outcome is unknown until
// etcd answers, and tells the follower of them as they are.
func (e *Etcd) rereadLoop() {
	defer e.wg.Done()
	delay := 250 * time.Millisecond
	for {
		e.mu.Lock()
		if len(e.unread) == 0 || e.ctx.Err() != nil {
			e.rereading = false
			e.mu.Unlock()
			return
		}
		var keys []string
		for k := range e.unread {
			if len(keys) == maxTxnOps {
				break
			}
			keys = append(keys, k)
		}
		e.mu.Unlock()
		ops := make([]clientv3.Op, len(keys))
		for i, k := range keys {
			b, key := splitKey2(k)
			ops[i] = clientv3.OpGet(e.key(b, key))
		}
		ctx, cancel := context.WithTimeout(e.ctx, e.timeout)
		resp, err := e.cli.Txn(ctx).Then(ops...).Commit()
		cancel()
		if err != nil {
			sleep(e.ctx, delay)
			delay = min(2*delay, 5*time.Second)
			continue
		}
		delay = 250 * time.Millisecond
		e.mu.Lock()
		var out []Change
		for i, k := range keys {
			b, key := splitKey2(k)
			c := Change{Bucket: b, Key: key}
			rev := resp.Header.Revision
			if kvs := resp.Responses[i].GetResponseRange().GetKvs(); len(kvs) > 0 {
				c.Value, c.Rev, rev = kvs[0].Value, kvs[0].ModRevision, kvs[0].ModRevision
			}
			delete(e.unread, k)
			if rev < e.seen[k] {
				continue
			}
			e.seen[k] = rev
			out = append(out, c)
		}
		e.tell(out)
		e.mu.Unlock()
	}
}

// probe checks that etcd answers when no write has said so lately, so
// that an idle instance knows of a lost quorum before a client asks it
// for a lease. A linearizable read needs the quorum, as a write does.
func (e *Etcd) probe() {
	defer e.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-e.ctx.Done():
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(e.ctx, min(e.timeout, 2*time.Second))
		_, err := e.cli.Get(ctx, e.prefix+seqDir+"probe")
		cancel()
		if e.ctx.Err() != nil {
			return
		}
		if err != nil {
			err = unavailable(err)
		}
		e.setHealth(err)
	}
}

// unhealthyAfter is how many requests in a row must fail before etcd is
// taken to be down: one can fail on a member that has just gone while
// the others keep the quorum, and the client then moves to another.
const unhealthyAfter = 2

// setHealth records whether etcd took the last request (nil) and logs each
// change of it once.
func (e *Etcd) setHealth(err error) {
	if err != nil && !errors.Is(err, ErrUnavailable) {
		return
	}
	e.health.Lock()
	was := e.healthErr
	if err == nil {
		e.failures = 0
		e.healthErr = nil
	} else if e.failures++; e.failures >= unhealthyAfter {
		e.healthErr = err
	}
	err = e.healthErr
	e.health.Unlock()
	switch {
	case was == nil && err != nil:
		e.log.Error("etcd is not taking writes: no new leases or enrollments until it does; valid leases are renewed from memory", "err", err)
	case was != nil && err == nil:
		e.log.Info("etcd takes writes again")
	}
}
