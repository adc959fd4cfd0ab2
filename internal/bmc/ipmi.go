package bmc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/bougou/go-ipmi/pkg/client"
	"github.com/bougou/go-ipmi/pkg/command/chassis"
	"github.com/bougou/go-ipmi/pkg/types"
)

// ipmiBMC is an IPMI 2.0 (RMCP+, "lanplus") session through
// github.com/bougou/go-ipmi. Only cipher suites 17 and 3 are proposed, and
// the guard on the socket refuses any answer that would settle on other
// algorithms, so the session is never unauthenticated (suite 0) and never
// IPMI 1.5.
type ipmiBMC struct {
	t     Target
	o     Options
	log   *slog.Logger
	c     *client.Client
	guard *cipherGuard

	mu     sync.Mutex
	closed bool
}

func openIPMI(ctx context.Context, t Target, cr Credentials, o Options) (BMC, error) {
	log := o.logger().With("bmc", t.Name())
	c, err := client.NewClient(t.Host, t.Port, cr.User, cr.Password)
	if err != nil {
		// go-ipmi refuses only a user name longer than IPMI allows.
		return nil, failure(t, "log in", ErrAuth, errors.New("the user name is longer than IPMI's 16 characters"), "check the BMC user")
	}
	guard := &cipherGuard{}
	dial := o.dialer()
	c.WithInterface(client.InterfaceLanplus).
		// The SHA-256 suite first; suite 3 (SHA-1, the one IPMI 2.0
		// requires every BMC to offer) when a BMC refuses 17, as
		// OpenIPMI's simulator does.
		WithCipherSuiteID(types.CipherSuiteID17, types.CipherSuiteID3).
		// Each datagram waits a second for its answer and is sent again
		// until the call's timeout, not a fixed five times.
		WithTimeout(time.Second).
		WithRetry(int(o.timeout() / time.Second)).
		WithUDPProxy(proxyDialer(func(network, addr string) (net.Conn, error) {
			dctx, cancel := context.WithTimeout(context.Background(), o.timeout())
			defer cancel()
			nc, err := dial(dctx, network, addr)
			if err != nil {
				return nil, err
			}
			return guard.wrap(nc), nil
		}))
	b := &ipmiBMC{t: t, o: o, log: log, c: c, guard: guard}
	cctx, cancel := context.WithTimeout(ctx, o.timeout())
	defer cancel()
	if err := c.Connect(cctx); err != nil {
		// The session never started: close the socket without the Close
		// Session exchange a dead BMC would make wait.
		guard.close()
		return nil, b.loginError(cctx, err)
	}
	log.Debug("bmc: IPMI session open", "user", cr.User, "cipher_suite", guard.suite())
	return b, nil
}

// loginError says why the session did not start, and what to do. go-ipmi
// joins its per-suite errors into words, so the RMCP+ status codes come
// from the guard, which saw the BMC's answers.
func (b *ipmiBMC) loginError(ctx context.Context, err error) error {
	open, rakp, rakp2 := b.guard.statuses()
	const cipherFix = "enable cipher suite 17 or 3 for IPMI over LAN in the BMC's settings; bootstrapd never uses suite 0"
	const authFix = "check the BMC user and password: the bmc block's user and password_file, or the node's override"
	switch {
	case b.guard.refused() != nil:
		return failure(b.t, "log in", ErrCipherSuite, b.guard.refused(), cipherFix)
	case authStatus(types.RmcpStatusCode(rakp)):
		return failure(b.t, "log in", ErrAuth, fmt.Errorf("RMCP+ status %#02x: %s", rakp, types.RmcpStatusCode(rakp)), authFix)
	case rakp2 > 0 && strings.Contains(err.Error(), client.ErrRAKPAuthentication.Error()):
		// RAKP message 2 came back fine but its HMAC, keyed with the
		// password, did not match ours.
		return failure(b.t, "log in", ErrAuth, errors.New("the BMC's RAKP answer does not match the password"), authFix)
	case cipherStatus(types.RmcpStatusCode(open)):
		return failure(b.t, "log in", ErrCipherSuite, fmt.Errorf("the BMC refused cipher suites 17 and 3: RMCP+ status %#02x: %s", open, types.RmcpStatusCode(open)), cipherFix)
	case expired(ctx) || timeout(err) || strings.Contains(err.Error(), "no datagram matched"):
		return failure(b.t, "log in", ErrTimeout, nil,
			fmt.Sprintf("no answer on UDP %s within %s: check the address, that IPMI over LAN is enabled, and that a firewall lets UDP through", b.t.Address(), b.o.timeout()))
	case isRefused(err):
		return failure(b.t, "log in", ErrUnreachable, errors.New("nothing answers IPMI on that address"),
			"check the address and port, and that IPMI over LAN is enabled on the BMC")
	default:
		return failure(b.t, "log in", ErrProtocol, err, "check that this address is an IPMI 2.0 BMC")
	}
}

// expired reports whether ctx is done or its deadline has passed (go-ipmi
// may give up at the deadline a moment before ctx says so).
func expired(ctx context.Context) bool {
	d, ok := ctx.Deadline()
	return ctx.Err() != nil || ok && !time.Now().Before(d)
}

// cipherStatus reports whether an RMCP+ status code says the BMC will not
// use the proposed algorithms.
func cipherStatus(s types.RmcpStatusCode) bool {
	switch s {
	case types.RmcpStatusCodeInvalidAuthAlg, types.RmcpStatusCodeInvalidIntegrityAlg,
		types.RmcpStatusCodeNoMatchingAuthPayload, types.RmcpStatusCodeNoMatchingIntegrityPayload,
		types.RmcpStatusCodeInvalidConfidentAlg, types.RmcpStatusCodeNoCipherSuiteMatch:
		return true
	}
	return false
}

