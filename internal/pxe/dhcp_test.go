package pxe

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"

	"github.com/bootstrapd/bootstrapd/internal/config"
	"github.com/bootstrapd/bootstrapd/internal/inventory"
	"github.com/bootstrapd/bootstrapd/internal/inventory/inventorytest"
)

var (
	serverIP = netip.MustParseAddr("10.77.0.1")
	enrolled = "52:54:00:00:00:01"
	stranger = "52:54:00:00:00:99"
)

func discardLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// newInventory is a real inventory on a temp store, with one enrolled node.
func newInventory(t testing.TB) *inventory.Inventory {
	t.Helper()
	inv := inventorytest.New(t, discardLog())
	if _, err := inv.Enroll(context.Background(), inventory.EnrollRequest{MAC: enrolled, Hostname: "n1", IP: netip.MustParseAddr("10.77.0.50")}); err != nil {
		t.Fatal(err)
	}
	return inv
}

func newDHCP(t testing.TB, mode string) *DHCP {
	return &DHCP{
		Mode: mode, Leases: newInventory(t), Server: serverIP,
		Subnet: netip.MustParsePrefix("10.77.0.0/24"),
		Router: []netip.Addr{serverIP}, DNS: []netip.Addr{serverIP}, Domain: "lab.test",
		Lease: time.Hour,
		Boot: BootFiles{BIOS: "undionly.kpxe", EFI: "snponly.efi", ARM64: "arm64.efi",
			ScriptURL: "http://10.77.0.1:8080/boot.ipxe", AssetURL: "http://10.77.0.1:8080/assets/"},
		Log: discardLog(),
	}
}

type reqOpt func(*dhcpv4.DHCPv4)

func arch(a iana.Arch) reqOpt {
	return func(m *dhcpv4.DHCPv4) { m.UpdateOption(dhcpv4.OptClientArch(a)) }
}
func vendor(v string) reqOpt {
	return func(m *dhcpv4.DHCPv4) { m.UpdateOption(dhcpv4.OptClassIdentifier(v)) }
}
func ipxeUC(m *dhcpv4.DHCPv4)  { m.UpdateOption(dhcpv4.OptUserClass("iPXE")) }
func opt175(m *dhcpv4.DHCPv4)  { m.UpdateOption(dhcpv4.OptGeneric(optEtherboot, []byte{0xb1, 1, 1})) }
func relayed(m *dhcpv4.DHCPv4) { m.GatewayIPAddr = net.ParseIP("10.77.0.254").To4() }

func discover(t *testing.T, mac string, opts ...reqOpt) *dhcpv4.DHCPv4 {
	hw, _ := net.ParseMAC(mac)
	m, err := dhcpv4.NewDiscovery(hw)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range opts {
		o(m)
	}
	return m
}

