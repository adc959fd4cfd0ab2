package pxe

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pin/tftp/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

const tftpOutsideSecret = "outside-the-root-secret\n"

// tftpFiles builds a netboot directory plus a file outside it that a symlink
// points at, so escapes through symlinks are tested without touching /etc.
func tftpFiles(t testing.TB) (string, map[string][]byte) {
	t.Helper()
	random := make([]byte, 1<<20)
	rand.Read(random)
	files := map[string][]byte{
		"empty.bin":     {},
		"one-block.bin": bytes.Repeat([]byte{'a'}, 512),
		"blocks.bin":    bytes.Repeat([]byte("0123456789abcdef"), 512*8/16),
		"random.bin":    random,
		"a/nested.bin":  []byte("nested file\n"),
	}
	dir := t.TempDir()
	for name, data := range files {
		p := filepath.Join(dir, name)
		tftpMust(t, os.MkdirAll(filepath.Dir(p), 0o755))
		tftpMust(t, os.WriteFile(p, data, 0o644))
	}
	outside := filepath.Join(t.TempDir(), "secret")
	tftpMust(t, os.WriteFile(outside, []byte(tftpOutsideSecret), 0o644))
	tftpMust(t, os.Symlink(outside, filepath.Join(dir, "escape.lnk")))
	tftpMust(t, os.Symlink("a/nested.bin", filepath.Join(dir, "inside.lnk")))
	files["inside.lnk"] = files["a/nested.bin"]
	return dir, files
}

func tftpMust(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// startTFTP serves srv on an ephemeral loopback port. stop shuts it down and
// checks Serve returned nil; call it before reading metrics or logs, because
// the server records a transfer only after the client has its last block.
func startTFTP(t testing.TB, srv *TFTP) (addr string, stop func()) {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	tftpMust(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, conn) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Serve returned %v after cancel, want nil", err)
				}
			case <-time.After(30 * time.Second):
				t.Error("Serve did not return after cancel")
			}
		})
	}
	t.Cleanup(stop)
	return conn.LocalAddr().String(), stop
}

func newTestTFTP(t testing.TB, dir string, reg prometheus.Registerer, log *slog.Logger) *TFTP {
	t.Helper()
	srv, err := NewTFTP(dir, log, reg)
	tftpMust(t, err)
	return srv
}

func tftpClient(t testing.TB, addr string, blksize int) *tftp.Client {
	t.Helper()
	c, err := tftp.NewClient(addr)
	tftpMust(t, err)
	tftpMust(t, c.SetLocalAddr("127.0.0.1"))
	c.SetTimeout(2 * time.Second)
	c.SetBlockSize(blksize)
	c.RequestTSize(true)
	return c
}

// get downloads name and returns its bytes and the tsize the server reported.
func tftpGet(c *tftp.Client, name string) ([]byte, int64, bool, error) {
	wt, err := c.Receive(name, "octet")
	if err != nil {
		return nil, 0, false, err
	}
	size, ok := wt.(tftp.IncomingTransfer).Size()
	var buf bytes.Buffer
	_, err = wt.WriteTo(&buf)
	return buf.Bytes(), size, ok, err
}

