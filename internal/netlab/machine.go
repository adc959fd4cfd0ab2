package netlab

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Machine is a VM with a power button, for a BMC stand-in to drive: off
// (no QEMU process) until PowerOn starts QEMU from the command line
// StartQEMU would run; PowerOff pulls the plug (QMP quit), Reset presses
// the reset button (QMP system_reset). Every power-on appends to one
// console file. Its methods take no testing.TB, so a Redfish stand-in can
// call them from its HTTP handlers' goroutines.
type Machine struct {
	MAC, Tap string

	poweredConsole

	cmd *qemuCommand

	mu     sync.Mutex
	vm     *QEMU // the current QEMU; nil before the first power-on
	starts int
}

// NewMachine sets up a powered-off VM (opts as for StartQEMU; Lab
// required). Reboot is always on: with -no-reboot QEMU turns a reset,
// QMP's system_reset included, into exiting, which is a power-off, not
// what a BMC's reset does. Whatever QEMU it runs is killed when the test
// ends; if the test failed, the tail of its console is logged.
func NewMachine(t testing.TB, opts QEMUOpts) *Machine {
	t.Helper()
	opts.Reboot = true
	cl := opts.commandLine(t)
	m := &Machine{MAC: cl.mac, Tap: cl.tap, cmd: cl,
		poweredConsole: poweredConsole{path: filepath.Join(cl.dir, "console.log"), who: "machine " + cl.mac}}
	t.Logf("netlab: machine %s powers on as qemu-system-x86_64 %s", m.MAC, strings.Join(cl.args, " "))
	t.Cleanup(func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		if m.vm != nil {
			m.vm.kill()
		}
		if t.Failed() {
			t.Logf("netlab: last console lines of machine %s:\n%s", m.MAC, tail(m.Console(), 40))
		}
	})
	return m
}

// on reports whether QEMU runs; m.mu held.
func (m *Machine) on() bool {
	if m.vm == nil {
		return false
	}
	select {
	case <-m.vm.done:
		return false
	default:
		return true
	}
}

// PowerOn starts QEMU unless it runs, and returns once QEMU answers on
// QMP that the VM is running (or with ctx's error).
func (m *Machine) PowerOn(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.on() {
		return nil
	}
	vm, err := m.cmd.start(m.path)
	if err != nil {
		return fmt.Errorf("netlab: machine %s: %w", m.MAC, err)
	}
	m.vm = vm
	m.starts++
	// The QMP socket appears once QEMU has set the machine up.
	for {
		status, err := qmpExecute(ctx, vm.qmp, "query-status")
		if err == nil {
			var s struct{ Running bool }
			if json.Unmarshal(status, &s) == nil && s.Running {
				return nil
			}
		}
		select {
		case <-vm.done:
			return fmt.Errorf("netlab: machine %s: QEMU exited at power-on (%v): %s", m.MAC, vm.err, tail(m.Console(), 5))
		case <-ctx.Done():
			return fmt.Errorf("netlab: machine %s: not running after power-on: %w (last: %v)", m.MAC, ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// PowerOff ends QEMU at once (QMP quit, a kill if that does not end it
// before ctx does). Off already is no error.
func (m *Machine) PowerOff(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.on() {
		return nil
	}
	_, err := qmpExecute(ctx, m.vm.qmp, "quit")
	select {
	case <-m.vm.done:
		return nil
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
	}
	m.vm.kill()
	if err != nil {
		return fmt.Errorf("netlab: machine %s: %w (killed instead)", m.MAC, err)
	}
	return nil
}

// Reset restarts a running VM from its firmware (QMP system_reset). A
// reset button does nothing to a machine that is off: that is an error.
func (m *Machine) Reset(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.on() {
		return fmt.Errorf("netlab: machine %s: reset: powered off", m.MAC)
	}
	if _, err := qmpExecute(ctx, m.vm.qmp, "system_reset"); err != nil {
		return fmt.Errorf("netlab: machine %s: %w", m.MAC, err)
	}
	return nil
}

// PowerState reports whether the machine is on: its QEMU process runs.
func (m *Machine) PowerState(ctx context.Context) (bool, error) {
	return m.Running(), nil
}

// Running reports whether QEMU runs.
func (m *Machine) Running() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.on()
}

// PowerOns counts the times QEMU was started.
func (m *Machine) PowerOns() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.starts
}