// authStatus reports whether an RMCP+ status code refuses the user or
// password.
func authStatus(s types.RmcpStatusCode) bool {
	switch s {
	case types.RmcpStatusCodeUnauthorizedName, types.RmcpStatusCodeInvalidIntegrityCheckValue,
		types.RmcpStatusCodeInvalidNameLength, types.RmcpStatusCodeUnauthorizedRoleOfPriLevel:
		return true
	}
	return false
}

func timeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

func isRefused(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && !oe.Timeout()
}

// call runs one exchange under the call timeout, turning a failure into
// the error the caller shows.
func (b *ipmiBMC) call(ctx context.Context, op string, fn func(ctx context.Context) error) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return failure(b.t, op, ErrProtocol, errors.New("the session is closed"), "")
	}
	cctx, cancel := context.WithTimeout(ctx, b.o.timeout())
	defer cancel()
	err := fn(cctx)
	switch {
	case err == nil:
		return nil
	case expired(cctx) || timeout(err) || strings.Contains(err.Error(), "no datagram matched"):
		return failure(b.t, op, ErrTimeout, nil, fmt.Sprintf("the BMC stopped answering within %s; check that it is up", b.o.timeout()))
	case isRefused(err):
		return failure(b.t, op, ErrUnreachable, err, "check that the BMC is up")
	default:
		return err
	}
}

func (b *ipmiBMC) status(ctx context.Context) (State, error) {
	var on bool
	err := b.call(ctx, "power status", func(ctx context.Context) error {
		r, err := b.c.GetChassisStatus(ctx)
		if err != nil {
			return b.refused("power status", err)
		}
		on = r.PowerIsOn
		return nil
	})
	if err != nil {
		return Unknown, err
	}
	if on {
		return On, nil
	}
	return Off, nil
}

// refused turns a completion code into an error naming it.
func (b *ipmiBMC) refused(op string, err error) error {
	if re, ok := types.IsResponseError(err); ok {
		return failure(b.t, op, ErrProtocol, fmt.Errorf("the BMC refused: completion code %#02x (%s)", uint8(re.CompletionCode()), re.CompletionCode()), "")
	}
	return err
}

func (b *ipmiBMC) PowerState(ctx context.Context) (State, string, error) {
	s, err := b.status(ctx)
	if err != nil {
		return Unknown, "", err
	}
	return s, "chassis power is " + string(s), nil
}

func (b *ipmiBMC) Power(ctx context.Context, a Action) (string, error) {
	was, err := b.status(ctx)
	if err != nil {
		return "", err
	}
	var control chassis.ChassisControl
	var answer string
	switch {
	case a == PowerOn && was == On, a == PowerOff && was == Off:
		answer = "chassis power was already " + string(was)
		b.log.Info("bmc: power", "action", a, "answer", answer)
		return answer, nil
	case a == PowerOn, a == PowerCycle && was == Off:
		control, answer = chassis.ChassisControlPowerUp, "chassis power up (was "+string(was)+")"
	case a == PowerOff:
		control, answer = chassis.ChassisControlPowerDown, "chassis power down (was on)"
	case a == PowerCycle:
		control, answer = chassis.ChassisControlPowerCycle, "chassis power cycle (was on)"
	default:
		return "", fmt.Errorf("BMC %s: unknown power action %q (want on, off or cycle)", b.t.Name(), a)
	}
	err = b.call(ctx, "power "+string(a), func(ctx context.Context) error {
		_, err := b.c.ChassisControl(ctx, control)
		return b.refused("power "+string(a), err)
	})
	if err != nil {
		return "", err
	}
	b.log.Info("bmc: power", "action", a, "answer", answer)
	return answer, nil
}

// BootPXEOnce sets boot flags (parameter 5 of Set System Boot Options):
// valid, next boot only, force PXE, the EFI bit when uefi. A BMC that
// answers with a completion code does not support it (OpenIPMI's
// simulator answers 0xcc): that is ErrBootUnsupported.
func (b *ipmiBMC) BootPXEOnce(ctx context.Context, uefi bool) (string, error) {
	mode := types.BIOSBootTypeLegacy
	answer := "boot flags set: PXE, next boot only, legacy BIOS"
	if uefi {
		mode = types.BIOSBootTypeEFI
		answer = "boot flags set: PXE, next boot only, EFI"
	}
	err := b.call(ctx, "set one-time PXE boot", func(ctx context.Context) error {
		err := b.c.SetBootDevice(ctx, types.BootDeviceSelectorForcePXE, mode, false)
		if re, ok := types.IsResponseError(err); ok {
			return failure(b.t, "set one-time PXE boot", ErrBootUnsupported,
				fmt.Errorf("completion code %#02x (%s)", uint8(re.CompletionCode()), re.CompletionCode()),
				"the node boots by its own boot order: put network boot first in its firmware")
		}
		return err
	})
	if err != nil {
		b.log.Warn("bmc: one-time PXE boot", "error", err)
		return "", err
	}
	b.log.Info("bmc: one-time PXE boot", "uefi", uefi, "answer", answer)
	return answer, nil
}

// Close ends the session (Close Session, bounded by the call timeout) and
// the socket.
func (b *ipmiBMC) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	ctx, cancel := context.WithTimeout(context.Background(), b.o.timeout())
	defer cancel()
	if err := b.c.Close(ctx); err != nil {
		b.guard.close()
		return failure(b.t, "close session", classify(err), nil, "")
	}
	return nil
}

// proxyDialer adapts a function to golang.org/x/net/proxy.Dialer, the hook
// go-ipmi offers for its socket.
type proxyDialer func(network, addr string) (net.Conn, error)

func (d proxyDialer) Dial(network, addr string) (net.Conn, error) { return d(network, addr) }
