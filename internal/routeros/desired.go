package routeros

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Site is the router configuration bootstrapd manages.
type Site struct {
	Identity string // the router's system identity; "" leaves it alone
	// Interface is where the provisioning network lives (a bridge or a
	// port); with VLANID set, a VLAN named VLANName is made on it.
	Interface string
	VLANName  string
	VLANID    int
	Address   netip.Prefix // the router's address there, e.g. 10.77.0.1/24
	// DHCP is who serves addresses: "bootstrapd" (the router does nothing),
	// "relay" (the router relays to bootstrapd) or "router" (a RouterOS
	// DHCP server whose network sends PXE clients to bootstrapd).
	DHCP       string
	Bootstrapd netip.Addr    // bootstrapd's address on the network
	Range      [2]netip.Addr // for the router's pool
	BootFile   string        // for the router's network (next-server is Bootstrapd)
	Domain     string
	// APIFrom restricts the api-ssl service to these addresses.
	APIFrom []string
	Nodes   []Node
	// Bootstrap is what the bootstrap script made so bootstrapd could
	// reach a fresh router. Once bootstrapd talks to the router some other
	// way (Via outside the bootstrap address), apply removes it.
	Bootstrap *Bootstrap
	Via       netip.Addr // the router address bootstrapd dials
}

// Bootstrap is the minimum a fresh router needs for bootstrapd to reach it:
// an address (on a VLAN of a port, or on the port itself) and an API user,
// usable only from the operator's address.
type Bootstrap struct {
	Interface string       // the port the operator's machine is cabled to, e.g. ether1
	VLANID    int          // 0: the address goes on Interface untagged
	Address   netip.Prefix // the router's bootstrap address, e.g. 192.0.2.2/30
	Operator  netip.Addr   // the operator's address: the only one the API answers
}

// BootstrapVLAN is the name the bootstrap script gives its VLAN.
const BootstrapVLAN = "bootstrapd-boot"

// objects are what the bootstrap script creates and apply later removes.
func (b *Bootstrap) objects() []Object {
	iface := b.Interface
	var out []Object
	if b.VLANID != 0 {
		iface = BootstrapVLAN
		out = append(out, Object{Path: "/interface/vlan", Key: []string{"name"},
			Props: map[string]string{"name": BootstrapVLAN, "vlan-id": strconv.Itoa(b.VLANID), "interface": b.Interface}})
	}
	return append(out, Object{Path: "/ip/address", Key: []string{"address", "interface"},
		Props: map[string]string{"address": b.Address.String(), "interface": iface}})
}

// BootstrapInUse reports whether bootstrapd reaches the router through the
// bootstrap address, which apply must then keep.
func (s Site) BootstrapInUse() bool {
	return s.Bootstrap != nil && s.Via.IsValid() && s.Bootstrap.Address.Contains(s.Via)
}

// nodePath says whether a menu's rows stand for enrolled nodes. Those
// mirror the inventory, so a plan always prunes them.
func nodePath(path string) bool {
	return path == dnsPath || path == "/ip/dhcp-server/lease"
}

const dnsPath = "/ip/dns/static"

// Node is an enrolled node: a DNS name, and a static lease when the
// router serves DHCP.
type Node struct {
	Hostname, MAC string
	IP            netip.Addr
}

