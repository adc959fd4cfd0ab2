package pxe

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestQuietLog: a flood is counted in full and logged burst lines per
// interval; the first line after it says how many were held back; two
// transports share one metric.
func TestQuietLog(t *testing.T) {
	var buf bytes.Buffer
	reg := prometheus.NewRegistry()
	q := newQuietLog(slog.New(slog.NewTextHandler(&buf, nil)), "dhcp", reg)
	q.every = 50 * time.Millisecond
	other := newQuietLog(nil, "tftp", reg)
	for range 1000 {
		q.Warn("malformed", "dhcp: malformed packet", "peer", "10.0.0.9:68")
	}
	other.Warn("busy", "tftp: busy")
	if n := strings.Count(buf.String(), "\n"); n != quietBurst {
		t.Errorf("%d lines for 1000 events, want %d", n, quietBurst)
	}
	if got := testutil.ToFloat64(q.counter.WithLabelValues("dhcp", "malformed")); got != 1000 {
		t.Errorf("counted %v, want 1000", got)
	}
	if got := testutil.ToFloat64(q.counter.WithLabelValues("tftp", "busy")); got != 1 {
		t.Errorf("tftp counted %v on the shared metric, want 1", got)
	}
	time.Sleep(60 * time.Millisecond)
	buf.Reset()
	q.Warn("malformed", "dhcp: malformed packet")
	if !strings.Contains(buf.String(), "held_back=990") {
		t.Errorf("the line after the flood: %q", buf.String())
	}
	var nilq *quietLog
	nilq.Warn("x", "y") // must not panic
}
