package pxe

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/bootstrapd/bootstrapd/internal/config"
	"github.com/bootstrapd/bootstrapd/internal/inventory"
)

// Leaser is what the DHCP server needs from the inventory.
type Leaser interface {
	DHCPNode(mac string) (inventory.DHCPNode, bool)
	Seen(ctx context.Context, mac, arch string)
	Offer(mac string, requested netip.Addr, pool bool) (netip.Addr, error)
	Commit(ctx context.Context, mac string, ip netip.Addr, pool bool) (inventory.Lease, error)
	Release(ctx context.Context, mac string, ip netip.Addr) error
	Decline(ctx context.Context, mac string, ip netip.Addr) error
}

// PXEPort is where UEFI PXE clients send their proxyDHCP REQUEST.
const PXEPort = 4011

// DHCP is the DHCP policy for one interface: which requests are answered and
// with what. Reply is pure apart from the Leaser; Handle puts it on a socket.
type DHCP struct {
	Mode   string // one of config.Mode*
	Leases Leaser
	Server netip.Addr // our address on the interface: server id and next-server
	Subnet netip.Prefix
	Router []netip.Addr
	DNS    []netip.Addr
	Domain string
	Lease  time.Duration
	Boot   BootFiles
	Log    *slog.Logger
	// Link, when set, sends replies to clients that have no address and
	// did not ask for a broadcast to their hardware address (see
	// OpenLink); without it they are broadcast, which RFC 2131 allows.
	Link *Link
	// Mine, when set, says whether this server answers the client with a
	// hardware address: when several instances serve one segment, each
	// answers its share of the clients (see package shares), and a client
	// that names this server in its REQUEST. Nil: every client.
	Mine func(hw []byte) bool

	metrics *dhcpMetrics
	refused *quietLog

	// static holds the options that are the same in every reply carrying
	// an address, encoded once: their encoders allocate, and building
	// replies was about a third of the allocations of an exchange.
	staticOnce sync.Once
	static     []staticOption
	serverID   []byte                             // h.Server, for option 54 and siaddr
	msgTypes   [dhcpv4.MessageTypeInform + 1]byte // option 53's values, sliced one at a time
}

type staticOption struct {
	code  uint8
	value []byte
}

// staticOptions encodes the options that depend only on h's configuration.
// They are shared by every reply: nothing may change their bytes.
func (h *DHCP) staticOptions() []staticOption {
	h.staticOnce.Do(func() {
		h.serverID = h.Server.AsSlice()
		for i := range h.msgTypes {
			h.msgTypes[i] = byte(i)
		}
		opts := []dhcpv4.Option{
			dhcpv4.OptSubnetMask(net.CIDRMask(h.Subnet.Bits(), 32)),
			dhcpv4.OptIPAddressLeaseTime(h.Lease),
			dhcpv4.OptRenewTimeValue(h.Lease / 2),
			dhcpv4.OptRebindingTimeValue(h.Lease * 7 / 8),
		}
		if len(h.Router) > 0 {
			opts = append(opts, dhcpv4.OptRouter(ips(h.Router)...))
		}
		if len(h.DNS) > 0 {
			opts = append(opts, dhcpv4.OptDNS(ips(h.DNS)...))
		}
		if h.Domain != "" {
			opts = append(opts, dhcpv4.OptDomainName(h.Domain))
		}
		for _, o := range opts {
			h.static = append(h.static, staticOption{o.Code.Code(), o.Value.ToBytes()})
		}
	})
	return h.static
}

