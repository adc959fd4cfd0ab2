package routerostest

import (
	"errors"
	"slices"
	"testing"

	"github.com/go-routeros/routeros/v3"
)

// These tests talk to the router through the client bootstrapd uses,
// github.com/go-routeros/routeros/v3 v3.0.1.

func testRouter(t *testing.T, version string) (*Router, *routeros.Client) {
	t.Helper()
	r := New(Options{Version: version, Password: "secret"})
	c, err := routeros.Dial(r.Listen(t), "admin", "secret")
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return r, c
}

func run(t *testing.T, c *routeros.Client, words ...string) *routeros.Reply {
	t.Helper()
	rep, err := c.RunArgs(words)
	if err != nil {
		t.Fatalf("%q: %v", words, err)
	}
	return rep
}

// deviceError runs a command that must fail and returns RouterOS's trap.
func deviceError(t *testing.T, c *routeros.Client, words ...string) *routeros.DeviceError {
	t.Helper()
	_, err := c.RunArgs(words)
	var de *routeros.DeviceError
	if !errors.As(err, &de) {
		t.Fatalf("%q: error %v, want a *routeros.DeviceError", words, err)
	}
	return de
}

func names(rep *routeros.Reply, key string) []string {
	var out []string
	for _, s := range rep.Re {
		out = append(out, s.Map[key])
	}
	return out
}

func TestClientWrites(t *testing.T) {
	_, c := testRouter(t, "7.19")

	rep := run(t, c, "/interface/vlan/add", "=name=prov", "=vlan-id=40", "=interface=ether2", "=comment=bootstrapd")
	vlan := rep.Done.Map["ret"]
	if vlan != "*6" { // after ether1..ether5: interfaces share one counter
		t.Errorf("vlan ret = %q, want *6", vlan)
	}
	rep = run(t, c, "/ip/address/add", "=address=10.40.0.1/24", "=interface=prov", "=comment=bootstrapd")
	addr := rep.Done.Map["ret"]

	rep = run(t, c, "/ip/address/print", "?comment=bootstrapd", "?dynamic=false")
	if len(rep.Re) != 1 {
		t.Fatalf("print: %d rows", len(rep.Re))
	}
	got := rep.Re[0].Map
	want := map[string]string{
		".id": addr, "address": "10.40.0.1/24", "network": "10.40.0.0", "interface": "prov",
		"actual-interface": "prov", "invalid": "false", "dynamic": "false", "disabled": "false",
		"comment": "bootstrapd",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}

	// /interface lists the VLAN under the same id.
	rep = run(t, c, "/interface/print", "?type=vlan", "=.proplist=.id,name")
	if ids := names(rep, ".id"); !slices.Equal(ids, []string{vlan}) {
		t.Errorf("/interface VLAN ids = %q, want [%s]", ids, vlan)
	}

	// set, =!prop= and unset go back to the default.
	run(t, c, "/interface/vlan/set", "=.id="+vlan, "=mtu=1400", "=disabled=yes")
	run(t, c, "/interface/vlan/set", "=numbers=prov", "=!comment=")
	rep = run(t, c, "/interface/vlan/print", "=.proplist=mtu,disabled,comment")
	if m := rep.Re[0].Map; m["mtu"] != "1400" || m["disabled"] != "true" || m["comment"] != "" {
		t.Errorf("after set: %v", m)
	}
	if _, ok := rep.Re[0].Map["comment"]; ok {
		t.Error("unset comment still printed")
	}
	run(t, c, "/interface/vlan/unset", "=numbers="+vlan, "=value-name=mtu")
	rep = run(t, c, "/interface/vlan/print", "=.proplist=mtu")
	if m := rep.Re[0].Map; m["mtu"] != "1500" {
		t.Errorf("after unset: mtu %q, want the default 1500", m["mtu"])
	}

	// remove by a comma list; ids are never reused.
	run(t, c, "/ip/address/remove", "=.id="+addr)
	run(t, c, "/interface/vlan/remove", "=numbers="+vlan)
	rep = run(t, c, "/interface/vlan/add", "=name=prov", "=vlan-id=40", "=interface=ether2")
	if rep.Done.Map["ret"] == vlan {
		t.Errorf("id %s reused", vlan)
	}
}

func TestClientEmpty(t *testing.T) {
	for _, version := range []string{"7.19", "6.49"} {
		t.Run(version, func(t *testing.T) {
			_, c := testRouter(t, version)
			rep := run(t, c, "/ip/pool/print")
			if len(rep.Re) != 0 || rep.Done == nil {
				t.Errorf("empty print: %v", rep)
			}
		})
	}
}

func TestClientIdentity(t *testing.T) {
	_, c := testRouter(t, "7.19")
	run(t, c, "/system/identity/set", "=name=rack7")
	rep := run(t, c, "/system/identity/print")
	if len(rep.Re) != 1 || rep.Re[0].Map["name"] != "rack7" {
		t.Fatalf("identity: %v", rep)
	}
	if _, ok := rep.Re[0].Map[".id"]; ok {
		t.Error("a singleton printed an .id")
	}
	rep = run(t, c, "/system/resource/print", "=.proplist=version")
	if v := rep.Re[0].Map["version"]; v != "7.19 (stable)" {
		t.Errorf("version %q", v)
	}
}

