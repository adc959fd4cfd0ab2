// Package pkgcache serves the nodes' XBPS repository as a caching proxy of
// one upstream mirror, so a rack of nodes installing at once pulls each
// package through the uplink once, not once per node (MAAS ships a
// package proxy for the same reason).
//
// Packages and their signatures never change under one name, so they are
// kept until the cache needs the room (least recently used first). The
// repository index (<arch>-repodata) does change, so it is revalidated
// with the upstream (If-None-Match / If-Modified-Since) at most once per
// interval; when the upstream cannot be reached, the copy held is served
// and the failure logged and counted. Concurrent requests for one file
// share one download; a download is written to a temporary file, checked
// against its Content-Length and renamed into place only when complete,
// so a partial or failed download is never served or kept. The cache
// lives in a directory and survives restarts.
package pkgcache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bootstrapd/bootstrapd/internal/httpcount"
	"golang.org/x/sync/singleflight"
)

// Options configure a Cache. Upstream and Dir are required.
type Options struct {
	// Upstream is the mirror's repository URL, as a node's xbpsrepository
	// would be: https://repo-default.voidlinux.org/current.
	Upstream string
	// Dir holds the cache: files/ (what is served), tmp/ (downloads in
	// progress, emptied at start).
	Dir string
	// MaxBytes bounds files/; default 20 GiB.
	MaxBytes int64
	// Revalidate is how often a repository index is checked with the
	// upstream; default 5 minutes.
	Revalidate time.Duration
	// MaxDownloads bounds downloads from the upstream at once; default 8.
	MaxDownloads int
	// DownloadTimeout bounds one download; default 30 minutes.
	DownloadTimeout time.Duration
	Client          *http.Client
	Log             *slog.Logger
}

// Defaults of Options.
const (
	DefaultMaxBytes        = 20 << 30
	DefaultRevalidate      = 5 * time.Minute
	DefaultMaxDownloads    = 8
	DefaultDownloadTimeout = 30 * time.Minute
)

// Limits on what a request may name: a repository has a few levels
// (nonfree/, musl/, aarch64/) and names of a hundred characters or so.
const (
	maxPathLen   = 256
	maxPathDepth = 4
)

// Stats are the cache's counters since it was opened.
type Stats struct {
	Hits             int64 // requests served from the cache without asking the upstream
	Misses           int64 // requests that needed the upstream (a download or a revalidation)
	UpstreamRequests int64
	UpstreamBytes    int64
	ServedBytes      int64 // body bytes of 200 and 206 replies (as the files' sizes, for ranges the range's)
	UpstreamErrors   int64 // failed or refused upstream requests, stale copies served included
	Evictions        int64
}

// Cache is the caching proxy. It is an http.Handler for paths relative to
// the repository (mount it with http.StripPrefix).
type Cache struct {
	o        Options
	upstream *url.URL
	files    string
	tmp      string
	sem      chan struct{}
	flight   singleflight.Group

	mu      sync.Mutex
	entries map[string]*entry // by repository path
	total   int64

	stats struct {
		hits, misses, upReqs, upBytes, served, upErrs, evictions atomic.Int64
	}
}

// entry is one cached file; meta is kept beside it for indexes.
type entry struct {
	size      int64
	used      time.Time
	validated time.Time // last time the upstream confirmed it (indexes)
	meta      meta
}

// meta is what revalidation needs, stored as <file>.meta.json beside it
// in a separate tree so no repository name can collide with it.
type meta struct {
	ETag         string `json:"etag,omitempty"`
	LastModified string `json:"last_modified,omitempty"`
}

