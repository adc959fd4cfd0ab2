package pxe

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Transfer results, used as the "result" label and in logs.
const (
	tftpOK       = "ok"
	tftpNotFound = "not_found"
	tftpRefused  = "refused"
	tftpError    = "error"
	// tftpProbe is a client that read the size from the OACK and stopped
	// (TFTP error 8), as EDK2 does before every real download.
	tftpProbe = "size_probe"
	// tftpBusy is a request refused because a TFTPLimits cap was full.
	tftpBusy = "busy"
)

// TFTPLimits bounds what clients can make the TFTP server hold. Anyone on the
// provisioning network can send read requests, and each admitted one holds
// an open file, a socket, a goroutine and, while it waits for an ACK, an
// OS thread, until it ends. A zero field keeps its default.
type TFTPLimits struct {
	// MaxTransfers caps the transfers in flight from all clients together.
	MaxTransfers int
	// MaxPerClient caps the transfers in flight from one IP address, so that
	// one host cannot take every slot.
	MaxPerClient int
	// Lifetime is how long a transfer may run; one still running after it is
	// ended at its next block, or when its wait for an ACK reaches it.
	Lifetime time.Duration
	// Timeout is how long the server waits for the acknowledgement of each
	// packet before it sends the packet again, and Retries how many times it
	// sends it again before it gives the transfer up: a client that stops
	// acknowledging loses its transfer after (Retries+1)×Timeout. A client
	// may ask for another timeout (RFC 2349), up to 255 s; the lifetime
	// still bounds the whole transfer.
	Timeout time.Duration
	Retries int
}

// The defaults. A PXE ROM fetches one file at a time (EDK2 asks for the size
// first, in a transfer of its own), and what is served over TFTP is iPXE, a
// few hundred KiB that take about a second on a LAN; everything larger goes
// over HTTP.
const (
	// 1024 transfers in flight: a rack powered on at once asks within a
	// second or two, and each transfer lasts about a second, so the
	// transfers in flight are about the nodes booting. At 256, a 500-node
	// boot storm had 151-167 nodes refused "busy" (docs/benchmarks.md),
	// and a PXE ROM refused its boot file does not retry: it moves on to
	// the next boot device. dnsmasq allows 50. It is also how many OS
	// threads waiting transfers may hold (tftpConn), well inside Go's
	// limit of 10,000.
	tftpDefaultMaxTransfers = 1024
	// 8 leaves room for a client's own retried requests (each is a new
	// transfer here while the one it replaces times out) without letting
	// one address take more than 1/32 of the slots.
	tftpDefaultMaxPerClient = 8
	// ipxe.efi (850 KiB) is 1,700 blocks at the smallest blksize, under 2 s
	// at 1 ms a block. Two minutes leaves room for slow firmware and lost
	// packets, and still ends a transfer a client keeps alive by
	// acknowledging each block just inside the timeout.
	tftpDefaultLifetime = 2 * time.Minute
	// A block unacknowledged after 5 sends 1 s apart ends the transfer, so a
	// request that is never acknowledged holds its slot for 5 s. On a LAN an
	// ACK comes back within milliseconds. A client's repeated ACK is
	// ignored (tftpTransfer), so a lost DATA is only ever recovered by our
	// own resend, and a shorter timeout recovers it sooner. A client silent
	// for 5 s has lost the link or given up; the ROMs then start the
	// download again themselves (EDK2 resends every 4 s, 6 times; iPXE
	// backs off from 0.25 s to 10 s). tftpd-hpa's default timeout is 1 s
	// as well.
	tftpDefaultTimeout = time.Second
	tftpDefaultRetries = 4
	// tftpReadBuffer is how much of a file a transfer reads at once, and
	// the most a window (RFC 7440) may hold. A transfer holds this, its
	// window and one block read ahead: about 130 KiB at the default
	// blksize cap (130 MiB for the 1024 transfers MaxTransfers allows), at
	// most 192 KiB at blksize 65464.
	tftpReadBuffer = 64 << 10
)

