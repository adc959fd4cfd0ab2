package pxe

import (
	"net"
	"net/http"
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