func TestTFTPDownload(t *testing.T) {
	dir, files := tftpFiles(t)
	addr, _ := startTFTP(t, newTestTFTP(t, dir, nil, nil))
	tests := []struct{ name, file string }{
		{"empty", "empty.bin"},
		{"exactly one block", "one-block.bin"},
		{"several full blocks", "blocks.bin"},
		{"1 MiB random", "random.bin"},
		{"subdirectory", "a/nested.bin"},
		{"leading slash stripped", "/random.bin"},
		{"symlink inside root", "inside.lnk"},
	}
	for _, tc := range tests {
		for _, blksize := range []int{512, 1468} {
			t.Run(fmt.Sprintf("%s/blksize=%d", tc.name, blksize), func(t *testing.T) {
				want := files[strings.TrimPrefix(tc.file, "/")]
				got, size, ok, err := tftpGet(tftpClient(t, addr, blksize), tc.file)
				if err != nil {
					t.Fatalf("get %q: %v", tc.file, err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("get %q: got %d bytes, want %d (content differs)", tc.file, len(got), len(want))
				}
				// The server does not size an empty file (curl refuses
				// "tsize 0"); any size it does report must be exact.
				if ok && size != int64(len(want)) || !ok && len(want) != 0 {
					t.Errorf("tsize = %d (reported %v), want %d", size, ok, len(want))
				}
			})
		}
	}
}

// tftpRawRRQ sends a read request with options and returns the first reply and
// the transfer's server address, for checks the pin client cannot make.
func tftpRawRRQ(t *testing.T, addr, name string, opts ...string) (*net.UDPConn, *net.UDPAddr, []byte) {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	tftpMust(t, err)
	tftpMust(t, conn.SetDeadline(time.Now().Add(5*time.Second)))
	pkt := append([]byte{0, 1}, name+"\x00octet\x00"...)
	for _, o := range opts {
		pkt = append(pkt, o+"\x00"...)
	}
	server, err := net.ResolveUDPAddr("udp4", addr)
	tftpMust(t, err)
	_, err = conn.WriteToUDP(pkt, server)
	tftpMust(t, err)
	buf := make([]byte, 70000)
	n, from, err := conn.ReadFromUDP(buf)
	tftpMust(t, err)
	// Abort on the way out (a no-op if the transfer is over) so a failed
	// test does not leave the server retrying and stall Shutdown.
	t.Cleanup(func() {
		conn.WriteToUDP([]byte{0, 5, 0, 0, 'b', 'y', 'e', 0}, from)
		conn.Close()
	})
	return conn, from, buf[:n]
}

func TestTFTPBlockSizeCap(t *testing.T) {
	dir, files := tftpFiles(t)
	size := strconv.Itoa(len(files["random.bin"]))
	tests := []struct {
		name        string
		cap         int // 0 keeps the default
		ask, wantSz string
	}{
		{"default caps large request", 0, "65464", "1468"},
		{"smaller request kept", 0, "1024", "1024"},
		{"raised cap", 8192, "65464", "8192"},
		{"cap below 512 clamped", 100, "600", "512"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := newTestTFTP(t, dir, nil, nil)
			if tc.cap != 0 {
				srv.SetBlockSize(tc.cap)
			}
			addr, _ := startTFTP(t, srv)
			conn, from, oack := tftpRawRRQ(t, addr, "random.bin", "blksize", tc.ask, "tsize", "0")
			if binary.BigEndian.Uint16(oack) != 6 {
				t.Fatalf("reply opcode %d, want OACK (6): %q", binary.BigEndian.Uint16(oack), oack)
			}
			got := map[string]string{}
			f := strings.Split(strings.TrimSuffix(string(oack[2:]), "\x00"), "\x00")
			for i := 0; i+1 < len(f); i += 2 {
				got[f[i]] = f[i+1]
			}
			if got["blksize"] != tc.wantSz || got["tsize"] != size {
				t.Fatalf("OACK %v, want blksize=%s tsize=%s", got, tc.wantSz, size)
			}
			_, err := conn.WriteToUDP([]byte{0, 4, 0, 0}, from) // ACK block 0
			tftpMust(t, err)
			buf := make([]byte, 70000)
			n, _, err := conn.ReadFromUDP(buf)
			tftpMust(t, err)
			if want, _ := strconv.Atoi(tc.wantSz); n != 4+want {
				t.Errorf("first DATA packet %d bytes, want %d", n, 4+want)
			}
		})
	}
}

