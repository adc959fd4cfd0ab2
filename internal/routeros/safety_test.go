package routeros

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/bootstrapd/bootstrapd/internal/routeros/routerostest"
)

// allocated runs f and returns how many bytes the process allocated
// meanwhile. TotalAlloc counts what was freed again too, so a buffer made
// and dropped in between is seen.
func allocated(f func()) uint64 {
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// chunks splits b into pieces of n bytes.
func chunks(b []byte, n int) [][]byte {
	var out [][]byte
	for len(b) > n {
		out = append(out, b[:n])
		b = b[n:]
	}
	return append(out, b)
}

// word encodes one API word (the manual's length prefix, then the bytes).
func word(w string) []byte {
	n := len(w)
	var p []byte
	switch {
	case n < 0x80:
		p = []byte{byte(n)}
	case n < 0x4000:
		p = []byte{byte(n>>8) | 0x80, byte(n)}
	case n < 0x200000:
		p = []byte{byte(n>>16) | 0xC0, byte(n >> 8), byte(n)}
	default:
		p = []byte{byte(n>>24) | 0xE0, byte(n >> 16), byte(n >> 8), byte(n)}
	}
	return append(p, w...)
}

// sentence encodes words and the empty word that ends them.
func sentence(words ...string) []byte {
	var b []byte
	for _, w := range words {
		b = append(b, word(w)...)
	}
	return append(b, 0)
}

// TestConnHostileReplies: whatever lengths a router declares, and however
// slowly it sends, a command costs bounded memory and at most the
// timeout, the error names the router, and the next command gets a new
// session.
func TestConnHostileReplies(t *testing.T) {
	const budget = 32 << 20 // well under what the lengths below declare
	bigName := strings.Repeat("x", 1_000_000)
	var never [][]byte // a 512 KiB word's prefix, then 1 KiB at a time for longer than the timeout
	never = append(never, []byte{0xC8, 0x00, 0x00})
	for range 500 {
		never = append(never, bytes.Repeat([]byte("y"), 1024))
	}
	for _, c := range []struct {
		name string
		raw  routerostest.Raw
		want string // in the error; "" for a reply
	}{
		{"a 4 GiB word", routerostest.Raw{Chunks: [][]byte{{0xF0, 0xFF, 0xFF, 0xFF, 0xFF}}, Hold: 10 * time.Second},
			"sent an oversized word: 4294967295 bytes"},
		{"a 64 MiB word, trickled", routerostest.Raw{
			Chunks: append([][]byte{{0xE4}, {0}, {0}, {0}}, chunks(bytes.Repeat([]byte("z"), 160<<10), 4096)...),
			Gap:    50 * time.Millisecond, Hold: 10 * time.Second},
			"sent an oversized word: 67108864 bytes"},
		{"a reserved control byte", routerostest.Raw{Chunks: [][]byte{sentence("!re"), {0xF8, 'x'}}, Hold: 10 * time.Second},
			"reserved control byte 0xF8"},
		{"a word that never ends", routerostest.Raw{Chunks: never, Gap: 20 * time.Millisecond},
			"i/o timeout"},
		{"a large word, trickled, then the end of the reply", routerostest.Raw{
			Chunks: chunks(append(sentence("!re", "=name="+bigName), sentence("!done")...), 4096), Gap: time.Millisecond},
			""},
	} {
		t.Run(c.name, func(t *testing.T) {
			r, d := newRouter(t)
			d.Timeout = 3 * time.Second
			conn := NewConn(d)
			defer conn.Close()
			r.RawNext("/system/identity/print", c.raw)
			var got []string
			var err error
			start := time.Now()
			n := allocated(func() { got, err = names(conn, "/system/identity/print") })
			took := time.Since(start)
			t.Logf("%v, %d MiB allocated, error: %v", took.Round(time.Millisecond), n>>20, err)
			if took > d.Timeout+500*time.Millisecond {
				t.Errorf("took %v, more than the timeout %v", took, d.Timeout)
			}
			if n > budget {
				t.Errorf("allocated %d MiB, want under %d MiB", n>>20, budget>>20)
			}
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("reply: %v", err)
			case c.want == "" && (len(got) != 1 || got[0] != bigName):
				t.Fatalf("reply: %d rows", len(got))
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), d.Address)):
				t.Fatalf("error %v, want it to name %s and say %q", err, d.Address, c.want)
			}
			if _, err := conn.Run(context.Background(), "/system/identity/print"); err != nil {
				t.Errorf("the next command: %v", err)
			}
		})
	}
}

