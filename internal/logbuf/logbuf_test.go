package logbuf

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/bootstrapd/bootstrapd/internal/testlog"
)

// stalled is an output whose writes wait until it is released, as a pipe
// nobody reads does.
type stalled struct {
	release chan struct{}
	testlog.Buffer
}

func (s *stalled) Write(p []byte) (int, error) {
	<-s.release
	return s.Buffer.Write(p)
}

func note(n int) []byte { return fmt.Appendf(nil, "dropped %d\n", n) }

// A stalled output stalls nobody who logs; what does not fit is dropped,
// counted, and said once the output moves again; nothing else is lost or
// reordered.
func TestStalledOutput(t *testing.T) {
	out := &stalled{release: make(chan struct{})}
	w := New(out, 100, note)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 50 {
			fmt.Fprintf(w, "line %02d\n", i) // 8 bytes each
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("writes to a stalled output blocked the logger")
	}
	close(out.release)
	w.Close()

	// Every line is there, in order, or counted where it is missing: a
	// note says how many lines were dropped right before it.
	got := out.String()
	next, gap, kept := 0, 0, 0
	for _, l := range strings.Split(strings.TrimSpace(got), "\n") {
		var i, n int
		if _, err := fmt.Sscanf(l, "dropped %d", &n); err == nil {
			gap += n
			continue
		}
		if _, err := fmt.Sscanf(l, "line %d", &i); err != nil {
			t.Fatalf("unexpected line %q", l)
		}
		if i != next+gap {
			t.Fatalf("line %d after line %d and %d counted as dropped:\n%s", i, next-1, gap, got)
		}
		next, gap = i+1, 0
		kept++
	}
	if next+gap != 50 || kept < 12 {
		t.Fatalf("%d lines kept, %d accounted for, want 50 and at least the 12 that fit:\n%s", kept, next+gap, got)
	}
}

// Close writes everything queued; a line after it still gets out.
func TestCloseFlushes(t *testing.T) {
	out := &testlog.Buffer{}
	w := New(out, 1<<20, note)
	for i := range 1000 {
		fmt.Fprintf(w, "%d\n", i)
	}
	w.Close()
	fmt.Fprintf(w, "after\n")
	if got := out.String(); strings.Count(got, "\n") != 1001 || !strings.HasSuffix(got, "999\nafter\n") {
		t.Fatalf("%d lines after Close, want 1001 ending with the late one:\n%.200s", strings.Count(got, "\n"), got)
	}
}
