package pxe

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// FuzzTFTPName feeds arbitrary names to open, which maps a requested name to
// a file under the root. Whatever the name, open must not panic, must hand
// out only regular files that are inside the root, and must not even open a
// FIFO, a device or anything outside the root: inotify reports every open
// of those, including one that is closed again at once.
func FuzzTFTPName(f *testing.F) {
	for _, name := range []string{
		"random.bin", "/random.bin", "a/nested.bin", "inside.lnk", "a/../random.bin", "./a/./nested.bin",
		"../etc/passwd", "/abs", "//etc/passwd", "a/../../b", "escape.lnk", "/../random.bin",
		"fifo", "fifo.lnk", "null", "null.lnk", "devnull.lnk", "a/fifo", "secret",
		"missing\x00../../etc/passwd", "random.bin\x00", "\x00", "",
		".", "..", "/", "a", "a/", "a/nested.bin/", "a/nested.bin/..", strings.Repeat("a/", 300) + "x",
		`..\..\etc\passwd`, "random.bin ", "RANDOM.BIN", "a//nested.bin",
	} {
		f.Add(name)
	}
	dir, _ := tftpFiles(f)
	srv := newTestTFTP(f, dir, nil, nil)

	// Things open must never open, each watched for IN_OPEN.
	ino, err := syscall.InotifyInit1(syscall.IN_NONBLOCK | syscall.IN_CLOEXEC)
	tftpMust(f, err)
	f.Cleanup(func() { syscall.Close(ino) })
	watched := map[int32]string{}
	watch := func(path string) {
		wd, err := syscall.InotifyAddWatch(ino, path, syscall.IN_OPEN)
		tftpMust(f, err)
		watched[int32(wd)] = path
	}
	tftpMust(f, syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o644))
	tftpMust(f, os.Symlink("fifo", filepath.Join(dir, "fifo.lnk")))
	tftpMust(f, syscall.Mkfifo(filepath.Join(dir, "a", "fifo"), 0o644))
	watch(filepath.Join(dir, "fifo"))
	watch(filepath.Join(dir, "a", "fifo"))
	// A character device inside the root (the same as /dev/null), when we
	// may create one; /dev/null itself cannot be watched, everything opens it.
	if err := syscall.Mknod(filepath.Join(dir, "null"), syscall.S_IFCHR|0o666, 1<<8|3); err == nil {
		watch(filepath.Join(dir, "null"))
	} else {
		f.Logf("no device node in the root (%v); FIFOs only", err)
	}
	tftpMust(f, os.Symlink("null", filepath.Join(dir, "null.lnk")))
	tftpMust(f, os.Symlink("/dev/null", filepath.Join(dir, "devnull.lnk")))
	// The file escape.lnk points at, outside the root.
	outside, err := os.Readlink(filepath.Join(dir, "escape.lnk"))
	tftpMust(f, err)
	watch(outside)

	// What open may hand out: the regular files in the root.
	var regular []os.FileInfo
	tftpMust(f, filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			fi, err := os.Stat(path)
			regular = append(regular, fi)
			return err
		}
		return err
	}))

	f.Fuzz(func(t *testing.T, name string) {
		file, _, result, err := srv.open(name)
		buf := make([]byte, 4096)
		if n, _ := syscall.Read(ino, buf); n > 0 {
			var opened []string
			for off := 0; off+syscall.SizeofInotifyEvent <= n; {
				ev := (*syscall.InotifyEvent)(unsafe.Pointer(&buf[off]))
				opened = append(opened, watched[ev.Wd])
				off += syscall.SizeofInotifyEvent + int(ev.Len)
			}
			t.Errorf("open(%q) opened %v", name, opened)
		}
		if file == nil {
			if err == nil || (result != tftpNotFound && result != tftpRefused) {
				t.Fatalf("open(%q) = no file, %q, %v; want not_found or refused with an error", name, result, err)
			}
			return
		}
		defer file.Close()
		fi, serr := file.Stat()
		tftpMust(t, serr)
		if err != nil || result != "" || !fi.Mode().IsRegular() {
			t.Fatalf("open(%q) = %v (mode %v), %q, %v; want a regular file and no error", name, fi.Name(), fi.Mode(), result, err)
		}
		for _, r := range regular {
			if os.SameFile(fi, r) {
				return
			}
		}
		t.Fatalf("open(%q) returned %s, which is not one of the root's files", name, fi.Name())
	})
}