func TestDHCPReplies(t *testing.T) {
	pxeBIOS := []reqOpt{arch(iana.INTEL_X86PC), vendor("PXEClient:Arch:00000:UNDI:002001")}
	cases := []struct {
		name     string
		mode     string
		mac      string
		port     int
		opts     []reqOpt
		silent   bool
		yiaddr   string
		file     string
		vendor   string // option 60 in the reply
		dest     string
		hostname string
	}{
		{name: "bios pxe, enrolled", mode: config.ModeReservation, mac: enrolled, opts: pxeBIOS,
			yiaddr: "10.77.0.50", file: "undionly.kpxe", dest: "255.255.255.255:68", hostname: "n1"},
		{name: "efi x64 gets snponly", mode: config.ModeReservation, mac: enrolled,
			opts: []reqOpt{arch(iana.EFI_X86_64), vendor("PXEClient:Arch:00007:UNDI:003016")}, yiaddr: "10.77.0.50", file: "snponly.efi"},
		{name: "efi bc (9) gets snponly", mode: config.ModeReservation, mac: enrolled, opts: []reqOpt{arch(iana.EFI_BC)}, yiaddr: "10.77.0.50", file: "snponly.efi"},
		{name: "efi ia32 (6)", mode: config.ModeReservation, mac: enrolled, opts: []reqOpt{arch(iana.EFI_IA32)}, yiaddr: "10.77.0.50", file: "snponly.efi"},
		{name: "arm64 efi", mode: config.ModeReservation, mac: enrolled, opts: []reqOpt{arch(iana.EFI_ARM64)}, yiaddr: "10.77.0.50", file: "arm64.efi"},
		{name: "uefi http boot", mode: config.ModeReservation, mac: enrolled,
			opts:   []reqOpt{arch(iana.EFI_X86_64_HTTP), vendor("HTTPClient:Arch:00016:UNDI:003001")},
			yiaddr: "10.77.0.50", file: "http://10.77.0.1:8080/assets/snponly.efi", vendor: "HTTPClient"},
		{name: "ipxe user class breaks the loop", mode: config.ModeReservation, mac: enrolled,
			opts: append([]reqOpt{ipxeUC}, pxeBIOS...), yiaddr: "10.77.0.50", file: "http://10.77.0.1:8080/boot.ipxe"},
		{name: "ipxe option 175 breaks the loop", mode: config.ModeReservation, mac: enrolled,
			opts: []reqOpt{arch(iana.EFI_X86_64), opt175}, yiaddr: "10.77.0.50", file: "http://10.77.0.1:8080/boot.ipxe"},
		{name: "reservation ignores strangers", mode: config.ModeReservation, mac: stranger, opts: pxeBIOS, silent: true},
		{name: "pool serves strangers", mode: config.ModePool, mac: stranger, opts: pxeBIOS, yiaddr: "10.77.0.100", file: "undionly.kpxe"},
		{name: "pool, plain client, no boot file", mode: config.ModePool, mac: stranger, yiaddr: "10.77.0.100", file: ""},
		{name: "relayed goes to giaddr", mode: config.ModeReservation, mac: enrolled,
			opts: append([]reqOpt{relayed}, pxeBIOS...), yiaddr: "10.77.0.50", file: "undionly.kpxe", dest: "10.77.0.254:67"},
		{name: "off answers nothing", mode: config.ModeOff, mac: enrolled, opts: pxeBIOS, silent: true},
		{name: "proxy offers no address", mode: config.ModeProxy, mac: stranger, opts: pxeBIOS,
			yiaddr: "0.0.0.0", file: "undionly.kpxe", vendor: "PXEClient"},
		{name: "proxy ignores non-pxe", mode: config.ModeProxy, mac: stranger, silent: true},
		{name: "proxy ipxe gets script", mode: config.ModeProxy, mac: stranger, opts: append([]reqOpt{ipxeUC}, pxeBIOS...),
			yiaddr: "0.0.0.0", file: "http://10.77.0.1:8080/boot.ipxe", vendor: "PXEClient"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newDHCP(t, c.mode)
			req := discover(t, c.mac, c.opts...)
			port := c.port
			if port == 0 {
				port = dhcpv4.ServerPort
			}
			resp, err := h.Reply(context.Background(), req, port)
			if err != nil {
				t.Fatal(err)
			}
			if c.silent {
				if resp != nil {
					t.Fatalf("want silence, got %s", resp.Summary())
				}
				return
			}
			if resp == nil {
				t.Fatal("no reply")
			}
			if got := resp.YourIPAddr.String(); got != c.yiaddr {
				t.Errorf("yiaddr %s, want %s", got, c.yiaddr)
			}
			if resp.BootFileName != c.file {
				t.Errorf("file %q, want %q", resp.BootFileName, c.file)
			}
			if got := resp.ClassIdentifier(); got != c.vendor {
				t.Errorf("option 60 %q, want %q", got, c.vendor)
			}
			if c.file != "" && !resp.ServerIPAddr.Equal(serverIP.AsSlice()) {
				t.Errorf("next-server %s, want %s", resp.ServerIPAddr, serverIP)
			}
			if !resp.ServerIdentifier().Equal(serverIP.AsSlice()) {
				t.Errorf("server id %s", resp.ServerIdentifier())
			}
			noProxyWait := resp.Options.Get(optEtherboot)
			if wantNPW := c.mode != config.ModeProxy && strings.HasSuffix(c.file, "boot.ipxe"); wantNPW != (string(noProxyWait) == "\xb0\x01\x01") {
				t.Errorf("option 175.176 (no-pxedhcp) = % x, want it: %v", noProxyWait, wantNPW)
			}
			if c.hostname != "" && resp.HostName() != c.hostname {
				t.Errorf("hostname %q, want %q", resp.HostName(), c.hostname)
			}
			if c.mode != config.ModeProxy {
				if resp.IPAddressLeaseTime(0) != time.Hour || resp.IPAddressRenewalTime(0) != 30*time.Minute {
					t.Errorf("lease %v renew %v", resp.IPAddressLeaseTime(0), resp.IPAddressRenewalTime(0))
				}
				if resp.SubnetMask().String() != "ffffff00" || len(resp.Router()) != 1 || len(resp.DNS()) != 1 || resp.DomainName() != "lab.test" {
					t.Errorf("options: mask %s router %v dns %v domain %q", resp.SubnetMask(), resp.Router(), resp.DNS(), resp.DomainName())
				}
			}
			if c.dest != "" {
				if got, _ := Dest(req, resp, nil, port); got.String() != c.dest {
					t.Errorf("dest %s, want %s", got, c.dest)
				}
			}
		})
	}
}

