package doctor

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/bootstrapd/bootstrapd/internal/config"
	"github.com/bootstrapd/bootstrapd/internal/daemon"
	"github.com/bootstrapd/bootstrapd/internal/profile"
)

// CheckInterface: the interface exists, is up, and has an IPv4 address (in
// the DHCP subnet when there is one), which is what the daemon will offer
// nodes as its address.
func CheckInterface(e *Env) []Result {
	s := e.Site
	r := Result{Name: "interface"}
	ifi, err := net.InterfaceByName(s.Interface)
	if err != nil {
		r.Detail = fmt.Sprintf("no interface %q on this machine (%s); it has: %s", s.Interface, where(s, "interface"), interfaceNames())
		r.Fix = fmt.Sprintf("set interface at %s to the NIC cabled to the provisioning network (`ip -br link` lists them)", where(s, "interface"))
		return []Result{r}
	}
	have := ipv4Prefixes(ifi)
	// With server_address set the daemon does not look for an address in
	// the subnet (a relayed subnet is not on this interface at all), so
	// neither does doctor; any IPv4 address will do.
	need := s.Subnet
	if s.Server.IsValid() {
		need = netip.Prefix{}
	}
	var in []netip.Prefix
	for _, p := range have {
		if !need.IsValid() || need.Contains(p.Addr()) {
			in = append(in, p)
		}
	}
	var problems, fixes []string
	if ifi.Flags&net.FlagUp == 0 {
		problems = append(problems, fmt.Sprintf("%s is down", ifi.Name))
		fixes = append(fixes, fmt.Sprintf("`ip link set %s up`", ifi.Name))
	}
	if len(in) == 0 {
		p, fix := noAddress(s, need, ifi.Name, have)
		problems = append(problems, p)
		fixes = append(fixes, fix)
	}
	if len(problems) > 0 {
		r.Detail = strings.Join(problems, "; ")
		r.Fix = strings.Join(fixes, "; then ")
		return []Result{r}
	}
	// The same choice the daemon makes, so the address printed here is the
	// one nodes will be told to fetch from.
	server, err := daemon.ServerAddress(s)
	if err != nil {
		r.Detail = oneLine(err.Error())
		r.Fix = "set server_address to an address of this machine that nodes can reach"
		return []Result{r}
	}
	r.OK = true
	r.Detail = fmt.Sprintf("%s is up with %s; nodes will reach bootstrapd at %s", ifi.Name, joinPrefixes(in), server)
	if s.Server.IsValid() && !hasAddr(have, s.Server) {
		r.Detail += fmt.Sprintf(" (server_address, not on %s)", ifi.Name)
	}
	if s.Server.IsValid() && s.Subnet.IsValid() && !anyIn(have, s.Subnet) {
		r.Detail += fmt.Sprintf("; none of its addresses is in %s, which is fine only if that subnet's requests come through a relay", s.Subnet)
	}
	if ifi.Flags&net.FlagRunning == 0 {
		// Not a failure: a NIC waiting for its first node to be cabled, or
		// a bridge with no ports yet, has no carrier and will serve fine.
		r.Detail += "; no carrier yet (cable or switch port?)"
	}
	return []Result{r}
}

// noAddress says what is missing (an address in need, or any when need is
// not valid) and the command that adds it.
func noAddress(s *config.Site, need netip.Prefix, name string, have []netip.Prefix) (problem, fix string) {
	has := "no IPv4 address at all"
	if len(have) > 0 {
		has = "only " + joinPrefixes(have)
	}
	if !need.IsValid() {
		fix := fmt.Sprintf("`ip addr add <address>/<len> dev %s` with its address on the provisioning network", name)
		if s.Server.IsValid() {
			fix = fmt.Sprintf("`ip addr add %s/<len> dev %s` (server_address, which nodes are told to fetch from)", s.Server, name)
		}
		return fmt.Sprintf("%s has no IPv4 address", name), fix
	}
	return fmt.Sprintf("%s has no IPv4 address in %s (it has %s)", name, s.Subnet, has),
		fmt.Sprintf("`ip addr add %s dev %s`, or set dhcp.subnet at %s to %s's network",
			suggestAddr(s), name, where(s, "dhcp.subnet"), name)
}