// New opens (or creates) a cache in o.Dir, indexing what an earlier run
// left there and removing its unfinished downloads.
func New(o Options) (*Cache, error) {
	u, err := url.Parse(o.Upstream)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("package cache: upstream %q is not an http(s) URL, like https://repo-default.voidlinux.org/current", o.Upstream)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	if o.Dir == "" {
		return nil, errors.New("package cache: no directory")
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.Revalidate <= 0 {
		o.Revalidate = DefaultRevalidate
	}
	if o.MaxDownloads <= 0 {
		o.MaxDownloads = DefaultMaxDownloads
	}
	if o.DownloadTimeout <= 0 {
		o.DownloadTimeout = DefaultDownloadTimeout
	}
	if o.Client == nil {
		o.Client = &http.Client{}
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	c := &Cache{o: o, upstream: u, files: filepath.Join(o.Dir, "files"), tmp: filepath.Join(o.Dir, "tmp"),
		sem: make(chan struct{}, o.MaxDownloads), entries: map[string]*entry{}}
	if err := os.RemoveAll(c.tmp); err != nil {
		return nil, fmt.Errorf("package cache: clearing unfinished downloads: %w", err)
	}
	for _, d := range []string{c.files, c.tmp, filepath.Join(o.Dir, "meta")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("package cache: %w", err)
		}
	}
	if err := c.load(); err != nil {
		return nil, err
	}
	c.evict("")
	return c, nil
}

// load indexes files/ as an earlier run left it. An index's validation
// time starts at zero, so it is revalidated at its first request.
func (c *Cache) load() error {
	return filepath.WalkDir(c.files, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel := filepath.ToSlash(strings.TrimPrefix(p, c.files+string(filepath.Separator)))
		e := &entry{size: info.Size(), used: info.ModTime()}
		if b, err := os.ReadFile(c.metaPath(rel)); err == nil {
			_ = json.Unmarshal(b, &e.meta) // a broken sidecar only costs a full download
		}
		c.entries[rel] = e
		c.total += e.size
		return nil
	})
}

// Stats returns the counters.
func (c *Cache) Stats() Stats {
	s := &c.stats
	return Stats{Hits: s.hits.Load(), Misses: s.misses.Load(), UpstreamRequests: s.upReqs.Load(), UpstreamBytes: s.upBytes.Load(),
		ServedBytes: s.served.Load(), UpstreamErrors: s.upErrs.Load(), Evictions: s.evictions.Load()}
}

// CleanPath returns the repository path a request names, or an error: a
// path that climbs out, is too long or too deep, or has characters no
// repository file has.
func CleanPath(p string) (string, error) {
	p = strings.TrimPrefix(p, "/")
	if p == "" || len(p) > maxPathLen || strings.Count(p, "/") >= maxPathDepth || path.Clean("/"+p) != "/"+p {
		return "", errors.New("not a repository file")
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == "" || seg[0] == '.' {
			return "", errors.New("not a repository file")
		}
		for _, r := range seg {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._+-", r)) {
				return "", errors.New("not a repository file")
			}
		}
	}
	return p, nil
}

// mutable reports whether a repository file changes under its name: the
// index and the staging index do, packages and signatures do not.
func mutable(p string) bool {
	return strings.HasSuffix(p, "-repodata") || strings.HasSuffix(p, "-stagedata")
}

func (c *Cache) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "package cache: only GET and HEAD", http.StatusMethodNotAllowed)
		return
	}
	p, err := CleanPath(r.URL.Path)
	if err != nil {
		http.Error(w, "package cache: "+err.Error(), http.StatusNotFound)
		return
	}
	if err := c.ensure(r.Context(), p); err != nil {
		var ue *upstreamError
		switch {
		case errors.As(err, &ue) && ue.status == http.StatusNotFound:
			http.Error(w, fmt.Sprintf("package cache: %s is not in the upstream repository %s", p, c.upstream.Redacted()), http.StatusNotFound)
		case r.Context().Err() != nil:
			// The client went away; nothing to answer.
		default:
			http.Error(w, "package cache: "+err.Error(), http.StatusBadGateway)
		}
		return
	}
	f, err := os.Open(c.filePath(p))
	if err != nil {
		// Evicted between ensure and open: rare, and the client retries.
		http.Error(w, "package cache: "+p+" was just evicted; retry", http.StatusServiceUnavailable)
		return
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		http.Error(w, "package cache: "+err.Error(), http.StatusInternalServerError)
		return
	}
	cw := httpcount.New(w)
	http.ServeContent(cw, r, path.Base(p), info.ModTime(), f)
	c.stats.served.Add(cw.Bytes)
}

