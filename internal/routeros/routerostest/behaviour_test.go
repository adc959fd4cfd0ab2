package routerostest

import (
	"slices"
	"testing"
)

// /ip/service: how a client finds the static api row in each release.
func TestServiceSelection(t *testing.T) {
	tests := []struct {
		version      string
		staticRows   int  // rows printed with ?dynamic=false
		setByNameOK  bool // set =numbers=api works
		addressField string
	}{
		// Before 7.19 the rows have no dynamic property, so ?dynamic=false
		// matches nothing: a client must not filter on it there.
		{"6.49", 0, true, "address"},
		{"7.17", 0, true, "address"},
		{"7.19", 8, false, "address"},
		{"7.24", 8, false, "available-from"},
	}
	for _, tt := range tests {
		t.Run(tt.version, func(t *testing.T) {
			_, c := testRouter(t, tt.version)
			rep := run(t, c, "/ip/service/print", "?dynamic=false", "=.proplist=.id,name")
			if len(rep.Re) != tt.staticRows {
				t.Errorf("?dynamic=false: %d rows, want %d", len(rep.Re), tt.staticRows)
			}
			_, err := c.RunArgs([]string{"/ip/service/set", "=numbers=api", "=" + tt.addressField + "=192.0.2.1/32"})
			if (err == nil) != tt.setByNameOK {
				t.Errorf("set by name: %v", err)
			}
			// By the static row's .id it always works.
			rep = run(t, c, "/ip/service/print", "?name=api", "?port=8728", "=.proplist=.id,dynamic")
			var id string
			for _, s := range rep.Re {
				if s.Map["dynamic"] != "true" {
					id = s.Map[".id"]
				}
			}
			run(t, c, "/ip/service/set", "=.id="+id, "="+tt.addressField+"=192.0.2.1/32")
			rep = run(t, c, "/ip/service/print", "?.id="+id, "=.proplist="+tt.addressField)
			if got := rep.Re[0].Map[tt.addressField]; got != "192.0.2.1/32" {
				t.Errorf("%s = %q", tt.addressField, got)
			}
		})
	}
}

// The connection rows of 7.19 come and go with the connections.
func TestServiceConnectionRows(t *testing.T) {
	r, c := testRouter(t, "7.19")
	count := func() int {
		n := 0
		for _, row := range r.Rows(pathService) {
			if row["connection"] == "true" {
				n++
			}
		}
		return n
	}
	if n := count(); n != 1 {
		t.Fatalf("%d connection rows with one client", n)
	}
	c.Close()
	r.Close() // waits for the connection to be gone
	if n := count(); n != 0 {
		t.Errorf("%d connection rows after close", n)
	}
}

func TestLeases(t *testing.T) {
	r, c := testRouter(t, "7.19")
	run(t, c, "/ip/dhcp-server/add", "=name=prov", "=interface=ether2")
	dyn := r.Seed(pathLease, map[string]string{"address": "10.0.0.50", "mac-address": "52:54:00:00:00:50", "server": "prov", "dynamic": "true"})
	run(t, c, "/ip/dhcp-server/lease/add", "=address=10.0.0.5", "=mac-address=52:54:00:00:00:05", "=server=prov", "=comment=bootstrapd")

	rep := run(t, c, "/ip/dhcp-server/lease/print", "?dynamic=false", "=.proplist=address")
	if got := names(rep, "address"); !slices.Equal(got, []string{"10.0.0.5"}) {
		t.Errorf("static leases %q", got)
	}
	run(t, c, "/ip/dhcp-server/lease/make-static", "=numbers="+dyn)
	rep = run(t, c, "/ip/dhcp-server/lease/print", "?dynamic=false", "=.proplist=address")
	if len(rep.Re) != 2 {
		t.Errorf("after make-static: %d static leases", len(rep.Re))
	}
	// A dynamic lease may be removed (it is released).
	other := r.Seed(pathLease, map[string]string{"address": "10.0.0.51", "dynamic": "true"})
	run(t, c, "/ip/dhcp-server/lease/remove", "=.id="+other)
}