// suggestAddr proposes an address for the server in the subnet: the first
// host address that is neither the router nor in the DHCP range.
func suggestAddr(s *config.Site) netip.Prefix {
	router, _ := netip.ParseAddr(s.DHCP.Router)
	a := s.Subnet.Addr().Next()
	for s.Subnet.Contains(a) && (a == router || inRange(s.Range, a)) {
		a = a.Next()
	}
	return netip.PrefixFrom(a, s.Subnet.Bits())
}

func inRange(r [2]netip.Addr, a netip.Addr) bool {
	return r[0].IsValid() && !a.Less(r[0]) && !r[1].Less(a)
}

func ipv4Prefixes(ifi *net.Interface) []netip.Prefix {
	addrs, _ := ifi.Addrs()
	var out []netip.Prefix
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Is4() {
			out = append(out, p)
		}
	}
	return out
}

func anyIn(ps []netip.Prefix, subnet netip.Prefix) bool {
	for _, p := range ps {
		if subnet.Contains(p.Addr()) {
			return true
		}
	}
	return false
}

func hasAddr(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Addr() == a {
			return true
		}
	}
	return false
}

func joinPrefixes(ps []netip.Prefix) string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return strings.Join(out, ", ")
}

func interfaceNames() string {
	ifs, err := net.Interfaces()
	if err != nil {
		return err.Error()
	}
	names := make([]string, len(ifs))
	for i, ifi := range ifs {
		names[i] = ifi.Name
	}
	return strings.Join(names, ", ")
}

// where is "file:line" of an attribute that the site must have written
// (interface, dhcp.subnet); for others the site only knows its block.
func where(s *config.Site, key string) string {
	var ce *config.Error
	if errors.As(s.Errorf(key, ""), &ce) {
		return fmt.Sprintf("%s:%d", ce.File, ce.Pos.Line)
	}
	return s.Path
}

// CheckBootFiles: the boot files the site names are in the netboot
// directory and can actually be served from it.
func CheckBootFiles(e *Env) []Result {
	s := e.Site
	r := Result{Name: "netboot files"}
	if err := s.CheckBootFiles(); err != nil {
		r.Detail = oneLine(err.Error())
		r.Fix = fmt.Sprintf("run `make netboot` (it copies Debian's iPXE binaries), or copy the files into %s", s.NetbootDir)
		return []Result{r}
	}
	var have, problems, fixes []string
	for _, f := range []struct{ kind, name string }{{"BIOS", s.Boot.BIOS}, {"UEFI", s.Boot.EFI}, {"ARM64", s.Boot.ARM64}} {
		if f.name == "" {
			continue
		}
		if p, fix := servable(s.NetbootDir, f.name); p != "" {
			problems, fixes = append(problems, p), append(fixes, fix)
			continue
		}
		have = append(have, fmt.Sprintf("%s (%s)", f.name, f.kind))
	}
	if len(problems) > 0 {
		r.Detail, r.Fix = strings.Join(problems, "; "), strings.Join(fixes, "; ")
		return []Result{r}
	}
	r.OK = true
	r.Detail = fmt.Sprintf("%s in %s", strings.Join(have, ", "), s.NetbootDir)
	return []Result{r}
}

// servable says what would stop TFTP or HTTP serving name from dir, or ""
// when nothing would. Both serve through an os.Root, so a file that is
// there for os.Stat can still be refused: a symlink that leaves the
// directory (say, into /usr/lib/ipxe) is the usual one.
func servable(dir, name string) (problem, fix string) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Sprintf("netboot directory: %v", err), fmt.Sprintf("create %s, or set netboot_dir in the site file", dir)
	}
	defer root.Close()
	full := filepath.Join(dir, name)
	fi, err := root.Stat(name)
	if err != nil {
		if _, serr := os.Stat(full); serr == nil {
			return fmt.Sprintf("%s leaves %s (a symlink out of it?), so TFTP and HTTP refuse it", name, dir),
				fmt.Sprintf("copy the file into %s instead of linking to it (`make netboot` copies)", dir)
		}
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Sprintf("%s is missing from %s", name, dir), fmt.Sprintf("copy it to %s", full)
		}
		return fmt.Sprintf("%s: %v", full, err), fmt.Sprintf("make %s a readable file", full)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Sprintf("%s is not a regular file", full), fmt.Sprintf("replace %s with the file itself", full)
	}
	if fi.Size() == 0 {
		return fmt.Sprintf("%s is empty", full), fmt.Sprintf("copy %s again; a node would download nothing", name)
	}
	return "", ""
}

