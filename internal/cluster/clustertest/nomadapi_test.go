package clustertest

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/nomad/api"
)

const nomadAPITestToken = "3f2c6a55-8d0e-4c1b-9a7e-2b5d4e6f7a81"

func nomadAPIClient(t *testing.T, s *NomadAPI, token string) *api.Client {
	t.Helper()
	c, err := api.NewClient(&api.Config{Address: s.Addr, SecretID: token})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// nomadAPIStatus is the status code of an api error, 0 for none.
func nomadAPIStatus(err error) (int, string) {
	var ure api.UnexpectedResponseError
	if errors.As(err, &ure) {
		return ure.StatusCode(), ure.Body()
	}
	return 0, ""
}

// fetchJWKS reads the JWKS at url, without a token.
func fetchJWKS(t *testing.T, url string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s %v", url, resp.StatusCode, body, err)
	}
	return body
}

// verifyJWT checks jwt's RS256 signature against the key of jwks its
// header names, independently of the code that signed it, and returns its
// header and claims.
func verifyJWT(jwks []byte, jwt string) (header, claims map[string]any, err error) {
	var set struct {
		Keys []struct{ Kty, Use, Alg, Kid, N, E string }
	}
	if err := json.Unmarshal(jwks, &set); err != nil {
		return nil, nil, fmt.Errorf("JWKS: %w", err)
	}
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return nil, nil, fmt.Errorf("JWT has %d parts", len(parts))
	}
	if err := decodeSegment(parts[0], &header); err != nil {
		return nil, nil, fmt.Errorf("header: %w", err)
	}
	if err := decodeSegment(parts[1], &claims); err != nil {
		return nil, nil, fmt.Errorf("claims: %w", err)
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return nil, nil, fmt.Errorf("signature: %w", err)
	}
	for _, k := range set.Keys {
		if k.Kid != header["kid"] {
			continue
		}
		if k.Kty != "RSA" || k.Alg != "RS256" || k.Use != "sig" {
			return nil, nil, fmt.Errorf("key %s is %s/%s/%s, want RSA/RS256/sig", k.Kid, k.Kty, k.Alg, k.Use)
		}
		n, err1 := base64.RawURLEncoding.DecodeString(k.N)
		e, err2 := base64.RawURLEncoding.DecodeString(k.E)
		if err := errors.Join(err1, err2); err != nil {
			return nil, nil, fmt.Errorf("key %s: %w", k.Kid, err)
		}
		pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
		sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
		if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], sig); err != nil {
			return nil, nil, err
		}
		return header, claims, nil
	}
	return nil, nil, fmt.Errorf("no key %v in the JWKS", header["kid"])
}

func decodeSegment(seg string, out any) error {
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, out)
}

