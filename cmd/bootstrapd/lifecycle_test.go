package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bootstrapd/bootstrapd/internal/api"
	"github.com/bootstrapd/bootstrapd/internal/inventory"
	"github.com/bootstrapd/bootstrapd/internal/inventory/inventorytest"
	"github.com/bootstrapd/bootstrapd/internal/profile"
)

// serveAPI serves the admin API over a real inventory on a unix socket, as
// the daemon does, and returns the address the CLI takes.
func serveAPI(t *testing.T, inv *inventory.Inventory, defaultProfile string) string {
	t.Helper()
	s := &api.Server{Inv: inv, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), DefaultProfile: defaultProfile,
		Profiles: map[string]*profile.Profile{
			"void-nomad": {Name: "void-nomad", Kernel: "void/vmlinuz", LocalBoot: "sanboot", Timeout: time.Hour},
			"plain":      {Name: "plain", Kernel: "vmlinuz", Timeout: time.Hour},
		}}
	sock := filepath.Join(t.TempDir(), "api.sock")
	l, err := api.ListenUnix(sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: s.Handler()}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return "unix://" + sock
}

// walk moves a node through states once it exists and is in from, as the
// daemon would on the node's reports; done is closed when it has.
func walk(t *testing.T, inv *inventory.Inventory, mac string, from inventory.State, steps func(ctx context.Context) error) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		ctx := context.Background()
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if n, ok := inv.Node(mac); ok && n.State == from {
				if err := steps(ctx); err != nil {
					t.Error(err)
				}
				return
			}
		}
		t.Errorf("%s never became %s", mac, from)
	}()
	return done
}

// TestEnrollWait: `enroll -wait ready <mac>` (the state before the MAC)
// prints the node's progress until it is ready; stopped by Ctrl-C it exits
// 3 and says the install goes on; a site with no default_profile refuses
// enroll without -profile and names the profiles.
func TestEnrollWait(t *testing.T) {
	inv := inventorytest.New(t, slog.New(slog.NewTextHandler(io.Discard, nil)))
	addr := serveAPI(t, inv, "")
	ctx := context.Background()
	const mac = "52:54:00:aa:bb:01"

	code, out, errOut := cli(ctx, addr, "enroll", mac)
	if code != exitFailed || !strings.Contains(errOut, "give -profile plain, or set default_profile in the site (loaded: plain, void-nomad)") {
		t.Fatalf("enroll without a profile: exit %d, %q %q", code, out, errOut)
	}

	done := walk(t, inv, mac, inventory.Enrolled, func(ctx context.Context) error {
		for _, s := range []inventory.State{inventory.Installing, inventory.Installed, inventory.Joined, inventory.Ready} {
			if _, err := inv.Move(ctx, mac, s, "test", "test"); err != nil {
				return err
			}
		}
		return nil
	})
	code, out, errOut = cli(ctx, addr, "enroll", "-wait", "ready", mac, "-profile", "plain")
	<-done
	if code != 0 || !strings.Contains(out, "enrolled "+mac+" as n1") || !strings.Contains(out, "profile plain") ||
		!strings.Contains(out, "n1: joined -> ready") || !strings.Contains(out, "n1 is ready after") {
		t.Errorf("enroll -wait ready: exit %d\n%s%s", code, out, errOut)
	}

	// Ctrl-C while waiting: the install goes on, and the exit code says so.
	stop, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	code, out, errOut = cli(stop, addr, "enroll", "52:54:00:aa:bb:02", "-profile", "plain", "-wait")
	if code != exitStopped || !strings.Contains(errOut, "stopped waiting; n2 is enrolled and the install goes on") {
		t.Errorf("enroll -wait, stopped: exit %d\n%s%s", code, out, errOut)
	}
}

// TestRetireOutput: with a teardown to do, retire says the node is
// retiring and which steps are pending, not that it is retired; -wait
// follows it to retired; -json -wait prints the node once, as it ends;
// without a teardown retire is done at once and says so.
func TestRetireOutput(t *testing.T) {
	inv := inventorytest.New(t, slog.New(slog.NewTextHandler(io.Discard, nil)))
	addr := serveAPI(t, inv, "plain")
	ctx := context.Background()
	for _, mac := range []string{"52:54:00:aa:bb:01", "52:54:00:aa:bb:02", "52:54:00:aa:bb:03"} {
		if code, out, errOut := cli(ctx, addr, "enroll", mac); code != 0 {
			t.Fatalf("enroll: %d %s %s", code, out, errOut)
		}
	}
	teardown := func(mac string) <-chan struct{} {
		return walk(t, inv, mac, inventory.Retiring, func(ctx context.Context) error {
			for _, s := range []string{"drain", "revoke token"} {
				if err := inv.StepDone(ctx, mac, s, "retire: "+s+" done", "test"); err != nil {
					return err
				}
			}
			_, err := inv.FinishRetire(ctx, mac, "test")
			return err
		})
	}
	inv.RetireSteps = func(inventory.Node) []string { return []string{"drain", "revoke token"} }

	code, out, errOut := cli(ctx, addr, "retire", "n1")
	want := "retiring n1 (52:54:00:aa:bb:01): drain, revoke token pending; it is retired when they are done (`bootstrapd retire -wait n1` follows it)\n"
	if code != 0 || out != want || strings.Contains(out, "free") {
		t.Errorf("retire: exit %d, %q %q; want %q", code, out, errOut, want)
	}

	done := teardown("52:54:00:aa:bb:02")
	code, out, errOut = cli(ctx, addr, "retire", "-wait", "n2")
	<-done
	if code != 0 || !strings.HasPrefix(out, "retiring n2 (52:54:00:aa:bb:02): drain, revoke token pending\n") ||
		!strings.Contains(out, "n2: retire: revoke token done") || !strings.Contains(out, "n2 is retired after") {
		t.Errorf("retire -wait: exit %d\n%s%s", code, out, errOut)
	}

	done = teardown("52:54:00:aa:bb:03")
	code, out, errOut = cli(ctx, addr, "retire", "n3", "-json", "-wait")
	<-done
	var n inventory.Node
	if err := json.Unmarshal([]byte(out), &n); code != 0 || err != nil || n.State != inventory.Retired || len(n.Pending) != 0 {
		t.Errorf("retire -json -wait: exit %d, %v\n%s%s", code, err, out, errOut)
	}

	inv.RetireSteps = nil
	if code, out, _ := cli(ctx, addr, "enroll", "52:54:00:aa:bb:04"); code != 0 {
		t.Fatal(out)
	}
	code, out, _ = cli(ctx, addr, "retire", "52:54:00:aa:bb:04", "-wait")
	if code != 0 || out != "retired n4 (52:54:00:aa:bb:04); its hostname and address are free\n" {
		t.Errorf("retire with nothing to tear down: exit %d, %q", code, out)
	}
}
