package doctor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/bootstrapd/bootstrapd/internal/config"
	"github.com/bootstrapd/bootstrapd/internal/daemon"
	"github.com/bootstrapd/bootstrapd/internal/pxe"
)

// socketState is what sits at the admin socket path when no bootstrapd
// answers there.
type socketState struct {
	kind string // "free", "stale", "not a socket", "foreign"
	err  error  // for "foreign": what went wrong talking to it
}

// probeTimeout bounds talking to a daemon that accepts but hangs, so
// doctor itself never hangs.
const probeTimeout = 3 * time.Second

// probeSocket asks whatever listens on the admin socket for its nodes, the
// cheapest thing only a bootstrapd answers.
func probeSocket(ctx context.Context, path string) (live string, st socketState) {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", socketState{kind: "free"}
	}
	if err != nil {
		return "", socketState{kind: "foreign", err: err}
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return "", socketState{kind: "not a socket"}
	}
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", path)
	}}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://bootstrapd/v1/nodes", nil)
	if err != nil {
		return "", socketState{kind: "foreign", err: err}
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		// Refused: the file outlived its daemon (SIGKILL, a crash), and
		// serve removes it before listening.
		if errors.Is(err, syscall.ECONNREFUSED) {
			return "", socketState{kind: "stale"}
		}
		return "", socketState{kind: "foreign", err: err}
	}
	defer resp.Body.Close()
	var nodes []json.RawMessage
	if resp.StatusCode != http.StatusOK {
		return "", socketState{kind: "foreign", err: fmt.Errorf("GET /v1/nodes answered %s", resp.Status)}
	}
	if err := json.NewDecoder(resp.Body).Decode(&nodes); err != nil {
		return "", socketState{kind: "foreign", err: fmt.Errorf("GET /v1/nodes: %w", err)}
	}
	count := fmt.Sprintf("%d nodes", len(nodes))
	if len(nodes) == 1 {
		count = "1 node"
	}
	return fmt.Sprintf("a bootstrapd is serving on %s (%s)", path, count), socketState{}
}

// CheckAdminSocket: the admin socket path is free for serve, or a running
// bootstrapd already owns it, which is said plainly since doctor is run
// beside a live daemon too.
func CheckAdminSocket(e *Env) []Result {
	path := e.Site.API.Socket
	r := Result{Name: "admin socket", OK: true}
	switch {
	case e.Live != "":
		r.Detail = e.Live + "; the ports below are its own"
	case e.Socket.kind == "free":
		r.Detail = path + " is free"
	case e.Socket.kind == "stale":
		r.Detail = path + " is left over from a bootstrapd that did not stop cleanly; serve replaces it"
	case e.Socket.kind == "not a socket":
		r.OK = false
		r.Detail = path + " exists and is not a socket; serve removes whatever is there to listen"
		r.Fix = "move it away, or set api.socket in " + e.Site.Path + " to another path"
	default:
		r.OK = false
		r.Detail = fmt.Sprintf("something holds %s but does not answer like bootstrapd: %v", path, e.Socket.err)
		r.Fix = fmt.Sprintf("find it with `ss -xlp src %s` and stop it, or set api.socket in %s to another path", path, e.Site.Path)
	}
	return []Result{r}
}

// CheckDHCPPorts: 67/udp (and 4011/udp in proxy mode) can be had on the
// interface, unless DHCP is off.
//
// The daemon's own DHCP socket sets SO_REUSEADDR and SO_REUSEPORT, so its
// bind succeeds beside another DHCP server that set them too (dnsmasq, a
// second bootstrapd), and both then answer. This bind sets neither, so any
// socket on the port that would see this interface's broadcasts conflicts;
// it is bound to the interface like the daemon's, so a server confined to
// other interfaces does not.
func CheckDHCPPorts(e *Env) []Result {
	s := e.Site
	var ports []int
	switch s.DHCP.Mode {
	case config.ModeReservation, config.ModePool:
		ports = []int{67}
	case config.ModeProxy:
		ports = []int{67, pxe.PXEPort}
	}
	var out []Result
	for _, port := range ports {
		iface := s.Interface
		shown := fmt.Sprintf("%d/udp on %s", port, iface)
		if _, err := net.InterfaceByName(iface); err != nil {
			// The interface check reports that; meanwhile look for anything
			// on the port at all.
			iface, shown = "", fmt.Sprintf("%d/udp (on any interface: %s is missing)", port, s.Interface)
		}
		r, err := portResult(e, fmt.Sprintf("dhcp port %d", port), shown, "udp", port, func() error { return pxe.ProbeDHCPPort(iface, port) })
		if errors.Is(err, syscall.EADDRINUSE) {
			r.Fix += fmt.Sprintf(", or confine that DHCP server to other interfaces (dnsmasq: except-interface=%s; ISC dhcpd, Kea: list only their own interfaces)", s.Interface)
		}
		out = append(out, r)
	}
	return out
}

// CheckTFTPPort: the TFTP address can be bound, as the daemon binds it.
func CheckTFTPPort(e *Env) []Result {
	return []Result{bindListen(e, "tftp port", "udp", "tftp.listen", e.Site.TFTP.Listen, func(addr string) error {
		c, err := net.ListenPacket("udp4", addr)
		if err == nil {
			c.Close()
		}
		return err
	})}
}

