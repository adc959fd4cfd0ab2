package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/bootstrapd/bootstrapd/internal/api"
	"github.com/bootstrapd/bootstrapd/internal/inventory"
)

// powerCmd is `power status|on|off|cycle <node>`: through the daemon, which
// holds the credentials and records the action in the node's history.
func powerCmd(what string) func(fs *flag.FlagSet, e *env) action {
	return func(fs *flag.FlagSet, e *env) action {
		var wol *bool
		if what == api.PowerOn {
			wol = fs.Bool("wol", false, "send a Wake-on-LAN magic packet instead (a machine without a BMC)")
		}
		return clientAction(fs, e, func(ctx context.Context, c *api.Client, asJSON bool, args []string) error {
			req := api.PowerRequest{Action: what, WoL: wol != nil && *wol}
			r, err := c.Power(ctx, args[0], req)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(e, r)
			}
			fmt.Fprintln(e.stdout, powerText(r))
			return nil
		})
	}
}

// powerText is a power action's result in one line (two with a warning).
func powerText(r api.PowerResult) string {
	if r.Error != "" {
		return r.Error
	}
	via := "BMC " + r.BMC
	if r.Action == api.PowerWake {
		via = "Wake-on-LAN"
	}
	s := fmt.Sprintf("%s (%s), %s: %s", dash(r.Node), r.MAC, via, dash(r.Answer))
	if r.Action == api.PowerStatus {
		s = fmt.Sprintf("%s (%s) is %s (%s: %s)", dash(r.Node), r.MAC, dash(r.State), via, dash(r.Answer))
	}
	if r.Warning != "" {
		s += "\nwarning: " + r.Warning
	}
	return s
}

// powerFlags are enroll's and reinstall's -power and -wol.
type powerFlags struct {
	fs    *flag.FlagSet
	power *bool
	wol   *bool
}

func addPowerFlags(fs *flag.FlagSet, power string) *powerFlags {
	return &powerFlags{
		fs:    fs,
		power: fs.Bool("power", false, power),
		wol:   fs.Bool("wol", false, "wake the node with a Wake-on-LAN magic packet (a machine without a BMC)"),
	}
}

// set reports whether -power was given at all, so that enroll without it
// takes the site's power_on_enroll and -power=false overrides it.
func (p *powerFlags) set() *bool {
	var out *bool
	p.fs.Visit(func(f *flag.Flag) {
		if f.Name == "power" {
			out = p.power
		}
	})
	return out
}

// powered prints what a node's power action did after enroll or
// reinstall, and fails (exit 1) when it failed: the node is enrolled, but
// nothing will boot it.
func powered(e *env, r api.NodeReply) error {
	if r.Power == nil {
		return nil
	}
	if r.Power.Error != "" {
		return fmt.Errorf("%s; the node is enrolled and waits for its PXE boot: fix the BMC and run `bootstrapd power cycle %s`, or power it on by hand", r.Power.Error, dash(r.Hostname))
	}
	fmt.Fprintln(e.stdout, powerText(*r.Power))
	return nil
}

// nodeBMCCmd is `node bmc <node> <url|none>`: give a node a BMC, change
// it, or remove it.
func nodeBMCCmd(fs *flag.FlagSet, e *env) action {
	creds := fs.String("bmc-credentials", "", "where the BMC's credentials are: `file:/path` (user:password, mode 0600) or vault:<mount>/<path> (default: the site's bmc block)")
	return clientAction(fs, e, func(ctx context.Context, c *api.Client, asJSON bool, args []string) error {
		req := api.BMCRequest{URL: args[1], Credentials: *creds}
		if args[1] == "none" {
			if *creds != "" {
				return usageError{"-bmc-credentials goes with a BMC URL, not none"}
			}
			req.URL = ""
		}
		n, err := c.SetBMC(ctx, args[0], req)
		if err != nil {
			return err
		}
		if asJSON {
			return printJSON(e, n)
		}
		if n.BMC == nil {
			fmt.Fprintf(e.stdout, "%s (%s) has no BMC now\n", dash(n.Hostname), n.MAC)
			return nil
		}
		fmt.Fprintf(e.stdout, "%s (%s): BMC %s (`bootstrapd power status %s` logs in to it)\n", dash(n.Hostname), n.MAC, bmcText(n.BMC), dash(n.Hostname))
		return nil
	})
}

// bmcText is a node's BMC as node show prints it.
func bmcText(b *inventory.BMC) string {
	if b == nil {
		return "-"
	}
	if b.Credentials == "" {
		return b.URL + ", the site's credentials"
	}
	return b.URL + ", credentials " + b.Credentials
}
