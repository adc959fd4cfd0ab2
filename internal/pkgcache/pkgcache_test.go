package pkgcache

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// upstream is a local mirror that counts the requests for each file and
// can be told to fail.
type upstream struct {
	t     *testing.T
	srv   *httptest.Server
	files map[string][]byte
	etag  map[string]string

	mu       sync.Mutex
	requests map[string]int
	// cut, when set, makes the next response for that file send half its
	// body and drop the connection: a mirror dying mid-download.
	cut  map[string]bool
	down atomic.Bool // every request fails with 503
	slow chan struct{}
}

func newUpstream(t *testing.T) *upstream {
	u := &upstream{t: t, files: map[string][]byte{}, etag: map[string]string{}, requests: map[string]int{}, cut: map[string]bool{}}
	u.srv = httptest.NewServer(http.HandlerFunc(u.serve))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *upstream) put(name string, body []byte) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.files[name] = body
	u.etag[name] = fmt.Sprintf(`"%x"`, sha256.Sum256(body))
}

func (u *upstream) count(name string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.requests[name]
}

func (u *upstream) serve(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, "/current/")
	u.mu.Lock()
	u.requests[name]++
	body, ok := u.files[name]
	etag := u.etag[name]
	cut := u.cut[name]
	delete(u.cut, name)
	slow := u.slow
	u.mu.Unlock()
	if slow != nil {
		<-slow
	}
	switch {
	case u.down.Load():
		http.Error(w, "mirror down", http.StatusServiceUnavailable)
	case !ok:
		http.NotFound(w, r)
	case r.Header.Get("If-None-Match") == etag:
		w.WriteHeader(http.StatusNotModified)
	case cut:
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		w.Write(body[:len(body)/2])
		w.(http.Flusher).Flush()
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
	default:
		w.Header().Set("ETag", etag)
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		w.Write(body)
	}
}

func newCache(t *testing.T, up *upstream, dir string, o Options) (*Cache, *httptest.Server) {
	t.Helper()
	o.Upstream, o.Dir = up.srv.URL+"/current", dir
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.StripPrefix("/xbps", c))
	t.Cleanup(srv.Close)
	return c, srv
}

