package pxe

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// TFTP opcodes (RFC 1350, RFC 2347 for OACK).
const (
	tftpOpRRQ   = 1
	tftpOpWRQ   = 2
	tftpOpDATA  = 3
	tftpOpACK   = 4
	tftpOpERROR = 5
	tftpOpOACK  = 6
)

// TFTP error codes (RFC 1350; 8 is RFC 2347's "option negotiation failed",
// which EDK2 also sends to end its size probe).
const (
	tftpErrUndefined = 0 // see the message: busy, timeout, shutdown, server error
	tftpErrNotFound  = 1
	tftpErrAccess    = 2
	tftpErrIllegalOp = 4
	tftpErrOptions   = 8
)

const (
	// tftpMaxRequest bounds a request datagram: a longer one is dropped as
	// malformed. A request that fits a 1500-byte frame fits here with room
	// to spare; the firmware's are a file name and two or three options.
	tftpMaxRequest = 2048
	// tftpMaxOptions bounds the options read from one request; the rest are
	// ignored, as unknown options are (RFC 2347). Clients send at most four.
	tftpMaxOptions = 16
	// tftpMinBlksize and tftpMaxBlksize are RFC 2348's bounds: 65464 fills
	// a 65535-byte IPv4 datagram.
	tftpMinBlksize = 8
	tftpMaxBlksize = 65464
	// tftpMaxWindow caps windowsize (RFC 7440). The window is also held to
	// tftpReadBuffer bytes (tftpWindow), since the server keeps each
	// unacknowledged block of it for resending: 44 blocks of 1468 bytes,
	// 64 of 512. RFC 7440 measured the gain flattening out past 16-32.
	tftpMaxWindow = 64
	// tftpMaxTimeout is the largest timeout option (RFC 2349) accepted, in
	// seconds; the RFC's own upper bound. A transfer's lifetime still bounds
	// how long a silent client can hold it.
	tftpMaxTimeout = 255
)

// tftpRequest is a parsed RRQ or WRQ.
type tftpRequest struct {
	op   uint16
	name string
	mode string // as sent; see octet and netascii
	opts []tftpOption
}

// Modes are case-insensitive (RFC 1350); tftp-hpa sends "octet", some
// older clients "OCTET".
func (r tftpRequest) octet() bool    { return strings.EqualFold(r.mode, "octet") }
func (r tftpRequest) netascii() bool { return strings.EqualFold(r.mode, "netascii") }

// tftpOption is one option of a request, its name as the client spelled it
// (the OACK echoes it back the same way).
type tftpOption struct{ name, value string }

// parseTFTPRequest reads a request datagram: opcode, file name, NUL, mode,
// NUL, then option name and value pairs (RFC 2347), each NUL-terminated.
// Options end at the packet's end or at an empty name, since some clients
// pad their requests with NULs. Anything else sent to the server port
// (DATA, ACK, short or unterminated packets) is an error.
func parseTFTPRequest(b []byte) (tftpRequest, error) {
	if len(b) < 2 {
		return tftpRequest{}, fmt.Errorf("%d-byte packet", len(b))
	}
	req := tftpRequest{op: binary.BigEndian.Uint16(b)}
	if req.op != tftpOpRRQ && req.op != tftpOpWRQ {
		return tftpRequest{}, fmt.Errorf("opcode %d is not a request", req.op)
	}
	rest := b[2:]
	field := func() (string, bool) {
		i := bytes.IndexByte(rest, 0)
		if i < 0 {
			return "", false
		}
		s := string(rest[:i])
		rest = rest[i+1:]
		return s, true
	}
	var ok bool
	if req.name, ok = field(); !ok {
		return tftpRequest{}, errors.New("file name not NUL-terminated")
	}
	if req.mode, ok = field(); !ok {
		return tftpRequest{}, errors.New("mode missing or not NUL-terminated")
	}
	for len(rest) > 0 && len(req.opts) < tftpMaxOptions {
		name, ok := field()
		if !ok || name == "" {
			break
		}
		value, ok := field()
		if !ok {
			break
		}
		req.opts = append(req.opts, tftpOption{name, value})
	}
	return req, nil
}

// tftpParams is what a transfer runs with once its options are settled.
type tftpParams struct {
	blksize int
	window  int
	timeout time.Duration
}