// newReply is dhcpv4.NewReplyFromRequest with the message type and server
// identifier set, without its transaction ID: NewReplyFromRequest draws a
// random one from crypto/rand (under a context with a timer) and then
// overwrites it with the request's.
func (h *DHCP) newReply(req *dhcpv4.DHCPv4, t dhcpv4.MessageType) *dhcpv4.DHCPv4 {
	resp := &dhcpv4.DHCPv4{
		OpCode:        dhcpv4.OpcodeBootReply,
		HWType:        req.HWType,
		TransactionID: req.TransactionID,
		Flags:         req.Flags,
		ClientHWAddr:  req.ClientHWAddr,
		ClientIPAddr:  net.IPv4zero,
		YourIPAddr:    net.IPv4zero,
		ServerIPAddr:  net.IPv4zero,
		GatewayIPAddr: req.GatewayIPAddr,
		Options:       make(dhcpv4.Options, 16),
	}
	if req.GatewayIPAddr == nil {
		resp.GatewayIPAddr = net.IPv4zero
	}
	// RFC 3046 (relay agent information) and RFC 6842 (client identifier):
	// echoed as the client or relay sent them.
	for _, code := range []dhcpv4.OptionCode{dhcpv4.OptionRelayAgentInformation, dhcpv4.OptionClientIdentifier} {
		if v := req.Options.Get(code); v != nil {
			resp.Options[code.Code()] = v
		}
	}
	h.staticOptions() // sets serverID and msgTypes
	if int(t) < len(h.msgTypes) {
		resp.Options[dhcpv4.OptionDHCPMessageType.Code()] = h.msgTypes[t : t+1 : t+1]
	} else {
		resp.Options[dhcpv4.OptionDHCPMessageType.Code()] = []byte{byte(t)}
	}
	resp.Options[dhcpv4.OptionServerIdentifier.Code()] = h.serverID
	return resp
}

// Register adds the DHCP counters to reg.
func (h *DHCP) Register(reg prometheus.Registerer) {
	h.metrics = newDHCPMetrics(reg)
	h.refused = newQuietLog(h.Log, "dhcp", reg)
}

// Reply computes the answer to req, which arrived on port (67, or 4011 for
// proxyDHCP). A nil reply means stay silent, which is the right answer to
// anything that is not ours to answer.
func (h *DHCP) Reply(ctx context.Context, req *dhcpv4.DHCPv4, port int) (*dhcpv4.DHCPv4, error) {
	r, err := h.inspect(ctx, req, req.MessageType())
	if err != nil || r.other {
		return nil, err
	}
	return h.reply(ctx, r, port)
}

// incoming is what Reply learns of a request before it answers it.
type incoming struct {
	req *dhcpv4.DHCPv4
	mt  dhcpv4.MessageType
	mac string
	c   Client
	n   *inventory.DHCPNode // the enrolled node, if any
	// other: the client is another instance's to answer (DHCP.Mine).
	other bool
}

// named reports whether req names this server (option 54): a REQUEST for
// an offer it made.
func (h *DHCP) named(req *dhcpv4.DHCPv4) bool {
	sid := req.ServerIdentifier()
	return sid != nil && addr(sid) == h.Server
}

func (h *DHCP) inspect(ctx context.Context, req *dhcpv4.DHCPv4, mt dhcpv4.MessageType) (incoming, error) {
	if req.OpCode != dhcpv4.OpcodeBootRequest || req.HWType != iana.HWTypeEthernet || len(req.ClientHWAddr) != 6 {
		return incoming{}, errors.New("not an Ethernet BOOTREQUEST")
	}
	if !req.GatewayIPAddr.IsUnspecified() && h.Subnet.IsValid() && !h.Subnet.Contains(addr(req.GatewayIPAddr)) {
		return incoming{}, errors.New("relayed from " + req.GatewayIPAddr.String() + ", outside " + h.Subnet.String())
	}
	if h.Mine != nil && !h.Mine(req.ClientHWAddr) && !h.named(req) {
		return incoming{other: true}, nil
	}
	r := incoming{req: req, mt: mt, mac: req.ClientHWAddr.String(), c: Classify(req)}
	if (r.c.PXE || r.c.IPXE) && mt != dhcpv4.MessageTypeRelease {
		h.Leases.Seen(ctx, r.mac, ArchName(r.c))
	}
	// One lookup per request: the node's reservation, hostname and boot
	// file override all come from it.
	if node, ok := h.Leases.DHCPNode(r.mac); ok {
		r.n = &node
	}
	return r, nil
}

