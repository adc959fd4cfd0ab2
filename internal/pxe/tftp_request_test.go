package pxe

import (
	"bufio"
	"bytes"
	"io"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestTFTPParseRequest(t *testing.T) {
	rq := func(op byte, fields ...string) []byte {
		return append([]byte{0, op}, strings.Join(fields, "\x00")+"\x00"...)
	}
	tests := []struct {
		name string
		pkt  []byte
		want tftpRequest
		err  string
	}{
		{"plain RRQ", rq(1, "undionly.kpxe", "octet"),
			tftpRequest{op: 1, name: "undionly.kpxe", mode: "octet"}, ""},
		{"WRQ", rq(2, "new.bin", "octet"), tftpRequest{op: 2, name: "new.bin", mode: "octet"}, ""},
		{"mode as sent", rq(1, "f", "NetASCII"), tftpRequest{op: 1, name: "f", mode: "NetASCII"}, ""},
		{"options kept as spelled", rq(1, "f", "octet", "BLKSIZE", "1468", "tsize", "0"),
			tftpRequest{op: 1, name: "f", mode: "octet", opts: []tftpOption{{"BLKSIZE", "1468"}, {"tsize", "0"}}}, ""},
		{"NUL padding ends options", append(rq(1, "f", "octet", "tsize", "0"), 0, 0, 0, 0),
			tftpRequest{op: 1, name: "f", mode: "octet", opts: []tftpOption{{"tsize", "0"}}}, ""},
		{"option without value dropped", rq(1, "f", "octet", "tsize", "0", "blksize")[:len(rq(1, "f", "octet", "tsize", "0", "blksize"))-1],
			tftpRequest{op: 1, name: "f", mode: "octet", opts: []tftpOption{{"tsize", "0"}}}, ""},
		{"empty name parses (open refuses it)", rq(1, "", "octet"), tftpRequest{op: 1, mode: "octet"}, ""},
		{"too many options", rq(1, append([]string{"f", "octet"}, strings.Split(strings.Repeat("x\x001\x00", 20), "\x00")[:40]...)...),
			tftpRequest{op: 1, name: "f", mode: "octet", opts: func() []tftpOption {
				var o []tftpOption
				for range tftpMaxOptions {
					o = append(o, tftpOption{"x", "1"})
				}
				return o
			}()}, ""},
		{"empty", nil, tftpRequest{}, "0-byte"},
		{"one byte", []byte{1}, tftpRequest{}, "1-byte"},
		{"DATA", []byte{0, 3, 0, 1, 'x'}, tftpRequest{}, "opcode 3"},
		{"ACK", []byte{0, 4, 0, 0}, tftpRequest{}, "opcode 4"},
		{"unknown opcode", []byte{0, 9}, tftpRequest{}, "opcode 9"},
		{"name not terminated", []byte{0, 1, 'x', 'y'}, tftpRequest{}, "file name"},
		{"no mode", []byte{0, 1, 'x', 0}, tftpRequest{}, "mode"},
		{"mode not terminated", []byte{0, 1, 'x', 0, 'o', 'c'}, tftpRequest{}, "mode"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseTFTPRequest(tc.pkt)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("parse % x: %+v, %v; want an error containing %q", tc.pkt, got, err, tc.err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("parse % x:\n got %+v, %v\nwant %+v", tc.pkt, got, err, tc.want)
			}
		})
	}
}

