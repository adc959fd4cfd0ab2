package pxe

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime"
	"time"
)

// tftpTransfer sends one file to one client (RFC 1350, with RFC 7440's
// window when the client asked for one). Blocks are numbered from 1 in an
// int64 and go on the wire as its low 16 bits, so a file of more than
// 65535 blocks rolls over to block 0, as tftpd-hpa, curl and the PXE ROMs
// expect.
//
// The sender keeps every block of the window that is not yet acknowledged
// (ring): a timeout resends them all from the oldest, and an ACK for a
// block inside the window (the client saw a gap) slides the window from
// there and resends the rest. A repeated ACK for a block already
// acknowledged is ignored, never answered with a resend: answering
// duplicates doubles every later block once one is delayed (the
// "Sorcerer's Apprentice" bug, RFC 1123 4.2.3.1). Lost blocks are
// recovered by our own timeout instead.
type tftpTransfer struct {
	ctx      context.Context
	conn     *tftpConn
	src      io.Reader
	p        tftpParams
	retries  int
	deadline time.Time     // end of the transfer's lifetime
	lifetime time.Duration // for the message when it is reached

	ring  [][]byte // DATA packets of blocks acked+1..built, block k in ring[k%len(ring)]
	acked int64    // the last block acknowledged
	sent  int64    // the last block sent
	built int64    // the last block read: sent, or sent+1 read ahead
	last  int64    // the final (short) block, 0 until it is read
	bytes int64    // file bytes in the blocks sent
	rbuf  []byte

	// thread says whether the transfer keeps its OS thread (run).
	thread  bool
	yielded time.Time // see alive
}

// tftpClientError is an ERROR packet from the client, which ends the
// transfer.
type tftpClientError struct {
	code uint16
	msg  string
}

func (e *tftpClientError) Error() string {
	return fmt.Sprintf("client sent error %d: %s", e.code, e.msg)
}

// tftpCutError is a transfer we ended; msg goes to the client.
type tftpCutError struct{ reason, msg string }

func (e *tftpCutError) Error() string { return e.msg }

// tftpGaveUp is a transfer whose client stopped acknowledging.
type tftpGaveUp struct{ sends int }

func (e *tftpGaveUp) Error() string {
	return fmt.Sprintf("timeout: no acknowledgement after %d sends", e.sends)
}

func newTFTPTransfer(ctx context.Context, conn *tftpConn, src io.Reader, p tftpParams, retries int, start time.Time, lifetime time.Duration) *tftpTransfer {
	x := &tftpTransfer{
		ctx: ctx, conn: conn, src: src, p: p, retries: retries,
		deadline: start.Add(lifetime), lifetime: lifetime,
		// The window and the block read ahead.
		ring: make([][]byte, p.window+1),
		// An ACK is 4 bytes; an ERROR is read far enough to log its text.
		rbuf: make([]byte, 516),
	}
	for i := range x.ring {
		x.ring[i] = make([]byte, 4+p.blksize)
	}
	return x
}

