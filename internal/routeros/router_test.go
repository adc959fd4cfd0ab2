package routeros

import (
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bootstrapd/bootstrapd/internal/routeros/routerostest"
)

// TestRunRetriesAndFollowsNodes: a router that does not answer is retried
// with backoff (Run itself never blocks); once it answers, the site is
// applied, and a node enrolled later gets its DNS record, a retired one
// loses it.
func TestRunRetriesAndFollowsNodes(t *testing.T) {
	rt := routerostest.New(routerostest.Options{Version: "7.19", User: "b", Password: "p"})
	addr := rt.ListenTLS(t)
	var logs strings.Builder
	var logMu sync.Mutex
	r := &Router{Conn: NewConn(Dialer{Address: addr, User: "b", Password: "p", Fingerprint: rt.Fingerprint(), Timeout: 200 * time.Millisecond}),
		Marker: marker, Log: slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &logMu}, nil))}
	var mu sync.Mutex
	s := site(0, "bootstrapd")
	s.APIFrom = append(s.APIFrom, "127.0.0.1/32") // where bootstrapd connects from
	current := func() Site { mu.Lock(); defer mu.Unlock(); c := s; c.Nodes = append([]Node(nil), s.Nodes...); return c }
	// As the inventory signals: a channel closed at the next change.
	changedCh := make(chan struct{})
	changed := func() <-chan struct{} { mu.Lock(); defer mu.Unlock(); return changedCh }
	kick := func(nodes ...Node) {
		mu.Lock()
		s.Nodes = nodes
		close(changedCh)
		changedCh = make(chan struct{})
		mu.Unlock()
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	rt.Hang()
	go func() { r.Run(ctx, current, changed); close(done) }()
	defer func() { cancel(); <-done }()

	eventually(t, "a failed sync", func() bool { return r.Status().Failures >= 1 })
	rt.Resume()
	eventually(t, "the site applied after the router came back", func() bool { return !r.Status().LastOK.IsZero() })
	if st := r.Status(); st.Failures != 0 || st.LastError != "" {
		t.Errorf("status after success: %+v", st)
	}
	logMu.Lock()
	if !strings.Contains(logs.String(), "router sync failed; retrying") || strings.Contains(logs.String(), "=p ") {
		t.Errorf("logs:\n%s", logs.String())
	}
	logMu.Unlock()

	n1 := Node{Hostname: "n1", MAC: "52:54:00:00:00:01", IP: netip.MustParseAddr("10.77.0.101")}
	kick(n1)
	eventually(t, "n1's DNS record", func() bool { return hasName(rt, "n1.lab.example") })
	kick()
	eventually(t, "n1's DNS record removed", func() bool { return !hasName(rt, "n1.lab.example") })
}

func hasName(rt *routerostest.Router, name string) bool {
	for _, row := range rt.Rows("/ip/dns/static") {
		if row["name"] == name {
			return true
		}
	}
	return false
}

// eventually polls cond for up to 10 s: long enough for a loaded CI
// machine, short enough that a broken sync fails the test.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

type lockedWriter struct {
	w  *strings.Builder
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestAllows(t *testing.T) {
	local := netip.MustParseAddr("10.77.0.2")
	for _, c := range []struct {
		list string
		want bool
	}{
		{"", true},
		{"10.77.0.2/32", true},
		{"10.77.0.0/24", true},
		{"10.77.0.2", true},
		{"192.0.2.1, 10.77.0.0/16", true},
		{"10.77.0.3/32", false},
		{"10.78.0.0/16,192.0.2.1", false},
		{"not-an-address", false},
		{"::ffff:10.77.0.2", true},
	} {
		if got := allows(c.list, local); got != c.want {
			t.Errorf("allows(%q, %s) = %v", c.list, local, got)
		}
	}
	if allows("10.0.0.0/8", netip.Addr{}) {
		t.Error("an unknown local address passed a list")
	}
}
