package ui

import (
	"errors"
	"testing"
	"time"
)

// clock is a settable time for Logins.now.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

func newTestLogins(l Limits) (*Logins, *clock) {
	c := &clock{t: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}
	lg := NewLogins(l)
	lg.now = c.now
	return lg, c
}

func TestDefaults(t *testing.T) {
	got := NewLogins(Limits{}).Limits()
	want := Limits{CodeTTL: DefaultCodeTTL, MaxCodes: DefaultMaxCodes, SessionTTL: DefaultSessionTTL, MaxSessions: DefaultMaxSessions}
	if got != want {
		t.Errorf("zero Limits became %+v, want the defaults %+v", got, want)
	}
}

// TestRedeem: a code is good once, before it expires; what it buys lasts
// its own lifetime.
func TestRedeem(t *testing.T) {
	cases := []struct {
		name    string
		wait    time.Duration // between minting and redeeming
		replay  bool          // redeem it a first time before
		garbage bool          // redeem something never minted
		ok      bool
	}{
		{name: "fresh", wait: time.Second, ok: true},
		{name: "just before expiry", wait: DefaultCodeTTL - time.Millisecond, ok: true},
		{name: "at expiry", wait: DefaultCodeTTL},
		{name: "long after", wait: time.Hour},
		{name: "replayed", wait: time.Second, replay: true},
		{name: "never minted", garbage: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			lg, clk := newTestLogins(Limits{})
			code, exp, err := lg.NewCode()
			if err != nil {
				t.Fatal(err)
			}
			if !exp.Equal(clk.t.Add(DefaultCodeTTL)) || len(code) < 40 {
				t.Fatalf("code %q expires %v", code, exp)
			}
			clk.advance(c.wait)
			if c.replay {
				if _, _, err := lg.Redeem(code); err != nil {
					t.Fatalf("first use: %v", err)
				}
			}
			if c.garbage {
				code = "not-a-code"
			}
			id, sexp, err := lg.Redeem(code)
			if c.ok != (err == nil) {
				t.Fatalf("Redeem: %v, want ok=%v", err, c.ok)
			}
			if !c.ok {
				if !errors.Is(err, ErrCode) {
					t.Errorf("refusal %v, want ErrCode", err)
				}
				return
			}
			if id == code || !lg.Valid(id) || !sexp.Equal(clk.t.Add(DefaultSessionTTL)) {
				t.Errorf("session %q (expires %v) not valid, or is the code", id, sexp)
			}
			if lg.Valid(code) {
				t.Error("the code itself passes as a session")
			}
			if codes, _ := lg.Counts(); codes != 0 {
				t.Errorf("%d codes left after the only one was spent", codes)
			}
		})
	}
}

func TestSessionExpiry(t *testing.T) {
	lg, clk := newTestLogins(Limits{SessionTTL: time.Hour})
	code, _, _ := lg.NewCode()
	id, _, err := lg.Redeem(code)
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		advance time.Duration
		valid   bool
	}{{0, true}, {59 * time.Minute, true}, {time.Minute, false}, {0, false}} {
		clk.advance(step.advance)
		if got := lg.Valid(id); got != step.valid {
			t.Errorf("at %v: Valid = %v, want %v", clk.t, got, step.valid)
		}
	}
	if _, sessions := lg.Counts(); sessions != 0 {
		t.Errorf("an expired session is still held (%d)", sessions)
	}
	for _, id := range []string{"", "x", id + "x"} {
		if lg.Valid(id) {
			t.Errorf("Valid(%q)", id)
		}
	}
}

// TestBounds: however many codes are minted or logins made, memory holds
// at most the limit, the newest win, and expired ones are swept first.
func TestBounds(t *testing.T) {
	lg, clk := newTestLogins(Limits{MaxCodes: 3, MaxSessions: 2})
	var codes []string
	for range 10 {
		c, _, err := lg.NewCode()
		if err != nil {
			t.Fatal(err)
		}
		codes = append(codes, c)
		clk.advance(time.Second)
	}
	if n, _ := lg.Counts(); n != 3 {
		t.Fatalf("%d codes held, want the limit 3", n)
	}
	if _, _, err := lg.Redeem(codes[6]); err == nil {
		t.Error("a code pushed out by newer ones still works")
	}
	var ids []string
	for _, c := range codes[7:] {
		id, _, err := lg.Redeem(c)
		if err != nil {
			t.Fatalf("one of the newest codes: %v", err)
		}
		ids = append(ids, id)
		clk.advance(time.Second)
	}
	if _, n := lg.Counts(); n != 2 {
		t.Fatalf("%d sessions held, want the limit 2", n)
	}
	if lg.Valid(ids[0]) || !lg.Valid(ids[1]) || !lg.Valid(ids[2]) {
		t.Error("the oldest session should have made way for the newest two")
	}

	// Expired codes go before live ones.
	lg, clk = newTestLogins(Limits{MaxCodes: 2, CodeTTL: time.Minute})
	old, _, _ := lg.NewCode()
	clk.advance(50 * time.Second)
	live, _, _ := lg.NewCode()
	clk.advance(20 * time.Second) // old has expired, live has not
	lg.NewCode()
	if n, _ := lg.Counts(); n != 2 {
		t.Errorf("%d codes held, want 2", n)
	}
	if _, _, err := lg.Redeem(live); err != nil {
		t.Errorf("a live code was pushed out while an expired one was held: %v", err)
	}
	if _, _, err := lg.Redeem(old); err == nil {
		t.Error("an expired code worked")
	}
}
