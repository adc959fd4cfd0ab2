package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/bootstrapd/bootstrapd/internal/config"
	"github.com/bootstrapd/bootstrapd/internal/netboot"
)

func cmdNetboot(_ context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("netboot", flag.ContinueOnError)
	cfg := fs.String("config", "site.hcl", "site config file (for its netboot_dir)")
	dir := fs.String("dir", "", "netboot directory (default: the site's netboot_dir)")
	name := fs.String("name", "void", "the stable name profiles use (kernel = \"<name>/vmlinuz\")")
	pos, err := parse(fs, e, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 || pos[0] != "import" {
		return usageError{"usage: bootstrapd netboot import <void-ARCH-NETBOOT-DATE.tar.gz> [-config site.hcl | -dir DIR] [-name void]"}
	}
	if *dir == "" {
		site, err := config.Load(*cfg)
		if err != nil {
			return err
		}
		*dir = site.NetbootDir
	}
	imp, err := netboot.Import(pos[1], *dir, *name)
	if err != nil {
		return err
	}
	verb := "imported"
	if imp.Skipped {
		verb = "already imported"
	}
	fmt.Fprintf(e.stdout, "%s %s into %s/%s; %s -> %s\n", verb, pos[1], *dir, imp.Dir, imp.Link, imp.Dir)
	for _, f := range []string{"vmlinuz", "initrd"} {
		fmt.Fprintf(e.stdout, "  %s/%s  sha256 %s\n", imp.Link, f, imp.Sums[f])
	}
	return nil
}
