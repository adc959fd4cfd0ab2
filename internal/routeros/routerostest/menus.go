package routerostest

import (
	"fmt"
	"net/netip"
)

// The property lists follow the add/set arguments of RouterOS's
// /console/inspect dumps for 7.19 and 7.9 (terraform-provider-routeros
// tools/schema_changes) as summarized in reference routeros.md section 3,
// trimmed to what bootstrapd touches plus the read-only flags it filters on.
// Version bounds come from the same section.

const (
	pathInterface  = "/interface"
	pathVLAN       = "/interface/vlan"
	pathBridge     = "/interface/bridge"
	pathBridgePort = "/interface/bridge/port"
	pathBridgeVLAN = "/interface/bridge/vlan"
	pathAddress    = "/ip/address"
	pathPool       = "/ip/pool"
	pathDHCPServer = "/ip/dhcp-server"
	pathDHCPNet    = "/ip/dhcp-server/network"
	pathLease      = "/ip/dhcp-server/lease"
	pathRelay      = "/ip/dhcp-relay"
	pathDNSStatic  = "/ip/dns/static"
	pathNAT        = "/ip/firewall/nat"
	pathService    = "/ip/service"
	pathIdentity   = "/system/identity"
	pathResource   = "/system/resource"
	pathUser       = "/user"
	pathGroup      = "/user/group"
)

// writable is the command set of an ordinary table menu.
func writable(extra ...string) map[string]bool {
	return cmds(append([]string{"add", "set", "unset", "remove"}, extra...)...)
}

