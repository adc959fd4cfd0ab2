package e2e

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/bootstrapd/bootstrapd/internal/netlab"
)

// TestDemo runs `make demo` (one node) end to end: the node must
// end ready (its worker, in the VM booted from its own disk, read its key
// from Vault through Nomad's token integration and registered with the
// TSA stand-in), having passed every state and every console milestone
// (install, reboot, disk boot, runit, Nomad), with its DNS record on the
// router stand-in and registered in Nomad; and it must leave nothing
// behind (namespaces, processes, files). One run: a node's whole life
// under TCG is minutes, and CI's budget is shared.
func TestDemo(t *testing.T) {
	netlab.NeedRoot(t)
	root, err := netlab.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	ready := regexp.MustCompile(`demo1\s+ready\s+([0-9.]+)s\s+nomad: concourse worker running`)
	cmd := exec.Command("make", "-s", "demo", "NODES=1")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	text := string(out)
	if err != nil {
		t.Fatalf("make demo: %v\n%s", err, tailLines(text, 60))
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
			t.Errorf("the demo's output lacks %q:\n%s", want, tailLines(text, 40))
		}
	}
	m := ready.FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("demo1 did not end ready:\n%s", tailLines(text, 40))
	}
	t.Logf("demo1 ready %ss after the demo started", m[1])
	if ns, _ := exec.Command("ip", "netns", "list").Output(); strings.Contains(string(ns), "bootstrapd-demo") {
		t.Errorf("the demo left namespaces: %s", ns)
	}
	if _, err := os.Stat("/tmp/bootstrapd-demo"); err == nil {
		t.Errorf("the demo left /tmp/bootstrapd-demo")
	}
	if ps, _ := exec.Command("pgrep", "-f", "routeros-standin|concourse-standin|/tmp/bootstrapd-demo").Output(); len(ps) > 0 {
		t.Errorf("the demo left processes: %s", ps)
	}
}
