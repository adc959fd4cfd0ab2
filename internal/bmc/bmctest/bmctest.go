// Package bmctest is a fake BMC for the daemon's tests: a machine's power
// state and one-time boot device, every call recorded, and each way a
// real controller fails (wrong password, unreachable, hung, a boot device
// refused, an action refused) on demand. The protocols themselves are
// tested against real counterparts in package bmc; this is what lets the
// lifecycle around them be tested without one.
package bmctest

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"

	"github.com/bootstrapd/bootstrapd/internal/bmc"
)

// Errors the fake fails with: the kinds package bmc's errors wrap.
var (
	ErrAuth        = bmc.ErrAuth
	ErrUnreachable = bmc.ErrUnreachable
)

// BMC is one fake controller. Its zero value is a machine that is off and
// accepts any credentials; set the fields before handing it out, or
// change them later with Set.
type BMC struct {
	mu sync.Mutex
	// Power is the machine's power state ("" is off).
	Power bmc.State
	// User and Password, when Password is set, are the only credentials
	// Open accepts; others get ErrAuth.
	User, Password string
	// Down makes Open fail with ErrUnreachable.
	Down bool
	// Hang makes every call, Open included, block until its context ends:
	// a BMC that stopped answering.
	Hang bool
	// RefuseBoot makes BootPXEOnce fail with bmc.ErrBootUnsupported, as
	// OpenIPMI's simulator does.
	RefuseBoot bool
	// Fail makes the named method ("PowerState", "Power", "BootPXEOnce")
	// fail with the error.
	Fail map[string]error

	calls   []string
	creds   []bmc.Credentials
	boot    string // the one-time boot device set and not yet used: "pxe-uefi", "pxe-legacy"
	hanging chan struct{}
}

// Set changes the fake under its lock.
func (f *BMC) Set(change func(f *BMC)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	change(f)
}

// Calls is what was done to the BMC, in order: "open", "state", "power
// on", "boot pxe uefi", "close", ...
func (f *BMC) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// Credentials are the credentials each Open was given.
func (f *BMC) Credentials() []bmc.Credentials {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.creds)
}

// State is the machine's power state now.
func (f *BMC) State() bmc.State {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.state()
}

// BootOnce is the one-time boot device set and not yet used by a power-on
// ("pxe-uefi", "pxe-legacy"), or "".
func (f *BMC) BootOnce() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.boot
}

// Hanging returns a channel closed once a call is blocked on Hang, so a
// test knows the hang is under way.
func (f *BMC) Hanging() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.hanging == nil {
		f.hanging = make(chan struct{})
	}
	return f.hanging
}

func (f *BMC) state() bmc.State {
	if f.Power == "" {
		return bmc.Off
	}
	return f.Power
}

// call records name and, for a hanging BMC, blocks until ctx ends. It
// returns the error the call fails with, if any. Called without the lock.
func (f *BMC) call(ctx context.Context, name, method string) error {
	f.mu.Lock()
	f.calls = append(f.calls, name)
	hang, err := f.Hang, f.Fail[method]
	if hang {
		if f.hanging == nil {
			f.hanging = make(chan struct{})
		}
		select {
		case <-f.hanging:
		default:
			close(f.hanging)
		}
	}
	f.mu.Unlock()
	if hang {
		<-ctx.Done()
		return fmt.Errorf("%w (%v)", bmc.ErrTimeout, ctx.Err())
	}
	return err
}

// Open logs in: it is what the daemon's OpenBMC calls with the node's URL
// and credentials.
func (f *BMC) Open(ctx context.Context, _ *url.URL, c bmc.Credentials) (bmc.BMC, error) {
	f.mu.Lock()
	f.creds = append(f.creds, c)
	down, wrong := f.Down, f.Password != "" && (c.User != f.User || c.Password != f.Password)
	f.mu.Unlock()
	if err := f.call(ctx, "open", "Open"); err != nil {
		return nil, err
	}
	switch {
	case down:
		return nil, ErrUnreachable
	case wrong:
		return nil, ErrAuth
	}
	return &session{f}, nil
}

// session is one login.
type session struct{ f *BMC }

func (s *session) PowerState(ctx context.Context) (bmc.State, string, error) {
	if err := s.f.call(ctx, "state", "PowerState"); err != nil {
		return bmc.Unknown, "", err
	}
	st := s.f.State()
	return st, "chassis power is " + string(st), nil
}

func (s *session) Power(ctx context.Context, a bmc.Action) (string, error) {
	if err := s.f.call(ctx, "power "+string(a), "Power"); err != nil {
		return "", err
	}
	f := s.f
	f.mu.Lock()
	defer f.mu.Unlock()
	was := f.state()
	switch a {
	case bmc.PowerOn, bmc.PowerCycle:
		f.Power = bmc.On
		if was == bmc.Off || a == bmc.PowerCycle {
			// The machine boots: a one-time boot device is used up.
			f.boot = ""
		}
	case bmc.PowerOff:
		f.Power = bmc.Off
	default:
		return "", fmt.Errorf("unknown power action %q", a)
	}
	return fmt.Sprintf("power %s: done (was %s)", a, was), nil
}

func (s *session) BootPXEOnce(ctx context.Context, uefi bool) (string, error) {
	mode := "legacy"
	if uefi {
		mode = "uefi"
	}
	if err := s.f.call(ctx, "boot pxe "+mode, "BootPXEOnce"); err != nil {
		return "", err
	}
	f := s.f
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.RefuseBoot {
		return "", fmt.Errorf("set boot device: completion code 0xcc (invalid data field): %w", bmc.ErrBootUnsupported)
	}
	f.boot = "pxe-" + mode
	return "next boot: PXE, " + mode + ", once", nil
}

func (s *session) Close() error {
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	s.f.calls = append(s.f.calls, "close")
	return nil
}

// Lab is a set of fake BMCs by host (and port, when the URL has one), as
// a rack has one per machine. A host it does not have is unreachable.
type Lab struct {
	mu   sync.Mutex
	bmcs map[string]*BMC
}

// Add puts a BMC at host ("10.0.9.11", or "10.0.9.11:6230") and returns it.
func (l *Lab) Add(host string, f *BMC) *BMC {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.bmcs == nil {
		l.bmcs = map[string]*BMC{}
	}
	l.bmcs[host] = f
	return f
}

// Open opens the BMC u names.
func (l *Lab) Open(ctx context.Context, u *url.URL, c bmc.Credentials) (bmc.BMC, error) {
	l.mu.Lock()
	f := l.bmcs[u.Host]
	if f == nil {
		f = l.bmcs[strings.TrimSuffix(u.Hostname(), ".")]
	}
	l.mu.Unlock()
	if f == nil {
		return nil, fmt.Errorf("%s: %w (no route to host)", u.Host, ErrUnreachable)
	}
	return f.Open(ctx, u, c)
}
