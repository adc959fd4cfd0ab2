package concoursetest

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// Backoff between a worker's connection attempts: a TSA that refuses the
// key or is down is retried for as long as the worker runs, never faster
// than every MaxBackoff once it has failed a few times, so the task keeps
// running (and Nomad's restart attempts are not used up) while the key
// or the TSA is being fixed.
const (
	DefaultMinBackoff = time.Second
	DefaultMaxBackoff = 30 * time.Second
	dialTimeout       = 10 * time.Second
)

// WorkerClient is the stand-in worker: it registers with a TSA as
// `concourse worker` does and stays registered until stopped.
type WorkerClient struct {
	Worker   Worker
	TSAHosts []string        // host:port, tried in turn
	TSAKeys  []ssh.PublicKey // the only host keys accepted
	TSAKeyOf string          // where TSAKeys came from, for messages
	Key      ssh.Signer      // the worker's private key
	Out      io.Writer       // event lines ("stand-in worker: ..."); io.Discard if nil

	MinBackoff, MaxBackoff, KeepAlive time.Duration
}

// WorkerFromEnv builds a worker from the environment `concourse worker`
// reads: CONCOURSE_NAME, CONCOURSE_TSA_HOST (host:port, comma-separated
// for several), CONCOURSE_TSA_PUBLIC_KEY and
// CONCOURSE_TSA_WORKER_PRIVATE_KEY (paths), and optionally CONCOURSE_TAG
// (comma-separated), CONCOURSE_TEAM and CONCOURSE_EPHEMERAL.
func WorkerFromEnv(getenv func(string) string) (*WorkerClient, error) {
	need := func(k string) (string, error) {
		v := strings.TrimSpace(getenv(k))
		if v == "" {
			return "", fmt.Errorf("%s is not set", k)
		}
		return v, nil
	}
	w := &WorkerClient{Worker: Worker{Platform: "linux", Team: getenv("CONCOURSE_TEAM"), Version: "stand-in",
		Ephemeral: getenv("CONCOURSE_EPHEMERAL") == "true"}}
	var err error
	if w.Worker.Name, err = need("CONCOURSE_NAME"); err != nil {
		return nil, err
	}
	hosts, err := need("CONCOURSE_TSA_HOST")
	if err != nil {
		return nil, err
	}
	for _, h := range strings.Split(hosts, ",") {
		if _, port, err := net.SplitHostPort(strings.TrimSpace(h)); err != nil || port == "" {
			return nil, fmt.Errorf("CONCOURSE_TSA_HOST %q is not host:port (the web node's TSA, usually port 2222)", h)
		}
		w.TSAHosts = append(w.TSAHosts, strings.TrimSpace(h))
	}
	if tags := getenv("CONCOURSE_TAG"); tags != "" {
		w.Worker.Tags = strings.Split(tags, ",")
	}
	if w.TSAKeyOf, err = need("CONCOURSE_TSA_PUBLIC_KEY"); err != nil {
		return nil, err
	}
	if w.TSAKeys, err = ReadAuthorizedKeys(w.TSAKeyOf); err != nil {
		return nil, fmt.Errorf("CONCOURSE_TSA_PUBLIC_KEY: %w", err)
	}
	if len(w.TSAKeys) == 0 {
		return nil, fmt.Errorf("CONCOURSE_TSA_PUBLIC_KEY: %s holds no key", w.TSAKeyOf)
	}
	keyPath, err := need("CONCOURSE_TSA_WORKER_PRIVATE_KEY")
	if err != nil {
		return nil, err
	}
	b, err := readBounded(keyPath, maxKeyFile)
	if err != nil {
		return nil, fmt.Errorf("CONCOURSE_TSA_WORKER_PRIVATE_KEY: %w", err)
	}
	if w.Key, err = ParseWorkerKey(b); err != nil {
		return nil, fmt.Errorf("CONCOURSE_TSA_WORKER_PRIVATE_KEY %s: %w", keyPath, err)
	}
	// The same checks the TSA makes: a worker the TSA would refuse fails
	// here, once, with the variable named.
	js, _ := json.Marshal(w.Worker)
	if _, err := ParseWorker(bytes.NewReader(js)); err != nil {
		return nil, fmt.Errorf("CONCOURSE_NAME, CONCOURSE_TAG or CONCOURSE_TEAM: %w", err)
	}
	return w, nil
}

func (w *WorkerClient) event(format string, args ...any) {
	if w.Out != nil {
		fmt.Fprintf(w.Out, "stand-in worker: "+format+"\n", args...)
	}
}