// CheckProfiles: the profiles directory loads as the daemon loads it, which
// includes parsing every cmdline template and the site's default_profile.
func CheckProfiles(e *Env) []Result {
	s := e.Site
	r := Result{Name: "profiles"}
	ps, err := daemon.LoadProfiles(s)
	if err != nil {
		r.Detail = oneLine(err.Error())
		r.Fix = "edit the profile at the file:line named (the fields templates may use are in the README, under Profiles)"
		return []Result{r}
	}
	r.OK = true
	switch {
	case len(ps) == 0:
		r.Detail = fmt.Sprintf("no profiles in %s: nodes can be enrolled but have nothing to install", s.ProfilesDir)
	case s.DefaultProfile != "":
		r.Detail = fmt.Sprintf("%s in %s (default %s)", strings.Join(profile.Names(ps), ", "), s.ProfilesDir, s.DefaultProfile)
	default:
		r.Detail = fmt.Sprintf("%s in %s (no default_profile: enroll needs -profile)", strings.Join(profile.Names(ps), ", "), s.ProfilesDir)
	}
	return []Result{r}
}

// CheckProfileFiles: one line per profile that loads, saying whether its
// kernel and initrds can be served and what its command line renders to for
// a sample node, so the operator sees the line a node will boot with.
// Profiles whose file does not load are CheckProfiles' to report.
func CheckProfileFiles(e *Env) []Result {
	s := e.Site
	ps, _ := profile.LoadDir(s.ProfilesDir)
	var out []Result
	for _, name := range profile.Names(ps) {
		p := ps[name]
		r := Result{Name: "profile " + name}
		var problems, fixes []string
		for _, f := range append([]string{p.Kernel}, p.Initrd...) {
			if prob, fix := servable(s.NetbootDir, f); prob != "" {
				problems = append(problems, prob)
				fixes = append(fixes, fix+fmt.Sprintf(", or fix the path in %s", p.File))
			}
		}
		data := sampleData(s, p)
		cmdline, err := p.RenderCmdline(data)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", p.File, err))
			fixes = append(fixes, "fix the cmdline template")
		}
		names := make([]string, 0, len(p.Templates))
		for name := range p.Templates {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			if _, err := p.Render(name, data); err != nil {
				problems = append(problems, fmt.Sprintf("template %s (%s): %v", name, p.Templates[name], err))
				fixes = append(fixes, fmt.Sprintf("fix %s", p.Templates[name]))
			}
		}
		if len(problems) > 0 {
			r.Detail, r.Fix = strings.Join(problems, "; "), strings.Join(fixes, "; ")
		} else {
			r.OK = true
			r.Detail = fmt.Sprintf("kernel %s", p.Kernel)
			if len(p.Initrd) > 0 {
				r.Detail += ", initrd " + strings.Join(p.Initrd, " ")
			}
			if len(names) > 0 {
				r.Detail += ", templates " + strings.Join(names, " ")
			}
			r.Detail += "; cmdline: " + cmdline
		}
		out = append(out, r)
	}
	return out
}

// sampleData is a plausible node for rendering p's templates, as the
// profile package's own load-time sample, but with this site's server URL
// and addresses when known, so the rendered line is the one a node would get.
func sampleData(s *config.Site, p *profile.Profile) profile.Data {
	base := "http://SERVER:8080"
	if server, err := daemon.ServerAddress(s); err == nil {
		base = "http://" + listenAddr(s.HTTP.Listen, server)
	}
	ip := "10.0.0.100"
	if s.Range[0].IsValid() {
		ip = s.Range[0].String()
	}
	d := profile.Data{
		MAC: "52:54:00:12:34:56", Hostname: "n1", IP: ip, Profile: p.Name, Labels: map[string]string{}, Server: base,
		StatusURL: base + "/install/TOKEN/status", ConfigURL: base + "/install/TOKEN/config",
	}
	if p.Nomad != nil {
		d.Nomad = *p.Nomad
	}
	return d
}
