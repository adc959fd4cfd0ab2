// Package config loads and validates the HCL site file.
//
// Every error names the file and line it is about and says what to change,
// because the person reading it is standing in front of a rack, not a debugger.
package config

import (
	"crypto/tls"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// DHCP modes. Reservation is the default because it is the only one that is
// safe to start on a LAN that already has a DHCP server.
const (
	ModeReservation = "reservation"
	ModePool        = "pool"
	ModeProxy       = "proxy"
	ModeOff         = "off"
)

// Site is one site file, decoded, with defaults applied and paths absolute.
type Site struct {
	Interface      string `hcl:"interface"`
	ServerAddress  string `hcl:"server_address,optional"`
	StateDir       string `hcl:"state_dir,optional"`
	NetbootDir     string `hcl:"netboot_dir,optional"`
	ProfilesDir    string `hcl:"profiles_dir,optional"`
	DefaultProfile string `hcl:"default_profile,optional"`

	DHCP DHCP  `hcl:"dhcp,block"`
	Boot *Boot `hcl:"boot,block"`
	TFTP *TFTP `hcl:"tftp,block"`
	HTTP *HTTP `hcl:"http,block"`
	API  *API  `hcl:"api,block"`
	// Nodes and Nomad say what goes into every node's join bundle.
	Nodes *Nodes `hcl:"node,block"`
	Nomad *Nomad `hcl:"nomad,block"`
	// Router is the MikroTik bootstrapd configures; nil leaves it alone.
	Router *Router `hcl:"router,block"`
	Vault  *Vault  `hcl:"vault,block"`
	// Discovery bounds the nodes unknown MACs leave behind.
	Discovery *Discovery `hcl:"discovery,block"`
	// PackageCache serves the nodes' package repository from a cache.
	PackageCache *PackageCache `hcl:"package_cache,block"`

	// Store, when set, keeps the inventory in etcd, shared with other
	// instances, instead of a file in state_dir.
	Store *Store `hcl:"store,block"`
	// BMC is how nodes' BMCs are logged in to and used; never nil after
	// Load (the defaults when the site has no bmc block).
	BMC *BMC `hcl:"bmc,block"`

	// Parsed forms, filled by Load. Lease is within MinLeaseTime and
	// MaxLeaseTime, so it and its fractions fit DHCP's uint32 seconds.
	Server netip.Addr
	Subnet netip.Prefix
	Range  [2]netip.Addr
	Lease  time.Duration

	// routerAddr is dhcp.router parsed and inside Subnet, or invalid: the
	// router block takes it from here rather than parsing it again, since
	// validation goes on after an error and the text may not be an address.
	routerAddr netip.Addr

	// Path is the file this came from; ranges lets later checks (such as a
	// missing boot file) point at the line that named it.
	Path   string
	ranges map[string]hcl.Range
}

// DHCP is the dhcp block.
type DHCP struct {
	Mode      string   `hcl:"mode,optional"`
	Subnet    string   `hcl:"subnet,optional"`
	Range     []string `hcl:"range,optional"`
	Router    string   `hcl:"router,optional"`
	DNS       []string `hcl:"dns,optional"`
	Domain    string   `hcl:"domain,optional"`
	LeaseTime string   `hcl:"lease_time,optional"`
}

// Boot names the boot file for each client architecture. Names are relative
// to the netboot directory; HTTP boot clients get the EFI file as a URL.
type Boot struct {
	BIOS  string `hcl:"bios,optional"`
	EFI   string `hcl:"efi,optional"`
	ARM64 string `hcl:"arm64,optional"`
}

// TFTP is the tftp block.
type TFTP struct {
	Listen    string `hcl:"listen,optional"`
	BlockSize int    `hcl:"blksize,optional"`
}

// HTTP is the node-facing HTTP listener.
type HTTP struct {
	Listen string `hcl:"listen,optional"`
}

// Nodes is what every installed node gets.
type Nodes struct {
	// AuthorizedKeys is a file of SSH public keys installed as root's
	// authorized_keys: nodes have no password login.
	AuthorizedKeys string `hcl:"authorized_keys,optional"`
}

// API is the admin API the CLI talks to: always on the unix socket, and on
// TCP too when Listen is set, where a bearer token read from TokenFile is
// required, over TLS when TLSCertFile and TLSKeyFile are set.
type API struct {
	Socket      string `hcl:"socket,optional"`
	Listen      string `hcl:"listen,optional"`
	TokenFile   string `hcl:"token_file,optional"`
	TLSCertFile string `hcl:"tls_cert_file,optional"`
	TLSKeyFile  string `hcl:"tls_key_file,optional"`

	// token is unexported, and API has a String method, so that printing the
	// site or its api block (%v, %+v, slog) cannot leak it.
	token string
	// cert is the key pair loaded at load time, so that a bad file is a
	// config error with a line, not a listener that fails at start.
	cert *tls.Certificate
}

// Token is the bearer token read from TokenFile at load; it is "" when
// Listen is unset, since only the TCP listener uses it.
func (a *API) Token() string { return a.token }

// Certificate is the TCP listener's TLS key pair, nil without TLS.
func (a *API) Certificate() *tls.Certificate { return a.cert }

// String describes the block without the token.
func (a API) String() string {
	return fmt.Sprintf("socket=%s listen=%s token_file=%s tls_cert_file=%s", a.Socket, a.Listen, a.TokenFile, a.TLSCertFile)
}

// Error is a problem at a place in a file.
type Error struct {
	File string
	Pos  hcl.Pos
	Msg  string
}

func (e *Error) Error() string { return fmt.Sprintf("%s:%d: %s", e.File, e.Pos.Line, e.Msg) }

// Load reads, decodes, defaults and validates a site file.
func Load(path string) (*Site, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read site config: %w", err)
	}
	return Parse(path, src)
}