func request(t *testing.T, offer *dhcpv4.DHCPv4, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	m, err := dhcpv4.NewRequestFromOffer(offer, mods...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestDORAAndLeaseLife(t *testing.T) {
	ctx := context.Background()
	h := newDHCP(t, config.ModePool)
	offer, _ := h.Reply(ctx, discover(t, stranger), 67)
	ack, _ := h.Reply(ctx, request(t, offer), 67)
	if ack == nil || ack.MessageType() != dhcpv4.MessageTypeAck || ack.YourIPAddr.String() != "10.77.0.100" {
		t.Fatalf("ack = %v", ack)
	}
	// A second client is offered a different address.
	other := "52:54:00:00:00:98"
	offer2, _ := h.Reply(ctx, discover(t, other), 67)
	if offer2.YourIPAddr.Equal(ack.YourIPAddr) {
		t.Fatal("two clients offered the same address")
	}
	// Asking for someone else's address gets a NAK.
	hw, _ := net.ParseMAC(other)
	bad, _ := dhcpv4.New(dhcpv4.WithHwAddr(hw), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ack.YourIPAddr)))
	nak, _ := h.Reply(ctx, bad, 67)
	if nak == nil || nak.MessageType() != dhcpv4.MessageTypeNak {
		t.Fatalf("request for a taken address: %v", nak)
	}
	if got, _ := Dest(bad, nak, nil, 67); got.String() != "255.255.255.255:68" {
		t.Errorf("NAK goes to %s", got)
	}
	// Renewal: ciaddr set, no requested IP; unicast back to the client.
	hwS, _ := net.ParseMAC(stranger)
	renew, _ := dhcpv4.New(dhcpv4.WithHwAddr(hwS), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest), dhcpv4.WithClientIP(ack.YourIPAddr))
	rack, _ := h.Reply(ctx, renew, 67)
	if rack == nil || rack.MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("renew: %v", rack)
	}
	if got, _ := Dest(renew, rack, nil, 67); got.String() != "10.77.0.100:68" {
		t.Errorf("renewal ACK goes to %s", got)
	}
	// INFORM: options, no address, no lease time.
	inform, _ := dhcpv4.New(dhcpv4.WithHwAddr(hwS), dhcpv4.WithMessageType(dhcpv4.MessageTypeInform), dhcpv4.WithClientIP(ack.YourIPAddr))
	iack, _ := h.Reply(ctx, inform, 67)
	if iack == nil || !iack.YourIPAddr.IsUnspecified() || iack.Options.Has(dhcpv4.OptionIPAddressLeaseTime) || len(iack.DNS()) != 1 {
		t.Fatalf("inform ack: %v", iack)
	}
	// RELEASE, then the address is free for someone else.
	rel, _ := dhcpv4.New(dhcpv4.WithHwAddr(hwS), dhcpv4.WithMessageType(dhcpv4.MessageTypeRelease), dhcpv4.WithClientIP(ack.YourIPAddr))
	if r, err := h.Reply(ctx, rel, 67); r != nil || err != nil {
		t.Fatalf("release: %v %v", r, err)
	}
	ok, _ := h.Reply(ctx, request(t, offer2), 67)
	if ok == nil || ok.MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("second client ACK after release: %v", ok)
	}
	// DECLINE quarantines the address: nobody is offered it again.
	dec, _ := dhcpv4.New(dhcpv4.WithHwAddr(hw), dhcpv4.WithMessageType(dhcpv4.MessageTypeDecline),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ok.YourIPAddr)))
	if _, err := h.Reply(ctx, dec, 67); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		o, _ := h.Reply(ctx, discover(t, net.HardwareAddr{0x52, 0x54, 1, 1, 1, byte(i)}.String()), 67)
		if o != nil && o.YourIPAddr.Equal(ok.YourIPAddr) {
			t.Fatalf("declined %s offered again", ok.YourIPAddr)
		}
	}
}