// Desired turns the site into router objects for a RouterOS version.
func Desired(s Site, version string) []Object {
	iface := s.Interface
	var out []Object
	if s.Identity != "" {
		out = append(out, Object{Path: "/system/identity", Singleton: true, Props: map[string]string{"name": s.Identity}})
	}
	if s.VLANID != 0 {
		iface = s.VLANName
		out = append(out, Object{Path: "/interface/vlan", Key: []string{"name"},
			Props: map[string]string{"name": s.VLANName, "vlan-id": strconv.Itoa(s.VLANID), "interface": s.Interface}})
	}
	out = append(out,
		Object{Path: "/ip/address", Key: []string{"address", "interface"}, Props: map[string]string{"address": s.Address.String(), "interface": iface}},
		Object{Path: "/ip/firewall/nat", Key: []string{"chain", "src-address", "action"},
			Props: map[string]string{"chain": "srcnat", "action": "masquerade", "src-address": s.Address.Masked().String()}},
	)
	switch s.DHCP {
	case "relay":
		out = append(out, Object{Path: "/ip/dhcp-relay", Key: []string{"name"}, Props: map[string]string{
			"name": "bootstrapd", "interface": iface, "dhcp-server": s.Bootstrapd.String(), "local-address": s.Address.Addr().String(), "disabled": "false"}})
	case "router":
		out = append(out,
			Object{Path: "/ip/pool", Key: []string{"name"}, Props: map[string]string{"name": "bootstrapd", "ranges": s.Range[0].String() + "-" + s.Range[1].String()}},
			Object{Path: "/ip/dhcp-server", Key: []string{"name"}, Props: map[string]string{
				"name": "bootstrapd", "interface": iface, "address-pool": "bootstrapd", "disabled": "false"}},
			Object{Path: "/ip/dhcp-server/network", Key: []string{"address"}, Props: map[string]string{
				"address": s.Address.Masked().String(), "gateway": s.Address.Addr().String(), "dns-server": s.Address.Addr().String(),
				"domain": s.Domain, "next-server": s.Bootstrapd.String(), "boot-file-name": s.BootFile}},
		)
		for _, n := range s.Nodes {
			out = append(out, Object{Path: "/ip/dhcp-server/lease", Key: []string{"mac-address"}, Props: map[string]string{
				"mac-address": strings.ToUpper(n.MAC), "address": n.IP.String(), "server": "bootstrapd"}})
		}
	}
	for _, n := range s.Nodes {
		name := n.Hostname
		if s.Domain != "" {
			name += "." + s.Domain
		}
		out = append(out, Object{Path: "/ip/dns/static", Key: []string{"name"}, Props: map[string]string{"name": name, "address": n.IP.String()}})
	}
	if len(s.APIFrom) > 0 {
		// 7.24 renamed the property.
		prop := "address"
		if AtLeast(version, 7, 24) {
			prop = "available-from"
		}
		out = append(out, Object{Path: "/ip/service", Key: []string{"name"}, Fixed: true,
			Props: map[string]string{"name": "api-ssl", prop: strings.Join(s.APIFrom, ","), "disabled": "false"}})
	}
	// The bootstrap objects go only when bootstrapd no longer reaches the
	// router through them; an address before its VLAN (removes run in
	// reverse order).
	if s.Bootstrap != nil && !s.BootstrapInUse() {
		for _, o := range s.Bootstrap.objects() {
			o.Absent = true
			out = append(out, o)
		}
	}
	return out
}

// AtLeast reports whether a RouterOS version ("7.19.1", "7.20beta2",
// "6.49.10 (long-term)") is major.minor or later.
func AtLeast(version string, major, minor int) bool {
	v, _, _ := strings.Cut(strings.TrimSpace(version), " ")
	majStr, rest, _ := strings.Cut(v, ".")
	if i := strings.IndexFunc(rest, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
		rest = rest[:i] // "20beta2" -> "20"
	}
	maj, _ := strconv.Atoi(majStr)
	mnr, _ := strconv.Atoi(rest)
	return maj > major || maj == major && mnr >= minor
}

// String shows a change the way `router plan` prints it.
func (c Change) String() string {
	sign := map[Op]string{Add: "+", Set: "~", Remove: "-"}[c.Op]
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", sign, c.Path)
	if c.Object != "" {
		fmt.Fprintf(&b, " %s", c.Object)
	}
	if c.ID != "" {
		fmt.Fprintf(&b, " (%s)", c.ID)
	}
	for _, k := range sortedKeys(c.Props) {
		if c.Op == Set {
			fmt.Fprintf(&b, "\n    %s: %q -> %q", k, c.Old[k], c.Props[k])
		} else {
			fmt.Fprintf(&b, "\n    %s = %q", k, c.Props[k])
		}
	}
	return b.String()
}
