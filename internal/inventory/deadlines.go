package inventory

import (
	"context"
	"fmt"
	"time"
)

// timeoutCause is why a node that overstayed its state failed.
var timeoutCause = map[State]string{
	Enrolled:   "installer not booted in time", // only an install retry gives enrolled a deadline
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
		next, retried := inv.expire(ctx)
		for _, n := range retried {
			inv.Retrier.Retry(ctx, n)
		}
		timer.Stop()
		if !next.IsZero() {
			timer.Reset(time.Until(next))
		}
	}
}

// expire fails every node past its deadline, or retries its install
// where the Retrier says so, and returns the next deadline and the nodes
// to retry.
func (inv *Inventory) expire(ctx context.Context) (time.Time, []Node) {
	inv.mu.Lock()
	defer inv.unlock(nil)
	now := inv.now()
	var next time.Time
	var retried []Node
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
		if r, ok := inv.retry(ctx, n, now); ok {
			retried = append(retried, r)
			if next.IsZero() || r.Deadline.Before(next) {
				next = r.Deadline
			}
			continue
		}
		cause := timeoutCause[n.State]
		if cause == "" {
			cause = "timed out in " + string(n.State)
		}
		if n.InstallRetries > 0 && (n.State == Installing || n.State == Enrolled) {
			cause += fmt.Sprintf(" after %d power-cycle retries", n.InstallRetries)
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
	return next, retried
}
