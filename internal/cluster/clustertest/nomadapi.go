// NomadAPI (this file) is a stand-in, not Nomad: an in-process HTTP server
// that answers a few endpoints as the Nomad v1.11.x HTTP API docs describe.
// The real test agent is Nomad 1.6.1, the last open-source release, which
// has neither client introduction tokens (Nomad 1.11) nor the JWKS that
// Vault verifies workload identities with (Nomad 1.7); code for those
// features is tested against NomadAPI, and everything else against the real
// agent (StartNomad).

package clustertest

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/nomad/api"
)

// NomadAPIOptions shape a NomadAPI. The zero value is a 1.11.3 server in
// region "global" without ACLs, enforcement "warn", max TTL 30m.
type NomadAPIOptions struct {
	Version     string // what servers report, e.g. "1.11.3"; default "1.11.3"
	Enforcement string // server.client_introduction.enforcement: "none", "warn" (default), "strict"
	// ACLToken, when not "", turns ACLs on: requests must carry it in
	// X-Nomad-Token (or Authorization: Bearer); others get 403 "Permission
	// denied". It is the only token there is, and it is a management token.
	ACLToken string
	Region   string // default "global"
	// MaxIntroTTL is server.client_introduction.max_identity_ttl; default
	// 30m, Nomad's. A longer requested TTL is cut to it without an error, as
	// Nomad 1.11 does. The default TTL (for a request without one) is 5m,
	// or MaxIntroTTL when that is shorter.
	MaxIntroTTL time.Duration
}

// NomadAPI answers as the Nomad v1.11.x HTTP API docs describe; it is not
// Nomad. It is one server agent (server-1, datacenter dc1, the leader) with
// no nodes, and it answers these requests:
//
//	GET  /v1/status/leader       "127.0.0.1:4647"
//	GET  /v1/agent/self          version, region, client_introduction (agent:read)
//	GET  /v1/agent/members       the one server, build tag = Version (node:read)
//	GET  /v1/acl/token/self      the management token, without its secret
//	GET  /v1/nodes               [] (node:read)
//	PUT  /v1/acl/identity/client-introduction-token  (or POST; node:write)
//	GET  /.well-known/jwks.json  the key every JWT here is signed with (no ACL)
//
// Any other path is 404, another method 405, and a request body is read to
// at most 1 MiB. Errors are plain text with Nomad's status codes, so the
// api package returns them as api.UnexpectedResponseError.
type NomadAPI struct {
	Addr string // http://127.0.0.1:<port>

	opts       NomadAPIOptions // defaults filled in
	defaultTTL time.Duration   // server.client_introduction.default_identity_ttl
	key        *rsa.PrivateKey // signs every JWT; its public half is the JWKS
	kid        string
	accessor   string    // the management token's accessor ID
	started    time.Time // the management token's create time

	mu     sync.Mutex
	intros []api.ACLIdentityClientIntroductionTokenRequest
	reqs   []string
}

// Nomad's defaults, and what the stand-in reports about itself.
const (
	nomadAPIVersion    = "1.11.3"
	nomadAPIDefaultTTL = 5 * time.Minute  // default_identity_ttl
	nomadAPIMaxTTL     = 30 * time.Minute // max_identity_ttl
	nomadAPIMaxBody    = 1 << 20
	nomadAPIServerName = "server-1"
	nomadAPIDatacenter = "dc1"
	nomadAPIIndex      = 1 // X-Nomad-Index of every query: nothing ever changes
	nomadAPIJWKSPath   = "/.well-known/jwks.json"
)

