package inventory

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"
)

var allStates = []State{Discovered, Enrolled, Installing, Installed, Joined, Ready, Failed, Retiring, Retired}

// legal is the lifecycle as the design describes it, written out pair by
// pair so that a change to the transitions table has to be made twice.
var legal = map[[2]State]bool{
	{Discovered, Enrolled}: true,

	{Enrolled, Installing}: true,
	{Enrolled, Failed}:     true,
	{Enrolled, Retiring}:   true,

	{Installing, Installed}: true,
	{Installing, Failed}:    true,
	{Installing, Enrolled}:  true,
	{Installing, Retiring}:  true,

	{Installed, Joined}:   true,
	{Installed, Failed}:   true,
	{Installed, Enrolled}: true,
	{Installed, Retiring}: true,

	{Joined, Ready}:    true,
	{Joined, Failed}:   true,
	{Joined, Enrolled}: true,
	{Joined, Retiring}: true,

	{Ready, Joined}:    true,
	{Ready, Failed}:    true,
	{Ready, Enrolled}:  true,
	{Ready, Retiring}:  true,
	{Failed, Enrolled}: true,
	{Failed, Retiring}: true,

	{Retiring, Retired}: true,
	{Retiring, Failed}:  true,

	{Retired, Enrolled}: true,
}

// pathTo is a legal way to get an enrolled node to each state.
var pathTo = map[State][]State{
	Enrolled:   nil,
	Installing: {Installing},
	Installed:  {Installing, Installed},
	Joined:     {Installing, Installed, Joined},
	Ready:      {Installing, Installed, Joined, Ready},
	Failed:     {Failed},
	Retiring:   {Retiring},
	Retired:    {Retiring, Retired},
}

func TestCanMove(t *testing.T) {
	for _, from := range allStates {
		for _, to := range allStates {
			if got, want := CanMove(from, to), legal[[2]State{from, to}]; got != want {
				t.Errorf("CanMove(%s, %s) = %v, want %v", from, to, got, want)
			}
		}
	}
	if CanMove("bogus", Enrolled) || CanMove(Enrolled, "bogus") {
		t.Error("CanMove accepts a state that does not exist")
	}
}

// putIn makes a node with this MAC in state s, by legal moves only.
func (ti *testInv) putIn(t *testing.T, mac string, s State) {
	t.Helper()
	if s == Discovered {
		ti.Seen(ctx, mac, "bios")
		return
	}
	ti.enroll(t, EnrollRequest{MAC: mac})
	for _, step := range pathTo[s] {
		ti.move(t, mac, step)
	}
	if got := ti.mustNode(t, mac).State; got != s {
		t.Fatalf("setup: node is %s, want %s", got, s)
	}
}

func TestMove(t *testing.T) {
	ti := newTestInv(t, Pool{}) // no pool: 81 nodes need no addresses
	i := 0
	for _, from := range allStates {
		for _, to := range allStates {
			i++
			mac := fmt.Sprintf("52:54:00:00:%02x:%02x", i/256, i%256)
			t.Run(fmt.Sprintf("%s->%s", from, to), func(t *testing.T) {
				ti.putIn(t, mac, from)
				before := ti.mustNode(t, mac)
				ti.clock.Advance(time.Minute)
				at := ti.clock.Now()

				got, err := ti.Move(ctx, mac, to, "because "+string(to), "operator")
				after := ti.mustNode(t, mac)

				if !legal[[2]State{from, to}] {
					if !errors.Is(err, ErrConflict) {
						t.Fatalf("Move = %v, want ErrConflict", err)
					}
					if !reflect.DeepEqual(after, before) {
						t.Fatalf("refused move changed the node:\nbefore %+v\nafter  %+v", before, after)
					}
					return
				}
				if err != nil {
					t.Fatalf("Move: %v", err)
				}
				if got.State != to || after.State != to {
					t.Fatalf("state = %s (stored %s), want %s", got.State, after.State, to)
				}
				if len(after.History) != len(before.History)+1 {
					t.Fatalf("history grew from %d to %d events, want one more", len(before.History), len(after.History))
				}
				want := Event{At: at, From: from, To: to, Cause: "because " + string(to), Actor: "operator"}
				if ev := after.History[len(after.History)-1]; ev != want {
					t.Fatalf("event = %+v, want %+v", ev, want)
				}
				if to == Failed && after.Reason != "because failed" {
					t.Fatalf("Reason = %q, want the cause", after.Reason)
				}
			})
		}
	}
}

func TestMoveUnknownNode(t *testing.T) {
	ti := newTestInv(t, Pool{})
	if _, err := ti.Move(ctx, "52:54:00:00:00:01", Enrolled, "x", "y"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Move of an unknown node = %v, want ErrNotFound", err)
	}
}

func TestMoveIsDurable(t *testing.T) {
	ti := newTestInv(t, Pool{})
	mac := "52:54:00:00:00:01"
	ti.putIn(t, mac, Installed)
	ti.move(t, mac, Failed)
	ti = ti.reopen(t, Pool{})
	n := ti.mustNode(t, mac)
	if n.State != Failed || n.Reason != "test setup" {
		t.Fatalf("after reopen: state %s reason %q, want failed with its reason", n.State, n.Reason)
	}
	var tos []State
	for _, e := range n.History {
		tos = append(tos, e.To)
	}
	if want := []State{Enrolled, Installing, Installed, Failed}; !reflect.DeepEqual(tos, want) {
		t.Fatalf("history after reopen = %v, want %v", tos, want)
	}
}

func TestParseMAC(t *testing.T) {
	for _, tc := range []struct {
		in, want string
	}{
		{"52:54:00:AA:BB:CC", "52:54:00:aa:bb:cc"},
		{"52:54:00:aa:bb:cc", "52:54:00:aa:bb:cc"},
		{"52-54-00-aa-bb-cc", "52:54:00:aa:bb:cc"},
		{"52-54-00-AA-BB-CC", "52:54:00:aa:bb:cc"},
		{"5254.00aa.bbcc", "52:54:00:aa:bb:cc"},
		{"525400aabbcc", "52:54:00:aa:bb:cc"},
		{"525400AABBCC", "52:54:00:aa:bb:cc"},
		{"", ""},
		{"52:54:00:aa:bb", ""},
		{"52:54:00:aa:bb:cc:dd:ee", ""},                                     // EUI-64
		{"00:00:00:00:fe:80:00:00:00:00:00:00:02:00:5e:10:00:00:00:01", ""}, // InfiniBand
		{"zz:54:00:aa:bb:cc", ""},
		{"525400aabbc", ""},
		{"525400aabbccd", ""},
		{"52540gaabbcc", ""},
		{"52:54:00:aa:bb:cc ", ""},
		{"n1", ""},
	} {
		got, err := ParseMAC(tc.in)
		if tc.want == "" {
			if err == nil {
				t.Errorf("ParseMAC(%q) = %q, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseMAC(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}