// run sends the OACK, when there is one, and then the file.
func (x *tftpTransfer) run(oack []byte) error {
	if x.thread {
		// A transfer that is one of at most GOMAXPROCS in flight keeps
		// its OS thread. It spends its life in send and recv system
		// calls, one pair per block; left to the scheduler, the goroutine
		// moved between threads whenever the runtime took its P while it
		// waited in recv (3 threads for 2 transfers of 23k blocks each,
		// under perf sched), and each move is a futex wake of another
		// thread between an ACK and the next DATA. Locked, the kernel
		// wakes the one thread that waits, as it wakes tftpd-hpa's
		// process: with two busy loops beside the benchmark, 32 MiB at
		// blksize 512 went from 1.29 of tftpd-hpa to 2.27 (1468: 1.29-1.87
		// either way). With more transfers than Ps, locked threads would
		// hand the Ps to one another through thread switches, and 200
		// concurrent fetches took 20% longer (0.73-0.86 of tftpd-hpa,
		// 0.93-1.00 unlocked); there the goroutines share threads through
		// the run queue. A waiting transfer holds a thread either way,
		// blocked in recv, so MaxTransfers bounds the threads.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
	}
	if err := x.alive(); err != nil {
		return err
	}
	if oack != nil {
		if err := x.negotiate(oack); err != nil {
			return err
		}
	}
	if err := x.fill(); err != nil {
		return err
	}
	until := time.Now().Add(x.p.timeout)
	sends := 1
	for {
		pkt, err := x.await(until)
		if errors.Is(err, errTFTPTimeout) {
			if sends > x.retries {
				return &tftpGaveUp{sends}
			}
			// Resend the whole window from the oldest block not
			// acknowledged: the client may have lost any of it.
			if err := x.alive(); err != nil {
				return err
			}
			if err := x.resend(); err != nil {
				return err
			}
			sends++
			until = time.Now().Add(x.p.timeout)
			continue
		}
		if err != nil {
			return err
		}
		if binary.BigEndian.Uint16(pkt) != tftpOpACK {
			continue
		}
		// Which block of the window the ACK is for; 0 (a repeat of the
		// last one) and anything beyond what was sent are ignored.
		ahead := int64(binary.BigEndian.Uint16(pkt[2:]) - uint16(x.acked))
		if ahead == 0 || ahead > x.sent-x.acked {
			continue
		}
		x.acked += ahead
		if x.acked == x.last {
			return nil
		}
		// Blocks after the one acknowledged that the client did not take
		// (a window it acknowledged early) go again, then new ones.
		if err := x.alive(); err != nil {
			return err
		}
		if err := x.resend(); err != nil {
			return err
		}
		if err := x.fill(); err != nil {
			return err
		}
		until, sends = time.Now().Add(x.p.timeout), 1
	}
}

// negotiate sends the OACK and waits for its acknowledgement, block 0.
func (x *tftpTransfer) negotiate(oack []byte) error {
	for sends := 1; ; sends++ {
		if err := x.alive(); err != nil {
			return err
		}
		if err := x.conn.send(oack); err != nil {
			return err
		}
		until := time.Now().Add(x.p.timeout)
		for {
			pkt, err := x.await(until)
			if errors.Is(err, errTFTPTimeout) {
				if sends > x.retries {
					return &tftpGaveUp{sends}
				}
				break
			}
			if err != nil {
				return err
			}
			if binary.BigEndian.Uint16(pkt) == tftpOpACK && binary.BigEndian.Uint16(pkt[2:]) == 0 {
				return nil
			}
		}
	}
}

// alive says whether the transfer may send more: not once the server is
// shutting down or the transfer has run for its lifetime. It is asked
// before every send, so both end a transfer at its next packet, and a
// client's last ACK, already on its way, still completes it.
func (x *tftpTransfer) alive() error {
	if x.ctx.Err() != nil {
		return &tftpCutError{reason: "shutdown", msg: "server shutting down"}
	}
	now := time.Now()
	if !now.Before(x.deadline) {
		return &tftpCutError{reason: "too_slow", msg: fmt.Sprintf("transfer not finished within %v", x.lifetime)}
	}
	if now.Sub(x.yielded) >= tftpYieldEvery {
		// A goroutine that never passes through the scheduler looks stuck
		// to it after 10 ms: the runtime then takes its P away in the
		// middle of a system call and preempts it, and its monitor
		// thread (sysmon), having found work, goes back to waking every
		// 20 µs, on the CPUs the transfer and its client need. perf sched
		// over two 32 MiB fetches: sysmon ran 144 ms and switched 2,979
		// times without this, 12 ms and 229 times with it. It matters
		// most when the CPUs are busy, since every such wake-up then waits
		// its turn: with two busy loops running beside the benchmark,
		// 32 MiB at blksize 1468 went from 0.38-1.35 of tftpd-hpa to
		// 1.29-1.87 (paired medians of 10-12 fetches taking turns), at
		// 512 from 1.19 to 2.27. Yielding now and then is a trip through
		// the scheduler that finds nothing else to do. A locked thread
		// lets go of its goroutine for it: a locked goroutine's yield is a
		// hand-off to another thread and back, and under load each
		// hand-off waited its turn for a CPU (perf sched: 0.5 ms a time).
		if x.thread {
			runtime.UnlockOSThread()
		}
		runtime.Gosched()
		if x.thread {
			runtime.LockOSThread()
		}
		x.yielded = now
	}
	return nil
}

