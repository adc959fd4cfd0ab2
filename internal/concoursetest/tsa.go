package concoursetest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// Limits of the stand-in TSA. Anyone who can reach port 2222 can open
// connections; a worker needs one, plus one for each retire or land.
const (
	DefaultMaxConns = 64
	// maxSessions is how many sessions one connection may have open: a
	// worker runs forward-worker and now and then a report or a sweep.
	maxSessions      = 4
	handshakeTimeout = 10 * time.Second
	// commandTimeout bounds the wait for a session's exec request and for
	// its JSON on stdin.
	commandTimeout = 10 * time.Second
	// idleTimeout closes a connection with no session open this long.
	idleTimeout = 30 * time.Second
	// DefaultKeepAlive is how often each side checks the other is there.
	DefaultKeepAlive = 15 * time.Second
)

// TSA is the stand-in for Concourse's TSA: it authenticates workers by
// key, records their registrations and writes one event line per
// registration, retirement and refusal. It runs no ATC behind it.
type TSA struct {
	HostKey ssh.Signer
	// AuthorizedKeys is the authorized_worker_keys file. It is read anew
	// for every connection, so a key removed from it (Nomad re-renders
	// the file from Vault) is refused at the worker's next connection.
	AuthorizedKeys string
	Events         io.Writer    // event lines ("stand-in TSA: ..."); io.Discard if nil
	Log            *slog.Logger // diagnostics; slog.Default() if nil
	MaxConns       int          // DefaultMaxConns if 0
	KeepAlive      time.Duration

	mu      sync.Mutex
	workers map[string]*Registration // registered now, by worker name
}

// Registration is a worker the TSA has seen register.
type Registration struct {
	Worker Worker
	Key    string // SHA256 fingerprint of the key it authenticated with
	Addr   string // where it connected from
}

// Workers returns the registrations whose connections are up.
func (t *TSA) Workers() map[string]Registration {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[string]Registration, len(t.workers))
	for k, v := range t.workers {
		out[k] = *v
	}
	return out
}

// event writes one line, whole, to Events.
func (t *TSA) event(format string, args ...any) {
	line := fmt.Sprintf("stand-in TSA: "+format+"\n", args...)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.Events != nil {
		io.WriteString(t.Events, line)
	}
}

func (t *TSA) log() *slog.Logger {
	if t.Log == nil {
		return slog.Default()
	}
	return t.Log
}

// Serve accepts connections on ln until ctx is done, then closes ln and
// every connection and returns nil once all have ended.
func (t *TSA) Serve(ctx context.Context, ln net.Listener) error {
	if t.HostKey == nil || t.AuthorizedKeys == "" {
		return errors.New("stand-in TSA: a host key and an authorized keys file are required")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	n := t.MaxConns
	if n <= 0 {
		n = DefaultMaxConns
	}
	slots := make(chan struct{}, n)
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("stand-in TSA: accept: %w", err)
		}
		select {
		case slots <- struct{}{}:
		default:
			t.log().Warn("stand-in TSA: too many connections; closing one", "remote", c.RemoteAddr().String(), "max", cap(slots))
			c.Close()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			t.serveConn(ctx, c)
		}()
	}
}

// authorizer checks keys against the authorized keys file as it is when
// the connection starts, reading it once for the connection, and logs a
// refused key once.
type authorizer struct {
	t       *TSA
	addr    string
	once    sync.Once
	keys    map[string]bool // by wire form
	refused map[string]bool // fingerprints already logged
}

func (a *authorizer) check(_ ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
	a.once.Do(func() {
		a.keys, a.refused = map[string]bool{}, map[string]bool{}
		keys, err := ReadAuthorizedKeys(a.t.AuthorizedKeys)
		if err != nil {
			// Refuse everyone rather than serve with a stale list.
			a.t.log().Error("stand-in TSA: cannot read the authorized worker keys; refusing every key", "err", err)
		}
		for _, k := range keys {
			a.keys[string(k.Marshal())] = true
		}
	})
	fp := ssh.FingerprintSHA256(key)
	if a.keys[string(key.Marshal())] {
		return &ssh.Permissions{Extensions: map[string]string{"key": fp}}, nil
	}
	if !a.refused[fp] {
		a.refused[fp] = true
		a.t.event("refused key %s from %s", fp, a.addr)
	}
	return nil, errors.New("key not in authorized_worker_keys")
}

func (t *TSA) serveConn(ctx context.Context, c net.Conn) {
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	addr := c.RemoteAddr().String()
	auth := &authorizer{t: t, addr: addr}
	cfg := &ssh.ServerConfig{PublicKeyCallback: auth.check, MaxAuthTries: 6, ServerVersion: "SSH-2.0-concourse-standin-tsa"}
	cfg.AddHostKey(t.HostKey)
	c.SetDeadline(time.Now().Add(handshakeTimeout))
	conn, chans, reqs, err := ssh.NewServerConn(c, cfg)
	if err != nil {
		t.log().Debug("stand-in TSA: handshake failed", "remote", addr, "err", err)
		return
	}
	defer conn.Close()
	c.SetDeadline(time.Time{})
	go globalRequests(reqs)
	go keepAlive(ctx, conn, cmp.Or(t.KeepAlive, DefaultKeepAlive))

	cs := &connState{t: t, conn: conn, addr: addr, key: conn.Permissions.Extensions["key"]}
	cs.idle = time.AfterFunc(idleTimeout, func() { conn.Close() })
	var wg sync.WaitGroup
	for nc := range chans {
		if nc.ChannelType() != "session" {
			nc.Reject(ssh.UnknownChannelType, "the stand-in TSA opens sessions only")
			continue
		}
		if !cs.begin() {
			nc.Reject(ssh.ResourceShortage, fmt.Sprintf("at most %d sessions per connection", maxSessions))
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			cs.end()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer cs.end()
			cs.session(ctx, ch, creqs)
		}()
	}
	cs.idle.Stop()
	wg.Wait()
}

