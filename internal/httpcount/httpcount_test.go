package httpcount

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// readerFromWriter is a ResponseWriter whose ReadFrom, like the server's,
// is the path to sendfile(2); it notes that it was used.
type readerFromWriter struct {
	*httptest.ResponseRecorder
	used bool
}

func (w *readerFromWriter) ReadFrom(src io.Reader) (int64, error) {
	w.used = true
	return io.Copy(struct{ io.Writer }{w.ResponseRecorder}, src)
}

// TestReadFrom: the Writer passes io.Copy through to the wrapped writer's
// ReadFrom when it has one (the server's does sendfile), falls back to
// Write when it has none, and counts the bytes either way.
func TestReadFrom(t *testing.T) {
	const body = "iPXE binary, say"
	for _, c := range []struct {
		name     string
		w        func() (http.ResponseWriter, func() bool, *httptest.ResponseRecorder)
		wantUsed bool
	}{
		{"server with ReadFrom", func() (http.ResponseWriter, func() bool, *httptest.ResponseRecorder) {
			w := &readerFromWriter{ResponseRecorder: httptest.NewRecorder()}
			return w, func() bool { return w.used }, w.ResponseRecorder
		}, true},
		{"writer without ReadFrom", func() (http.ResponseWriter, func() bool, *httptest.ResponseRecorder) {
			w := httptest.NewRecorder()
			return w, func() bool { return false }, w
		}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			inner, used, out := c.w()
			rec := New(inner)
			// What http.ServeContent does: io.CopyN into the writer.
			n, err := io.CopyN(rec, strings.NewReader(body+"and more"), int64(len(body)))
			if err != nil || n != int64(len(body)) {
				t.Fatalf("CopyN = %d, %v", n, err)
			}
			if used() != c.wantUsed {
				t.Errorf("wrapped ReadFrom used = %v, want %v", used(), c.wantUsed)
			}
			if rec.Bytes != int64(len(body)) || out.Body.String() != body {
				t.Errorf("counted %d bytes, wrote %q; want %d and %q", rec.Bytes, out.Body.String(), len(body), body)
			}
			if rec.Unwrap() != inner {
				t.Error("Unwrap does not return the wrapped writer")
			}
		})
	}
}
