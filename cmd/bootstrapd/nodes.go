package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/bootstrapd/bootstrapd/internal/api"
	"github.com/bootstrapd/bootstrapd/internal/config"
	"github.com/bootstrapd/bootstrapd/internal/inventory"
)

// client is what every command that talks to the daemon shares: -addr
// (default $BOOTSTRAPD_ADDR, then the default socket), -json, and the API
// token from $BOOTSTRAPD_TOKEN. The token is deliberately not a flag: argv
// is visible to every user on the machine through ps and /proc.
type client struct {
	addr   *string
	asJSON *bool
	token  string
	caCert string // $BOOTSTRAPD_CACERT: trusts an https:// daemon's certificate
}

func clientFlags(fs *flag.FlagSet, e *env) *client {
	def := e.getenv("BOOTSTRAPD_ADDR")
	if def == "" {
		def = "unix://" + config.DefaultSocket
	}
	return &client{
		addr:   fs.String("addr", def, "daemon address: unix:///path/to.sock or http://host:port (env BOOTSTRAPD_ADDR; http:// needs env BOOTSTRAPD_TOKEN)"),
		asJSON: fs.Bool("json", false, "print JSON"),
		token:  e.getenv("BOOTSTRAPD_TOKEN"),
		caCert: e.getenv("BOOTSTRAPD_CACERT"),
	}
}

func (c *client) connect() (*api.Client, error) {
	return api.ClientConfig{Addr: *c.addr, Token: c.token, CACert: c.caCert}.Client()
}

// clientAction is what most client commands are: connect, then run.
func clientAction(fs *flag.FlagSet, e *env, run func(ctx context.Context, c *api.Client, asJSON bool, args []string) error) action {
	cl := clientFlags(fs, e)
	return func(ctx context.Context, args []string) error {
		c, err := cl.connect()
		if err != nil {
			return err
		}
		return run(ctx, c, *cl.asJSON, args)
	}
}

func enrollCmd(fs *flag.FlagSet, e *env) action {
	var req api.EnrollRequest
	fs.StringVar(&req.Hostname, "hostname", "", "hostname (default: the next free nN)")
	fs.StringVar(&req.Profile, "profile", "", "install profile (default: the site's default_profile; without one, -profile is required)")
	fs.StringVar(&req.IP, "ip", "", "address to reserve (default: the next free one in the DHCP range)")
	fs.StringVar(&req.BootMethod, "boot", "", "how the installed node boots its disk: exit, sanboot or none (default: the profile's)")
	fs.Func("label", "a label `k=v` for the node's templates (repeatable)", func(kv string) error {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return fmt.Errorf("%q is not k=v", kv)
		}
		if req.Labels == nil {
			req.Labels = map[string]string{}
		}
		req.Labels[k] = v
		return nil
	})
	wait := &waitFlag{state: inventory.Installed}
	fs.Var(wait, "wait", "after enrolling, show progress until the node is installed (or -wait STATE: installing, installed, joined, ready)")
	fs.StringVar(&req.BMC, "bmc", "", "the node's BMC: `ipmi://HOST[:PORT]` or redfish://HOST[:PORT][/redfish/v1/Systems/ID] (never with credentials)")
	fs.StringVar(&req.BMCCredentials, "bmc-credentials", "", "where the BMC's credentials are: `file:/path` (user:password, mode 0600) or vault:<mount>/<path> (default: the site's bmc block)")
	pf := addPowerFlags(fs, "set a one-time PXE boot and power the node on, or cycle it if on (default: the site's bmc power_on_enroll)")
	return clientAction(fs, e, func(ctx context.Context, c *api.Client, asJSON bool, args []string) error {
		req.MAC = args[0]
		req.Power, req.WoL = pf.set(), *pf.wol
		r, err := c.Enroll(ctx, req)
		if err != nil {
			return err
		}
		n := r.Node
		if !asJSON {
			fmt.Fprintf(e.stdout, "enrolled %s as %s, %s, profile %s; it installs on its next PXE boot\n", n.MAC, n.Hostname, n.IP, dash(n.Profile))
			if err := powered(e, r); err != nil {
				return err
			}
		} else if r.Power != nil && (r.Power.Error != "" || !wait.on) {
			// The node with what its power action did; a script waiting
			// gets the node as it ends instead.
			if err := printJSON(e, r); err != nil || r.Power.Error == "" {
				return err
			}
			return powered(e, r)
		}
		return settle(ctx, e, c, n, asJSON, wait.on, wait.state, "the install")
	})
}

