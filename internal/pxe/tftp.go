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
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pin/tftp/v3"
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
// an open file, a socket and a goroutine until it ends. A zero field keeps
// its default.
type TFTPLimits struct {
	// MaxTransfers caps the transfers in flight from all clients together.
	MaxTransfers int
	// MaxPerClient caps the transfers in flight from one IP address, so that
	// one host cannot take every slot.
	MaxPerClient int
	// Lifetime is how long a transfer may run; one still running after it is
	// ended at its next block.
	Lifetime time.Duration
	// Timeout is how long the server waits for the acknowledgement of each
	// packet before it sends the packet again, and Retries how many times it
	// sends it again before it gives the transfer up: a client that stops
	// acknowledging loses its transfer after (Retries+1)×Timeout.
	Timeout time.Duration
	Retries int
}

// The defaults. A PXE ROM fetches one file at a time (EDK2 asks for the size
// first, in a transfer of its own), and what is served over TFTP is iPXE, a
// few hundred KiB that take about a second on a LAN; everything larger goes
// over HTTP.
const (
	// 256 transfers in flight is a whole rack booting at once, each node
	// with a stale transfer or two still timing out; dnsmasq allows 50.
	tftpDefaultMaxTransfers = 256
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
	// request that is never acknowledged holds its slot for 5 s, not the 30
	// of pin's defaults (5 s, 5 retries). On a LAN an ACK comes back within
	// milliseconds. pin ignores a client's repeated ACK, so a lost DATA is
	// only ever recovered by our own resend, and a shorter timeout recovers
	// it sooner. A client silent for 5 s has lost the link or given up; the
	// ROMs then start the download again themselves (EDK2 resends every 4 s,
	// 6 times; iPXE backs off from 0.25 s to 10 s). tftpd-hpa's default
	// timeout is 1 s as well.
	tftpDefaultTimeout = time.Second
	tftpDefaultRetries = 4
	// tftpReadBuffer is how much of a file a transfer reads at once.
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

// SetBlockSize caps the negotiated blksize (RFC 2348); default 1468.
// pin/tftp silently ignores caps outside 513..65464, so n is clamped into that
// range: a cap of 512 or less cannot be enforced and becomes 513.
// It takes effect for the next Serve.
func (t *TFTP) SetBlockSize(n int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.blksize = min(max(n, 513), 65464)
}

// Serve answers requests on conn until ctx is cancelled, then shuts down and returns nil.
// Errors other than shutdown are returned. Serve takes ownership of conn and closes it.
func (t *TFTP) Serve(ctx context.Context, conn net.PacketConn) error {
	t.mu.Lock()
	blksize, lim := t.blksize, t.limits
	t.mu.Unlock()
	slots := &tftpSlots{max: lim.MaxTransfers, perClient: lim.MaxPerClient}
	read := func(name string, rf io.ReaderFrom) error {
		return t.read(ctx, slots, lim.Lifetime, name, rf)
	}
	// The write handler never accepts data. It exists so refused writes are
	// logged and counted: with a nil handler pin/tftp still sends an ERROR
	// packet, but we would never hear of the attempt.
	srv := tftp.NewServer(read, t.write)
	srv.SetBlockSize(blksize)
	srv.SetTimeout(lim.Timeout)
	srv.SetRetries(lim.Retries)
	// pin sleeps up to a second more before each resend by default; the
	// timeout already spaces resends, and without the sleep an
	// unacknowledged transfer ends after exactly (Retries+1)×Timeout.
	srv.SetBackoff(func(int) time.Duration { return 0 })
	srv.SetHook(tftpHook{t.quiet})
	// pin/tftp's MTU clamp reads the interface from IP_PKTINFO, which it
	// enables only inside Serve; a request queued before that (a client
	// retrying while we start) has no interface and is silently cut to
	// 512-byte blocks. Our cap alone is predictable, and its default fits a
	// 1500-byte MTU.
	srv.SetBlockSizeNegotiation(false)
	// pin/tftp's Serve returns early only for setup errors: read errors on
	// conn are swallowed and the loop runs until Shutdown.
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(conn) }()
	var err error
	select {
	case err = <-errc:
	case <-ctx.Done():
	}
	// Shutdown waits for transfers in flight. With ctx done, each ends at
	// its next block (tftpReader), so the wait is bounded by one block's
	// retries, not by the slowest client's whole file.
	srv.Shutdown()
	if err == nil {
		err = <-errc
	}
	// Shutdown only closes conn if pin's Serve got far enough to record it.
	conn.Close()
	return err
}

