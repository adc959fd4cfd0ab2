package inventory

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// Reinstall sends a node back to enrolled: its next PXE boot installs it
// again. It is also how a failed node is retried.
func (inv *Inventory) Reinstall(ctx context.Context, ref, actor string) (Node, error) {
	n, err := inv.Find(ref)
	if err != nil {
		return Node{}, err
	}
	if n.State == Enrolled {
		return n, nil // already waiting for its install: nothing to do
	}
	return inv.moveWith(ctx, n.MAC, Enrolled, "reinstall requested", actor, func(n *Node) { n.InstallRetries = 0 })
}

// SetBootMethod changes how an installed node leaves iPXE for its disk:
// firmware disagrees on which method works (docs/local-boot.md), so an
// operator fixes one machine without touching its profile. It takes
// effect at the node's next PXE boot.
func (inv *Inventory) SetBootMethod(ctx context.Context, ref, method, actor string) (Node, error) {
	if err := checkBootMethod(method); err != nil {
		return Node{}, err
	}
	next, err := inv.setting(ref, "", actor, func(n *Node) string {
		if n.BootMethod == method {
			return ""
		}
		was := n.BootMethod
		n.BootMethod = method
		return fmt.Sprintf("boot method %s (was %s)", method, was)
	})
	if err == nil {
		inv.log.InfoContext(ctx, "boot method", "mac", next.MAC, "hostname", next.Hostname, "method", method)
	}
	return next, err
}

// setting changes a setting of the enrolled node ref: change sets it on
// the node and returns the event that records it, or "" when there is
// nothing to change. hint says how a node not yet enrolled gets it.
func (inv *Inventory) setting(ref, hint, actor string, change func(*Node) string) (_ Node, err error) {
	n, err := inv.Find(ref)
	if err != nil {
		return Node{}, err
	}
	inv.mu.Lock()
	defer inv.unlock(&err)
	cur := inv.nodes[n.MAC]
	switch {
	case cur == nil:
		return Node{}, fmt.Errorf("%w: %s", ErrNotFound, n.MAC)
	case cur.State == Discovered || cur.State == Retired:
		return Node{}, fmt.Errorf("%w: %s is %s; enroll it first%s", ErrConflict, cur.MAC, cur.State, hint)
	}
	next := cur.clone()
	cause := change(&next)
	if cause == "" {
		return cur.clone(), nil
	}
	next.History = append(next.History, Event{At: inv.now(), Cause: cause, Actor: actor})
	if err := inv.save(&next); err != nil {
		return Node{}, err
	}
	return next.clone(), nil
}

// checkBootMethod says why m is not a boot method, or nil.
func checkBootMethod(m string) error {
	switch m {
	case BootExit, BootSanboot, BootNone:
		return nil
	}
	return fmt.Errorf("boot method %q is not one of exit, sanboot, none", m)
}

// Retire takes a node out of service. Without RetireSteps there is
// nothing outside bootstrapd to undo, so retiring completes at once; the
// node keeps its record and history, and its hostname and address are free
// for another node. With RetireSteps the node stays retiring, its steps
// pending, until the caller has torn it down and calls FinishRetire.
func (inv *Inventory) Retire(ctx context.Context, ref, actor string) (Node, error) {
	n, err := inv.Find(ref)
	if err != nil {
		return Node{}, err
	}
	switch n.State {
	case Retired:
		return n, nil
	case Discovered:
		return Node{}, fmt.Errorf("%w: %s was never enrolled; there is nothing to retire", ErrConflict, n.MAC)
	}
	if n.State != Retiring {
		var steps []string
		if inv.RetireSteps != nil {
			steps = inv.RetireSteps(n)
		}
		set := func(next *Node) { next.Pending = steps }
		if n, err = inv.moveWith(ctx, n.MAC, Retiring, "retire requested", actor, set); err != nil {
			return Node{}, err
		}
	}
	if inv.RetireSteps != nil {
		return n, nil
	}
	return inv.FinishRetire(ctx, n.MAC, actor)
}

// StepDone records that a retiring node's teardown step is done: cause
// goes into its history and the step leaves its pending list. A step that
// is not pending (run again after a restart) is only recorded.
func (inv *Inventory) StepDone(ctx context.Context, mac, step, cause, actor string) error {
	return inv.noteWith(mac, cause, actor, func(n *Node) {
		n.Pending = slices.DeleteFunc(n.Pending, func(s string) bool { return s == step })
	})
}

// FinishRetire moves a retiring node to retired, freeing its hostname and
// address.
func (inv *Inventory) FinishRetire(ctx context.Context, mac, actor string) (Node, error) {
	return inv.Move(ctx, mac, Retired, "retired", actor)
}

// CountByState counts nodes in each state, for metrics.
func (inv *Inventory) CountByState() map[State]int {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	out := map[State]int{}
	for _, n := range inv.nodes {
		out[n.State]++
	}
	return out
}

// States lists every state in lifecycle order.
func States() []State {
	return []State{Discovered, Enrolled, Installing, Installed, Joined, Ready, Failed, Retiring, Retired}
}

// entered is when n came into its current state.
func (n *Node) entered() time.Time {
	for i := len(n.History) - 1; i >= 0; i-- {
		if n.History[i].To == n.State {
			return n.History[i].At
		}
	}
	return n.Created
}

// Note records an event on a node without moving it: a step of its
// teardown, or why a step must be retried.
func (inv *Inventory) Note(ctx context.Context, mac, cause, actor string) error {
	return inv.noteWith(mac, cause, actor, nil)
}

// noteWith is Note that also changes the node with also (when not nil) in
// the same write.
func (inv *Inventory) noteWith(mac, cause, actor string, also func(*Node)) (err error) {
	inv.mu.Lock()
	defer inv.unlock(&err)
	cur := inv.nodes[mac]
	if cur == nil {
		return fmt.Errorf("%w: %s", ErrNotFound, mac)
	}
	next := cur.clone()
	next.History = append(next.History, Event{At: inv.now(), Cause: cause, Actor: actor})
	if also != nil {
		also(&next)
	}
	return inv.save(&next)
}
