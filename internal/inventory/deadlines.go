package inventory

import (
	"context"
	"time"
)

// timeoutCause is why a node that overstayed its state failed.
var timeoutCause = map[State]string{
	Installing: "install timed out",
	Installed:  "join timed out",
	Joined:     "worker did not start in time",
	Retiring:   "retire timed out",
}

// RunDeadlines fails nodes whose deadline passes, and forgets discovered
// nodes not seen for Limits.DiscoveredTTL and events beyond
// Limits.MaxEvents, until ctx ends. It sleeps
// on a timer set to the earliest deadline and is woken when one changes, so
// a deadline that passed while the daemon was down fires at start.
func (inv *Inventory) RunDeadlines(ctx context.Context) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-inv.kick:
		}
		next := inv.expire(ctx)
		timer.Stop()
		if !next.IsZero() {
			timer.Reset(time.Until(next))
		}
	}
}

// expire fails every node past its deadline and returns the next deadline.
func (inv *Inventory) expire(ctx context.Context) time.Time {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	now := inv.now()
	var next time.Time
	for _, n := range inv.nodes {
		if n.Deadline.IsZero() {
			continue
		}
		if n.Deadline.After(now) {
			if next.IsZero() || n.Deadline.Before(next) {
				next = n.Deadline
			}
			continue
		}
		cause := timeoutCause[n.State]
		if cause == "" {
			cause = "timed out in " + string(n.State)
		}
		failed := n.clone()
		if err := failed.move(now, Failed, cause, "bootstrapd"); err != nil {
			continue
		}
		if err := inv.save(&failed); err != nil {
			inv.log.ErrorContext(ctx, "fail node after its deadline", "mac", n.MAC, "err", err)
			continue
		}
		inv.log.WarnContext(ctx, "node failed", "mac", n.MAC, "hostname", n.Hostname, "reason", cause)
	}
	if at := inv.forget(ctx, now); !at.IsZero() && (next.IsZero() || at.Before(next)) {
		next = at
	}
	return next
}
