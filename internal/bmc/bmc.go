// Package bmc drives a node's power and one-time boot device through its
// baseboard management controller: IPMI 2.0 (RMCP+) or Redfish, and
// Wake-on-LAN for machines without one. The daemon sees only the BMC
// interface, so its tests use a fake and the protocol tests use real
// counterparts (OpenIPMI's ipmi_sim, the Redfish stand-in).
//
// Libraries, chosen for being pure Go and shelling out to nothing:
// IPMI is github.com/bougou/go-ipmi (Apache-2.0), limited here to RMCP+
// with cipher suites 17 and 3 and guarded against a BMC that answers with
// weaker algorithms (cipherguard.go). Redfish is
// github.com/stmcginnis/gofish (BSD-3-Clause), the client
// bmc-toolbox/bmclib's own Redfish provider is built on; bmclib itself
// was not used: the module proxy here does not serve it, and its
// "ipmitool" provider runs the ipmitool binary (the password in its
// environment), which the product must not do. Its "ipmi"/"goipmi"
// providers wrap the same go-ipmi used here.
package bmc

import (
	"context"
	"errors"
)

// ErrBootUnsupported is wrapped by BootPXEOnce when the BMC refuses a
// one-time boot device (OpenIPMI's simulator does, as do some real BMCs).
var ErrBootUnsupported = errors.New("the BMC does not support a one-time boot device")

// BMC is one node's controller, opened for one action or a short series.
// Every method returns the BMC's own answer in words, recorded in the
// node's history as the event's detail; errors name the BMC and say what
// to fix, never the password.
type BMC interface {
	// PowerState reports whether the machine is on.
	PowerState(ctx context.Context) (State, string, error)
	// Power turns the machine on or off, or cycles it (off then on; on
	// when it was off).
	Power(ctx context.Context, a Action) (string, error)
	// BootPXEOnce makes the next boot, and only it, a network boot, in
	// UEFI or legacy mode. A BMC that cannot returns ErrBootUnsupported
	// (wrapped): the caller records a warning and relies on the machine's
	// boot order.
	BootPXEOnce(ctx context.Context, uefi bool) (string, error)
	Close() error
}

// State is a machine's power state.
type State string

// Power states.
const (
	On      State = "on"
	Off     State = "off"
	Unknown State = "unknown"
)

// Action is a power action.
type Action string

// Power actions.
const (
	PowerOn    Action = "on"
	PowerOff   Action = "off"
	PowerCycle Action = "cycle"
)

// Credentials log in to a BMC. Password is never logged or printed.
type Credentials struct {
	User     string
	Password string
}

// String leaves the password out of every %v.
func (c Credentials) String() string { return "user=" + c.User }