func (h *DHCP) reply(ctx context.Context, r incoming, port int) (*dhcpv4.DHCPv4, error) {
	switch h.Mode {
	case config.ModeProxy:
		return h.proxyReply(r.req, r.mt, r.c, r.n, port)
	case config.ModePool, config.ModeReservation:
		if port != dhcpv4.ServerPort {
			return nil, nil
		}
		return h.serverReply(ctx, r.req, r.mt, r.mac, r.c, r.n)
	}
	return nil, nil
}

// writes reports whether answering r writes to the store (and so waits
// for the disk).
func (h *DHCP) writes(r incoming, port int) bool {
	if (h.Mode != config.ModePool && h.Mode != config.ModeReservation) || port != dhcpv4.ServerPort {
		return false
	}
	return r.mt == dhcpv4.MessageTypeRequest || r.mt == dhcpv4.MessageTypeRelease || r.mt == dhcpv4.MessageTypeDecline
}

// leaserThen is a Leaser that commits a lease without keeping the caller
// waiting: done is called once the lease is on disk (see
// inventory.CommitThen).
type leaserThen interface {
	CommitThen(mac string, ip netip.Addr, pool, now bool, done func(inventory.Lease, error))
}

// replyThen is Reply for the listener: it calls send with what Reply
// would return, once. Requests that write nothing are answered before it
// returns, on the listener's goroutine: no goroutine per packet, no
// wake-ups. A REQUEST's ACK is sent by the store's writer once the lease is
// on disk (when the Leaser can do that; otherwise, and for RELEASE and
// DECLINE, a goroutine waits for the write). idle reports whether no other
// packet is waiting on the socket: then the lease may be committed on this
// goroutine (see store.PutJSONNow).
func (h *DHCP) replyThen(ctx context.Context, req *dhcpv4.DHCPv4, mt dhcpv4.MessageType, port int, idle func() bool, send func(*dhcpv4.DHCPv4, error)) {
	r, err := h.inspect(ctx, req, mt)
	if err != nil || r.other {
		send(nil, err)
		return
	}
	if !h.writes(r, port) {
		send(h.reply(ctx, r, port))
		return
	}
	if lt, ok := h.Leases.(leaserThen); ok && mt == dhcpv4.MessageTypeRequest {
		ip, ok := h.requested(req)
		if !ok {
			send(nil, nil)
			return
		}
		// Built before the commit, off the store's writer goroutine: an
		// ACK carries the address asked for, which is the one committed.
		ack, err := h.lease(req, r.c, r.n, dhcpv4.MessageTypeAck, ip)
		if err != nil {
			send(nil, err)
			return
		}
		lt.CommitThen(r.mac, ip, h.Mode == config.ModePool, idle(), func(l inventory.Lease, err error) {
			send(h.committed(req, ack, l, err))
		})
		return
	}
	go func() { send(h.reply(ctx, r, port)) }()
}

// requested is the address a REQUEST asks for, and false when it is not
// ours to answer.
func (h *DHCP) requested(req *dhcpv4.DHCPv4) (netip.Addr, bool) {
	if sid := req.ServerIdentifier(); sid != nil && addr(sid) != h.Server {
		return netip.Addr{}, false // the client chose another server's offer
	}
	ip := addr(req.RequestedIPAddress())
	if !ip.IsValid() {
		ip = addr(req.ClientIPAddr) // renewing or rebinding
	}
	return ip, true
}

