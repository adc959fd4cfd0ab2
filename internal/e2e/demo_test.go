package e2e

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/bootstrapd/bootstrapd/internal/netlab"
)

// TestDemo runs `make demo` (one node) end to end, twice: the node must
// end ready (its worker, in the VM booted from its own disk, read its key
// from Vault through Nomad's token integration and registered with the
// TSA stand-in), having passed every state and every console milestone
// (install, reboot, disk boot, runit, Nomad), with its DNS record on the
// router stand-in and registered in Nomad; and the second run passing
// shows the first left nothing behind (namespaces, processes, files).
func TestDemo(t *testing.T) {
	netlab.NeedRoot(t)
	root, err := netlab.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	ready := regexp.MustCompile(`demo1\s+ready\s+([0-9.]+)s\s+nomad: concourse worker running`)
	for run := 1; run <= 2; run++ {
		cmd := exec.Command("make", "-s", "demo", "NODES=1")
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		text := string(out)
		if err != nil {
			t.Fatalf("run %d: make demo: %v\n%s", run, err, tailLines(text, 60))
		}
		for _, want := range []string{
			"demo1  enrolled", "demo1  installing", "demo1  installed", "demo1  joined",
			"wrote the Nomad servers' Vault token",
			"Nomad 1.6.1: the token integration for Vault",
			"registered job concourse-worker",
			"name=demo1.demo.lab",
			"demo1 console: installed: rebooting",
			"demo1 console: disk boot: root mounted from the disk",
			"demo1 console: nomad: the client joined the servers",
			"stand-in TSA: worker demo1 registered",
			"demo: cleaned up",
		} {
			if !strings.Contains(text, want) {
				t.Errorf("run %d: the demo's output lacks %q:\n%s", run, want, tailLines(text, 40))
			}
		}
		m := ready.FindStringSubmatch(text)
		if m == nil {
			t.Fatalf("run %d: demo1 did not end ready:\n%s", run, tailLines(text, 40))
		}
		t.Logf("run %d: demo1 ready %ss after the demo started", run, m[1])
		if ns, _ := exec.Command("ip", "netns", "list").Output(); strings.Contains(string(ns), "bootstrapd-demo") {
			t.Errorf("run %d left namespaces: %s", run, ns)
		}
		if _, err := os.Stat("/tmp/bootstrapd-demo"); err == nil {
			t.Errorf("run %d left /tmp/bootstrapd-demo", run)
		}
		if ps, _ := exec.Command("pgrep", "-f", "routeros-standin|concourse-standin|/tmp/bootstrapd-demo").Output(); len(ps) > 0 {
			t.Errorf("run %d left processes: %s", run, ps)
		}
	}
}
