package pxe

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// These tests need Linux: they send from several loopback addresses
// (127.0.0.2 and up, which Linux routes to lo without configuration) so that
// per-client caps can be told apart, and they count descriptors in /proc.

// tftpPeer is a raw TFTP client bound to one loopback address, for the
// half-open and slow transfers the pin client cannot make.
type tftpPeer struct {
	t      *testing.T
	conn   *net.UDPConn
	server *net.UDPAddr
}

func newTFTPPeer(t *testing.T, addr, src string) *tftpPeer {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(src)})
	tftpMust(t, err)
	t.Cleanup(func() { conn.Close() })
	server, err := net.ResolveUDPAddr("udp4", addr)
	tftpMust(t, err)
	return &tftpPeer{t: t, conn: conn, server: server}
}

func tftpRRQPacket(name string, opts ...string) []byte {
	pkt := append([]byte{0, 1}, name+"\x00octet\x00"...)
	for _, o := range opts {
		pkt = append(pkt, o+"\x00"...)
	}
	return pkt
}

func (p *tftpPeer) send(pkt []byte, to *net.UDPAddr) {
	p.t.Helper()
	_, err := p.conn.WriteToUDP(pkt, to)
	tftpMust(p.t, err)
}

// next returns the next packet, or an error once d has passed without one.
func (p *tftpPeer) next(d time.Duration) ([]byte, *net.UDPAddr, error) {
	tftpMust(p.t, p.conn.SetReadDeadline(time.Now().Add(d)))
	buf := make([]byte, 70000)
	n, from, err := p.conn.ReadFromUDP(buf)
	return buf[:n], from, err
}

// request sends an RRQ without options and returns the first reply.
func (p *tftpPeer) request(name string) ([]byte, *net.UDPAddr) {
	p.t.Helper()
	p.send(tftpRRQPacket(name), p.server)
	pkt, from, err := p.next(5 * time.Second)
	tftpMust(p.t, err)
	return pkt, from
}

// finish acknowledges blocks from first (DATA block 1) on until the short
// last block and returns the file, or fails the test.
func (p *tftpPeer) finish(first []byte, from *net.UDPAddr) []byte {
	p.t.Helper()
	var file []byte
	pkt := first
	for block := uint16(1); ; block++ {
		if len(pkt) < 4 || binary.BigEndian.Uint16(pkt) != 3 || binary.BigEndian.Uint16(pkt[2:]) != block {
			p.t.Fatalf("want DATA block %d, got % x", block, pkt[:min(len(pkt), 40)])
		}
		file = append(file, pkt[4:]...)
		p.send([]byte{0, 4, byte(block >> 8), byte(block)}, from)
		if len(pkt)-4 < 512 {
			return file
		}
		var err error
		pkt, _, err = p.next(5 * time.Second)
		tftpMust(p.t, err)
	}
}

func tftpIsBusy(pkt []byte) bool {
	return len(pkt) > 4 && binary.BigEndian.Uint16(pkt) == 5 && bytes.Contains(pkt, []byte("busy"))
}

// tftpFDs counts the process's open descriptors and those open on path.
func tftpFDs(t *testing.T, path string) (all, onPath int) {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	tftpMust(t, err)
	for _, e := range ents {
		if target, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && target == path {
			onPath++
		}
	}
	return len(ents), onPath
}

