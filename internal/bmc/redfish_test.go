package bmc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stmcginnis/gofish"
	"github.com/stmcginnis/gofish/schemas"

	"github.com/bootstrapd/bootstrapd/internal/bmc/redfishtest"
)

// testPassword is what every test logs in with; tests grep for it.
const testPassword = "hunter2-Secret-42"

func standIn(t *testing.T, o redfishtest.Options) (*redfishtest.Server, *url.URL) {
	t.Helper()
	if o.User == "" {
		o.User, o.Password = "admin", testPassword
	}
	s := redfishtest.Start(t, o)
	u, err := url.Parse(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	scheme := "redfish"
	if o.PlainHTTP {
		scheme = "redfish+http"
	}
	return s, &url.URL{Scheme: scheme, Host: u.Host}
}

// logTo returns a logger writing into buf at debug level.
func logTo(buf *bytes.Buffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func TestRedfishPowerAndBoot(t *testing.T) {
	m := &redfishtest.MemMachine{}
	s, u := standIn(t, redfishtest.Options{Machine: m})
	var logs bytes.Buffer
	ctx := context.Background()
	b, err := Open(ctx, u, Credentials{User: "admin", Password: testPassword}, Options{Fingerprint: s.Fingerprint, Timeout: 5 * time.Second, Log: logTo(&logs)})
	if err != nil {
		t.Fatal(err)
	}
	if s.Sessions() != 1 {
		t.Fatalf("sessions open after Open: %d, want 1", s.Sessions())
	}
	steps := []struct {
		do        func() (string, error)
		wantState State
		wantOns   int
		wantReset int
	}{
		{func() (string, error) { return b.Power(ctx, PowerOff) }, Off, 0, 0}, // already off: nothing sent
		{func() (string, error) { return b.BootPXEOnce(ctx, true) }, Off, 0, 0},
		{func() (string, error) { return b.Power(ctx, PowerCycle) }, On, 1, 0}, // cycle when off: on
		{func() (string, error) { return b.Power(ctx, PowerCycle) }, On, 1, 1}, // cycle when on: restart
		{func() (string, error) { return b.Power(ctx, PowerOn) }, On, 1, 1},
		{func() (string, error) { return b.Power(ctx, PowerOff) }, Off, 1, 1},
		{func() (string, error) { return b.Power(ctx, PowerOn) }, On, 2, 1},
	}
	for i, st := range steps {
		answer, err := st.do()
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		state, words, err := b.PowerState(ctx)
		if err != nil {
			t.Fatalf("step %d: power state: %v", i, err)
		}
		ons, resets := m.Counts()
		if state != st.wantState || ons != st.wantOns || resets != st.wantReset {
			t.Errorf("step %d (%s): state %s (%s), ons %d, resets %d; want %s, %d, %d", i, answer, state, words, ons, resets, st.wantState, st.wantOns, st.wantReset)
		}
	}
	// The first power-on after the override booted from it, and cleared it.
	current, boots := s.Boot(0)
	if len(boots) != 3 || boots[0] != (redfishtest.BootOverride{Target: "Pxe", Enabled: "Once", Mode: "UEFI"}) ||
		boots[1].Enabled != "Disabled" || boots[2].Enabled != "Disabled" {
		t.Errorf("boots %+v, want the first of three with Pxe Once UEFI, the others Disabled", boots)
	}
	if current.Enabled != "Disabled" {
		t.Errorf("override after boot %+v, want Enabled Disabled", current)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if s.Sessions() != 0 {
		t.Errorf("sessions open after Close: %d, want 0", s.Sessions())
	}
	for _, r := range s.Requests() {
		if r.Auth == "basic" {
			t.Errorf("%s %s used basic auth; want the session token", r.Method, r.Path)
		}
	}
	if strings.Contains(logs.String(), testPassword) {
		t.Errorf("the log holds the password:\n%s", logs.String())
	}
}

// TestRedfishFailures opens and drives stand-ins that fail in each way a
// BMC does, and checks the error's kind, its words, and that neither it
// nor the log holds the password.
func TestRedfishFailures(t *testing.T) {
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	closed.Close()

	type env struct {
		s *redfishtest.Server
		u *url.URL
		o Options
		c Credentials
	}
	cases := []struct {
		name    string
		stand   redfishtest.Options
		adjust  func(e *env)
		act     func(ctx context.Context, b BMC) error // nil: the failure is at Open
		kind    error
		words   []string
		maxTime time.Duration
	}{
		{name: "wrong password", adjust: func(e *env) { e.c.Password = "wrong-" + testPassword },
			kind: ErrAuth, words: []string{"log in", "check the BMC user and password"}},
		{name: "wrong user", adjust: func(e *env) { e.c.User = "nobody" }, kind: ErrAuth},
		{name: "two systems", stand: redfishtest.Options{Systems: 2},
			kind: ErrProtocol, words: []string{"2 systems", "/redfish/v1/Systems/node1", "/redfish/v1/Systems/node2", "name the node's system in the URL"}},
		{name: "unknown system", adjust: func(e *env) { e.u.Path = "/redfish/v1/Systems/nope" },
			act:  func(ctx context.Context, b BMC) error { _, _, err := b.PowerState(ctx); return err },
			kind: ErrProtocol, words: []string{"HTTP 404", "was not found"}},
		{name: "wrong fingerprint", adjust: func(e *env) { e.o.Fingerprint = strings.Repeat("ab", 32) },
			kind: ErrCertificate, words: []string{"does not match the pinned"}},
		{name: "bad fingerprint", adjust: func(e *env) { e.o.Fingerprint = "abc" }, kind: ErrSettings, words: []string{"64 hex digits"}},
		{name: "no pin, no CA", adjust: func(e *env) { e.o.Fingerprint = "" }, kind: ErrSettings, words: []string{"no CA and no certificate fingerprint"}},
		{name: "boot override refused", stand: redfishtest.Options{RefuseBoot: true},
			act:  func(ctx context.Context, b BMC) error { _, err := b.BootPXEOnce(ctx, false); return err },
			kind: ErrBootUnsupported, words: []string{"HTTP 400", "BootSourceOverrideTarget is a read only property", "boot order"}},
		{name: "reset type not allowed", stand: redfishtest.Options{ResetTypes: []string{"GracefulShutdown"}},
			act:  func(ctx context.Context, b BMC) error { _, err := b.Power(ctx, PowerOn); return err },
			kind: ErrProtocol, words: []string{"allows ResetType [GracefulShutdown]"}},
		{name: "hangs", stand: redfishtest.Options{Hang: true}, adjust: func(e *env) { e.o.Timeout = 700 * time.Millisecond },
			kind: ErrTimeout, words: []string{"no answer within 700ms"}, maxTime: 3 * time.Second},
		{name: "nothing listening", adjust: func(e *env) { e.u.Host = closedAddr },
			kind: ErrUnreachable, words: []string{"connection refused"}, maxTime: 2 * time.Second},
		{name: "credentials in the URL", adjust: func(e *env) { e.u.User = url.UserPassword("admin", testPassword) },
			words: []string{"carries credentials", "bmc block"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, u := standIn(t, tc.stand)
			var logs bytes.Buffer
			e := &env{s: s, u: u, c: Credentials{User: "admin", Password: testPassword},
				o: Options{Fingerprint: s.Fingerprint, Timeout: 5 * time.Second, Log: logTo(&logs)}}
			if tc.adjust != nil {
				tc.adjust(e)
			}
			ctx := context.Background()
			start := time.Now()
			b, err := Open(ctx, e.u, e.c, e.o)
			if tc.act != nil {
				if err != nil {
					t.Fatalf("open: %v", err)
				}
				err = tc.act(ctx, b)
				b.Close()
			} else if err == nil {
				b.Close()
				t.Fatal("open succeeded")
			}
			took := time.Since(start)
			t.Logf("error: %v", err)
			if err == nil {
				t.Fatal("no error")
			}
			if tc.kind != nil && !errors.Is(err, tc.kind) {
				t.Errorf("error %q is not %q", err, tc.kind)
			}
			if !strings.Contains(err.Error(), "BMC ") {
				t.Errorf("error %q does not name the BMC", err)
			}
			for _, w := range tc.words {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if tc.maxTime > 0 && took > tc.maxTime {
				t.Errorf("took %s, want under %s", took, tc.maxTime)
			}
			if strings.Contains(err.Error(), testPassword) || strings.Contains(logs.String(), testPassword) {
				t.Errorf("the password is in the error or the log:\n%v\n%s", err, logs.String())
			}
		})
	}
}

func TestRedfishPlainHTTPAndSystemPath(t *testing.T) {
	s, u := standIn(t, redfishtest.Options{PlainHTTP: true, Systems: 2})
	u.Path = s.SystemPath(1)
	ctx := context.Background()
	b, err := Open(ctx, u, Credentials{User: "admin", Password: testPassword}, Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := b.Power(ctx, PowerOn); err != nil {
		t.Fatal(err)
	}
	var resets []string
	for _, r := range s.Requests() {
		if strings.HasSuffix(r.Path, "ComputerSystem.Reset") {
			resets = append(resets, r.Path)
		}
	}
	if len(resets) != 1 || resets[0] != s.SystemPath(1)+"/Actions/ComputerSystem.Reset" {
		t.Errorf("resets %v, want one on %s", resets, s.SystemPath(1))
	}
}

// TestRedfishRequestsMatchGofish: the requests Open, BootPXEOnce, Power
// and Close send are the ones a program using gofish the documented way
// sends for the same steps, so the product speaks Redfish as the library
// and its users do, not a dialect of its own.
func TestRedfishRequestsMatchGofish(t *testing.T) {
	writes := func(s *redfishtest.Server) []string {
		var out []string
		for _, r := range s.Requests() {
			if r.Method == "GET" {
				continue
			}
			body, _ := json.Marshal(r.Body)
			out = append(out, fmt.Sprintf("%s %s %s %s %d", r.Method, r.Path, r.Auth, body, r.Status))
		}
		return out
	}

	ours, u := standIn(t, redfishtest.Options{})
	ctx := context.Background()
	b, err := Open(ctx, u, Credentials{User: "admin", Password: testPassword}, Options{Fingerprint: ours.Fingerprint})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.BootPXEOnce(ctx, true); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Power(ctx, PowerOn); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	theirs, _ := standIn(t, redfishtest.Options{})
	api, err := gofish.ConnectContext(ctx, gofish.ClientConfig{Endpoint: theirs.URL, Username: "admin", Password: testPassword, Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	systems, err := api.Service.Systems()
	if err != nil || len(systems) != 1 {
		t.Fatalf("systems %v, %v", systems, err)
	}
	if err := systems[0].SetBoot(&schemas.Boot{BootSourceOverrideTarget: schemas.PxeBootSource,
		BootSourceOverrideEnabled: schemas.OnceBootSourceOverrideEnabled, BootSourceOverrideMode: schemas.UEFIBootSourceOverrideMode}); err != nil {
		t.Fatal(err)
	}
	if _, err := systems[0].Reset(schemas.OnResetType); err != nil {
		t.Fatal(err)
	}
	api.Logout()

	got, want := writes(ours), writes(theirs)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("bootstrapd sent:\n%s\ngofish sends:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if len(want) != 4 {
		t.Errorf("gofish sent %d writes, want 4 (session, Boot, Reset, logout):\n%s", len(want), strings.Join(want, "\n"))
	}
	t.Logf("both sent:\n%s", strings.Join(got, "\n"))
}
