package pxe

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestLimitListenerPerClient: one address holding idle connections gets
// MaxConnsPerClient of them; its next ones are closed at once, and a
// closed one frees its place.
func TestLimitListenerPerClient(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NodeServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }))
	go srv.Serve(LimitListener(inner))
	defer srv.Close()
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	closedAtOnce := 0
	for range MaxConnsPerClient + 10 {
		c, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		// The server closes a connection over the cap without a word: a
		// read sees EOF at once. One it keeps stays silent.
		c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); err != nil && !isTimeout(err) {
			closedAtOnce++
			c.Close()
			continue
		}
		held = append(held, c)
	}
	if len(held) != MaxConnsPerClient || closedAtOnce != 10 {
		t.Fatalf("held %d, closed at once %d; want %d and 10", len(held), closedAtOnce, MaxConnsPerClient)
	}
	held[0].Close()
	held = held[1:]
	time.Sleep(100 * time.Millisecond)
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + inner.Addr().String() + "/")
	if err != nil {
		t.Fatalf("a request after one connection closed: %v", err)
	}
	resp.Body.Close()
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// sendfileListener hands out connections that note whether net/http
// reached their ReadFrom, the sendfile path.
type sendfileListener struct {
	net.Listener
	used chan bool
}

type sendfileConn struct {
	*net.TCPConn
	used chan bool
}

func (l sendfileListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return sendfileConn{c.(*net.TCPConn), l.used}, nil
}

func (c sendfileConn) ReadFrom(r io.Reader) (int64, error) {
	select {
	case c.used <- true:
	default:
	}
	return c.TCPConn.ReadFrom(r)
}

// TestLimitListenerSendfile: a file served through LimitListener reaches
// the connection's ReadFrom, so the kernel copies it, not a user-space loop.
func TestLimitListenerSendfile(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "initrd")
	body := bytes.Repeat([]byte("initrd "), 10000)
	if err := os.WriteFile(file, body, 0o644); err != nil {
		t.Fatal(err)
	}
	used := make(chan bool, 1)
	srv := NodeServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, file) }))
	go srv.Serve(LimitListener(sendfileListener{inner, used}))
	defer srv.Close()
	resp, err := http.Get("http://" + inner.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("got %d bytes (%v), want the file's %d", len(got), err, len(body))
	}
	select {
	case <-used:
	default:
		t.Error("the file was copied without the connection's ReadFrom (no sendfile)")
	}
}

// Assets of sendfileMin and more go out with sendfile; smaller ones through
// a buffer, which is cheaper for them (see sendfileMin).
func TestAssetSendfileBySize(t *testing.T) {
	dir := t.TempDir()
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	h := &NodeHTTP{Assets: root, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	used := make(chan bool, 1)
	srv := NodeServer(h.Handler())
	go srv.Serve(LimitListener(sendfileListener{inner, used}))
	defer srv.Close()

	for _, c := range []struct {
		name     string
		size     int
		sendfile bool
	}{
		{"undionly.kpxe", 74_000, false},
		{"initrd.img", sendfileMin + 4096, true},
	} {
		body := bytes.Repeat([]byte{0x5a}, c.size)
		if err := os.WriteFile(filepath.Join(dir, c.name), body, 0o644); err != nil {
			t.Fatal(err)
		}
		resp, err := http.Get("http://" + inner.Addr().String() + "/assets/" + c.name)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || !bytes.Equal(got, body) {
			t.Fatalf("%s: got %d bytes (%v), want %d", c.name, len(got), err, c.size)
		}
		var sent bool
		select {
		case sent = <-used:
		default:
		}
		if sent != c.sendfile {
			t.Errorf("%s (%d bytes): sent with sendfile %v, want %v", c.name, c.size, sent, c.sendfile)
		}
	}
}
