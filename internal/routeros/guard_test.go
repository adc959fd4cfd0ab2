package routeros

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	ros "github.com/go-routeros/routeros/v3"
)

// chunkConn is a router's side of the stream as a net.Conn: each Read
// returns at most size bytes, then io.EOF when the stream is used up.
// What the client writes is dropped.
type chunkConn struct {
	net.Conn // not called
	data     []byte
	size     int
	reads    int
}

func (c *chunkConn) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	c.reads++
	n := copy(p[:min(len(p), c.size)], c.data)
	c.data = c.data[n:]
	return n, nil
}

func (c *chunkConn) Write(p []byte) (int, error)      { return len(p), nil }
func (c *chunkConn) Close() error                     { return nil }
func (c *chunkConn) SetDeadline(time.Time) error      { return nil }
func (c *chunkConn) SetReadDeadline(time.Time) error  { return nil }
func (c *chunkConn) SetWriteDeadline(time.Time) error { return nil }

func TestGuardFraming(t *testing.T) {
	maxBody := bytes.Repeat([]byte("m"), maxWord)
	for _, c := range []struct {
		name   string
		stream []byte
		want   string // in the error; "" for the stream passed through whole
	}{
		{"!done", sentence("!done"), ""},
		{"!re with attributes, then !done", append(sentence("!re", "=name=a", "=address=10.0.0.1/24", "=comment="), sentence("!done")...), ""},
		{"a 2-byte length", sentence("=comment=" + strings.Repeat("c", 200)), ""},
		{"a non-minimal length", append([]byte{0x80, 0x05}, "!done\x00"...), ""},
		{"the 5-byte form of a small length", append([]byte{0xF0, 0, 0, 0, 5}, "!done\x00"...), ""},
		{"control bytes inside a word", append([]byte{3, 0xF8, 0xFF, 0xF0}, 0), ""},
		{"a word of exactly the limit", append(append([]byte{0xD0, 0x00, 0x00}, maxBody...), 0), ""},
		{"a word one byte over the limit", []byte{0xD0, 0x00, 0x01}, "oversized word: 1048577 bytes"},
		{"F0 FF FF FF FF", []byte{0xF0, 0xFF, 0xFF, 0xFF, 0xFF}, "oversized word: 4294967295 bytes"},
		{"a 4-byte length over the limit", []byte{0xEF, 0xFF, 0xFF, 0xFF}, "oversized word: 268435455 bytes"},
		{"reserved 0xF1", []byte{0xF1, 0, 0, 0, 1, 'x'}, "reserved control byte 0xF1"},
		{"reserved 0xFF after a sentence", append(sentence("!re"), 0xFF), "reserved control byte 0xFF"},
		{"too many words", make([]byte, maxReplyWords+1), "more than 100000 words"},
		{"too many bytes", bytes.Repeat(append(append([]byte{0xD0, 0x00, 0x00}, maxBody...), 0), 8), "more than 8388608 bytes"},
	} {
		for _, size := range []int{1, 3, 4096, 1 << 30} {
			if size < 4096 && len(c.stream) > 1<<16 {
				continue // a million 1-byte reads would add nothing but time
			}
			g := &guard{conn: &chunkConn{data: c.stream, size: size}}
			if err := g.arm(time.Time{}); err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(g)
			var pe *ProtocolError
			switch {
			case c.want == "" && (err != nil || !bytes.Equal(got, c.stream)):
				t.Errorf("%s, %d-byte reads: %d of %d bytes, %v", c.name, size, len(got), len(c.stream), err)
			case c.want != "" && (!errors.As(err, &pe) || !strings.Contains(err.Error(), c.want)):
				t.Errorf("%s, %d-byte reads: %v, want a ProtocolError saying %q", c.name, size, err, c.want)
			case c.want != "" && len(got) >= len(c.stream):
				t.Errorf("%s, %d-byte reads: all %d bytes were handed on", c.name, size, len(got))
			}
			if c.want != "" {
				if _, again := g.Read(make([]byte, 10)); again != err {
					t.Errorf("%s: after the error, Read says %v", c.name, again)
				}
			}
		}
	}
}