func TestTFTPNegotiate(t *testing.T) {
	o := func(kv ...string) []tftpOption {
		var opts []tftpOption
		for i := 0; i+1 < len(kv); i += 2 {
			opts = append(opts, tftpOption{kv[i], kv[i+1]})
		}
		return opts
	}
	const size = 1 << 20
	def := tftpParams{blksize: 512, window: 1, timeout: time.Second}
	with := func(f func(*tftpParams)) tftpParams {
		p := def
		f(&p)
		return p
	}
	tests := []struct {
		name   string
		opts   []tftpOption
		cap    int
		size   int64
		want   tftpParams
		wantOA []tftpOption
	}{
		{"no options: no OACK", nil, 1468, size, def, nil},
		{"unknown options ignored", o("multicast", "", "rollover", "0"), 1468, size, def, nil},
		{"blksize under the cap", o("blksize", "1024"), 1468, size,
			with(func(p *tftpParams) { p.blksize = 1024 }), o("blksize", "1024")},
		{"blksize over the cap gets the cap", o("blksize", "65464"), 1468, size,
			with(func(p *tftpParams) { p.blksize = 1468 }), o("blksize", "1468")},
		{"blksize beyond RFC 2348 gets the cap", o("blksize", "99999999999999999999"), 1468, size,
			with(func(p *tftpParams) { p.blksize = 1468 }), o("blksize", "1468")},
		{"cap of 512", o("blksize", "1468"), 512, size, def, o("blksize", "512")},
		{"smallest blksize", o("blksize", "8"), 1468, size,
			with(func(p *tftpParams) { p.blksize = 8 }), o("blksize", "8")},
		{"blksize below 8 refused", o("blksize", "7"), 1468, size, def, nil},
		{"blksize not a number", o("blksize", "abc"), 1468, size, def, nil},
		{"blksize signed", o("blksize", "+1024"), 1468, size, def, nil},
		{"blksize empty", o("blksize", ""), 1468, size, def, nil},
		{"tsize answered with the size", o("tsize", "0"), 1468, size, def, o("tsize", strconv.Itoa(size))},
		{"tsize not a number", o("tsize", "x"), 1468, size, def, nil},
		{"no tsize for an empty file", o("tsize", "0"), 1468, 0, def, nil},
		{"no tsize for netascii", o("tsize", "0"), 1468, -1, def, nil},
		{"timeout", o("timeout", "3"), 1468, size,
			with(func(p *tftpParams) { p.timeout = 3 * time.Second }), o("timeout", "3")},
		{"timeout 0 refused", o("timeout", "0"), 1468, size, def, nil},
		{"timeout over 255 refused", o("timeout", "256"), 1468, size, def, nil},
		{"windowsize", o("windowsize", "16"), 1468, size,
			with(func(p *tftpParams) { p.window = 16 }), o("windowsize", "16")},
		{"windowsize capped", o("windowsize", "65535"), 1468, size,
			with(func(p *tftpParams) { p.window = 64 }), o("windowsize", "64")},
		{"windowsize held to the buffer at 1468", o("windowsize", "65535", "blksize", "1468"), 1468, size,
			with(func(p *tftpParams) { p.blksize, p.window = 1468, 44 }), o("windowsize", "44", "blksize", "1468")},
		{"windowsize held to the buffer at a large blksize", o("blksize", "65464", "windowsize", "8"), 65464, size,
			with(func(p *tftpParams) { p.blksize, p.window = 65464, 1 }), o("blksize", "65464", "windowsize", "1")},
		{"windowsize 0 refused", o("windowsize", "0"), 1468, size, def, nil},
		{"names case-insensitive, echoed as sent", o("BlkSize", "1468", "TSIZE", "0"), 1468, size,
			with(func(p *tftpParams) { p.blksize = 1468 }), o("BlkSize", "1468", "TSIZE", strconv.Itoa(size))},
		{"first of a repeated option counts", o("blksize", "1024", "blksize", "600"), 1468, size,
			with(func(p *tftpParams) { p.blksize = 1024 }), o("blksize", "1024")},
		{"EDK2", o("blksize", "1468", "tsize", "0"), 1468, size,
			with(func(p *tftpParams) { p.blksize = 1468 }), o("blksize", "1468", "tsize", strconv.Itoa(size))},
		{"curl", o("tsize", "0", "blksize", "512", "timeout", "6"), 1468, size,
			with(func(p *tftpParams) { p.timeout = 6 * time.Second }), o("tsize", strconv.Itoa(size), "blksize", "512", "timeout", "6")},
		{"a bad option leaves the good ones", o("blksize", "x", "tsize", "0", "windowsize", "4"), 1468, size,
			with(func(p *tftpParams) { p.window = 4 }), o("tsize", strconv.Itoa(size), "windowsize", "4")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, oack := tftpNegotiate(tc.opts, tc.cap, time.Second, tc.size)
			if p != tc.want || !reflect.DeepEqual(oack, tc.wantOA) {
				t.Errorf("tftpNegotiate(%v) = %+v, OACK %v; want %+v, OACK %v", tc.opts, p, oack, tc.want, tc.wantOA)
			}
		})
	}
}