func TestTFTPRefusals(t *testing.T) {
	dir, files := tftpFiles(t)
	srv := newTestTFTP(t, dir, nil, nil)
	addr, _ := startTFTP(t, srv)
	tests := []struct {
		name, file, result string
		want               string // in the handler's error and so in the client's
		wire               string // when the wire changes the name, what the client sees
	}{
		{"dot-dot", "../etc/passwd", tftpRefused, "escapes", ""},
		{"absolute after one slash", "//etc/passwd", tftpRefused, "escapes", ""},
		{"absolute maps into root", "/etc/passwd", tftpNotFound, "not found", ""},
		{"dot-dot through subdir", "a/../../x", tftpRefused, "escapes", ""},
		{"symlink out of root", "escape.lnk", tftpRefused, "escapes", ""},
		{"directory", "a", tftpRefused, "is a directory", ""},
		{"directory slash", "a/", tftpRefused, "is a directory", ""},
		{"missing", "missing.bin", tftpNotFound, "file not found", ""},
		{"empty name", "", tftpRefused, "empty file name", ""},
		// RRQ fields are NUL-terminated, so the server reads "missing" with
		// the tail as the mode, which it refuses: never the tail's path.
		{"NUL", "missing\x00../../etc/passwd", tftpRefused, "NUL", "unknown transfer mode"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, _, result, err := srv.open(tc.file)
			if f != nil {
				f.Close()
				t.Fatalf("open(%q) succeeded", tc.file)
			}
			if result != tc.result || err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("open(%q) = %q, %v; want %q, error containing %q", tc.file, result, err, tc.result, tc.want)
			}
			want := tc.want
			if tc.wire != "" {
				want = tc.wire
			}
			c := tftpClient(t, addr, 1468)
			got, _, _, err := tftpGet(c, tc.file)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("tftpGet(%q) error %v, want one containing %q", tc.file, err, want)
			}
			if bytes.Contains(got, []byte(tftpOutsideSecret)) {
				t.Errorf("tftpGet(%q) leaked the file outside the root", tc.file)
			}
			// The server must still serve after a refusal.
			got, _, _, err = tftpGet(c, "blocks.bin")
			if err != nil || !bytes.Equal(got, files["blocks.bin"]) {
				t.Fatalf("good download after %q: %d bytes, %v", tc.file, len(got), err)
			}
		})
	}
}

func TestTFTPWriteRefused(t *testing.T) {
	dir, _ := tftpFiles(t)
	addr, _ := startTFTP(t, newTestTFTP(t, dir, nil, nil))
	for _, name := range []string{"new.bin", "random.bin"} {
		t.Run(name, func(t *testing.T) {
			before, _ := os.ReadFile(filepath.Join(dir, name))
			rf, err := tftpClient(t, addr, 0).Send(name, "octet")
			if err == nil {
				_, err = rf.ReadFrom(strings.NewReader("overwrite"))
			}
			if err == nil || !strings.Contains(err.Error(), "read-only") {
				t.Fatalf("write %q: error %v, want one containing %q", name, err, "read-only")
			}
			after, _ := os.ReadFile(filepath.Join(dir, name))
			if !bytes.Equal(before, after) {
				t.Errorf("write %q changed the file", name)
			}
		})
	}
}

