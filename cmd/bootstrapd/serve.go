package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"runtime/pprof"

	"golang.org/x/term"

	"github.com/bootstrapd/bootstrapd/internal/api"
	"github.com/bootstrapd/bootstrapd/internal/config"
	"github.com/bootstrapd/bootstrapd/internal/daemon"
	"github.com/bootstrapd/bootstrapd/internal/doctor"
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
		log := newLogger(e, *logFormat, *debug)
		return daemon.Run(ctx, site, log, daemon.Options{Health: func(context.Context) []api.HealthCheck { return doctor.Live(site) }})
	}
}

func newLogger(e *env, format string, debug bool) *slog.Logger {
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
	if format == "json" {
		return slog.New(slog.NewJSONHandler(e.stderr, opts))
	}
	return slog.New(slog.NewTextHandler(e.stderr, opts))
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
