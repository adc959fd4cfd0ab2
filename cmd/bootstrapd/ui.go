package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/bootstrapd/bootstrapd/internal/api"
)

// uiCmd opens the status page. Over the admin socket, which a browser
// cannot reach, it serves a proxy to the page on a loopback port until
// Ctrl-C; over TCP the daemon serves the page itself. Either way it prints
// a login link with a one-time code: the only way in, since the bearer
// token never goes in a URL.
func uiCmd(fs *flag.FlagSet, e *env) action {
	cl := clientFlags(fs, e)
	listen := fs.String("listen", "127.0.0.1:0", "where the page is served when bootstrapd is reached through its socket: a loopback `ADDR:PORT` (port 0: any free one)")
	return func(ctx context.Context, _ []string) error {
		c, err := cl.connect()
		if err != nil {
			return err
		}
		if !c.Socket() {
			// The daemon's own TCP listener serves the page.
			code, err := c.LoginCode(ctx)
			if err != nil {
				return err
			}
			return printLink(e, *cl.asJSON, c.URL(code.Path), code, "")
		}
		l, err := listenLoopback(*listen)
		if err != nil {
			return err
		}
		defer l.Close()
		// Minted after listening, so the link names the port really bound.
		code, err := c.LoginCode(ctx)
		if err != nil {
			return err
		}
		addr := l.Addr().String()
		if err := printLink(e, *cl.asJSON, "http://"+addr+code.Path, code, addr); err != nil {
			return err
		}
		log := slog.New(slog.NewTextHandler(e.stderr, nil))
		srv := &http.Server{Handler: sameHost(addr, c.StatusProxy(log)), ReadHeaderTimeout: 10 * time.Second}
		go func() {
			<-ctx.Done()
			// The page holds its event stream open; there is nothing in
			// flight worth waiting for.
			srv.Close()
		}()
		if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}
}

// listenLoopback listens on addr, which must be a loopback address: the
// proxy holds the page's login open to whoever can connect, and only this
// machine's own users should be able to.
func listenLoopback(addr string) (net.Listener, error) {
	host, _, err := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		return nil, usageError{fmt.Sprintf("-listen %q is not a loopback ADDR:PORT, like 127.0.0.1:8088; to reach the page from another machine, set the site's api listen (with TLS) and run `bootstrapd ui` with BOOTSTRAPD_ADDR=https://...", addr)}
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("status page on %s: %w (pick another with -listen)", addr, err)
	}
	return l, nil
}

// sameHost refuses requests that name another host than the one the link
// does: a page elsewhere that points a name of its own at 127.0.0.1 (DNS
// rebinding) gets nothing through the proxy.
func sameHost(addr string, next http.Handler) http.Handler {
	_, port, _ := net.SplitHostPort(addr)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Host != addr && r.Host != net.JoinHostPort("localhost", port) {
			http.Error(w, "open the status page at http://"+addr+"/ui/", http.StatusMisdirectedRequest)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// printLink tells the operator where to go; serving is the proxy's address
// when this process serves the page ("" when the daemon does).
func printLink(e *env, asJSON bool, link string, code api.LoginCode, serving string) error {
	if asJSON {
		return json.NewEncoder(e.stdout).Encode(struct {
			URL     string    `json:"url"`
			Expires time.Time `json:"expires"`
			Serving string    `json:"serving,omitempty"`
		}{link, code.Expires, serving})
	}
	fmt.Fprintf(e.stdout, "Open the status page (this link works once, until %s):\n\n  %s\n\n", code.Expires.Local().Format(time.TimeOnly), link)
	if serving != "" {
		fmt.Fprintf(e.stdout, "Serving it on http://%s/ui/ until Ctrl-C; run `bootstrapd ui` again for a new link.\n", serving)
	}
	return nil
}
