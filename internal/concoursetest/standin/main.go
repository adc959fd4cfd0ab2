// Command concourse-standin is a stand-in, not Concourse: the TSA side of
// Concourse's web node and a worker that registers through it, for
// bootstrapd's tests and demo, where Concourse cannot run. See package
// concoursetest for what it keeps of Concourse's contract and what not.
//
//	concourse-standin keygen [-t rsa|ed25519] FILE
//	concourse-standin tsa -listen ADDR -host-key FILE -authorized-keys FILE
//	concourse-standin worker   (environment as `concourse worker`)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/bootstrapd/bootstrapd/internal/concoursetest"
	"golang.org/x/crypto/ssh"
)

const usage = `concourse-standin: a stand-in, not Concourse (bootstrapd's tests and demo)

usage:
  concourse-standin keygen [-t rsa|ed25519] FILE
      write a TSA host key to FILE (0600) and FILE.pub (authorized_keys form)
  concourse-standin tsa -listen ADDR -host-key FILE -authorized-keys FILE
      a stand-in TSA: workers authenticate with a key in the authorized keys
      file (re-read on every connection); one line per event on stdout
  concourse-standin worker
      a stand-in worker, configured as ` + "`concourse worker`" + `: CONCOURSE_NAME,
      CONCOURSE_TSA_HOST, CONCOURSE_TSA_PUBLIC_KEY (file),
      CONCOURSE_TSA_WORKER_PRIVATE_KEY (file, RSA PEM); SIGUSR2 retires it
`

// retireTimeout bounds a retire or land on the way out: the stand-in
// job's kill_timeout is 10s, after which Nomad kills the task.
const retireTimeout = 8 * time.Second

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
		var u usageError
		if errors.As(err, &u) {
			fmt.Fprint(os.Stderr, usage)
			os.Exit(2)
		}
		fmt.Fprintln(os.Stderr, "concourse-standin (stand-in, not Concourse):", err)
		os.Exit(1)
	}
}

type usageError struct{}

func (usageError) Error() string { return "usage" }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageError{}
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	switch args[0] {
	case "keygen":
		return keygen(args[1:], stdout, stderr)
	case "tsa":
		return tsa(ctx, args[1:], stdout, stderr, log)
	case "worker":
		return worker(ctx, stdout)
	}
	return usageError{}
}

func keygen(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("keygen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	kind := fs.String("t", concoursetest.KeyRSA, "key type: rsa or ed25519")
	if err := fs.Parse(args); err != nil || fs.NArg() != 1 {
		return usageError{}
	}
	pub, err := concoursetest.Keygen(fs.Arg(0), *kind)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "stand-in TSA host key %s written to %s and %s.pub\n", ssh.FingerprintSHA256(pub), fs.Arg(0), fs.Arg(0))
	return nil
}

func tsa(ctx context.Context, args []string, stdout, stderr io.Writer, log *slog.Logger) error {
	fs := flag.NewFlagSet("tsa", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:2222", "address to listen on (Concourse's TSA port is 2222)")
	hostKey := fs.String("host-key", "", "the TSA's private host key file")
	authorized := fs.String("authorized-keys", "", "authorized_worker_keys file, re-read on every connection")
	maxConns := fs.Int("max-conns", concoursetest.DefaultMaxConns, "connections served at once")
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 || *hostKey == "" || *authorized == "" {
		return usageError{}
	}
	key, err := concoursetest.ReadHostKey(*hostKey)
	if err != nil {
		return err
	}
	// Read once now so a missing file is an error at start, not a refusal
	// of every worker later.
	if _, err := concoursetest.ReadAuthorizedKeys(*authorized); err != nil {
		return fmt.Errorf("-authorized-keys: %w", err)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	// Concourse's TSA reloads its keys on SIGHUP, which a Nomad template
	// with change_signal = "SIGHUP" sends; this one re-reads them on every
	// connection, so SIGHUP must only not kill it.
	signal.Ignore(syscall.SIGHUP)
	t := &concoursetest.TSA{HostKey: key, AuthorizedKeys: *authorized, Events: stdout, Log: log, MaxConns: *maxConns}
	fmt.Fprintf(stdout, "stand-in TSA: listening on %s (host key %s); not Concourse\n", ln.Addr(), ssh.FingerprintSHA256(key.PublicKey()))
	err = t.Serve(ctx, ln)
	fmt.Fprintln(stdout, "stand-in TSA: stopped")
	return err
}

// worker runs until SIGTERM or SIGINT (exit 0), or SIGUSR2 (retire, then
// exit 0) or SIGUSR1 (land, then exit 0), as `concourse worker` does.
func worker(ctx context.Context, stdout io.Writer) error {
	w, err := concoursetest.WorkerFromEnv(os.Getenv)
	if err != nil {
		return err
	}
	w.Out = stdout
	fmt.Fprintf(stdout, "stand-in worker: %s starting (key %s, TSA %v); not Concourse\n", w.Worker.Name, w.Fingerprint(), w.TSAHosts)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGUSR1, syscall.SIGUSR2)
	defer signal.Stop(sig)
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); w.Run(runCtx) }()
	s := <-sig
	var leave func(context.Context) error
	switch s {
	case syscall.SIGUSR2:
		leave = w.Retire
	case syscall.SIGUSR1:
		leave = w.Land
	}
	if leave != nil {
		// While still registered, as the real worker retires.
		lctx, lcancel := context.WithTimeout(ctx, retireTimeout)
		err = leave(lctx)
		lcancel()
	}
	cancel()
	<-done
	fmt.Fprintf(stdout, "stand-in worker: %s stopped (%v)\n", w.Worker.Name, s)
	return err
}
