// Package httpcount counts the body bytes a handler writes without costing
// it sendfile: a wrapper that only has Write hides the server's ReadFrom,
// and then io.Copy sends every byte of a file through a user-space buffer
// (a 32 MiB initrd was served at a few percent of nginx's rate that way,
// docs/benchmarks.md, "Files").
package httpcount

import (
	"io"
	"net/http"
)

// Writer counts what goes through it; Status is the code written (200
// until WriteHeader says otherwise).
type Writer struct {
	http.ResponseWriter
	Status int
	Bytes  int64
}

// New wraps w.
func New(w http.ResponseWriter) *Writer { return &Writer{ResponseWriter: w, Status: http.StatusOK} }

func (w *Writer) WriteHeader(code int) {
	w.Status = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *Writer) Write(b []byte) (int, error) {
	n, err := w.ResponseWriter.Write(b)
	w.Bytes += int64(n)
	return n, err
}

// ReadFrom passes io.Copy through to the server's own ReadFrom, which
// sends an *os.File (and http.ServeContent's LimitedReader of one) with
// sendfile(2).
func (w *Writer) ReadFrom(src io.Reader) (int64, error) {
	var n int64
	var err error
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(src)
	} else {
		// Hide our own ReadFrom from io.Copy, or it would call us back.
		n, err = io.Copy(struct{ io.Writer }{w.ResponseWriter}, src)
	}
	w.Bytes += n
	return n, err
}

// Unwrap lets http.ResponseController reach the connection (deadlines,
// flushes) through the Writer.
func (w *Writer) Unwrap() http.ResponseWriter { return w.ResponseWriter }
