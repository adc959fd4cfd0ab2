package e2e

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/bootstrapd/bootstrapd/internal/api"
	"github.com/bootstrapd/bootstrapd/internal/inventory"
	"github.com/bootstrapd/bootstrapd/internal/netlab"
)

// The boot storm: a rack's worth of nodes powered on at the same moment,
// each doing what its PXE ROM and iPXE do (stormnode_test.go), against one
// bootstrapd serving as it does in the lab (no -debug). BenchmarkBootStorm
// is the measurement (`make bench-storm`); TestBootStorm runs a small
// storm so the harness and its checks keep working between measurements.

// stormOpts sizes a storm.
type stormOpts struct {
	nodes      int
	initrdSize int64 // bytes; the kernel is a fifth of it
}

// stormReport is what a storm measured.
type stormReport struct {
	opts    stormOpts
	results []stormResult
	wall    time.Duration // first power-on to the last node's end
	cpu     time.Duration // bootstrapd's user+system time during the storm
	genCPU  time.Duration // the load generator's (this process's), the same
	peakRSS int64         // bootstrapd's VmHWM after the storm
	// udpDrops is datagrams the lab's kernel dropped because a socket's
	// receive buffer was full: requests bootstrapd never saw.
	udpDrops int64
	// backlogDrops is packets the kernel dropped, on this whole machine,
	// because a CPU's input queue (netdev_max_backlog) was full: every
	// node's packets pass through the same two queues here, where real
	// nodes' would each have a NIC.
	backlogDrops int64
	// listenDrops is connections the lab's kernel refused because a
	// listening socket's accept queue was full (TcpExt ListenOverflows):
	// each costs its client a SYN retransmission, a second or more.
	listenDrops int64
	states      map[inventory.State]int
	// counters are bootstrapd's own DHCP and TFTP counters after the
	// storm: what it received, answered and dropped.
	counters []string
}

// stormCounters are the lines of bootstrapd's /metrics that say what its
// DHCP and TFTP servers received, answered, dropped and refused.
func stormCounters(tb testing.TB, lab *netlab.Lab) []string {
	tb.Helper()
	resp, err := lab.HTTPClient().Get("http://" + lab.Addr.String() + ":8080/metrics")
	if err != nil {
		tb.Fatalf("metrics: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("metrics: %v", err)
	}
	var out []string
	for _, line := range strings.Split(string(body), "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && f[1] != "0" && (strings.HasPrefix(line, "bootstrapd_dhcp_") || strings.HasPrefix(line, "bootstrapd_tftp_transfers_total") ||
			strings.HasPrefix(line, "bootstrapd_http_requests_total")) {
			out = append(out, line)
		}
	}
	return out
}

// Its addresses: bootstrapd on .0.1 of a /22, nodes from 10.98.1.0 on.
const stormLab = "10.98.0.1/22"

func stormNodeIP(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, 98, byte(1 + i/256), byte(i % 256)})
}

