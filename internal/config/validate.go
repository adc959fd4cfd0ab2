package config

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Defaults, in one place so the README can quote them.
const (
	DefaultStateDir  = "/var/lib/bootstrapd"
	DefaultSocket    = "/run/bootstrapd.sock"
	DefaultLeaseTime = time.Hour
	DefaultBlockSize = 1468 // a full 1500-byte Ethernet frame
)

// Bounds of what a site may say. A lease goes on the wire as uint32 seconds
// (and its renewal and rebinding times with it), and a subnet's size is
// what the pool scans for a free address: the bounds keep both far from
// overflow and from work no provisioning network needs.
const (
	MinLeaseTime  = time.Minute
	MaxLeaseTime  = 7 * 24 * time.Hour
	MinSubnetBits = 8  // a /8: 16M addresses, more than any rack
	MaxSubnetBits = 30 // a /30: the smallest with a host besides the router
)

func (s *Site) defaults(dir string) error {
	abs := func(p *string, def string) {
		if *p == "" {
			*p = def
		}
		if !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	abs(&s.StateDir, DefaultStateDir)
	abs(&s.NetbootDir, "netboot")
	abs(&s.ProfilesDir, "profiles")
	if s.DHCP.Mode == "" {
		s.DHCP.Mode = ModeReservation
	}
	if s.Boot == nil {
		s.Boot = &Boot{}
	}
	if s.Boot.BIOS == "" {
		s.Boot.BIOS = "undionly.kpxe"
	}
	if s.Boot.EFI == "" {
		// snponly.efi drives the NIC through the firmware's own driver, which
		// works on more hardware than iPXE's native drivers in ipxe.efi.
		s.Boot.EFI = "snponly.efi"
	}
	if s.TFTP == nil {
		s.TFTP = &TFTP{}
	}
	if s.TFTP.Listen == "" {
		s.TFTP.Listen = ":69"
	}
	if s.TFTP.BlockSize == 0 {
		s.TFTP.BlockSize = DefaultBlockSize
	}
	if s.HTTP == nil {
		s.HTTP = &HTTP{}
	}
	if s.HTTP.Listen == "" {
		s.HTTP.Listen = ":8080"
	}
	if s.API == nil {
		s.API = &API{}
	}
	if s.Nodes != nil && s.Nodes.AuthorizedKeys != "" && !filepath.IsAbs(s.Nodes.AuthorizedKeys) {
		s.Nodes.AuthorizedKeys = filepath.Join(dir, s.Nodes.AuthorizedKeys)
	}
	if s.API.Socket == "" {
		s.API.Socket = DefaultSocket
	} else if !filepath.IsAbs(s.API.Socket) {
		s.API.Socket = filepath.Join(dir, s.API.Socket)
	}
	s.routerDefaults(dir)
	s.clusterDefaults(dir)
	s.packageCacheDefaults(dir)
	s.storeDefaults(dir)
	s.bmcDefaults(dir)
	for _, f := range []*string{&s.API.TokenFile, &s.API.TLSCertFile, &s.API.TLSKeyFile} {
		if *f != "" && !filepath.IsAbs(*f) {
			*f = filepath.Join(dir, *f)
		}
	}
	return nil
}

func (s *Site) validate() error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	add(s.validateDHCP())
	add(s.validateServer())
	if b := s.TFTP.BlockSize; b < 512 || b > 65464 {
		add(s.Errorf("tftp.blksize", "tftp blksize %d is outside 512..65464 (RFC 2348); 1468 fits a 1500-byte MTU", b))
	}
	add(s.validateAPI())
	add(s.CheckBootFiles())
	add(s.validateJoin())
	add(s.validateRouter())
	add(s.validateCluster())
	add(s.validateDiscovery())
	add(s.validateBMC())
	add(s.validatePackageCache())
	add(s.validateStore())
	return errors.Join(errs...)
}

// validateServer parses server_address, when set, into Server.
func (s *Site) validateServer() error {
	if s.ServerAddress == "" {
		return nil
	}
	a, err := netip.ParseAddr(s.ServerAddress)
	if err != nil || !a.Is4() {
		return s.Errorf("server_address", "server_address %q is not an IPv4 address", s.ServerAddress)
	}
	s.Server = a
	return nil
}

// validateAPI checks the TCP admin listener and reads its token. The socket
// needs nothing: its file mode is its access control. TCP has no such thing,
// so a TCP listener without a token would let anyone who can reach the port
// enroll nodes, and is refused rather than defaulted.
func (s *Site) validateAPI() error {
	a := s.API
	if a.Listen == "" {
		if a.TLSCertFile != "" || a.TLSKeyFile != "" {
			key := "api.tls_cert_file"
			if a.TLSCertFile == "" {
				key = "api.tls_key_file"
			}
			return s.Errorf(key, "api tls_cert_file and tls_key_file are for the TCP listener, and listen is not set (the socket needs no TLS): set listen = \"host:port\" or remove them")
		}
		return nil
	}
	if _, _, err := net.SplitHostPort(a.Listen); err != nil {
		return s.Errorf("api.listen", "api listen %q is not host:port, like \"10.77.0.1:8081\" or \":8081\"", a.Listen)
	}
	// The umask makes the file 0600 from its creation, not after a chmod.
	const mint = "(umask 077 && head -c 32 /dev/urandom | base64 > %[1]s)"
	if a.TokenFile == "" {
		return s.Errorf("api.listen", "api listen is set but token_file is not: a TCP admin API without a token is refused; "+
			"set token_file = \"/etc/bootstrapd/api-token\" and create it with `"+mint+"`", "/etc/bootstrapd/api-token")
	}
	tok, err := s.secret("api.token_file", a.TokenFile, mint)
	if err != nil {
		return err
	}
	a.token = tok
	return s.validateAPITLS()
}

