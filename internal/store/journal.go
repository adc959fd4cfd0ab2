package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"
	"unsafe"
)

// The journal is where a write becomes durable. A bbolt commit costs two
// fdatasyncs and a handful of page writes (the leaf, its branches, the
// freelist, the meta page), and under DHCP load those were most of the
// daemon's CPU: the kernel spends 80-100 µs of CPU in each fdatasync on a
// virtio disk. Appending a group of writes to the journal costs one pwrite
// and one fdatasync. The journal's records are applied to bbolt in one
// transaction now and then (a checkpoint), so bbolt's two fdatasyncs are
// paid once per thousands of writes.
//
// The file is preallocated with zeros and written from offset 0 again after
// every checkpoint, never truncated: writes inside blocks that already exist
// change no file size or extent, so making them durable has no inode to log
// and only flushes the data. Where the file system allows it (ext4, xfs; not
// tmpfs) records are written with O_DIRECT|O_DSYNC, one pwrite of whole
// 4 KiB blocks and no fdatasync: that skips the page cache and its
// writeback, and took a third less CPU than pwrite+fdatasync on a virtio
// disk. The block that holds the end of the previous record is written
// again with it, byte for byte as before, so a write torn by a power cut
// changes no sector of an acknowledged record.
//
// A record is a group of writes, all or none:
//
//	length uint32 | crc uint32 | seq uint64 | body (length bytes)
//
// little-endian; crc is CRC-32C of seq and body. seq numbers records from 1
// without gaps. bbolt keeps the number of the last record it holds
// (metaBucket/appliedKey), and the journal's records are those at offset 0,
// offset 0 + the first's size, and so on, numbered applied+1, applied+2, …:
// the first record that is torn (bad length or crc), zeros, or that does not
// carry the next number ends it. A record from before the last checkpoint
// has a number at most applied, so the rest of an older, longer run of
// records is never taken for new ones; and replaying a record twice is
// harmless because records are only applied when their number is the next.
//
// The body is a list of changes:
//
//	op byte (opPut, opDelete) | uvarint len | bucket | uvarint len | key | [uvarint len | value]
const (
	recordHeader = 16
	opPut        = 1
	opDelete     = 2

	// journalPrealloc is the size the journal file is filled to with
	// zeros when it is smaller. A record past it still works; it grows
	// the file, which costs fdatasync an inode update.
	journalPrealloc = 2 << 20
	// defaultCheckpointAt is the journal size at which its records are
	// applied to bbolt: about 9,000 leases. Replaying that much at open
	// takes well under a second; a checkpoint this size holds up writes
	// for a few milliseconds.
	defaultCheckpointAt = 1 << 20
	// directBlock is the alignment of O_DIRECT writes: every device's
	// logical block size divides it.
	directBlock = 4096
	// rawWriteLimit and slowWrites: see pwriteDirect.
	rawWriteLimit = 20 * time.Millisecond
	slowWrites    = 1000
	// maxRecord bounds one record's body: a length beyond it is read as a
	// torn record, not as a reason to allocate gigabytes.
	maxRecord = 1 << 30

	metaBucket = "_store"
	appliedKey = "journal-applied"
)

// journal is the open journal file. Only the committer goroutine uses it.
type journal struct {
	f    *os.File
	path string
	off  int64  // where the next record goes
	seq  uint64 // number of the last record written or applied
	buf  []byte // the record being built, reused
	crc  *crc32.Table

	// direct, when not nil, is the file opened O_DIRECT|O_DSYNC, which
	// records are written with. block is its aligned write buffer, which
	// starts with the part of the block at off that is already written.
	direct *os.File
	block  []byte
	// slow counts down the writes still made through the scheduler
	// after one that took longer than rawWriteLimit (see pwriteDirect).
	slow int
}

// journalPath is the journal beside the store file at path.
func journalPath(path string) string { return path + ".journal" }

// openJournal opens (creating and preallocating if needed) the journal of
// the store at path and returns it with its contents, for replay.
func openJournal(path string, buffered bool) (*journal, []byte, error) {
	jp := journalPath(path)
	f, err := os.OpenFile(jp, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("open store journal: %w", err)
	}
	j := &journal{f: f, path: jp, crc: crc32.MakeTable(crc32.Castagnoli)}
	data, err := io.ReadAll(f)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("read store journal %s: %w", jp, err)
	}
	if len(data) < journalPrealloc {
		if err := j.prealloc(int64(len(data))); err != nil {
			f.Close()
			return nil, nil, err
		}
	}
	// Not every file system takes O_DIRECT (tmpfs refuses it): then
	// records go through the page cache and fdatasync.
	if !buffered {
		if d, err := os.OpenFile(jp, os.O_WRONLY|syscall.O_DIRECT|syscall.O_DSYNC, 0); err == nil {
			j.direct = d
		}
	}
	return j, data, nil
}

