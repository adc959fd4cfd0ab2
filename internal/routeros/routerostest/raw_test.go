package routerostest

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// rawConn is a client that speaks bytes, so replies can be checked
// byte for byte rather than through a client library's parser.
type rawConn struct {
	t  testing.TB
	c  net.Conn
	br *bufio.Reader
}

func dialRaw(t testing.TB, addr string) *rawConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	return &rawConn{t: t, c: c, br: bufio.NewReader(c)}
}

func (rc *rawConn) send(b []byte) {
	rc.t.Helper()
	if _, err := rc.c.Write(b); err != nil {
		rc.t.Fatalf("send: %v", err)
	}
}

// expect reads exactly the bytes of one sentence and compares them.
func (rc *rawConn) expect(words []string) {
	rc.t.Helper()
	want := encodeSentence(words...)
	got := make([]byte, len(want))
	n, err := io.ReadFull(rc.br, got)
	if !bytes.Equal(got[:n], want) {
		// Show words, not bytes, when the router said something else.
		said, _ := readSentence(bufio.NewReader(io.MultiReader(bytes.NewReader(got[:n]), rc.br)), maxWord)
		rc.t.Fatalf("got % x (%q, read error %v)\nwant % x (%q)", got[:n], said, err, want, words)
	}
}

// expectClosed checks that the router hung up.
func (rc *rawConn) expectClosed() {
	rc.t.Helper()
	if b, err := rc.br.ReadByte(); !errors.Is(err, io.EOF) {
		rc.t.Fatalf("connection still open: read %#x, %v", b, err)
	}
}

// play runs a transcript in the notation of librouteros's
// docs/api_analysis.rst: "<--- word" is sent to the router, "---> word"
// comes from it, EOS ends a sentence. Two additions: "<--- RAW hex" sends
// bytes as they are, "---> CLOSED" expects the router to hang up.
func (rc *rawConn) play(transcript string) {
	rc.t.Helper()
	var out, in []string
	for _, line := range strings.Split(transcript, "\n") {
		line = strings.TrimSpace(line)
		dir, word, ok := strings.Cut(line, " ")
		if !ok && line != "" {
			dir, word = line, ""
		}
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case dir == "<---" && strings.HasPrefix(word, "RAW "):
			b, err := hex.DecodeString(strings.ReplaceAll(word[len("RAW "):], " ", ""))
			if err != nil {
				rc.t.Fatalf("transcript: %q: %v", line, err)
			}
			rc.send(b)
		case dir == "<---" && word == "EOS":
			rc.send(encodeSentence(out...))
			out = nil
		case dir == "<---":
			out = append(out, word)
		case dir == "--->" && word == "CLOSED":
			rc.expectClosed()
		case dir == "--->" && word == "EOS":
			rc.expect(in)
			in = nil
		case dir == "--->":
			in = append(in, word)
		default:
			rc.t.Fatalf("transcript: cannot read %q", line)
		}
	}
	if len(out) > 0 || len(in) > 0 {
		rc.t.Fatalf("transcript: sentence without EOS")
	}
}

// loginTranscript is the >= 6.43 login of a router made by testRouter.
const loginTranscript = `
	<--- /login
	<--- =name=admin
	<--- =password=secret
	<--- EOS
	---> !done
	---> EOS
`
