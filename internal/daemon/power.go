package daemon

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/bootstrapd/bootstrapd/internal/api"
	"github.com/bootstrapd/bootstrapd/internal/bmc"
	"github.com/bootstrapd/bootstrapd/internal/config"
	"github.com/bootstrapd/bootstrapd/internal/inventory"
	"github.com/bootstrapd/bootstrapd/internal/profile"
)

// OpenBMC logs in to the BMC at u with c: bmc.Open with the site's TLS
// settings and timeout bound in (OpenWith), or a fake in tests.
type OpenBMC func(ctx context.Context, u *url.URL, c bmc.Credentials) (bmc.BMC, error)

// OpenWith is bmc.Open with the site's bmc block: its CA or pinned
// fingerprint for Redfish, and its timeout for every call.
func OpenWith(site *config.Site, log *slog.Logger) OpenBMC {
	o := bmc.Options{RootCAs: site.BMC.RootCAs, Fingerprint: site.BMC.Fingerprint, Timeout: site.BMC.TimeoutD, Log: log}
	return func(ctx context.Context, u *url.URL, c bmc.Credentials) (bmc.BMC, error) {
		return bmc.Open(ctx, u, c, o)
	}
}

// Wake sends a Wake-on-LAN magic packet for mac as a broadcast on iface
// and, when dst is valid, to dst too (a relayed subnet's directed
// broadcast): bmc.WakeOnLAN.
type Wake func(ctx context.Context, iface string, mac net.HardwareAddr, dst netip.AddrPort) error

// Power drives nodes' BMCs for the lifecycle and the admin API: status,
// on, off, cycle, the one-time PXE boot an install needs, and Wake-on-LAN
// for machines without a BMC. Every action but status is an event in the
// node's history with the BMC's answer or error. Nothing here runs on the
// DHCP, TFTP or node HTTP paths, and no BMC call is made under the
// inventory's lock: a BMC that hangs holds up its own node's next power
// action, nothing else.
type Power struct {
	site  *config.Site
	inv   *inventory.Inventory
	open  OpenBMC
	wake  Wake
	creds *credentials
	log   *slog.Logger
	// window is how long an install retry may take: the node's profile's
	// install timeout.
	window func(inventory.Node) time.Duration
	// relayed is where magic packets go besides the provisioning
	// interface: the subnet's directed broadcast, when DHCP reaches
	// bootstrapd through a relay and the nodes are on another segment.
	relayed netip.AddrPort

	// bg is the daemon's lifetime: actions run in it, not in a request's
	// context, so a client that goes away does not cut one in half.
	bg   context.Context
	jobs sync.WaitGroup

	mu    sync.Mutex
	busy  map[string]chan struct{} // per MAC: one action at a time
	lastM map[string]string        // per MAC: the last action's failure, for health
}

// PowerConfig is what NewPower needs besides the site.
type PowerConfig struct {
	Inv  *inventory.Inventory // nil: no events recorded (doctor)
	Open OpenBMC
	Wake Wake
	// Server is bootstrapd's address on the provisioning network.
	Server netip.Addr
	// InstallTimeout is how long a node's install may take; nil: an hour.
	InstallTimeout func(inventory.Node) time.Duration
	Log            *slog.Logger
}

// NewPower makes the power control for site; its actions run within ctx.
func NewPower(ctx context.Context, site *config.Site, cfg PowerConfig) (*Power, error) {
	creds, err := newCredentials(site)
	if err != nil {
		return nil, err
	}
	p := &Power{site: site, inv: cfg.Inv, open: cfg.Open, wake: cfg.Wake, creds: creds, log: cfg.Log,
		window: cfg.InstallTimeout, bg: ctx, busy: map[string]chan struct{}{}, lastM: map[string]string{}}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	if p.window == nil {
		p.window = func(inventory.Node) time.Duration { return time.Hour }
	}
	if s := site.Subnet; s.IsValid() && (site.Router != nil && site.Router.DHCP == "relay" || cfg.Server.IsValid() && !s.Contains(cfg.Server)) {
		p.relayed = netip.AddrPortFrom(broadcast(s), bmc.WakePort)
	}
	return p, nil
}

// broadcast is the last address of p, its directed broadcast.
func broadcast(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	bits := p.Bits()
	for i := range a {
		if keep := bits - 8*i; keep < 8 {
			a[i] |= byte(0xff >> max(keep, 0))
		}
	}
	return netip.AddrFrom4(a)
}

// Wait waits for the actions under way, which end with the daemon's
// context.
func (p *Power) Wait() { p.jobs.Wait() }

