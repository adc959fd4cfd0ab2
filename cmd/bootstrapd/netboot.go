package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/bootstrapd/bootstrapd/internal/config"
	"github.com/bootstrapd/bootstrapd/internal/netboot"
)

func netbootImportCmd(fs *flag.FlagSet, e *env) action {
	cfg := configFlag(fs, "site config file (for its netboot_dir)")
	dir := fs.String("dir", "", "netboot directory (default: the site's netboot_dir)")
	name := fs.String("name", "void", "the stable name profiles use (kernel = \"<name>/vmlinuz\")")
	return func(_ context.Context, args []string) error {
		tarball := args[0]
		if *dir == "" {
			site, err := config.Load(*cfg)
			if err != nil {
				return err
			}
			*dir = site.NetbootDir
		}
		imp, err := netboot.Import(tarball, *dir, *name)
		if err != nil {
			return err
		}
		verb := "imported"
		if imp.Skipped {
			verb = "already imported"
		}
		fmt.Fprintf(e.stdout, "%s %s into %s/%s; %s -> %s\n", verb, tarball, *dir, imp.Dir, imp.Link, imp.Dir)
		for _, f := range []string{"vmlinuz", "initrd"} {
			fmt.Fprintf(e.stdout, "  %s/%s  sha256 %s\n", imp.Link, f, imp.Sums[f])
		}
		return nil
	}
}
