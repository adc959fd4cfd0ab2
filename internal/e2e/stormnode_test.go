package e2e

import (
	"bufio"
	"context"
	binenc "encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/mdlayher/packet"
	"github.com/pin/tftp/v3"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/bootstrapd/bootstrapd/internal/netlab"
)

// A storm node does, over the wire, what a BIOS machine's PXE ROM and then
// iPXE do from power-on to a finished install: the steps below, in order.
// It is no firmware (QEMU under TCG could not boot 500 machines here); each
// step sends what the real client sends (DHCP options 93, 60, 77 and 175,
// TFTP blksize 1432 and tsize as iPXE asks, iPXE's chain URL) and checks
// what comes back.
type stormStep int

const (
	stepDHCPPXE    stormStep = iota // DORA as the PXE ROM: option 93 (BIOS), 60 PXEClient
	stepTFTP                        // the boot file the offer names, over TFTP
	stepDHCPIPXE                    // DORA again as iPXE: user class "iPXE", option 175
	stepBootScript                  // GET the URL iPXE's offer names (/boot.ipxe)
	stepNodeScript                  // GET the URL boot.ipxe chains to (the install script)
	stepInitrd                      // each initrd of the script, in Range requests
	stepKernel                      // the kernel
	stepCallbacks                   // the installer's status reports, the last "installed"
	stepWhole                       // all of the above
	numSteps
)

func (s stormStep) String() string {
	return [...]string{"DHCP, PXE ROM", "TFTP boot file", "DHCP, iPXE", "GET /boot.ipxe", "GET node script",
		"initrd, Range requests", "kernel", "status callbacks", "whole boot"}[s]
}

// stormRangeChunk is how much of the initrd one Range request asks for.
const stormRangeChunk = 16 << 20

// stormNode is one simulated machine: a namespace with one interface whose
// address is the node's reservation, so that every packet it sends comes
// from where the real node's would.
type stormNode struct {
	host *netlab.Host
	mac  net.HardwareAddr
	ip   netip.Addr
	// bootFileSize is the size the TFTP transfer must deliver.
	bootFileSize int64
}

// stormResult is one node's boot: how long each step took, and the first
// step that failed, with why.
type stormResult struct {
	took   [numSteps]time.Duration
	failed stormStep // numSteps when none did
	err    error
	bytes  int64 // file bytes received (TFTP and HTTP)
}

// boot runs every step, stopping at the first that fails.
func (n *stormNode) boot(ctx context.Context) (r stormResult) {
	r.failed = numSteps
	start := time.Now()
	step := func(s stormStep, fn func() error) bool {
		t := time.Now()
		if err := fn(); err != nil {
			r.failed, r.err = s, err
			return false
		}
		r.took[s] = time.Since(t)
		return true
	}
	defer func() {
		if r.failed == numSteps {
			r.took[stepWhole] = time.Since(start)
		}
	}()

	dhcp, err := n.dhcpClient()
	if err != nil {
		r.failed, r.err = stepDHCPPXE, err
		return r
	}
	defer dhcp.Close()
	var pxe, ipxe *dhcpv4.DHCPv4
	if !step(stepDHCPPXE, func() (err error) { pxe, err = n.dora(ctx, dhcp, false); return err }) {
		return r
	}
	if !step(stepTFTP, func() error { return n.tftp(pxe) }) {
		return r
	}
	r.bytes += n.bootFileSize
	if !step(stepDHCPIPXE, func() (err error) { ipxe, err = n.dora(ctx, dhcp, true); return err }) {
		return r
	}
	// Like iPXE, which closes its DHCP socket once configured: with it
	// open, every frame of the downloads below would be copied to it too.
	dhcp.Close()

	var hc *nodeHTTP
	defer func() {
		if hc != nil {
			hc.close()
		}
	}()
	var boot, script string
	if !step(stepBootScript, func() (err error) {
		// The connection is made in the step, as iPXE makes it.
		if hc, err = n.dialHTTP(ctx, ipxe.BootFileName); err == nil {
			boot, err = get(ctx, hc, ipxe.BootFileName, "chain ")
		}
		return err
	}) {
		return r
	}
	var chain string
	if !step(stepNodeScript, func() (err error) {
		if chain, err = chainURL(boot, n.mac); err == nil {
			script, err = get(ctx, hc, chain, "kernel ")
		}
		return err
	}) {
		return r
	}
	is, err := parseInstallScript(script)
	if err != nil {
		r.failed, r.err = stepNodeScript, err
		return r
	}
	if !step(stepInitrd, func() error {
		for _, u := range is.initrds {
			got, err := getRanges(ctx, hc, u)
			r.bytes += got
			if err != nil {
				return err
			}
		}
		return nil
	}) {
		return r
	}
	if !step(stepKernel, func() error {
		got, err := getRanges(ctx, hc, is.kernel)
		r.bytes += got
		return err
	}) {
		return r
	}
	step(stepCallbacks, func() error {
		for _, status := range []string{"partitioning", "installed"} {
			if err := post(ctx, hc, is.report, url.Values{"mac": {n.mac.String()}, "status": {status}}); err != nil {
				return err
			}
		}
		return nil
	})
	return r
}

