package config

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// RouterPasswordEnv is where the router password comes from when the site
// names no password_file. Never a flag: argv is world-readable.
const RouterPasswordEnv = "BOOTSTRAPD_ROUTER_PASSWORD"

// Router is the MikroTik router bootstrapd configures over the RouterOS API.
type Router struct {
	// API is how bootstrapd reaches the router: host:port, 8729 for
	// api-ssl (default) or 8728 for plain api (only with insecure).
	API          string `hcl:"api"`
	User         string `hcl:"user,optional"`
	PasswordFile string `hcl:"password_file,optional"`
	// The router's certificate is checked against a CA, or pinned by its
	// SHA-256 fingerprint (RouterOS certificates are usually self-signed).
	Fingerprint string `hcl:"fingerprint,optional"`
	CAFile      string `hcl:"ca_file,optional"`
	Insecure    bool   `hcl:"insecure,optional"`
	Timeout     string `hcl:"timeout,optional"`
	Marker      string `hcl:"marker,optional"`

	Identity  string `hcl:"identity,optional"`
	Interface string `hcl:"interface"` // bridge or port of the provisioning network
	VLANID    int    `hcl:"vlan_id,optional"`
	VLANName  string `hcl:"vlan_name,optional"`
	// DHCP says who serves addresses: bootstrapd (default), relay (the
	// router relays to bootstrapd) or router (RouterOS serves, pointing
	// PXE clients at bootstrapd; pairs with dhcp mode proxy or off).
	DHCP    string   `hcl:"dhcp,optional"`
	APIFrom []string `hcl:"api_from,optional"`

	Bootstrap *RouterBootstrap `hcl:"bootstrap,block"`

	// Parsed forms.
	Address     netip.Prefix // the router's address: dhcp.router with the subnet's length
	TimeoutD    time.Duration
	RootCAs     *x509.CertPool
	APIAddr     netip.Addr // the host part of API
	APIFromCIDR []netip.Prefix
	password    string
	// unpinned lets the block go without fingerprint or ca_file: only
	// LoadBootstrap sets it, since the certificate they pin does not exist
	// until the bootstrap script has made it.
	unpinned bool
}

// RouterBootstrap is what `router bootstrap-script` sets up on a fresh
// router so bootstrapd can reach it the first time.
type RouterBootstrap struct {
	Interface string `hcl:"interface"` // the port the operator's machine is cabled to
	VLANID    int    `hcl:"vlan_id,optional"`
	Address   string `hcl:"address"`  // the router's bootstrap address, CIDR
	Operator  string `hcl:"operator"` // the operator's address there

	AddressP  netip.Prefix
	OperatorA netip.Addr
}

// Password is the router password from password_file or the environment.
func (r *Router) Password() string { return r.password }

// String describes the block without the password.
func (r Router) String() string {
	return fmt.Sprintf("api=%s user=%s password_file=%s", r.API, r.User, r.PasswordFile)
}

var (
	fingerprintRE = regexp.MustCompile(`^[0-9a-fA-F]{64}$`)
	rosNameRE     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
)

func (s *Site) routerDefaults(dir string) {
	r := s.Router
	if r == nil {
		return
	}
	if r.User == "" {
		r.User = "bootstrapd"
	}
	if r.Marker == "" {
		r.Marker = "bootstrapd"
	}
	if r.DHCP == "" {
		r.DHCP = "bootstrapd"
		if s.DHCP.Mode == ModeProxy {
			r.DHCP = "router"
		}
	}
	if r.VLANID != 0 && r.VLANName == "" {
		r.VLANName = "prov"
	}
	for _, p := range []*string{&r.PasswordFile, &r.CAFile} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
}

// LoadBootstrap loads what `router bootstrap-script` needs from a site:
// the router block with its bootstrap block, user and password, the dhcp
// block (the router's address) and server_address. A fresh router has no
// certificate yet, so the block need not pin one; and nothing else in the
// site (netboot files, Vault, Nomad) is looked at, since the script is the
// first thing an operator runs, before any of that exists.
func LoadBootstrap(path string) (*Site, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read site config: %w", err)
	}
	s, err := decode(path, src)
	if err != nil {
		return nil, err
	}
	if s.Router == nil || s.Router.Bootstrap == nil {
		return nil, s.Errorf("router", "no router { bootstrap { ... } } block: the script needs the port your machine is cabled to "+
			"and the addresses to use there (README: The router)")
	}
	s.Router.unpinned = true
	if err := errors.Join(s.validateDHCP(), s.validateServer(), s.validateRouter()); err != nil {
		return nil, err
	}
	return s, nil
}

