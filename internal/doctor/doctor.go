// Package doctor is the preflight behind `bootstrapd doctor`: it checks,
// without serving anything, that a site would start and could boot a node:
// the interface, the ports, the netboot files, the profiles, and the
// router when the site configures one.
//
// It is read by an operator at 2 a.m., so every failure says what is wrong
// in terms of the machine in front of them and what to type or edit next.
// Each check is a plain function of an Env; adding one is adding a function
// to Checks.
package doctor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"

	"github.com/bootstrapd/bootstrapd/internal/api"
	"github.com/bootstrapd/bootstrapd/internal/config"
	"github.com/bootstrapd/bootstrapd/internal/daemon"
)

// Result is one line of the report: {name, ok, detail, fix}. It is the
// admin API's type, so the status page shows these lines as they are.
type Result = api.HealthCheck

// Env is what the checks look at. It is gathered once, before any check
// runs, so the checks do not depend on each other's order and the admin
// socket is probed once rather than by every port check.
type Env struct {
	Site *config.Site
	// Live describes the bootstrapd answering on the admin socket ("" when
	// none does). Its ports are then its own, not conflicts: doctor is also
	// run beside a serving daemon.
	Live string
	// Socket is what was found at the admin socket path when no bootstrapd
	// answers there; see probeSocket.
	Socket socketState
	// OpenBMC logs in to a node's BMC; nil: the real protocols with the
	// site's bmc block (daemon.OpenWith). Tests put a fake here.
	OpenBMC daemon.OpenBMC
}

// Check inspects one aspect of the site. It returns no results when it has
// nothing to say for this site (say, DHCP ports when DHCP is off), and may
// return several (one per profile).
type Check func(*Env) []Result

// Checks lists every check after the site file has loaded, in the order
// they are printed: from the wire up to what a node boots.
func Checks() []Check {
	return []Check{
		CheckInterface,
		CheckAdminSocket,
		CheckStore,
		CheckDHCPPorts,
		CheckTFTPPort,
		CheckHTTPPort,
		CheckAdminTCPPort,
		CheckBootFiles,
		CheckProfiles,
		CheckProfileFiles,
		CheckRouter,
		CheckCluster,
		CheckBMCs,
	}
}

// Run loads the site file and runs every check. When the site does not
// load, nothing else can be checked meaningfully, so that is the only result
// (config.Load checks the boot files too, so a missing one ends it here).
func Run(ctx context.Context, sitePath string) []Result {
	site, err := config.Load(sitePath)
	if err != nil {
		return []Result{siteFailed(sitePath, err)}
	}
	env := &Env{Site: site}
	env.Live, env.Socket = probeSocket(ctx, site.API.Socket)
	out := []Result{{Name: "site", OK: true, Detail: fmt.Sprintf("%s loads (%s)", sitePath, site)}}
	for _, c := range Checks() {
		out = append(out, c(env)...)
	}
	return out
}

// Live runs the checks that mean something beside a serving daemon, for
// its status page: the store's, the router's and the cluster's. The others
// look at ports and files the daemon itself holds or has already loaded.
func Live(site *config.Site) []Result {
	env := &Env{Site: site}
	return append(append(CheckStore(env), CheckRouter(env)...), CheckCluster(env)...)
}

func siteFailed(path string, err error) Result {
	// Every config error names its line and says what to change there.
	fix := fmt.Sprintf("do what the message says at the line it names, then run `bootstrapd doctor -config %s` again", path)
	if pe := (*fs.PathError)(nil); errors.As(err, &pe) && pe.Path == path {
		fix = "pass the site file with -config (the default is site.hcl in the current directory)"
	}
	// Load joins every problem it found with newlines; the report is one
	// line per check.
	return Result{Name: "site", Detail: oneLine(err.Error()), Fix: fix}
}

func oneLine(s string) string { return strings.ReplaceAll(strings.TrimSpace(s), "\n", "; ") }

// Failed counts the results that are not OK.
func Failed(rs []Result) int {
	n := 0
	for _, r := range rs {
		if !r.OK {
			n++
		}
	}
	return n
}

// WriteText prints one line per result:
//
//	OK   <name>: <detail>
//	FAIL <name>: <detail> -> <fix>
func WriteText(w io.Writer, rs []Result) error {
	for _, r := range rs {
		var err error
		if r.OK {
			_, err = fmt.Fprintf(w, "OK   %s: %s\n", r.Name, r.Detail)
		} else {
			_, err = fmt.Fprintf(w, "FAIL %s: %s -> %s\n", r.Name, r.Detail, r.Fix)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// Report is the -json form: ok answers "would it start?" without a script
// having to scan the checks.
type Report struct {
	OK     bool     `json:"ok"`
	Checks []Result `json:"checks"`
}

// WriteJSON prints the results as one indented Report.
func WriteJSON(w io.Writer, rs []Result) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(Report{OK: Failed(rs) == 0, Checks: rs})
}
