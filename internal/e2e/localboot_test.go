package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/bootstrapd/bootstrapd/internal/inventory"
	"github.com/bootstrapd/bootstrapd/internal/netlab"
)

// localBootDoc is the table TestVoidInstall writes (with
// BOOTSTRAPD_UPDATE_DOCS=1) and checks (without).
const localBootDoc = "docs/local-boot.md"

// bootMethods in the order the table lists them.
var bootMethods = []string{inventory.BootExit, inventory.BootSanboot, inventory.BootNone}

// localBootResult is one cell of the table: whether an installed node
// with that method reached its disk under that firmware, how, and how
// long from the reset to its root being mounted.
type localBootResult struct {
	firmware, method string
	reached          bool
	fallback         bool // reached only after the boot script gave up
	how              string
	took             time.Duration
}

// checkLocalBootDoc compares what TestVoidInstall measured with
// docs/local-boot.md, or writes the file with BOOTSTRAPD_UPDATE_DOCS=1.
// The "reaches the disk" column must match on every run; the times are
// those of the run that wrote it.
func checkLocalBootDoc(t *testing.T, results <-chan []localBootResult) {
	t.Helper()
	var all []localBootResult
	for r := range results {
		all = append(all, r...)
	}
	table := localBootTable(all)
	root, _ := netlab.RepoRoot()
	path := filepath.Join(root, localBootDoc)
	const regen = "BOOTSTRAPD_UPDATE_DOCS=1 go test -run TestVoidInstall ./internal/e2e/"
	if os.Getenv("BOOTSTRAPD_UPDATE_DOCS") != "" {
		if err := os.WriteFile(path, []byte(table), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s:\n%s", localBootDoc, table)
		return
	}
	doc, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (%s writes it)", err, regen)
	}
	if got, want := reachColumn(string(doc)), reachColumn(table); got == "" || got != want {
		t.Errorf("%s says:\n%s\nthis run measured:\n%s\n(%s rewrites it)", localBootDoc, got, want, regen)
	}
	t.Logf("measured:\n%s", table)
}

// localBootRuns resets the installed node's VM once per method and
// records whether and how it reaches its disk.
func localBootRuns(t *testing.T, fw string, d *daemon, vm *netlab.QEMU) []localBootResult {
	t.Helper()
	var out []localBootResult
	for _, m := range bootMethods {
		d.mustCLI(t, "node", "boot", "n1", m)
		from := len(vm.Console())
		start := time.Now()
		res := localBootResult{firmware: fw, method: m}
		if err := vm.Reset(); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
		_, err := vm.WaitConsoleFrom(ctx, from, diskBootMark)
		cancel()
		res.took = time.Since(start)
		seen := vm.Console()[from:]
		res.reached = err == nil
		switch {
		case !res.reached:
			res.how = "did not reach the disk in 3 min: " + strings.TrimSpace(tailLines(seen, 1))
		case strings.Contains(seen, "giving up; falling back"):
			res.fallback = true
			res.how = "the script failed three times; iPXE exited to the next boot device"
		case m == inventory.BootSanboot:
			res.how = "iPXE booted the disk itself"
		default:
			res.how = "iPXE exited; the firmware booted the next device"
		}
		t.Logf("%s %s: reached=%v in %s (%s)", fw, m, res.reached, res.took.Round(time.Second), res.how)
		out = append(out, res)
	}
	return out
}

// diskBootMark is what the installed system's initramfs (the dracut
// stand-in) prints once it has mounted the root from the disk.
const diskBootMark = "mounted; switch_root to /sbin/init"

// localBootTable renders the results as docs/local-boot.md.
func localBootTable(rs []localBootResult) string {
	var b strings.Builder
	b.WriteString(`# Which local-boot method reaches the disk

Written by ` + "`BOOTSTRAPD_UPDATE_DOCS=1 go test -run TestVoidInstall ./internal/e2e/`" + `,
which installs a node under each firmware (QEMU under TCG: SeaBIOS with
Debian's iPXE option ROM, and OVMF with EDK2's own PXE chaining
snponly.efi), then resets it once per method and times the reset until
the installed system's initramfs has mounted its root. "fallback" means
the method itself failed and the machine reached its disk only because
bootstrapd's boot script gives up after three tries and leaves iPXE with
an error. The test checks the "reaches the disk" column on every run; the times are from the run
that wrote this file (TCG on a shared 2-core machine: compare them with
each other, not with hardware).

Change a node's method with ` + "`bootstrapd node boot <node> exit|sanboot|none`" + `, or a
profile's default with ` + "`local_boot`" + `.

| firmware | method | reaches the disk | reset to root mounted | how |
|---|---|---|---|---|
`)
	for _, fw := range []string{"bios", "uefi"} {
		for _, m := range bootMethods {
			for _, r := range rs {
				if r.firmware == fw && r.method == m {
					yes := "no"
					switch {
					case r.fallback:
						yes = "fallback"
					case r.reached:
						yes = "yes"
					}
					fmt.Fprintf(&b, "| %s | %s | %s | %.0f s | %s |\n", fw, m, yes, r.took.Seconds(), r.how)
				}
			}
		}
	}
	return b.String()
}

var reachRow = regexp.MustCompile(`(?m)^\| (bios|uefi) \| (\w+) \| (yes|fallback|no) \|`)

// reachColumn is the part of the table every run must reproduce.
func reachColumn(doc string) string {
	var rows []string
	for _, m := range reachRow.FindAllStringSubmatch(doc, -1) {
		rows = append(rows, m[1]+" "+m[2]+" "+m[3])
	}
	return strings.Join(rows, "\n")
}