// tftpYieldEvery is how often a transfer yields: twice in the runtime's
// 10 ms (forcePreemptNS), so its monitor, which looks at most every 10 ms,
// always finds the goroutine has been through the scheduler since.
const tftpYieldEvery = 5 * time.Millisecond

// await returns the next packet from the client that is long enough to be
// an ACK, or errTFTPTimeout once until has passed. An ERROR ends the
// transfer. A wait never outlasts the lifetime, and a shutdown wakes it
// (tftpConn.wake): either ends the transfer unless a packet is waiting.
func (x *tftpTransfer) await(until time.Time) ([]byte, error) {
	for {
		now := time.Now()
		n, err := x.conn.recv(x.rbuf, min(until.Sub(now), x.deadline.Sub(now)))
		if errors.Is(err, errTFTPTimeout) && time.Now().Before(until) || err == nil && n < 4 {
			// Nothing we could act on: the lifetime ran out before the
			// timeout, a wake, a signal, or a packet too short for an ACK.
			if err := x.alive(); err != nil {
				return nil, err
			}
			continue
		}
		if err != nil {
			return nil, err
		}
		pkt := x.rbuf[:n]
		if binary.BigEndian.Uint16(pkt) == tftpOpERROR {
			msg, _, _ := bytes.Cut(pkt[4:], []byte{0})
			return nil, &tftpClientError{code: binary.BigEndian.Uint16(pkt[2:]), msg: string(msg)}
		}
		return pkt, nil
	}
}

// fill sends new blocks until the window is full or the final block is
// out, then reads the block after them: the file is read while the client
// is busy with the packets, not between its ACK and our next DATA, which
// is the time a lockstep transfer goes at (tftpd-hpa reads ahead too).
func (x *tftpTransfer) fill() error {
	for x.sent-x.acked < int64(x.p.window) && (x.last == 0 || x.sent < x.last) {
		if x.built == x.sent {
			if err := x.read(); err != nil {
				return err
			}
		}
		pkt := x.block(x.sent + 1)
		if err := x.conn.send(pkt); err != nil {
			return err
		}
		x.sent++
		x.bytes += int64(len(pkt) - 4)
	}
	if x.built == x.sent && x.last == 0 {
		return x.read()
	}
	return nil
}

// read reads the next block of the file into its slot.
func (x *tftpTransfer) read() error {
	k := x.built + 1
	buf := x.ring[k%int64(len(x.ring))]
	buf = buf[:cap(buf)]
	binary.BigEndian.PutUint16(buf, tftpOpDATA)
	binary.BigEndian.PutUint16(buf[2:], uint16(k))
	n, err := io.ReadFull(x.src, buf[4:])
	switch {
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		// A short block, possibly empty, ends the file.
		x.last = k
	case err != nil:
		return err
	}
	x.ring[k%int64(len(x.ring))] = buf[:4+n]
	x.built = k
	return nil
}

// block is block k's DATA packet; k must be in the ring.
func (x *tftpTransfer) block(k int64) []byte { return x.ring[k%int64(len(x.ring))] }

// resend sends again the blocks sent but not acknowledged.
func (x *tftpTransfer) resend() error {
	for k := x.acked + 1; k <= x.sent; k++ {
		if err := x.conn.send(x.block(k)); err != nil {
			return err
		}
	}
	return nil
}
