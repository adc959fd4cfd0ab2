package pxe

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// tftpOACKOptions reads an OACK into a map, or fails the test.
func tftpOACKOptions(t *testing.T, pkt []byte) map[string]string {
	t.Helper()
	if len(pkt) < 2 || binary.BigEndian.Uint16(pkt) != tftpOpOACK {
		t.Fatalf("want an OACK, got % x", pkt[:min(len(pkt), 40)])
	}
	got := map[string]string{}
	f := strings.Split(strings.TrimSuffix(string(pkt[2:]), "\x00"), "\x00")
	for i := 0; i+1 < len(f); i += 2 {
		got[f[i]] = f[i+1]
	}
	return got
}

func tftpACK(block int64) []byte { return []byte{0, tftpOpACK, byte(block >> 8), byte(block)} }

// tftpWindowGet downloads name as an RFC 7440 client would: it asks for
// blksize and windowsize, acknowledges the last block of each window, and
// when a block is missing acknowledges the last one it has, so the server
// slides the window from there. lose says which sends of which blocks the
// client pretends it never got (the first send of a block is 1). It checks
// block numbers as they roll over past 65535 and returns the file.
func tftpWindowGet(t *testing.T, p *tftpPeer, name string, blksize, window int, lose func(block int64, send int) bool) []byte {
	t.Helper()
	p.send(tftpRRQPacket(name, "blksize", strconv.Itoa(blksize), "windowsize", strconv.Itoa(window)), p.server)
	pkt, from, err := p.next(5 * time.Second)
	tftpMust(t, err)
	opts := tftpOACKOptions(t, pkt)
	if opts["blksize"] != strconv.Itoa(blksize) || opts["windowsize"] != strconv.Itoa(window) {
		t.Fatalf("OACK %v, want blksize %d and windowsize %d", opts, blksize, window)
	}
	p.send(tftpACK(0), from)
	var file []byte
	var have, acked int64 // the last block in order, the last acknowledged
	inWindow := 0
	sends := map[int64]int{}
	for {
		pkt, _, err := p.next(5 * time.Second)
		tftpMust(t, err)
		if len(pkt) < 4 || binary.BigEndian.Uint16(pkt) != tftpOpDATA {
			t.Fatalf("after block %d: want DATA, got % x", have, pkt[:min(len(pkt), 40)])
		}
		// The wire has the low 16 bits; the block is the one in the next
		// 64K after the last one we have.
		k := have + int64(binary.BigEndian.Uint16(pkt[2:])-uint16(have))
		sends[k]++
		switch {
		case k <= have:
			// A resend of a block we have: ignore it, as a client would.
			continue
		case k != have+1 || lose(k, sends[k]):
			// A gap: say which block we have; the server goes on from it.
			if k == have+1 {
				continue // lost: the next packet shows the gap
			}
			// Once per gap: the window's other blocks arrive after it too.
			if have != acked {
				p.send(tftpACK(have), from)
				acked, inWindow = have, 0
			}
			continue
		}
		have = k
		file = append(file, pkt[4:]...)
		inWindow++
		if len(pkt)-4 < blksize {
			p.send(tftpACK(have), from)
			return file
		}
		if inWindow == window {
			p.send(tftpACK(have), from)
			acked, inWindow = have, 0
		}
	}
}