// validateRouter checks the router block and reads its password.
func (s *Site) validateRouter() error {
	r := s.Router
	if r == nil {
		return nil
	}
	host, _, err := net.SplitHostPort(r.API)
	if err == nil {
		r.APIAddr, err = netip.ParseAddr(host)
	}
	if err != nil {
		return s.Errorf("router.api", "router api %q is not address:port, like \"10.77.0.1:8729\" (api-ssl)", r.API)
	}
	if r.RootCAs, err = s.tlsTrust("router", r.Fingerprint, r.CAFile, "`bootstrapd router fingerprint` prints the router's"); err != nil {
		return err
	}
	if r.Fingerprint == "" && r.CAFile == "" && !r.Insecure && !r.unpinned {
		return s.Errorf("router", "the router block needs fingerprint (the router's api-ssl certificate, pinned) or ca_file: "+
			"once the router runs the script from `bootstrapd router bootstrap-script`, `bootstrapd router fingerprint -addr %s -write %s` writes it here; "+
			"plain api (8728), which sends the password in the clear, only with insecure = true", r.API, s.Path)
	}
	r.TimeoutD = 10 * time.Second
	if r.Timeout != "" {
		if r.TimeoutD, err = time.ParseDuration(r.Timeout); err != nil || r.TimeoutD < 100*time.Millisecond {
			return s.Errorf("router.timeout", "router timeout %q must be a duration of at least 100ms, like \"10s\"", r.Timeout)
		}
	}
	for key, v := range map[string]string{"router.user": r.User, "router.interface": r.Interface, "router.identity": r.Identity, "router.vlan_name": r.VLANName} {
		if v != "" && !rosNameRE.MatchString(v) {
			return s.Errorf(key, "%q is not a RouterOS name (letters, digits, . _ -; at most 64)", v)
		}
	}
	if r.VLANID < 0 || r.VLANID > 4094 {
		return s.Errorf("router.vlan_id", "vlan_id %d is outside 1..4094", r.VLANID)
	}
	switch r.DHCP {
	case "bootstrapd", "relay", "router":
	default:
		return s.Errorf("router.dhcp", "router dhcp %q is not one of bootstrapd, relay, router", r.DHCP)
	}
	if r.DHCP == "router" && s.DHCP.Mode != ModeProxy && s.DHCP.Mode != ModeOff {
		return s.Errorf("router.dhcp", "router dhcp = \"router\" makes RouterOS hand out addresses, so bootstrapd's dhcp mode must be proxy or off, not %s", s.DHCP.Mode)
	}
	if s.DHCP.Subnet == "" || s.DHCP.Router == "" {
		return s.Errorf("router", "the router block needs dhcp subnet and dhcp router: the router's address on the provisioning network")
	}
	// Both are written; if either did not parse, the dhcp block's error
	// already says so at its line, and the rest of this block is still checked.
	if s.Subnet.IsValid() && s.routerAddr.IsValid() {
		r.Address = netip.PrefixFrom(s.routerAddr, s.Subnet.Bits())
	}
	for _, v := range r.APIFrom {
		p, err := netip.ParsePrefix(v)
		if err != nil {
			a, aerr := netip.ParseAddr(v)
			if aerr != nil {
				return s.Errorf("router.api_from", "api_from %q is not an address or CIDR", v)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		r.APIFromCIDR = append(r.APIFromCIDR, p)
	}
	if err := s.validateBootstrap(); err != nil {
		return err
	}
	r.password, err = s.credential("router.password_file", r.PasswordFile, RouterPasswordEnv, "router password", true)
	return err
}

// tlsTrust checks how block (router, bmc) trusts its TLS peer: a pinned
// certificate fingerprint or a CA file, not both, and loads the CA file;
// hint says where a fingerprint comes from. Neither is nil, nil.
func (s *Site) tlsTrust(block, fingerprint, caFile, hint string) (*x509.CertPool, error) {
	switch {
	case fingerprint != "" && caFile != "":
		return nil, s.Errorf(block+".fingerprint", "set fingerprint or ca_file, not both")
	case fingerprint != "":
		if !fingerprintRE.MatchString(strings.ReplaceAll(fingerprint, ":", "")) {
			return nil, s.Errorf(block+".fingerprint", "fingerprint %q is not a SHA-256 in hex; %s", fingerprint, hint)
		}
	case caFile != "":
		return s.certPool(block+".ca_file", caFile)
	}
	return nil, nil
}

// certPool reads the PEM CA file named at key: the certificates a TLS
// peer's must chain to.
func (s *Site) certPool(key, path string) (*x509.CertPool, error) {
	name := strings.ReplaceAll(key, ".", " ")
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, s.Errorf(key, "%s: %v", name, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, s.Errorf(key, "%s %s holds no PEM certificate", name, path)
	}
	return pool, nil
}

func (s *Site) validateBootstrap() error {
	b := s.Router.Bootstrap
	if b == nil {
		return nil
	}
	if !rosNameRE.MatchString(b.Interface) {
		return s.Errorf("router.bootstrap.interface", "%q is not a RouterOS interface name, like \"ether1\"", b.Interface)
	}
	if b.VLANID < 0 || b.VLANID > 4094 {
		return s.Errorf("router.bootstrap.vlan_id", "vlan_id %d is outside 1..4094", b.VLANID)
	}
	var err error
	if b.AddressP, err = netip.ParsePrefix(b.Address); err != nil || !b.AddressP.Addr().Is4() {
		return s.Errorf("router.bootstrap.address", "bootstrap address %q is not the router's IPv4 address with its prefix, like \"192.0.2.2/30\"", b.Address)
	}
	if b.OperatorA, err = netip.ParseAddr(b.Operator); err != nil || !b.AddressP.Contains(b.OperatorA) || b.OperatorA == b.AddressP.Addr() {
		return s.Errorf("router.bootstrap.operator", "operator %q must be your machine's address inside %s", b.Operator, b.AddressP.Masked())
	}
	return nil
}