// TestTFTPRealClients uses the clients firmware-like tools ship; CI installs
// them, so a missing binary is a failure, not a skip.
func TestTFTPRealClients(t *testing.T) {
	need := map[string]string{"tftp": "tftp-hpa", "curl": "curl"}
	for bin, pkg := range need {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s not found: install the Debian package %s", bin, pkg)
		}
	}
	dir, files := tftpFiles(t)
	addr, _ := startTFTP(t, newTestTFTP(t, dir, nil, nil))
	_, port, _ := net.SplitHostPort(addr)
	tftpHPA := func(args ...string) []string {
		return append([]string{"tftp", "127.0.0.1", port, "-m", "binary", "-c"}, args...)
	}
	curl := func(args ...string) []string {
		return append([]string{"curl", "-sS"}, args...)
	}
	url := "tftp://127.0.0.1:" + port + "/"
	tests := []struct {
		name   string
		args   func(out string) []string
		want   []byte // downloaded bytes; nil when the transfer must fail
		exit   int
		output string // in the client's output
	}{
		{"tftp-hpa random", func(out string) []string { return tftpHPA("get", "random.bin", out) },
			files["random.bin"], 0, ""},
		{"tftp-hpa leading slash", func(out string) []string { return tftpHPA("get", "/one-block.bin", out) },
			files["one-block.bin"], 0, ""},
		// tftp-hpa exits 0 even on a TFTP error, so its output is the signal.
		{"tftp-hpa traversal", func(out string) []string { return tftpHPA("get", "../etc/passwd", out) },
			nil, 0, "path escapes"},
		{"tftp-hpa put", func(string) []string { return tftpHPA("put", filepath.Join(dir, "blocks.bin"), "new.bin") },
			nil, 0, "read-only"},
		{"curl random blksize 1468", func(out string) []string {
			return curl("--tftp-blksize", "1468", url+"random.bin", "-o", out)
		}, files["random.bin"], 0, ""},
		{"curl empty", func(out string) []string { return curl(url+"empty.bin", "-o", out) },
			files["empty.bin"], 0, ""},
		// Without --path-as-is curl would squash the ".." itself. A refusal
		// is TFTP error 2, access violation, which curl reports as exit 69
		// (CURLE_TFTP_PERM); a missing file is error 1, exit 68
		// (CURLE_TFTP_NOTFOUND).
		{"curl traversal", func(out string) []string { return curl("--path-as-is", url+"../etc/passwd", "-o", out) },
			nil, 69, ""},
		{"curl symlink escape", func(out string) []string { return curl(url+"escape.lnk", "-o", out) },
			nil, 69, ""},
		{"curl missing", func(out string) []string { return curl(url+"missing.bin", "-o", out) },
			nil, 68, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			args := tc.args(out)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			msg, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
			exit := 0
			if ee, ok := err.(*exec.ExitError); ok {
				exit = ee.ExitCode()
			} else if err != nil {
				t.Fatalf("%v: %v", args, err)
			}
			got, _ := os.ReadFile(out)
			if exit != tc.exit || !bytes.Contains(msg, []byte(tc.output)) {
				t.Fatalf("%v: exit %d, want %d and output containing %q\n%s", args, exit, tc.exit, tc.output, msg)
			}
			if !bytes.Equal(got, tc.want) {
				t.Fatalf("%v: got %d bytes, want %d\n%s", args, len(got), len(tc.want), msg)
			}
			if tc.want != nil && len(msg) != 0 {
				t.Errorf("%v: unexpected output on success:\n%s", args, msg)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "new.bin")); err == nil {
		t.Error("tftp-hpa put created new.bin in the read-only root")
	}
}

