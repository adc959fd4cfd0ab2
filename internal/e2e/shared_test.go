package e2e

import (
	"context"
	"encoding/json"
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
	"testing"
	"time"

	"github.com/bootstrapd/bootstrapd/internal/etcdtest"
	"github.com/bootstrapd/bootstrapd/internal/inventory"
	"github.com/bootstrapd/bootstrapd/internal/netlab"
	"github.com/bootstrapd/bootstrapd/internal/routeros/routerostest"
	"github.com/bootstrapd/bootstrapd/internal/shares"
	"github.com/bootstrapd/bootstrapd/internal/testlog"
	"github.com/insomniacslk/dhcp/dhcpv4"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// sharedLab is one segment served by several bootstrapd instances that
// share an inventory in a real three-member etcd cluster: every member and
// every instance in a namespace of its own on the lab's bridge, so that
// killing one is losing a machine. Instance 0 runs in the lab's namespace
// on the bridge, at the lab's address; instance i at .1+i on a veth.
type sharedLab struct {
	lab   *netlab.Lab
	etcd  *etcdtest.Cluster
	insts []*instance
}

type instance struct {
	name, dir string
	ns        netlab.NS
	addr      netip.Addr
	d         *daemon
}

// newSharedLab starts the etcd members at 10.96.0.11-13 and n instances
// on 10.96.0.0/16 with the given dhcp block, and extra HCL when given.
func newSharedLab(t *testing.T, n int, dhcpBody string, extra ...string) *sharedLab {
	t.Helper()
	return startShared(t, &sharedLab{lab: netlab.NewLab(t, "10.96.0.1/16")}, n, dhcpBody, strings.Join(extra, "\n"))
}

// startShared is newSharedLab on a lab made already (to serve something
// in it first).
func startShared(t *testing.T, s *sharedLab, n int, dhcpBody, extra string) *sharedLab {
	t.Helper()
	s.etcd = etcdtest.StartIn(t, s.lab, netip.MustParseAddr("10.96.0.11"), 3)
	var eps []string
	for _, e := range s.etcd.Endpoints() {
		eps = append(eps, fmt.Sprintf("%q", e))
	}
	for i := range n {
		in := &instance{name: string(rune('a' + i)), dir: t.TempDir(), ns: s.lab.NS, addr: s.lab.Addr}
		iface := s.lab.Bridge
		if i > 0 {
			in.addr = netip.AddrFrom4([4]byte{10, 96, 0, byte(1 + i)})
			h := s.lab.AddHost(t, netip.PrefixFrom(in.addr, 16).String())
			in.ns, iface = h.NS, h.Iface
		}
		withBootFixture(t, in.dir)
		writeSiteOn(t, iface, in.dir, dhcpBody, fmt.Sprintf(`default_profile = "netlab"
store {
  name = %q
  etcd {
    endpoints = [%s]
    timeout   = "2s"
  }
}
%s
`, in.name, strings.Join(eps, ", "), extra))
		in.d = startDaemonIn(t, in.ns, in.dir, "-debug")
		s.insts = append(s.insts, in)
	}
	return s
}

// waitShares waits until every running instance answers its share of a
// segment with the named instances live.
func (s *sharedLab) waitShares(t *testing.T, live ...string) {
	t.Helper()
	want := fmt.Sprintf(`"instances":%q`, strings.Join(live, ","))
	for _, in := range s.insts {
		if !in.running() {
			continue
		}
		eventually(t, 15*time.Second, in.name+" sees "+want, func() bool {
			return strings.Contains(in.d.log.String(), want)
		})
	}
}

func (in *instance) running() bool {
	select {
	case <-in.d.done:
		return false
	default:
		return true
	}
}

// storedLeases reads the leases straight from etcd: each by address.
func (s *sharedLab) storedLeases(t *testing.T) map[string]inventory.Lease {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := s.etcd.Client(t).Get(ctx, "/bootstrapd/leases/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]inventory.Lease{}
	for _, kv := range resp.Kvs {
		var l inventory.Lease
		if err := json.Unmarshal(kv.Value, &l); err != nil {
			t.Fatalf("%s: %v", kv.Key, err)
		}
		out[l.IP.String()] = l
	}
	return out
}

// checkLeases: every lease perfdhcp saw ACKed is in etcd as it was
// ACKed, and no address is held by two MACs.
func checkLeases(t *testing.T, stored map[string]inventory.Lease, acked map[string]string) {
	t.Helper()
	missing := 0
	for mac, ip := range acked {
		if l, ok := stored[ip]; !ok || l.MAC != mac {
			missing++
			if missing < 5 {
				t.Errorf("ACKed %s -> %s, stored %+v", mac, ip, stored[ip])
			}
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d ACKed leases are not in etcd as ACKed", missing, len(acked))
	}
	byMAC := map[string]string{}
	for ip, l := range stored {
		if l.MAC == "" || !l.Expires.After(time.Now()) {
			continue
		}
		if other, ok := byMAC[l.MAC]; ok {
			t.Logf("%s holds %s and %s (an earlier address kept as a record)", l.MAC, other, ip)
		}
		byMAC[l.MAC] = ip
	}
}

// TestSharedSegment: two instances on one segment over one inventory in a
// three-member etcd cluster. Under perfdhcp each answers its share and no
// address is leased twice; every ACKed lease is in etcd. Then one is
// killed (SIGKILL) under load: the other takes its clients within the
// session TTL and a little, measured, and no ACKed lease is lost.
func TestSharedSegment(t *testing.T) {
	s := newSharedLab(t, 2, `  mode   = "pool"
  subnet = "10.96.0.0/16"
  range  = ["10.96.1.0", "10.96.250.0"]`)
	s.waitShares(t, "a", "b")
	client := s.lab.AddHost(t, "10.96.0.50/16")

	perf := func(ctx context.Context, rate, clients string) (map[string]string, string) {
		out := &testlog.Buffer{}
		cmd := client.Command(ctx, "perfdhcp", "-4", "-l", client.Iface, "-r", rate, "-R", clients, "-p", "8", "-x", "l", "all")
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatalf("perfdhcp (apt-get install kea-admin): %v", err)
		}
		cmd.Wait() // non-zero when exchanges were lost
		return perfdhcpACKs(out.String()), out.String()
	}

	// Both up: each answers its share.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	acked, out := perf(ctx, "100", "2000")
	cancel()
	if len(acked) < 400 {
		t.Fatalf("perfdhcp saw %d ACKs from two instances; output:\n%s", len(acked), tailLines(out, 30))
	}
	byServer := map[string]int{}
	for _, in := range s.insts {
		byServer[in.name] = strings.Count(in.d.log.String(), `"reply":"ACK"`)
	}
	t.Logf("both up: %d ACKed; ACKs by instance %v", len(acked), byServer)
	if byServer["a"] < len(acked)/4 || byServer["b"] < len(acked)/4 {
		t.Errorf("ACKs by instance %v: each should answer about half", byServer)
	}
	checkLeases(t, s.storedLeases(t), acked)

	// A client in b's share: b answers it and a does not.
	probe, hw := hostIn(t, s.lab, "b", []string{"a", "b"})
	if from := offerFrom(t, probe, hw, 2*time.Second); from != s.insts[1].addr.String() {
		t.Fatalf("probe in b's share offered by %q, want b (%s)", from, s.insts[1].addr)
	}

	// Kill b under load, and time how long its clients wait.
	ctx, cancel = context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	type result struct {
		acked map[string]string
		out   string
	}
	done := make(chan result, 1)
	go func() { a, o := perf(ctx, "100", "3000"); done <- result{a, o} }()
	time.Sleep(3 * time.Second)
	killed := time.Now()
	s.insts[1].d.cmd.Process.Kill()
	<-s.insts[1].d.done
	var takeover time.Duration
	for {
		if from := offerFrom(t, probe, hw, 200*time.Millisecond); from == s.insts[0].addr.String() {
			takeover = time.Since(killed)
			break
		}
		if time.Since(killed) > 30*time.Second {
			t.Fatal("a did not take b's clients within 30s of b's death")
		}
	}
	r := <-done
	t.Logf("b killed: a answered b's clients after %v (session TTL 3s); %d ACKed during the run", takeover.Round(10*time.Millisecond), len(r.acked))
	if takeover > 3*time.Second+3*time.Second {
		t.Errorf("takeover took %v, want within the session TTL plus 3s", takeover)
	}
	checkLeases(t, s.storedLeases(t), r.acked)
	writeFigure(t, "shared-segment-takeover", takeover)
}

// hostIn adds hosts to lab until one's MAC is in owner's share among
// live, and returns it.
func hostIn(t *testing.T, lab *netlab.Lab, owner string, live []string) (*netlab.Host, net.HardwareAddr) {
	t.Helper()
	for range 20 {
		h := lab.AddHost(t, "")
		hw, _ := net.ParseMAC(h.MAC)
		if shares.Owner(shares.Bucket(hw), live) == owner {
			return h, hw
		}
	}
	t.Fatalf("20 hosts and none in %s's share", owner)
	return nil, nil
}

// offerFrom sends one DISCOVER from hw (asking for a broadcast reply) and
// returns the server id of the first OFFER within wait, or "".
func offerFrom(t *testing.T, h *netlab.Host, hw net.HardwareAddr, wait time.Duration) string {
	t.Helper()
	c := udpIn(t, h.NS, h.Iface, 68)
	defer c.Close()
	m, err := dhcpv4.NewDiscovery(hw, dhcpv4.WithBroadcast(true))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	c.WriteTo(m.ToBytes(), dhcpServer)
	buf := make([]byte, 1500)
	for c.SetReadDeadline(start.Add(wait)); ; {
		k, _, err := c.ReadFrom(buf)
		if err != nil {
			return ""
		}
		r, err := dhcpv4.FromBytes(buf[:k])
		if err == nil && r.TransactionID == m.TransactionID && r.MessageType() == dhcpv4.MessageTypeOffer {
			return r.ServerIdentifier().String()
		}
	}
}

// writeFigure records a measured figure in $BOOTSTRAPD_FIGURES, when set,
// for docs/benchmarks.md.
func writeFigure(t *testing.T, name string, v any) {
	dir := os.Getenv("BOOTSTRAPD_FIGURES")
	if dir == "" {
		return
	}
	os.WriteFile(filepath.Join(dir, name), []byte(fmt.Sprintln(v)), 0o644)
}

// TestSharedQuorumLoss: with one etcd member of three down nothing
// changes. With two down (no quorum) the instance gives no new lease and
// enrolls nobody, and says why (its log, doctor); a client renewing a
// lease that is still valid is answered from memory, with the time it has
// left; nothing written before is lost, and with the members back it
// serves as before by itself.
func TestSharedQuorumLoss(t *testing.T) {
	s := newSharedLab(t, 1, `  mode       = "pool"
  subnet     = "10.96.0.0/16"
  range      = ["10.96.1.0", "10.96.1.200"]
  lease_time = "10m"`)
	a := s.insts[0]
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	renewer := s.lab.AddHost(t, "")
	held, err := renewer.UDHCPC(ctx)
	if err != nil {
		t.Fatal(err)
	}
	a.d.mustCLI(t, "enroll", "52:54:00:96:00:01", "-hostname", "before")

	// One member down: quorum kept.
	s.etcd.Members[2].Kill()
	if _, err := s.lab.AddHost(t, "").UDHCPC(ctx); err != nil {
		t.Fatalf("no lease with one etcd member of three down: %v", err)
	}
	a.d.mustCLI(t, "enroll", "52:54:00:96:00:02", "-hostname", "one-down")

	// Two down: no quorum.
	said := strings.Count(a.d.log.String(), "etcd is not taking writes")
	s.etcd.Members[1].Kill()
	lost := time.Now()
	eventually(t, 15*time.Second, "the log says etcd takes no writes", func() bool {
		return strings.Count(a.d.log.String(), "etcd is not taking writes") > said
	})
	t.Logf("quorum loss noticed after %v", time.Since(lost).Round(100*time.Millisecond))
	if out, err := a.d.cli(t, "enroll", "52:54:00:96:00:03", "-hostname", "no-quorum"); err == nil || !strings.Contains(out, "takes no writes") {
		t.Errorf("enroll without quorum: %v\n%s", err, out)
	}
	if l, err := s.lab.AddHost(t, "").UDHCPC(ctx, "-t", "3"); err == nil {
		t.Errorf("a new client got %s without quorum", l["ip"])
	}
	renewed, err := renewer.UDHCPC(ctx, "-r", held["ip"])
	if err != nil {
		t.Fatalf("a valid lease was not renewed without quorum: %v", err)
	}
	if left, _ := strconv.Atoi(renewed["lease"]); renewed["ip"] != held["ip"] || left <= 0 || left >= 600 {
		t.Errorf("renewal without quorum: %s for %ss, want %s for less than the 600s of a full lease", renewed["ip"], renewed["lease"], held["ip"])
	}
	doctor, _ := a.d.output(a.ns.Command(ctx, a.d.bin, "doctor", "-config", a.d.site))
	if !strings.Contains(doctor, "FAIL store") || !strings.Contains(doctor, "no quorum") {
		t.Errorf("doctor without quorum says:\n%s", doctor)
	}
	if m := metric(t, s.lab, "bootstrapd_store_up"); m != "0" {
		t.Errorf("bootstrapd_store_up is %s without quorum, want 0", m)
	}

	// Members back: service resumes by itself, nothing lost.
	s.etcd.Members[1].Start(t)
	s.etcd.Members[2].Start(t)
	eventually(t, 30*time.Second, "the log says etcd takes writes again", func() bool {
		return strings.Contains(a.d.log.String(), "etcd takes writes again")
	})
	if _, err := s.lab.AddHost(t, "").UDHCPC(ctx); err != nil {
		t.Fatalf("no new lease after quorum returned: %v", err)
	}
	a.d.mustCLI(t, "enroll", "52:54:00:96:00:03", "-hostname", "after")
	if m := metric(t, s.lab, "bootstrapd_store_up"); m != "1" {
		t.Errorf("bootstrapd_store_up is %s after quorum returned, want 1", m)
	}
	nodes := a.d.mustCLI(t, "nodes")
	for _, h := range []string{"before", "one-down", "after"} {
		if !strings.Contains(nodes, h) {
			t.Errorf("%s missing after quorum returned:\n%s", h, nodes)
		}
	}
	if doctor, err := a.d.output(a.ns.Command(ctx, a.d.bin, "doctor", "-config", a.d.site)); !strings.Contains(doctor, "OK   store") {
		t.Errorf("doctor after quorum returned (%v):\n%s", err, doctor)
	}
}

// TestSharedLeaderFailover: the leader is killed (SIGKILL) while a retire
// teardown and a router sync wait for the router; the other instance takes
// the lead and the router's sync (if it did not hold it), finishes both,
// and the teardown step is recorded once.
func TestSharedLeaderFailover(t *testing.T) {
	lab := netlab.NewLab(t, "10.96.0.1/16")
	rt := routerostest.New(routerostest.Options{Version: "7.19", User: "bootstrapd", Password: routerPassword})
	addr := rt.Serve(t, lab.Listen(t, "tcp", "10.96.0.1:0"), true)
	pw := filepath.Join(t.TempDir(), "router-pw")
	if err := os.WriteFile(pw, []byte(routerPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startShared(t, &sharedLab{lab: lab}, 2, `  mode   = "reservation"
  subnet = "10.96.0.0/16"
  router = "10.96.0.254"
  domain = "lab.test"`, `router {
  api           = "`+addr+`"
  fingerprint   = "`+rt.Fingerprint()+`"
  password_file = "`+pw+`"
  timeout       = "1s"
  identity      = "rack96-gw"
  interface     = "ether2"
}`)
	hasDNS := func(name string) bool {
		for _, row := range rt.Rows("/ip/dns/static") {
			if row["name"] == name && row["comment"] == "bootstrapd" {
				return true
			}
		}
		return false
	}
	a, b := s.insts[0], s.insts[1]
	a.d.mustCLI(t, "enroll", "52:54:00:96:01:01", "-hostname", "n1", "-ip", "10.96.1.1")
	eventually(t, 20*time.Second, "n1's DNS record", func() bool { return hasDNS("n1.lab.test") })

	// Who leads? The one that logged it last.
	leader, other := a, b
	if strings.Contains(b.d.log.String(), `"msg":"leading`) {
		leader, other = b, a
	}
	if !strings.Contains(leader.d.log.String(), `"msg":"leading`) {
		t.Fatal("no instance says it leads")
	}

	// The router hangs: n1's teardown and n2's record wait for it.
	rt.Hang()
	other.d.mustCLI(t, "retire", "n1")
	other.d.mustCLI(t, "enroll", "52:54:00:96:01:02", "-hostname", "n2", "-ip", "10.96.1.2")
	eventually(t, 20*time.Second, "the leader trying the router", func() bool {
		return strings.Contains(leader.d.log.String(), "retire step failed")
	})
	leader.d.cmd.Process.Kill()
	<-leader.d.done
	killed := time.Now()
	rt.Resume()

	eventually(t, 30*time.Second, other.name+" leading", func() bool {
		return strings.Contains(other.d.log.String(), `"msg":"leading`)
	})
	t.Logf("%s led %v after %s was killed", other.name, time.Since(killed).Round(100*time.Millisecond), leader.name)
	if other == a {
		if m := metric(t, s.lab, "bootstrapd_leader"); m != "1" {
			t.Errorf("bootstrapd_leader of the new leader is %s", m)
		}
	}
	eventually(t, 30*time.Second, other.name+" syncing the router", func() bool {
		return strings.Contains(other.d.log.String(), `"msg":"syncing the router from here"`)
	})
	doctor, _ := other.d.output(other.ns.Command(t.Context(), other.d.bin, "doctor", "-config", other.d.site))
	if !strings.Contains(doctor, "synced by: "+other.name) {
		t.Errorf("doctor does not say %s syncs the router:\n%s", other.name, doctor)
	}
	eventually(t, 30*time.Second, "n1 retired and n2's record on the router", func() bool {
		return nodeState(t, other.d, "52:54:00:96:01:01") == inventory.Retired && hasDNS("n2.lab.test") && !hasDNS("n1.lab.test")
	})
	n1 := nodeJSON(t, other.d, "52:54:00:96:01:01")
	done := 0
	for _, e := range n1.History {
		if e.Cause == "retire: router: records removed" {
			done++
		}
	}
	if done != 1 {
		t.Errorf("the router step is recorded %d times in n1's history, want once: %+v", done, n1.History)
	}
}

// TestTenRacks: ten instances, each serving a rack of its own (a bridge
// in its own namespace, its own subnet), share one inventory: a node
// enrolled on one rack's instance is listed by every instance, with the
// same events under the same numbers, and a follower of the event log on
// another rack sees it happen. Racks 1 and 2 have routers (RouterOS
// stand-ins) of their own: each is synced, whichever instance leads, with
// its own rack's nodes alone.
func TestTenRacks(t *testing.T) {
	mgmt := netlab.NewLab(t, "10.96.0.1/16")
	cluster := etcdtest.StartIn(t, mgmt, netip.MustParseAddr("10.96.0.11"), 3)
	var eps []string
	for _, e := range cluster.Endpoints() {
		eps = append(eps, fmt.Sprintf("%q", e))
	}
	pw := filepath.Join(t.TempDir(), "router-pw")
	if err := os.WriteFile(pw, []byte(routerPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	routers := map[int]*routerostest.Router{}
	routerBlock := func(i int) string {
		rt := routerostest.New(routerostest.Options{Version: "7.19", User: "bootstrapd", Password: routerPassword})
		routers[i] = rt
		return `router {
  api           = "` + rt.Serve(t, mgmt.Listen(t, "tcp", "10.96.0.1:0"), true) + `"
  fingerprint   = "` + rt.Fingerprint() + `"
  password_file = "` + pw + `"
  interface     = "ether2"
}`
	}
	dnsNames := func(i int) []string {
		var out []string
		for _, row := range routers[i].Rows("/ip/dns/static") {
			out = append(out, row["name"])
		}
		slices.Sort(out)
		return out
	}
	var racks []*daemon
	for i := range 10 {
		// The instance's machine: on the management network, with the
		// rack's provisioning bridge of its own.
		h := mgmt.AddHost(t, fmt.Sprintf("10.96.0.%d/16", 20+i))
		for _, args := range [][]string{
			{"link", "add", "br1", "type", "bridge"},
			{"addr", "add", fmt.Sprintf("10.100.%d.1/24", i), "dev", "br1"},
			{"link", "set", "br1", "up"},
		} {
			if out, err := exec.Command("ip", append([]string{"-n", h.Name()}, args...)...).CombinedOutput(); err != nil {
				t.Fatalf("ip %v: %v: %s", args, err, out)
			}
		}
		dir := t.TempDir()
		router := ""
		if i == 1 || i == 2 {
			router = routerBlock(i)
		}
		writeSiteOn(t, "br1", dir, fmt.Sprintf(`  mode   = "pool"
  subnet = "10.100.%d.0/24"
  router = "10.100.%d.254"`, i, i), fmt.Sprintf(`%s
store {
  name = "rack%d"
  etcd {
    endpoints = [%s]
  }
}
%s`, stubProfile(t, dir), i, strings.Join(eps, ", "), router))
		racks = append(racks, startDaemonIn(t, h.NS, dir, "-debug"))
	}

	// A follower on rack 0 of the node's events, from before it exists.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	follow := exec.CommandContext(ctx, racks[0].bin, "events", "-f", "-json")
	follow.Env = append(os.Environ(), "BOOTSTRAPD_ADDR=unix://"+racks[0].sock)
	followed := &testlog.Buffer{}
	follow.Stdout, follow.Stderr = followed, followed
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); follow.Wait() }()
	time.Sleep(500 * time.Millisecond) // following

	racks[3].mustCLI(t, "enroll", "52:54:00:10:03:01", "-hostname", "r3n1", "-ip", "10.100.3.50")
	want := racks[3].mustCLI(t, "events", "-node", "r3n1")
	for i, d := range racks {
		eventually(t, 10*time.Second, fmt.Sprintf("rack%d lists r3n1", i), func() bool {
			out, err := d.cli(t, "nodes")
			return err == nil && strings.Contains(out, "r3n1")
		})
		if got := d.mustCLI(t, "events", "-node", "r3n1"); got != want {
			t.Errorf("rack%d shows r3n1's events as\n%s\nrack3 as\n%s", i, got, want)
		}
	}
	defer func() {
		if t.Failed() {
			t.Logf("rack0's follower:\n%s", followed)
		}
	}()
	eventually(t, 10*time.Second, "rack0's follower sees the enrollment", func() bool {
		return strings.Contains(followed.String(), `"hostname": "r3n1"`)
	})
	// And its change, made on another rack, is seen on the first.
	racks[7].mustCLI(t, "retire", "r3n1")
	eventually(t, 10*time.Second, "rack3 sees r3n1 retired by rack7", func() bool {
		return nodeState(t, racks[3], "r3n1") == inventory.Retired
	})

	// Nodes of racks 1 and 2 (enrolled on their racks' instances, whose
	// subnets hold their addresses; one instance at most leads): each on
	// its own rack's router, and gone from it when retired from rack 7's.
	racks[1].mustCLI(t, "enroll", "52:54:00:10:01:01", "-hostname", "r1n1", "-ip", "10.100.1.50")
	racks[2].mustCLI(t, "enroll", "52:54:00:10:02:01", "-hostname", "r2n1", "-ip", "10.100.2.50")
	eventually(t, 20*time.Second, "each router holding its rack's node alone", func() bool {
		return slices.Equal(dnsNames(1), []string{"r1n1"}) && slices.Equal(dnsNames(2), []string{"r2n1"})
	})
	racks[7].mustCLI(t, "retire", "r1n1")
	eventually(t, 20*time.Second, "r1n1 gone from rack 1's router", func() bool {
		return len(dnsNames(1)) == 0 && nodeState(t, racks[1], "r1n1") == inventory.Retired
	})
	if got := dnsNames(2); !slices.Equal(got, []string{"r2n1"}) {
		t.Errorf("rack 2's router holds %v after r1n1 retired, want r2n1", got)
	}
	for _, i := range []int{1, 2} {
		if !strings.Contains(racks[i].log.String(), `"msg":"syncing the router from here"`) {
			t.Errorf("rack%d does not say it syncs its router", i)
		}
	}
}

// TestSharedInstallWithOneDead: of three instances serving a segment, the
// one whose share holds a node is killed (SIGKILL); the node, a QEMU VM,
// PXE-boots and installs through another, while `enroll -wait` on the
// third follows it to installed.
func TestSharedInstallWithOneDead(t *testing.T) {
	s := newSharedLab(t, 3, `  mode   = "reservation"
  subnet = "10.96.0.0/16"`)
	s.waitShares(t, "a", "b", "c")
	// A MAC that is a's while all three live, and b's once a is gone.
	var mac string
	for i := range 1 << 16 {
		hw := net.HardwareAddr{0x52, 0x54, 0, 0x96, byte(i >> 8), byte(i)}
		if shares.Owner(shares.Bucket(hw), []string{"a", "b", "c"}) == "a" && shares.Owner(shares.Bucket(hw), []string{"b", "c"}) == "b" {
			mac = hw.String()
			break
		}
	}
	a, b, c := s.insts[0], s.insts[1], s.insts[2]
	a.d.cmd.Process.Kill()
	<-a.d.done
	s.waitShares(t, "b", "c")

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	wait := exec.CommandContext(ctx, c.d.bin, "enroll", mac, "-hostname", "n1", "-wait", "installed")
	wait.Env = append(os.Environ(), "BOOTSTRAPD_ADDR=unix://"+c.d.sock)
	waited := &testlog.Buffer{}
	wait.Stdout, wait.Stderr = waited, waited
	if err := wait.Start(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "b holds the enrollment made on c", func() bool {
		out, err := b.d.cli(t, "nodes")
		return err == nil && strings.Contains(out, "n1")
	})
	pxeInstallEnrolled(t, s.lab, b.d, "bios", mac)
	if err := wait.Wait(); err != nil || !strings.Contains(waited.String(), "installed") {
		t.Errorf("enroll -wait on c while the node installed through b: %v\n%s", err, waited)
	}
	if strings.Contains(b.d.log.String(), `"mac":"`+mac+`"`) == false {
		t.Error("the node's requests are not in b's log: it did not install through b")
	}
}

// metric is the value of an unlabelled metric of the instance at the lab's
// address.
func metric(t *testing.T, lab *netlab.Lab, name string) string {
	t.Helper()
	resp, err := lab.HTTPClient().Get("http://" + net.JoinHostPort(lab.Addr.String(), "8080") + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return v
		}
	}
	return "missing"
}
