package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/bootstrapd/bootstrapd/internal/api"
	"github.com/bootstrapd/bootstrapd/internal/inventory"
)

func cmdRetire(ctx context.Context, e *env, args []string) error {
	return nodeAction(ctx, e, "retire", args, (*api.Client).Retire, "retired %s (%s); its hostname and address are free\n")
}

func cmdReinstall(ctx context.Context, e *env, args []string) error {
	return nodeAction(ctx, e, "reinstall", args, (*api.Client).Reinstall, "%s (%s) reinstalls on its next PXE boot\n")
}

// nodeAction is a command that does one thing to one node.
func nodeAction(ctx context.Context, e *env, name string, args []string,
	do func(*api.Client, context.Context, string) (inventory.Node, error), done string) error {
	fs := newClientCmd(name, e)
	pos, c, err := fs.parse(e, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError{"usage: bootstrapd " + name + " <mac|hostname>"}
	}
	n, err := do(c, ctx, pos[0])
	if err != nil {
		return err
	}
	if *fs.asJSON {
		return printJSON(e, n)
	}
	fmt.Fprintf(e.stdout, done, dash(n.Hostname), n.MAC)
	return nil
}

func cmdProfiles(ctx context.Context, e *env, args []string) error {
	fs := newClientCmd("profiles", e)
	_, c, err := fs.parse(e, args)
	if err != nil {
		return err
	}
	ps, err := c.Profiles(ctx)
	if err != nil {
		return err
	}
	if *fs.asJSON {
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
}

func cmdEvents(ctx context.Context, e *env, args []string) error {
	fs := newClientCmd("events", e)
	follow := fs.Bool("f", false, "follow: keep printing new events until Ctrl-C")
	node := fs.String("node", "", "only this node's events (MAC or hostname)")
	since := fs.Uint64("since", 0, "only events after this number")
	_, c, err := fs.parse(e, args)
	if err != nil {
		return err
	}
	return c.Events(ctx, api.EventQuery{Since: *since, Node: *node, Follow: *follow}, func(ev inventory.LogEvent) error {
		if *fs.asJSON {
			return printJSON(e, ev)
		}
		fmt.Fprintf(e.stdout, "%s  #%d  %s  %s\n", ev.At.Local().Format(time.DateTime), ev.Seq, who(ev), what(ev.Event))
		return nil
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
func (w *waitFlag) String() string   { return string(w.state) }
func (w *waitFlag) Set(v string) error {
	switch v {
	case "true":
		w.on = true
	case "false":
		w.on = false
	default:
		if !validWaitState(inventory.State(v)) {
			return fmt.Errorf("%q is not a state to wait for (installing, installed, joined, ready)", v)
		}
		w.on, w.state = true, inventory.State(v)
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
// fails, or ctx ends (Ctrl-C).
func waitFor(ctx context.Context, e *env, c *api.Client, n inventory.Node, target inventory.State) error {
	start := time.Now()
	from := n.History[len(n.History)-1].At
	fmt.Fprintf(e.stdout, "waiting for %s to be %s (Ctrl-C stops waiting, not the install)\n", n.Hostname, target)
	errReached := errors.New("reached")
	state := n.State
	err := c.Events(ctx, api.EventQuery{Node: n.MAC, Follow: true}, func(ev inventory.LogEvent) error {
		if ev.At.Before(from) {
			return nil // history from before this enrollment
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
		return fmt.Errorf("stopped waiting; %s is %s", n.Hostname, state)
	}
	return io.ErrUnexpectedEOF
}

// stateArg lets `enroll MAC -wait ready` work as well as -wait=ready: a
// boolean flag cannot take a separate value, so it arrives as an argument.
func stateArg(w *waitFlag, pos []string) ([]string, error) {
	if !w.on || len(pos) != 2 {
		return pos, nil
	}
	if s := inventory.State(strings.ToLower(pos[1])); validWaitState(s) {
		w.state = s
		return pos[:1], nil
	}
	return pos, nil
}