// read serves one read request. pin has already given it a socket and a
// goroutine; the caps decide before anything else is spent on it, and a
// refusal (an error returned here) goes to the client as an ERROR packet.
func (t *TFTP) read(ctx context.Context, slots *tftpSlots, lifetime time.Duration, name string, rf io.ReaderFrom) error {
	start := time.Now()
	remote := tftpRemote(rf)
	ip, _ := netip.AddrFromSlice(remote.IP)
	ip = ip.Unmap()
	if reason, err := slots.take(ip); err != nil {
		t.record(remote, name, 0, 0, tftpBusy, reason, err)
		return err
	}
	defer slots.give(ip)
	f, size, result, err := t.open(name)
	reason := result
	var n int64
	if err == nil {
		// Setting tsize explicitly keeps it right although the reader we
		// hand over is not the file, and so not a Seeker pin could size.
		if ot, ok := rf.(tftp.OutgoingTransfer); ok {
			ot.SetSize(size)
		}
		// pin reads one block per DATA packet; unbuffered, that is a read(2)
		// for every sendto(2) and recvfrom(2), a third of the syscalls of a
		// lockstep transfer. The buffer reads the file 64 KiB at a time (44
		// blocks of 1468 bytes, 128 of 512), and bounds what a transfer holds:
		// 16 MiB for the 256 transfers MaxTransfers allows by default.
		buf := bufio.NewReaderSize(f, tftpReadBuffer)
		n, err = rf.ReadFrom(&tftpReader{f: buf, ctx: ctx, deadline: start.Add(lifetime), lifetime: lifetime})
		f.Close()
		result, reason = tftpOK, ""
		var cut *tftpCutError
		var nerr net.Error
		switch {
		case err == nil:
		case n == 0 && strings.Contains(err.Error(), "code=8"):
			result, err = tftpProbe, nil
		case errors.As(err, &cut):
			result, reason = tftpError, cut.reason
		case errors.As(err, &nerr) && nerr.Timeout():
			// The client stopped acknowledging: pin gave up after its retries.
			result, reason = tftpError, "timeout"
		case strings.Contains(err.Error(), "code="):
			// The client ended the transfer with an ERROR packet.
			result, reason = tftpError, "aborted"
		default:
			result, reason = tftpError, "error"
		}
	}
	t.record(remote, name, n, time.Since(start), result, reason, err)
	return err
}

func (t *TFTP) write(name string, wt io.WriterTo) error {
	err := errors.New("access violation: read-only server, writes are refused")
	t.record(tftpRemote(wt), name, 0, 0, tftpRefused, tftpRefused, err)
	return err
}

func tftpRemote(xfer any) net.UDPAddr {
	if ra, ok := xfer.(interface{ RemoteAddr() net.UDPAddr }); ok {
		return ra.RemoteAddr()
	}
	return net.UDPAddr{}
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

// tftpReader hands the file to pin and ends the transfer, at its next block,
// once it has run for its lifetime or the server is shutting down. pin has
// no bound on a whole transfer: its timeout is per packet, so a client that
// acknowledges each block just inside it could hold the transfer, its file
// and its slot for as long as the file lasts.
type tftpReader struct {
	f        io.Reader
	ctx      context.Context
	deadline time.Time
	lifetime time.Duration
}

func (r *tftpReader) Read(p []byte) (int, error) {
	if r.ctx.Err() != nil {
		return 0, &tftpCutError{reason: "shutdown", msg: "server shutting down"}
	}
	if time.Now().After(r.deadline) {
		return 0, &tftpCutError{reason: "too_slow", msg: fmt.Sprintf("transfer not finished within %v", r.lifetime)}
	}
	return r.f.Read(p)
}

// tftpCutError is a transfer we ended; msg goes to the client.
type tftpCutError struct{ reason, msg string }

func (e *tftpCutError) Error() string { return e.msg }

// tftpHook hears from pin about datagrams that never became a transfer:
// malformed ones, and ones that are not requests, sent to the server port.
// pin drops them without a word, and would not name their sender either.
type tftpHook struct{ quiet *quietLog }

func (tftpHook) OnSuccess(tftp.TransferStats) {}

func (h tftpHook) OnFailure(stats tftp.TransferStats, err error) {
	if stats.RemoteAddr != nil {
		// A transfer: read and write have recorded it.
		return
	}
	// pin's own parse errors are plain strings. A *net.OpError is a socket
	// for a new transfer it could not open (out of descriptors, say), and
	// "reading UDP" a failed read on conn, when pin could not enable
	// IP_PKTINFO on it: both are ours, not the sender's.
	var op *net.OpError
	if errors.As(err, &op) || strings.HasPrefix(err.Error(), "reading UDP") {
		h.quiet.Warn("error", "tftp request dropped", "err", err)
		return
	}
	h.quiet.Warn("malformed", "tftp packet dropped", "err", err)
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
func (t *TFTP) record(remote net.UDPAddr, name string, n int64, d time.Duration, result, reason string, err error) {
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