// committed is the answer to a REQUEST once its commit has returned err.
func (h *DHCP) committed(req, ack *dhcpv4.DHCPv4, l inventory.Lease, err error) (*dhcpv4.DHCPv4, error) {
	switch {
	case errors.Is(err, inventory.ErrWrongAddr):
		return h.nak(req, err.Error())
	case err != nil:
		return nil, quiet(err)
	}
	h.shorten(ack, l)
	return ack, nil
}

// shorten gives ack the time l has left, when that is less than a full
// lease: a renewal answered from memory while the store takes no writes
// (inventory.CommitThen) keeps the expiry it has, so the client asks again
// sooner rather than hold an address the store does not know it holds.
func (h *DHCP) shorten(ack *dhcpv4.DHCPv4, l inventory.Lease) {
	left := time.Until(l.Expires).Truncate(time.Second)
	if l.Expires.IsZero() || left >= h.Lease-time.Second {
		return
	}
	left = max(left, time.Second)
	ack.UpdateOption(dhcpv4.OptIPAddressLeaseTime(left))
	ack.UpdateOption(dhcpv4.OptRenewTimeValue(left / 2))
	ack.UpdateOption(dhcpv4.OptRebindingTimeValue(left * 7 / 8))
}

func (h *DHCP) serverReply(ctx context.Context, req *dhcpv4.DHCPv4, mt dhcpv4.MessageType, mac string, c Client, n *inventory.DHCPNode) (*dhcpv4.DHCPv4, error) {
	pool := h.Mode == config.ModePool
	switch mt {
	case dhcpv4.MessageTypeDiscover:
		ip, err := h.Leases.Offer(mac, addr(req.RequestedIPAddress()), pool)
		if err != nil {
			return nil, quiet(err)
		}
		return h.lease(req, c, n, dhcpv4.MessageTypeOffer, ip)
	case dhcpv4.MessageTypeRequest:
		ip, ok := h.requested(req)
		if !ok {
			return nil, nil
		}
		l, err := h.Leases.Commit(ctx, mac, ip, pool)
		if err != nil {
			return h.committed(req, nil, l, err)
		}
		ack, err := h.lease(req, c, n, dhcpv4.MessageTypeAck, l.IP)
		if err != nil {
			return nil, err
		}
		return h.committed(req, ack, l, nil)
	case dhcpv4.MessageTypeRelease:
		return nil, quiet(h.Leases.Release(ctx, mac, addr(req.ClientIPAddr)))
	case dhcpv4.MessageTypeDecline:
		return nil, quiet(h.Leases.Decline(ctx, mac, addr(req.RequestedIPAddress())))
	case dhcpv4.MessageTypeInform:
		if !pool && n == nil {
			return nil, nil
		}
		resp, err := h.base(req, c, n, dhcpv4.MessageTypeAck)
		if err != nil {
			return nil, err
		}
		// RFC 2131 4.3.5: no address and no lease time in the reply to INFORM.
		resp.YourIPAddr = net.IPv4zero
		resp.Options.Del(dhcpv4.OptionIPAddressLeaseTime)
		resp.Options.Del(dhcpv4.OptionRenewTimeValue)
		resp.Options.Del(dhcpv4.OptionRebindingTimeValue)
		return resp, nil
	}
	return nil, nil
}

// quiet marks errors that mean "not ours": they are counted, not logged loud.
func quiet(err error) error {
	if errors.Is(err, inventory.ErrNoLease) {
		return nil
	}
	return err
}

func (h *DHCP) lease(req *dhcpv4.DHCPv4, c Client, n *inventory.DHCPNode, t dhcpv4.MessageType, ip netip.Addr) (*dhcpv4.DHCPv4, error) {
	resp, err := h.base(req, c, n, t)
	if err != nil {
		return nil, err
	}
	resp.YourIPAddr = ip.AsSlice()
	if n != nil && n.Hostname != "" && n.IP == ip {
		resp.UpdateOption(dhcpv4.OptHostName(n.Hostname))
	}
	return resp, nil
}

