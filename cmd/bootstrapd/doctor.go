package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/bootstrapd/bootstrapd/internal/doctor"
)

// doctorCmd runs the preflight checks and prints one line per check; it
// fails (exit 1) when any check does, so it can gate a service start too.
func doctorCmd(fs *flag.FlagSet, e *env) action {
	cfg := configFlag(fs, "site config file")
	asJSON := fs.Bool("json", false, "print JSON: {\"ok\": bool, \"checks\": [{name, ok, detail, fix}]}")
	return func(ctx context.Context, _ []string) error {
		results := doctor.Run(ctx, *cfg)
		write := doctor.WriteText
		if *asJSON {
			write = doctor.WriteJSON
		}
		if err := write(e.stdout, results); err != nil {
			return err
		}
		if n := doctor.Failed(results); n > 0 {
			return fmt.Errorf("%d of %d checks failed", n, len(results))
		}
		return nil
	}
}
