package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/pprof"

	"golang.org/x/term"

	"github.com/bootstrapd/bootstrapd/internal/api"
	"github.com/bootstrapd/bootstrapd/internal/config"
	"github.com/bootstrapd/bootstrapd/internal/daemon"
	"github.com/bootstrapd/bootstrapd/internal/doctor"
	"github.com/bootstrapd/bootstrapd/internal/logbuf"
)

func serveCmd(fs *flag.FlagSet, e *env) action {
	cfg := configFlag(fs, "site config file")
	logFormat := fs.String("log-format", "auto", "log format: text, json, or auto (text on a terminal, else json)")
	debug := fs.Bool("debug", false, "log every DHCP exchange")
	cpuprofile := fs.String("cpuprofile", "", "write a Go CPU profile to `FILE` until the daemon stops")
	mutexprofile := fs.String("mutexprofile", "", "write a Go profile of lock contention to `FILE` when the daemon stops")
	return func(ctx context.Context, _ []string) error {
		if *mutexprofile != "" {
			// Every contended lock is recorded: this is for finding which
			// one requests wait on, not for a daemon left running.
			runtime.SetMutexProfileFraction(1)
			defer func() {
				if err := writeProfile("mutex", *mutexprofile); err != nil {
					fmt.Fprintf(e.stderr, "bootstrapd: mutex profile: %v\n", err)
				}
			}()
		}
		if *cpuprofile != "" {
			f, err := os.Create(*cpuprofile)
			if err != nil {
				return err
			}
			if err := pprof.StartCPUProfile(f); err != nil {
				return err
			}
			defer func() { pprof.StopCPUProfile(); f.Close() }()
		}
		site, err := config.Load(*cfg)
		if err != nil {
			return err
		}
		log, closeLog := newLogger(e, *logFormat, *debug)
		defer closeLog()
		return daemon.Run(ctx, site, log, daemon.Options{Health: func(context.Context) []api.HealthCheck { return doctor.Live(site) }})
	}
}

// logBuffer bounds the log lines waiting for a slow output: about 10,000.
const logBuffer = 4 << 20

// newLogger is the daemon's logger, writing through a logbuf.Writer, and
// the function that flushes it at exit.
func newLogger(e *env, format string, debug bool) (*slog.Logger, func()) {
	opts := &slog.HandlerOptions{Level: slog.LevelInfo}
	if debug {
		opts.Level = slog.LevelDebug
	}
	if format == "auto" {
		format = "json"
		if f, ok := e.stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			format = "text"
		}
	}
	handler := func(w io.Writer) slog.Handler {
		if format == "json" {
			return slog.NewJSONHandler(w, opts)
		}
		return slog.NewTextHandler(w, opts)
	}
	out := logbuf.New(e.stderr, logBuffer, func(n int) []byte {
		var b bytes.Buffer
		slog.New(handler(&b)).Warn("log lines dropped: the log output is not keeping up", "lines", n)
		return b.Bytes()
	})
	return slog.New(handler(out)), func() { out.Close() }
}

func checkCmd(fs *flag.FlagSet, e *env) action {
	cfg := configFlag(fs, "site config file")
	return func(context.Context, []string) error {
		site, err := config.Load(*cfg)
		if err != nil {
			return err
		}
		profiles, err := daemon.LoadProfiles(site)
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "%s: ok (%s, %d profiles)\n", *cfg, site, len(profiles))
		return nil
	}
}

// configFlag is -config, the site file, which every command that reads it
// takes with the same default.
func configFlag(fs *flag.FlagSet, usage string) *string {
	return fs.String("config", "site.hcl", usage)
}

// writeProfile writes the named runtime profile (pprof.Lookup) to path.
func writeProfile(name, path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	err = pprof.Lookup(name).WriteTo(f, 0)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