// validateAPITLS loads the TCP listener's certificate and key, which come
// as a pair: one without the other is a mistake, not a request for plain
// HTTP. The key is a secret like the token, held to the same file mode.
func (s *Site) validateAPITLS() error {
	a := s.API
	switch {
	case a.TLSCertFile == "" && a.TLSKeyFile == "":
		return nil
	case a.TLSKeyFile == "":
		return s.Errorf("api.tls_cert_file", "api tls_cert_file is set but tls_key_file is not: set both (the certificate and its private key, PEM) or neither")
	case a.TLSCertFile == "":
		return s.Errorf("api.tls_key_file", "api tls_key_file is set but tls_cert_file is not: set both (the certificate and its private key, PEM) or neither")
	}
	cert, err := os.ReadFile(a.TLSCertFile)
	if err != nil {
		return s.Errorf("api.tls_cert_file", "api tls_cert_file %s: %v", a.TLSCertFile, errors.Unwrap(err))
	}
	key, err := s.secret("api.tls_key_file", a.TLSKeyFile, "")
	if err != nil {
		return err
	}
	pair, err := tls.X509KeyPair(cert, []byte(key))
	if err != nil {
		return s.Errorf("api.tls_cert_file", "api tls_cert_file %s and tls_key_file %s are not a PEM certificate and its private key: %v", a.TLSCertFile, a.TLSKeyFile, err)
	}
	a.cert = &pair
	return nil
}

func (s *Site) validateDHCP() error {
	d := &s.DHCP
	switch d.Mode {
	case ModeReservation, ModePool, ModeProxy, ModeOff:
	default:
		return s.Errorf("dhcp.mode", "dhcp mode %q is not one of reservation, pool, proxy, off", d.Mode)
	}
	lease := DefaultLeaseTime
	if d.LeaseTime != "" {
		var err error
		if lease, err = time.ParseDuration(d.LeaseTime); err != nil || lease < MinLeaseTime || lease > MaxLeaseTime {
			return s.Errorf("dhcp.lease_time", "lease_time %q must be a duration from 1m to 168h (7 days), like \"1h\"", d.LeaseTime)
		}
	}
	s.Lease = lease
	if d.Subnet == "" {
		if d.Mode == ModeReservation || d.Mode == ModePool {
			return s.Errorf("dhcp", "dhcp mode %q hands out addresses, so it needs subnet = \"a.b.c.d/nn\"", d.Mode)
		}
		return nil
	}
	p, err := netip.ParsePrefix(d.Subnet)
	if err != nil || !p.Addr().Is4() {
		return s.Errorf("dhcp.subnet", "subnet %q is not an IPv4 CIDR, like \"10.77.0.0/24\"", d.Subnet)
	}
	if p.Bits() < MinSubnetBits || p.Bits() > MaxSubnetBits {
		return s.Errorf("dhcp.subnet", "subnet %q must have a prefix length from /%d to /%d (the provisioning network, like \"10.77.0.0/24\")",
			d.Subnet, MinSubnetBits, MaxSubnetBits)
	}
	if p != p.Masked() {
		return s.Errorf("dhcp.subnet", "subnet %q has host bits set; did you mean %q?", d.Subnet, p.Masked().String())
	}
	s.Subnet = p
	inSubnet := func(key, v string) (netip.Addr, error) {
		a, err := netip.ParseAddr(v)
		if err != nil || !a.Is4() {
			return a, s.Errorf(key, "%q is not an IPv4 address", v)
		}
		if !p.Contains(a) {
			return a, s.Errorf(key, "%s is outside subnet %s", a, p)
		}
		return a, nil
	}
	if d.Router != "" {
		a, err := inSubnet("dhcp.router", d.Router)
		if err != nil {
			return err
		}
		s.routerAddr = a
	}
	for _, v := range d.DNS {
		if a, err := netip.ParseAddr(v); err != nil || !a.Is4() {
			return s.Errorf("dhcp.dns", "dns server %q is not an IPv4 address", v)
		}
	}
	switch len(d.Range) {
	case 0:
		s.Range = defaultRange(p)
	case 2:
		lo, err := inSubnet("dhcp.range", d.Range[0])
		if err != nil {
			return err
		}
		hi, err := inSubnet("dhcp.range", d.Range[1])
		if err != nil {
			return err
		}
		if hi.Less(lo) {
			return s.Errorf("dhcp.range", "range starts at %s, after its end %s; write [first, last]", lo, hi)
		}
		if lo == p.Addr() || hi == lastAddr(p) {
			return s.Errorf("dhcp.range", "range %s-%s includes the network or broadcast address of %s", lo, hi, p)
		}
		s.Range = [2]netip.Addr{lo, hi}
	default:
		return s.Errorf("dhcp.range", "range needs exactly two addresses, [first, last]")
	}
	return nil
}