// Parse is Load for a file already in memory; path is used in messages and to
// resolve relative directories.
func Parse(path string, src []byte) (*Site, error) {
	s, err := decode(path, src)
	if err != nil {
		return nil, err
	}
	if err := s.validate(); err != nil {
		return nil, err
	}
	return s, nil
}

// decode parses a site file and applies its defaults, without validating
// it: Parse checks all of it, LoadBootstrap only what the router's
// bootstrap script needs.
func decode(path string, src []byte) (*Site, error) {
	f, diags := hclsyntax.ParseConfig(src, path, hcl.InitialPos)
	if diags.HasErrors() {
		return nil, diagError(path, diags)
	}
	s := &Site{Path: path, ranges: map[string]hcl.Range{}}
	if diags := gohcl.DecodeBody(f.Body, nil, s); diags.HasErrors() {
		return nil, diagError(path, diags)
	}
	indexRanges(f.Body.(*hclsyntax.Body), "", s.ranges)
	dir, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return nil, err
	}
	if err := s.defaults(dir); err != nil {
		return nil, err
	}
	return s, nil
}

// indexRanges records where every attribute is, keyed "block.attr", so that
// validation after decoding can still point at a line.
func indexRanges(b *hclsyntax.Body, prefix string, out map[string]hcl.Range) {
	out[prefix] = b.SrcRange
	for name, a := range b.Attributes {
		out[prefix+name] = a.SrcRange
	}
	for _, blk := range b.Blocks {
		out[prefix+blk.Type] = blk.TypeRange
		indexRanges(blk.Body, prefix+blk.Type+".", out)
	}
}

// Errorf returns an error located at the attribute key ("dhcp.subnet"), or at
// its block, or at the top of the file when neither was written.
func (s *Site) Errorf(key, format string, args ...any) error {
	r, ok := s.ranges[key]
	for k := key; !ok && k != ""; {
		k = parent(k)
		r, ok = s.ranges[k]
	}
	if !ok {
		r.Start = hcl.InitialPos
	}
	return &Error{File: s.Path, Pos: r.Start, Msg: fmt.Sprintf(format, args...)}
}

func parent(key string) string {
	for i := len(key) - 1; i >= 0; i-- {
		if key[i] == '.' {
			return key[:i]
		}
	}
	return ""
}

// diagError is the first error among diags, at its place in path, or at
// the top of path when HCL gave it no place: every error names a line.
func diagError(path string, diags hcl.Diagnostics) error {
	for _, d := range diags {
		if d.Severity != hcl.DiagError {
			continue
		}
		msg := d.Summary
		if d.Detail != "" {
			msg += ": " + d.Detail
		}
		if d.Subject == nil {
			return &Error{File: path, Pos: hcl.InitialPos, Msg: msg}
		}
		return &Error{File: d.Subject.Filename, Pos: d.Subject.Start, Msg: msg}
	}
	return diags
}