// allMenus returns every menu as release x has it.
func allMenus(x version) []*menu {
	common := []prop{str("comment"), boolean("disabled").d("false")}
	ms := []*menu{
		{
			path: pathInterface, nameKey: "name", group: "interface",
			props: []prop{
				str("name").ro(), str("default-name").ro(), str("type").ro(),
				integer("mtu").ro(), integer("actual-mtu").ro(), str("mac-address").ro(),
				boolean("running").ro().d("true"), boolean("slave").ro().d("false"),
				boolean("dynamic").ro().d("false"), boolean("disabled").ro().d("false"),
				str("comment").ro(),
			},
		},
		{
			path: pathVLAN, nameKey: "name", group: "interface", ifType: "vlan",
			unique: [][]string{{"name"}}, dupMsg: dupInterface, commands: writable(),
			props: append([]prop{
				str("name").req(), integer("vlan-id").req(), ref("interface", pathInterface).req(),
				integer("mtu").d("1500"), str("arp").d("enabled"),
				boolean("use-service-tag").d("false"), boolean("mvrp").d("false").since(v(7, 15)),
				str("mac-address").ro(), boolean("running").ro().d("true"),
			}, common...),
			derive: deriveVLAN,
		},
		{
			path: pathBridge, nameKey: "name", group: "interface", ifType: "bridge",
			unique: [][]string{{"name"}}, dupMsg: dupInterface, commands: writable(),
			props: append([]prop{
				str("name").req(), str("mtu").d("auto"), str("protocol-mode").d("rstp"),
				boolean("vlan-filtering").d("false"), integer("pvid").d("1"),
				str("frame-types").d("admit-all"), boolean("ingress-filtering").d(v7Bool(x)),
				str("mac-address").ro(), boolean("running").ro().d("true"),
			}, common...),
			derive: deriveMAC,
		},
		{
			path: pathBridgePort, unique: [][]string{{"interface"}}, dupMsg: dupBridgePort,
			commands: writable(),
			props: append([]prop{
				ref("bridge", pathBridge).req(), ref("interface", pathInterface).req(),
				integer("pvid").d("1"), str("frame-types").d("admit-all"),
				boolean("ingress-filtering").d(v7Bool(x)),
				boolean("dynamic").ro().d("false"), boolean("inactive").ro().d("false"),
			}, common...),
		},
		{
			path: pathBridgeVLAN, commands: writable(),
			props: append([]prop{
				ref("bridge", pathBridge).req(), str("vlan-ids").req(), str("tagged"), str("untagged"),
				boolean("dynamic").ro().d("false"),
			}, common...),
		},
		{
			path: pathAddress, unique: [][]string{{"address", "interface"}}, dupMsg: dupAddress,
			commands: writable(),
			props: append([]prop{
				addr("address").req(), str("network"), ref("interface", pathInterface).req(),
				str("actual-interface").ro(), boolean("invalid").ro().d("false"),
				boolean("dynamic").ro().d("false"),
			}, common...),
			derive: deriveAddress,
		},
		{
			path: pathPool, nameKey: "name", unique: [][]string{{"name"}}, dupMsg: dupPool,
			commands: writable(),
			props: []prop{
				str("name").req(), str("ranges").req(), ref("next-pool", pathPool, "none").d("none"),
				str("comment"),
			},
		},
		{
			path: pathDHCPServer, nameKey: "name", unique: [][]string{{"name"}}, dupMsg: dupEntry,
			commands: writable(), autoName: "dhcp",
			props: []prop{
				str("name"), ref("interface", pathInterface).req(),
				ref("address-pool", pathPool, "static-only").d("static-only"),
				str("lease-time").d(leaseTime(x)), str("authoritative").d("yes"),
				str("relay").d("0.0.0.0"), str("lease-script"), boolean("add-arp").d("false"),
				// src-address is v6's name; 7.17 added server-address and 7.18
				// rejects src-address (terraform-provider-routeros #646, #679).
				addr("src-address").until(v(7, 18)), addr("server-address").since(v(7, 17)),
				str("comment"),
				// RouterOS adds a DHCP server disabled: its own examples all say
				// disabled=no [I].
				boolean("disabled").d("true"),
				boolean("dynamic").ro().d("false"), boolean("invalid").ro().d("false"),
			},
		},
		{
			path: pathDHCPNet, unique: [][]string{{"address"}}, dupMsg: dupEntry, commands: writable(),
			props: []prop{
				addr("address").req(), str("gateway"), str("netmask"), str("dns-server"),
				str("domain"), str("next-server"), str("boot-file-name"), str("dhcp-option"),
				str("dhcp-option-set"), str("ntp-server"), str("comment"),
				boolean("dynamic").ro().d("false"),
			},
		},
		{
			path: pathLease, unique: [][]string{{"mac-address", "server"}}, dupMsg: dupEntry,
			commands: writable("make-static"), dynamicSet: errDynamicLease, removeDynamic: true,
			props: append([]prop{
				addr("address").req(), str("mac-address"), str("client-id"),
				ref("server", pathDHCPServer, "all"), str("lease-time").d("0s"),
				str("address-lists"), str("dhcp-option"), boolean("block-access").d("false"),
				boolean("dynamic").ro().d("false"), str("status").ro().d("waiting"),
				str("host-name").ro(), str("active-address").ro(), str("active-mac-address").ro(),
				boolean("blocked").ro().d("false"),
			}, common...),
		},
		{
			path: pathRelay, nameKey: "name", unique: [][]string{{"name"}}, dupMsg: dupEntry,
			commands: writable(),
			props: []prop{
				str("name").req(), ref("interface", pathInterface).req(), str("dhcp-server").req(),
				str("local-address").d("0.0.0.0"), str("delay-threshold").d("none"),
				boolean("add-relay-info").d("false"),
				str("dhcp-server-vrf").since(v(7, 17)).d("main"),
				boolean("local-address-as-src-ip").since(v(7, 17)).d("false"),
				str("comment"),
				// like the DHCP server, the manual's relay example says
				// disabled=no [I].
				boolean("disabled").d("true"),
				boolean("dynamic").ro().d("false"), boolean("invalid").ro().d("false"),
			},
		},
		{
			path: pathDNSStatic, unique: [][]string{{"name", "address"}}, dupMsg: dupExists,
			commands: writable(), ordered: true,
			props: append([]prop{
				str("name"), str("regexp"), addr("address"),
				// print leaves type out for A records (reference section 3);
				// when v6 gained type is not known, 6.47 is a guess.
				str("type").since(v(6, 47)).hidden("A"),
				str("ttl").d("1d"), str("cname"), str("forward-to"), str("text"),
				boolean("match-subdomain").since(v(7, 5)).d("false"),
				str("address-list").since(v(7, 5)),
				boolean("dynamic").ro().d("false"),
			}, common...),
		},
		{
			path: pathNAT, commands: writable(), ordered: true,
			props: append([]prop{
				str("chain").req(), str("action").d("accept"), str("src-address"),
				str("dst-address"), str("protocol"), str("dst-port"),
				ref("out-interface", pathInterface), str("out-interface-list"),
				ref("in-interface", pathInterface), str("in-interface-list"),
				str("to-addresses"), str("to-ports"), boolean("log").d("false"),
				str("log-prefix").d(""),
				integer("bytes").ro().d("0"), integer("packets").ro().d("0"),
				boolean("dynamic").ro().d("false"), boolean("invalid").ro().d("false"),
			}, common...),
		},
		{
			path: pathService, nameKey: "name", commands: cmds("set", "unset"),
			dynamicSet: errConfiguredElsewhere,
			props: []prop{
				str("name").ro(), integer("port"),
				// 7.24 renamed address to available-from (community.routeros
				// PR #475).
				str("address").until(v(7, 24)).d(""), str("available-from").since(v(7, 24)).d(""),
				str("certificate").d("none"), str("tls-version").d("any"),
				str("vrf").since(v(7, 0)).d("main"), integer("max-sessions").since(v(7, 16)).d("20"),
				boolean("disabled").d("false"), boolean("invalid").ro().d("false"),
				// 7.19 lists every connection as a dynamic row with the
				// service's name (terraform-provider-routeros #769).
				boolean("dynamic").ro().since(v(7, 19)).d("false"),
				boolean("connection").ro().since(v(7, 19)).d("false"),
				str("proto").ro().since(v(7, 19)).d("tcp"),
				str("local").ro().since(v(7, 19)), str("remote").ro().since(v(7, 19)),
			},
		},
		{
			path: pathIdentity, singleton: true, commands: cmds("set"),
			props: []prop{str("name").d("MikroTik")},
		},
		{
			path: pathResource, singleton: true,
			props: []prop{
				str("version").ro(), str("board-name").ro().d("CHR"),
				str("architecture-name").ro().d("x86_64"), str("platform").ro().d("MikroTik"),
				str("uptime").ro().d("1h"),
			},
		},
		{
			path: pathUser, nameKey: "name", unique: [][]string{{"name"}}, dupMsg: dupEntry,
			commands: writable(),
			props: append([]prop{
				str("name").req(), ref("group", pathGroup).req(), str("password").wo(),
				str("address").d(""), str("last-logged-in").ro(),
			}, common...),
		},
		{
			path: pathGroup, nameKey: "name", unique: [][]string{{"name"}}, dupMsg: dupEntry,
			commands: writable(),
			props: []prop{
				str("name").req(), str("policy").d(""), str("skin").d("default"), str("comment"),
			},
		},
	}
	for _, m := range ms {
		var props []prop
		for _, p := range m.props {
			if p.in(x) {
				props = append(props, p)
			}
		}
		m.props = props
		if m.commands == nil {
			m.commands = cmds()
		}
		m.commands["print"], m.commands["getall"] = true, true
		// enable and disable are set disabled=no/yes wherever set can
		// write disabled; move exists where order matters.
		if p, ok := m.prop("disabled"); ok && !p.readOnly && m.commands["set"] {
			m.commands["enable"], m.commands["disable"] = true, true
		}
		if m.ordered {
			m.commands["move"] = true
		}
	}
	return ms
}