// Fingerprint is the SHA256 fingerprint of the worker's public key.
func (w *WorkerClient) Fingerprint() string { return ssh.FingerprintSHA256(w.Key.PublicKey()) }

// HostKeyError is a TSA presenting a host key not in TSAKeys, or (Key
// "") none of their types.
type HostKeyError struct {
	Host, Key, File string
}

func (e *HostKeyError) Error() string {
	if e.Key == "" {
		return fmt.Sprintf("the TSA at %s offers no host key of the type in %s (CONCOURSE_TSA_PUBLIC_KEY): refused", e.Host, e.File)
	}
	return fmt.Sprintf("the TSA at %s has host key %s, which is not in %s (CONCOURSE_TSA_PUBLIC_KEY): refused", e.Host, e.Key, e.File)
}

// dial connects and authenticates to host, checking its host key
// strictly, all within dialTimeout.
func (w *WorkerClient) dial(ctx context.Context, host string) (*ssh.Client, error) {
	ctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	c, err := (&net.Dialer{}).DialContext(ctx, "tcp", host)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	cfg := &ssh.ClientConfig{
		User: "worker",
		Auth: []ssh.AuthMethod{ssh.PublicKeys(w.Key)},
		HostKeyCallback: func(_ string, _ net.Addr, key ssh.PublicKey) error {
			for _, k := range w.TSAKeys {
				if bytes.Equal(k.Marshal(), key.Marshal()) {
					return nil
				}
			}
			return &HostKeyError{Host: host, Key: ssh.FingerprintSHA256(key), File: w.TSAKeyOf}
		},
		HostKeyAlgorithms: hostKeyAlgorithms(w.TSAKeys),
		ClientVersion:     "SSH-2.0-concourse-standin-worker",
	}
	conn, chans, reqs, err := ssh.NewClientConn(c, host, cfg)
	if err != nil {
		c.Close()
		var hk *HostKeyError
		switch {
		case errors.As(err, &hk):
			return nil, hk
		case strings.Contains(err.Error(), "no common algorithm for host key"):
			return nil, &HostKeyError{Host: host, File: w.TSAKeyOf}
		case strings.Contains(err.Error(), "unable to authenticate"):
			return nil, fmt.Errorf("the TSA at %s refused key %s (is it in the TSA's authorized_worker_keys?)", host, w.Fingerprint())
		case ctx.Err() != nil:
			return nil, fmt.Errorf("the TSA at %s: no SSH handshake within %s", host, dialTimeout)
		}
		return nil, err
	}
	return ssh.NewClient(conn, chans, reqs), nil
}

// hostKeyAlgorithms offers only the algorithms of the expected keys, so
// the TSA presents one of those rather than another key it also has.
func hostKeyAlgorithms(keys []ssh.PublicKey) []string {
	var out []string
	for _, k := range keys {
		switch t := k.Type(); t {
		case ssh.KeyAlgoRSA:
			out = append(out, ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256)
		default:
			out = append(out, t)
		}
	}
	return out
}

// Run registers with the TSA and stays registered, reconnecting with
// backoff whenever the connection ends, until ctx is done.
func (w *WorkerClient) Run(ctx context.Context) {
	minB, maxB := cmp.Or(w.MinBackoff, DefaultMinBackoff), cmp.Or(w.MaxBackoff, DefaultMaxBackoff)
	delay := minB
	if len(w.TSAHosts) == 0 {
		w.event("no TSA host to register with")
		return
	}
	for attempt := 0; ; attempt++ {
		host := w.TSAHosts[attempt%len(w.TSAHosts)]
		registered, err := w.forward(ctx, host)
		if ctx.Err() != nil {
			return
		}
		if registered {
			delay = minB
		}
		w.event("%v; retrying in %s", err, delay)
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(delay*2, maxB)
	}
}