// runStorm builds the rack (namespaces, the daemon, enrolled nodes), powers
// every node on at once and waits for all of them to finish or fail.
func runStorm(tb testing.TB, o stormOpts) stormReport {
	tb.Helper()
	lab := netlab.NewLab(tb, stormLab)
	dir := tb.TempDir()
	writeSite(tb, lab, dir, `  mode   = "reservation"
  subnet = "10.98.0.0/22"`, `default_profile = "storm"`)
	writeStormProfile(tb, dir, o)
	d := startDaemonArgs(tb, lab, dir, strings.Fields(os.Getenv("BOOTSTRAPD_STORM_SERVE_FLAGS"))...)
	bootFile, err := os.Stat(filepath.Join(dir, "netboot", "undionly.kpxe"))
	if err != nil {
		tb.Fatal(err)
	}

	setup := time.Now()
	// A bridge takes the lowest MAC of its ports unless its own was set:
	// set it, so the neighbour entries below stay right as ports join.
	serverMAC, err := lab.Command(context.Background(), "cat", "/sys/class/net/"+lab.Bridge+"/address").Output()
	if err == nil {
		var out []byte
		if out, err = exec.Command("ip", "-n", lab.Name(), "link", "set", lab.Bridge, "address", strings.TrimSpace(string(serverMAC))).CombinedOutput(); err != nil {
			err = fmt.Errorf("%w: %s", err, out)
		}
	}
	if err != nil {
		tb.Fatalf("the lab bridge's MAC: %v", err)
	}
	nodes := make([]*stormNode, o.nodes)
	for i := range nodes {
		ip := stormNodeIP(i)
		h := lab.AddHost(tb, ip.String()+"/22")
		mac, err := net.ParseMAC(h.MAC)
		if err != nil {
			tb.Fatal(err)
		}
		// The kernel's neighbour table is one for all namespaces, and
		// above gc_thresh2 (512) entries it evicts and refuses them. A
		// node's own entry for bootstrapd, permanent, is not counted, so
		// the table holds what a real bootstrapd host's would: an entry
		// per node. (A real host with more than 512 nodes on its segment
		// needs gc_thresh2 and gc_thresh3 raised: docs/benchmarks.md.)
		if out, err := exec.Command("ip", "-n", h.Name(), "neigh", "replace", lab.Addr.String(), "lladdr",
			strings.TrimSpace(string(serverMAC)), "dev", h.Iface, "nud", "permanent").CombinedOutput(); err != nil {
			tb.Fatalf("neighbour entry in %s: %v: %s", h.Name(), err, out)
		}
		nodes[i] = &stormNode{host: h, mac: mac, ip: ip, bootFileSize: bootFile.Size()}
	}
	// Isolated bridge ports reach bootstrapd but not each other. Without
	// it the bridge would copy each node's broadcast DISCOVER and REQUEST
	// into 499 other namespaces, work a switch does in hardware that here
	// would take the CPU the measurement needs. (bootstrapd's own
	// broadcast replies still go to every node, as on a real segment.)
	var batch strings.Builder
	for _, n := range nodes {
		fmt.Fprintf(&batch, "link set dev %s type bridge_slave isolated on\n", n.host.Port)
	}
	cmd := exec.Command("ip", "-n", lab.Name(), "-batch", "-")
	cmd.Stdin = strings.NewReader(batch.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("isolating the bridge ports: %v: %s", err, out)
	}
	client, err := api.NewClient("unix://"+d.sock, "")
	if err != nil {
		tb.Fatal(err)
	}
	ctx := context.Background()
	var enroll errgroup.Group
	enroll.SetLimit(16)
	for _, n := range nodes {
		enroll.Go(func() error {
			_, err := client.Enroll(ctx, api.EnrollRequest{MAC: n.mac.String(), IP: n.ip.String()})
			return err
		})
	}
	if err := enroll.Wait(); err != nil {
		tb.Fatalf("enroll: %v", err)
	}
	tb.Logf("storm: %d nodes in namespaces and enrolled in %v", o.nodes, time.Since(setup).Round(100*time.Millisecond))

	pid := d.cmd.Process.Pid
	cpu0, gen0 := procCPU(tb, pid), procCPU(tb, os.Getpid())
	drops0 := labCounter(tb, lab, "snmp", "Udp", "RcvbufErrors")
	listen0 := labCounter(tb, lab, "netstat", "TcpExt", "ListenOverflows")
	backlog0 := backlogDrops(tb)
	rep := stormReport{opts: o, results: make([]stormResult, len(nodes))}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rep.results[i] = n.boot(ctx)
		}()
	}
	wg.Wait()
	rep.wall = time.Since(start)
	rep.cpu = procCPU(tb, pid) - cpu0
	rep.genCPU = procCPU(tb, os.Getpid()) - gen0
	if rep.peakRSS = procStatus(pid, "VmHWM"); rep.peakRSS == 0 {
		tb.Fatalf("no VmHWM for bootstrapd (pid %d) in /proc", pid)
	}
	rep.udpDrops = labCounter(tb, lab, "snmp", "Udp", "RcvbufErrors") - drops0
	rep.listenDrops = labCounter(tb, lab, "netstat", "TcpExt", "ListenOverflows") - listen0
	rep.backlogDrops = backlogDrops(tb) - backlog0

	all, err := client.Nodes(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	rep.states = map[inventory.State]int{}
	for _, n := range all {
		rep.states[n.State]++
	}
	rep.counters = stormCounters(tb, lab)
	if p := os.Getenv("BOOTSTRAPD_STORM_LOG"); p != "" {
		if err := os.WriteFile(p, []byte(d.log.String()), 0o644); err != nil {
			tb.Error(err)
		}
	}
	return rep
}

// writeStormProfile writes the storm's profile and its kernel and initrd:
// random bytes, so nothing on the way can compress them.
func writeStormProfile(tb testing.TB, dir string, o stormOpts) {
	tb.Helper()
	assets := filepath.Join(dir, "netboot", "storm")
	if err := os.MkdirAll(assets, 0o755); err != nil {
		tb.Fatal(err)
	}
	for name, size := range map[string]int64{"vmlinuz": o.initrdSize / 5, "initrd.img": o.initrdSize} {
		f, err := os.Create(filepath.Join(assets, name))
		if err != nil {
			tb.Fatal(err)
		}
		_, err = io.CopyN(f, rand.Reader, size)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			tb.Fatal(err)
		}
	}
	profile := `profile "storm" {
  description     = "the boot storm's: a kernel, an initrd, and an installer that reports"
  kernel          = "storm/vmlinuz"
  initrd          = ["storm/initrd.img"]
  cmdline         = "bootstrapd.report={{.StatusURL}}"
  install_timeout = "1h"
}
`
	if err := os.WriteFile(filepath.Join(dir, "profiles", "storm.hcl"), []byte(profile), 0o644); err != nil {
		tb.Fatal(err)
	}
}