func TestNomadAPIIntroToken(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		opts     NomadAPIOptions
		req      api.ACLIdentityClientIntroductionTokenRequest
		wantPool string
		wantTTL  time.Duration
		wantSub  string
	}{
		{
			name:     "node in a pool",
			req:      api.ACLIdentityClientIntroductionTokenRequest{NodeName: "worker-1", NodePool: "ci", TTL: 10 * time.Minute},
			wantPool: "ci", wantTTL: 10 * time.Minute, wantSub: "node-introduction:global:ci:worker-1:default",
		},
		{
			name:     "default pool and TTL",
			req:      api.ACLIdentityClientIntroductionTokenRequest{NodeName: "worker-2"},
			wantPool: "default", wantTTL: 5 * time.Minute, wantSub: "node-introduction:global:default:worker-2:default",
		},
		{
			name:     "no node name",
			req:      api.ACLIdentityClientIntroductionTokenRequest{NodePool: "ci", TTL: time.Minute},
			wantPool: "ci", wantTTL: time.Minute, wantSub: "node-introduction:global:ci:default",
		},
		{
			name:     "TTL over the maximum is cut to it",
			req:      api.ACLIdentityClientIntroductionTokenRequest{NodeName: "worker-3", TTL: 2 * time.Hour},
			wantPool: "default", wantTTL: 30 * time.Minute, wantSub: "node-introduction:global:default:worker-3:default",
		},
		{
			name:     "region and maximum set",
			opts:     NomadAPIOptions{Region: "eu1", MaxIntroTTL: 2 * time.Minute},
			req:      api.ACLIdentityClientIntroductionTokenRequest{NodeName: "worker-4", NodePool: "ci", TTL: 3 * time.Minute},
			wantPool: "ci", wantTTL: 2 * time.Minute, wantSub: "node-introduction:eu1:ci:worker-4:default",
		},
		{
			name:     "default TTL above the maximum",
			opts:     NomadAPIOptions{MaxIntroTTL: time.Minute},
			req:      api.ACLIdentityClientIntroductionTokenRequest{NodeName: "worker-5"},
			wantPool: "default", wantTTL: time.Minute, wantSub: "node-introduction:global:default:worker-5:default",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.opts.ACLToken = nomadAPITestToken
			s := StartNomadAPI(t, tc.opts)
			req := tc.req
			resp, _, err := nomadAPIClient(t, s, nomadAPITestToken).ACLIdentity().CreateClientIntroductionToken(&req, nil)
			if err != nil {
				t.Fatal(err)
			}
			header, claims, err := verifyJWT(fetchJWKS(t, s.JWKSURL()), resp.JWT)
			if err != nil {
				t.Fatalf("intro token does not verify against the JWKS: %v", err)
			}
			if header["alg"] != "RS256" || header["typ"] != "JWT" {
				t.Errorf("header = %v, want alg RS256, typ JWT", header)
			}
			for claim, want := range map[string]any{
				"aud": "nomadproject.io", "sub": tc.wantSub,
				"nomad_node_name": tc.req.NodeName, "nomad_node_pool": tc.wantPool,
			} {
				if claims[claim] != want {
					t.Errorf("claim %s = %v, want %v", claim, claims[claim], want)
				}
			}
			iat, _ := claims["iat"].(float64)
			exp, _ := claims["exp"].(float64)
			if got := time.Duration(exp-iat) * time.Second; got != tc.wantTTL {
				t.Errorf("exp - iat = %s, want %s", got, tc.wantTTL)
			}
			if now := float64(time.Now().Unix()); iat < now-60 || iat > now+1 || claims["nbf"] != iat {
				t.Errorf("iat %v, nbf %v: want both about now (%v)", iat, claims["nbf"], now)
			}
			if jti, _ := claims["jti"].(string); len(jti) != 36 {
				t.Errorf("jti = %q, want a UUID", jti)
			}
			if got := s.IntroRequests(); !reflect.DeepEqual(got, []api.ACLIdentityClientIntroductionTokenRequest{tc.req}) {
				t.Errorf("IntroRequests() = %+v, want the request as sent: %+v", got, tc.req)
			}
			want := []string{"PUT /v1/acl/identity/client-introduction-token", "GET /.well-known/jwks.json"}
			if got := s.Requests(); !slices.Equal(got, want) {
				t.Errorf("Requests() = %q, want %q", got, want)
			}
		})
	}
}

