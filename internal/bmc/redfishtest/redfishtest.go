// Package redfishtest is a Redfish service stand-in, not a BMC: an HTTPS
// server that serves the DMTF Redfish schema's resources the way DMTF's
// public mockups (Redfish-Mockup-Server's public-rackmount1) show them,
// just enough of them for bootstrapd's power control: the service root,
// the Systems collection with one ComputerSystem (or two, to test
// discovery), the SessionService (POST a session for an X-Auth-Token,
// DELETE it to log out; Basic authentication as well), PATCH of a
// system's Boot override and POST of its ComputerSystem.Reset action.
// Errors come as Redfish's error object with @Message.ExtendedInfo in the
// Base message registry's words (400 for a bad ResetType, 401 without a
// valid session). Power actions drive a Machine: an in-memory one here,
// a QEMU VM through QMP in the end-to-end tests.
//
// No Redfish emulator can be installed on these machines (DMTF's and
// OpenStack's sushy-tools are Python packages from PyPI), so this is what
// the Redfish client is tested against, cross-checked against the requests
// gofish and Debian's redfishtool send. Every response carries the
// Server header "Redfish stand-in, not a BMC" and every log line says so.
package redfishtest

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/bootstrapd/bootstrapd/internal/routeros/routerostest"
)

// Label is the Server header of every response and the first words of
// every log line.
const Label = "Redfish stand-in, not a BMC"

// Machine is what the stand-in's Reset action drives: the node's power.
type Machine interface {
	PowerOn(ctx context.Context) error
	PowerOff(ctx context.Context) error
	// Reset restarts a running machine (a hard reset).
	Reset(ctx context.Context) error
	PowerState(ctx context.Context) (on bool, err error)
}

// MemMachine is a Machine that only remembers: for tests without a VM.
type MemMachine struct {
	mu          sync.Mutex
	on          bool
	ons, resets int
}

func (m *MemMachine) PowerOn(context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.on {
		m.ons++
	}
	m.on = true
	return nil
}

func (m *MemMachine) PowerOff(context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.on = false
	return nil
}

func (m *MemMachine) Reset(context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.resets++
	return nil
}

func (m *MemMachine) PowerState(context.Context) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.on, nil
}

// Counts says how often the machine was switched on (from off) and reset.
func (m *MemMachine) Counts() (ons, resets int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.ons, m.resets
}

// Options shape the stand-in. The zero value serves one system on a
// MemMachine over HTTPS with a new test certificate, user "admin" with
// password "password".
type Options struct {
	User, Password string
	// Machine is the first system's; nil means a new MemMachine. Further
	// systems (Systems > 1) each get a MemMachine.
	Machine Machine
	// Systems is how many ComputerSystems the collection lists (1 when
	// zero); more than one makes a client name the one it wants.
	Systems int
	// ResetTypes are the ResetType@Redfish.AllowableValues; nil means the
	// list DMTF's rackmount mockup shows.
	ResetTypes []string
	// RefuseBoot answers a PATCH of Boot with 400 PropertyNotWritable, as
	// a BMC whose boot override is locked does.
	RefuseBoot bool
	// Hang makes every request wait until the client gives up (or the
	// server closes): a BMC whose web service stopped answering.
	Hang bool
	// PlainHTTP serves http:// instead of https://.
	PlainHTTP bool
	// TLS is the server's certificate; nil makes one with
	// routerostest.SelfSigned.
	TLS *tls.Config
	Log *slog.Logger
}

// Request is one request the stand-in answered, for tests to compare.
type Request struct {
	Method, Path string
	Auth         string         // "session", "basic" or "" (none)
	Body         map[string]any // the JSON body, nil when none
	Status       int
}

// BootOverride is a system's Boot override as last PATCHed.
type BootOverride struct {
	Target, Enabled, Mode string
}

type system struct {
	id      string
	machine Machine
	boot    BootOverride
	// boots is the override each power-on or reset booted with.
	boots []BootOverride
}