// globalRequests answers a worker's keepalives; port forwarding, which a
// real TSA does for Garden and Baggageclaim, is refused.
func globalRequests(reqs <-chan *ssh.Request) {
	for r := range reqs {
		r.Reply(r.Type == "keepalive", nil)
	}
}

// keepAlive closes conn when the other side stops answering.
func keepAlive(ctx context.Context, conn ssh.Conn, every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		answered := make(chan error, 1)
		go func() {
			_, _, err := conn.SendRequest("keepalive@concourse-standin", true, nil)
			answered <- err
		}()
		select {
		case err := <-answered:
			if err == nil {
				continue
			}
		case <-time.After(every):
		case <-ctx.Done():
		}
		conn.Close()
		return
	}
}

// connState is one authenticated connection: its sessions and the timer
// that closes it when none is open.
type connState struct {
	t    *TSA
	conn *ssh.ServerConn
	addr string
	key  string

	mu     sync.Mutex
	active int
	idle   *time.Timer
}

func (cs *connState) begin() bool {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.active >= maxSessions {
		return false
	}
	cs.active++
	cs.idle.Stop()
	return true
}

func (cs *connState) end() {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.active--; cs.active == 0 {
		cs.idle.Reset(idleTimeout)
	}
}

// session runs the one command a session may carry.
func (cs *connState) session(ctx context.Context, ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer ch.Close()
	timer := time.AfterFunc(commandTimeout, func() { ch.Close() })
	defer timer.Stop()
	for req := range reqs {
		if req.Type != "exec" {
			req.Reply(false, nil) // env, pty-req, shell: not a TSA's
			continue
		}
		var p struct{ Command string }
		if err := ssh.Unmarshal(req.Payload, &p); err != nil {
			req.Reply(false, nil)
			return
		}
		req.Reply(true, nil)
		closed := make(chan struct{})
		go func() { ssh.DiscardRequests(reqs); close(closed) }()
		cs.run(ctx, p.Command, ch, timer, closed)
		return
	}
}

// exit ends a command with a status, and a message on stderr.
func exit(ch ssh.Channel, code uint32, msg string) {
	if msg != "" {
		fmt.Fprintln(ch.Stderr(), msg)
	}
	ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{code}))
}

// run executes one command. The worker's JSON arrives on stdin within
// commandTimeout (timer closes the channel otherwise); closed is closed
// when the worker closes the session or the connection ends.
func (cs *connState) run(ctx context.Context, line string, ch ssh.Channel, timer *time.Timer, closed <-chan struct{}) {
	t := cs.t
	cmd, err := ParseCommand(line)
	if err != nil {
		t.log().Warn("stand-in TSA: command refused", "remote", cs.addr, "err", err)
		exit(ch, 1, "stand-in TSA: "+err.Error())
		return
	}
	w, err := ParseWorker(ch)
	if err != nil {
		t.event("refused worker JSON from %s: %v", cs.addr, err)
		exit(ch, 1, "stand-in TSA: "+err.Error())
		return
	}
	timer.Stop()
	t.log().Debug("stand-in TSA: command", "command", cmd.Name, "worker", w.Name, "remote", cs.addr)
	switch cmd.Name {
	case ForwardWorker:
		// A pointer: when this connection ends, it unregisters the
		// worker only if no newer connection registered the name since.
		reg := &Registration{Worker: w, Key: cs.key, Addr: cs.addr}
		t.mu.Lock()
		if t.workers == nil {
			t.workers = map[string]*Registration{}
		}
		t.workers[w.Name] = reg
		t.mu.Unlock()
		t.event("worker %s registered (key %s)", w.Name, cs.key)
		fmt.Fprintf(ch, "registered %s\n", w.Name)
		select {
		case <-closed:
		case <-ctx.Done():
		}
		t.mu.Lock()
		current := t.workers[w.Name] == reg
		if current {
			delete(t.workers, w.Name)
		}
		t.mu.Unlock()
		if current {
			t.event("worker %s disconnected", w.Name)
		}
		return
	case RetireWorker, LandWorker, DeleteWorker:
		past := map[string]string{RetireWorker: "retired", LandWorker: "landed", DeleteWorker: "deleted"}[cmd.Name]
		if cmd.Name != LandWorker {
			t.mu.Lock()
			delete(t.workers, w.Name)
			t.mu.Unlock()
		}
		t.event("worker %s %s", w.Name, past)
	case SweepContainers, SweepVolumes:
		ch.Write([]byte("[]\n")) // nothing to destroy: the stand-in has no ATC
	}
	exit(ch, 0, "")
}