func (l TFTPLimits) withDefaults() TFTPLimits {
	if l.MaxTransfers <= 0 {
		l.MaxTransfers = tftpDefaultMaxTransfers
	}
	if l.MaxPerClient <= 0 {
		l.MaxPerClient = tftpDefaultMaxPerClient
	}
	if l.Lifetime <= 0 {
		l.Lifetime = tftpDefaultLifetime
	}
	if l.Timeout <= 0 {
		l.Timeout = tftpDefaultTimeout
	}
	if l.Retries <= 0 {
		l.Retries = tftpDefaultRetries
	}
	return l
}

// TFTP serves the netboot directory read-only over TFTP.
type TFTP struct {
	dir       string
	log       *slog.Logger
	quiet     *quietLog
	transfers *prometheus.CounterVec
	bytes     prometheus.Counter

	mu      sync.Mutex
	blksize int
	limits  TFTPLimits
}

// NewTFTP serves files under dir. It refuses anything that would leave dir.
// reg may be nil; when set, metrics are registered on it.
func NewTFTP(dir string, log *slog.Logger, reg prometheus.Registerer) (*TFTP, error) {
	// Fail at startup rather than on the first PXE request if dir is unusable.
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("tftp root: %w", err)
	}
	root.Close()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := &TFTP{
		dir: dir,
		log: log,
		transfers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bootstrapd_tftp_transfers_total",
			Help: "TFTP transfers by result.",
		}, []string{"result"}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bootstrapd_tftp_bytes_total",
			Help: "Bytes of file data sent over TFTP.",
		}),
		blksize: 1468, // 1500-byte MTU minus IP, UDP and TFTP headers
		limits:  TFTPLimits{}.withDefaults(),
	}
	// Pre-create every label so dashboards see zeros instead of missing series.
	for _, r := range []string{tftpOK, tftpNotFound, tftpRefused, tftpError, tftpProbe, tftpBusy} {
		t.transfers.WithLabelValues(r)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{t.transfers, t.bytes} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("tftp metrics: %w", err)
			}
		}
	}
	t.quiet = newQuietLog(log, "tftp", reg)
	return t, nil
}

// SetLimits replaces the caps and timeouts; zero fields keep the defaults.
// It takes effect for the next Serve.
func (t *TFTP) SetLimits(l TFTPLimits) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.limits = l.withDefaults()
}

// SetBlockSize caps the negotiated blksize (RFC 2348); default 1468. n is
// clamped into 512..65464: below 512 a client that asks for nothing would
// still get 512-byte blocks (RFC 1350), and 65464 is RFC 2348's maximum.
// A client asking for more than the cap gets the cap in the OACK. It takes
// effect for the next Serve.
func (t *TFTP) SetBlockSize(n int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.blksize = min(max(n, 512), tftpMaxBlksize)
}

// tftpServer is one Serve's settings and state.
type tftpServer struct {
	*TFTP
	ctx     context.Context
	blksize int
	limits  TFTPLimits
	slots   *tftpSlots
	wg      sync.WaitGroup
}