// ensure makes p present and, for an index, fresh enough to serve.
func (c *Cache) ensure(ctx context.Context, p string) error {
	c.mu.Lock()
	e := c.entries[p]
	fresh := e != nil && (!mutable(p) || time.Since(e.validated) < c.o.Revalidate)
	if e != nil {
		e.used = time.Now()
	}
	c.mu.Unlock()
	if fresh {
		c.stats.hits.Add(1)
		return nil
	}
	c.stats.misses.Add(1)
	// One download per file however many ask; it runs on its own context
	// so the first asker hanging up does not fail the others.
	ch := c.flight.DoChan(p, func() (any, error) {
		ctx, cancel := context.WithTimeout(context.Background(), c.o.DownloadTimeout)
		defer cancel()
		return nil, c.fetch(ctx, p, e)
	})
	select {
	case res := <-ch:
		if res.Err != nil && e != nil {
			// An index the upstream could not confirm: the copy held is
			// better than no install at all.
			c.o.Log.Warn("package cache: serving the copy held; the upstream did not answer", "file", p, "err", res.Err)
			return nil
		}
		return res.Err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// upstreamError is a refusal or failure of the upstream.
type upstreamError struct {
	file   string
	status int
	err    error
}

func (e *upstreamError) Error() string {
	if e.err != nil {
		return fmt.Sprintf("fetching %s from the upstream: %v", e.file, e.err)
	}
	return fmt.Sprintf("the upstream answered %d for %s", e.status, e.file)
}

// fetch downloads p (or revalidates the copy held, old) into the cache.
func (c *Cache) fetch(ctx context.Context, p string, old *entry) (err error) {
	select {
	case c.sem <- struct{}{}:
		defer func() { <-c.sem }()
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() {
		if err != nil {
			c.stats.upErrs.Add(1)
		}
	}()
	u := *c.upstream
	u.Path += "/" + p
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return &upstreamError{file: p, err: err}
	}
	if old != nil {
		if old.meta.ETag != "" {
			req.Header.Set("If-None-Match", old.meta.ETag)
		}
		if old.meta.LastModified != "" {
			req.Header.Set("If-Modified-Since", old.meta.LastModified)
		}
	}
	c.stats.upReqs.Add(1)
	resp, err := c.o.Client.Do(req)
	if err != nil {
		return &upstreamError{file: p, err: err}
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotModified && old != nil:
		c.mu.Lock()
		old.validated = time.Now()
		c.mu.Unlock()
		return nil
	case resp.StatusCode != http.StatusOK:
		return &upstreamError{file: p, status: resp.StatusCode}
	}
	if resp.ContentLength > c.o.MaxBytes {
		return &upstreamError{file: p, err: fmt.Errorf("%d bytes is more than the whole cache may hold (%d)", resp.ContentLength, c.o.MaxBytes)}
	}
	tmp, err := os.CreateTemp(c.tmp, "dl-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	n, err := io.Copy(tmp, io.LimitReader(resp.Body, c.o.MaxBytes+1))
	c.stats.upBytes.Add(n)
	if err == nil && resp.ContentLength >= 0 && n != resp.ContentLength {
		err = fmt.Errorf("got %d of %d bytes", n, resp.ContentLength)
	}
	if err == nil && n > c.o.MaxBytes {
		err = fmt.Errorf("more than the whole cache may hold (%d bytes)", c.o.MaxBytes)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return &upstreamError{file: p, err: err}
	}
	m := meta{ETag: resp.Header.Get("ETag"), LastModified: resp.Header.Get("Last-Modified")}
	if err := c.store(p, tmp.Name(), n, m); err != nil {
		return err
	}
	c.o.Log.Debug("package cache: fetched", "file", p, "bytes", n)
	return nil
}

// store moves a finished download into place and records it.
func (c *Cache) store(p, tmp string, size int64, m meta) error {
	dst := c.filePath(p)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	if err := os.Rename(tmp, dst); err != nil {
		return err
	}
	if mutable(p) {
		b, _ := json.Marshal(m)
		mp := c.metaPath(p)
		if err := os.MkdirAll(filepath.Dir(mp), 0o755); err == nil {
			_ = os.WriteFile(mp, b, 0o644) // without it the next check is a full download
		}
	}
	now := time.Now()
	c.mu.Lock()
	if old := c.entries[p]; old != nil {
		c.total -= old.size
	}
	c.entries[p] = &entry{size: size, used: now, validated: now, meta: m}
	c.total += size
	c.mu.Unlock()
	c.evict(p)
	return nil
}

// evict removes the least recently used files until the cache fits,
// never keep (the file just stored). An open file being served stays
// readable after its name is removed.
func (c *Cache) evict(keep string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.total > c.o.MaxBytes {
		victim := ""
		var oldest time.Time
		for p, e := range c.entries {
			if p != keep && (victim == "" || e.used.Before(oldest)) {
				victim, oldest = p, e.used
			}
		}
		if victim == "" {
			return
		}
		c.total -= c.entries[victim].size
		delete(c.entries, victim)
		os.Remove(c.filePath(victim))
		os.Remove(c.metaPath(victim))
		c.stats.evictions.Add(1)
	}
}

func (c *Cache) filePath(p string) string { return filepath.Join(c.files, filepath.FromSlash(p)) }
func (c *Cache) metaPath(p string) string {
	return filepath.Join(c.o.Dir, "meta", filepath.FromSlash(p)+".json")
}