// StartNomadAPI starts a NomadAPI on 127.0.0.1 for t, closed when t ends.
// Options out of range fail t.
func StartNomadAPI(t testing.TB, o NomadAPIOptions) *NomadAPI {
	t.Helper()
	if o.Version == "" {
		o.Version = nomadAPIVersion
	}
	if o.Enforcement == "" {
		o.Enforcement = "warn"
	}
	if !slices.Contains([]string{"none", "warn", "strict"}, o.Enforcement) {
		t.Fatalf("nomad stand-in: enforcement %q is not none, warn or strict", o.Enforcement)
	}
	if o.Region == "" {
		o.Region = "global"
	}
	if o.MaxIntroTTL < 0 {
		t.Fatalf("nomad stand-in: max intro TTL %s is negative", o.MaxIntroTTL)
	}
	if o.MaxIntroTTL == 0 {
		o.MaxIntroTTL = nomadAPIMaxTTL
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatalf("nomad stand-in: signing key: %v", err)
	}
	s := &NomadAPI{
		opts:       o,
		defaultTTL: min(nomadAPIDefaultTTL, o.MaxIntroTTL),
		key:        key,
		kid:        nomadUUID(),
		accessor:   nomadUUID(),
		started:    time.Now().UTC().Truncate(time.Second),
	}
	srv := httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(srv.Close)
	s.Addr = srv.URL
	return s
}

// IntroRequests returns every accepted client introduction token request,
// in order, as the client sent it (TTL and NodePool not defaulted).
func (s *NomadAPI) IntroRequests() []api.ACLIdentityClientIntroductionTokenRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.intros)
}

// Requests returns "METHOD /path" (no query) of every request received, in
// order, whatever it was answered.
func (s *NomadAPI) Requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.reqs)
}

// SignIdentity returns a JWT of claims signed as Nomad signs workload
// identities: RS256 with the key the JWKS publishes, and a header naming
// its kid and typ JWT. The caller supplies every claim (aud, sub, iat, exp,
// nomad_job_id, nomad_namespace, nomad_task, ...); none is added. It
// panics if claims do not marshal to JSON.
func (s *NomadAPI) SignIdentity(claims map[string]any) string {
	jwt, err := s.sign(claims)
	if err != nil {
		panic(fmt.Sprintf("nomad stand-in: signing identity: %v", err))
	}
	return jwt
}

// JWKSURL is where the key that signs every JWT here is published, as
// Vault's jwt auth method (jwks_url) reads it.
func (s *NomadAPI) JWKSURL() string { return s.Addr + nomadAPIJWKSPath }

// serve records r, routes it by path and method, and bounds its body.
func (s *NomadAPI) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.reqs = append(s.reqs, r.Method+" "+r.URL.Path)
	s.mu.Unlock()
	if r.Body != http.NoBody {
		r.Body = http.MaxBytesReader(w, r.Body, nomadAPIMaxBody)
	}
	get := []string{http.MethodGet}
	var methods []string
	var h http.HandlerFunc
	switch r.URL.Path {
	case "/v1/status/leader":
		methods, h = get, s.leader
	case "/v1/agent/self":
		methods, h = get, s.agentSelf
	case "/v1/agent/members":
		methods, h = get, s.agentMembers
	case "/v1/acl/token/self":
		methods, h = get, s.tokenSelf
	case "/v1/nodes":
		methods, h = get, s.nodes
	case "/v1/acl/identity/client-introduction-token":
		methods, h = []string{http.MethodPut, http.MethodPost}, s.introToken
	case nomadAPIJWKSPath:
		methods, h = get, s.jwks
	default:
		// Nomad answers an unknown path 404 with an empty body; the text
		// makes a failed test easier to read.
		nomadAPIError(w, http.StatusNotFound, "Invalid URL path")
		return
	}
	if !slices.Contains(methods, r.Method) {
		nomadAPIError(w, http.StatusMethodNotAllowed, "Invalid method")
		return
	}
	h(w, r)
}

func (s *NomadAPI) leader(w http.ResponseWriter, _ *http.Request) {
	nomadAPIJSON(w, "127.0.0.1:4647")
}

func (s *NomadAPI) agentSelf(w http.ResponseWriter, r *http.Request) {
	if !s.allowed(w, r) {
		return
	}
	config := map[string]any{
		"Region":     s.opts.Region,
		"Datacenter": nomadAPIDatacenter,
		"Version": map[string]any{
			"Version": s.opts.Version, "VersionPrerelease": "", "VersionMetadata": "", "Revision": "",
		},
		"ACL":    map[string]any{"Enabled": s.opts.ACLToken != ""},
		"Client": map[string]any{"Enabled": false},
		"Server": map[string]any{
			"Enabled": true,
			"ClientIntroduction": map[string]any{
				"Enforcement":        s.opts.Enforcement,
				"DefaultIdentityTTL": s.defaultTTL,
				"MaxIdentityTTL":     s.opts.MaxIntroTTL,
			},
		},
	}
	nomadAPIJSON(w, api.AgentSelf{Config: config, Member: s.member(), Stats: map[string]map[string]string{}})
}

