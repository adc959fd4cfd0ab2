package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/bootstrapd/bootstrapd/internal/api"
	"github.com/bootstrapd/bootstrapd/internal/inventory"
)

func retireCmd(fs *flag.FlagSet, e *env) action {
	wait := fs.Bool("wait", false, "after asking, show the teardown until the node is retired")
	return clientAction(fs, e, func(ctx context.Context, c *api.Client, asJSON bool, args []string) error {
		n, err := c.Retire(ctx, args[0])
		if err != nil {
			return err
		}
		if !asJSON {
			fmt.Fprintln(e.stdout, retireText(n, *wait))
		}
		return settle(ctx, e, c, n, asJSON, *wait, inventory.Retired, "the retirement")
	})
}

// settle ends a command that changed a node: with wait it follows the node
// to target, printing its progress, and with asJSON it prints the node (as
// it ends, when waiting: a script gets one document, not the progress).
func settle(ctx context.Context, e *env, c *api.Client, n inventory.Node, asJSON, wait bool, target inventory.State, goesOn string) error {
	if wait && n.State != target {
		progress := e
		if asJSON {
			progress = &env{stdout: io.Discard, stderr: e.stderr, getenv: e.getenv}
		}
		if err := waitFor(ctx, progress, c, n, target, goesOn); err != nil {
			return err
		}
		var err error
		if n, err = c.Node(ctx, n.MAC); err != nil {
			return err
		}
	}
	if asJSON {
		return printJSON(e, n)
	}
	return nil
}

// retireText says where a retire left the node: retired (its name and
// address free), or retiring with the teardown steps still to run.
func retireText(n inventory.Node, waiting bool) string {
	name := fmt.Sprintf("%s (%s)", dash(n.Hostname), n.MAC)
	if n.State == inventory.Retired {
		return fmt.Sprintf("retired %s; its hostname and address are free", name)
	}
	steps := "teardown"
	if len(n.Pending) > 0 {
		steps = strings.Join(n.Pending, ", ")
	}
	s := fmt.Sprintf("retiring %s: %s pending", name, steps)
	if !waiting {
		s += fmt.Sprintf("; it is retired when they are done (`bootstrapd retire -wait %s` follows it)", dash(n.Hostname))
	}
	return s
}

func reinstallCmd(fs *flag.FlagSet, e *env) action {
	pf := addPowerFlags(fs, "set a one-time PXE boot and power the node on, or cycle it if on, through its BMC")
	return clientAction(fs, e, func(ctx context.Context, c *api.Client, asJSON bool, args []string) error {
		r, err := c.Reinstall(ctx, args[0], api.PowerAfter{Power: *pf.power, WoL: *pf.wol})
		if err != nil {
			return err
		}
		if asJSON {
			if err := printJSON(e, r); err != nil || r.Power == nil || r.Power.Error == "" {
				return err
			}
			return powered(e, r)
		}
		fmt.Fprintf(e.stdout, "%s (%s) reinstalls on its next PXE boot\n", dash(r.Hostname), r.MAC)
		return powered(e, r)
	})
}

func profilesCmd(fs *flag.FlagSet, e *env) action {
	return clientAction(fs, e, func(ctx context.Context, c *api.Client, asJSON bool, _ []string) error {
		ps, err := c.Profiles(ctx)
		if err != nil {
			return err
		}
		if asJSON {
			return printJSON(e, ps)
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "PROFILE\tKERNEL\tTIMEOUT\tLOCAL BOOT\tDESCRIPTION")
		for _, p := range ps {
			name := p.Name
			if p.Default {
				name += " (default)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", name, p.Kernel, p.InstallTimeout, dash(p.LocalBoot), p.Description)
		}
		return tw.Flush()
	})
}