func TestClientLoginFailure(t *testing.T) {
	r := New(Options{Password: "secret"})
	_, err := routeros.Dial(r.Listen(t), "admin", "wrong")
	var de *routeros.DeviceError
	if !errors.As(err, &de) || de.Sentence.Map["message"] != "invalid user name or password (6)" {
		t.Fatalf("Dial with a wrong password: %v", err)
	}
}

// A user added over the API can log in, as bootstrap's API user does.
func TestClientAddedUserLogsIn(t *testing.T) {
	r, c := testRouter(t, "7.19")
	run(t, c, "/user/group/add", "=name=prov", "=policy=api,read,write")
	run(t, c, "/user/add", "=name=prov", "=group=prov", "=password=s3", "=address=192.0.2.1/32")
	rep := run(t, c, "/user/print", "?name=prov")
	if _, ok := rep.Re[0].Map["password"]; ok {
		t.Error("password printed")
	}
	c2, err := routeros.Dial(r.Listen(t), "prov", "s3")
	if err != nil {
		t.Fatalf("new user: %v", err)
	}
	c2.Close()
	run(t, c, "/user/set", "=numbers=prov", "=disabled=yes")
	if c3, err := routeros.Dial(r.Listen(t), "prov", "s3"); err == nil {
		c3.Close()
		t.Error("disabled user logged in")
	}
}