func TestProxyPort4011(t *testing.T) {
	h := newDHCP(t, config.ModeProxy)
	hw, _ := net.ParseMAC(stranger)
	req, _ := dhcpv4.New(dhcpv4.WithHwAddr(hw), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithClientIP(net.ParseIP("10.77.0.33")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_X86_64)), dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007")))
	resp, err := h.Reply(context.Background(), req, PXEPort)
	if err != nil || resp == nil {
		t.Fatalf("4011 request: %v %v", resp, err)
	}
	if resp.MessageType() != dhcpv4.MessageTypeAck || resp.BootFileName != "snponly.efi" || !resp.YourIPAddr.IsUnspecified() {
		t.Errorf("4011 ack: %s", resp.Summary())
	}
	peer := &net.UDPAddr{IP: net.ParseIP("10.77.0.33"), Port: 4011}
	if d, _ := Dest(req, resp, peer, PXEPort); d != peer {
		t.Errorf("4011 reply goes to %v, want the requester", d)
	}
	// A REQUEST on 67 belongs to the real DHCP server.
	if r, _ := h.Reply(context.Background(), req, 67); r != nil {
		t.Errorf("proxy answered a REQUEST on 67")
	}
}

func TestRelayFromElsewhereIgnored(t *testing.T) {
	h := newDHCP(t, config.ModePool)
	req := discover(t, stranger, func(m *dhcpv4.DHCPv4) { m.GatewayIPAddr = net.ParseIP("192.168.9.1").To4() })
	resp, err := h.Reply(context.Background(), req, 67)
	if resp != nil || err == nil {
		t.Fatalf("relay from a foreign subnet: %v %v", resp, err)
	}
}

// TestDHCPRefusalsRateLimited: requests that cannot be answered (here not
// Ethernet) are counted, and only a few reach the log, however many come.
func TestDHCPRefusalsRateLimited(t *testing.T) {
	var buf bytes.Buffer
	h := newDHCP(t, config.ModePool)
	h.Log = slog.New(slog.NewTextHandler(&buf, nil))
	handle := h.Handler(67)
	for range 1000 {
		m, _ := dhcpv4.NewDiscovery(net.HardwareAddr{2, 0, 0, 0, 0, 1})
		m.HWType = iana.HWTypeIEEE802
		handle(nil, nil, m)
	}
	if n := strings.Count(buf.String(), "\n"); n > quietBurst {
		t.Errorf("%d log lines for 1000 refused requests, want at most %d", n, quietBurst)
	}
}