// tftpCount reads one series of a counter from reg; 0 when it is absent.
func tftpCount(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	tftpMust(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue metric
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

// tftpEventually polls ok for up to d and says whether it came true.
func tftpEventually(d time.Duration, ok func() bool) bool {
	for deadline := time.Now().Add(d); !ok(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			return false
		}
	}
	return true
}

func tftpWaitFor(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	if !tftpEventually(d, ok) {
		t.Fatalf("after %v: %s", d, what)
	}
}

func TestTFTPCaps(t *testing.T) {
	dir, files := tftpFiles(t)
	tests := []struct {
		name   string
		limits TFTPLimits
		hold   []string // one half-open transfer from each of these
		from   string   // where the checked request comes from
		reason string   // the refusal's reason; "" when it must be admitted
	}{
		{"under both caps", TFTPLimits{MaxTransfers: 3, MaxPerClient: 2}, []string{"127.0.0.2", "127.0.0.3"}, "127.0.0.2", ""},
		{"total cap", TFTPLimits{MaxTransfers: 2}, []string{"127.0.0.2", "127.0.0.3"}, "127.0.0.4", "busy"},
		{"per-client cap", TFTPLimits{MaxPerClient: 2}, []string{"127.0.0.2", "127.0.0.2"}, "127.0.0.2", "busy_client"},
		{"per-client cap spares other clients", TFTPLimits{MaxPerClient: 2}, []string{"127.0.0.2", "127.0.0.2"}, "127.0.0.3", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			srv := newTestTFTP(t, dir, reg, nil)
			srv.SetLimits(tc.limits)
			addr, stop := startTFTP(t, srv)
			type held struct {
				p     *tftpPeer
				first []byte
				from  *net.UDPAddr
			}
			var holds []held
			for _, src := range tc.hold {
				p := newTFTPPeer(t, addr, src)
				first, from := p.request("blocks.bin")
				holds = append(holds, held{p, first, from})
			}
			p := newTFTPPeer(t, addr, tc.from)
			first, from := p.request("blocks.bin")
			if busy := tftpIsBusy(first); busy != (tc.reason != "") {
				t.Fatalf("request from %s with %d held: reply % x, want busy=%v", tc.from, len(holds), first[:min(len(first), 40)], tc.reason != "")
			}
			if tc.reason == "" {
				if got := p.finish(first, from); !bytes.Equal(got, files["blocks.bin"]) {
					t.Fatalf("admitted transfer: got %d bytes, want %d", len(got), len(files["blocks.bin"]))
				}
			}
			// The refusal took nothing from the transfers already admitted.
			for i, h := range holds {
				if got := h.p.finish(h.first, h.from); !bytes.Equal(got, files["blocks.bin"]) {
					t.Fatalf("held transfer %d: got %d bytes, want %d", i, len(got), len(files["blocks.bin"]))
				}
			}
			if tc.reason != "" {
				// Their slots are free again once they are done.
				tftpWaitFor(t, 5*time.Second, "refused client still refused after the held transfers ended", func() bool {
					first, from = p.request("blocks.bin")
					return !tftpIsBusy(first)
				})
				if got := p.finish(first, from); !bytes.Equal(got, files["blocks.bin"]) {
					t.Fatalf("retried transfer: got %d bytes, want %d", len(got), len(files["blocks.bin"]))
				}
			}
			stop()
			wantBusy := 0.0
			if tc.reason != "" {
				wantBusy = 1
				if n := tftpCount(t, reg, "bootstrapd_unanswered_total", map[string]string{"proto": "tftp", "reason": tc.reason}); n < 1 {
					t.Errorf("bootstrapd_unanswered_total{tftp,%s} = %v, want at least 1", tc.reason, n)
				}
			}
			if n := tftpCount(t, reg, "bootstrapd_tftp_transfers_total", map[string]string{"result": tftpBusy}); n < wantBusy || wantBusy == 0 && n != 0 {
				t.Errorf("transfers_total{busy} = %v, want %v", n, wantBusy)
			}
		})
	}
}

// TestTFTPUnackedTransferEnds: a client that stops acknowledging loses its
// transfer after Retries+1 sends Timeout apart, with an ERROR packet, and
// the file and slot are released.
func TestTFTPUnackedTransferEnds(t *testing.T) {
	dir, files := tftpFiles(t)
	realDir, err := filepath.EvalSymlinks(dir)
	tftpMust(t, err)
	srv := newTestTFTP(t, dir, nil, nil)
	srv.SetLimits(TFTPLimits{MaxPerClient: 1, Timeout: 100 * time.Millisecond, Retries: 2})
	addr, _ := startTFTP(t, srv)
	p := newTFTPPeer(t, addr, "127.0.0.2")
	first, _ := p.request("random.bin")
	start := time.Now()
	if len(first) != 516 || first[1] != 3 {
		t.Fatalf("first reply % x, want DATA block 1", first[:min(len(first), 40)])
	}
	sends := 1
	for {
		pkt, _, err := p.next(3 * time.Second)
		if err != nil {
			t.Fatalf("after %d sends in %v: %v; want the server to give up within 300ms", sends, time.Since(start), err)
		}
		if pkt[1] == 5 {
			break
		}
		sends++
	}
	if d := time.Since(start); sends != 3 || d > 2*time.Second {
		t.Errorf("server gave up after %d sends in %v, want 3 sends in about 300ms", sends, d)
	}
	tftpWaitFor(t, 2*time.Second, "random.bin still open after the transfer was given up", func() bool {
		_, open := tftpFDs(t, filepath.Join(realDir, "random.bin"))
		return open == 0
	})
	// The client's one slot is free again.
	first, from := p.request("blocks.bin")
	if got := p.finish(first, from); !bytes.Equal(got, files["blocks.bin"]) {
		t.Fatalf("next transfer: got %d bytes, want %d", len(got), len(files["blocks.bin"]))
	}
}