func get(t *testing.T, url string, hdr ...string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// packageSet is what a node's install fetches: the index, the packages
// and their signatures, in two repositories.
func packageSet(up *upstream) []string {
	names := []string{"x86_64-repodata", "nonfree/x86_64-repodata"}
	for i, size := range []int{300 << 10, 2 << 20, 40 << 10, 5 << 20} {
		body := bytes.Repeat([]byte{byte('a' + i)}, size)
		name := fmt.Sprintf("pkg%d-1.0_1.x86_64.xbps", i)
		if i == 3 {
			name = "nonfree/" + name
		}
		up.put(name, body)
		up.put(name+".sig2", []byte("signature of "+name))
		names = append(names, name, name+".sig2")
	}
	up.put("x86_64-repodata", []byte("index v1"))
	up.put("nonfree/x86_64-repodata", []byte("nonfree index v1"))
	return names
}

// TestOneUpstreamRequestPerFile: 50 nodes installing the same package set
// at once make one upstream request per file, and each gets every file
// whole.
func TestOneUpstreamRequestPerFile(t *testing.T) {
	up := newUpstream(t)
	names := packageSet(up)
	// Hold the upstream until every client has asked, so the requests
	// really overlap.
	up.slow = make(chan struct{})
	c, srv := newCache(t, up, t.TempDir(), Options{})

	const nodes = 50
	var wg sync.WaitGroup
	errs := make(chan error, nodes*len(names))
	for range nodes {
		wg.Go(func() {
			for _, n := range names {
				resp, err := http.Get(srv.URL + "/xbps/" + n)
				if err != nil {
					errs <- err
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if want := up.files[n]; resp.StatusCode != 200 || !bytes.Equal(b, want) {
					errs <- fmt.Errorf("%s: %d, %d bytes, want %d", n, resp.StatusCode, len(b), len(want))
				}
			}
		})
	}
	time.Sleep(200 * time.Millisecond)
	close(up.slow)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	var served, upstreamBytes int64
	for _, n := range names {
		if got := up.count(n); got != 1 {
			t.Errorf("%s: %d upstream requests, want 1", n, got)
		}
		upstreamBytes += int64(len(up.files[n]))
	}
	served = upstreamBytes * nodes
	st := c.Stats()
	if st.UpstreamBytes != upstreamBytes || st.ServedBytes != served {
		t.Errorf("upstream %d bytes, served %d; want %d and %d", st.UpstreamBytes, st.ServedBytes, upstreamBytes, served)
	}
	t.Logf("%d nodes: upstream %d bytes in %d requests, served %d bytes (%.0fx)", nodes, st.UpstreamBytes, st.UpstreamRequests, st.ServedBytes, float64(st.ServedBytes)/float64(st.UpstreamBytes))
}

// TestKilledUpstream: a mirror that dies mid-download leaves nothing
// behind: the node gets an error naming the file, the next request
// downloads it whole.
func TestKilledUpstream(t *testing.T) {
	up := newUpstream(t)
	body := bytes.Repeat([]byte("nomad"), 1<<18)
	up.put("nomad-1.6.1_1.x86_64.xbps", body)
	up.cut["nomad-1.6.1_1.x86_64.xbps"] = true
	dir := t.TempDir()
	c, srv := newCache(t, up, dir, Options{})

	code, msg := get(t, srv.URL+"/xbps/nomad-1.6.1_1.x86_64.xbps")
	if code != http.StatusBadGateway || !strings.Contains(string(msg), "nomad-1.6.1_1.x86_64.xbps") {
		t.Fatalf("after a cut download: %d %q, want 502 naming the file", code, msg)
	}
	for _, sub := range []string{"files", "tmp"} {
		entries, _ := os.ReadDir(filepath.Join(dir, sub))
		if len(entries) != 0 {
			t.Errorf("%s/ holds %d entries after a cut download, want none", sub, len(entries))
		}
	}
	if st := c.Stats(); st.UpstreamErrors != 1 {
		t.Errorf("upstream errors %d, want 1", st.UpstreamErrors)
	}
	if code, b := get(t, srv.URL+"/xbps/nomad-1.6.1_1.x86_64.xbps"); code != 200 || !bytes.Equal(b, body) {
		t.Fatalf("the retry: %d, %d bytes", code, len(b))
	}
}

// TestIndexRevalidation: the index is asked about at most once per
// interval, conditionally; when it changed the new one is served; when the
// mirror is down the copy held is served and the failure counted.
func TestIndexRevalidation(t *testing.T) {
	up := newUpstream(t)
	up.put("x86_64-repodata", []byte("index v1"))
	c, srv := newCache(t, up, t.TempDir(), Options{Revalidate: 300 * time.Millisecond})
	url := srv.URL + "/xbps/x86_64-repodata"

	for range 3 {
		if _, b := get(t, url); string(b) != "index v1" {
			t.Fatalf("got %q", b)
		}
	}
	if n := up.count("x86_64-repodata"); n != 1 {
		t.Fatalf("%d upstream requests within the interval, want 1", n)
	}
	time.Sleep(350 * time.Millisecond)
	get(t, url) // a 304: same body
	if n := up.count("x86_64-repodata"); n != 2 {
		t.Fatalf("%d upstream requests after the interval, want 2", n)
	}
	up.put("x86_64-repodata", []byte("index v2"))
	time.Sleep(350 * time.Millisecond)
	if _, b := get(t, url); string(b) != "index v2" {
		t.Fatalf("after the upstream changed: %q, want v2", b)
	}
	up.down.Store(true)
	time.Sleep(350 * time.Millisecond)
	if code, b := get(t, url); code != 200 || string(b) != "index v2" {
		t.Fatalf("mirror down: %d %q, want the copy held", code, b)
	}
	if st := c.Stats(); st.UpstreamErrors != 1 {
		t.Errorf("upstream errors %d, want 1", st.UpstreamErrors)
	}
}

// TestRangeAndRestart: a package is served with Range support, and a new
// cache on the same directory serves it without the upstream.
func TestRangeAndRestart(t *testing.T) {
	up := newUpstream(t)
	body := []byte("0123456789abcdefghij")
	up.put("p-1_1.x86_64.xbps", body)
	dir := t.TempDir()
	_, srv := newCache(t, up, dir, Options{})
	if code, b := get(t, srv.URL+"/xbps/p-1_1.x86_64.xbps", "Range", "bytes=5-9"); code != http.StatusPartialContent || string(b) != "56789" {
		t.Fatalf("range: %d %q", code, b)
	}
	srv.Close()

	up.down.Store(true)
	c2, srv2 := newCache(t, up, dir, Options{})
	if code, b := get(t, srv2.URL+"/xbps/p-1_1.x86_64.xbps"); code != 200 || !bytes.Equal(b, body) {
		t.Fatalf("after a restart, upstream down: %d %q", code, b)
	}
	if st := c2.Stats(); st.UpstreamRequests != 0 || st.Hits != 1 {
		t.Errorf("after a restart: %+v, want a hit without the upstream", st)
	}
}

// TestBoundedSize: the cache holds at most MaxBytes, dropping the least
// recently used file first.
func TestBoundedSize(t *testing.T) {
	up := newUpstream(t)
	for _, n := range []string{"a", "b", "c"} {
		up.put(n+"-1_1.x86_64.xbps", bytes.Repeat([]byte(n), 400))
	}
	dir := t.TempDir()
	c, srv := newCache(t, up, dir, Options{MaxBytes: 1000})
	get(t, srv.URL+"/xbps/a-1_1.x86_64.xbps")
	time.Sleep(10 * time.Millisecond)
	get(t, srv.URL+"/xbps/b-1_1.x86_64.xbps")
	time.Sleep(10 * time.Millisecond)
	get(t, srv.URL+"/xbps/a-1_1.x86_64.xbps") // a is now more recent than b
	time.Sleep(10 * time.Millisecond)
	get(t, srv.URL+"/xbps/c-1_1.x86_64.xbps")

	if _, err := os.Stat(filepath.Join(dir, "files", "b-1_1.x86_64.xbps")); !os.IsNotExist(err) {
		t.Errorf("b, the least recently used, is still cached: %v", err)
	}
	for _, n := range []string{"a", "c"} {
		if _, err := os.Stat(filepath.Join(dir, "files", n+"-1_1.x86_64.xbps")); err != nil {
			t.Errorf("%s: %v", n, err)
		}
	}
	if st := c.Stats(); st.Evictions != 1 {
		t.Errorf("evictions %d, want 1", st.Evictions)
	}
	// A file larger than the whole cache is refused, not kept.
	up.put("huge-1_1.x86_64.xbps", bytes.Repeat([]byte("h"), 2000))
	if code, _ := get(t, srv.URL+"/xbps/huge-1_1.x86_64.xbps"); code != http.StatusBadGateway {
		t.Errorf("a file larger than the cache: %d, want 502", code)
	}
}

// TestHostileRequests: what the provisioning network may ask for is a
// repository file of the upstream, nothing else.
func TestHostileRequests(t *testing.T) {
	up := newUpstream(t)
	up.put("x86_64-repodata", []byte("index"))
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "secret"), []byte("s3cret"), 0o600)
	_, srv := newCache(t, up, dir, Options{})
	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/xbps/../secret", http.StatusNotFound},
		{"GET", "/xbps/%2e%2e/secret", http.StatusNotFound},
		{"GET", "/xbps/.hidden", http.StatusNotFound},
		{"GET", "/xbps/a/b/c/d/e-repodata", http.StatusNotFound},
		{"GET", "/xbps/" + strings.Repeat("a", 300), http.StatusNotFound},
		{"GET", "/xbps/x86_64-repodata;rm", http.StatusNotFound},
		{"GET", "/xbps/missing-1_1.x86_64.xbps", http.StatusNotFound},
		{"POST", "/xbps/x86_64-repodata", http.StatusMethodNotAllowed},
		{"GET", "/xbps/x86_64-repodata", http.StatusOK},
	} {
		req, _ := http.NewRequest(tc.method, srv.URL+tc.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.want || strings.Contains(string(b), "s3cret") {
			t.Errorf("%s %s: %d %q, want %d", tc.method, tc.path, resp.StatusCode, b, tc.want)
		}
	}
	// A 404 upstream is not cached: nothing grows from asking for
	// missing files.
	entries, _ := os.ReadDir(filepath.Join(dir, "files"))
	if len(entries) != 1 {
		t.Errorf("files/ holds %d entries, want only the index", len(entries))
	}
}

func FuzzCleanPath(f *testing.F) {
	for _, s := range []string{"x86_64-repodata", "nonfree/x86_64-repodata", "../etc/passwd", "a//b", "/a/./b", "é"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		c, err := CleanPath(p)
		if err != nil {
			return
		}
		if filepath.IsAbs(c) || len(c) > maxPathLen || filepath.Clean(c) != c || !filepath.IsLocal(c) {
			t.Fatalf("CleanPath(%q) = %q, which is not a path inside the cache", p, c)
		}
		for _, seg := range strings.Split(c, "/") {
			if strings.HasPrefix(seg, ".") {
				t.Fatalf("CleanPath(%q) = %q, with a dot segment", p, c)
			}
		}
	})
}
