package routerostest

import (
	"bufio"
	"fmt"
	"io"
)

// Word lengths, per the MikroTik API manual ("API words"): the prefix grows
// by one byte at each boundary, and 0xF0 introduces a plain 4-byte length.
// A first byte >= 0xF8 is a reserved control byte that no peer may send.
const (
	max1 = 0x80
	max2 = 0x4000
	max3 = 0x200000
	max4 = 0x10000000
)

// wireError is a protocol violation; a constant type keeps the sentinels
// out of package variables.
type wireError string

func (e wireError) Error() string { return string(e) }

const (
	// errControlByte: the manual says a peer receiving one cannot know how
	// to read what follows, so the connection is over.
	errControlByte wireError = "reserved control byte"
	// errWordTooLong guards the test process's memory. RouterOS also limits
	// what a client may send (the manual: "There is a limit on number and
	// size of sentences client can send before it has logged in").
	errWordTooLong wireError = "word too long"
)

// encodeLength returns the length prefix of a word of n bytes.
func encodeLength(n int) []byte {
	switch {
	case n < max1:
		return []byte{byte(n)}
	case n < max2:
		return []byte{byte(n>>8) | 0x80, byte(n)}
	case n < max3:
		return []byte{byte(n>>16) | 0xC0, byte(n >> 8), byte(n)}
	case n < max4:
		return []byte{byte(n>>24) | 0xE0, byte(n >> 16), byte(n >> 8), byte(n)}
	default:
		return []byte{0xF0, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}
	}
}

// decodeLength reads one length prefix. Non-minimal encodings (5 sent as
// 80 05) are accepted, as a tolerant reader should; 0xF1..0xF7 are refused
// along with the control bytes because the manual defines only 0xF0.
func decodeLength(r io.ByteReader) (int, error) {
	b, err := r.ReadByte()
	if err != nil {
		return 0, err
	}
	var extra int
	var n int
	switch {
	case b < 0x80:
		return int(b), nil
	case b < 0xC0:
		n, extra = int(b&0x3F), 1
	case b < 0xE0:
		n, extra = int(b&0x1F), 2
	case b < 0xF0:
		n, extra = int(b&0x0F), 3
	case b == 0xF0:
		n, extra = 0, 4
	default:
		return 0, fmt.Errorf("%w 0x%02X", errControlByte, b)
	}
	for range extra {
		c, err := r.ReadByte()
		if err != nil {
			return 0, unexpected(err)
		}
		n = n<<8 | int(c)
	}
	return n, nil
}

// unexpected turns an EOF inside a word into ErrUnexpectedEOF: the peer hung
// up mid-sentence, which is not a clean close.
func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// appendWord appends one encoded word.
func appendWord(b []byte, w string) []byte {
	b = append(b, encodeLength(len(w))...)
	return append(b, w...)
}

// encodeSentence encodes words followed by the empty word that ends a
// sentence.
func encodeSentence(words ...string) []byte {
	var b []byte
	for _, w := range words {
		b = appendWord(b, w)
	}
	return append(b, 0)
}

// readSentence reads words up to the empty word. Empty sentences (a lone
// empty word) come back as nil; the manual says they are ignored.
func readSentence(r *bufio.Reader, maxWord int) ([]string, error) {
	var words []string
	for {
		n, err := decodeLength(r)
		if err != nil {
			if len(words) > 0 {
				err = unexpected(err)
			}
			return nil, err
		}
		if n == 0 {
			return words, nil
		}
		if n > maxWord {
			return nil, fmt.Errorf("%w: %d bytes", errWordTooLong, n)
		}
		b := make([]byte, n)
		if _, err := io.ReadFull(r, b); err != nil {
			return nil, unexpected(err)
		}
		words = append(words, string(b))
	}
}