// TestGuardBoundsPerReply: the reply bounds are per command; arm starts
// them again.
func TestGuardBoundsPerReply(t *testing.T) {
	reply := make([]byte, maxReplyWords) // as many empty sentences as one reply may have
	g := &guard{conn: &chunkConn{data: bytes.Repeat(reply, 3), size: 1 << 20}}
	for i := range 3 {
		if err := g.arm(time.Time{}); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(g, make([]byte, len(reply))); err != nil {
			t.Fatalf("reply %d: %v", i, err)
		}
	}
}

// TestGuardReadsWordsWhole: a word trickled a byte at a time reaches
// go-routeros in one Read (its reader allocates what is left of the word
// on every Read), and no Read goes past the word's end.
func TestGuardReadsWordsWhole(t *testing.T) {
	body := strings.Repeat("w", 1000)
	stream := append(sentence("=comment="+body), sentence("!done")...)
	cc := &chunkConn{data: stream, size: 1}
	g := &guard{conn: cc}
	var sizes []int
	for {
		n, err := g.Read(make([]byte, 1<<16))
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, n)
	}
	// The first prefix byte alone; the second with the body whole; the
	// sentence's end; !done's prefix with its body; its end.
	want := []int{1, 1 + len("=comment=") + len(body), 1, 1 + len("!done"), 1}
	if len(sizes) != len(want) {
		t.Fatalf("reads of %v, want %v", sizes, want)
	}
	for i := range want {
		if sizes[i] != want[i] {
			t.Fatalf("reads of %v, want %v", sizes, want)
		}
	}
}

// FuzzReplyReader feeds arbitrary bytes, as the router's replies, through
// the guard and go-routeros's reader, the way Conn reads them: nothing
// panics, nothing hangs, and memory stays within what the bytes themselves
// and the word limit explain, whatever lengths they declare. chunk is how
// many bytes each socket Read returns (1 to 64), as a trickling router
// would.
func FuzzReplyReader(f *testing.F) {
	// Seeds: testdata/fuzz/FuzzReplyReader (F0 FF FF FF FF, replies a
	// router sends).
	f.Fuzz(func(t *testing.T, stream []byte, chunk uint8) {
		g := &guard{conn: &chunkConn{data: stream, size: int(chunk)%64 + 1}}
		client, err := ros.NewClient(g)
		if err != nil {
			t.Fatal(err)
		}
		client.SetLogHandler(slog.DiscardHandler)
		type result struct {
			words int // longest word seen in a reply
			err   error
		}
		done := make(chan result, 1)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		go func() {
			var res result
			// Each Run reads one reply; a trap or an unknown reply word
			// leaves the stream readable, so go on to the end of it.
			for range len(stream) + 1 {
				if err := g.arm(time.Time{}); err != nil {
					res.err = err
					break
				}
				reply, err := client.Run("/system/identity/print")
				if reply != nil {
					for _, s := range append(reply.Re, reply.Done) {
						if s == nil {
							continue
						}
						for _, p := range s.List {
							res.words = max(res.words, len(p.Key)+len(p.Value)+2)
						}
					}
				}
				var dev *ros.DeviceError
				var unknown *ros.UnknownReplyError
				if err != nil && !errors.As(err, &dev) && !errors.As(err, &unknown) {
					break
				}
			}
			done <- res
		}()
		var res result
		select {
		case res = <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("reading %d bytes took over 10s", len(stream))
		}
		runtime.ReadMemStats(&after)
		if res.err != nil {
			t.Fatal(res.err)
		}
		if res.words > maxWord {
			t.Errorf("a word of %d bytes got through", res.words)
		}
		// go-routeros allocates a buffer of what it asks for on every
		// Read (4 KiB, or what is left of a word) and a word's declared
		// length up front: a few words' worth per input byte, and the
		// word limit a few times over for a word the stream cuts short.
		bound := 8*maxWord + 64<<10*uint64(len(stream)+1)
		if got := after.TotalAlloc - before.TotalAlloc; got > bound {
			t.Errorf("%d bytes allocated for a %d-byte stream, want at most %d", got, len(stream), bound)
		}
	})
}