// TestRepliesAsTheLibraryBuildsThem: replies are built by hand, with the
// configuration's options encoded once, instead of by
// dhcpv4.NewReplyFromRequest. On the wire they must be what the library's
// constructor and option encoders make of the same request.
func TestRepliesAsTheLibraryBuildsThem(t *testing.T) {
	withOpts := func(m *dhcpv4.DHCPv4) {
		m.UpdateOption(dhcpv4.OptClientIdentifier([]byte{1, 0x52, 0x54, 0, 0, 0, 0x99}))
		m.UpdateOption(dhcpv4.OptRelayAgentInfo(dhcpv4.OptGeneric(dhcpv4.GenericOptionCode(1), []byte("eth0"))))
		m.GatewayIPAddr = net.ParseIP("10.77.0.254").To4()
		m.SetBroadcast()
	}
	for _, tc := range []struct {
		name string
		req  *dhcpv4.DHCPv4
		t    dhcpv4.MessageType
	}{
		{"offer", discover(t, stranger), dhcpv4.MessageTypeOffer},
		{"relayed ack with client id", discover(t, stranger, withOpts), dhcpv4.MessageTypeAck},
		{"nak", discover(t, stranger, withOpts), dhcpv4.MessageTypeNak},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newDHCP(t, config.ModePool)
			var got *dhcpv4.DHCPv4
			var err error
			mods := []dhcpv4.Modifier{dhcpv4.WithMessageType(tc.t), dhcpv4.WithOption(dhcpv4.OptServerIdentifier(h.Server.AsSlice()))}
			if tc.t == dhcpv4.MessageTypeNak {
				got, err = h.nak(tc.req, "no")
				mods = append(mods, dhcpv4.WithOption(dhcpv4.OptMessage("no")))
			} else {
				got, err = h.lease(tc.req, Client{}, nil, tc.t, netip.MustParseAddr("10.77.0.100"))
				mods = append(mods,
					dhcpv4.WithServerIP(h.Server.AsSlice()),
					dhcpv4.WithNetmask(net.CIDRMask(h.Subnet.Bits(), 32)),
					dhcpv4.WithOption(dhcpv4.OptIPAddressLeaseTime(h.Lease)),
					dhcpv4.WithOption(dhcpv4.OptRenewTimeValue(h.Lease/2)),
					dhcpv4.WithOption(dhcpv4.OptRebindingTimeValue(h.Lease*7/8)),
					dhcpv4.WithOption(dhcpv4.OptRouter(ips(h.Router)...)),
					dhcpv4.WithOption(dhcpv4.OptDNS(ips(h.DNS)...)),
					dhcpv4.WithOption(dhcpv4.OptDomainName(h.Domain)),
					dhcpv4.WithYourIP(net.ParseIP("10.77.0.100").To4()),
				)
			}
			if err != nil {
				t.Fatal(err)
			}
			want, err := dhcpv4.NewReplyFromRequest(tc.req, mods...)
			if err != nil {
				t.Fatal(err)
			}
			if g, w := got.ToBytes(), want.ToBytes(); !bytes.Equal(g, w) {
				t.Errorf("reply differs from the library's:\ngot  %v\nwant %v", got.Summary(), want.Summary())
			}
		})
	}
}

// packetConn is a net.PacketConn fed and read by a test.
type packetConn struct {
	in     chan []byte
	out    chan sent
	closed chan struct{}
	once   sync.Once
}

type sent struct {
	msg *dhcpv4.DHCPv4
	to  string
}

func newPacketConn() *packetConn {
	return &packetConn{in: make(chan []byte, 16), out: make(chan sent, 16), closed: make(chan struct{})}
}

func (c *packetConn) ReadFrom(b []byte) (int, net.Addr, error) {
	select {
	case p := <-c.in:
		return copy(b, p), &net.UDPAddr{IP: net.IPv4(10, 77, 0, 254), Port: 67}, nil
	case <-c.closed:
		return 0, nil, net.ErrClosed
	}
}

func (c *packetConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	m, err := dhcpv4.FromBytes(b)
	if err != nil {
		return 0, err
	}
	c.out <- sent{m, addr.String()}
	return len(b), nil
}

func (c *packetConn) Close() error                     { c.once.Do(func() { close(c.closed) }); return nil }
func (c *packetConn) LocalAddr() net.Addr              { return &net.UDPAddr{Port: 67} }
func (c *packetConn) SetDeadline(time.Time) error      { return nil }
func (c *packetConn) SetReadDeadline(time.Time) error  { return nil }
func (c *packetConn) SetWriteDeadline(time.Time) error { return nil }

// gatedLeaser holds every commit until gate is closed: a slow disk.
type gatedLeaser struct {
	*inventory.Inventory
	gate chan struct{}
}

func (g gatedLeaser) CommitThen(mac string, ip netip.Addr, pool, now bool, done func(inventory.Lease, error)) {
	go func() {
		<-g.gate
		g.Inventory.CommitThen(mac, ip, pool, now, done)
	}()
}

// blockingLeaser has no CommitThen: a REQUEST waits in Commit.
type blockingLeaser struct{ Leaser }

func (b blockingLeaser) gated(gate chan struct{}) Leaser { return gatedCommit{b.Leaser, gate} }

type gatedCommit struct {
	Leaser
	gate chan struct{}
}

func (g gatedCommit) Commit(ctx context.Context, mac string, ip netip.Addr, pool bool) (inventory.Lease, error) {
	<-g.gate
	return g.Leaser.Commit(ctx, mac, ip, pool)
}