// tftpSlowReader acknowledges every block after delay, forever, which keeps
// each block inside the server's per-packet timeout. It returns when the
// server sends an ERROR (its text is sent on errc) or ctx ends.
// It runs on its own goroutine, so it reports nothing through the test.
func tftpSlowReader(ctx context.Context, conn *net.UDPConn, first []byte, from *net.UDPAddr, delay time.Duration, errc chan<- string) {
	pkt := first
	buf := make([]byte, 70000)
	for ctx.Err() == nil {
		if len(pkt) >= 4 && pkt[1] == 5 {
			errc <- string(pkt[4:])
			return
		}
		if len(pkt) >= 4 && pkt[1] == 3 {
			time.Sleep(delay)
			conn.WriteToUDP([]byte{0, 4, pkt[2], pkt[3]}, from)
		}
		conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		n, _, err := conn.ReadFromUDP(buf)
		if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			return
		}
		pkt = buf[:n]
	}
}

// TestTFTPLifetime: a client that acknowledges slowly but steadily would
// hold a transfer for as long as the file lasts; the lifetime ends it.
func TestTFTPLifetime(t *testing.T) {
	dir, _ := tftpFiles(t)
	realDir, err := filepath.EvalSymlinks(dir)
	tftpMust(t, err)
	reg := prometheus.NewRegistry()
	srv := newTestTFTP(t, dir, reg, nil)
	srv.SetLimits(TFTPLimits{Lifetime: 500 * time.Millisecond})
	addr, stop := startTFTP(t, srv)
	p := newTFTPPeer(t, addr, "127.0.0.2")
	// 2048 blocks of 512 bytes, 20ms apart: 40s without a lifetime.
	first, from := p.request("random.bin")
	start := time.Now()
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	errc := make(chan string, 1)
	wg.Go(func() { tftpSlowReader(ctx, p.conn, first, from, 20*time.Millisecond, errc) })
	select {
	case msg := <-errc:
		if d := time.Since(start); d < 500*time.Millisecond || d > 2*time.Second {
			t.Errorf("transfer ended after %v, want between the 500ms lifetime and 2s", d)
		}
		if !strings.Contains(msg, "500ms") {
			t.Errorf("ERROR %q, want it to name the 500ms lifetime", msg)
		}
	case <-ctx.Done():
		t.Fatal("slow transfer still running after 5s, want it ended after its 500ms lifetime")
	}
	tftpWaitFor(t, 2*time.Second, "random.bin still open after the lifetime", func() bool {
		_, open := tftpFDs(t, filepath.Join(realDir, "random.bin"))
		return open == 0
	})
	stop()
	if n := tftpCount(t, reg, "bootstrapd_unanswered_total", map[string]string{"proto": "tftp", "reason": "too_slow"}); n != 1 {
		t.Errorf("bootstrapd_unanswered_total{tftp,too_slow} = %v, want 1", n)
	}
}

// TestTFTPShutdownCutsTransfers: Serve returns soon after cancel even while
// a client is in the middle of a long, steady transfer.
func TestTFTPShutdownCutsTransfers(t *testing.T) {
	dir, _ := tftpFiles(t)
	srv := newTestTFTP(t, dir, nil, nil)
	addr, stop := startTFTP(t, srv)
	p := newTFTPPeer(t, addr, "127.0.0.2")
	first, from := p.request("random.bin")
	var wg sync.WaitGroup
	defer wg.Wait()
	rctx, rcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer rcancel()
	errc := make(chan string, 1)
	wg.Go(func() { tftpSlowReader(rctx, p.conn, first, from, 20*time.Millisecond, errc) })
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	stop() // fails the test unless Serve returns nil
	took := time.Since(start)
	if took > 3*time.Second {
		t.Fatalf("Serve waited %v after cancel for a slow transfer", took)
	}
	t.Logf("Serve returned %v after cancel", took)
	select {
	case msg := <-errc:
		if !strings.Contains(msg, "shutting down") {
			t.Errorf("ERROR %q, want one saying the server is shutting down", msg)
		}
	case <-time.After(time.Second):
		t.Error("the cut transfer's client got no ERROR packet")
	}
}