// Serve answers requests on conn, which must be an IPv4 UDP socket, until ctx
// is cancelled, then ends the transfers in flight (each at its next packet)
// and returns nil. Serve takes ownership of conn and closes it.
func (t *TFTP) Serve(ctx context.Context, conn net.PacketConn) error {
	defer conn.Close()
	uc, ok := conn.(*net.UDPConn)
	if !ok {
		return fmt.Errorf("tftp: need a UDP socket, not %T", conn)
	}
	bound := uc.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
	if !bound.Is4() {
		return fmt.Errorf("tftp: %v is not an IPv4 address", bound)
	}
	if err := tftpListen(uc); err != nil {
		return fmt.Errorf("tftp: IP_PKTINFO: %w", err)
	}
	t.mu.Lock()
	s := &tftpServer{TFTP: t, ctx: ctx, blksize: t.blksize, limits: t.limits}
	t.mu.Unlock()
	s.slots = &tftpSlots{max: s.limits.MaxTransfers, perClient: s.limits.MaxPerClient}
	// Closing conn is what ends the read below.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	// Transfers end at their next packet once ctx is done (tftpConn.wake).
	defer s.wg.Wait()
	buf := make([]byte, tftpMaxRequest)
	oob := make([]byte, syscall.CmsgSpace(syscall.SizeofInet4Pktinfo))
	for {
		n, oobn, flags, from, err := uc.ReadMsgUDPAddrPort(buf, oob)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			// Nothing a client sends makes a read on an unconnected UDP
			// socket fail; whatever did is ours, and may repeat.
			t.quiet.Warn("error", "tftp read failed", "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		if flags&syscall.MSG_TRUNC != 0 {
			t.quiet.Warn("malformed", "tftp packet dropped", "remote", from, "err", fmt.Errorf("over %d bytes", tftpMaxRequest))
			continue
		}
		s.request(buf[:n], tftpLocalAddr(oob[:oobn], bound), from)
	}
}

// request handles one datagram sent to the server port. Whatever can be
// decided at once (a malformed packet, a write, a full cap) is decided
// here, before a goroutine or a file is spent on it; an admitted read
// goes on in its own goroutine.
func (s *tftpServer) request(pkt []byte, local netip.Addr, from netip.AddrPort) {
	req, err := parseTFTPRequest(pkt)
	if err == nil && (from.Port() == 0 || from.Addr().IsMulticast() || from.Addr().IsUnspecified() || from.Addr() == netip.AddrFrom4([4]byte{255, 255, 255, 255})) {
		// A forged source no client can have: answering it would send
		// the file to a group, or nowhere. (The kernel itself refuses to
		// connect a transfer to a subnet's broadcast address.)
		err = fmt.Errorf("source address %v", from)
	}
	if err != nil {
		// Not answered: a reply would only tell a scanner, or someone
		// spoofing a victim's address, that we are here.
		s.quiet.Warn("malformed", "tftp packet dropped", "remote", from, "err", err)
		return
	}
	remote := net.UDPAddrFromAddrPort(from)
	if req.op == tftpOpWRQ {
		err := errors.New("access violation: read-only server, writes are refused")
		s.record(remote, req.name, 0, 0, tftpRefused, tftpRefused, err)
		s.refuse(local, from, tftpErrAccess, err)
		return
	}
	if !req.octet() && !req.netascii() {
		// tftpd-hpa refuses other modes too ("mail" is obsolete).
		err := fmt.Errorf("unknown transfer mode %q", req.mode)
		s.refuse(local, from, tftpErrIllegalOp, err)
		s.quiet.Warn("malformed", "tftp request refused", "remote", from, "file", req.name, "err", err)
		return
	}
	if reason, err := s.slots.take(from.Addr()); err != nil {
		s.record(remote, req.name, 0, 0, tftpBusy, reason, err)
		s.refuse(local, from, tftpErrUndefined, err)
		return
	}
	s.wg.Go(func() {
		// The slot is free again before the client can hear that the
		// transfer ended: a client that asks again at once (one refused
		// name after another, say) must not find its own finished
		// transfers still counted against it.
		release := sync.OnceFunc(func() { s.slots.give(from.Addr()) })
		defer release()
		s.read(req, local, from, release)
	})
}

// refuse sends a request's only packet, an ERROR, from a socket of its own
// as every reply to a request comes (RFC 1350: the server answers from a
// new port, its transfer ID).
func (s *tftpServer) refuse(local netip.Addr, to netip.AddrPort, code uint16, err error) {
	c, derr := dialTFTP(local, to, 0)
	if derr != nil {
		s.quiet.Warn("error", "tftp reply not sent", "remote", to, "err", derr)
		return
	}
	c.send(tftpErrorPacket(code, err.Error()))
	c.close()
}

