package pxe

import (
	"net"
	"net/http"
	"time"

	"golang.org/x/net/netutil"
)

// Limits of the node-facing HTTP server. Anyone on the provisioning
// network can open connections and trickle bytes into them; a node needs
// little: a few small scripts and reports, and its kernel and initrd.
const (
	// MaxNodeConns is how many connections are served at once; more wait
	// in the kernel's backlog until one closes.
	MaxNodeConns = 256
	// A request's headers and body (a report is a few hundred bytes) must
	// arrive within nodeReadTimeout.
	nodeReadTimeout = 15 * time.Second
	// A response must be written within nodeWriteTimeout: an initrd of 100
	// MB at 10 Mbit/s takes 80 s.
	nodeWriteTimeout = 10 * time.Minute
	// An idle keep-alive connection is closed after nodeIdleTimeout: iPXE
	// asks for its next file at once.
	nodeIdleTimeout = 10 * time.Second
	nodeMaxHeader   = 8 << 10
)

// NodeServer is the http.Server for the node-facing handler, with the
// limits above.
func NodeServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: nodeReadTimeout,
		ReadTimeout:       nodeReadTimeout,
		WriteTimeout:      nodeWriteTimeout,
		IdleTimeout:       nodeIdleTimeout,
		MaxHeaderBytes:    nodeMaxHeader,
	}
}

// LimitListener serves at most MaxNodeConns connections of l at once.
func LimitListener(l net.Listener) net.Listener { return netutil.LimitListener(l, MaxNodeConns) }