// FuzzParseRequest: whatever arrives at the server port, parsing must not
// panic, must bound what it keeps, and what it accepts must negotiate into
// parameters a transfer can run with.
func FuzzParseRequest(f *testing.F) {
	rq := func(op byte, fields ...string) []byte {
		return append([]byte{0, op}, strings.Join(fields, "\x00")+"\x00"...)
	}
	for _, pkt := range [][]byte{
		rq(1, "undionly.kpxe", "octet"),
		rq(1, "f", "octet", "blksize", "1468", "tsize", "0", "windowsize", "64", "timeout", "1"),
		rq(1, "f", "netascii", "blksize", "99999999999999999999", "timeout", "0"),
		rq(2, "f", "octet", "tsize", "100"),
		rq(1, "f", "octet", "blksize"),
		append(rq(1, "f", "octet"), 0, 0, 0),
		[]byte("\x00\x01\x00\xa7\xa7\xa7\x00"),
		{0, 1}, {0, 1, 'x'}, {0, 4, 0, 0}, {1}, {},
	} {
		f.Add(pkt)
	}
	f.Fuzz(func(t *testing.T, pkt []byte) {
		req, err := parseTFTPRequest(pkt)
		if err != nil {
			return
		}
		if req.op != tftpOpRRQ && req.op != tftpOpWRQ {
			t.Fatalf("accepted opcode %d", req.op)
		}
		if len(req.opts) > tftpMaxOptions {
			t.Fatalf("%d options kept", len(req.opts))
		}
		if len(req.name)+len(req.mode) > len(pkt) {
			t.Fatalf("name and mode longer than the packet")
		}
		for _, capSize := range []int{512, 1468, tftpMaxBlksize} {
			p, oack := tftpNegotiate(req.opts, capSize, time.Second, 1000)
			if p.blksize < tftpMinBlksize || p.blksize > capSize && p.blksize != 512 {
				t.Fatalf("blksize %d with cap %d", p.blksize, capSize)
			}
			if p.window < 1 || p.window > tftpWindow(p.blksize) {
				t.Fatalf("window %d at blksize %d", p.window, p.blksize)
			}
			if p.timeout < time.Second || p.timeout > tftpMaxTimeout*time.Second {
				t.Fatalf("timeout %v", p.timeout)
			}
			if len(oack) > len(req.opts) {
				t.Fatalf("OACK of %d options for %d asked", len(oack), len(req.opts))
			}
			if n := len(tftpOACK(oack)); n > 2+len(pkt)+4*10 {
				t.Fatalf("OACK of %d bytes for a %d-byte request", n, len(pkt))
			}
		}
	})
}

func TestTFTPNetascii(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"plain", "plain"},
		{"a\nb", "a\r\nb"},
		{"a\rb", "a\r\x00b"},
		{"\r\n", "\r\x00\r\n"},
		{"end\n", "end\r\n"},
		{strings.Repeat("x\n", 1000), strings.Repeat("x\r\n", 1000)},
	}
	for _, tc := range tests {
		// Read in small pieces, so a pair split across reads is covered.
		for _, chunk := range []int{1, 2, 3, 512} {
			r := newTFTPNetascii(bufio.NewReader(strings.NewReader(tc.in)))
			var out bytes.Buffer
			buf := make([]byte, chunk)
			for {
				n, err := r.Read(buf)
				out.Write(buf[:n])
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			if out.String() != tc.want {
				t.Errorf("netascii(%q) in %d-byte reads = %q, want %q", tc.in, chunk, out.String(), tc.want)
			}
		}
	}
}
