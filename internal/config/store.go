package config

import (
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Store says where the inventory lives. Without a store block it is a
// bbolt file in state_dir, this instance's alone. With an etcd block it is
// a key prefix in an etcd cluster, shared by every bootstrapd instance
// that names the same cluster and prefix.
type Store struct {
	// Name tells this instance from the others sharing the store (in
	// logs, leadership and DHCP shares); default: the host name.
	Name string `hcl:"name,optional"`
	Etcd *Etcd  `hcl:"etcd,block"`
}

// Etcd is the cluster the shared store is in.
type Etcd struct {
	Endpoints []string `hcl:"endpoints"`
	CAFile    string   `hcl:"ca_file,optional"`
	CertFile  string   `hcl:"cert_file,optional"`
	KeyFile   string   `hcl:"key_file,optional"`
	Prefix    string   `hcl:"prefix,optional"`  // default "/bootstrapd/"
	Timeout   string   `hcl:"timeout,optional"` // one request; default 5s

	TimeoutD time.Duration
}

func (s *Site) storeDefaults(dir string) {
	c := s.Store
	if c == nil {
		return
	}
	if c.Name == "" {
		c.Name, _ = os.Hostname()
	}
	if e := c.Etcd; e != nil {
		for _, p := range []*string{&e.CAFile, &e.CertFile, &e.KeyFile} {
			if *p != "" && !filepath.IsAbs(*p) {
				*p = filepath.Join(dir, *p)
			}
		}
		if e.Prefix == "" {
			e.Prefix = "/bootstrapd/"
		}
	}
}

func (s *Site) validateStore() error {
	c := s.Store
	if c == nil {
		return nil
	}
	if c.Name == "" || len(c.Name) > 63 || strings.IndexFunc(c.Name, func(r rune) bool {
		return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '-' || r == '_' || r == '.')
	}) >= 0 {
		return s.Errorf("store.name", "store name %q must be 1-63 letters, digits, '-', '_' or '.'", c.Name)
	}
	e := c.Etcd
	if e == nil {
		return s.Errorf("store", "store block without an etcd block: say where the shared store is (store { etcd { endpoints = [...] } }), or drop the store block to keep the inventory in state_dir")
	}
	if len(e.Endpoints) == 0 {
		return s.Errorf("store.etcd.endpoints", "store etcd endpoints is empty: list the cluster's client URLs, like [\"https://10.0.0.11:2379\"]")
	}
	tls := e.CAFile != "" || e.CertFile != "" || e.KeyFile != ""
	for _, ep := range e.Endpoints {
		u, err := url.Parse(ep)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
			// Not echoed whole: it might hold credentials.
			return s.Errorf("store.etcd.endpoints", "store etcd endpoint %q is not a client URL like \"https://10.0.0.11:2379\" (without credentials)", redactURL(ep))
		}
		if u.Scheme == "http" && tls {
			return s.Errorf("store.etcd.endpoints", "store etcd endpoint %s is http but TLS files are given: use https://", ep)
		}
	}
	if (e.CertFile == "") != (e.KeyFile == "") {
		return s.Errorf("store.etcd.cert_file", "store etcd cert_file and key_file go together: give both for a client certificate, or neither")
	}
	for _, f := range []struct{ attr, path string }{{"ca_file", e.CAFile}, {"cert_file", e.CertFile}, {"key_file", e.KeyFile}} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			return s.Errorf("store.etcd."+f.attr, "store etcd %s: %v", f.attr, err)
		}
	}
	if !strings.HasPrefix(e.Prefix, "/") || !strings.HasSuffix(e.Prefix, "/") || strings.ContainsAny(e.Prefix, " \t\n") {
		return s.Errorf("store.etcd.prefix", "store etcd prefix %q must start and end with '/', like \"/bootstrapd/\"", e.Prefix)
	}
	e.TimeoutD = 5 * time.Second
	if e.Timeout != "" {
		v, err := time.ParseDuration(e.Timeout)
		if err != nil || v < 100*time.Millisecond || v > time.Minute {
			return s.Errorf("store.etcd.timeout", "store etcd timeout %q must be a duration from 100ms to 1m, like \"5s\"", e.Timeout)
		}
		e.TimeoutD = v
	}
	return nil
}

// redactURL is s without anything before an '@'.
func redactURL(s string) string {
	if i := strings.LastIndex(s, "@"); i >= 0 {
		if j := strings.Index(s, "://"); j >= 0 && j < i {
			return s[:j+3] + "…" + s[i:]
		}
		return "…" + s[i:]
	}
	return s
}