func TestNomadAPIACL(t *testing.T) {
	t.Parallel()
	s := StartNomadAPI(t, NomadAPIOptions{ACLToken: nomadAPITestToken})
	t.Cleanup(func() {
		// After every subtest: refused requests are not recorded.
		if got := len(s.IntroRequests()); got != 1 {
			t.Errorf("len(IntroRequests()) = %d, want 1 (the one with the right token)", got)
		}
	})
	intro := func(c *api.Client) error {
		_, _, err := c.ACLIdentity().CreateClientIntroductionToken(&api.ACLIdentityClientIntroductionTokenRequest{NodeName: "n"}, nil)
		return err
	}
	self := func(c *api.Client) error {
		var out api.AgentSelf
		_, err := c.Raw().Query("/v1/agent/self", &out, nil)
		return err
	}
	members := func(c *api.Client) error { _, err := c.Agent().Members(); return err }
	nodes := func(c *api.Client) error { _, _, err := c.Nodes().List(nil); return err }
	tokenSelf := func(c *api.Client) error { _, _, err := c.ACLTokens().Self(nil); return err }
	leader := func(c *api.Client) error { _, err := c.Status().Leader(); return err }
	jwks := func(c *api.Client) error {
		var out any
		_, err := c.Raw().Query("/.well-known/jwks.json", &out, nil)
		return err
	}
	const wrong = "0d7c3b1e-5a4f-4e2d-8c6b-9f1a2e3d4c5b"
	for _, tc := range []struct {
		name     string
		token    string
		call     func(*api.Client) error
		wantCode int // 0: no error
		wantBody string
	}{
		{"intro token", nomadAPITestToken, intro, 0, ""},
		{"intro wrong token", wrong, intro, 403, "Permission denied"},
		{"intro no token", "", intro, 403, "Permission denied"},
		{"agent self", nomadAPITestToken, self, 0, ""},
		{"agent self wrong token", wrong, self, 403, "Permission denied"},
		{"members wrong token", wrong, members, 403, "Permission denied"},
		{"nodes", nomadAPITestToken, nodes, 0, ""},
		{"nodes no token", "", nodes, 403, "Permission denied"},
		{"token self", nomadAPITestToken, tokenSelf, 0, ""},
		{"token self wrong token", wrong, tokenSelf, 403, "ACL token not found"},
		{"leader needs no token", "", leader, 0, ""},
		{"JWKS needs no token", "", jwks, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.call(nomadAPIClient(t, s, tc.token))
			code, body := nomadAPIStatus(err)
			if tc.wantCode == 0 {
				if err != nil {
					t.Fatalf("err = %v, want none", err)
				}
				return
			}
			if code != tc.wantCode || body != tc.wantBody {
				t.Fatalf("err = %v, want status %d with body %q", err, tc.wantCode, tc.wantBody)
			}
		})
	}
}

func TestNomadAPIACLDisabled(t *testing.T) {
	t.Parallel()
	s := StartNomadAPI(t, NomadAPIOptions{})
	c := nomadAPIClient(t, s, "any-token")
	_, _, err := c.ACLTokens().Self(nil)
	if code, body := nomadAPIStatus(err); code != 400 || body != "ACL support disabled" {
		t.Errorf("token self without ACLs: err = %v, want 400 ACL support disabled", err)
	}
	if _, _, err := c.ACLIdentity().CreateClientIntroductionToken(&api.ACLIdentityClientIntroductionTokenRequest{}, nil); err != nil {
		t.Errorf("intro token without ACLs: %v", err)
	}
	if _, err := c.Agent().Members(); err != nil {
		t.Errorf("members without ACLs: %v", err)
	}
}