// base is a reply carrying everything but the address: network options,
// lease timers and, for PXE clients, the boot file.
func (h *DHCP) base(req *dhcpv4.DHCPv4, c Client, n *inventory.DHCPNode, t dhcpv4.MessageType) (*dhcpv4.DHCPv4, error) {
	resp := h.newReply(req, t)
	resp.ServerIPAddr = h.serverID
	for _, o := range h.staticOptions() {
		resp.Options[o.code] = o.value
	}
	h.setBootFile(resp, c, n)
	if c.IPXE {
		// Encapsulated option 175.176 (no-pxedhcp): this offer is complete,
		// so iPXE need not wait for a proxyDHCP offer (about 2 s per boot).
		resp.UpdateOption(dhcpv4.OptGeneric(optEtherboot, []byte{176, 1, 1}))
	}
	return resp, nil
}

func (h *DHCP) setBootFile(resp *dhcpv4.DHCPv4, c Client, n *inventory.DHCPNode) {
	var override string
	if n != nil {
		override = n.BootFile
	}
	file, ok := h.Boot.BootFile(c, override)
	if !ok {
		return
	}
	resp.BootFileName = file
	resp.UpdateOption(dhcpv4.OptBootFileName(file))
	if c.HTTPClient && !c.IPXE {
		// EDK2 only treats an offer as HTTP boot if option 60 says so.
		resp.UpdateOption(dhcpv4.OptClassIdentifier("HTTPClient"))
	}
}

func (h *DHCP) nak(req *dhcpv4.DHCPv4, msg string) (*dhcpv4.DHCPv4, error) {
	resp := h.newReply(req, dhcpv4.MessageTypeNak)
	resp.UpdateOption(dhcpv4.OptMessage(msg))
	return resp, nil
}

// proxyReply answers PXE clients with boot information only (yiaddr stays
// 0.0.0.0), so bootstrapd can sit beside the router's DHCP server.
func (h *DHCP) proxyReply(req *dhcpv4.DHCPv4, mt dhcpv4.MessageType, c Client, n *inventory.DHCPNode, port int) (*dhcpv4.DHCPv4, error) {
	if !c.PXE && !c.IPXE {
		return nil, nil
	}
	var t dhcpv4.MessageType
	switch {
	case port == dhcpv4.ServerPort && mt == dhcpv4.MessageTypeDiscover:
		t = dhcpv4.MessageTypeOffer
	case port == PXEPort && mt == dhcpv4.MessageTypeRequest:
		t = dhcpv4.MessageTypeAck
	default:
		return nil, nil // the real DHCP server handles the rest
	}
	resp := h.newReply(req, t)
	resp.ServerIPAddr = h.serverID
	resp.UpdateOption(dhcpv4.OptClassIdentifier("PXEClient"))
	if v := req.Options.Get(dhcpv4.OptionClientMachineIdentifier); v != nil {
		resp.Options[dhcpv4.OptionClientMachineIdentifier.Code()] = v
	}
	h.setBootFile(resp, c, n)
	if c.HTTPClient && !c.IPXE {
		resp.UpdateOption(dhcpv4.OptClassIdentifier("HTTPClient"))
	}
	if port == dhcpv4.ServerPort && !c.IPXE && c.Arch == 0 {
		// BIOS PXE ROMs: discovery control 8 says "the file is in this
		// offer, boot it" instead of asking port 4011. UEFI firmware gets no
		// option 43 and asks 4011, which is what EDK2 expects.
		resp.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionVendorSpecificInformation, []byte{6, 1, 8, 255}))
	}
	return resp, nil
}

func addr(ip net.IP) netip.Addr {
	a, _ := netip.AddrFromSlice(ip.To4())
	if a.IsUnspecified() {
		return netip.Addr{}
	}
	return a
}

func ips(as []netip.Addr) []net.IP {
	out := make([]net.IP, len(as))
	for i, a := range as {
		out[i] = a.AsSlice()
	}
	return out
}
