package routeros

import (
	"fmt"
	"net"
	"time"
)

// Bounds on what a router may send in reply to one command. go-routeros's
// reader allocates whatever length a word's prefix declares before reading
// any of it, and its context reader allocates that again on every Read: a
// router sending F0 FF FF FF FF costs 8 GiB. bootstrapd prints a few menus
// with .proplist, so real replies stay far below these; the reply bounds
// also cap go-routeros's per-word overhead (a Pair and a map entry for
// every word, however short).
const (
	maxWord       = 1 << 20 // bytes in one word
	maxReplyBytes = 8 << 20 // bytes in the reply to one command
	maxReplyWords = 100_000 // words, sentence ends included, in one reply
)

// ProtocolError is a router sending what the RouterOS API does not allow,
// or more than bootstrapd accepts. The session is dropped; the next
// command dials again.
type ProtocolError struct {
	Reason string
}

func (e *ProtocolError) Error() string {
	return e.Reason + "; check that the address is the router's API service, not another service or a proxy"
}

// guard sits between the socket and go-routeros and reads the word
// framing as bytes pass: a length prefix of 1 to 5 bytes, then that many
// bytes of body (a zero length ends a sentence). A Read that would hand
// go-routeros a prefix over maxWord, or a reply over its bounds, fails
// instead, so a broken or hostile router costs bounded memory. Every Read
// happens under the deadline arm set on the socket, so a router that
// trickles costs at most that.
type guard struct {
	conn net.Conn

	prefix int   // prefix bytes still to come; 0 with body 0: a new word
	length int64 // the length being decoded
	body   int64 // body bytes still to come
	bytes  int64 // in the reply to the current command
	words  int   // in the reply to the current command
	err    error // once the stream is broken, it stays broken
}

// arm readies the guard for the next command's reply: its deadline, and
// fresh reply bounds.
func (g *guard) arm(deadline time.Time) error {
	g.bytes, g.words = 0, 0
	return g.conn.SetDeadline(deadline)
}

// received is how many bytes of the current command's reply have come.
func (g *guard) received() int64 { return g.bytes }

func (g *guard) Read(p []byte) (int, error) {
	if g.err != nil {
		return 0, g.err
	}
	n, err := g.conn.Read(p)
	if perr := g.scan(p[:n]); perr != nil {
		return 0, perr
	}
	// Inside a word's body go-routeros reads until the word is complete,
	// and its context reader allocates a buffer the size of what is left
	// on every Read: a router trickling a large word would cost memory
	// quadratic in its size. Waiting here for the rest of the word (never
	// beyond it, and under the deadline) makes that one Read.
	for err == nil && g.body > 0 && n < len(p) {
		var m int
		m, err = g.conn.Read(p[n : n+int(min(int64(len(p)-n), g.body))])
		if perr := g.scan(p[n : n+m]); perr != nil {
			return 0, perr
		}
		n += m
	}
	return n, err
}

// scan runs the framing state machine over bytes about to be handed on.
func (g *guard) scan(b []byte) error {
	g.bytes += int64(len(b))
	if g.bytes > maxReplyBytes {
		return g.fail("the router sent an oversized reply: more than %d bytes for one command", maxReplyBytes)
	}
	for len(b) > 0 {
		if g.body > 0 {
			k := min(g.body, int64(len(b)))
			g.body -= k
			b = b[k:]
			continue
		}
		c := b[0]
		b = b[1:]
		if g.prefix > 0 {
			g.length = g.length<<8 | int64(c)
			g.prefix--
		} else {
			// The manual's encoding; 0xF0 is followed by a plain 4-byte
			// length, and 0xF1 and up are reserved control bytes (which
			// go-routeros would misread as lengths).
			switch {
			case c < 0x80:
				g.length, g.prefix = int64(c), 0
			case c < 0xC0:
				g.length, g.prefix = int64(c&0x3F), 1
			case c < 0xE0:
				g.length, g.prefix = int64(c&0x1F), 2
			case c < 0xF0:
				g.length, g.prefix = int64(c&0x0F), 3
			case c == 0xF0:
				g.length, g.prefix = 0, 4
			default:
				return g.fail("the router sent the reserved control byte 0x%02X where a word's length belongs", c)
			}
		}
		if g.prefix > 0 {
			continue
		}
		// A whole prefix: one more word (or sentence end).
		g.words++
		if g.words > maxReplyWords {
			return g.fail("the router sent an oversized reply: more than %d words for one command", maxReplyWords)
		}
		if g.length > maxWord {
			return g.fail("the router sent an oversized word: %d bytes, where bootstrapd accepts at most %d", g.length, maxWord)
		}
		g.body = g.length
	}
	return nil
}

func (g *guard) fail(format string, args ...any) error {
	g.err = &ProtocolError{Reason: fmt.Sprintf(format, args...)}
	return g.err
}

func (g *guard) Write(p []byte) (int, error) { return g.conn.Write(p) }
func (g *guard) Close() error                { return g.conn.Close() }