func TestTFTPMetricsAndLogs(t *testing.T) {
	dir, files := tftpFiles(t)
	reg := prometheus.NewRegistry()
	var logs bytes.Buffer // written under slog's handler lock, read after stop
	srv := newTestTFTP(t, dir, reg, slog.New(slog.NewJSONHandler(&logs, nil)))
	addr, stop := startTFTP(t, srv)

	c := tftpClient(t, addr, 1468)
	for _, name := range []string{"random.bin", "blocks.bin"} {
		if _, _, _, err := tftpGet(c, name); err != nil {
			t.Fatalf("get %s: %v", name, err)
		}
	}
	for _, name := range []string{"missing.bin", "../etc/passwd"} {
		if _, _, _, err := tftpGet(c, name); err == nil {
			t.Fatalf("get %s succeeded", name)
		}
	}
	if _, err := c.Send("new.bin", "octet"); err == nil {
		t.Fatal("write succeeded")
	}
	// A client that gives up after the first 512-byte block: a failed transfer.
	conn, from, data := tftpRawRRQ(t, addr, "random.bin")
	if len(data) != 4+512 {
		t.Fatalf("first DATA %d bytes, want 516", len(data))
	}
	_, err := conn.WriteToUDP([]byte{0, 5, 0, 0, 'x', 0}, from)
	tftpMust(t, err)
	// EDK2's size probe: read tsize from the OACK, then abort with error 8.
	probe, pfrom, oack := tftpRawRRQ(t, addr, "random.bin", "tsize", "0")
	if len(oack) < 2 || oack[1] != 6 {
		t.Fatalf("want an OACK for tsize, got % x", oack)
	}
	_, err = probe.WriteToUDP([]byte{0, 5, 0, 8, 'x', 0}, pfrom)
	tftpMust(t, err)
	stop()

	okBytes := len(files["random.bin"]) + len(files["blocks.bin"])
	want := fmt.Sprintf(`
# HELP bootstrapd_tftp_bytes_total Bytes of file data sent over TFTP.
# TYPE bootstrapd_tftp_bytes_total counter
bootstrapd_tftp_bytes_total %d
# HELP bootstrapd_tftp_transfers_total TFTP transfers by result.
# TYPE bootstrapd_tftp_transfers_total counter
bootstrapd_tftp_transfers_total{result="busy"} 0
bootstrapd_tftp_transfers_total{result="error"} 1
bootstrapd_tftp_transfers_total{result="not_found"} 1
bootstrapd_tftp_transfers_total{result="ok"} 2
bootstrapd_tftp_transfers_total{result="refused"} 2
bootstrapd_tftp_transfers_total{result="size_probe"} 1
# HELP bootstrapd_unanswered_total Packets and requests from the network that were not answered, by protocol and reason (their log lines are rate-limited).
# TYPE bootstrapd_unanswered_total counter
bootstrapd_unanswered_total{proto="tftp",reason="aborted"} 1
bootstrapd_unanswered_total{proto="tftp",reason="not_found"} 1
bootstrapd_unanswered_total{proto="tftp",reason="refused"} 2
`, okBytes+512)
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Error(err)
	}

	type entry struct {
		Level, File, Remote, Result, Reason string
		Bytes                               int64
		Duration                            int64
	}
	// Failures go through quietLog, which adds the reason they are counted under.
	wantLogs := map[string]entry{
		"random.bin/ok":         {Level: "INFO", Bytes: int64(len(files["random.bin"]))},
		"blocks.bin/ok":         {Level: "INFO", Bytes: int64(len(files["blocks.bin"]))},
		"missing.bin/not_found": {Level: "WARN", Reason: "not_found"},
		"../etc/passwd/refused": {Level: "WARN", Reason: "refused"},
		"new.bin/refused":       {Level: "WARN", Reason: "refused"},
		"random.bin/error":      {Level: "WARN", Bytes: 512, Reason: "aborted"},
		"random.bin/size_probe": {Level: "INFO"},
	}
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != len(wantLogs) {
		t.Fatalf("%d log lines, want %d:\n%s", len(lines), len(wantLogs), logs.String())
	}
	for _, line := range lines {
		var e entry
		tftpMust(t, json.Unmarshal([]byte(line), &e))
		w, ok := wantLogs[e.File+"/"+e.Result]
		if !ok || e.Level != w.Level || e.Bytes != w.Bytes || e.Reason != w.Reason || !strings.HasPrefix(e.Remote, "127.0.0.1:") {
			t.Errorf("log line %s: want level %s, bytes %d, reason %q, remote 127.0.0.1:*", line, w.Level, w.Bytes, w.Reason)
		}
	}
}

func TestNewTFTPErrors(t *testing.T) {
	dir, _ := tftpFiles(t)
	reg := prometheus.NewRegistry()
	newTestTFTP(t, dir, reg, nil)
	tests := []struct {
		name, dir string
		reg       prometheus.Registerer
		want      string
	}{
		{"missing dir", filepath.Join(dir, "nope"), nil, "tftp root"},
		{"file as dir", filepath.Join(dir, "random.bin"), nil, "tftp root"},
		{"metrics registered twice", dir, reg, "tftp metrics"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewTFTP(tc.dir, nil, tc.reg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("NewTFTP error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestTFTPServeReturnsSetupError(t *testing.T) {
	dir, _ := tftpFiles(t)
	// A unix datagram socket is not the UDP socket Serve needs.
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: filepath.Join(t.TempDir(), "s"), Net: "unixgram"})
	tftpMust(t, err)
	done := make(chan error, 1)
	go func() { done <- newTestTFTP(t, dir, nil, nil).Serve(context.Background(), conn) }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Serve on a unix socket returned nil, want an error")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve on a unix socket did not return")
	}
}