// TestTFTPWindowsize: RFC 7440 windows, with lost blocks recovered both by
// an early ACK (the client saw a gap) and by the server's timeout (the
// whole window went missing), and block numbers rolling over.
func TestTFTPWindowsize(t *testing.T) {
	dir, files := tftpFiles(t)
	// 80,000 blocks of 8 bytes: the block number rolls over once.
	big := make([]byte, 640_003)
	rand.Read(big)
	tftpMust(t, os.WriteFile(filepath.Join(dir, "big.bin"), big, 0o644))
	files["big.bin"] = big
	tests := []struct {
		name            string
		file            string
		blksize, window int
		lose            func(k int64, send int) bool
	}{
		{"lockstep window of 1", "random.bin", 1468, 1, func(int64, int) bool { return false }},
		{"window of 8", "random.bin", 512, 8, func(int64, int) bool { return false }},
		{"window of 64", "random.bin", 1024, 64, func(int64, int) bool { return false }},
		{"exact multiple of the block", "blocks.bin", 512, 4, func(int64, int) bool { return false }},
		{"one block", "one-block.bin", 512, 4, func(int64, int) bool { return false }},
		{"empty", "empty.bin", 512, 4, func(int64, int) bool { return false }},
		{"lost blocks mid-window, early ACK", "random.bin", 512, 8, func(k int64, send int) bool {
			return k%13 == 5 && send == 1
		}},
		{"lost block twice", "random.bin", 1468, 16, func(k int64, send int) bool {
			return k == 30 && send <= 2
		}},
		// Every 100th block's first send is lost as the last of its
		// window: nothing follows it, so only the server's timeout
		// recovers it (100ms here).
		{"lost last block of a window", "random.bin", 512, 4, func(k int64, send int) bool {
			return k%4 == 0 && k%100 == 0 && send == 1
		}},
		{"rollover past block 65535", "big.bin", 8, 64, func(k int64, send int) bool {
			return (k == 65535 || k == 65536 || k == 65537) && send == 1
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			srv := newTestTFTP(t, dir, reg, nil)
			srv.SetLimits(TFTPLimits{Timeout: 100 * time.Millisecond})
			addr, stop := startTFTP(t, srv)
			p := newTFTPPeer(t, addr, "127.0.0.2")
			got := tftpWindowGet(t, p, tc.file, tc.blksize, tc.window, tc.lose)
			if !bytes.Equal(got, files[tc.file]) {
				t.Fatalf("got %d bytes, want %d (content differs)", len(got), len(files[tc.file]))
			}
			stop()
			if n := tftpCount(t, reg, "bootstrapd_tftp_transfers_total", map[string]string{"result": tftpOK}); n != 1 {
				t.Errorf("transfers_total{ok} = %v, want 1", n)
			}
			if n := tftpCount(t, reg, "bootstrapd_tftp_bytes_total", nil); n != float64(len(files[tc.file])) {
				t.Errorf("bytes_total = %v, want %d: each block counted once, however often sent", n, len(files[tc.file]))
			}
		})
	}
}

// TestTFTPDuplicateACKIgnored: a repeated ACK is not answered with a
// resend (the Sorcerer's Apprentice bug); only the server's timeout resends.
func TestTFTPDuplicateACKIgnored(t *testing.T) {
	dir, _ := tftpFiles(t)
	srv := newTestTFTP(t, dir, nil, nil)
	srv.SetLimits(TFTPLimits{Timeout: 2 * time.Second})
	addr, _ := startTFTP(t, srv)
	p := newTFTPPeer(t, addr, "127.0.0.2")
	first, from := p.request("random.bin")
	if binary.BigEndian.Uint16(first[2:]) != 1 {
		t.Fatalf("first reply % x, want DATA block 1", first[:4])
	}
	p.send(tftpACK(1), from)
	pkt, _, err := p.next(time.Second)
	tftpMust(t, err)
	if binary.BigEndian.Uint16(pkt[2:]) != 2 {
		t.Fatalf("after ACK 1: % x, want DATA block 2", pkt[:4])
	}
	// ACK 1 again, and an ACK for a block not sent yet: neither moves
	// anything.
	p.send(tftpACK(1), from)
	p.send(tftpACK(7), from)
	if pkt, _, err := p.next(500 * time.Millisecond); err == nil {
		t.Fatalf("server answered a duplicate ACK with % x", pkt[:min(len(pkt), 4)])
	}
	p.send(tftpACK(2), from)
	pkt, _, err = p.next(time.Second)
	tftpMust(t, err)
	if binary.BigEndian.Uint16(pkt[2:]) != 3 {
		t.Fatalf("after ACK 2: % x, want DATA block 3", pkt[:4])
	}
	p.send([]byte{0, 5, 0, 0, 'd', 'o', 'n', 'e', 0}, from)
}