// TestTFTPFailuresAreQuiet: failures a client causes are counted one by
// one but logged at most quietBurst times, so a flood cannot fill the log.
func TestTFTPFailuresAreQuiet(t *testing.T) {
	dir, _ := tftpFiles(t)
	const n = 3 * quietBurst
	tests := []struct {
		name   string
		pkt    []byte
		reply  bool   // the server answers each with an ERROR
		result string // in bootstrapd_tftp_transfers_total; "" for none
		reason string // in bootstrapd_unanswered_total
	}{
		{"not found", tftpRRQPacket("missing.bin"), true, tftpNotFound, "not_found"},
		{"traversal", tftpRRQPacket("../etc/passwd"), true, tftpRefused, "refused"},
		{"write", append([]byte{0, 2}, "new.bin\x00octet\x00"...), true, tftpRefused, "refused"},
		{"truncated RRQ", []byte{0, 1, 'x', 'y'}, false, "", "malformed"},
		{"DATA to the server port", []byte{0, 3, 0, 1, 'x'}, false, "", "malformed"},
		{"unknown opcode", []byte{0, 9, 0, 0}, false, "", "malformed"},
		{"one byte", []byte{1}, false, "", "malformed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			var logs bytes.Buffer // written under slog's handler lock, read after stop
			srv := newTestTFTP(t, dir, reg, slog.New(slog.NewJSONHandler(&logs, nil)))
			addr, stop := startTFTP(t, srv)
			p := newTFTPPeer(t, addr, "127.0.0.2")
			for range n {
				p.send(tc.pkt, p.server)
				if tc.reply {
					if pkt, _, err := p.next(5 * time.Second); err != nil || pkt[1] != 5 {
						t.Fatalf("reply % x, %v; want an ERROR", pkt, err)
					}
				}
			}
			// Packets without a reply may still be queued: wait until they
			// are counted (or give up and let the check below say so).
			labels := map[string]string{"proto": "tftp", "reason": tc.reason}
			tftpEventually(2*time.Second, func() bool {
				return tftpCount(t, reg, "bootstrapd_unanswered_total", labels) >= n
			})
			stop()
			if got := tftpCount(t, reg, "bootstrapd_unanswered_total", labels); got != n {
				t.Errorf("bootstrapd_unanswered_total%v = %v, want %d", labels, got, n)
			}
			if tc.result != "" {
				if got := tftpCount(t, reg, "bootstrapd_tftp_transfers_total", map[string]string{"result": tc.result}); got != n {
					t.Errorf("transfers_total{%s} = %v, want %d", tc.result, got, n)
				}
			}
			if lines := strings.Count(logs.String(), "\n"); lines > quietBurst {
				t.Errorf("%d log lines for %d failures, want at most %d:\n%s", lines, n, quietBurst, logs.String())
			}
			if !strings.Contains(logs.String(), `"reason":"`+tc.reason+`"`) {
				t.Errorf("no log line with reason %q:\n%s", tc.reason, logs.String())
			}
		})
	}
}