// DefaultOn implements api.Power: the site's power_on_enroll.
func (p *Power) DefaultOn() bool { return p.site.BMC.PowerOnEnroll }

// Allowed implements api.Power: Redfish over plain HTTP only when the site
// asks for it, since it sends the password in the clear.
func (p *Power) Allowed(b inventory.BMC) error {
	if strings.HasPrefix(b.URL, inventory.SchemeRedfishHTTP+"://") && !p.site.BMC.InsecureHTTP {
		return fmt.Errorf("BMC %s is Redfish over plain HTTP, which sends its password in the clear: use redfish:// (HTTPS), or set insecure_http = true in the site's bmc block (%s)", b.URL, p.site.Path)
	}
	return nil
}

// Act implements api.Power. The action runs in the daemon's background,
// bounded by the BMC timeout; Act returns its result, or, should ctx end
// first, says that it goes on.
func (p *Power) Act(ctx context.Context, n inventory.Node, action, actor string) api.PowerResult {
	done := make(chan api.PowerResult, 1)
	if !p.background(func(bg context.Context) { done <- p.act(bg, n, action, actor) }) {
		return p.result(n, action, errors.New("bootstrapd is stopping"))
	}
	select {
	case r := <-done:
		return r
	case <-ctx.Done():
		return p.result(n, action, fmt.Errorf("%w; the action goes on (`bootstrapd events -node %s` shows how it ends)", ctx.Err(), n.Hostname))
	}
}

// background runs fn in the daemon's background and reports whether it
// started (not once the daemon is stopping).
func (p *Power) background(fn func(context.Context)) bool {
	if p.bg.Err() != nil {
		return false
	}
	p.jobs.Add(1)
	go func() {
		defer p.jobs.Done()
		fn(p.bg)
	}()
	return true
}

// budget bounds one action: each BMC call (login, state, boot device,
// power, logout) has the timeout, and a BMC that stops answering fails the
// action instead of holding it.
func (p *Power) budget() time.Duration { return 6 * p.site.BMC.TimeoutD }

// act runs action on n now: one action per node at a time, so an install
// retry and an operator's power off do not interleave.
func (p *Power) act(ctx context.Context, n inventory.Node, action, actor string) api.PowerResult {
	// The wait for an action under way is bounded by that action's own
	// budget; this one's starts when it does.
	release, err := p.lock(ctx, n.MAC)
	if err != nil {
		return p.record(ctx, n, action, actor, p.result(n, action, fmt.Errorf("another power action on it was still under way: %w", err)))
	}
	defer release()
	ctx, cancel := context.WithTimeout(ctx, p.budget())
	defer cancel()
	if action == api.PowerWake {
		return p.record(ctx, n, action, actor, p.wakeNode(ctx, n))
	}
	r := p.result(n, action, nil)
	if n.BMC == nil {
		r = p.result(n, action, errors.New("it has no BMC"))
		return p.record(ctx, n, action, actor, r)
	}
	if err := p.Allowed(*n.BMC); err != nil {
		return p.record(ctx, n, action, actor, p.result(n, action, err))
	}
	b, err := p.login(ctx, n)
	if err != nil {
		return p.record(ctx, n, action, actor, p.result(n, action, err))
	}
	defer b.Close()
	err = p.drive(ctx, b, n, action, &r)
	if err != nil {
		r.Error = p.result(n, action, err).Error
	}
	return p.record(ctx, n, action, actor, r)
}

// drive runs action on an open BMC, filling r with its answers.
func (p *Power) drive(ctx context.Context, b bmc.BMC, n inventory.Node, action string, r *api.PowerResult) error {
	switch action {
	case api.PowerStatus:
		st, answer, err := b.PowerState(ctx)
		r.State, r.Answer = string(st), answer
		return err
	case api.PowerOn, api.PowerOff, api.PowerCycle:
		answer, err := b.Power(ctx, bmc.Action(action))
		r.Answer = answer
		return err
	case api.PowerInstall:
		return p.install(ctx, b, n, r)
	}
	return fmt.Errorf("unknown power action %q", action)
}

// install sets a one-time PXE boot and powers the node on, or cycles it
// when it is on, so that it boots into its install now. A BMC that
// refuses the boot device is a warning: the node may still boot from the
// network first in its boot order.
func (p *Power) install(ctx context.Context, b bmc.BMC, n inventory.Node, r *api.PowerResult) error {
	st, _, err := b.PowerState(ctx)
	if err != nil {
		return err
	}
	uefi := UEFI(n)
	answer, err := b.BootPXEOnce(ctx, uefi)
	switch {
	case errors.Is(err, bmc.ErrBootUnsupported):
		r.Warning = fmt.Sprintf("one-time PXE boot refused (%v); relying on the node's boot order to boot from the network", err)
	case err != nil:
		return err
	default:
		r.Answer = answer + "; "
	}
	a := bmc.PowerOn
	if st == bmc.On {
		a = bmc.PowerCycle
	}
	answer, err = b.Power(ctx, a)
	r.Answer += answer
	r.State = string(bmc.On)
	return err
}

