package config

import (
	"net/url"
	"path/filepath"
	"strings"
	"time"
)

// PackageCache has bootstrapd serve the nodes' XBPS repository as a
// caching proxy of an upstream mirror, at /xbps/ on the node HTTP port:
// each package crosses the uplink once however many nodes install it.
type PackageCache struct {
	Upstream   string `hcl:"upstream"`            // the mirror, as a node's xbpsrepository would be
	Dir        string `hcl:"dir,optional"`        // default: <state_dir>/xbps-cache
	MaxGiB     int    `hcl:"max_gib,optional"`    // default 20
	Revalidate string `hcl:"revalidate,optional"` // how often an index is checked upstream; default 5m

	RevalidateD time.Duration
}

// Defaults and bounds of the package_cache block.
const (
	DefaultPackageCacheGiB = 20
	maxPackageCacheGiB     = 4096
)

func (s *Site) packageCacheDefaults(dir string) {
	c := s.PackageCache
	if c == nil {
		return
	}
	switch {
	case c.Dir == "":
		c.Dir = filepath.Join(s.StateDir, "xbps-cache")
	case !filepath.IsAbs(c.Dir):
		c.Dir = filepath.Join(dir, c.Dir)
	}
	if c.MaxGiB == 0 {
		c.MaxGiB = DefaultPackageCacheGiB
	}
}

func (s *Site) validatePackageCache() error {
	c := s.PackageCache
	if c == nil {
		return nil
	}
	u, err := url.Parse(c.Upstream)
	if (err == nil && u.User != nil) || strings.Contains(c.Upstream, "@") {
		// Not echoed: what is in it is a password.
		return s.Errorf("package_cache.upstream", "package_cache upstream holds credentials: give the mirror's URL without them (a mirror for nodes needs none)")
	}
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return s.Errorf("package_cache.upstream", "package_cache upstream %q is not an http(s) URL, like \"https://repo-default.voidlinux.org/current\"", c.Upstream)
	}
	if c.MaxGiB < 1 || c.MaxGiB > maxPackageCacheGiB {
		return s.Errorf("package_cache.max_gib", "package_cache max_gib %d must be from 1 to %d", c.MaxGiB, maxPackageCacheGiB)
	}
	c.RevalidateD = 5 * time.Minute
	if c.Revalidate != "" {
		v, err := time.ParseDuration(c.Revalidate)
		if err != nil || v < time.Second || v > 24*time.Hour {
			return s.Errorf("package_cache.revalidate", "package_cache revalidate %q must be a duration from 1s to 24h, like \"5m\"", c.Revalidate)
		}
		c.RevalidateD = v
	}
	return nil
}