func (s *NomadAPI) agentMembers(w http.ResponseWriter, r *http.Request) {
	if !s.allowed(w, r) {
		return
	}
	m := s.member()
	nomadAPIJSON(w, api.ServerMembers{
		ServerName: nomadAPIServerName, ServerRegion: s.opts.Region, ServerDC: nomadAPIDatacenter,
		Members: []*api.AgentMember{&m},
	})
}

// member is the one server as serf knows it.
func (s *NomadAPI) member() api.AgentMember {
	return api.AgentMember{
		Name: nomadAPIServerName + "." + s.opts.Region,
		Addr: "127.0.0.1",
		Port: 4648,
		Tags: map[string]string{
			"build": s.opts.Version, "role": "nomad", "region": s.opts.Region, "dc": nomadAPIDatacenter,
			"port": "4647", "rpc_addr": "127.0.0.1", "vsn": "1", "raft_vsn": "3", "expect": "1",
		},
		Status:      "alive",
		ProtocolMin: 1, ProtocolMax: 5, ProtocolCur: 2,
		DelegateMin: 2, DelegateMax: 5, DelegateCur: 4,
	}
}

func (s *NomadAPI) tokenSelf(w http.ResponseWriter, r *http.Request) {
	if s.opts.ACLToken == "" {
		nomadAPIError(w, http.StatusBadRequest, "ACL support disabled")
		return
	}
	if !s.tokenMatches(r) {
		nomadAPIError(w, http.StatusForbidden, "ACL token not found")
		return
	}
	nomadAPIQueryMeta(w)
	// Nomad answers with the secret too; the stand-in never echoes it.
	nomadAPIJSON(w, &api.ACLToken{
		AccessorID: s.accessor, Name: "management", Type: "management", Global: true,
		CreateTime: s.started, CreateIndex: nomadAPIIndex, ModifyIndex: nomadAPIIndex,
	})
}

func (s *NomadAPI) nodes(w http.ResponseWriter, r *http.Request) {
	if !s.allowed(w, r) {
		return
	}
	nomadAPIQueryMeta(w)
	nomadAPIJSON(w, []*api.NodeListStub{})
}

// introToken mints a client introduction token as Nomad 1.11 does: the
// body is read first (400 when it is not a request), then the token is
// checked (node:write), then NodePool "" becomes "default", a TTL of 0 the
// default TTL and one over MaxIntroTTL MaxIntroTTL.
func (s *NomadAPI) introToken(w http.ResponseWriter, r *http.Request) {
	if r.Body == http.NoBody {
		nomadAPIError(w, http.StatusBadRequest, "Request body is empty")
		return
	}
	req, err := decodeIntroRequest(r)
	if err != nil {
		nomadAPIError(w, http.StatusBadRequest, err.Error())
		return
	}
	if !s.allowed(w, r) {
		return
	}
	pool := req.NodePool
	if pool == "" {
		pool = "default"
	}
	ttl := req.TTL
	switch {
	case ttl == 0:
		ttl = s.defaultTTL
	case ttl > s.opts.MaxIntroTTL:
		ttl = s.opts.MaxIntroTTL
	}
	sub := []string{"node-introduction", s.opts.Region, pool}
	if req.NodeName != "" {
		sub = append(sub, req.NodeName)
	}
	now := time.Now()
	claims := map[string]any{
		"aud":             "nomadproject.io",
		"iat":             now.Unix(),
		"nbf":             now.Unix(),
		"jti":             nomadUUID(),
		"nomad_node_name": req.NodeName,
		"nomad_node_pool": pool,
		"sub":             strings.Join(append(sub, "default"), ":"),
	}
	// Nomad leaves exp out for a negative TTL; so does the stand-in.
	if ttl > 0 {
		claims["exp"] = now.Add(ttl).Unix()
	}
	jwt, err := s.sign(claims)
	if err != nil {
		nomadAPIError(w, http.StatusInternalServerError, "failed to sign node introduction identity claims: "+err.Error())
		return
	}
	s.mu.Lock()
	s.intros = append(s.intros, req)
	s.mu.Unlock()
	nomadAPIJSON(w, api.ACLIdentityClientIntroductionTokenResponse{JWT: jwt})
}

