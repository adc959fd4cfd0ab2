package bmc

import (
	"fmt"
	"net"
	"sync"
)

// cipherGuard watches the datagrams a BMC sends during RMCP+ session setup.
// go-ipmi proposes the algorithms of cipher suites 17 and 3 but takes
// whatever algorithms the BMC's Open Session Response names, and with
// "none" authentication RAKP checks no password at all (cipher suite 0:
// anyone who answers is believed). The guard fails the read of any Open
// Session Response that settles on other algorithms than 17's or 3's, so
// such a session never starts.
//
// It also keeps the RMCP+ status codes the BMC answered session setup
// with, since go-ipmi reports them only in words: a refused suite, an
// unknown user.
type cipherGuard struct {
	mu      sync.Mutex
	conn    net.Conn
	settled int   // cipher suite the BMC agreed to, 0 before
	refusal error // why an answer was refused
	// openStatus and rakpStatus are the last non-zero status codes of an
	// Open Session Response and of a RAKP message 2 or 4; rakp2 counts
	// RAKP message 2s that came with status 0.
	openStatus, rakpStatus byte
	rakp2                  int
}

func (g *cipherGuard) wrap(c net.Conn) net.Conn {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.conn = c
	return guardedConn{Conn: c, g: g}
}

func (g *cipherGuard) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.conn != nil {
		g.conn.Close()
	}
}

func (g *cipherGuard) suite() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.settled
}

func (g *cipherGuard) refused() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.refusal
}

type guardedConn struct {
	net.Conn
	g *cipherGuard
}

func (c guardedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil {
		return n, err
	}
	ptype, status := setupStatus(p[:n])
	suite, verr := checkOpenSession(p[:n])
	c.g.mu.Lock()
	defer c.g.mu.Unlock()
	switch {
	case ptype == payloadOpenSessionRsp && status != 0:
		c.g.openStatus = status
	case (ptype == payloadRAKP2 || ptype == payloadRAKP4) && status != 0:
		c.g.rakpStatus = status
	case ptype == payloadRAKP2:
		c.g.rakp2++
	}
	if verr != nil {
		c.g.refusal = verr
		return 0, verr
	}
	if suite != 0 {
		c.g.settled = suite
	}
	return n, nil
}

// statuses returns what session setup heard: the last non-zero Open
// Session and RAKP status codes, and how many RAKP message 2s passed.
func (g *cipherGuard) statuses() (open, rakp byte, rakp2 int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.openStatus, g.rakpStatus, g.rakp2
}

// RMCP+ wire facts (IPMI 2.0 sections 13.1, 13.6, 13.18): the algorithm
// numbers each accepted suite is made of.
const (
	rmcpVersion           = 0x06
	rmcpClassIPMI         = 0x07
	authTypeRMCPPlus      = 0x06
	payloadOpenSessionRsp = 0x11
	payloadRAKP2          = 0x13
	payloadRAKP4          = 0x15
)

// suiteAlgorithms maps (authentication, integrity, confidentiality)
// algorithm numbers to the cipher suites bootstrapd accepts.
func suiteAlgorithms(auth, integrity, conf byte) int {
	switch [3]byte{auth, integrity, conf} {
	case [3]byte{0x03, 0x04, 0x01}: // RAKP-HMAC-SHA256, HMAC-SHA256-128, AES-CBC-128
		return 17
	case [3]byte{0x01, 0x01, 0x01}: // RAKP-HMAC-SHA1, HMAC-SHA1-96, AES-CBC-128
		return 3
	}
	return 0
}

// setupPayload returns the payload type and payload of an RMCP+ datagram
// (ok false for anything else: IPMI 1.5, ASF, short).
func setupPayload(d []byte) (ptype byte, p []byte, ok bool) {
	// RMCP header (4) then the IPMI 2.0 session header: auth type,
	// payload type, session ID (4), sequence (4), payload length (2).
	if len(d) < 16 || d[0] != rmcpVersion || d[3]&0x1f != rmcpClassIPMI || d[4] != authTypeRMCPPlus {
		return 0, nil, false
	}
	length := int(d[14]) | int(d[15])<<8
	p = d[16:]
	if length < len(p) {
		p = p[:length]
	}
	return d[5] & 0x3f, p, true
}

// setupStatus returns a session-setup answer's payload type and status
// code (the second byte of Open Session Response and RAKP 2 and 4).
func setupStatus(d []byte) (ptype, status byte) {
	ptype, p, ok := setupPayload(d)
	if !ok || len(p) < 2 {
		return 0, 0
	}
	switch ptype {
	case payloadOpenSessionRsp, payloadRAKP2, payloadRAKP4:
		return ptype, p[1]
	}
	return 0, 0
}

// checkOpenSession looks at one datagram from the BMC. Anything but a
// successful RMCP+ Open Session Response passes untouched (0, nil); a
// successful one returns the cipher suite it settles on, or an error when
// that is not 17 or 3.
func checkOpenSession(d []byte) (int, error) {
	ptype, p, ok := setupPayload(d)
	if !ok || ptype != payloadOpenSessionRsp {
		return 0, nil
	}
	// Tag, status code, privilege, reserved, console session ID (4),
	// BMC session ID (4), then three 8-byte algorithm records with the
	// algorithm number in the fifth byte of each.
	if len(p) < 2 || p[1] != 0 {
		return 0, nil // refused: go-ipmi reports the status code
	}
	if len(p) < 36 {
		return 0, fmt.Errorf("the BMC's Open Session Response is %d bytes, too short to name its algorithms", len(p))
	}
	if p[12] != 0x00 || p[20] != 0x01 || p[28] != 0x02 {
		return 0, fmt.Errorf("the BMC's Open Session Response has algorithm records out of order (%#02x %#02x %#02x)", p[12], p[20], p[28])
	}
	auth, integrity, conf := p[16]&0x3f, p[24]&0x3f, p[32]&0x3f
	suite := suiteAlgorithms(auth, integrity, conf)
	if suite == 0 {
		return 0, fmt.Errorf("the BMC wants authentication algorithm %d, integrity %d, confidentiality %d: not cipher suite 17 or 3, refused (suite 0 would let anyone answer for the BMC)", auth, integrity, conf)
	}
	return suite, nil
}