func TestClientTraps(t *testing.T) {
	tests := []struct {
		name     string
		version  string
		seed     func(r *Router)
		setup    [][]string // commands that must succeed first
		cmd      []string
		message  string
		category string
	}{
		{
			name: "unknown command, last of two traps", version: "7.19",
			cmd: []string{"/ip/service/add", "=name=x"}, message: "no such command prefix",
		},
		{
			name: "unknown parameter on 7", version: "7.19",
			cmd:     []string{"/ip/pool/add", "=name=p", "=ranges=10.0.0.10-10.0.0.20", "=colour=red"},
			message: "unknown parameter colour",
		},
		{
			name: "unknown parameter on 6", version: "6.49",
			cmd:     []string{"/ip/pool/add", "=name=p", "=ranges=10.0.0.10-10.0.0.20", "=colour=red"},
			message: "unknown parameter",
		},
		{
			name: "read-only property", version: "7.19",
			cmd:     []string{"/ip/address/add", "=address=10.0.0.1/24", "=interface=ether1", "=dynamic=yes"},
			message: "unknown parameter dynamic",
		},
		{
			name: "unknown print argument", version: "7.19",
			cmd: []string{"/ip/address/print", "=follow="}, message: "unknown parameter follow",
		},
		{
			name: "duplicate VLAN name", version: "7.19",
			setup:   [][]string{{"/interface/vlan/add", "=name=v40", "=vlan-id=40", "=interface=ether1"}},
			cmd:     []string{"/interface/vlan/add", "=name=v40", "=vlan-id=41", "=interface=ether1"},
			message: "failure: already have interface with such name",
		},
		{
			name: "VLAN named like an ethernet port", version: "7.19",
			cmd:     []string{"/interface/vlan/add", "=name=ether1", "=vlan-id=41", "=interface=ether2"},
			message: "failure: already have interface with such name",
		},
		{
			name: "rename onto another name", version: "7.19",
			setup: [][]string{
				{"/interface/bridge/add", "=name=br1"},
				{"/interface/bridge/add", "=name=br2"},
			},
			cmd:     []string{"/interface/bridge/set", "=numbers=br2", "=name=br1"},
			message: "failure: already have interface with such name",
		},
		{
			name: "duplicate address", version: "7.19",
			setup:   [][]string{{"/ip/address/add", "=address=10.0.0.1/24", "=interface=ether1"}},
			cmd:     []string{"/ip/address/add", "=address=10.0.0.1/24", "=interface=ether1"},
			message: "failure: already have such address",
		},
		{
			name: "duplicate pool", version: "7.19",
			setup:   [][]string{{"/ip/pool/add", "=name=p", "=ranges=10.0.0.10-10.0.0.20"}},
			cmd:     []string{"/ip/pool/add", "=name=p", "=ranges=10.0.1.10-10.0.1.20"},
			message: "failure: pool with such name exists",
		},
		{
			name: "duplicate static DNS record", version: "7.19",
			setup:   [][]string{{"/ip/dns/static/add", "=name=n1.lab", "=address=10.0.0.5"}},
			cmd:     []string{"/ip/dns/static/add", "=name=n1.lab", "=address=10.0.0.5"},
			message: "entry already exists",
		},
		{
			name: "duplicate lease", version: "7.19",
			setup: [][]string{
				{"/ip/dhcp-server/add", "=name=prov", "=interface=ether2"},
				{"/ip/dhcp-server/lease/add", "=address=10.0.0.5", "=mac-address=52:54:00:00:00:01", "=server=prov"},
			},
			cmd:     []string{"/ip/dhcp-server/lease/add", "=address=10.0.0.6", "=mac-address=52:54:00:00:00:01", "=server=prov"},
			message: "failure: already have such entry",
		},
		{
			name: "port already in a bridge", version: "7.19",
			setup: [][]string{
				{"/interface/bridge/add", "=name=br"},
				{"/interface/bridge/port/add", "=bridge=br", "=interface=ether3"},
			},
			cmd:     []string{"/interface/bridge/port/add", "=bridge=br", "=interface=ether3"},
			message: "failure: device already added as bridge port",
		},
		{
			name: "no such item", version: "7.19",
			cmd: []string{"/ip/address/set", "=.id=*99", "=comment=x"}, message: "no such item (4)", category: "0",
		},
		{
			name: "no such name", version: "7.19",
			cmd: []string{"/ip/pool/remove", "=numbers=nope"}, message: "no such item (4)", category: "0",
		},
		{
			name: "one bad id in a list", version: "7.19",
			setup: [][]string{{"/ip/pool/add", "=name=p", "=ranges=10.0.0.10-10.0.0.20"}},
			cmd:   []string{"/ip/pool/remove", "=.id=*1,*2"}, message: "no such item (4)", category: "0",
		},
		{
			name: "malformed id", version: "7.19",
			cmd: []string{"/ip/pool/remove", "=.id=*zz"}, message: "invalid internal item number",
		},
		{
			name: "missing arguments", version: "7.19",
			cmd:     []string{"/interface/vlan/add", "=name=v"},
			message: "missing value(s) of argument(s) vlan-id,interface",
		},
		{
			name: "reference to nothing", version: "7.19",
			cmd:     []string{"/ip/dhcp-server/add", "=interface=ether2", "=address-pool=nope"},
			message: "input does not match any value of address-pool", category: "1",
		},
		{
			name: "not an integer", version: "7.19",
			cmd:     []string{"/interface/vlan/add", "=name=v", "=vlan-id=forty", "=interface=ether1"},
			message: "invalid value forty for vlan-id, an integer required", category: "1",
		},
		{
			name: "not a boolean", version: "7.19",
			cmd:     []string{"/ip/address/add", "=address=10.0.0.1/24", "=interface=ether1", "=disabled=maybe"},
			message: "invalid value for argument disabled", category: "1",
		},
		{
			name: "v6 src-address rejected on 7.19", version: "7.19",
			cmd:     []string{"/ip/dhcp-server/add", "=interface=ether2", "=src-address=10.0.0.1"},
			message: "unknown parameter src-address",
		},
		{
			name: "v7 server-address unknown on 6.49", version: "6.49",
			cmd:     []string{"/ip/dhcp-server/add", "=interface=ether2", "=server-address=10.0.0.1"},
			message: "unknown parameter",
		},
		{
			name: "available-from before 7.24", version: "7.19",
			cmd:     []string{"/ip/service/set", "=numbers=telnet", "=available-from=10.0.0.0/8"},
			message: "unknown parameter available-from",
		},
		{
			name: "address from 7.24", version: "7.24",
			cmd:     []string{"/ip/service/set", "=numbers=telnet", "=address=10.0.0.0/8"},
			message: "unknown parameter address",
		},
		{
			// Our own connection is a dynamic api row named like the service.
			name: "service set by name on 7.19", version: "7.19",
			cmd:     []string{"/ip/service/set", "=numbers=api", "=address=10.0.0.0/8"},
			message: "failure: this is configured elsewhere",
		},
		{
			name: "dynamic lease", version: "7.19",
			seed: func(r *Router) {
				r.Seed(pathLease, map[string]string{"address": "10.0.0.9", "mac-address": "52:54:00:00:00:09", "dynamic": "true"})
			},
			cmd:     []string{"/ip/dhcp-server/lease/set", "=.id=*1", "=comment=x"},
			message: "failure: can not change dynamic lease",
		},
		{
			name: "query with a bad operation", version: "7.19",
			cmd:     []string{"/ip/pool/print", "?#x"},
			message: "invalid query ?#x",
		},
		{
			name: "set without a target", version: "7.19",
			cmd:     []string{"/ip/pool/set", "=comment=x"},
			message: "missing value(s) of argument(s) numbers",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, c := testRouter(t, tt.version)
			if tt.seed != nil {
				tt.seed(r)
			}
			for _, cmd := range tt.setup {
				run(t, c, cmd...)
			}
			de := deviceError(t, c, tt.cmd...)
			if got := de.Sentence.Map["message"]; got != tt.message {
				t.Errorf("message %q, want %q", got, tt.message)
			}
			if got := de.Sentence.Map["category"]; got != tt.category {
				t.Errorf("category %q, want %q", got, tt.category)
			}
			// The connection is still usable after a trap.
			run(t, c, "/system/identity/print")
		})
	}
}