// UEFI says whether n boots UEFI, for its one-time PXE boot: what its
// firmware label says, else the arch it last sent over DHCP (an EFI or
// UEFI HTTP client), else not: a node never seen gets the plain PXE
// override, as `ipmitool chassis bootdev pxe`, MAAS and Tinkerbell's
// Rufio give unless told the machine is UEFI.
func UEFI(n inventory.Node) bool {
	switch n.Labels[api.FirmwareLabel] {
	case "bios":
		return false
	case "uefi":
		return true
	}
	return strings.HasPrefix(n.Arch, "efi") || strings.HasPrefix(n.Arch, "http")
}

// login opens n's BMC with its credentials.
func (p *Power) login(ctx context.Context, n inventory.Node) (bmc.BMC, error) {
	u, err := url.Parse(n.BMC.URL)
	if err != nil {
		return nil, err
	}
	c, err := p.creds.get(ctx, *n.BMC)
	if err != nil {
		return nil, err
	}
	return p.open(ctx, u, c)
}

// wakeNode sends the magic packet on the provisioning interface and, where
// nodes are on a relayed segment, to its directed broadcast.
func (p *Power) wakeNode(ctx context.Context, n inventory.Node) api.PowerResult {
	mac, err := net.ParseMAC(n.MAC)
	if err != nil {
		return p.result(n, api.PowerWake, err)
	}
	if p.wake == nil {
		return p.result(n, api.PowerWake, errors.New("this bootstrapd cannot send Wake-on-LAN packets"))
	}
	if err := p.wake(ctx, p.site.Interface, mac, p.relayed); err != nil {
		return p.result(n, api.PowerWake, err)
	}
	r := p.result(n, api.PowerWake, nil)
	r.Answer = "magic packet sent on " + p.site.Interface
	if p.relayed.IsValid() {
		r.Answer += " and to " + p.relayed.String() + " (the relayed subnet's broadcast)"
	}
	return r
}

// result is what an action on n did; with err, why it failed, naming the
// node and its BMC.
func (p *Power) result(n inventory.Node, action string, err error) api.PowerResult {
	r := api.PowerResult{Node: n.Hostname, MAC: n.MAC, Action: action}
	if n.BMC != nil {
		r.BMC = n.BMC.URL
	}
	if err == nil {
		return r
	}
	via := "BMC " + r.BMC
	if action == api.PowerWake {
		via = "Wake-on-LAN"
	} else if n.BMC == nil {
		via = "no BMC"
	}
	r.Error = fmt.Sprintf("power %s %s (%s), %s: %v", action, n.Hostname, n.MAC, via, err)
	return r
}

// record writes an action's outcome into the node's history (status
// reads are not actions), logs it, and remembers a failure for health.
func (p *Power) record(ctx context.Context, n inventory.Node, action, actor string, r api.PowerResult) api.PowerResult {
	p.mu.Lock()
	if r.Error != "" {
		p.lastM[n.MAC] = r.Error
	} else {
		delete(p.lastM, n.MAC)
	}
	p.mu.Unlock()
	if r.Error != "" {
		p.log.WarnContext(ctx, "power action failed", "node", n.Hostname, "mac", n.MAC, "action", action, "bmc", r.BMC, "err", r.Error)
	} else {
		p.log.InfoContext(ctx, "power action", "node", n.Hostname, "mac", n.MAC, "action", action, "bmc", r.BMC, "answer", r.Answer, "warning", r.Warning)
	}
	if action == api.PowerStatus || p.inv == nil {
		return r
	}
	via := "via " + r.BMC
	if action == api.PowerWake {
		via = "via Wake-on-LAN"
	}
	var notes []string
	switch {
	case r.Error != "":
		notes = append(notes, r.Error)
	default:
		if r.Warning != "" {
			notes = append(notes, fmt.Sprintf("power %s %s: warning: %s", action, via, r.Warning))
		}
		notes = append(notes, fmt.Sprintf("power %s %s: %s", action, via, r.Answer))
	}
	// Not the action's context: an action that timed out is recorded all
	// the same.
	rctx := context.WithoutCancel(ctx)
	for _, note := range notes {
		if err := p.inv.Note(rctx, n.MAC, note, actor); err != nil {
			p.log.Error("cannot record a power action", "node", n.Hostname, "err", err)
		}
	}
	return r
}