// procCPU is a process's user plus system time (/proc/PID/stat, fields 14
// and 15, in clock ticks of 1/100 s on Linux).
func procCPU(tb testing.TB, pid int) time.Duration {
	tb.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		tb.Fatal(err)
	}
	// The command name, field 2, is in parentheses and may hold spaces.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		tb.Fatalf("/proc/%d/stat: %v", pid, err)
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// procStatus is a "kB" field of /proc/PID/status (VmRSS, VmHWM), in
// bytes, or 0 when the process or the field is gone. It does not fail the
// test: it is also read from sampling goroutines.
func procStatus(pid int, field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == field+":" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// labCounter is one counter of the lab namespace's /proc/net/<file>
// (snmp or netstat), where each section is a line of names ("Udp: ...")
// followed by a line of values.
func labCounter(tb testing.TB, lab *netlab.Lab, file, section, name string) int64 {
	tb.Helper()
	out, err := lab.Command(context.Background(), "cat", "/proc/net/"+file).Output()
	if err != nil {
		tb.Fatalf("/proc/net/%s in the lab: %v", file, err)
	}
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != section+":" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		if i := slices.Index(names, name); i > 0 && i < len(f) {
			n, err := strconv.ParseInt(f[i], 10, 64)
			if err != nil {
				tb.Fatalf("/proc/net/%s: %v", file, err)
			}
			return n
		}
	}
	tb.Fatalf("/proc/net/%s in the lab has no %s %s", file, section, name)
	return 0
}

// backlogDrops sums the second column of /proc/net/softnet_stat: packets
// dropped because a CPU's backlog queue was full. It is not per namespace.
func backlogDrops(tb testing.TB) int64 {
	tb.Helper()
	b, err := os.ReadFile("/proc/net/softnet_stat")
	if err != nil {
		tb.Fatal(err)
	}
	var sum int64
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		n, err := strconv.ParseInt(f[1], 16, 64)
		if err != nil {
			tb.Fatalf("/proc/net/softnet_stat: %v", err)
		}
		sum += n
	}
	return sum
}

// failures counts the nodes that failed at each step, and keeps the first
// few reasons.
func (r stormReport) failures() (map[stormStep]int, []string) {
	counts := map[stormStep]int{}
	var why []string
	for i, res := range r.results {
		if res.failed == numSteps {
			continue
		}
		counts[res.failed]++
		if len(why) < 5 {
			why = append(why, fmt.Sprintf("node %d (%s), %s: %v", i, stormNodeIP(i), res.failed, res.err))
		}
	}
	return counts, why
}

// quantile is the q-quantile (nearest rank) of the step's times over the
// nodes that got past it.
func (r stormReport) quantile(s stormStep, q float64) time.Duration {
	var ds []time.Duration
	for _, res := range r.results {
		if res.failed > s || (s == stepWhole && res.failed == numSteps) {
			ds = append(ds, res.took[s])
		}
	}
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	i := int(q*float64(len(ds))+0.999999) - 1
	return ds[max(0, min(i, len(ds)-1))]
}

// table is the report as docs/benchmarks.md shows it.
func (r stormReport) table() string {
	var b strings.Builder
	counts, _ := r.failures()
	var bytes int64
	for _, res := range r.results {
		bytes += res.bytes
	}
	fmt.Fprintf(&b, "%d nodes at once, initrd %d MB, kernel %d MB; wall %v; bootstrapd CPU %.1f s (%.0f%% of one core), load generator CPU %.1f s, peak RSS %d MiB; %d UDP datagrams dropped on full receive buffers, %d connections on full accept queues, %d packets on full CPU backlogs (the whole machine); %.1f GB received; nodes by state: %v\n\n",
		r.opts.nodes, r.opts.initrdSize/1e6, r.opts.initrdSize/5/1e6, r.wall.Round(time.Millisecond),
		r.cpu.Seconds(), 100*r.cpu.Seconds()/r.wall.Seconds(), r.genCPU.Seconds(), r.peakRSS>>20, r.udpDrops, r.listenDrops, r.backlogDrops, float64(bytes)/1e9, r.states)
	fmt.Fprintf(&b, "bootstrapd's counters (non-zero):\n\n")
	for _, c := range r.counters {
		fmt.Fprintf(&b, "    %s\n", c)
	}
	fmt.Fprintf(&b, "\n| step | p50 | p99 | max | failed |\n|---|---:|---:|---:|---:|\n")
	ms := func(d time.Duration) string { return strconv.FormatFloat(float64(d)/1e6, 'f', 1, 64) + " ms" }
	for s := range numSteps {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %d |\n", s, ms(r.quantile(s, 0.5)), ms(r.quantile(s, 0.99)), ms(r.quantile(s, 1)), counts[s])
	}
	return b.String()
}