// decodeIntroRequest reads the body as Nomad does: TTL is nanoseconds (as
// the api package sends it) or a duration string such as "15m" (as the API
// docs show it).
func decodeIntroRequest(r *http.Request) (api.ACLIdentityClientIntroductionTokenRequest, error) {
	var req api.ACLIdentityClientIntroductionTokenRequest
	var in struct {
		TTL      any
		NodeName string
		NodePool string
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		return req, err
	}
	req.NodeName, req.NodePool = in.NodeName, in.NodePool
	switch v := in.TTL.(type) {
	case nil:
	case float64:
		req.TTL = time.Duration(v)
	case string:
		if v != "" {
			d, err := time.ParseDuration(v)
			if err != nil {
				return req, err
			}
			req.TTL = d
		}
	default:
		return req, fmt.Errorf("unexpected TTL type: %v", v)
	}
	return req, nil
}

func (s *NomadAPI) jwks(w http.ResponseWriter, _ *http.Request) {
	pub := s.key.PublicKey
	nomadAPIQueryMeta(w)
	nomadAPIJSON(w, map[string]any{"keys": []map[string]string{{
		"use": "sig",
		"kty": "RSA",
		"kid": s.kid,
		"alg": "RS256",
		"n":   base64.RawURLEncoding.EncodeToString(pub.N.Bytes()),
		"e":   base64.RawURLEncoding.EncodeToString(big.NewInt(int64(pub.E)).Bytes()),
	}}})
}

// allowed reports whether r may go on; when ACLs are on and r does not
// carry the token, it answers 403 and r may not.
func (s *NomadAPI) allowed(w http.ResponseWriter, r *http.Request) bool {
	if s.opts.ACLToken == "" || s.tokenMatches(r) {
		return true
	}
	nomadAPIError(w, http.StatusForbidden, "Permission denied")
	return false
}

// tokenMatches reports whether r carries the ACL token, read as Nomad reads
// it: X-Nomad-Token, else the first word after "Bearer " in Authorization.
func (s *NomadAPI) tokenMatches(r *http.Request) bool {
	token := strings.TrimSpace(r.Header.Get("X-Nomad-Token"))
	if token == "" {
		scheme, value, ok := strings.Cut(r.Header.Get("Authorization"), " ")
		if ok && strings.EqualFold(scheme, "bearer") {
			if f := strings.Fields(value); len(f) > 0 {
				token = f[0]
			}
		}
	}
	return subtle.ConstantTimeCompare([]byte(token), []byte(s.opts.ACLToken)) == 1
}

// sign returns the compact RS256 JWS of claims, with the key's kid.
func (s *NomadAPI) sign(claims any) (string, error) {
	header, err := json.Marshal(map[string]string{"alg": "RS256", "kid": s.kid, "typ": "JWT"})
	if err != nil {
		return "", err
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	signingInput := base64.RawURLEncoding.EncodeToString(header) + "." + base64.RawURLEncoding.EncodeToString(payload)
	sum := sha256.Sum256([]byte(signingInput))
	sig, err := rsa.SignPKCS1v15(rand.Reader, s.key, crypto.SHA256, sum[:])
	if err != nil {
		return "", err
	}
	return signingInput + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}

// nomadAPIQueryMeta sets the headers Nomad sets on a query's answer.
func nomadAPIQueryMeta(w http.ResponseWriter) {
	w.Header().Set("X-Nomad-Index", fmt.Sprint(nomadAPIIndex))
	w.Header().Set("X-Nomad-KnownLeader", "true")
	w.Header().Set("X-Nomad-LastContact", "0")
}

func nomadAPIJSON(w http.ResponseWriter, v any) {
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(v); err != nil {
		nomadAPIError(w, http.StatusInternalServerError, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(buf.Bytes())
}

// nomadAPIError answers as Nomad does: the status code and the message as
// plain text.
func nomadAPIError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(msg))
}