// TestTFTPSpoofedPackets: a transfer's socket is connected to its client,
// so an ERROR or ACKs sent to the transfer's port from another address, or
// from the client's address but another port, never reach it.
func TestTFTPSpoofedPackets(t *testing.T) {
	dir, files := tftpFiles(t)
	reg := prometheus.NewRegistry()
	srv := newTestTFTP(t, dir, reg, nil)
	addr, stop := startTFTP(t, srv)
	p := newTFTPPeer(t, addr, "127.0.0.2")
	first, from := p.request("random.bin")
	for _, src := range []string{"127.0.0.3", "127.0.0.2"} {
		spoof := newTFTPPeer(t, addr, src)
		spoof.send([]byte{0, 5, 0, 0, 'g', 'o', 'n', 'e', 0}, from)
		for k := range int64(20) {
			spoof.send(tftpACK(k), from)
		}
		if pkt, _, err := spoof.next(200 * time.Millisecond); err == nil {
			t.Errorf("spoofer at %s got % x", src, pkt[:min(len(pkt), 4)])
		}
	}
	if got := p.finish(first, from); !bytes.Equal(got, files["random.bin"]) {
		t.Fatalf("got %d bytes, want %d", len(got), len(files["random.bin"]))
	}
	stop()
	if n := tftpCount(t, reg, "bootstrapd_tftp_transfers_total", map[string]string{"result": tftpOK}); n != 1 {
		t.Errorf("transfers_total{ok} = %v, want 1", n)
	}
	if n := tftpCount(t, reg, "bootstrapd_tftp_transfers_total", map[string]string{"result": tftpError}); n != 0 {
		t.Errorf("transfers_total{error} = %v, want 0", n)
	}
}

// TestTFTPTimeoutOption: a client's timeout (RFC 2349) sets the resend
// interval, and the lifetime still ends a transfer whose client asked for
// a long one and went quiet.
func TestTFTPTimeoutOption(t *testing.T) {
	dir, _ := tftpFiles(t)
	srv := newTestTFTP(t, dir, nil, nil)
	srv.SetLimits(TFTPLimits{Timeout: 10 * time.Second, Retries: 1, Lifetime: 2500 * time.Millisecond})
	addr, _ := startTFTP(t, srv)
	p := newTFTPPeer(t, addr, "127.0.0.2")
	p.send(tftpRRQPacket("random.bin", "timeout", "1"), p.server)
	pkt, _, err := p.next(5 * time.Second)
	tftpMust(t, err)
	if got := tftpOACKOptions(t, pkt); got["timeout"] != "1" {
		t.Fatalf("OACK %v, want timeout 1", got)
	}
	start := time.Now()
	if _, _, err := p.next(3 * time.Second); err != nil {
		t.Fatalf("no resend of the OACK within 3s: %v", err)
	}
	if d := time.Since(start); d < 800*time.Millisecond || d > 2*time.Second {
		t.Errorf("OACK resent after %v, want about the 1s asked", d)
	}
	// Retries 1: the second silence ends it.
	if pkt, _, err = p.next(3 * time.Second); err != nil || pkt[1] != tftpOpERROR {
		t.Fatalf("want an ERROR after the resend went unanswered: % x, %v", pkt, err)
	}

	p.send(tftpRRQPacket("random.bin", "timeout", "60"), p.server)
	pkt, _, err = p.next(5 * time.Second)
	tftpMust(t, err)
	if got := tftpOACKOptions(t, pkt); got["timeout"] != "60" {
		t.Fatalf("OACK %v, want timeout 60", got)
	}
	start = time.Now()
	pkt, _, err = p.next(5 * time.Second)
	if err != nil || pkt[1] != tftpOpERROR || !strings.Contains(string(pkt), "2.5s") {
		t.Fatalf("want an ERROR naming the 2.5s lifetime, got % x, %v", pkt, err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("quiet transfer ended %v after its OACK, want within its 2.5s lifetime", d)
	}
}

// TestTFTPShutdownWakesWaits: a transfer waiting for an ACK is woken by the
// shutdown, not at the end of its timeout.
func TestTFTPShutdownWakesWaits(t *testing.T) {
	dir, _ := tftpFiles(t)
	srv := newTestTFTP(t, dir, nil, nil)
	srv.SetLimits(TFTPLimits{Timeout: 20 * time.Second})
	addr, stop := startTFTP(t, srv)
	p := newTFTPPeer(t, addr, "127.0.0.2")
	if first, _ := p.request("random.bin"); first[1] != tftpOpDATA {
		t.Fatalf("first reply % x, want DATA", first[:4])
	}
	start := time.Now()
	stop() // fails the test unless Serve returns nil
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("Serve waited %v after cancel for a transfer with a 20s timeout", took)
	}
	pkt, _, err := p.next(time.Second)
	if err != nil || pkt[1] != tftpOpERROR || !strings.Contains(string(pkt), "shutting down") {
		t.Errorf("want an ERROR saying the server shuts down, got % x, %v", pkt, err)
	}
}

