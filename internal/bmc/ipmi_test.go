package bmc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	ipmibmc "github.com/bougou/go-ipmi/pkg/bmc"
	"github.com/bougou/go-ipmi/pkg/hal/mock"
	"github.com/bougou/go-ipmi/pkg/server"
	"github.com/bougou/go-ipmi/pkg/transport/udp"
	"github.com/bougou/go-ipmi/pkg/types"

	"github.com/bootstrapd/bootstrapd/internal/netlab"
)

// simBMC is OpenIPMI's ipmi_sim (Debian's openipmi) serving IPMI 2.0 LAN
// on 127.0.0.1:623 inside a namespace of its own. Its startcmd is a shell
// stand-in for a VM: each power-on appends a line to boots and sleeps
// until the simulator kills it on power-off, so the simulator's power
// state is whether that process runs (ipmi_lan(5), startcmd).
type simBMC struct {
	lab   *netlab.Lab
	boots string // one line per power-on
	stop  func() // kills the simulator
}

func startSim(t *testing.T) *simBMC {
	t.Helper()
	if _, err := exec.LookPath("ipmi_sim"); err != nil {
		t.Fatal("ipmi_sim is missing: install Debian's openipmi (scripts/deps.sh does)")
	}
	lab := netlab.NewLab(t, "10.231.0.1/24")
	dir := t.TempDir()
	sim := &simBMC{lab: lab, boots: filepath.Join(dir, "boots")}
	vm := filepath.Join(dir, "vm.sh")
	if err := os.WriteFile(vm, []byte("#!/bin/sh\n# A stand-in for the VM ipmi_sim would start.\necho on >> "+sim.boots+"\nexec sleep 600\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	// The serial VM interface is what ipmi_sim's chassis control works
	// through; nothing connects to it here, so power off kills the
	// stand-in at once (SIGTERM, then SIGKILL after kill_wait).
	conf := fmt.Sprintf(`name "bootstrapd-test"
set_working_mc 0x20
  startlan 1
    addr 127.0.0.1 623
    priv_limit admin
    allowed_auths_callback none md5
    allowed_auths_user md5
    allowed_auths_operator md5
    allowed_auths_admin md5
    guid a123456789abcdefa123456789abcdef
  endlan
  serial 15 127.0.0.1 9002 codec VM
  startcmd "%s"
  startnow false
  kill_wait 1
  user 2 true "admin" "%s" admin 10 md5
`, vm, testPassword)
	emu := "mc_setbmc 0x20\nmc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr\nsel_enable 0x20 1000 0x0a\nmc_enable 0x20\n"
	for name, text := range map[string]string{"lan.conf": conf, "bmc.emu": emu} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	state := filepath.Join(dir, "state")
	if err := os.Mkdir(state, 0o700); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	cmd := lab.Command(context.Background(), "ipmi_sim", "-c", filepath.Join(dir, "lan.conf"), "-f", filepath.Join(dir, "bmc.emu"), "-s", state, "-n")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sim.stop = func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
	t.Cleanup(sim.stop)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := lab.Ready(ctx, "udp", "127.0.0.1:623"); err != nil {
		t.Fatalf("ipmi_sim did not start: %v\n%s", err, out.String())
	}
	return sim
}

func (s *simBMC) powerOns() int {
	b, _ := os.ReadFile(s.boots)
	return strings.Count(string(b), "on\n")
}

func (s *simBMC) options(logs *bytes.Buffer) Options {
	return Options{Timeout: 5 * time.Second, Log: logTo(logs), Dial: s.lab.Dial}
}

// ipmitool runs Debian's ipmitool against the simulator, the cross-check
// that what bootstrapd did is what another client sees.
func (s *simBMC) ipmitool(t *testing.T, args ...string) string {
	t.Helper()
	cmd := s.lab.Command(context.Background(), "ipmitool", append([]string{"-I", "lanplus", "-C", "3", "-H", "127.0.0.1", "-U", "admin", "-E"}, args...)...)
	cmd.Env = append(os.Environ(), "IPMI_PASSWORD="+testPassword)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("ipmitool %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// eventually polls the simulator's power state until it is want: a cycle
// takes it off, then on again a second later.
func eventually(t *testing.T, b BMC, want State, ons func() int, wantOns int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, _, err := b.PowerState(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if st == want && ons() == wantOns {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("power state %s after %d power-ons; want %s after %d", st, ons(), want, wantOns)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestIPMISimulator(t *testing.T) {
	sim := startSim(t)
	var logs bytes.Buffer
	ctx := context.Background()
	b, err := Open(ctx, &url.URL{Scheme: "ipmi", Host: "127.0.0.1"}, Credentials{User: "admin", Password: testPassword}, sim.options(&logs))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	// Debian's ipmi_sim refuses suite 17 ("invalid authentication
	// algorithm"), so the session settles on 3.
	if got := b.(*ipmiBMC).guard.suite(); got != 3 {
		t.Errorf("cipher suite %d, want 3 (ipmi_sim refuses 17)", got)
	}
	if st, _, err := b.PowerState(ctx); err != nil || st != Off {
		t.Fatalf("power state %s, %v; want off", st, err)
	}
	steps := []struct {
		action  Action
		want    State
		wantOns int
		answer  string
	}{
		{PowerCycle, On, 1, "chassis power up (was off)"}, // cycle of an off machine is on
		{PowerOn, On, 1, "chassis power was already on"},
		{PowerCycle, On, 2, "chassis power cycle (was on)"},
		{PowerOff, Off, 2, "chassis power down (was on)"},
		{PowerOff, Off, 2, "chassis power was already off"},
		{PowerOn, On, 3, "chassis power up (was off)"},
	}
	for i, st := range steps {
		answer, err := b.Power(ctx, st.action)
		if err != nil {
			t.Fatalf("step %d (%s): %v", i, st.action, err)
		}
		if answer != st.answer {
			t.Errorf("step %d (%s): answer %q, want %q", i, st.action, answer, st.answer)
		}
		eventually(t, b, st.want, sim.powerOns, st.wantOns)
	}
	// Another client sees the same machine, and bootstrapd sees what it does.
	if got := sim.ipmitool(t, "power", "status"); got != "Chassis Power is on" {
		t.Errorf("ipmitool: %q, want Chassis Power is on", got)
	}
	sim.ipmitool(t, "power", "off")
	eventually(t, b, Off, sim.powerOns, 3)

	// ipmi_sim answers Set System Boot Options parameter 5 with 0xcc.
	_, err = b.BootPXEOnce(ctx, true)
	if !errors.Is(err, ErrBootUnsupported) || !strings.Contains(err.Error(), "completion code 0xcc") {
		t.Errorf("boot flags: %v; want ErrBootUnsupported with completion code 0xcc", err)
	}

	// A BMC that goes away under an open session: the next call fails
	// within its timeout, and so does Close, instead of hanging.
	sim.stop()
	start := time.Now()
	_, _, err = b.PowerState(ctx)
	if !errors.Is(err, ErrUnreachable) && !errors.Is(err, ErrTimeout) {
		t.Errorf("power state of a stopped BMC: %v; want unreachable or timeout", err)
	}
	t.Logf("stopped BMC: %v", err)
	_ = b.Close()
	if took := time.Since(start); took > 12*time.Second {
		t.Errorf("a call and Close on a stopped BMC took %s", took)
	}
	if strings.Contains(logs.String(), testPassword) {
		t.Errorf("the log holds the password:\n%s", logs.String())
	}
}

// TestIPMIFailures: a wrong password, nothing listening, a BMC that
// swallows every datagram. Each fails within its time, names the BMC, and
// holds no password.
func TestIPMIFailures(t *testing.T) {
	sim := startSim(t)
	silent := sim.lab.ListenPacket(t, "udp", "127.0.0.1:625") // reads nothing, answers nothing
	_ = silent
	cases := []struct {
		name    string
		host    string
		c       Credentials
		timeout time.Duration
		kind    error
		words   []string
		maxTime time.Duration
	}{
		{"wrong password", "127.0.0.1", Credentials{"admin", "not-" + testPassword}, 5 * time.Second, ErrAuth,
			[]string{"ipmi://127.0.0.1:623", "log in", "check the BMC user and password"}, 5 * time.Second},
		{"wrong user", "127.0.0.1", Credentials{"nobody", testPassword}, 5 * time.Second, ErrAuth, nil, 5 * time.Second},
		{"nothing listening", "127.0.0.1:624", Credentials{"admin", testPassword}, 5 * time.Second, ErrUnreachable,
			[]string{"nothing answers IPMI", "ipmi://127.0.0.1:624"}, 2 * time.Second},
		{"never answers", "127.0.0.1:625", Credentials{"admin", testPassword}, 1500 * time.Millisecond, ErrTimeout,
			[]string{"no answer on UDP 127.0.0.1:625 within 1.5s"}, 3 * time.Second},
		{"user name too long", "127.0.0.1", Credentials{strings.Repeat("u", 17), testPassword}, 5 * time.Second, ErrAuth,
			[]string{"16 characters"}, time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			o := sim.options(&logs)
			o.Timeout = tc.timeout
			start := time.Now()
			b, err := Open(context.Background(), &url.URL{Scheme: "ipmi", Host: tc.host}, tc.c, o)
			took := time.Since(start)
			if err == nil {
				b.Close()
				t.Fatal("open succeeded")
			}
			t.Logf("error after %s: %v", took.Round(time.Millisecond), err)
			if !errors.Is(err, tc.kind) {
				t.Errorf("error is not %q", tc.kind)
			}
			for _, w := range tc.words {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not say %q", w)
				}
			}
			if took > tc.maxTime {
				t.Errorf("took %s, want under %s", took, tc.maxTime)
			}
			if strings.Contains(err.Error(), testPassword) || strings.Contains(logs.String(), testPassword) {
				t.Errorf("the password is in the error or the log")
			}
		})
	}
}

// goIPMIServer runs go-ipmi's reference BMC on loopback with the given
// cipher suites, and with rewrite applied to every datagram it sends.
func goIPMIServer(t *testing.T, suites []types.CipherSuiteID, rewrite func([]byte)) string {
	t.Helper()
	b := ipmibmc.New(ipmibmc.DeviceInfo{DeviceID: 32, IPMIVersion: 0x20}, [16]byte{1}, mock.New())
	u, err := b.Users.Add(2, "admin")
	if err != nil {
		t.Fatal(err)
	}
	u.SetPassword([]byte(testPassword))
	u.Enabled = true
	u.ChannelAccess[1] = ipmibmc.UserChannelAccess{MaxPrivilege: ipmibmc.PrivilegeLevelAdministrator, Enabled: true}
	conn, err := udp.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := server.NewServer(b, rewritingConn{conn, rewrite}, server.WithCipherSuites(suites), server.WithV15Disabled())
	ctx, cancel := context.WithCancel(context.Background())
	go func() { _ = srv.Serve(ctx) }()
	t.Cleanup(func() { cancel(); _ = srv.Close() })
	return conn.LocalAddr().String()
}

type rewritingConn struct {
	*udp.Conn
	rewrite func([]byte)
}

func (c rewritingConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	if c.rewrite != nil {
		p = bytes.Clone(p)
		c.rewrite(p)
	}
	return c.Conn.WriteTo(p, addr)
}

// TestIPMICipherSuites runs against go-ipmi's reference BMC: suite 17 is
// preferred; a BMC offering only suite 0 is refused; a BMC that answers
// the Open Session Request with no authentication (a downgrade to suite
// 0) is refused by the guard even though go-ipmi itself would go on.
func TestIPMICipherSuites(t *testing.T) {
	downgrade := func(p []byte) {
		if len(p) >= 16+36 && p[4] == authTypeRMCPPlus && p[5]&0x3f == payloadOpenSessionRsp {
			p[16+16], p[16+24], p[16+32] = 0, 0, 0
		}
	}
	cases := []struct {
		name      string
		suites    []types.CipherSuiteID
		rewrite   func([]byte)
		wantSuite int
		wantErr   error
		words     []string
	}{
		{"17 preferred", []types.CipherSuiteID{types.CipherSuiteID3, types.CipherSuiteID17}, nil, 17, nil, nil},
		{"3 accepted", []types.CipherSuiteID{types.CipherSuiteID3}, nil, 3, nil, nil},
		{"only 0 offered", []types.CipherSuiteID{types.CipherSuiteID0}, nil, 0, ErrCipherSuite,
			[]string{"refused cipher suites 17 and 3", "never uses suite 0"}},
		{"downgrade to 0", []types.CipherSuiteID{types.CipherSuiteID3, types.CipherSuiteID17}, downgrade, 0, ErrCipherSuite,
			[]string{"authentication algorithm 0, integrity 0, confidentiality 0", "not cipher suite 17 or 3"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			addr := goIPMIServer(t, tc.suites, tc.rewrite)
			b, err := Open(context.Background(), &url.URL{Scheme: "ipmi", Host: addr}, Credentials{"admin", testPassword}, Options{Timeout: 3 * time.Second})
			if tc.wantErr != nil {
				if err == nil {
					b.Close()
					t.Fatal("open succeeded")
				}
				t.Logf("error: %v", err)
				if !errors.Is(err, tc.wantErr) {
					t.Errorf("error is not %q", tc.wantErr)
				}
				for _, w := range tc.words {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error does not say %q", w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			if got := b.(*ipmiBMC).guard.suite(); got != tc.wantSuite {
				t.Errorf("cipher suite %d, want %d", got, tc.wantSuite)
			}
			if _, _, err := b.PowerState(context.Background()); err != nil {
				t.Errorf("power state: %v", err)
			}
		})
	}
}