func TestDefaults(t *testing.T) {
	_, c := testRouter(t, "7.19")
	run(t, c, "/ip/pool/add", "=name=prov", "=ranges=10.0.0.100-10.0.0.199")
	// RouterOS names a nameless DHCP server and adds it disabled.
	id := run(t, c, "/ip/dhcp-server/add", "=interface=ether2", "=address-pool=prov").Done.Map["ret"]
	m := run(t, c, "/ip/dhcp-server/print", "?.id="+id).Re[0].Map
	for k, v := range map[string]string{"name": "dhcp1", "disabled": "true", "address-pool": "prov", "lease-time": "30m"} {
		if m[k] != v {
			t.Errorf("dhcp-server %s = %q, want %q", k, m[k], v)
		}
	}
	// print leaves type out for A records.
	run(t, c, "/ip/dns/static/add", "=name=n1.lab", "=address=10.0.0.5", "=type=A")
	run(t, c, "/ip/dns/static/add", "=name=www.lab", "=cname=n1.lab", "=type=CNAME")
	rep := run(t, c, "/ip/dns/static/print", "=.proplist=name,type")
	if _, ok := rep.Re[0].Map["type"]; ok {
		t.Errorf("A record printed a type: %v", rep.Re[0].Map)
	}
	if rep.Re[1].Map["type"] != "CNAME" {
		t.Errorf("CNAME record: %v", rep.Re[1].Map)
	}
}

// Ordered menus accept place-before, as NAT and static DNS do.
func TestPlaceBefore(t *testing.T) {
	_, c := testRouter(t, "7.19")
	first := run(t, c, "/ip/firewall/nat/add", "=chain=srcnat", "=action=masquerade", "=comment=a").Done.Map["ret"]
	run(t, c, "/ip/firewall/nat/add", "=chain=srcnat", "=action=masquerade", "=comment=b", "=place-before="+first)
	rep := run(t, c, "/ip/firewall/nat/print", "=.proplist=comment")
	if got := names(rep, "comment"); !slices.Equal(got, []string{"b", "a"}) {
		t.Errorf("order %q, want [b a]", got)
	}
	// Unordered menus have no place-before.
	de := deviceError(t, c, "/ip/pool/add", "=name=p", "=ranges=10.0.0.1-10.0.0.2", "=place-before=*1")
	if de.Sentence.Map["message"] != "unknown parameter place-before" {
		t.Errorf("place-before on /ip/pool: %v", de)
	}
}

// Writes are all or nothing: a failing set changes no row.
func TestSetIsAtomic(t *testing.T) {
	r, c := testRouter(t, "7.19")
	run(t, c, "/ip/pool/add", "=name=a", "=ranges=10.0.0.1-10.0.0.2")
	run(t, c, "/ip/pool/add", "=name=b", "=ranges=10.0.0.3-10.0.0.4")
	deviceError(t, c, "/ip/pool/set", "=numbers=a,b", "=name=c")
	if got := []string{r.Rows(pathPool)[0]["name"], r.Rows(pathPool)[1]["name"]}; !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("names after a failed set: %q", got)
	}
}

func TestMoveEnableDisable(t *testing.T) {
	_, c := testRouter(t, "7.19")
	var ids []string
	for _, name := range []string{"a", "b", "c"} {
		ids = append(ids, run(t, c, "/ip/dns/static/add", "=name="+name+".lab", "=address=10.0.0.1").Done.Map["ret"])
	}
	order := func() []string {
		return names(run(t, c, "/ip/dns/static/print", "=.proplist=name"), "name")
	}
	run(t, c, "/ip/dns/static/move", "=numbers="+ids[2], "=destination="+ids[0])
	if got := order(); !slices.Equal(got, []string{"c.lab", "a.lab", "b.lab"}) {
		t.Errorf("after move before a: %q", got)
	}
	run(t, c, "/ip/dns/static/move", "=numbers="+ids[2])
	if got := order(); !slices.Equal(got, []string{"a.lab", "b.lab", "c.lab"}) {
		t.Errorf("after move to the end: %q", got)
	}
	run(t, c, "/ip/dns/static/disable", "=numbers="+ids[1])
	rep := run(t, c, "/ip/dns/static/print", "?disabled=true", "=.proplist=name")
	if got := names(rep, "name"); !slices.Equal(got, []string{"b.lab"}) {
		t.Errorf("disabled: %q", got)
	}
	run(t, c, "/ip/dns/static/enable", "=numbers="+ids[1])
	if rep := run(t, c, "/ip/dns/static/print", "?disabled=true"); len(rep.Re) != 0 {
		t.Errorf("still disabled after enable")
	}
}