// TestTFTPFloodOfHalfOpenRRQs: 2,000 read requests that are never
// acknowledged, from 16 addresses, against the defaults. The server holds at
// most the per-client cap of files for each address, serves a real download
// meanwhile, and is back to its baseline of descriptors and goroutines soon
// after the unacknowledged transfers time out.
func TestTFTPFloodOfHalfOpenRRQs(t *testing.T) {
	if testing.Short() {
		t.Skip("takes several seconds")
	}
	const (
		sources = 16
		rrqs    = 2000
	)
	dir, files := tftpFiles(t)
	realDir, err := filepath.EvalSymlinks(dir)
	tftpMust(t, err)
	served := filepath.Join(realDir, "random.bin")
	reg := prometheus.NewRegistry()
	srv := newTestTFTP(t, dir, reg, nil)
	addr, _ := startTFTP(t, srv)
	server, err := net.ResolveUDPAddr("udp4", addr)
	tftpMust(t, err)
	// A download first, so whatever the runtime starts lazily is in the baseline.
	if _, _, _, err := tftpGet(tftpClient(t, addr, 1468), "blocks.bin"); err != nil {
		t.Fatal(err)
	}

	// The flood's sockets stay open (the clients are alive, they just never
	// ACK) and are drained, so the refusals can be seen and their buffers
	// never fill. They are part of the baseline. answered counts requests
	// that had their first reply: a busy ERROR, or a transfer's first packet.
	var busy, data, answered atomic.Int64
	var readers sync.WaitGroup
	peers := make([]*tftpPeer, sources)
	for i := range peers {
		peers[i] = newTFTPPeer(t, addr, fmt.Sprintf("127.0.0.%d", 2+i))
		readers.Add(1)
		go func(c *net.UDPConn) {
			defer readers.Done()
			buf := make([]byte, 70000)
			transfers := map[int]bool{}
			for {
				n, from, err := c.ReadFromUDP(buf)
				if err != nil {
					return
				}
				switch {
				case tftpIsBusy(buf[:n]):
					busy.Add(1)
					answered.Add(1)
				case n >= 2 && (buf[1] == 3 || buf[1] == 6):
					data.Add(1)
					if !transfers[from.Port] {
						transfers[from.Port] = true
						answered.Add(1)
					}
				}
			}
		}(peers[i].conn)
	}
	var peak atomic.Int64
	sampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			if _, open := tftpFDs(t, served); int64(open) > peak.Load() {
				peak.Store(int64(open))
			}
			select {
			case <-sampling:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	baseFDs, _ := tftpFDs(t, served)
	baseG := runtime.NumGoroutine()

	var got []byte
	var getErr error
	downloaded := make(chan struct{})
	start := time.Now()
	for i := range rrqs {
		if i == rrqs/2 {
			go func() {
				defer close(downloaded)
				got, _, _, getErr = tftpGet(tftpClient(t, addr, 1468), "random.bin")
			}()
		}
		pkt := tftpRRQPacket("random.bin")
		if i%2 == 0 {
			pkt = tftpRRQPacket("random.bin", "blksize", "1468", "tsize", "0")
		}
		// As fast as the server answers, but no more than a window ahead of
		// it: beyond its socket buffer the kernel would drop the flood
		// before the server ever saw it. Requests lost anyway never get an
		// answer, so the pacing stops after 3s rather than stall on them.
		for int64(i)-answered.Load() >= 100 && time.Since(start) < 3*time.Second {
			time.Sleep(time.Millisecond)
		}
		peers[i%sources].send(pkt, server)
	}
	floodEnd := time.Now()
	t.Logf("%d RRQs sent in %v", rrqs, floodEnd.Sub(start))

	select {
	case <-downloaded:
		if getErr != nil || !bytes.Equal(got, files["random.bin"]) {
			t.Errorf("download during the flood: %d bytes, %v; want %d bytes", len(got), getErr, len(files["random.bin"]))
		}
	case <-time.After(15 * time.Second):
		t.Error("download during the flood did not finish in 15s")
	}

	var fds, g int
	settled := false
	for deadline := floodEnd.Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		fds, _ = tftpFDs(t, served)
		g = runtime.NumGoroutine()
		if fds <= baseFDs+2 && g <= baseG+2 {
			settled = true
			break
		}
	}
	close(sampling)
	<-sampled
	if !settled {
		t.Fatalf("15s after the flood: %d descriptors (baseline %d), %d goroutines (baseline %d)", fds, baseFDs, g, baseG)
	}
	t.Logf("back to baseline %v after the flood: %d descriptors (baseline %d), %d goroutines (baseline %d); at most %d open on the served file; %d busy ERRORs and %d DATA/OACK packets to the flood",
		time.Since(floodEnd), fds, baseFDs, g, baseG, peak.Load(), busy.Load(), data.Load())

	// The caps held: files were opened only for admitted transfers. The
	// real client is under the same cap (it may have retried its request).
	if max := int64((sources + 1) * tftpDefaultMaxPerClient); peak.Load() > max {
		t.Errorf("%d descriptors open on the served file at once, want at most %d (%d clients × %d)",
			peak.Load(), max, sources+1, tftpDefaultMaxPerClient)
	}
	if busy.Load() == 0 {
		t.Error("no busy ERROR packet reached the flood")
	}
	// The flood did reach the server (the kernel drops what overflows its
	// socket buffer): refused plus admitted, all ended by now.
	refused := tftpCount(t, reg, "bootstrapd_tftp_transfers_total", map[string]string{"result": tftpBusy})
	failed := tftpCount(t, reg, "bootstrapd_tftp_transfers_total", map[string]string{"result": tftpError})
	t.Logf("server recorded %v refused and %v failed transfers", refused, failed)
	if refused+failed < rrqs/2 {
		t.Errorf("server recorded %v refused and %v failed transfers, want most of the %d requests", refused, failed, rrqs)
	}
	for _, p := range peers {
		p.conn.Close()
	}
	readers.Wait()
}