// CheckHTTPPort: the node HTTP address can be bound, as the daemon binds it.
func CheckHTTPPort(e *Env) []Result {
	return []Result{bindListen(e, "http port", "tcp", "http.listen", e.Site.HTTP.Listen, func(addr string) error {
		l, err := net.Listen("tcp4", addr)
		if err == nil {
			l.Close()
		}
		return err
	})}
}

// CheckAdminTCPPort: the admin API's TCP address, when api.listen is set.
func CheckAdminTCPPort(e *Env) []Result {
	if e.Site.API.Listen == "" {
		return nil
	}
	return []Result{bindListen(e, "admin api port", "tcp", "api.listen", e.Site.API.Listen, func(addr string) error {
		l, err := net.Listen("tcp", addr)
		if err == nil {
			l.Close()
		}
		return err
	})}
}

// bindListen binds listen the way the daemon will (a bare ":port" on the
// server address) and reports.
func bindListen(e *Env, name, proto, setting, listen string, bind func(string) error) Result {
	server, err := daemon.ServerAddress(e.Site)
	addr := listenAddr(listen, server)
	shown := fmt.Sprintf("%s/%s", strings.TrimPrefix(addr, ":"), proto)
	if err != nil {
		shown = fmt.Sprintf("port %s (on every address: the server address is not known, see interface)", shown)
	}
	port := 0
	if _, p, err := net.SplitHostPort(addr); err == nil {
		port, _ = net.LookupPort(proto, p)
	}
	r, err := portResult(e, name, shown, proto, port, func() error { return bind(addr) })
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		r.Fix += fmt.Sprintf(", or set %s in %s to another port", setting, e.Site.Path)
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		r.Fix = fmt.Sprintf("set %s in %s to an address of this machine, or to \":port\" to use the server address", setting, e.Site.Path)
	}
	return r
}

// listenAddr is where the daemon binds listen: a bare ":port" binds to the
// server address (daemon's withHost), or to every address when that is
// not known.
func listenAddr(listen string, server netip.Addr) string {
	h, port, err := net.SplitHostPort(listen)
	if err != nil || h != "" || !server.IsValid() {
		return listen
	}
	return net.JoinHostPort(server.String(), port)
}

// portResult runs bind and turns its error into a finding; the error is
// returned too so callers can add a fix specific to their setting.
func portResult(e *Env, name, shown, proto string, port int, bind func() error) (Result, error) {
	r := Result{Name: name}
	if e.Live != "" {
		r.OK = true
		r.Detail = shown + " is held by the running bootstrapd"
		return r, nil
	}
	err := bind()
	switch {
	case err == nil:
		r.OK = true
		r.Detail = shown + " is free"
	case errors.Is(err, syscall.EADDRINUSE):
		by := "another process"
		if who := holders(proto, port); len(who) > 0 {
			by = strings.Join(who, ", ")
		}
		r.Detail = fmt.Sprintf("%s is in use by %s", shown, by)
		r.Fix = "stop " + by
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		r.Detail = fmt.Sprintf("%s: %v", shown, err)
		r.Fix = "run doctor as root, as bootstrapd runs: ports below 1024 and binding to an interface need it"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		r.Detail = fmt.Sprintf("%s: the host part is not an address of this machine", shown)
		r.Fix = "use an address of this machine"
	default:
		r.Detail = fmt.Sprintf("%s: %v", shown, err)
		r.Fix = "see the error; `ss -lunp` and `ss -ltnp` list what holds which port"
	}
	return r, err
}

// holders names the processes with a socket on port in this network
// namespace, as "name (pid N)", so a conflict says whom to stop. It reads
// the namespace's socket tables through /proc/thread-self (the calling
// thread may be in another namespace than the process) and matches socket
// inodes against every process's open files. It returns nil when it cannot
// tell (another namespace, no permission).
func holders(proto string, port int) []string {
	if port == 0 {
		return nil
	}
	inodes := map[string]bool{}
	for _, table := range []string{proto, proto + "6"} {
		data, err := os.ReadFile("/proc/thread-self/net/" + table)
		if err != nil {
			continue
		}
		lines := strings.Split(string(data), "\n")
		for _, line := range lines[1:] {
			f := strings.Fields(line)
			if len(f) < 10 {
				continue
			}
			_, hexPort, _ := strings.Cut(f[1], ":")
			p, err := strconv.ParseUint(hexPort, 16, 16)
			// For TCP only listeners conflict; 0A is TCP_LISTEN.
			if err != nil || int(p) != port || (proto == "tcp" && f[3] != "0A") {
				continue
			}
			inodes["socket:["+f[9]+"]"] = true
		}
	}
	if len(inodes) == 0 {
		return nil
	}
	procs, _ := os.ReadDir("/proc")
	var out []string
	for _, p := range procs {
		pid := p.Name()
		if _, err := strconv.Atoi(pid); err != nil {
			continue
		}
		fds, _ := os.ReadDir(filepath.Join("/proc", pid, "fd"))
		for _, fd := range fds {
			link, err := os.Readlink(filepath.Join("/proc", pid, "fd", fd.Name()))
			if err != nil || !inodes[link] {
				continue
			}
			comm, _ := os.ReadFile(filepath.Join("/proc", pid, "comm"))
			out = append(out, fmt.Sprintf("%s (pid %s)", strings.TrimSpace(string(comm)), pid))
			break
		}
	}
	return out
}
