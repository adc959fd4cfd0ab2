package netlab

import (
	"context"
	"testing"
	"time"
)

// TestMachine: a Machine is off until PowerOn starts QEMU, which boots the
// network first; Reset boots it again in the same process; PowerOff ends
// the process; QMP says so each time.
func TestMachine(t *testing.T) {
	lab := NewLab(t, "10.79.1.1/24")
	m := NewMachine(t, QEMUOpts{Lab: lab})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if on, _ := m.PowerState(ctx); on {
		t.Fatal("machine on before PowerOn")
	}
	if err := m.Reset(ctx); err == nil {
		t.Error("Reset of a machine that is off succeeded")
	}
	if err := m.PowerOn(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := m.WaitConsole(ctx, "iPXE initialising devices"); err != nil {
		t.Fatal(err)
	}
	pid := m.vm.cmd.Process.Pid
	from := len(m.Console())
	if err := m.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := m.WaitConsoleFrom(ctx, from, "SeaBIOS"); err != nil {
		t.Fatal(err)
	}
	if !m.Running() || m.vm.cmd.Process.Pid != pid || m.PowerOns() != 1 {
		t.Errorf("after Reset: running %v, pid %d (was %d), %d power-ons", m.Running(), m.vm.cmd.Process.Pid, pid, m.PowerOns())
	}
	if err := m.PowerOn(ctx); err != nil || m.PowerOns() != 1 {
		t.Errorf("PowerOn of a running machine: %v, %d power-ons", err, m.PowerOns())
	}
	if err := m.PowerOff(ctx); err != nil {
		t.Fatal(err)
	}
	if on, _ := m.PowerState(ctx); on || processExists(pid) {
		t.Errorf("after PowerOff: on %v, process %d exists %v", on, pid, processExists(pid))
	}
	from = len(m.Console())
	if err := m.PowerOn(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := m.WaitConsoleFrom(ctx, from, "iPXE initialising devices"); err != nil {
		t.Fatal(err)
	}
}
