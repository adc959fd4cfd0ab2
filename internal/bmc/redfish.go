package bmc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/bootstrapd/bootstrapd/internal/tlspin"
	"github.com/stmcginnis/gofish"
	"github.com/stmcginnis/gofish/schemas"
)

// redfishBMC is one Redfish session through github.com/stmcginnis/gofish:
// logged in through the SessionService (X-Auth-Token; the session is
// deleted on Close), one ComputerSystem driven by its Reset action and its
// Boot property.
type redfishBMC struct {
	t      Target
	o      Options
	log    *slog.Logger
	api    *gofish.APIClient
	system string // the ComputerSystem's @odata.id

	mu     sync.Mutex
	closed bool
}

func openRedfish(ctx context.Context, t Target, cr Credentials, o Options) (BMC, error) {
	log := o.logger().With("bmc", t.Name())
	tr := &http.Transport{DialContext: o.dialer(), ForceAttemptHTTP2: true, Proxy: nil}
	endpoint := "https://" + t.Address()
	if t.Scheme == "redfish+http" {
		endpoint = "http://" + t.Address()
		log.Warn("bmc: Redfish over plain HTTP: the password and session token cross the network in the clear")
	} else {
		if o.RootCAs == nil && o.Fingerprint == "" {
			return nil, failure(t, "connect", ErrSettings, errors.New("no CA and no certificate fingerprint to check the BMC's HTTPS certificate against"),
				"set the BMC's certificate fingerprint (or a CA), or use redfish+http:// where plain HTTP is acceptable")
		}
		conf, err := tlspin.Config(t.Host, o.RootCAs, o.Fingerprint, "the BMC")
		if err != nil {
			return nil, failure(t, "connect", ErrSettings, err, "fix the BMC's certificate fingerprint")
		}
		tr.TLSClientConfig = conf
	}
	cctx, cancel := context.WithTimeout(ctx, o.timeout())
	defer cancel()
	api, err := gofish.ConnectContext(cctx, gofish.ClientConfig{
		Endpoint:          endpoint,
		Username:          cr.User,
		Password:          cr.Password,
		HTTPClient:        &http.Client{Transport: tr, Timeout: o.timeout()},
		NoModifyTransport: true,
		ReuseConnections:  true,
	})
	if err != nil {
		tr.CloseIdleConnections()
		return nil, redfishError(t, o, "log in", err)
	}
	b := &redfishBMC{t: t, o: o, log: log, api: api, system: t.SystemPath}
	if b.system == "" {
		if b.system, err = b.discover(cctx); err != nil {
			b.Close()
			return nil, err
		}
	}
	log.Debug("bmc: Redfish session open", "user", cr.User, "system", b.system)
	return b, nil
}

// discover finds the one ComputerSystem the service root's Systems
// collection lists; with none or several the URL must name it.
func (b *redfishBMC) discover(ctx context.Context) (string, error) {
	systems, err := b.api.WithContext(ctx).Service.Systems()
	if err != nil {
		return "", redfishError(b.t, b.o, "list systems", err)
	}
	switch len(systems) {
	case 1:
		return systems[0].ODataID, nil
	case 0:
		return "", failure(b.t, "list systems", ErrProtocol, errors.New("the service lists no ComputerSystem"), "check that this is the node's BMC")
	}
	var ids []string
	for _, s := range systems {
		ids = append(ids, s.ODataID)
	}
	slices.Sort(ids)
	return "", failure(b.t, "list systems", ErrProtocol, fmt.Errorf("the service lists %d systems: %s", len(ids), strings.Join(ids, ", ")),
		fmt.Sprintf("name the node's system in the URL, e.g. %s://%s%s", b.t.Scheme, b.t.Address(), ids[0]))
}

// redfishError classifies a failure from gofish or the HTTP client.
func redfishError(t Target, o Options, op string, err error) error {
	var re *schemas.Error
	if errors.As(err, &re) && re.HTTPReturnedStatusCode != 0 {
		switch re.HTTPReturnedStatusCode {
		case http.StatusUnauthorized:
			return failure(t, op, ErrAuth, nil, "check the BMC user and password: the bmc block's user and password_file, or the node's override")
		case http.StatusForbidden:
			return failure(t, op, ErrAuth, errors.New("the user may not do this (HTTP 403)"), "give the BMC user the Operator or Administrator role")
		}
		return failure(t, op, ErrProtocol, fmt.Errorf("HTTP %d: %s", re.HTTPReturnedStatusCode, redfishMessage(re)), "")
	}
	switch {
	case timeout(err):
		return failure(t, op, ErrTimeout, nil, fmt.Sprintf("no answer within %s: check the address and that the BMC's web service is up", o.timeout()))
	case strings.Contains(err.Error(), "fingerprint") || strings.Contains(err.Error(), "x509:") || strings.Contains(err.Error(), "tls:"):
		return failure(t, op, ErrCertificate, err, "check the fingerprint pinned for it, or the CA")
	case isRefused(err):
		return failure(t, op, ErrUnreachable, err, "check the address and port, and that the BMC's Redfish service is enabled")
	default:
		return failure(t, op, ErrProtocol, err, "check that this address is a Redfish service")
	}
}