func TestNomadAPITokenSelf(t *testing.T) {
	t.Parallel()
	s := StartNomadAPI(t, NomadAPIOptions{ACLToken: nomadAPITestToken})
	tok, _, err := nomadAPIClient(t, s, nomadAPITestToken).ACLTokens().Self(nil)
	if err != nil {
		t.Fatal(err)
	}
	if tok.Type != "management" || tok.Name != "management" || tok.SecretID != "" || len(tok.AccessorID) != 36 {
		t.Errorf("token = %+v, want a management token with an accessor ID and no secret", tok)
	}
	req, _ := http.NewRequest(http.MethodGet, s.Addr+"/v1/acl/token/self", nil)
	req.Header.Set("X-Nomad-Token", nomadAPITestToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if strings.Contains(string(body), nomadAPITestToken) {
		t.Errorf("token self echoes the secret: %s", body)
	}
}

func TestNomadAPIAgent(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name                         string
		opts                         NomadAPIOptions
		version, enforcement, region string
	}{
		{"defaults", NomadAPIOptions{}, "1.11.3", "warn", "global"},
		{"set", NomadAPIOptions{Version: "1.11.0", Enforcement: "strict", Region: "eu1", ACLToken: nomadAPITestToken}, "1.11.0", "strict", "eu1"},
		{"none", NomadAPIOptions{Enforcement: "none"}, "1.11.3", "none", "global"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := StartNomadAPI(t, tc.opts)
			c := nomadAPIClient(t, s, tc.opts.ACLToken)
			self, err := c.Agent().Self()
			if err != nil {
				t.Fatal(err)
			}
			version, _ := self.Config["Version"].(map[string]any)
			server, _ := self.Config["Server"].(map[string]any)
			intro, _ := server["ClientIntroduction"].(map[string]any)
			if version["Version"] != tc.version || server["Enabled"] != true || intro["Enforcement"] != tc.enforcement ||
				self.Config["Region"] != tc.region {
				t.Errorf("agent self config = %v, want version %s, server enabled, enforcement %s, region %s",
					self.Config, tc.version, tc.enforcement, tc.region)
			}
			if self.Member.Tags["build"] != tc.version || self.Member.Name != "server-1."+tc.region {
				t.Errorf("agent self member = %+v, want build %s, name server-1.%s", self.Member, tc.version, tc.region)
			}
			members, err := c.Agent().Members()
			if err != nil {
				t.Fatal(err)
			}
			if members.ServerRegion != tc.region || len(members.Members) != 1 {
				t.Fatalf("members = %+v, want one server in region %s", members, tc.region)
			}
			m := members.Members[0]
			if m.Tags["build"] != tc.version || m.Tags["role"] != "nomad" || m.Tags["region"] != tc.region || m.Status != "alive" {
				t.Errorf("member = %+v, want an alive nomad server, build %s, region %s", m, tc.version, tc.region)
			}
		})
	}
}