// prealloc fills the file with zeros from size up to journalPrealloc and
// makes that durable, directory entry included.
func (j *journal) prealloc(size int64) error {
	zeros := make([]byte, journalPrealloc-size)
	if _, err := j.f.WriteAt(zeros, size); err != nil {
		return fmt.Errorf("preallocate store journal %s (is the disk full?): %w", j.path, err)
	}
	if err := fdatasync(j.f); err != nil {
		return fmt.Errorf("preallocate store journal %s: %w", j.path, err)
	}
	dir, err := os.Open(filepath.Dir(j.path))
	if err != nil {
		return fmt.Errorf("sync state directory: %w", err)
	}
	defer dir.Close()
	if err := dir.Sync(); err != nil {
		return fmt.Errorf("sync state directory %s: %w", filepath.Dir(j.path), err)
	}
	return nil
}

// append writes group as the next record and waits until it is on disk.
// On an error nothing moves: the next record is written at the same offset
// with the same number, over whatever part of this one reached the file.
// raw asks for a write the scheduler does not see (see pwriteDirect).
func (j *journal) append(group []write, raw bool) error {
	seq := j.seq + 1
	b := appendRecord(j.buf[:0], seq, group, j.crc)
	j.buf = b
	var err error
	if j.direct != nil {
		err = j.writeDirect(b, raw)
	} else {
		err = j.writeBuffered(b)
	}
	if err != nil {
		return err
	}
	j.off += int64(len(b))
	j.seq = seq
	// A large group leaves a large buffer behind: let it go.
	if cap(j.buf) > 1<<20 {
		j.buf = nil
	}
	return nil
}

func (j *journal) writeBuffered(rec []byte) error {
	if _, err := j.f.WriteAt(rec, j.off); err != nil {
		return fmt.Errorf("write store journal %s: %w", j.path, err)
	}
	if err := fdatasync(j.f); err != nil {
		return fmt.Errorf("sync store journal %s: %w", j.path, err)
	}
	return nil
}

// writeDirect writes the blocks rec falls in: the written start of the
// first (kept in j.block), rec, and zeros to the end of the last. On
// success j.block starts with the written part of the block at the new end.
func (j *journal) writeDirect(rec []byte, raw bool) error {
	start := j.off &^ (directBlock - 1)
	head := int(j.off - start)
	n := head + len(rec)
	size := (n + directBlock - 1) &^ (directBlock - 1)
	if cap(j.block) < size {
		nb := alignedBlock(size * 2)
		copy(nb, j.block[:head])
		j.block = nb
	}
	b := j.block[:size]
	copy(b[head:], rec)
	clear(b[n:])
	if err := j.pwriteDirect(b, start, raw); err != nil {
		return fmt.Errorf("write store journal %s: %w", j.path, err)
	}
	// The new end's block, written up to the end, moves to the front.
	last := n &^ (directBlock - 1)
	copy(j.block, b[last:n])
	if cap(j.block) > 1<<20 {
		nb := alignedBlock(2 * directBlock)
		copy(nb, j.block[:n-last])
		j.block = nb
	}
	return nil
}

// pwriteDirect writes b at off on the O_DIRECT file. When raw is set and
// the disk is fast it uses syscall.RawSyscall, which the Go scheduler does
// not see. Through syscall.Syscall (os.File.WriteAt), every write made
// while the process was idle woke the runtime's monitor thread (sysmon),
// which then polled every 20 µs until all threads were idle again: at
// 1000-2000 DHCP exchanges/s that cost a third of the daemon's CPU. The
// price is that during a raw write the thread keeps its P (the scheduler's
// slot): the other goroutines have one P fewer, and a garbage collection
// waits for the write to end. So raw is only for a write made when the
// process is idle (store.PutJSONNow: under load, when every P has work, the
// committer writes through the scheduler, which hands the P to another
// goroutine for the length of the write), and after a write that took longer
// than rawWriteLimit the next slowWrites writes go through the scheduler
// too, so that a slow disk cannot stall collections. (The limit is well
// above what a busy shared machine adds to a write by descheduling the
// thread: at 2 ms that alone kept switching to the slow path.)
func (j *journal) pwriteDirect(b []byte, off int64, raw bool) error {
	if !raw || j.slow > 0 {
		if j.slow > 0 {
			j.slow--
		}
		_, err := j.direct.WriteAt(b, off)
		return err
	}
	start := time.Now()
	fd := j.direct.Fd()
	for len(b) > 0 {
		n, _, errno := syscall.RawSyscall6(syscall.SYS_PWRITE64, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), uintptr(off), 0, 0)
		switch {
		case errno == syscall.EINTR:
			continue
		case errno != 0:
			return os.NewSyscallError("pwrite", errno)
		case n == 0:
			return io.ErrShortWrite
		}
		b, off = b[n:], off+int64(n)
	}
	if time.Since(start) > rawWriteLimit {
		j.slow = slowWrites
	}
	return nil
}