// check fails tb unless every node got through every step and the daemon
// ends with every node installed.
func (r stormReport) check(tb testing.TB) {
	tb.Helper()
	counts, why := r.failures()
	if len(counts) > 0 {
		tb.Errorf("storm: failures by step %v; first: \n%s", counts, strings.Join(why, "\n"))
	}
	if r.states[inventory.Installed] != r.opts.nodes {
		tb.Errorf("storm: nodes by state %v, want all %d installed", r.states, r.opts.nodes)
	}
}

// TestBootStorm: 20 nodes at once, every one through every step, and the
// daemon's inventory agreeing.
func TestBootStorm(t *testing.T) {
	r := runStorm(t, stormOpts{nodes: 20, initrdSize: 5e6})
	t.Logf("\n%s", r.table())
	r.check(t)
	if r.quantile(stepWhole, 1) <= 0 || r.cpu <= 0 || r.peakRSS <= 0 {
		t.Errorf("storm: nothing measured: whole max %v, cpu %v, rss %d", r.quantile(stepWhole, 1), r.cpu, r.peakRSS)
	}
}

// BenchmarkBootStorm is the measurement: BOOTSTRAPD_STORM_NODES nodes
// (default 500) and a BOOTSTRAPD_STORM_INITRD_MB initrd (default 50) at
// once. The table goes to stdout; run it once (-benchtime 1x), as
// `make bench-storm` does. BOOTSTRAPD_STORM_LOG=FILE keeps the daemon's log,
// BOOTSTRAPD_STORM_SERVE_FLAGS adds flags to its serve (-cpuprofile FILE),
// BOOTSTRAPD_STORM_BACKLOG sets netdev_max_backlog for the run (default
// 10000; see raiseBacklog).
func BenchmarkBootStorm(b *testing.B) {
	o := stormOpts{nodes: envInt(b, "BOOTSTRAPD_STORM_NODES", 500), initrdSize: int64(envInt(b, "BOOTSTRAPD_STORM_INITRD_MB", 50)) * 1e6}
	if o.nodes > 1000 {
		b.Fatalf("BOOTSTRAPD_STORM_NODES=%d: at most 1000 (the lab's /22 holds 1021 nodes after bootstrapd)", o.nodes)
	}
	raiseBacklog(b, envInt(b, "BOOTSTRAPD_STORM_BACKLOG", 10000))
	for b.Loop() {
		r := runStorm(b, o)
		fmt.Printf("\nBoot storm, %s\n\n%s\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"), r.table())
		r.check(b)
		b.ReportMetric(float64(r.quantile(stepWhole, 0.99))/1e9, "p99-boot-s")
		b.ReportMetric(float64(r.quantile(stepNodeScript, 0.99))/1e6, "p99-script-ms")
	}
}

// raiseBacklog sets net.core.netdev_max_backlog to at least n until tb
// ends. Every packet of every simulated node passes through this machine's
// two per-CPU input queues (1000 packets each by default), where real nodes
// would each have a NIC: bootstrapd's broadcast replies alone put 500 copies
// at once into them. Left at 1000, the storm measured the queues' drops
// (thousands, and DHCP retries 4 s apart), not bootstrapd. The setting is
// the machine's, not a namespace's; the old value comes back at the end.
func raiseBacklog(tb testing.TB, n int) {
	tb.Helper()
	const path = "/proc/sys/net/core/netdev_max_backlog"
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	old := strings.TrimSpace(string(b))
	if cur, err := strconv.Atoi(old); err != nil || cur >= n {
		return
	}
	if err := os.WriteFile(path, []byte(strconv.Itoa(n)), 0o644); err != nil {
		tb.Fatalf("raise netdev_max_backlog: %v", err)
	}
	tb.Cleanup(func() {
		if err := os.WriteFile(path, []byte(old), 0o644); err != nil {
			tb.Errorf("restore netdev_max_backlog %s: %v", old, err)
		}
	})
}

func envInt(tb testing.TB, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		tb.Fatalf("%s=%q: want a positive number", name, v)
	}
	return n
}