// v7Bool is ingress-filtering's default: off in v6, on in v7 [I].
func v7Bool(x version) string {
	if x.major >= 7 {
		return "true"
	}
	return "false"
}

// leaseTime is the DHCP server's default lease time: 10m in v6, 30m in v7
// [I: reference section 3 says 10m without a version].
func leaseTime(x version) string {
	if x.major >= 7 {
		return "30m"
	}
	return "10m"
}

// deriveAddress fills network (unless given) and actual-interface, as
// RouterOS computes them; an address without /prefix is a /32 (the manual's
// trap example adds 192.168.88.1 that way).
func deriveAddress(_ *store, vals map[string]string) {
	vals["actual-interface"] = vals["interface"]
	if _, ok := vals["network"]; ok {
		return
	}
	if p, err := parsePrefix(vals["address"]); err == nil {
		vals["network"] = p.Masked().Addr().String()
	}
}

// deriveVLAN gives a VLAN its parent's MAC address, as RouterOS does.
func deriveVLAN(s *store, vals map[string]string) {
	if parent, ok := s.interfaceRow(vals["interface"]); ok {
		vals["mac-address"] = parent["mac-address"]
	}
}

// deriveMAC gives a bridge a MAC address derived from its name.
func deriveMAC(_ *store, vals map[string]string) {
	if vals["mac-address"] == "" {
		vals["mac-address"] = macFor(vals["name"])
	}
}

// macFor makes a stable locally administered MAC address from a name.
func macFor(name string) string {
	var h uint32 = 2166136261
	for i := 0; i < len(name); i++ {
		h = (h ^ uint32(name[i])) * 16777619
	}
	return fmt.Sprintf("02:00:%02X:%02X:%02X:%02X", byte(h>>24), byte(h>>16), byte(h>>8), byte(h))
}

// parsePrefix reads an address with or without /prefix.
func parsePrefix(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}
