package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/bootstrapd/bootstrapd/internal/api"
	"github.com/bootstrapd/bootstrapd/internal/config"
	"github.com/bootstrapd/bootstrapd/internal/daemon"
	"github.com/bootstrapd/bootstrapd/internal/routeros"
	"github.com/bootstrapd/bootstrapd/internal/tlspin"
)

// routerPlanApplyCmd asks the daemon, which knows the nodes, to plan or
// apply.
func routerPlanApplyCmd(op string) func(fs *flag.FlagSet, e *env) action {
	return func(fs *flag.FlagSet, e *env) action {
		prune := fs.Bool("prune", false, "also remove bootstrapd's objects the site no longer wants (node records are always pruned)")
		return clientAction(fs, e, func(ctx context.Context, c *api.Client, asJSON bool, _ []string) error {
			return routerPlanApply(ctx, e, c, op, *prune, asJSON)
		})
	}
}

func routerPlanApply(ctx context.Context, e *env, c *api.Client, op string, prune, asJSON bool) error {
	var res struct {
		routeros.Plan
		Done int `json:"done"`
	}
	if op == "plan" {
		r, err := c.RouterPlan(ctx, prune)
		if err != nil {
			return err
		}
		res.Plan = r.Plan
	} else {
		r, err := c.RouterApply(ctx, prune)
		if err != nil {
			return err
		}
		res.Plan, res.Done = r.Plan, r.Done
	}
	if asJSON {
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

// routerBootstrapScriptCmd prints the script that lets bootstrapd reach a
// fresh router. It reads only what the script needs (config.LoadBootstrap):
// the router has no certificate yet, so the site cannot pin one. The script
// holds the API password, so -o writes it 0600.
func routerBootstrapScriptCmd(fs *flag.FlagSet, e *env) action {
	cfg := configFlag(fs, "site config file (its router block: bootstrap, user, password_file)")
	out := fs.String("o", "", "write the script to `FILE` (mode 0600) instead of stdout")
	return func(context.Context, []string) error {
		site, err := config.LoadBootstrap(*cfg)
		if err != nil {
			return err
		}
		r, b := site.Router, site.Router.Bootstrap
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
		next := fmt.Sprintf("then `bootstrapd router fingerprint -addr %s -write %s` pins its certificate in the site", netip.AddrPortFrom(b.AddressP.Addr(), 8729), *cfg)
		if r.Insecure {
			next = "then point router.api at " + netip.AddrPortFrom(b.AddressP.Addr(), 8728).String() + " (plain api: insecure = true)"
		}
		if *out == "" {
			_, err := fmt.Fprint(e.stdout, script)
			return err
		}
		if err := writeSecretFile(*out, script); err != nil {
			return err
		}
		fmt.Fprintf(e.stderr, "wrote %s (it holds the router password: delete it once the router is set up)\nrun it on the router (netinstall-cli -s %s, or paste it into its terminal); %s\n", *out, *out, next)
		return nil
	}
}

// writeSecretFile writes text to path, created or truncated with mode 0600
// from the start (never world-readable, not even for a moment).
func writeSecretFile(path, text string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if err := f.Chmod(0o600); err != nil { // an existing file keeps its mode through O_TRUNC
		f.Close()
		return err
	}
	if _, err := f.WriteString(text); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// routerFingerprintCmd prints the SHA-256 of the certificate the router's
// api-ssl presents, to pin in the site; with -write it pins it. It trusts
// what it sees (trust on first use): run it over a cable you can see both
// ends of, and compare it with what the bootstrap script printed.
func routerFingerprintCmd(fs *flag.FlagSet, e *env) action {
	cfg := configFlag(fs, "site config file whose router api to read (when -addr is not given)")
	addr := fs.String("addr", "", "router api-ssl address `HOST:8729` (default: the site's router api)")
	write := fs.String("write", "", "pin the fingerprint in the router block of this site `FILE` (the rest of the file is kept as it is)")
	return func(ctx context.Context, _ []string) error {
		if *addr == "" {
			site := *cfg
			if *write != "" {
				site = *write
			}
			api, err := config.RouterAPI(site)
			if err != nil {
				return fmt.Errorf("%w (or give -addr host:8729)", err)
			}
			*addr = api
		}
		cert, err := peerCertificate(ctx, *addr)
		if err != nil {
			return err
		}
		fp := tlspin.Fingerprint(cert.Raw)
		fmt.Fprintf(e.stdout, "fingerprint = %q  # %s, CN %s, until %s\n", fp, *addr, cert.Subject.CommonName, cert.NotAfter.Format(time.DateOnly))
		fmt.Fprintln(e.stderr, "This trusted whatever answered: check that it is what the bootstrap script printed on the router "+
			"(`/certificate print detail where name=bootstrapd-api` there shows it again).")
		if *write == "" {
			fmt.Fprintln(e.stderr, "Paste the line into the site's router block, or run again with -write site.hcl.")
			return nil
		}
		line, changed, err := config.PinFingerprint(*write, fp)
		if err != nil {
			return err
		}
		if !changed {
			fmt.Fprintf(e.stderr, "%s:%d already pins it\n", *write, line)
			return nil
		}
		fmt.Fprintf(e.stderr, "wrote it into %s:%d; `bootstrapd check -config %s` checks the site\n", *write, line, *write)
		return nil
	}
}

// peerCertificate is the certificate a TLS server at addr presents, read
// without verifying it: reading it is the point.
func peerCertificate(ctx context.Context, addr string) (*x509.Certificate, error) {
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 10 * time.Second},
		Config: &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}} //nolint:gosec // see above
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("router %s: %w (has the bootstrap script run there, and is api-ssl on 8729 reachable from here?)", addr, err)
	}
	defer c.Close()
	certs := c.(*tls.Conn).ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return nil, fmt.Errorf("router %s sent no certificate", addr)
	}
	return certs[0], nil
}
