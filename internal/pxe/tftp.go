package pxe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
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
)

// TFTP serves the netboot directory read-only over TFTP.
type TFTP struct {
	dir       string
	log       *slog.Logger
	transfers *prometheus.CounterVec
	bytes     prometheus.Counter

	mu      sync.Mutex
	blksize int
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
	}
	// Pre-create every label so dashboards see zeros instead of missing series.
	for _, r := range []string{tftpOK, tftpNotFound, tftpRefused, tftpError, tftpProbe} {
		t.transfers.WithLabelValues(r)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{t.transfers, t.bytes} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("tftp metrics: %w", err)
			}
		}
	}
	return t, nil
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
	// The write handler never accepts data. It exists so refused writes are
	// logged and counted: with a nil handler pin/tftp still sends an ERROR
	// packet, but we would never hear of the attempt.
	srv := tftp.NewServer(t.read, t.write)
	t.mu.Lock()
	srv.SetBlockSize(t.blksize)
	t.mu.Unlock()
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
	// Shutdown waits for transfers in flight, bounded by pin's retry timeouts.
	srv.Shutdown()
	if err == nil {
		err = <-errc
	}
	// Shutdown only closes conn if pin's Serve got far enough to record it.
	conn.Close()
	return err
}

func (t *TFTP) read(name string, rf io.ReaderFrom) error {
	start := time.Now()
	f, size, result, err := t.open(name)
	var n int64
	if err == nil {
		// os.File is a Seeker so pin would find the size itself; setting it
		// explicitly keeps tsize right whatever reader we hand over.
		if ot, ok := rf.(tftp.OutgoingTransfer); ok {
			ot.SetSize(size)
		}
		n, err = rf.ReadFrom(f)
		f.Close()
		switch {
		case err == nil:
			result = tftpOK
		case n == 0 && strings.Contains(err.Error(), "code=8"):
			result, err = tftpProbe, nil
		default:
			result = tftpError
		}
	}
	t.record(rf, name, n, time.Since(start), result, err)
	return err
}

func (t *TFTP) write(name string, wt io.WriterTo) error {
	err := errors.New("access violation: read-only server, writes are refused")
	t.record(wt, name, 0, 0, tftpRefused, err)
	return err
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
	// O_NONBLOCK so a FIFO in the directory cannot hang the handler (and with
	// it Shutdown) in open; it changes nothing for regular files.
	f, err := root.OpenFile(rel, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, tftpNotFound, fmt.Errorf("%s: file not found", name)
	}
	if err != nil {
		return nil, 0, tftpRefused, fmt.Errorf("access violation: %s: %v", name, tftpReason(err))
	}
	fi, err := f.Stat()
	switch {
	case err != nil:
	case fi.IsDir():
		err = errors.New("is a directory")
	case !fi.Mode().IsRegular():
		err = errors.New("not a regular file")
	}
	if err != nil {
		f.Close()
		return nil, 0, tftpRefused, fmt.Errorf("access violation: %s: %v", name, err)
	}
	return f, fi.Size(), "", nil
}

// tftpReason drops the path and syscall name from err: the client should learn
// why, not where our netboot directory lives.
func tftpReason(err error) error {
	if pe, ok := err.(*fs.PathError); ok {
		return pe.Err
	}
	return err
}

func (t *TFTP) record(xfer any, name string, n int64, d time.Duration, result string, err error) {
	t.transfers.WithLabelValues(result).Inc()
	t.bytes.Add(float64(n))
	var remote net.UDPAddr
	if ra, ok := xfer.(interface{ RemoteAddr() net.UDPAddr }); ok {
		remote = ra.RemoteAddr()
	}
	attrs := []any{"remote", remote.String(), "file", name, "bytes", n, "duration", d, "result", result}
	if err != nil {
		t.log.Warn("tftp transfer", append(attrs, "err", err)...)
		return
	}
	t.log.Info("tftp transfer", attrs...)
}
