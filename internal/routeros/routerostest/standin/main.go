// Command standin runs the RouterOS test router as a process: the MikroTik
// stand-in of `make demo`. It is routerostest's wire-protocol double, not
// a router; nothing but the demo should talk to it.
//
//	ROUTEROS_STANDIN_PASSWORD=... standin -listen 10.77.0.1:8729 [-version 7.19] [-user bootstrapd]
//
// It prints its api-ssl certificate fingerprint (for the site's router
// block) on stdout, and on SIGUSR1 the rows bootstrapd made in the menus
// named by -show.
package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"

	"github.com/bootstrapd/bootstrapd/internal/routeros/routerostest"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8729", "api-ssl address")
	version := flag.String("version", "7.19", "RouterOS version to behave as")
	user := flag.String("user", "bootstrapd", "API user")
	certFile := flag.String("cert", "", "PEM file with the api-ssl certificate and key (default: a fresh self-signed one)")
	show := flag.String("show", "/system/identity,/interface/vlan,/ip/address,/ip/dns/static", "menus SIGUSR1 prints")
	flag.Parse()
	password := os.Getenv("ROUTEROS_STANDIN_PASSWORD")
	if password == "" {
		fmt.Fprintln(os.Stderr, "standin: set ROUTEROS_STANDIN_PASSWORD (never a flag: argv is public)")
		os.Exit(2)
	}
	opts := routerostest.Options{Version: *version, User: *user, Password: password}
	if *certFile != "" {
		cert, err := tls.LoadX509KeyPair(*certFile, *certFile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "standin:", err)
			os.Exit(1)
		}
		opts.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	r := routerostest.New(opts)
	ln, err := net.Listen("tcp", *listen)
	if err == nil {
		err = r.ServeListener(ln, true)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "standin:", err)
		os.Exit(1)
	}
	fmt.Printf("fingerprint %s\n", r.Fingerprint())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGUSR1)
	for s := range sig {
		if s != syscall.SIGUSR1 {
			break
		}
		for _, path := range strings.Split(*show, ",") {
			for _, row := range r.Rows(path) {
				fmt.Printf("%s %s\n", path, props(row))
			}
		}
		fmt.Printf("(%d API commands received)\n", len(r.Commands()))
	}
	r.Close()
}

// props shows a row's interesting properties, sorted, without read-only
// noise.
func props(row map[string]string) string {
	var out []string
	for k, v := range row {
		if k == ".id" || v == "" || k == "dynamic" || k == "disabled" || k == "invalid" || k == "running" {
			continue
		}
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}
