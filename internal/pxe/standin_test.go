package pxe

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// TestStandInWorker: the stand-in worker binary is served at StandInPath
// only when configured, whole or by range, and only when it is a regular
// file; nothing else under /stand-in/ is served or listed.
func TestStandInWorker(t *testing.T) {
	dir := t.TempDir()
	bin := make([]byte, 50_000)
	for i := range bin {
		bin[i] = byte(i * 13)
	}
	binPath := filepath.Join(dir, "concourse-standin")
	if err := os.WriteFile(binPath, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, configured, method, target string
		hdr                              []string
		code                             int
		body                             []byte // nil: not checked
	}{
		{"unset", "", "GET", StandInPath, nil, http.StatusNotFound, nil},
		{"served", binPath, "GET", StandInPath, nil, http.StatusOK, bin},
		{"head", binPath, "HEAD", StandInPath, nil, http.StatusOK, []byte{}},
		{"range", binPath, "GET", StandInPath, []string{"Range", "bytes=100-199"}, http.StatusPartialContent, bin[100:200]},
		{"no listing", binPath, "GET", "/stand-in/", nil, http.StatusNotFound, nil},
		{"nothing else", binPath, "GET", "/stand-in/secret", nil, http.StatusNotFound, nil},
		{"no post", binPath, "POST", StandInPath, nil, http.StatusMethodNotAllowed, nil},
		{"missing file", filepath.Join(dir, "nope"), "GET", StandInPath, nil, http.StatusNotFound, nil},
		{"directory", dir, "GET", StandInPath, nil, http.StatusNotFound, nil},
		{"fifo", fifo, "GET", StandInPath, nil, http.StatusNotFound, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newNodeHTTP(t)
			f.h.StandInWorker = tt.configured
			done := make(chan struct{})
			go func() {
				defer close(done)
				w := f.do(tt.method, tt.target, nil, tt.hdr...)
				if w.Code != tt.code {
					t.Errorf("%s %s: %d, want %d", tt.method, tt.target, w.Code, tt.code)
				}
				if tt.body != nil && !bytes.Equal(w.Body.Bytes(), tt.body) {
					t.Errorf("%s %s: %d bytes served, want %d", tt.method, tt.target, w.Body.Len(), len(tt.body))
				}
				if tt.code == http.StatusOK {
					if ct := w.Header().Get("Content-Type"); ct != "application/octet-stream" {
						t.Errorf("Content-Type %q", ct)
					}
					if cl := w.Header().Get("Content-Length"); cl != strconv.Itoa(len(bin)) {
						t.Errorf("Content-Length %q", cl)
					}
				}
			}()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("the request hangs")
			}
		})
	}
}
