package bmc

import (
	"encoding/binary"
	"strings"
	"testing"
)

// openSessionResponse builds an RMCP+ Open Session Response datagram
// (IPMI 2.0 section 13.18) with the given status and algorithms.
func openSessionResponse(status, auth, integrity, conf byte) []byte {
	p := make([]byte, 36)
	p[1] = status
	p[2] = 0x04 // administrator
	binary.LittleEndian.PutUint32(p[4:], 0xa0a1a2a3)
	binary.LittleEndian.PutUint32(p[8:], 0x01020304)
	for i, alg := range []byte{auth, integrity, conf} {
		p[12+8*i] = byte(i)
		p[15+8*i] = 8
		p[16+8*i] = alg
	}
	if status != 0 {
		p = p[:8]
	}
	d := []byte{0x06, 0x00, 0xff, 0x07, 0x06, 0x11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	binary.LittleEndian.PutUint16(d[14:], uint16(len(p)))
	return append(d, p...)
}

func TestCheckOpenSession(t *testing.T) {
	rakp2 := openSessionResponse(0, 1, 1, 1)
	rakp2[5] = payloadRAKP2
	v15 := openSessionResponse(0, 0, 0, 0)
	v15[4] = 0x00 // IPMI 1.5 session header: not session setup
	cases := []struct {
		name  string
		d     []byte
		suite int
		err   string
	}{
		{"suite 17", openSessionResponse(0, 3, 4, 1), 17, ""},
		{"suite 3", openSessionResponse(0, 1, 1, 1), 3, ""},
		{"suite 0", openSessionResponse(0, 0, 0, 0), 0, "authentication algorithm 0, integrity 0, confidentiality 0"},
		{"suite 1 (no integrity)", openSessionResponse(0, 1, 0, 0), 0, "not cipher suite 17 or 3"},
		{"suite 2 (no encryption)", openSessionResponse(0, 1, 1, 0), 0, "not cipher suite 17 or 3"},
		{"suite 16", openSessionResponse(0, 3, 4, 0), 0, "not cipher suite 17 or 3"},
		{"refused: go-ipmi reports it", openSessionResponse(0x04, 0, 0, 0), 0, ""},
		{"truncated", openSessionResponse(0, 3, 4, 1)[:40], 0, "too short"},
		{"RAKP 2 passes", rakp2, 0, ""},
		{"IPMI 1.5 passes", v15, 0, ""},
		{"empty", nil, 0, ""},
	}
	for _, tc := range cases {
		suite, err := checkOpenSession(tc.d)
		if suite != tc.suite || (tc.err == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: suite %d, %v; want %d, %q", tc.name, suite, err, tc.suite, tc.err)
		}
	}
	if ptype, status := setupStatus(openSessionResponse(0x04, 0, 0, 0)); ptype != payloadOpenSessionRsp || status != 0x04 {
		t.Errorf("setupStatus: %#x %#x", ptype, status)
	}
}

// FuzzCheckOpenSession: the guard reads datagrams from the network; no
// input panics it, and it settles only on 17 or 3.
func FuzzCheckOpenSession(f *testing.F) {
	f.Add(openSessionResponse(0, 3, 4, 1))
	f.Add(openSessionResponse(0, 0, 0, 0))
	f.Add(openSessionResponse(0x11, 0, 0, 0))
	f.Add([]byte{0x06, 0x00, 0xff, 0x07})
	f.Fuzz(func(t *testing.T, d []byte) {
		suite, err := checkOpenSession(d)
		if suite != 0 && suite != 3 && suite != 17 || suite != 0 && err != nil {
			t.Fatalf("suite %d, %v", suite, err)
		}
		setupStatus(d)
	})
}
