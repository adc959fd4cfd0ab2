// Package logbuf is the daemon's log output. A logger copies each line
// into memory and one goroutine writes them out, so that a slow or stalled
// reader of the output (a busy journald, a paused pager, a full pipe)
// never stalls whoever logs: a DHCP reply, or a request holding a lock.
// slog's handlers hold their own mutex across the write; in a 500-node
// boot storm, requests spent more time queued on that mutex, behind
// writes a descheduled thread had started, than in anything they did.
package logbuf

import (
	"io"
	"sync"
)

// Writer buffers what is written to it for out. Lines written while more
// than max bytes wait are dropped, and counted in the next write.
type Writer struct {
	out  io.Writer
	max  int
	note func(dropped int) []byte

	mu      sync.Mutex
	buf     []byte
	dropped int
	closed  bool

	wake chan struct{}
	done chan struct{}
}

// New starts a Writer to out holding at most max bytes. note formats the
// line that says how many lines were dropped, in the log's own format.
func New(out io.Writer, max int, note func(dropped int) []byte) *Writer {
	w := &Writer{out: out, max: max, note: note, wake: make(chan struct{}, 1), done: make(chan struct{})}
	go w.run()
	return w
}

// Write queues p, one log line, and returns at once. It never fails: a
// line that does not fit is dropped and counted.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	switch {
	case w.closed:
		w.mu.Unlock()
		return w.out.Write(p) // after Close (a last line at exit): directly
	case len(w.buf)+len(p) > w.max:
		w.dropped++
	default:
		w.buf = append(w.buf, p...)
	}
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
	return len(p), nil
}

// run writes what is queued, all of it in one write, each time it is woken.
func (w *Writer) run() {
	defer close(w.done)
	var out []byte
	for range w.wake {
		w.mu.Lock()
		out, w.buf = w.buf, out[:0]
		dropped := w.dropped
		w.dropped = 0
		closed := w.closed
		w.mu.Unlock()
		if dropped > 0 {
			out = append(out, w.note(dropped)...)
		}
		if len(out) > 0 {
			w.out.Write(out) // nowhere to say it failed
		}
		if closed {
			return
		}
	}
}

// Close writes what is queued and stops; later writes go to out directly.
func (w *Writer) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
	<-w.done
	return nil
}
