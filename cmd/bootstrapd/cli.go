package main

// The one grammar every command and subcommand follows:
//
//	bootstrapd <command> [<subcommand>] [flags] [args]
//
// Flags may stand anywhere among the arguments (before the subcommand too:
// `router -json plan` is `router plan -json`); -h or -help at any level
// prints that level's usage and exits 0; a mistake prints one error line and
// the usage and exits 2 (exitUsage); a failure prints one error line and
// exits 1. A command declares its arguments once, in the table, so its usage
// line, its argument check and the README test all read them from one place.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// Exit codes, documented in the README's "Exit codes".
const (
	exitOK      = 0
	exitFailed  = 1 // the command ran and failed, or could not reach what it needs
	exitUsage   = 2 // the command line is wrong: nothing was done
	exitStopped = 3 // -wait stopped waiting (Ctrl-C) before the node got there; what it waited for goes on
)

// command is one command or subcommand. A command either has subs (router,
// node, ...) or a setup of its own.
type command struct {
	name    string
	summary string
	// args are the positional arguments as the usage line shows them
	// ("<mac>"); the command takes exactly these many.
	args []string
	// setup defines the command's flags on fs and returns what runs once
	// they are parsed. It must do nothing else: it also runs to learn
	// which flags take a value, and to print help.
	setup func(fs *flag.FlagSet, e *env) action
	subs  []command
}

// action runs a command with its positional arguments.
type action func(ctx context.Context, args []string) error

func (c command) sub(name string) (command, bool) {
	for _, s := range c.subs {
		if s.name == name {
			return s, true
		}
	}
	return command{}, false
}

// usageError is a mistake in the command line: the message is printed
// with the command's usage, and the exit code is exitUsage.
type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg }

// exitError is a failure with an exit code of its own (exitStopped).
type exitError struct {
	code int
	err  error
}

func (x exitError) Error() string { return x.err.Error() }
func (x exitError) Unwrap() error { return x.err }

// execute runs c (at path, "bootstrapd router plan") with args and returns
// the exit code, having printed any error or help itself.
func execute(ctx context.Context, e *env, path []string, c command, args []string) int {
	if len(c.subs) > 0 {
		name, rest, help := splitSub(c, e, args)
		if name == "" {
			if help {
				writeGroupUsage(e.stdout, e, path, c)
				return exitOK
			}
			if len(path) == 1 {
				return usage(e, path, c, nil, errors.New("missing command"))
			}
			return usage(e, path, c, nil, fmt.Errorf("missing subcommand: %s", subNames(c)))
		}
		s, ok := c.sub(name)
		if !ok {
			return usage(e, path, c, nil, fmt.Errorf("unknown %s %q: want %s", subWord(path), name, subNames(c)))
		}
		return execute(ctx, e, append(path[:len(path):len(path)], name), s, rest)
	}
	fs := newFlagSet(path)
	run := c.setup(fs, e)
	pos, err := parseArgs(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		writeUsage(e.stdout, path, c, fs, true)
		return exitOK
	}
	if err != nil {
		return usage(e, path, c, fs, err)
	}
	if err := checkArgs(c.args, pos); err != nil {
		return usage(e, path, c, fs, err)
	}
	err = run(ctx, pos)
	if err == nil {
		return exitOK
	}
	if errors.As(err, new(usageError)) {
		return usage(e, path, c, fs, err)
	}
	code := exitFailed
	if xe := new(exitError); errors.As(err, xe) {
		code = xe.code
	}
	fmt.Fprintf(e.stderr, "%s: %v\n", strings.Join(path, " "), err)
	return code
}

// usage prints one line for the mistake, then the usage, and returns
// exitUsage. fs is nil for a command with subcommands.
func usage(e *env, path []string, c command, fs *flag.FlagSet, err error) int {
	fmt.Fprintf(e.stderr, "%s: %v\n", strings.Join(path, " "), err)
	if fs == nil {
		writeGroupUsage(e.stderr, e, path, c)
	} else {
		writeUsage(e.stderr, path, c, fs, false)
	}
	return exitUsage
}