// Server is a running stand-in.
type Server struct {
	// URL is the service's base (https://127.0.0.1:PORT) once serving.
	URL string
	// Cert is the HTTPS certificate (nil over plain HTTP); Fingerprint its
	// SHA-256 in hex, what a client pins.
	Cert        *x509.Certificate
	Fingerprint string

	o        Options
	log      *slog.Logger
	tls      *tls.Config
	srv      *http.Server
	closed   chan struct{}
	closeOne sync.Once

	mu       sync.Mutex
	systems  []*system
	sessions map[string]string // token -> session id
	seq      int
	requests []Request
}

// New builds a stand-in; Serve or Start runs it.
func New(o Options) (*Server, error) {
	if o.User == "" {
		o.User, o.Password = "admin", "password"
	}
	if o.Systems <= 0 {
		o.Systems = 1
	}
	if o.ResetTypes == nil {
		o.ResetTypes = []string{"On", "ForceOff", "GracefulShutdown", "GracefulRestart", "ForceRestart", "Nmi", "ForceOn", "PushPowerButton"}
	}
	if o.Machine == nil {
		o.Machine = &MemMachine{}
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := &Server{o: o, log: log.With("server", Label), closed: make(chan struct{}), sessions: map[string]string{}}
	for i := range o.Systems {
		m := o.Machine
		if i > 0 {
			m = &MemMachine{}
		}
		s.systems = append(s.systems, &system{id: fmt.Sprintf("node%d", i+1), machine: m,
			boot: BootOverride{Target: "None", Enabled: "Disabled", Mode: "UEFI"}})
	}
	if !o.PlainHTTP {
		conf := o.TLS
		if conf == nil {
			var err error
			if conf, _, err = routerostest.SelfSigned(); err != nil {
				return nil, err
			}
		}
		if len(conf.Certificates) == 0 || len(conf.Certificates[0].Certificate) == 0 {
			return nil, errors.New("redfishtest: the TLS config has no certificate")
		}
		cert, err := x509.ParseCertificate(conf.Certificates[0].Certificate[0])
		if err != nil {
			return nil, fmt.Errorf("redfishtest: %w", err)
		}
		s.tls, s.Cert, s.Fingerprint = conf, cert, routerostest.Fingerprint(cert)
	}
	s.srv = &http.Server{Handler: s, ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)}
	return s, nil
}

// Serve answers on l until Close (URL stays as it was: the caller knows
// l's address).
func (s *Server) Serve(l net.Listener) error {
	scheme := "https"
	if s.tls == nil {
		scheme = "http"
	} else {
		l = tls.NewListener(l, s.tls)
	}
	s.log.Info(Label+": serving", "url", scheme+"://"+l.Addr().String())
	if err := s.srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Close stops serving and releases hanging requests.
func (s *Server) Close() error {
	s.closeOne.Do(func() { close(s.closed) })
	return s.srv.Close()
}

// Start serves on a new 127.0.0.1 port until the test ends.
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	scheme := "https"
	if s.tls == nil {
		scheme = "http"
	}
	s.URL = scheme + "://" + l.Addr().String()
	go func() { _ = s.Serve(l) }()
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// Requests returns what the stand-in answered, in order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

// Sessions is how many sessions are open.
func (s *Server) Sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

// Boot returns system i's current override and the one each power-on or
// reset booted with, oldest first (a Once override is used by one boot).
func (s *Server) Boot(i int) (current BootOverride, boots []BootOverride) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.systems[i].boot, slices.Clone(s.systems[i].boots)
}

// SystemPath is system i's @odata.id.
func (s *Server) SystemPath(i int) string { return "/redfish/v1/Systems/" + s.systems[i].id }

type answer struct {
	status int
	body   any
	header map[string]string
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Server", Label)
	if s.o.Hang {
		s.log.Info(Label+": hanging", "method", r.Method, "path", r.URL.Path)
		select {
		case <-r.Context().Done():
		case <-s.closed:
		}
		return
	}
	var body map[string]any
	raw, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &body); err != nil {
			s.reply(w, r, "", nil, answer{status: http.StatusBadRequest, body: redfishError("MalformedJSON",
				"The request body submitted was malformed JSON and could not be parsed by the receiving service.", nil, "Ensure that the request body is valid JSON and resubmit the request.")})
			return
		}
	}
	auth := s.authenticate(r)
	a := s.route(r, auth, body)
	s.reply(w, r, auth, body, a)
}