// dhcpClient opens the node's DHCP socket: a packet socket, as a client
// with no address has, that only takes in replies for this node's MAC.
// Replies to a PXE ROM are broadcast to every node on the segment; without
// the filter each of 500 nodes would copy and parse every other node's
// replies, and the load generator would measure itself.
func (n *stormNode) dhcpClient() (*nclient4.Client, error) {
	var raw *packet.Conn
	err := n.host.Do(func() error {
		ifc, err := net.InterfaceByName(n.host.Iface)
		if err != nil {
			return err
		}
		if raw, err = packet.Listen(ifc, packet.Datagram, unix.ETH_P_IP, nil); err != nil {
			return err
		}
		return raw.SetBPF(dhcpReplyFilter(n.mac))
	})
	if err != nil {
		if raw != nil {
			raw.Close()
		}
		return nil, fmt.Errorf("DHCP socket: %w", err)
	}
	// Firmware retries a DISCOVER after 4 s (PXE spec: 4, 8, 16, 32).
	return nclient4.NewWithConn(nclient4.NewBroadcastUDPConn(raw, &net.UDPAddr{Port: dhcpv4.ClientPort}), n.mac,
		nclient4.WithTimeout(4*time.Second), nclient4.WithRetry(4))
}

// dhcpReplyFilter passes IPv4 UDP datagrams to port 68 whose BOOTP chaddr
// is mac. The socket is SOCK_DGRAM, so offsets start at the IP header.
func dhcpReplyFilter(mac net.HardwareAddr) []bpf.RawInstruction {
	const udp, bootpChaddr = 8, 28 // UDP header; chaddr's offset in BOOTP
	prog := []bpf.Instruction{
		bpf.LoadAbsolute{Off: 9, Size: 1}, // IP protocol
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: unix.IPPROTO_UDP, SkipTrue: 9},
		bpf.LoadAbsolute{Off: 6, Size: 2}, // fragment offset: only first fragments have a UDP header
		bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: 0x1fff, SkipTrue: 7},
		bpf.LoadMemShift{Off: 0}, // X = IP header length
		bpf.LoadIndirect{Off: 2, Size: 2},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: dhcpv4.ClientPort, SkipTrue: 4},
		bpf.LoadIndirect{Off: udp + bootpChaddr, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: binenc.BigEndian.Uint32(mac[:4]), SkipTrue: 2},
		bpf.LoadIndirect{Off: udp + bootpChaddr + 4, Size: 2},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(binenc.BigEndian.Uint16(mac[4:6])), SkipTrue: 1},
		bpf.RetConstant{Val: 0},
		bpf.RetConstant{Val: 1 << 16},
	}
	raw, err := bpf.Assemble(prog)
	if err != nil {
		panic(err) // a fixed program: only a typo above fails here
	}
	return raw
}