// lock waits for n's previous action to end, then holds n until release.
func (p *Power) lock(ctx context.Context, mac string) (release func(), err error) {
	for {
		p.mu.Lock()
		held, busy := p.busy[mac]
		if !busy {
			mine := make(chan struct{})
			p.busy[mac] = mine
			p.mu.Unlock()
			return func() {
				p.mu.Lock()
				delete(p.busy, mac)
				p.mu.Unlock()
				close(mine)
			}, nil
		}
		p.mu.Unlock()
		select {
		case <-held:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// RetryWindow implements inventory.InstallRetrier: nodes with a BMC are
// retried up to the site's install_retries, each retry with the node's
// install timeout.
func (p *Power) RetryWindow(n inventory.Node) (time.Duration, bool) {
	if n.BMC == nil || n.InstallRetries >= p.site.BMC.InstallRetries {
		return 0, false
	}
	return p.window(n), true
}

// Retry implements inventory.InstallRetrier: the power cycle with a
// one-time PXE boot, in the background.
func (p *Power) Retry(_ context.Context, n inventory.Node) {
	p.background(func(ctx context.Context) { p.act(ctx, n, api.PowerInstall, "bootstrapd") })
}

// retireStep is retire's "power off" step for n, when the site asks for it
// and n has a BMC.
func (p *Power) retireStep(n inventory.Node) (step, bool) {
	if p == nil || !p.site.BMC.PowerOffOnRetire || n.BMC == nil {
		return step{}, false
	}
	return step{"power off", "bmc: powered off", func(ctx context.Context) error {
		if r := p.act(ctx, n, api.PowerOff, "bootstrapd"); r.Error != "" {
			return errors.New(r.Error)
		}
		return nil
	}}, true
}

// Health is one line for the status page: how many nodes have a BMC, and
// the last power action that failed, if any did since.
func (p *Power) Health(nodes []inventory.Node) (api.HealthCheck, bool) {
	with := 0
	var failed []string
	p.mu.Lock()
	for _, n := range nodes {
		if n.BMC == nil || n.State == inventory.Retired {
			continue
		}
		with++
		if m := p.lastM[n.MAC]; m != "" {
			failed = append(failed, m)
		}
	}
	p.mu.Unlock()
	if with == 0 {
		return api.HealthCheck{}, false
	}
	h := api.HealthCheck{Name: "bmc", OK: len(failed) == 0, Detail: fmt.Sprintf("%d nodes with a BMC; no power action has failed since their last success", with)}
	if len(failed) > 0 {
		h.Detail = fmt.Sprintf("%d nodes with a BMC; %d failed their last power action: %s", with, len(failed), failed[0])
		h.Fix = "`bootstrapd doctor` logs in to each BMC and says what to fix; `bootstrapd events -node <node>` has the whole story"
	}
	return h, true
}

// installTimeout is how long a node's install may take: its profile's
// install_timeout.
func installTimeout(site *config.Site, profiles map[string]*profile.Profile) func(inventory.Node) time.Duration {
	return func(n inventory.Node) time.Duration {
		if p := profiles[cmp.Or(n.Profile, site.DefaultProfile)]; p != nil && p.Timeout > 0 {
			return p.Timeout
		}
		return time.Hour
	}
}

// withPowerHealth adds the BMC line to the health checks.
func withPowerHealth(health func(context.Context) []api.HealthCheck, p *Power, inv *inventory.Inventory) func(context.Context) []api.HealthCheck {
	return func(ctx context.Context) []api.HealthCheck {
		var out []api.HealthCheck
		if health != nil {
			out = health(ctx)
		}
		if h, ok := p.Health(inv.Nodes()); ok {
			out = append(out, h)
		}
		return out
	}
}

// Check logs in to n's BMC and asks its power state, recording nothing:
// doctor's check. The error keeps its kind (bmc.ErrAuth, ...).
func (p *Power) Check(ctx context.Context, n inventory.Node) (bmc.State, string, error) {
	if n.BMC == nil {
		return bmc.Unknown, "", errors.New("it has no BMC")
	}
	if err := p.Allowed(*n.BMC); err != nil {
		return bmc.Unknown, "", err
	}
	ctx, cancel := context.WithTimeout(ctx, p.budget())
	defer cancel()
	b, err := p.login(ctx, n)
	if err != nil {
		return bmc.Unknown, "", err
	}
	defer b.Close()
	return b.PowerState(ctx)
}