// TestTFTPModes: netascii is converted and not sized; octet in any case is
// served as is; other modes are refused.
func TestTFTPModes(t *testing.T) {
	dir, _ := tftpFiles(t)
	text := "line one\nline two\r\n\rend"
	tftpMust(t, os.WriteFile(filepath.Join(dir, "text.txt"), []byte(text), 0o644))
	addr, _ := startTFTP(t, newTestTFTP(t, dir, nil, nil))
	rrq := func(mode string, opts ...string) []byte {
		pkt := append([]byte{0, 1}, "text.txt\x00"+mode+"\x00"...)
		for _, o := range opts {
			pkt = append(pkt, o+"\x00"...)
		}
		return pkt
	}
	p := newTFTPPeer(t, addr, "127.0.0.2")

	p.send(rrq("netascii", "tsize", "0"), p.server)
	pkt, _, err := p.next(5 * time.Second)
	tftpMust(t, err)
	if pkt[1] != tftpOpDATA {
		t.Fatalf("netascii with tsize: % x, want DATA 1 at once (no tsize, so no OACK)", pkt[:min(len(pkt), 20)])
	}
	if want := "line one\r\nline two\r\x00\r\n\r\x00end"; string(pkt[4:]) != want {
		t.Errorf("netascii DATA %q, want %q", pkt[4:], want)
	}

	p.send(rrq("OCTET"), p.server)
	pkt, _, err = p.next(5 * time.Second)
	tftpMust(t, err)
	if pkt[1] != tftpOpDATA || string(pkt[4:]) != text {
		t.Errorf("OCTET: % x, want the file as is", pkt[:min(len(pkt), 20)])
	}

	p.send(rrq("mail"), p.server)
	pkt, _, err = p.next(5 * time.Second)
	tftpMust(t, err)
	if pkt[1] != tftpOpERROR || binary.BigEndian.Uint16(pkt[2:]) != tftpErrIllegalOp {
		t.Errorf("mode mail: % x, want ERROR 4", pkt[:min(len(pkt), 20)])
	}
}

// TestTFTPRolloverCurl: curl at its smallest blksize, 8, through more than
// 65535 blocks: the numbers roll over to 0 the way curl expects.
func TestTFTPRolloverCurl(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("curl not found: install the Debian package curl")
	}
	dir, _ := tftpFiles(t)
	big := make([]byte, 66_000*8+3)
	rand.Read(big)
	tftpMust(t, os.WriteFile(filepath.Join(dir, "big.bin"), big, 0o644))
	addr, _ := startTFTP(t, newTestTFTP(t, dir, nil, nil))
	out := filepath.Join(t.TempDir(), "out")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	msg, err := exec.CommandContext(ctx, "curl", "-sS", "--tftp-blksize", "8", "tftp://"+addr+"/big.bin", "-o", out).CombinedOutput()
	if err != nil {
		t.Fatalf("curl: %v\n%s", err, msg)
	}
	if got, _ := os.ReadFile(out); !bytes.Equal(got, big) {
		t.Fatalf("got %d bytes, want %d (content differs)", len(got), len(big))
	}
}