// dora does one DISCOVER-OFFER-REQUEST-ACK as the PXE ROM (asIPXE false)
// or as iPXE, and checks the ACK: the node's reserved address, and the
// boot file that client must be sent.
func (n *stormNode) dora(ctx context.Context, c *nclient4.Client, asIPXE bool) (*dhcpv4.DHCPv4, error) {
	mods := []dhcpv4.Modifier{
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.INTEL_X86PC)),
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001")),
	}
	if !asIPXE {
		// PXE ROMs ask for broadcast replies; iPXE leaves the flag clear
		// and is answered at its MAC.
		mods = append(mods, dhcpv4.WithBroadcast(true))
	} else {
		// iPXE's user class is the bare string (not RFC 3004's format),
		// and option 175 carries its feature flags.
		mods = append(mods,
			dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.OptionUserClassInformation, []byte("iPXE"))),
			dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.GenericOptionCode(175), []byte{0xb1, 0x05, 0x01, 0x80, 0x86, 0x10, 0x0e})))
	}
	lease, err := c.Request(ctx, mods...)
	if err != nil {
		return nil, err
	}
	ack := lease.ACK
	if got, _ := netip.AddrFromSlice(ack.YourIPAddr.To4()); got != n.ip {
		return nil, fmt.Errorf("ACK gives %v, the reservation is %v", ack.YourIPAddr, n.ip)
	}
	switch f := ack.BootFileName; {
	case asIPXE && !strings.HasSuffix(f, "/boot.ipxe"):
		return nil, fmt.Errorf("iPXE was offered %q, not the boot script", f)
	case !asIPXE && f != "undionly.kpxe":
		return nil, fmt.Errorf("the BIOS PXE ROM was offered %q, not undionly.kpxe", f)
	}
	return ack, nil
}

// tftp fetches the offer's boot file from its next server as iPXE's TFTP
// does (blksize 1432, tsize asked) and checks its length.
func (n *stormNode) tftp(offer *dhcpv4.DHCPv4) error {
	c, err := tftp.NewClient(net.JoinHostPort(offer.ServerIPAddr.String(), "69"))
	if err != nil {
		return err
	}
	c.SetBlockSize(1432)
	c.RequestTSize(true)
	c.SetTimeout(time.Second)
	c.SetRetries(5)
	var wt io.WriterTo
	// The client's socket is made in Receive: inside the node's namespace.
	if err := n.host.Do(func() (err error) { wt, err = c.Receive(offer.BootFileName, "octet"); return err }); err != nil {
		return err
	}
	got, err := wt.WriteTo(io.Discard)
	if err != nil {
		return err
	}
	if got != n.bootFileSize {
		return fmt.Errorf("TFTP %s: %d bytes, want %d", offer.BootFileName, got, n.bootFileSize)
	}
	return nil
}

// chainURL is the URL boot.ipxe chains to, with iPXE's ${net0/mac}
// expanded as iPXE would.
func chainURL(bootScript string, mac net.HardwareAddr) (string, error) {
	for _, line := range strings.Split(bootScript, "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[0] == "chain" && f[1] == "--autofree" {
			return strings.ReplaceAll(f[2], "${net0/mac}", mac.String()), nil
		}
	}
	return "", fmt.Errorf("boot.ipxe chains to nothing:\n%s", bootScript)
}

// ipxeInstall is what the storm needs from an install script.
type ipxeInstall struct {
	initrds []string
	kernel  string
	report  string // bootstrapd.report= on the kernel's command line
}

func parseInstallScript(script string) (ipxeInstall, error) {
	var is ipxeInstall
	for _, line := range strings.Split(script, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 4 && f[0] == "initrd" && f[1] == "--name":
			is.initrds = append(is.initrds, f[3])
		case len(f) >= 2 && f[0] == "kernel":
			is.kernel = f[1]
			for _, arg := range f[2:] {
				if v, ok := strings.CutPrefix(arg, "bootstrapd.report="); ok {
					is.report = v
				}
			}
		}
	}
	if is.kernel == "" || is.report == "" || len(is.initrds) == 0 {
		return is, fmt.Errorf("not an install script with a kernel, an initrd and a report URL:\n%s", script)
	}
	return is, nil
}