func TestNomadAPISignIdentity(t *testing.T) {
	t.Parallel()
	s := StartNomadAPI(t, NomadAPIOptions{})
	other := StartNomadAPI(t, NomadAPIOptions{})
	now := time.Now().Unix()
	in := map[string]any{
		"aud": []string{"vault.io"}, "sub": "global:default:ci:worker:concourse:vault_default",
		"nomad_job_id": "concourse-worker", "nomad_namespace": "default", "nomad_task": "worker",
		"iat": now, "exp": now + 3600,
	}
	jwt := s.SignIdentity(in)
	jwks := fetchJWKS(t, s.JWKSURL())
	header, claims, err := verifyJWT(jwks, jwt)
	if err != nil {
		t.Fatalf("identity does not verify against the JWKS: %v", err)
	}
	if header["typ"] != "JWT" || header["kid"] == "" {
		t.Errorf("header = %v, want typ JWT and a kid", header)
	}
	var want map[string]any // in, as JSON gives it back
	if err := json.Unmarshal(mustJSON(t, in), &want); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(claims, want) {
		t.Errorf("claims = %v, want exactly %v", claims, want)
	}
	parts := strings.Split(jwt, ".")
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString(mustJSON(t, map[string]any{"nomad_job_id": "other"})) + "." + parts[2]
	if _, _, err := verifyJWT(jwks, tampered); err == nil {
		t.Error("a JWT with changed claims verifies")
	}
	if _, _, err := verifyJWT(fetchJWKS(t, other.JWKSURL()), jwt); err == nil {
		t.Error("a JWT verifies against another server's JWKS")
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestNomadAPIHTTP(t *testing.T) {
	t.Parallel()
	s := StartNomadAPI(t, NomadAPIOptions{ACLToken: nomadAPITestToken})
	const intro = "/v1/acl/identity/client-introduction-token"
	bearer := http.Header{"Authorization": {"Bearer " + nomadAPITestToken}}
	for _, tc := range []struct {
		name         string
		method, path string
		header       http.Header
		body         string
		wantCode     int
		wantBody     string // substring
		wantIndex    string // X-Nomad-Index
	}{
		{"unknown path", "GET", "/v1/nope", bearer, "", 404, "Invalid URL path", ""},
		{"unknown agent path", "GET", "/v1/agent/selfish", bearer, "", 404, "Invalid URL path", ""},
		{"wrong method", "DELETE", "/v1/agent/self", bearer, "", 405, "Invalid method", ""},
		{"GET intro", "GET", intro, bearer, "", 405, "Invalid method", ""},
		{"leader", "GET", "/v1/status/leader", nil, "", 200, `"127.0.0.1:4647"`, ""},
		{"nodes", "GET", "/v1/nodes", bearer, "", 200, "[]", "1"},
		{"basic auth is no token", "GET", "/v1/nodes", http.Header{"Authorization": {"Basic " + nomadAPITestToken}}, "", 403, "Permission denied", ""},
		{"JWKS", "GET", "/.well-known/jwks.json", nil, "", 200, `"alg":"RS256"`, "1"},
		{"intro POST, TTL as docs write it", "POST", intro, bearer, `{"NodeName":"n","NodePool":"p","TTL":"15m"}`, 200, `"JWT":"ey`, ""},
		{"intro empty body", "POST", intro, bearer, "", 400, "Request body is empty", ""},
		{"intro bad TTL", "PUT", intro, bearer, `{"TTL":"soon"}`, 400, "invalid duration", ""},
		{"intro not JSON", "PUT", intro, bearer, `NodeName=n`, 400, "invalid character", ""},
		{"intro body over 1 MiB", "PUT", intro, bearer, `{"NodeName":"` + strings.Repeat("n", 1<<20) + `"}`, 400, "request body too large", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			req, err := http.NewRequest(tc.method, s.Addr+tc.path, strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tc.header {
				req.Header[k] = v
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.wantCode || !strings.Contains(string(body), tc.wantBody) {
				t.Errorf("%s %s = %d %.200q, want %d containing %q", tc.method, tc.path, resp.StatusCode, body, tc.wantCode, tc.wantBody)
			}
			if got := resp.Header.Get("X-Nomad-Index"); got != tc.wantIndex {
				t.Errorf("X-Nomad-Index = %q, want %q", got, tc.wantIndex)
			}
		})
	}
}

func TestNomadAPIRecords(t *testing.T) {
	t.Parallel()
	s := StartNomadAPI(t, NomadAPIOptions{})
	for _, r := range []struct{ method, path, body string }{
		{"GET", "/v1/status/leader?stale=true", ""},
		{"POST", "/v1/acl/identity/client-introduction-token", `{"NodeName":"a","TTL":"15m"}`},
		{"GET", "/v1/nope", ""},
		{"PUT", "/v1/acl/identity/client-introduction-token", `{"NodeName":"b","NodePool":"ci","TTL":60000000000}`},
	} {
		req, _ := http.NewRequest(r.method, s.Addr+r.path, strings.NewReader(r.body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	wantReqs := []string{
		"GET /v1/status/leader", "POST /v1/acl/identity/client-introduction-token",
		"GET /v1/nope", "PUT /v1/acl/identity/client-introduction-token",
	}
	if got := s.Requests(); !slices.Equal(got, wantReqs) {
		t.Errorf("Requests() = %q, want %q", got, wantReqs)
	}
	wantIntros := []api.ACLIdentityClientIntroductionTokenRequest{
		{NodeName: "a", TTL: 15 * time.Minute},
		{NodeName: "b", NodePool: "ci", TTL: time.Minute},
	}
	got := s.IntroRequests()
	if !reflect.DeepEqual(got, wantIntros) {
		t.Errorf("IntroRequests() = %+v, want %+v", got, wantIntros)
	}
	got[0].NodeName = "changed"
	if s.IntroRequests()[0].NodeName != "a" {
		t.Error("IntroRequests() returns the server's own slice, not a copy")
	}
}