// alignedBlock is a buffer of n bytes (a multiple of directBlock) whose
// address is aligned for O_DIRECT.
func alignedBlock(n int) []byte {
	b := make([]byte, n+directBlock)
	skip := int(-uintptr(unsafe.Pointer(&b[0])) & (directBlock - 1))
	return b[skip : skip+n : skip+n]
}

// appendRecord appends group's changes to b as record number seq.
func appendRecord(b []byte, seq uint64, group []write, tab *crc32.Table) []byte {
	start := len(b)
	var header [recordHeader]byte
	b = append(b, header[:]...)
	for _, w := range group {
		for _, c := range w.changes {
			b = appendChange(b, c)
		}
	}
	h, body := b[start:start+recordHeader], b[start+recordHeader:]
	binary.LittleEndian.PutUint32(h[0:], uint32(len(body)))
	binary.LittleEndian.PutUint64(h[8:], seq)
	binary.LittleEndian.PutUint32(h[4:], crc32.Update(crc32.Checksum(h[8:16], tab), tab, body))
	return b
}

// reset starts the journal over at offset 0, after its records are in bbolt.
func (j *journal) reset() { j.off = 0 }

func (j *journal) close() error {
	var err error
	if j.direct != nil {
		err = j.direct.Close()
	}
	return errors.Join(err, j.f.Close())
}

func appendChange(b []byte, c change) []byte {
	op := byte(opPut)
	if c.value == nil {
		op = opDelete
	}
	b = append(b, op)
	b = binary.AppendUvarint(b, uint64(len(c.bucket)))
	b = append(b, c.bucket...)
	b = binary.AppendUvarint(b, uint64(len(c.key)))
	b = append(b, c.key...)
	if op == opPut {
		b = binary.AppendUvarint(b, uint64(len(c.value)))
		b = append(b, c.value...)
	}
	return b
}

// records calls fn for each record of the journal data that comes after
// record number applied, in order (see the format above), and returns the
// number of the last one.
func records(data []byte, applied uint64, tab *crc32.Table, fn func(seq uint64, body []byte) error) (uint64, error) {
	seq := applied
	for off := 0; len(data)-off >= recordHeader; {
		h := data[off : off+recordHeader]
		n := binary.LittleEndian.Uint32(h[0:])
		if n == 0 || n > maxRecord || int64(n) > int64(len(data)-off-recordHeader) {
			break
		}
		body := data[off+recordHeader : off+recordHeader+int(n)]
		if binary.LittleEndian.Uint32(h[4:]) != crc32.Update(crc32.Checksum(h[8:16], tab), tab, body) {
			break
		}
		if binary.LittleEndian.Uint64(h[8:]) != seq+1 {
			break
		}
		seq++
		if err := fn(seq, body); err != nil {
			return seq - 1, err
		}
		off += recordHeader + int(n)
	}
	return seq, nil
}

// decodeChanges is the inverse of appendChange over a whole body. Values
// point into body.
func decodeChanges(body []byte, fn func(change)) error {
	for len(body) > 0 {
		op := body[0]
		body = body[1:]
		if op != opPut && op != opDelete {
			return fmt.Errorf("unknown change type %d", op)
		}
		var c change
		var field []byte
		var err error
		if field, body, err = lenPrefixed(body); err != nil {
			return err
		}
		c.bucket = string(field)
		if field, body, err = lenPrefixed(body); err != nil {
			return err
		}
		c.key = string(field)
		if op == opPut {
			if c.value, body, err = lenPrefixed(body); err != nil {
				return err
			}
			if c.value == nil {
				c.value = []byte{}
			}
		}
		fn(c)
	}
	return nil
}

func lenPrefixed(b []byte) (field, rest []byte, err error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)-k) {
		return nil, nil, errors.New("truncated change")
	}
	return b[k : k+int(n) : k+int(n)], b[k+int(n):], nil
}

func fdatasync(f *os.File) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if err != syscall.EINTR {
			return err
		}
	}
}