func (s *Server) reply(w http.ResponseWriter, r *http.Request, auth string, body map[string]any, a answer) {
	path := strings.TrimSuffix(r.URL.Path, "/")
	logged := body
	if path == "/redfish/v1/SessionService/Sessions" && body != nil {
		logged = map[string]any{"UserName": body["UserName"], "Password": "(not recorded)"}
	}
	s.mu.Lock()
	s.requests = append(s.requests, Request{Method: r.Method, Path: path, Auth: auth, Body: logged, Status: a.status})
	s.mu.Unlock()
	s.log.Info(Label+": request", "method", r.Method, "path", path, "auth", auth, "status", a.status)
	for k, v := range a.header {
		w.Header().Set(k, v)
	}
	w.Header().Set("OData-Version", "4.0")
	if a.body == nil {
		w.WriteHeader(a.status)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(a.status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(a.body)
}

// authenticate returns "session" for a live X-Auth-Token, "basic" for the
// right user and password, "" otherwise.
func (s *Server) authenticate(r *http.Request) string {
	if tok := r.Header.Get("X-Auth-Token"); tok != "" {
		s.mu.Lock()
		_, ok := s.sessions[tok]
		s.mu.Unlock()
		if ok {
			return "session"
		}
		return ""
	}
	if u, p, ok := r.BasicAuth(); ok && s.credentialsOK(u, p) {
		return "basic"
	}
	return ""
}

func (s *Server) credentialsOK(user, password string) bool {
	return subtle.ConstantTimeCompare([]byte(user), []byte(s.o.User)) == 1 &&
		subtle.ConstantTimeCompare([]byte(password), []byte(s.o.Password)) == 1
}

// route answers one request. Only the service root (and /redfish) and
// session creation are open without credentials, as DSP0266 requires.
func (s *Server) route(r *http.Request, auth string, body map[string]any) answer {
	path := strings.TrimSuffix(r.URL.Path, "/")
	switch {
	case path == "/redfish" && r.Method == http.MethodGet:
		return answer{status: http.StatusOK, body: map[string]any{"v1": "/redfish/v1/"}}
	case path == "/redfish/v1" && r.Method == http.MethodGet:
		return answer{status: http.StatusOK, body: serviceRoot()}
	case path == "/redfish/v1/SessionService/Sessions" && r.Method == http.MethodPost:
		return s.createSession(body)
	}
	if auth == "" {
		return answer{status: http.StatusUnauthorized, header: map[string]string{"WWW-Authenticate": `Basic realm="` + Label + `"`},
			body: redfishError("NoValidSession", "There is no valid session established with the implementation.", nil, "Establish a session before attempting any operations.")}
	}
	switch {
	case path == "/redfish/v1/SessionService":
		return s.only(r, http.MethodGet, sessionService)
	case path == "/redfish/v1/SessionService/Sessions":
		return s.only(r, http.MethodGet, s.sessionCollection)
	case strings.HasPrefix(path, "/redfish/v1/SessionService/Sessions/"):
		return s.session(r, strings.TrimPrefix(path, "/redfish/v1/SessionService/Sessions/"))
	case path == "/redfish/v1/Systems":
		return s.only(r, http.MethodGet, s.systemCollection)
	case strings.HasPrefix(path, "/redfish/v1/Systems/"):
		rest := strings.TrimPrefix(path, "/redfish/v1/Systems/")
		id, action, _ := strings.Cut(rest, "/")
		sys := s.system(id)
		switch {
		case sys == nil:
		case action == "":
			return s.systemResource(r, sys, body)
		case action == "Actions/ComputerSystem.Reset":
			if r.Method != http.MethodPost {
				return notAllowed(r)
			}
			return s.reset(r.Context(), sys, body)
		}
	}
	return answer{status: http.StatusNotFound, body: redfishError("ResourceMissingAtURI",
		fmt.Sprintf("The resource at the URI '%s' was not found.", path), []any{path}, "Place a valid resource at the URI or correct the URI and resubmit the request.")}
}

func (s *Server) only(r *http.Request, method string, get func() any) answer {
	if r.Method != method {
		return notAllowed(r)
	}
	return answer{status: http.StatusOK, body: get()}
}

func notAllowed(r *http.Request) answer {
	return answer{status: http.StatusMethodNotAllowed, body: redfishError("OperationNotAllowed",
		fmt.Sprintf("The HTTP method %s is not allowed on this resource.", r.Method), nil, "None.")}
}

func (s *Server) system(id string) *system {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sys := range s.systems {
		if sys.id == id {
			return sys
		}
	}
	return nil
}

// redfishError is Redfish's error response (DSP0266 "Error responses"):
// a general code and message, with the specific Base registry message in
// @Message.ExtendedInfo.
func redfishError(id, message string, args []any, resolution string) map[string]any {
	if args == nil {
		args = []any{}
	}
	return map[string]any{"error": map[string]any{
		"code":    "Base.1.16.GeneralError",
		"message": "A general error has occurred. See Resolution for information on how to resolve the error, or @Message.ExtendedInfo if Resolution is not provided.",
		"@Message.ExtendedInfo": []any{map[string]any{
			"@odata.type":     "#Message.v1_1_2.Message",
			"MessageId":       "Base.1.16." + id,
			"Message":         message,
			"MessageArgs":     args,
			"MessageSeverity": "Warning",
			"Resolution":      resolution,
		}},
	}}
}

func serviceRoot() any {
	return map[string]any{
		"@odata.type":    "#ServiceRoot.v1_15_0.ServiceRoot",
		"@odata.id":      "/redfish/v1/",
		"Id":             "RootService",
		"Name":           "Root Service (" + Label + ")",
		"RedfishVersion": "1.15.0",
		"UUID":           "00000000-0000-4000-8000-000000000000",
		"Systems":        map[string]any{"@odata.id": "/redfish/v1/Systems"},
		"SessionService": map[string]any{"@odata.id": "/redfish/v1/SessionService"},
		"Links":          map[string]any{"Sessions": map[string]any{"@odata.id": "/redfish/v1/SessionService/Sessions"}},
	}
}

func sessionService() any {
	return map[string]any{
		"@odata.type":    "#SessionService.v1_1_8.SessionService",
		"@odata.id":      "/redfish/v1/SessionService",
		"Id":             "SessionService",
		"Name":           "Session Service",
		"ServiceEnabled": true,
		"SessionTimeout": 30,
		"Sessions":       map[string]any{"@odata.id": "/redfish/v1/SessionService/Sessions"},
	}
}

func collection(odataType, name, id string, members []string) any {
	var ms []any
	for _, m := range members {
		ms = append(ms, map[string]any{"@odata.id": m})
	}
	if ms == nil {
		ms = []any{}
	}
	return map[string]any{
		"@odata.type":         "#" + odataType + "." + odataType,
		"@odata.id":           id,
		"Name":                name,
		"Members@odata.count": len(ms),
		"Members":             ms,
	}
}

func (s *Server) sessionCollection() any {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ids []string
	for _, id := range s.sessions {
		ids = append(ids, "/redfish/v1/SessionService/Sessions/"+id)
	}
	slices.Sort(ids)
	return collection("SessionCollection", "Session Collection", "/redfish/v1/SessionService/Sessions", ids)
}

func (s *Server) systemCollection() any {
	var ids []string
	for i := range s.systems {
		ids = append(ids, s.SystemPath(i))
	}
	return collection("ComputerSystemCollection", "Computer System Collection", "/redfish/v1/Systems", ids)
}

func sessionResource(id, user string) any {
	return map[string]any{
		"@odata.type": "#Session.v1_6_0.Session",
		"@odata.id":   "/redfish/v1/SessionService/Sessions/" + id,
		"Id":          id,
		"Name":        "User Session",
		"UserName":    user,
	}
}

func (s *Server) createSession(body map[string]any) answer {
	user, _ := body["UserName"].(string)
	password, _ := body["Password"].(string)
	if !s.credentialsOK(user, password) {
		return answer{status: http.StatusUnauthorized, body: redfishError("NoValidSession",
			"There is no valid session established with the implementation.", nil, "Establish a session before attempting any operations.")}
	}
	tok := make([]byte, 16)
	_, _ = rand.Read(tok)
	s.mu.Lock()
	s.seq++
	id := fmt.Sprintf("%d", s.seq)
	s.sessions[hex.EncodeToString(tok)] = id
	s.mu.Unlock()
	return answer{status: http.StatusCreated, body: sessionResource(id, user), header: map[string]string{
		"X-Auth-Token": hex.EncodeToString(tok),
		"Location":     "/redfish/v1/SessionService/Sessions/" + id,
	}}
}

func (s *Server) session(r *http.Request, id string) answer {
	s.mu.Lock()
	defer s.mu.Unlock()
	for tok, sid := range s.sessions {
		if sid != id {
			continue
		}
		switch r.Method {
		case http.MethodGet:
			return answer{status: http.StatusOK, body: sessionResource(id, s.o.User)}
		case http.MethodDelete:
			delete(s.sessions, tok)
			return answer{status: http.StatusNoContent}
		}
		return notAllowed(r)
	}
	return answer{status: http.StatusNotFound, body: redfishError("ResourceMissingAtURI",
		fmt.Sprintf("The resource at the URI '%s' was not found.", r.URL.Path), []any{r.URL.Path}, "Place a valid resource at the URI or correct the URI and resubmit the request.")}
}

// Values a Boot override may take (ComputerSystem schema's enums, the ones
// the mockup lists for the target).
func bootTargets() []string {
	return []string{"None", "Pxe", "Cd", "Usb", "Hdd", "BiosSetup", "Utilities", "Diags", "SDCard", "UefiTarget"}
}

func (s *Server) systemResource(r *http.Request, sys *system, body map[string]any) answer {
	switch r.Method {
	case http.MethodGet:
		return s.computerSystem(r.Context(), sys)
	case http.MethodPatch:
		return s.patchSystem(r.Context(), sys, body)
	}
	return notAllowed(r)
}

func (s *Server) computerSystem(ctx context.Context, sys *system) answer {
	on, err := sys.machine.PowerState(ctx)
	if err != nil {
		return internalError(err)
	}
	state := "Off"
	if on {
		state = "On"
	}
	s.mu.Lock()
	boot := sys.boot
	s.mu.Unlock()
	id := "/redfish/v1/Systems/" + sys.id
	return answer{status: http.StatusOK, body: map[string]any{
		"@odata.type":  "#ComputerSystem.v1_22_0.ComputerSystem",
		"@odata.id":    id,
		"Id":           sys.id,
		"Name":         sys.id + " (" + Label + ")",
		"SystemType":   "Physical",
		"Manufacturer": "bootstrapd",
		"Model":        Label,
		"PowerState":   state,
		"Status":       map[string]any{"State": "Enabled", "Health": "OK"},
		"Boot": map[string]any{
			"BootSourceOverrideEnabled":                        boot.Enabled,
			"BootSourceOverrideTarget":                         boot.Target,
			"BootSourceOverrideTarget@Redfish.AllowableValues": bootTargets(),
			"BootSourceOverrideMode":                           boot.Mode,
		},
		"Actions": map[string]any{"#ComputerSystem.Reset": map[string]any{
			"target":                            id + "/Actions/ComputerSystem.Reset",
			"ResetType@Redfish.AllowableValues": s.o.ResetTypes,
		}},
	}}
}

func internalError(err error) answer {
	return answer{status: http.StatusInternalServerError, body: redfishError("InternalError",
		"The request failed due to an internal service error: "+err.Error()+".", nil, "Resubmit the request. If the problem persists, consider resetting the service.")}
}

func propertyValueNotInList(value any, prop string) answer {
	return answer{status: http.StatusBadRequest, body: redfishError("PropertyValueNotInList",
		fmt.Sprintf("The value '%v' for the property %s is not in the list of acceptable values.", value, prop), []any{fmt.Sprint(value), prop},
		"Choose a value from the enumeration list that the implementation can support and resubmit the request if the operation failed.")}
}

// patchSystem accepts a Boot object only (the stand-in's only writable
// property), checking each field against its enum.
func (s *Server) patchSystem(ctx context.Context, sys *system, body map[string]any) answer {
	for k := range body {
		if k != "Boot" {
			return answer{status: http.StatusBadRequest, body: redfishError("PropertyNotWritable",
				fmt.Sprintf("The property %s is a read only property and cannot be assigned a value.", k), []any{k}, "Remove the property from the request body and resubmit the request if the operation failed.")}
		}
	}
	boot, ok := body["Boot"].(map[string]any)
	if !ok {
		return answer{status: http.StatusBadRequest, body: redfishError("PropertyValueTypeError",
			"The value for the property Boot is of a different type than the property can accept.", []any{"Boot"}, "Correct the value for the property in the request body and resubmit the request if the operation failed.")}
	}
	if s.o.RefuseBoot {
		return answer{status: http.StatusBadRequest, body: redfishError("PropertyNotWritable",
			"The property BootSourceOverrideTarget is a read only property and cannot be assigned a value.", []any{"BootSourceOverrideTarget"}, "Remove the property from the request body and resubmit the request if the operation failed.")}
	}
	s.mu.Lock()
	next := sys.boot
	s.mu.Unlock()
	fields := []struct {
		name    string
		allowed []string
		into    *string
	}{
		{"BootSourceOverrideTarget", bootTargets(), &next.Target},
		{"BootSourceOverrideEnabled", []string{"Disabled", "Once", "Continuous"}, &next.Enabled},
		{"BootSourceOverrideMode", []string{"Legacy", "UEFI"}, &next.Mode},
	}
	for k, v := range boot {
		i := slices.IndexFunc(fields, func(f struct {
			name    string
			allowed []string
			into    *string
		}) bool {
			return f.name == k
		})
		if i < 0 {
			return answer{status: http.StatusBadRequest, body: redfishError("PropertyUnknown",
				fmt.Sprintf("The property %s is not in the list of valid properties for the resource.", k), []any{k}, "Remove the unknown property from the request body and resubmit the request if the operation failed.")}
		}
		str, ok := v.(string)
		if !ok || !slices.Contains(fields[i].allowed, str) {
			return propertyValueNotInList(v, k)
		}
		*fields[i].into = str
	}
	s.mu.Lock()
	sys.boot = next
	s.mu.Unlock()
	return s.computerSystem(ctx, sys)
}

// reset is the ComputerSystem.Reset action.
func (s *Server) reset(ctx context.Context, sys *system, body map[string]any) answer {
	rt, ok := body["ResetType"].(string)
	if !ok {
		return answer{status: http.StatusBadRequest, body: redfishError("ActionParameterMissing",
			"The action ComputerSystem.Reset requires the parameter ResetType to be present in the request body.", []any{"ComputerSystem.Reset", "ResetType"}, "Supply the action with the required parameter in the request body when the request is resubmitted.")}
	}
	if !slices.Contains(s.o.ResetTypes, rt) {
		return answer{status: http.StatusBadRequest, body: redfishError("ActionParameterValueNotInList",
			fmt.Sprintf("The value '%s' for the parameter ResetType in the action ComputerSystem.Reset is not in the list of acceptable values.", rt),
			[]any{rt, "ResetType", "ComputerSystem.Reset"}, "Choose a value from the enumeration list that the implementation can support and resubmit the request if the operation failed.")}
	}
	on, err := sys.machine.PowerState(ctx)
	if err != nil {
		return internalError(err)
	}
	switch {
	case rt == "On" || rt == "ForceOn" || rt == "PushPowerButton" && !on:
		if !on {
			s.consumeBoot(sys)
			err = sys.machine.PowerOn(ctx)
		}
	case rt == "ForceOff" || rt == "GracefulShutdown" || rt == "PushPowerButton":
		err = sys.machine.PowerOff(ctx)
	case rt == "ForceRestart" || rt == "GracefulRestart" || rt == "PowerCycle":
		s.consumeBoot(sys)
		if on {
			err = sys.machine.Reset(ctx)
		} else {
			err = sys.machine.PowerOn(ctx)
		}
	}
	if err != nil {
		return internalError(err)
	}
	s.log.Info(Label+": reset", "system", sys.id, "reset_type", rt, "was_on", on)
	return answer{status: http.StatusNoContent}
}

// consumeBoot records the override a boot uses and clears a Once.
func (s *Server) consumeBoot(sys *system) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sys.boots = append(sys.boots, sys.boot)
	if sys.boot.Enabled == "Once" {
		sys.boot.Enabled = "Disabled"
	}
}