// nodeHTTP is the node's one HTTP connection, kept alive, as iPXE has.
// It is a client of its own rather than net/http's so that file bodies go
// from the socket to /dev/null by splice, not through a buffer: the load
// generator shares two cores with bootstrapd, and copying the storm's
// 30 GB into its memory cost it as much CPU as bootstrapd spent sending.
// A real node's NIC writes into its own RAM.
type nodeHTTP struct {
	conn net.Conn
	br   *bufio.Reader
	null *os.File
}

// dialHTTP connects to the host of u from the node's address.
func (n *stormNode) dialHTTP(ctx context.Context, u string) (*nodeHTTP, error) {
	pu, err := url.Parse(u)
	if err != nil {
		return nil, err
	}
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	conn, err := n.host.DialFrom(n.ip)(ctx, "tcp4", pu.Host)
	if err != nil {
		null.Close()
		return nil, err
	}
	return &nodeHTTP{conn: conn, br: bufio.NewReader(conn), null: null}, nil
}

func (c *nodeHTTP) close() {
	c.conn.Close()
	c.null.Close()
}

// do sends req and reads the response's head; the caller reads its body
// (all of it: the connection is used again).
func (c *nodeHTTP) do(req *http.Request) (*http.Response, error) {
	c.conn.SetDeadline(time.Now().Add(5 * time.Minute))
	if err := req.Write(c.conn); err != nil {
		return nil, err
	}
	return http.ReadResponse(c.br, req)
}

// discard reads and drops the n bytes of resp's body: what the reader
// buffered with the head, then the rest spliced from the socket.
func (c *nodeHTTP) discard(n int64) (int64, error) {
	got, err := io.CopyN(io.Discard, c.br, min(n, int64(c.br.Buffered())))
	if err != nil {
		return got, err
	}
	rest, err := io.CopyN(c.null, c.conn, n-got) // *os.File.ReadFrom: splice
	return got + rest, err
}

// get fetches a script and checks it holds want.
func get(ctx context.Context, hc *nodeHTTP, u, want string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", err
	}
	resp, err := hc.do(req)
	if err != nil {
		return "", err
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
		return "", fmt.Errorf("GET %s: %s, without %q:\n%s", u, resp.Status, want, body)
	}
	return string(body), nil
}

// getRanges fetches u in Range requests of stormRangeChunk, as a resuming
// downloader does, and checks the pieces add up to the size the first
// Content-Range gave.
func getRanges(ctx context.Context, hc *nodeHTTP, u string) (int64, error) {
	var got, size int64 = 0, -1
	for size < 0 || got < size {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return got, err
		}
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", got, got+stormRangeChunk-1))
		resp, err := hc.do(req)
		if err != nil {
			return got, err
		}
		var total int64
		if resp.StatusCode == http.StatusPartialContent {
			// "bytes first-last/total"
			cr := resp.Header.Get("Content-Range")
			if i := strings.LastIndexByte(cr, '/'); i >= 0 {
				total, _ = strconv.ParseInt(cr[i+1:], 10, 64)
			}
		}
		if resp.StatusCode != http.StatusPartialContent || total <= 0 || resp.ContentLength <= 0 {
			return got, fmt.Errorf("GET %s with Range: %s, Content-Range %q, length %d", u, resp.Status, resp.Header.Get("Content-Range"), resp.ContentLength)
		}
		n, err := hc.discard(resp.ContentLength)
		got += n
		switch {
		case err != nil:
			return got, fmt.Errorf("GET %s at %d: %w", u, got-n, err)
		case size >= 0 && total != size:
			return got, fmt.Errorf("GET %s: the size changed from %d to %d", u, size, total)
		}
		size = total
	}
	return got, nil
}

// post sends an installer's status report.
func post(ctx context.Context, hc *nodeHTTP, u string, form url.Values) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := hc.do(req)
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("status report %q: %s: %s", form.Get("status"), resp.Status, body)
	}
	return nil
}
