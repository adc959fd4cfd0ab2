package main

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/bootstrapd/bootstrapd/internal/config"
	"github.com/bootstrapd/bootstrapd/internal/daemon"
	"github.com/bootstrapd/bootstrapd/internal/routeros"
)

const routerUsage = "usage: bootstrapd router plan [-prune] [-json] | apply [-prune] [-json] | bootstrap-script [-config site.hcl] [-o FILE] | fingerprint [-config site.hcl | -addr HOST:8729]"

func cmdRouter(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 {
		return usageError{routerUsage}
	}
	switch args[0] {
	case "plan", "apply":
		return routerPlanApply(ctx, e, args[0], args[1:])
	case "bootstrap-script":
		return routerBootstrapScript(e, args[1:])
	case "fingerprint":
		return routerFingerprint(ctx, e, args[1:])
	}
	return usageError{routerUsage}
}

// routerPlanApply asks the daemon, which knows the nodes, to plan or apply.
func routerPlanApply(ctx context.Context, e *env, op string, args []string) error {
	fs := newClientCmd("router "+op, e)
	prune := fs.Bool("prune", false, "also remove bootstrapd's objects the site no longer wants (node records are always pruned)")
	pos, c, err := fs.parse(e, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usageError{routerUsage}
	}
	var res struct {
		routeros.Plan
		Done int `json:"done"`
	}
	if op == "plan" {
		r, err := c.RouterPlan(ctx, *prune)
		if err != nil {
			return err
		}
		res.Plan = r.Plan
	} else {
		r, err := c.RouterApply(ctx, *prune)
		if err != nil {
			return err
		}
		res.Plan, res.Done = r.Plan, r.Done
	}
	if *fs.asJSON {
		return printJSON(e, res)
	}
	for _, ch := range res.Changes {
		fmt.Fprintln(e.stdout, ch)
	}
	for _, cf := range res.Conflicts {
		fmt.Fprintf(e.stdout, "! %s %s (%s): %s\n", cf.Path, cf.Object, cf.ID, cf.Hint)
	}
	for _, n := range res.Notes {
		fmt.Fprintf(e.stdout, "note: %s\n", n)
	}
	adds, sets, removes := 0, 0, 0
	for _, ch := range res.Changes {
		switch ch.Op {
		case routeros.Add:
			adds++
		case routeros.Set:
			sets++
		case routeros.Remove:
			removes++
		}
	}
	summary := fmt.Sprintf("%d to add, %d to change, %d to remove", adds, sets, removes)
	switch {
	case len(res.Changes) == 0 && len(res.Conflicts) == 0:
		fmt.Fprintln(e.stdout, "No changes: the router matches the site.")
	case op == "plan":
		fmt.Fprintf(e.stdout, "Plan: %s, %d conflicts.\n", summary, len(res.Conflicts))
	default:
		fmt.Fprintf(e.stdout, "Applied %d changes (%s).\n", res.Done, summary)
	}
	return nil
}

// routerBootstrapScript prints the script that lets bootstrapd reach a
// fresh router. It holds the API password, so -o writes it 0600.
func routerBootstrapScript(e *env, args []string) error {
	fs := flag.NewFlagSet("router bootstrap-script", flag.ContinueOnError)
	cfg := fs.String("config", "site.hcl", "site config file (its router block)")
	out := fs.String("o", "", "write the script to this file (mode 0600) instead of stdout")
	if _, err := parse(fs, e, args); err != nil {
		return err
	}
	site, err := config.Load(*cfg)
	if err != nil {
		return err
	}
	r := site.Router
	if r == nil || r.Bootstrap == nil {
		return fmt.Errorf("%s has no router { bootstrap { ... } } block: say which port the laptop is on and the addresses to use", *cfg)
	}
	b := r.Bootstrap
	allow := []netip.Addr{b.OperatorA}
	// bootstrapd's own address on the provisioning network, from where
	// the daemon will talk to the router once it is set up.
	if server, err := daemon.ServerAddress(site); err == nil && server != b.OperatorA {
		allow = append(allow, server)
	}
	script := routeros.BootstrapScript(routeros.ScriptParams{
		Bootstrap: routeros.Bootstrap{Interface: b.Interface, VLANID: b.VLANID, Address: b.AddressP, Operator: b.OperatorA},
		Marker:    r.Marker, User: r.User, Password: r.Password(), AllowFrom: allow, TLS: !r.Insecure,
	})
	if *out == "" {
		_, err := fmt.Fprint(e.stdout, script)
		return err
	}
	f, err := os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(script); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Fprintf(e.stderr, "wrote %s (it holds the router password: delete it once the router is set up)\n", *out)
	return nil
}

// routerFingerprint prints the SHA-256 of the certificate the router's
// api-ssl presents, to pin in the site. It trusts what it sees: run it
// over a cable you can see both ends of.
func routerFingerprint(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("router fingerprint", flag.ContinueOnError)
	cfg := fs.String("config", "site.hcl", "site config file (its router api address)")
	addr := fs.String("addr", "", "router api-ssl address host:port (default: the site's router api)")
	if _, err := parse(fs, e, args); err != nil {
		return err
	}
	if *addr == "" {
		site, err := config.Load(*cfg)
		if err != nil && !errors.As(err, new(*config.Error)) {
			return err
		}
		if site == nil || site.Router == nil {
			return fmt.Errorf("give -addr host:8729, or a site with a router block (%v)", err)
		}
		*addr = site.Router.API
	}
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 10 * time.Second},
		Config: &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}} //nolint:gosec // reading the certificate is the point
	c, err := d.DialContext(ctx, "tcp", *addr)
	if err != nil {
		return fmt.Errorf("router %s: %w", *addr, err)
	}
	defer c.Close()
	certs := c.(*tls.Conn).ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return fmt.Errorf("router %s sent no certificate", *addr)
	}
	sum := sha256.Sum256(certs[0].Raw)
	fmt.Fprintf(e.stdout, "fingerprint = %q  # %s, CN %s, until %s\n", hex.EncodeToString(sum[:]), *addr, certs[0].Subject.CommonName, certs[0].NotAfter.Format(time.DateOnly))
	return nil
}
