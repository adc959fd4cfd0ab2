package routerostest

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

// The MikroTik API manual's length table, at each boundary: the largest
// length of one size and the smallest of the next.
func TestLengthEncoding(t *testing.T) {
	tests := []struct {
		n    int
		want []byte
	}{
		{0x00, []byte{0x00}},
		{0x7F, []byte{0x7F}},
		{0x80, []byte{0x80, 0x80}},
		{0x3FFF, []byte{0xBF, 0xFF}},
		{0x4000, []byte{0xC0, 0x40, 0x00}},
		{0x1FFFFF, []byte{0xDF, 0xFF, 0xFF}},
		{0x200000, []byte{0xE0, 0x20, 0x00, 0x00}},
		{0xFFFFFFF, []byte{0xEF, 0xFF, 0xFF, 0xFF}},
		{0x10000000, []byte{0xF0, 0x10, 0x00, 0x00, 0x00}},
		{0x7FFFFFFF, []byte{0xF0, 0x7F, 0xFF, 0xFF, 0xFF}},
	}
	for _, tt := range tests {
		if got := encodeLength(tt.n); !bytes.Equal(got, tt.want) {
			t.Errorf("encodeLength(%#x) = % x, want % x", tt.n, got, tt.want)
		}
		got, err := decodeLength(bytes.NewReader(tt.want))
		if err != nil || got != tt.n {
			t.Errorf("decodeLength(% x) = %#x, %v; want %#x", tt.want, got, err, tt.n)
		}
	}
}

func TestLengthDecodingRefuses(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"control byte 0xF8", []byte{0xF8}, errControlByte},
		{"control byte 0xFF", []byte{0xFF}, errControlByte},
		{"undefined 0xF1", []byte{0xF1, 0, 0, 0, 1}, errControlByte},
		{"cut 2-byte length", []byte{0x80}, io.ErrUnexpectedEOF},
		{"cut 5-byte length", []byte{0xF0, 0x10, 0x00}, io.ErrUnexpectedEOF},
		{"nothing", nil, io.EOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := decodeLength(bytes.NewReader(tt.in)); !errors.Is(err, tt.want) {
				t.Errorf("decodeLength(% x) error = %v, want %v", tt.in, err, tt.want)
			}
		})
	}
}

// A non-minimal prefix (5 written as 80 05) still reads as 5.
func TestLengthDecodingNonMinimal(t *testing.T) {
	if n, err := decodeLength(bytes.NewReader([]byte{0x80, 0x05})); n != 5 || err != nil {
		t.Errorf("decodeLength(80 05) = %d, %v", n, err)
	}
}

// Words at the boundary lengths survive a round trip through the
// sentence reader, with the prefix bytes the manual prescribes.
func TestSentenceRoundTrip(t *testing.T) {
	const cmd = "/ip/address/add"
	for _, n := range []int{0x7F, 0x80, 0x3FFF, 0x4000, 0x1FFFFF, 0x200000} {
		word := "=comment=" + strings.Repeat("x", n-len("=comment="))
		enc := encodeSentence(cmd, word)
		words, err := readSentence(bufio.NewReader(bytes.NewReader(enc)), maxWord)
		if err != nil {
			t.Fatalf("%#x: %v", n, err)
		}
		if len(words) != 2 || words[0] != cmd || words[1] != word {
			t.Fatalf("%#x: read back %d words", n, len(words))
		}
		second := enc[1+len(cmd):]
		if want := encodeLength(n); !bytes.HasPrefix(second, want) {
			t.Errorf("%#x: word prefix % x, want % x", n, second[:len(want)], want)
		}
	}
}

func TestReadSentence(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		want    []string
		wantErr error
	}{
		{"empty sentence", []byte{0}, nil, nil},
		{"value with equals", encodeSentence("/login", "=name=a=b"), []string{"/login", "=name=a=b"}, nil},
		{"cut inside a word", []byte{5, '/', 'q'}, nil, io.ErrUnexpectedEOF},
		{"cut before the end word", []byte{5, '/', 'q', 'u', 'i', 't'}, nil, io.ErrUnexpectedEOF},
		{"control byte", []byte{0xF9}, nil, errControlByte},
		{"word over the cap", []byte{0xF0, 0x10, 0x00, 0x00, 0x00}, nil, errWordTooLong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := readSentence(bufio.NewReader(bytes.NewReader(tt.in)), maxWord)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error = %v, want %v", err, tt.wantErr)
			}
			if strings.Join(got, "|") != strings.Join(tt.want, "|") {
				t.Errorf("words = %q, want %q", got, tt.want)
			}
		})
	}
}