// read serves one admitted read request, from opening the file to the
// client's last ACK, and records the result. A transfer that ends with an
// ERROR to the client records and calls release first.
func (s *tftpServer) read(req tftpRequest, local netip.Addr, from netip.AddrPort, release func()) {
	start := time.Now()
	remote := net.UDPAddrFromAddrPort(from)
	conn, err := dialTFTP(local, from, s.limits.Timeout)
	if err != nil {
		s.record(remote, req.name, 0, time.Since(start), tftpError, "error", err)
		return
	}
	defer conn.close()
	f, size, result, err := s.open(req.name)
	if err != nil {
		code := uint16(tftpErrUndefined)
		switch result {
		case tftpNotFound:
			code = tftpErrNotFound
		case tftpRefused:
			code = tftpErrAccess
		}
		s.record(remote, req.name, 0, time.Since(start), result, result, err)
		release()
		conn.send(tftpErrorPacket(code, err.Error()))
		return
	}
	defer f.Close()
	// The file is read 64 KiB at a time (44 blocks of 1468 bytes, 128 of
	// 512), not with a read(2) for every DATA packet.
	buf := bufio.NewReaderSize(f, tftpReadBuffer)
	var src io.Reader = buf
	if req.netascii() {
		// The size after conversion is not known without reading it all,
		// so tsize is not offered.
		src, size = newTFTPNetascii(buf), -1
	}
	p, opts := tftpNegotiate(req.opts, s.blksize, s.limits.Timeout, size)
	var oack []byte
	if len(opts) > 0 {
		oack = tftpOACK(opts)
	}
	x := newTFTPTransfer(s.ctx, conn, src, p, s.limits.Retries, start, s.limits.Lifetime)
	x.thread = s.slots.inFlight() <= runtime.GOMAXPROCS(0)
	stop := context.AfterFunc(s.ctx, conn.wake)
	err = x.run(oack)
	stop()

	result, reason := tftpOK, ""
	var cut *tftpCutError
	var gone *tftpClientError
	var gaveUp *tftpGaveUp
	var last []byte // the ERROR that tells the client why, if it is not why
	switch {
	case err == nil:
	case errors.As(err, &gone) && gone.code == tftpErrOptions && x.sent == 0:
		// EDK2's size probe: it read tsize from the OACK and stopped.
		result, err = tftpProbe, nil
	case errors.As(err, &gone):
		result, reason = tftpError, "aborted"
	case errors.As(err, &cut):
		result, reason = tftpError, cut.reason
		last = tftpErrorPacket(tftpErrUndefined, cut.msg)
	case errors.As(err, &gaveUp):
		result, reason = tftpError, "timeout"
		last = tftpErrorPacket(tftpErrUndefined, err.Error())
	default:
		result, reason = tftpError, "error"
		last = tftpErrorPacket(tftpErrUndefined, "server error")
	}
	s.record(remote, req.name, x.bytes, time.Since(start), result, reason, err)
	if last != nil {
		release()
		conn.send(last)
	}
}

// tftpSlots admits transfers up to the caps. A request over a cap is refused
// at once, never queued: a queue would hold the very sockets and goroutines
// the caps are there to bound, and PXE clients retry by themselves.
type tftpSlots struct {
	max, perClient int

	mu     sync.Mutex
	n      int
	client map[netip.Addr]int
}

// take claims a slot for ip, or says why there is none: the quietLog reason
// and the error for the client's ERROR packet.
func (s *tftpSlots) take(ip netip.Addr) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n >= s.max {
		return "busy", errors.New("server busy: too many transfers, try again later")
	}
	if s.client[ip] >= s.perClient {
		return "busy_client", fmt.Errorf("server busy: too many transfers from %v, try again later", ip)
	}
	if s.client == nil {
		s.client = make(map[netip.Addr]int)
	}
	s.n++
	s.client[ip]++
	return "", nil
}

// inFlight is how many transfers hold a slot.
func (s *tftpSlots) inFlight() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

func (s *tftpSlots) give(ip netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n--
	// Deleting at zero keeps the map as small as the transfers in flight,
	// however many addresses have been seen.
	if s.client[ip]--; s.client[ip] <= 0 {
		delete(s.client, ip)
	}
}