// FuzzTFTPWire sends arbitrary bytes as one datagram to a running server,
// then checks the server still serves: a good download that follows must
// complete. The packets come from 127.0.0.2, the downloads from 127.0.0.1,
// so transfers the fuzzer opens and abandons count against another client's
// cap.
func FuzzTFTPWire(f *testing.F) {
	rq := func(op byte, fields ...string) []byte {
		return append([]byte{0, op}, strings.Join(fields, "\x00")+"\x00"...)
	}
	for _, pkt := range [][]byte{
		rq(1, "blocks.bin", "octet"),
		rq(1, "random.bin", "octet", "blksize", "1468", "tsize", "0"),
		rq(1, "one-block.bin", "octet", "blksize", "65464"),
		rq(1, "random.bin", "octet", "tsize", "0"),
		rq(1, "empty.bin", "octet", "tsize", "0", "blksize", "512"),
		rq(1, "blocks.bin", "netascii"),
		rq(1, "blocks.bin", "octet", "blksize", "0", "tsize", "-1"),
		rq(1, "blocks.bin", "octet", "blksize", "99999999999999999999", "timeout", "0"),
		rq(1, "blocks.bin", "octet", "blksize", "abc", "tsize", "abc", "windowsize", "64"),
		rq(1, "blocks.bin", "octet", "blksize"),
		rq(1, "../etc/passwd", "octet"),
		rq(1, "/abs", "octet"),
		rq(1, "a/../../b", "octet"),
		rq(1, "escape.lnk", "octet", "tsize", "0"),
		rq(1, "a\x00b", "octet"),
		rq(1, "", "octet"),
		rq(2, "new.bin", "octet", "tsize", "100"),
		rq(1, "blocks.bin", "octet")[:8],
		rq(1, "blocks.bin"),
		{0, 1}, {0, 1, 'x'}, {0, 1, 'x', 'y'}, {0, 1, 0, 0}, {},
		{0, 3, 0, 1, 'd'}, {0, 4, 0, 0}, {0, 5, 0, 8, 'x', 0}, {0, 6, 't', 0, '1', 0}, {0, 9}, {1},
	} {
		f.Add(pkt)
	}
	dir, files := tftpFiles(f)
	addr, _ := startTFTP(f, newTestTFTP(f, dir, nil, nil))
	server, err := net.ResolveUDPAddr("udp4", addr)
	tftpMust(f, err)
	client := tftpClient(f, addr, 1468)
	f.Fuzz(func(t *testing.T, pkt []byte) {
		conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2)})
		tftpMust(t, err)
		defer conn.Close()
		if _, err := conn.WriteToUDP(pkt, server); err != nil {
			// Too long for one datagram: nothing reached the server.
			return
		}
		got, _, _, err := tftpGet(client, "blocks.bin")
		if err != nil || !bytes.Equal(got, files["blocks.bin"]) {
			t.Fatalf("download after % x: %d bytes, %v", pkt[:min(len(pkt), 64)], len(got), err)
		}
		// End whatever the packet started, so abandoned transfers do not
		// pile up against the fuzzer's per-client cap. Its reply, if any, is
		// almost surely here by now, the download having come after it.
		tftpMust(t, conn.SetReadDeadline(time.Now().Add(time.Millisecond)))
		buf := make([]byte, 70000)
		for {
			_, from, err := conn.ReadFromUDP(buf)
			if err != nil {
				break
			}
			if from.Port != server.Port {
				conn.WriteToUDP([]byte("\x00\x05\x00\x00fuzz done\x00"), from)
			}
		}
	})
}