func nodesCmd(fs *flag.FlagSet, e *env) action {
	return clientAction(fs, e, func(ctx context.Context, c *api.Client, asJSON bool, _ []string) error {
		nodes, err := c.Nodes(ctx)
		if err != nil {
			return err
		}
		if asJSON {
			return printJSON(e, nodes)
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "HOSTNAME\tMAC\tIP\tSTATE\tPROFILE\tSINCE")
		var alerts []string
		for _, n := range nodes {
			state := stateText(n)
			if n.Alert != "" {
				state += " !"
				alerts = append(alerts, fmt.Sprintf("! %s (%s): %s", dash(n.Hostname), n.MAC, n.Alert))
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", dash(n.Hostname), n.MAC, dashIP(n), state, dash(n.Profile), since(n))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if len(alerts) > 0 {
			// Someone else may have used a node's install: say it where the
			// operator looks, with what to do.
			fmt.Fprintf(e.stdout, "\n%s\nAn alert means something other than the node used its install; `bootstrapd events -node <node>` shows what, `bootstrapd reinstall <node>` starts it afresh.\n",
				strings.Join(alerts, "\n"))
		}
		return nil
	})
}

func leasesCmd(fs *flag.FlagSet, e *env) action {
	return clientAction(fs, e, func(ctx context.Context, c *api.Client, asJSON bool, _ []string) error {
		leases, err := c.Leases(ctx)
		if err != nil {
			return err
		}
		if asJSON {
			return printJSON(e, leases)
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "IP\tMAC\tEXPIRES\tSTATE")
		now := time.Now()
		for _, l := range leases {
			state := "bound"
			switch {
			case l.Declined:
				state = "declined"
			case !now.Before(l.Expires):
				state = "expired"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", l.IP, dash(l.MAC), l.Expires.Local().Format(time.DateTime), state)
		}
		return tw.Flush()
	})
}

func nodeBootCmd(fs *flag.FlagSet, e *env) action {
	return clientAction(fs, e, func(ctx context.Context, c *api.Client, asJSON bool, args []string) error {
		n, err := c.SetBootMethod(ctx, args[0], args[1])
		if err != nil {
			return err
		}
		if asJSON {
			return printJSON(e, n)
		}
		fmt.Fprintf(e.stdout, "%s (%s) boots its disk with %q from its next PXE boot\n", dash(n.Hostname), n.MAC, n.BootMethod)
		return nil
	})
}

func nodeShowCmd(fs *flag.FlagSet, e *env) action {
	return clientAction(fs, e, func(ctx context.Context, c *api.Client, asJSON bool, args []string) error {
		n, err := c.Node(ctx, args[0])
		if err != nil {
			return err
		}
		if asJSON {
			return printJSON(e, n)
		}
		fmt.Fprintf(e.stdout, "%s (%s)\n  state:    %s\n", dash(n.Hostname), n.MAC, stateText(n))
		if n.Alert != "" {
			fmt.Fprintf(e.stdout, "  ALERT:    %s (bootstrapd reinstall %s starts it afresh)\n", n.Alert, dash(n.Hostname))
		}
		if len(n.Pending) > 0 {
			fmt.Fprintf(e.stdout, "  pending:  %s\n", strings.Join(n.Pending, ", "))
		}
		if !n.Deadline.IsZero() {
			fmt.Fprintf(e.stdout, "  deadline: %s (in %s)\n", n.Deadline.Local().Format(time.DateTime), time.Until(n.Deadline).Round(time.Second))
		}
		fmt.Fprintf(e.stdout, "  ip:       %s\n", dashIP(n))
		if leases, err := c.Leases(ctx); err == nil {
			for _, l := range leases {
				if l.MAC == n.MAC {
					fmt.Fprintf(e.stdout, "  lease:    %s until %s\n", l.IP, l.Expires.Local().Format(time.DateTime))
				}
			}
		}
		fmt.Fprintf(e.stdout, "  profile:  %s\n  boot:     %s\n  arch:     %s\n  bmc:      %s\n  history:\n", dash(n.Profile), dash(n.BootMethod), dash(n.Arch), bmcText(n.BMC))
		for _, ev := range n.History {
			fmt.Fprintf(e.stdout, "    %s  %s\n", ev.At.Local().Format(time.DateTime), what(ev))
		}
		return nil
	})
}

func stateText(n inventory.Node) string {
	if n.State == inventory.Failed && n.Reason != "" {
		return "failed: " + n.Reason
	}
	return string(n.State)
}

func since(n inventory.Node) string {
	if len(n.History) == 0 {
		return "-"
	}
	return time.Since(n.History[len(n.History)-1].At).Round(time.Second).String() + " ago"
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func dashIP(n inventory.Node) string {
	if !n.IP.IsValid() {
		return "-"
	}
	return n.IP.String()
}

func printJSON(e *env, v any) error {
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