// TestServeDHCP: the listener answers on its own goroutine, and a REQUEST
// whose lease is not on disk yet holds up neither the packets after it nor
// its ACK once the lease is written, whether the Leaser calls back or
// blocks. A malformed packet is skipped, and the end of ctx ends it.
func TestServeDHCP(t *testing.T) {
	for _, tc := range []struct {
		name  string
		gated func(inv *inventory.Inventory, gate chan struct{}) Leaser
	}{
		{"commit with a callback", func(inv *inventory.Inventory, gate chan struct{}) Leaser { return gatedLeaser{inv, gate} }},
		{"blocking commit", func(inv *inventory.Inventory, gate chan struct{}) Leaser {
			return blockingLeaser{inv}.gated(gate)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newDHCP(t, config.ModePool)
			gate := make(chan struct{})
			h.Leases = tc.gated(h.Leases.(*inventory.Inventory), gate)
			if _, ok := h.Leases.(leaserThen); ok != (tc.name == "commit with a callback") {
				t.Fatalf("%s: CommitThen present: %v", tc.name, ok)
			}
			conn := newPacketConn()
			ctx, cancel := context.WithCancel(context.Background())
			served := make(chan error, 1)
			go func() { served <- ServeDHCP(ctx, conn, h.Handler(67), discardLog()) }()
			next := func(want dhcpv4.MessageType) *dhcpv4.DHCPv4 {
				t.Helper()
				select {
				case s := <-conn.out:
					if s.msg.MessageType() != want || s.to != "10.77.0.254:67" {
						t.Fatalf("got %s to %s, want %s to the relay", s.msg.MessageType(), s.to, want)
					}
					return s.msg
				case <-time.After(5 * time.Second):
					t.Fatalf("no %s", want)
					return nil
				}
			}
			conn.in <- []byte("not dhcp")
			conn.in <- discover(t, stranger, relayed).ToBytes()
			offer := next(dhcpv4.MessageTypeOffer)
			req := request(t, offer)
			relayed(req)
			conn.in <- req.ToBytes()
			conn.in <- discover(t, "52:54:00:00:00:98", relayed).ToBytes()
			next(dhcpv4.MessageTypeOffer) // while the first client's lease waits for the disk
			select {
			case s := <-conn.out:
				t.Fatalf("%s sent before the lease was written", s.msg.MessageType())
			case <-time.After(50 * time.Millisecond):
			}
			close(gate)
			if ack := next(dhcpv4.MessageTypeAck); !ack.YourIPAddr.Equal(offer.YourIPAddr) {
				t.Errorf("ACK for %s, offered %s", ack.YourIPAddr, offer.YourIPAddr)
			}
			cancel()
			if err := <-served; err != nil {
				t.Errorf("ServeDHCP after cancel: %v", err)
			}
		})
	}
}

// TestServeDHCPSocket: on a real UDP socket, the listener reads with its
// own recvfrom and answers with its own sendto (see rawReader): a proxyDHCP
// REQUEST on port 4011 is answered to the address and port it came from,
// and a malformed packet in between changes nothing.
func TestServeDHCPSocket(t *testing.T) {
	h := newDHCP(t, config.ModeProxy)
	srv, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- ServeDHCP(ctx, srv, h.Handler(PXEPort), discardLog()) }()
	client, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	hw, _ := net.ParseMAC(stranger)
	req, _ := dhcpv4.New(dhcpv4.WithHwAddr(hw), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithClientIP(net.ParseIP("10.77.0.33")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_X86_64)), dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007")))
	for i, pkt := range [][]byte{[]byte("junk"), req.ToBytes(), req.ToBytes()} {
		if _, err := client.WriteTo(pkt, srv.LocalAddr()); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			continue
		}
		client.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 1500)
		n, from, err := client.ReadFrom(buf)
		if err != nil {
			t.Fatalf("reply %d: %v", i, err)
		}
		if from.String() != srv.LocalAddr().String() {
			t.Errorf("reply from %s, want %s", from, srv.LocalAddr())
		}
		ack, err := dhcpv4.FromBytes(buf[:n])
		if err != nil || ack.MessageType() != dhcpv4.MessageTypeAck || ack.TransactionID != req.TransactionID || ack.BootFileName != "snponly.efi" {
			t.Fatalf("reply %d: %v %v", i, ack, err)
		}
	}
	cancel()
	if err := <-served; err != nil {
		t.Errorf("ServeDHCP after cancel: %v", err)
	}
}
