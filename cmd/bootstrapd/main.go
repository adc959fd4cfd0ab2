// Command bootstrapd takes a rack from bare metal to running CI capacity.
//
// Flags follow HashiCorp's CLIs: single-dash long flags (-config, -json),
// allowed before or after the positional arguments.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

type command struct {
	summary string
	run     func(ctx context.Context, env *env, args []string) error
}

// env is what a command may touch, so tests can run commands in-process.
type env struct {
	stdout, stderr io.Writer
	getenv         func(string) string
}

func commands() map[string]command {
	return map[string]command{
		"serve":     {"run the daemon: DHCP, TFTP, node HTTP and the admin API", cmdServe},
		"check":     {"validate a site config without serving", cmdCheck},
		"enroll":    {"enroll a node by MAC so it installs on its next PXE boot", cmdEnroll},
		"nodes":     {"list nodes", cmdNodes},
		"leases":    {"list DHCP leases", cmdLeases},
		"events":    {"show the event log; -f follows it", cmdEvents},
		"retire":    {"take a node out of service", cmdRetire},
		"reinstall": {"send a node back to enrolled: it installs again on its next PXE boot", cmdReinstall},
		"profiles":  {"list install profiles", cmdProfiles},
		"node":      {"node show <mac|hostname> | boot <mac|hostname> exit|sanboot|none: show one node; change how it boots its disk", cmdNode},
		"doctor":    {"preflight: interface, ports, netboot files, profiles", cmdDoctor},
		"netboot":   {"netboot import <tarball>: add a Void NETBOOT kernel and initrd", cmdNetboot},
		"router":    {"router plan | apply [-prune] | bootstrap-script | fingerprint: configure the MikroTik", cmdRouter},
		"cluster":   {"cluster init | server-token FILE: set up Vault and the Concourse worker job in Nomad; mint the Nomad servers' Vault token", cmdCluster},
		"version": {"print the version", func(_ context.Context, e *env, _ []string) error {
			fmt.Fprintln(e.stdout, "bootstrapd", version)
			return nil
		}},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// After the first signal, stop catching them: a second Ctrl-C
		// kills a stop that is taking too long.
		<-ctx.Done()
		stop()
	}()
	e := &env{stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv}
	os.Exit(run(ctx, e, os.Args[1:]))
}

func run(ctx context.Context, e *env, args []string) int {
	cmds := commands()
	if len(args) == 0 || args[0] == "-h" || args[0] == "-help" || args[0] == "--help" || args[0] == "help" {
		usage(e.stdout, cmds)
		return 0
	}
	c, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(e.stderr, "bootstrapd: unknown command %q\n\n", args[0])
		usage(e.stderr, cmds)
		return 2
	}
	if err := c.run(ctx, e, args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(e.stderr, "bootstrapd %s: %v\n", args[0], err)
		var ue usageError
		if errors.As(err, &ue) {
			return 2
		}
		return 1
	}
	return 0
}

func usage(w io.Writer, cmds map[string]command) {
	fmt.Fprintln(w, "usage: bootstrapd <command> [flags] [args]")
	fmt.Fprintln(w)
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, cmds[n].summary)
	}
	fmt.Fprintln(w, "\nRun `bootstrapd <command> -h` for a command's flags.")
}

type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg }

// parse parses flags wherever they stand among the arguments, so both
// `enroll -profile p MAC` and `enroll MAC -profile p` work, and returns the
// positional arguments.
func parse(fs *flag.FlagSet, e *env, args []string) ([]string, error) {
	fs.SetOutput(e.stderr)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usageError{err.Error()}
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}