// names runs a command and keeps only the rows' names, so the reply
// itself is garbage before memory is counted.
func names(c *Conn, command string) ([]string, error) {
	reply, err := c.Run(context.Background(), command)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, s := range reply.Re {
		out = append(out, s.Map["name"])
	}
	return out, nil
}

// TestConnRedialsBrokenSession: after the router reboots under an idle
// session, the next command dials again and runs, instead of failing on
// the dead session; an add is not sent twice.
func TestConnRedialsBrokenSession(t *testing.T) {
	for _, c := range []struct {
		words  []string
		redial bool
	}{
		{[]string{"/ip/address/print"}, true},
		{[]string{"/ip/dns/static/set", "=.id=*1", "=ttl=1h"}, true},
		// The router may have run an add before the connection broke: a
		// second one could make a second row, so the caller hears of it.
		{[]string{"/ip/pool/add", "=name=p", "=ranges=10.0.0.1-10.0.0.9"}, false},
	} {
		t.Run(c.words[0], func(t *testing.T) {
			r, d := newRouter(t)
			conn := NewConn(d)
			defer conn.Close()
			ctx := context.Background()
			if _, err := conn.Run(ctx, "/system/identity/print"); err != nil {
				t.Fatal(err)
			}
			r.Reboot()
			_, err := conn.Run(ctx, c.words...)
			var trap *TrapError
			if ran := err == nil || errors.As(err, &trap); ran != c.redial {
				t.Fatalf("after a reboot: %v, want a redial: %v", err, c.redial)
			}
			if want := map[bool]int{true: 2, false: 1}[c.redial]; logins(r) != want {
				t.Errorf("%d logins, want %d", logins(r), want)
			}
			if _, err := conn.Run(ctx, "/system/identity/print"); err != nil {
				t.Errorf("the next command: %v", err)
			}
		})
	}
}

// siteRouter is a Router on a test router of the release, with a site
// whose api_from lets the test in.
func siteRouter(t *testing.T, version string) (*routerostest.Router, *Router, Site) {
	t.Helper()
	rt := routerostest.New(routerostest.Options{Version: version, User: "b", Password: "p"})
	r := &Router{Conn: NewConn(Dialer{Address: rt.ListenTLS(t), User: "b", Password: "p", Fingerprint: rt.Fingerprint(), Timeout: 2 * time.Second}),
		Marker: marker, Log: slog.New(slog.DiscardHandler)}
	t.Cleanup(func() { r.Conn.Close() })
	s := site(0, "router")
	s.APIFrom = []string{"10.77.0.2/32", "127.0.0.1/32"}
	return rt, r, s
}

// TestRouterAppliesAfterReboot: a router that rebooted between two applies
// (an upgrade under a running daemon) costs a new login, not a failed
// sync.
func TestRouterAppliesAfterReboot(t *testing.T) {
	rt, r, s := siteRouter(t, "7.19")
	ctx := context.Background()
	if _, _, err := r.Apply(ctx, s, false); err != nil {
		t.Fatal(err)
	}
	rt.Reboot()
	s.Domain = "lab2.example" // something to write
	if _, n, err := r.Apply(ctx, s, false); err != nil || n != 1 {
		t.Fatalf("apply after the reboot: %d changes, %v", n, err)
	}
	if logins(rt) != 2 {
		t.Errorf("%d logins, want 2: the second apply needed a new session", logins(rt))
	}
	if st := r.Status(); st.Failures != 0 {
		t.Errorf("status: %+v", st)
	}
}