// redfishMessage is what a Redfish error says in words: its
// @Message.ExtendedInfo messages, else its message, else its code.
func redfishMessage(e *schemas.Error) string {
	var msgs []string
	for _, info := range e.ExtendedInfos {
		if info.Message != "" {
			msgs = append(msgs, info.Message)
		}
	}
	switch {
	case len(msgs) > 0:
		return strings.Join(msgs, "; ")
	case e.Message != "" && !strings.HasPrefix(strings.TrimSpace(e.Message), "<"):
		return truncate(e.Message, 200)
	case e.Code != "":
		return e.Code
	}
	return "no message"
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// load fetches the system afresh under ctx, so each call sees its current
// power state and allowed reset types.
func (b *redfishBMC) load(ctx context.Context, op string) (*schemas.ComputerSystem, error) {
	if b.closed {
		return nil, failure(b.t, op, ErrProtocol, errors.New("the session is closed"), "")
	}
	s, err := schemas.GetObject[schemas.ComputerSystem](b.api.WithContext(ctx), b.system)
	if err != nil {
		return nil, redfishError(b.t, b.o, op, err)
	}
	return s, nil
}

func redfishState(s schemas.PowerState) State {
	switch s {
	case schemas.OnPowerState:
		return On
	case schemas.OffPowerState:
		return Off
	}
	return Unknown
}

func (b *redfishBMC) PowerState(ctx context.Context) (State, string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, b.o.timeout())
	defer cancel()
	s, err := b.load(ctx, "power status")
	if err != nil {
		return Unknown, "", err
	}
	return redfishState(s.PowerState), "PowerState " + string(s.PowerState), nil
}

// resetType picks the ResetType for an action from those the system
// allows (all of them when it lists none).
func resetType(a Action, was State, allowed []schemas.ResetType) (schemas.ResetType, error) {
	var want []schemas.ResetType
	switch {
	case a == PowerOn, a == PowerCycle && was == Off:
		want = []schemas.ResetType{schemas.OnResetType, schemas.ForceOnResetType, schemas.PushPowerButtonResetType}
	case a == PowerOff:
		want = []schemas.ResetType{schemas.ForceOffResetType, schemas.GracefulShutdownResetType}
	case a == PowerCycle:
		want = []schemas.ResetType{schemas.PowerCycleResetType, schemas.ForceRestartResetType, schemas.GracefulRestartResetType}
	default:
		return "", fmt.Errorf("unknown power action %q (want on, off or cycle)", a)
	}
	if len(allowed) == 0 {
		return want[0], nil
	}
	for _, w := range want {
		if slices.Contains(allowed, w) {
			return w, nil
		}
	}
	return "", fmt.Errorf("the system allows ResetType %v, none of %v", allowed, want)
}

func (b *redfishBMC) Power(ctx context.Context, a Action) (string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, b.o.timeout())
	defer cancel()
	op := "power " + string(a)
	s, err := b.load(ctx, op)
	if err != nil {
		return "", err
	}
	was := redfishState(s.PowerState)
	if a == PowerOn && was == On || a == PowerOff && was == Off {
		answer := "PowerState was already " + string(s.PowerState)
		b.log.Info("bmc: power", "action", a, "answer", answer)
		return answer, nil
	}
	allowed, err := s.GetSupportedResetTypes()
	if err != nil {
		return "", redfishError(b.t, b.o, op, err)
	}
	rt, err := resetType(a, was, allowed)
	if err != nil {
		return "", failure(b.t, op, ErrProtocol, err, "")
	}
	if _, err := s.Reset(rt); err != nil {
		return "", redfishError(b.t, b.o, op, err)
	}
	answer := fmt.Sprintf("ComputerSystem.Reset %s accepted (PowerState was %s)", rt, s.PowerState)
	b.log.Info("bmc: power", "action", a, "answer", answer)
	return answer, nil
}

// BootPXEOnce PATCHes the system's Boot: target Pxe, enabled Once, mode
// UEFI or Legacy. A 4xx answer is the service refusing the override:
// ErrBootUnsupported with the service's own message.
func (b *redfishBMC) BootPXEOnce(ctx context.Context, uefi bool) (string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, b.o.timeout())
	defer cancel()
	const op = "set one-time PXE boot"
	s, err := b.load(ctx, op)
	if err != nil {
		return "", err
	}
	mode := schemas.LegacyBootSourceOverrideMode
	if uefi {
		mode = schemas.UEFIBootSourceOverrideMode
	}
	err = s.SetBoot(&schemas.Boot{
		BootSourceOverrideTarget:  schemas.PxeBootSource,
		BootSourceOverrideEnabled: schemas.OnceBootSourceOverrideEnabled,
		BootSourceOverrideMode:    mode,
	})
	var re *schemas.Error
	switch {
	case errors.As(err, &re) && re.HTTPReturnedStatusCode >= 400 && re.HTTPReturnedStatusCode < 500 &&
		re.HTTPReturnedStatusCode != http.StatusUnauthorized:
		err = failure(b.t, op, ErrBootUnsupported, fmt.Errorf("HTTP %d: %s", re.HTTPReturnedStatusCode, redfishMessage(re)),
			"the node boots by its own boot order: put network boot first in its firmware")
	case err != nil:
		err = redfishError(b.t, b.o, op, err)
	}
	if err != nil {
		b.log.Warn("bmc: one-time PXE boot", "error", err)
		return "", err
	}
	answer := fmt.Sprintf("Boot override set: Pxe, Once, %s", mode)
	b.log.Info("bmc: one-time PXE boot", "uefi", uefi, "answer", answer)
	return answer, nil
}

// Close deletes the session (a BMC holds only a few) and drops the
// connections.
func (b *redfishBMC) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	defer b.api.HTTPClient.CloseIdleConnections()
	sess, err := b.api.GetSession()
	if err != nil {
		return nil // basic auth: nothing to end
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.o.timeout())
	defer cancel()
	if err := b.api.WithContext(ctx).Service.DeleteSession(sess.ID); err != nil {
		return redfishError(b.t, b.o, "end session", err)
	}
	return nil
}
