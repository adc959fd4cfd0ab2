package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/bootstrapd/bootstrapd/internal/config"
	"github.com/bootstrapd/bootstrapd/internal/daemon"
	"github.com/bootstrapd/bootstrapd/internal/inventory"
	"github.com/bootstrapd/bootstrapd/internal/store"
)

// storeCopyCmd moves an inventory between a bbolt file (a laptop's, or
// state_dir's) and the site's etcd, in either direction.
func storeCopyCmd(fs *flag.FlagSet, e *env) action {
	cfg := configFlag(fs, "site config file (its store block names the etcd cluster)")
	to := fs.String("to", "", "where to copy: etcd (from the file) or file (from etcd)")
	file := fs.String("file", "", "the bbolt store file (default: bootstrapd.db in the site's state_dir)")
	force := fs.Bool("force", false, "replace what the target already holds")
	return func(ctx context.Context, _ []string) error {
		if *to != "etcd" && *to != "file" {
			return errors.New("-to etcd (copy the file into the site's etcd) or -to file (copy etcd into the file)")
		}
		site, err := config.Load(*cfg)
		if err != nil {
			return err
		}
		if site.Store == nil || site.Store.Etcd == nil {
			return fmt.Errorf("%s has no store { etcd { ... } } block: say which cluster to copy to or from", *cfg)
		}
		if *file == "" {
			*file = filepath.Join(site.StateDir, daemon.StoreFile)
		}
		if _, err := os.Stat(*file); err != nil && *to == "etcd" {
			return fmt.Errorf("the store file to copy: %w", err)
		}
		db, err := store.Open(*file)
		if err != nil {
			return err
		}
		defer db.Close()
		shared, err := daemon.OpenStore(ctx, site, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			return err
		}
		defer shared.Close()
		etcd := shared.(*store.Etcd)
		var from store.Ranger = db
		var into store.Target = etcd
		if *to == "file" {
			from, into = etcd, db
		}
		copied, err := store.Copy(ctx, from, into, inventory.Buckets(), *force)
		if err != nil {
			return err
		}
		var parts []string
		for _, b := range slices.Sorted(maps.Keys(copied)) {
			parts = append(parts, fmt.Sprintf("%d %s", copied[b], b))
		}
		src, dst := db.Path(), etcd.Path()
		if *to == "file" {
			src, dst = dst, src
		}
		fmt.Fprintf(e.stdout, "copied %s from %s to %s\n", strings.Join(parts, ", "), src, dst)
		return nil
	}
}