// forward is one registration: connect, send forward-worker and the
// worker's JSON, wait for the TSA's acknowledgement, then hold the
// connection until it ends. It says whether the worker got registered.
func (w *WorkerClient) forward(ctx context.Context, host string) (bool, error) {
	client, err := w.dial(ctx, host)
	if err != nil {
		return false, err
	}
	defer client.Close()
	stop := context.AfterFunc(ctx, func() { client.Close() })
	defer stop()
	sess, err := client.NewSession()
	if err != nil {
		return false, fmt.Errorf("the TSA at %s: opening a session: %w", host, err)
	}
	defer sess.Close()
	js, err := json.Marshal(w.Worker)
	if err != nil {
		return false, err
	}
	sess.Stdin = bytes.NewReader(js)
	var stderr bytes.Buffer
	sess.Stderr = &limitedWriter{w: &stderr, n: 4 << 10}
	stdout, err := sess.StdoutPipe()
	if err != nil {
		return false, err
	}
	if err := sess.Start(ForwardWorker); err != nil {
		return false, fmt.Errorf("the TSA at %s: %s: %w", host, ForwardWorker, err)
	}
	ack := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(io.LimitReader(stdout, 512)).ReadString('\n')
		ack <- strings.TrimSpace(line)
		io.Copy(io.Discard, stdout)
	}()
	select {
	case line := <-ack:
		if line != "registered "+w.Worker.Name {
			time.AfterFunc(commandTimeout, func() { client.Close() })
			sess.Wait() // for stderr, the TSA's reason
			return false, fmt.Errorf("the TSA at %s did not register %s: %s", host, w.Worker.Name, strings.TrimSpace(cmp.Or(stderr.String(), line)))
		}
	case <-time.After(commandTimeout):
		return false, fmt.Errorf("the TSA at %s did not answer %s within %s", host, ForwardWorker, commandTimeout)
	case <-ctx.Done():
		return false, ctx.Err()
	}
	w.event("%s registered with the TSA at %s (key %s)", w.Worker.Name, host, w.Fingerprint())
	lost := make(chan error, 1)
	go func() { lost <- sess.Wait() }()
	go func() { lost <- pingLoop(ctx, client, cmp.Or(w.KeepAlive, DefaultKeepAlive)) }()
	select {
	case err := <-lost:
		return true, fmt.Errorf("lost the TSA at %s (%v)", host, cmpError(err, "connection closed"))
	case <-ctx.Done():
		return true, ctx.Err()
	}
}

// pingLoop sends keepalives (as Concourse's worker does) until one fails
// or goes unanswered for a whole interval.
func pingLoop(ctx context.Context, client *ssh.Client, every time.Duration) error {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		answered := make(chan error, 1)
		go func() {
			_, _, err := client.SendRequest("keepalive", true, []byte("sup"))
			answered <- err
		}()
		select {
		case err := <-answered:
			if err != nil {
				return err
			}
		case <-time.After(every):
			client.Close()
			return fmt.Errorf("no keepalive answer within %s", every)
		}
	}
}

// Retire sends retire-worker, as `concourse retire-worker` and a worker
// given SIGUSR2 do; Land sends land-worker (SIGUSR1).
func (w *WorkerClient) Retire(ctx context.Context) error {
	return w.command(ctx, RetireWorker, "retired")
}

// Land is Retire's land-worker.
func (w *WorkerClient) Land(ctx context.Context) error { return w.command(ctx, LandWorker, "landed") }

// command runs one TSA command with the worker's JSON, trying each TSA
// once.
func (w *WorkerClient) command(ctx context.Context, name, past string) error {
	js, err := json.Marshal(w.Worker)
	if err != nil {
		return err
	}
	var errs []error
	for _, host := range w.TSAHosts {
		err := w.commandAt(ctx, host, name, js)
		if err == nil {
			w.event("%s %s", w.Worker.Name, past)
			return nil
		}
		errs = append(errs, err)
	}
	return fmt.Errorf("%s %s: %w", name, w.Worker.Name, errors.Join(errs...))
}

func (w *WorkerClient) commandAt(ctx context.Context, host, name string, js []byte) error {
	client, err := w.dial(ctx, host)
	if err != nil {
		return err
	}
	defer client.Close()
	stop := context.AfterFunc(ctx, func() { client.Close() })
	defer stop()
	sess, err := client.NewSession()
	if err != nil {
		return fmt.Errorf("the TSA at %s: opening a session: %w", host, err)
	}
	defer sess.Close()
	sess.Stdin = bytes.NewReader(js)
	var stderr bytes.Buffer
	sess.Stderr = &limitedWriter{w: &stderr, n: 4 << 10}
	if err := sess.Run(name); err != nil {
		return fmt.Errorf("the TSA at %s: %w %s", host, err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// limitedWriter keeps the first n bytes written to it: what a TSA says on
// stderr goes into an error message, which must stay short.
type limitedWriter struct {
	w io.Writer
	n int
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if k := min(len(p), l.n); k > 0 {
		l.w.Write(p[:k])
		l.n -= k
	}
	return len(p), nil
}

func cmpError(err error, def string) string {
	if err != nil {
		return err.Error()
	}
	return def
}