// tftpNegotiate settles a read request's options against the server's caps
// and returns the transfer's parameters and the options to acknowledge, in
// the order the client sent them; none means no OACK, and the transfer
// starts with DATA block 1 (RFC 1350). An option with a value we cannot
// use is left out of the OACK, which the RFCs read as refused: the client
// then runs with the default (512-byte blocks, lockstep, its own timeout).
// size is the file's length, or -1 when it is not known in advance
// (netascii: the conversion changes it).
func tftpNegotiate(opts []tftpOption, blkCap int, timeout time.Duration, size int64) (tftpParams, []tftpOption) {
	p := tftpParams{blksize: 512, window: 1, timeout: timeout}
	value := map[string]string{}
	for _, o := range opts {
		name := strings.ToLower(o.name)
		if _, dup := value[name]; dup {
			// The first one counts; echoing two values would be ambiguous.
			continue
		}
		var v string
		switch n, ok := tftpNumber(o.value); {
		case !ok:
			continue
		case name == "blksize" && n >= tftpMinBlksize:
			// RFC 2348: the server may answer with a smaller size; a request
			// above the cap (even above 65464) gets the cap, as tftpd-hpa does.
			p.blksize = min(n, blkCap)
			v = strconv.Itoa(p.blksize)
		case name == "tsize" && size > 0:
			// RFC 2349: the client sends 0 and learns the size. An empty
			// file is not sized: curl takes "tsize 0" in an OACK for a
			// broken server and fails the transfer (as pin/tftp, which
			// served before, never sent it).
			v = strconv.FormatInt(size, 10)
		case name == "timeout" && n >= 1 && n <= tftpMaxTimeout:
			p.timeout = time.Duration(n) * time.Second
			v = o.value
		case name == "windowsize" && n >= 1:
			// Held to the window cap below, once blksize is known.
			v = o.value
		default:
			continue
		}
		value[name] = v
	}
	if v, ok := value["windowsize"]; ok {
		n, _ := tftpNumber(v)
		p.window = min(n, tftpWindow(p.blksize))
		value["windowsize"] = strconv.Itoa(p.window)
	}
	var oack []tftpOption
	for _, o := range opts {
		name := strings.ToLower(o.name)
		if v, ok := value[name]; ok {
			oack = append(oack, tftpOption{o.name, v})
			delete(value, name)
		}
	}
	return p, oack
}

// tftpWindow is the largest window for blksize: tftpMaxWindow blocks and at
// most tftpReadBuffer bytes, at least one block.
func tftpWindow(blksize int) int {
	return max(1, min(tftpMaxWindow, tftpReadBuffer/blksize))
}

// tftpNumber parses an option's decimal value. Only digits are accepted (no
// sign, no spaces); values too large for any option saturate, so that a
// blksize of 99999999999999 still reads as "more than the cap".
func tftpNumber(s string) (int, bool) {
	if s == "" {
		return 0, false
	}
	n := 0
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = min(n*10+int(c-'0'), 1<<30)
	}
	return n, true
}

// tftpOACK builds an OACK packet.
func tftpOACK(opts []tftpOption) []byte {
	p := []byte{0, tftpOpOACK}
	for _, o := range opts {
		p = append(p, o.name...)
		p = append(p, 0)
		p = append(p, o.value...)
		p = append(p, 0)
	}
	return p
}

// tftpErrorPacket builds an ERROR packet. The message is cut to fit a
// 512-byte packet, which every client reads.
func tftpErrorPacket(code uint16, msg string) []byte {
	if len(msg) > 500 {
		msg = msg[:500]
	}
	p := []byte{0, tftpOpERROR, byte(code >> 8), byte(code)}
	p = append(p, msg...)
	return append(p, 0)
}

// tftpNetascii converts a file to netascii (RFC 764, as RFC 1350 asks):
// LF becomes CR LF and CR becomes CR NUL. Only tftp-hpa's interactive
// client still asks for it by default; firmware always asks for octet.
type tftpNetascii struct {
	r       *bufio.Reader
	pending int // the second byte of a pair still to be written, or -1
}

func newTFTPNetascii(r *bufio.Reader) *tftpNetascii { return &tftpNetascii{r: r, pending: -1} }

func (a *tftpNetascii) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if a.pending >= 0 {
			p[n], a.pending = byte(a.pending), -1
			n++
			continue
		}
		c, err := a.r.ReadByte()
		if err != nil {
			if n > 0 && err == io.EOF {
				return n, nil
			}
			return n, err
		}
		switch c {
		case '\n':
			c, a.pending = '\r', '\n'
		case '\r':
			a.pending = 0
		}
		p[n] = c
		n++
	}
	return n, nil
}