// TestTFTPAtftpWindowsize: atftp (Debian's, 0.8) is a real client that asks
// for a window. Its trace shows the OACK and each ACK it sends, so the test
// sees the window was used: one ACK a window, not one a block. Skipped where
// it is not installed (apt-get install atftp).
func TestTFTPAtftpWindowsize(t *testing.T) {
	if _, err := exec.LookPath("atftp"); err != nil {
		t.Skip("atftp not installed")
	}
	dir, files := tftpFiles(t)
	reg := prometheus.NewRegistry()
	srv := newTestTFTP(t, dir, reg, nil)
	addr, stop := startTFTP(t, srv)
	host, port, _ := net.SplitHostPort(addr)
	blocks := len(files["random.bin"])/1468 + 1
	for _, window := range []int{1, 8, 32} {
		t.Run(fmt.Sprintf("windowsize=%d", window), func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			args := []string{"--option", "blksize 1468", "--option", "windowsize " + strconv.Itoa(window), "--option", "tsize 0",
				"--trace", "-g", "-r", "random.bin", "-l", out, host, port}
			msg, err := exec.CommandContext(ctx, "atftp", args...).CombinedOutput()
			if err != nil {
				t.Fatalf("atftp %v: %v\n%s", args, err, msg)
			}
			if got, _ := os.ReadFile(out); !bytes.Equal(got, files["random.bin"]) {
				t.Fatalf("got %d bytes, want %d", len(got), len(files["random.bin"]))
			}
			if want := fmt.Sprintf("windowsize: %d,", window); !strings.Contains(string(msg), "received OACK") || !strings.Contains(string(msg), want) {
				t.Errorf("atftp trace has no OACK with %q:\n%.2000s", want, msg)
			}
			// ACK 0 for the OACK, then one a window (the last may be short).
			if acks, want := strings.Count(string(msg), "sent ACK"), 1+(blocks+window-1)/window; acks != want {
				t.Errorf("atftp sent %d ACKs for %d blocks in windows of %d, want %d", acks, blocks, window, want)
			}
		})
	}
	stop()
	if n := tftpCount(t, reg, "bootstrapd_tftp_transfers_total", map[string]string{"result": tftpOK}); n != 3 {
		t.Errorf("transfers_total{ok} = %v, want 3", n)
	}
}

// TestTFTPForgedSources: a request whose source is no client's (a
// multicast group, the broadcast address, port 0) is dropped as
// malformed, never answered.
func TestTFTPForgedSources(t *testing.T) {
	dir, _ := tftpFiles(t)
	reg := prometheus.NewRegistry()
	srv := newTestTFTP(t, dir, reg, nil)
	s := &tftpServer{TFTP: srv, ctx: context.Background(), blksize: 1468, limits: TFTPLimits{}.withDefaults()}
	s.slots = &tftpSlots{max: s.limits.MaxTransfers, perClient: s.limits.MaxPerClient}
	local := netip.MustParseAddr("127.0.0.1")
	for _, from := range []string{"224.0.0.1:1234", "239.255.255.250:1900", "255.255.255.255:68", "0.0.0.0:1234", "127.0.0.2:0"} {
		s.request(tftpRRQPacket("random.bin"), local, netip.MustParseAddrPort(from))
	}
	s.wg.Wait()
	if n := tftpCount(t, reg, "bootstrapd_unanswered_total", map[string]string{"proto": "tftp", "reason": "malformed"}); n != 5 {
		t.Errorf("unanswered_total{malformed} = %v, want 5", n)
	}
	for _, r := range []string{tftpOK, tftpError, tftpBusy} {
		if n := tftpCount(t, reg, "bootstrapd_tftp_transfers_total", map[string]string{"result": r}); n != 0 {
			t.Errorf("transfers_total{%s} = %v, want 0", r, n)
		}
	}
}