func eventsCmd(fs *flag.FlagSet, e *env) action {
	follow := fs.Bool("f", false, "follow: keep printing new events until Ctrl-C")
	node := fs.String("node", "", "only this node's events (`<mac|hostname>`)")
	since := fs.Uint64("since", 0, "only events after this number")
	return clientAction(fs, e, func(ctx context.Context, c *api.Client, asJSON bool, _ []string) error {
		return c.Events(ctx, api.EventQuery{Since: *since, Node: *node, Follow: *follow}, func(ev inventory.LogEvent) error {
			if asJSON {
				return printJSON(e, ev)
			}
			fmt.Fprintf(e.stdout, "%s  #%d  %s  %s\n", ev.At.Local().Format(time.DateTime), ev.Seq, who(ev), what(ev.Event))
			return nil
		})
	})
}

func who(ev inventory.LogEvent) string {
	if ev.Hostname == "" {
		return ev.MAC
	}
	return ev.Hostname + " (" + ev.MAC + ")"
}

func what(ev inventory.Event) string {
	s := ev.Cause
	if ev.To != "" {
		s = fmt.Sprintf("%s -> %s: %s", dash(string(ev.From)), ev.To, ev.Cause)
	}
	if ev.Count > 1 {
		s += fmt.Sprintf(" (x%d)", ev.Count)
	}
	if ev.Actor != "" {
		s += " [" + ev.Actor + "]"
	}
	return s
}

// waitFlag is -wait (until the default state) or -wait=STATE.
type waitFlag struct {
	on    bool
	state inventory.State
}

func (w *waitFlag) IsBoolFlag() bool { return true }

// Accepts lets the state follow -wait as a word of its own: `enroll
// -wait ready <mac>`.
func (w *waitFlag) Accepts(word string) bool {
	return validWaitState(inventory.State(strings.ToLower(word)))
}
func (w *waitFlag) String() string {
	if !w.on {
		return "" // -h shows no default: waiting is off unless asked for
	}
	return string(w.state)
}
func (w *waitFlag) Set(v string) error {
	switch v {
	case "true":
		w.on = true
	case "false":
		w.on = false
	default:
		s := inventory.State(strings.ToLower(v))
		if !validWaitState(s) {
			return fmt.Errorf("%q is not a state to wait for (installing, installed, joined, ready)", v)
		}
		w.on, w.state = true, s
	}
	return nil
}

func validWaitState(s inventory.State) bool {
	switch s {
	case inventory.Installing, inventory.Installed, inventory.Joined, inventory.Ready:
		return true
	}
	return false
}

// waitFor prints a node's events as they happen until it reaches target,
// fails, or ctx ends (Ctrl-C: exitStopped, since what goesOn, the install
// or the retirement, carries on without us).
func waitFor(ctx context.Context, e *env, c *api.Client, n inventory.Node, target inventory.State, goesOn string) error {
	start := time.Now()
	from := n.History[len(n.History)-1].At
	fmt.Fprintf(e.stdout, "waiting for %s to be %s (Ctrl-C stops waiting, not %s)\n", n.Hostname, target, goesOn)
	errReached := errors.New("reached")
	state := n.State
	err := c.Events(ctx, api.EventQuery{Node: n.MAC, Follow: true}, func(ev inventory.LogEvent) error {
		if ev.At.Before(from) {
			return nil // history from before this enrollment or retirement
		}
		fmt.Fprintf(e.stdout, "[%5.0fs] %s: %s\n", time.Since(start).Seconds(), n.Hostname, what(ev.Event))
		if ev.To != "" {
			state = ev.To
		}
		switch {
		case state == target:
			return errReached
		case state == inventory.Failed:
			return fmt.Errorf("%s failed: %s", n.Hostname, ev.Cause)
		}
		return nil
	})
	switch {
	case errors.Is(err, errReached):
		fmt.Fprintf(e.stdout, "%s is %s after %s\n", n.Hostname, target, time.Since(start).Round(time.Second))
		return nil
	case err != nil:
		return err
	case ctx.Err() != nil:
		return exitError{exitStopped, fmt.Errorf("stopped waiting; %s is %s and %s goes on (`bootstrapd node show %s`)", n.Hostname, state, goesOn, n.Hostname)}
	}
	return fmt.Errorf("the daemon ended the event stream while %s was %s: %w", n.Hostname, state, io.ErrUnexpectedEOF)
}