// newFlagSet makes a flag set that never prints: execute says what went
// wrong once, with the usage, rather than the flag package's own message
// and "Usage of enroll:" on top of it.
func newFlagSet(path []string) *flag.FlagSet {
	fs := flag.NewFlagSet(strings.Join(path, " "), flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// optionalValue is a boolean flag that may take a value as the next word
// when that word is one it accepts: `enroll -wait ready <mac>` is
// `enroll -wait=ready <mac>`, while `enroll -wait <mac>` is just -wait.
type optionalValue interface {
	flag.Value
	Accepts(word string) bool
}

func isBool(v flag.Value) bool {
	b, ok := v.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// parseArgs parses the flags wherever they stand among args and returns
// the positional arguments in order; after "--" everything is positional.
// An unknown flag is left to fs.Parse to report.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			pos = append(pos, a)
			continue
		}
		flags = append(flags, a)
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		f := fs.Lookup(name)
		if hasValue || f == nil || i+1 == len(args) {
			continue
		}
		if ov, ok := f.Value.(optionalValue); ok {
			if ov.Accepts(args[i+1]) {
				i++
				flags[len(flags)-1] = a + "=" + args[i]
			}
			continue
		}
		if !isBool(f.Value) {
			i++
			flags = append(flags, args[i])
		}
	}
	if err := fs.Parse(flags); err != nil {
		return nil, err
	}
	return pos, nil
}

// checkArgs says what is missing or extra, by the names in the usage line.
func checkArgs(want, got []string) error {
	switch {
	case len(got) < len(want):
		return fmt.Errorf("missing %s", strings.Join(want[len(got):], " "))
	case len(got) > len(want):
		return fmt.Errorf("unexpected argument %q", got[len(want)])
	}
	return nil
}

// splitSub finds the subcommand in args: the first word that is neither a
// flag nor a flag's value, so flags may come before it. Which flags take a
// value is learnt from every subcommand's flag set. help reports -h or
// -help before any subcommand; rest is args without the subcommand.
func splitSub(c command, e *env, args []string) (name string, rest []string, help bool) {
	takesValue := map[string]bool{}
	for _, s := range c.subs {
		if s.setup == nil {
			continue
		}
		fs := newFlagSet(nil)
		s.setup(fs, e)
		fs.VisitAll(func(f *flag.Flag) {
			_, optional := f.Value.(optionalValue)
			takesValue[f.Name] = !isBool(f.Value) && !optional
		})
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			if i+1 < len(args) {
				return args[i+1], append(append([]string{}, args[:i]...), args[i+2:]...), help
			}
			break
		}
		if len(a) < 2 || a[0] != '-' {
			return a, append(append([]string{}, args[:i]...), args[i+1:]...), help
		}
		flagName, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if flagName == "h" || flagName == "help" {
			help = true
		}
		if !hasValue && takesValue[flagName] {
			i++
		}
	}
	return "", nil, help
}

func subNames(c command) string {
	names := make([]string, len(c.subs))
	for i, s := range c.subs {
		names[i] = s.name
	}
	return strings.Join(names, ", ")
}

// subWord is what the first word after path is called in messages.
func subWord(path []string) string {
	if len(path) == 1 {
		return "command"
	}
	return "subcommand"
}

// usageLine is "bootstrapd enroll [flags] <mac>".
func usageLine(path []string, c command, hasFlags bool) string {
	words := append([]string{}, path...)
	if hasFlags {
		words = append(words, "[flags]")
	}
	return strings.Join(append(words, c.args...), " ")
}

// hasFlags says whether c defines any flag.
func hasFlags(c command, e *env) bool {
	fs := newFlagSet(nil)
	c.setup(fs, e)
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n > 0
}

// writeUsage prints a command's usage line and its flags; with summary,
// what it does as well (for -h).
func writeUsage(w io.Writer, path []string, c command, fs *flag.FlagSet, summary bool) {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	fmt.Fprintf(w, "usage: %s\n", usageLine(path, c, n > 0))
	if summary {
		fmt.Fprintf(w, "\n%s\n", c.summary)
	}
	if n > 0 {
		fmt.Fprintln(w, "\nflags (before or after the arguments):")
		fs.SetOutput(w)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
}

// writeGroupUsage prints the usage of a command with subcommands (or of
// bootstrapd itself): every command below it with its arguments, and what
// it does.
func writeGroupUsage(w io.Writer, e *env, path []string, c command) {
	fmt.Fprintf(w, "usage: %s <%s> [flags] [args]\n", strings.Join(path, " "), subWord(path))
	if c.summary != "" {
		fmt.Fprintf(w, "\n%s\n", c.summary)
	}
	fmt.Fprintln(w)
	var walk func(prefix []string, c command)
	walk = func(prefix []string, c command) {
		for _, s := range c.subs {
			p := append(prefix[:len(prefix):len(prefix)], s.name)
			if len(s.subs) > 0 {
				walk(p, s)
				continue
			}
			fmt.Fprintf(w, "  %s\n      %s\n", usageLine(p, s, hasFlags(s, e)), s.summary)
		}
	}
	walk(path, c)
	fmt.Fprintf(w, "\nFlags may come before or after the arguments; `%s <%s> -h` lists them.\n", strings.Join(path, " "), subWord(path))
}