// open returns the file to send and a result label when it must not be sent.
// The error text goes to the client in the TFTP ERROR packet.
func (t *TFTP) open(name string) (*os.File, int64, string, error) {
	switch {
	case name == "":
		return nil, 0, tftpRefused, errors.New("access violation: empty file name")
	case strings.ContainsRune(name, 0):
		// The wire format already splits names at NUL; this guards callers
		// that reach the handler some other way.
		return nil, 0, tftpRefused, errors.New("access violation: file name contains NUL")
	}
	// Firmware and DHCP boot-file settings often say "/undionly.kpxe", and
	// tftpd-hpa -s reads that relative to its root, so we drop one leading
	// slash. Only one: "//etc/passwd" stays absolute and os.Root refuses it.
	// This cannot widen access: the root still resolves "..", and symlinks.
	rel := strings.TrimPrefix(name, "/")
	// Opening the root per request, not once, means a netboot directory
	// replaced by rename (a fresh import) is picked up without a restart.
	root, err := os.OpenRoot(t.dir)
	if err != nil {
		return nil, 0, tftpError, fmt.Errorf("%s: server error: %v", name, tftpReason(err))
	}
	defer root.Close()
	// Stat before opening: opening is itself an action on a device (a tape
	// rewinds, a tty may become ours) or a FIFO (its writer sees a reader),
	// so only a regular file is ever opened.
	fi, err := root.Stat(rel)
	if err == nil {
		err = tftpRegular(fi)
	}
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, tftpNotFound, fmt.Errorf("%s: file not found", name)
	}
	if err != nil {
		return nil, 0, tftpRefused, fmt.Errorf("access violation: %s: %v", name, tftpReason(err))
	}
	// The name can be swapped for something else between Stat and open by
	// someone who can write to the directory. O_NONBLOCK then keeps a FIFO
	// from hanging the handler (and with it Shutdown) in open, O_NOCTTY keeps
	// a terminal from becoming ours, and the check on the open file refuses
	// them; for a regular file these flags change nothing.
	f, err := root.OpenFile(rel, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, tftpNotFound, fmt.Errorf("%s: file not found", name)
	}
	if err != nil {
		return nil, 0, tftpRefused, fmt.Errorf("access violation: %s: %v", name, tftpReason(err))
	}
	if fi, err = f.Stat(); err == nil {
		err = tftpRegular(fi)
	}
	if err != nil {
		f.Close()
		return nil, 0, tftpRefused, fmt.Errorf("access violation: %s: %v", name, err)
	}
	return f, fi.Size(), "", nil
}

func tftpRegular(fi fs.FileInfo) error {
	switch {
	case fi.IsDir():
		return errors.New("is a directory")
	case !fi.Mode().IsRegular():
		return errors.New("not a regular file")
	}
	return nil
}

// tftpReason drops the path and syscall name from err: the client should learn
// why, not where our netboot directory lives.
func tftpReason(err error) error {
	if pe, ok := err.(*fs.PathError); ok {
		return pe.Err
	}
	return err
}

// record counts a transfer and logs it. Failures go through quietLog under
// reason: whoever is on the network decides how many there are, so they
// are all counted but only a few reach the log. A transfer cut short by our
// own shutdown is not the client's doing and is logged as it is.
func (t *TFTP) record(remote *net.UDPAddr, name string, n int64, d time.Duration, result, reason string, err error) {
	t.transfers.WithLabelValues(result).Inc()
	t.bytes.Add(float64(n))
	attrs := []any{"remote", remote.String(), "file", name, "bytes", n, "duration", d, "result", result}
	switch {
	case err == nil:
		t.log.Info("tftp transfer", attrs...)
	case reason == "shutdown":
		t.log.Info("tftp transfer", append(attrs, "err", err)...)
	default:
		t.quiet.Warn(reason, "tftp transfer", append(attrs, "err", err)...)
	}
}