// defaultRange is the upper half of the subnet, leaving the lower half for
// routers and servers that are usually numbered from the bottom. The size
// is a uint64 because a /0's, 1<<32, is zero in a uint32; validation keeps
// subnets to /8../30, but the arithmetic holds for any IPv4 prefix up to /30.
func defaultRange(p netip.Prefix) [2]netip.Addr {
	base := uint64(u32(p.Addr()))
	size := uint64(1) << (32 - p.Bits())
	return [2]netip.Addr{from32(uint32(base + size/2)), from32(uint32(base + size - 2))}
}

func lastAddr(p netip.Prefix) netip.Addr {
	return from32(uint32(uint64(u32(p.Addr())) | (uint64(1)<<(32-p.Bits()) - 1)))
}

func u32(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func from32(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// CheckBootFiles reports boot files named in the site that are not in the
// netboot directory. It is part of validation and is also what the daemon
// says at start, so "missing file" always comes with the line that named it.
func (s *Site) CheckBootFiles() error {
	var errs []error
	for _, f := range []struct{ key, name string }{
		{"boot.bios", s.Boot.BIOS}, {"boot.efi", s.Boot.EFI}, {"boot.arm64", s.Boot.ARM64},
	} {
		if f.name == "" {
			continue
		}
		p := filepath.Join(s.NetbootDir, f.name)
		if _, err := os.Stat(p); err != nil {
			errs = append(errs, s.Errorf(f.key, "boot file %s is missing (%v); run `make netboot` or set %s to a file in %s",
				f.name, errors.Unwrap(err), f.key, s.NetbootDir))
		}
	}
	return errors.Join(errs...)
}

// String is a one-line summary for logs.
func (s *Site) String() string {
	if !s.Subnet.IsValid() {
		return fmt.Sprintf("interface=%s mode=%s", s.Interface, s.DHCP.Mode)
	}
	return fmt.Sprintf("interface=%s mode=%s subnet=%s", s.Interface, s.DHCP.Mode, s.Subnet)
}

func (s *Site) validateJoin() error {
	if s.Nodes != nil && s.Nodes.AuthorizedKeys != "" {
		b, err := os.ReadFile(s.Nodes.AuthorizedKeys)
		if err != nil {
			return s.Errorf("node.authorized_keys", "authorized_keys: %v", err)
		}
		if !strings.HasPrefix(strings.TrimSpace(string(b)), "ssh-") && !strings.HasPrefix(strings.TrimSpace(string(b)), "ecdsa-") {
			return s.Errorf("node.authorized_keys", "%s does not look like SSH public keys (one \"ssh-ed25519 AAAA... comment\" per line)", s.Nodes.AuthorizedKeys)
		}
	}
	if s.Nomad != nil {
		for _, srv := range s.Nomad.Servers {
			if _, _, err := net.SplitHostPort(srv); err != nil {
				return s.Errorf("nomad.servers", "nomad server %q is not host:port (the servers' RPC port, 4647)", srv)
			}
		}
	}
	return nil
}

// secret reads a secret from a file named at key: a token or a password
// (see ReadSecret), as an error at key's line. mint, if set, is a command
// that makes a good one (with %[1]s for the path).
func (s *Site) secret(key, path, mint string) (string, error) {
	name := strings.ReplaceAll(key, ".", " ")
	hint := ""
	if mint != "" {
		hint = fmt.Sprintf("; create it with `"+mint+"`", path)
	}
	v, err := ReadSecret(path)
	if err != nil {
		return "", s.Errorf(key, "%s %v%s", name, err, hint)
	}
	return v, nil
}

// ReadSecret reads a secret from the file at path, trimmed. The file must
// be the operator's alone (mode 0600 or stricter), checked on the open
// file before reading, so a secret other users can read is never used,
// not even once. Errors begin with the path and say what to do.
func ReadSecret(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("%s: %v", path, errors.Unwrap(err))
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("%s: %v", path, err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("%s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return "", fmt.Errorf("%s is readable or writable by group or others (mode %04o); run `chmod 600 %s`", path, perm, path)
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return "", fmt.Errorf("%s: %v", path, err)
	}
	v := strings.TrimSpace(string(b))
	if v == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return v, nil
}

// credential reads a credential from the file named at key (see secret),
// or else from the environment variable env: never from a flag, since
// argv is public. A missing one is an error when required.
func (s *Site) credential(key, file, env, what string, required bool) (string, error) {
	if file != "" {
		return s.secret(key, file, "")
	}
	v := strings.TrimSpace(os.Getenv(env))
	if v == "" && required {
		return "", s.Errorf(parent(key), "no %s: set %s (mode 0600) or the environment variable %s", what, key[len(parent(key))+1:], env)
	}
	return v, nil
}