// TestRouterFollowsUpgrade: after an upgrade from 7.19 to 7.24 under a
// running daemon, the next plan uses 7.24's available-from for api_from
// (the version is asked again on the new session) and converges.
func TestRouterFollowsUpgrade(t *testing.T) {
	rt, r, s := siteRouter(t, "7.19")
	ctx := context.Background()
	if _, _, err := r.Apply(ctx, s, false); err != nil {
		t.Fatal(err)
	}
	apiSSL := func() map[string]string {
		for _, row := range rt.Rows("/ip/service") {
			if row["name"] == "api-ssl" && row["dynamic"] != "true" {
				return row
			}
		}
		t.Fatal("no api-ssl row")
		return nil
	}
	if got := apiSSL()["address"]; got != "10.77.0.2/32,127.0.0.1/32" {
		t.Fatalf("on 7.19, address = %q", got)
	}
	rt.Upgrade("7.24")
	s.APIFrom = append(s.APIFrom, "10.77.0.3/32")
	plan, n, err := r.Apply(ctx, s, false)
	if err != nil {
		t.Fatalf("apply after the upgrade: %v", err)
	}
	if n != 1 || plan.Changes[0].Props["available-from"] == "" {
		t.Errorf("apply after the upgrade: %d changes %+v, want one setting available-from", n, plan.Changes)
	}
	if got := apiSSL()["available-from"]; got != "10.77.0.2/32,127.0.0.1/32,10.77.0.3/32" {
		t.Errorf("on 7.24, available-from = %q", got)
	}
	if again, err := r.Plan(ctx, s, false); err != nil || len(again.Changes) != 0 {
		t.Errorf("plan after the apply: %+v %v", again.Changes, err)
	}
}

// TestRouterRefusesLockout: an api_from that leaves out the address
// bootstrapd connects from is refused, with the address to add; one that
// lets it in is applied, and bootstrapd can still log in afterwards.
func TestRouterRefusesLockout(t *testing.T) {
	for _, c := range []struct {
		apiFrom []string
		refused bool
	}{
		{[]string{"10.77.0.2/32"}, true},
		{[]string{"10.77.0.0/24", "192.0.2.1"}, true},
		{[]string{"10.77.0.2/32", "127.0.0.1/32"}, false},
		{[]string{"127.0.0.0/8"}, false},
		{[]string{"10.77.0.2", "127.0.0.1"}, false},
	} {
		t.Run(strings.Join(c.apiFrom, ","), func(t *testing.T) {
			rt, r, s := siteRouter(t, "7.19")
			s.APIFrom = c.apiFrom
			ctx := context.Background()
			plan, _, err := r.Apply(ctx, s, false)
			switch {
			case c.refused && (err == nil || !strings.Contains(err.Error(), "add 127.0.0.1/32 to api_from")):
				t.Fatalf("apply: %v, want a refusal naming 127.0.0.1/32", err)
			case c.refused && (len(plan.Conflicts) != 1 || plan.Conflicts[0].Path != "/ip/service"):
				t.Errorf("conflicts: %+v", plan.Conflicts)
			case !c.refused && err != nil:
				t.Fatalf("apply: %v", err)
			}
			// Whatever happened, bootstrapd still gets in.
			fresh := NewConn(Dialer{Address: r.Conn.d.Address, User: "b", Password: "p", Fingerprint: rt.Fingerprint(), Timeout: 2 * time.Second})
			defer fresh.Close()
			if _, err := fresh.Run(ctx, "/system/identity/print"); err != nil {
				t.Errorf("a new session after the apply: %v", err)
			}
		})
	}
}
