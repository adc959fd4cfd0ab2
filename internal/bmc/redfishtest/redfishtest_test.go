package redfishtest

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"net/http"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// client trusts the stand-in's certificate by pinning nothing: these tests
// check the stand-in, not TLS.
func client() *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
}

func do(t *testing.T, s *Server, method, path, token, body string) (*http.Response, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, s.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("X-Auth-Token", token)
	}
	resp, err := client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp, out
}

// messageID digs the first @Message.ExtendedInfo MessageId out of a
// Redfish error.
func messageID(body map[string]any) string {
	e, _ := body["error"].(map[string]any)
	infos, _ := e["@Message.ExtendedInfo"].([]any)
	if len(infos) == 0 {
		return ""
	}
	m, _ := infos[0].(map[string]any)
	id, _ := m["MessageId"].(string)
	return id
}

func TestStandIn(t *testing.T) {
	m := &MemMachine{}
	s := Start(t, Options{Machine: m})
	resp, root := do(t, s, "GET", "/redfish/v1/", "", "")
	if resp.StatusCode != 200 || resp.Header.Get("Server") != Label || root["Systems"] == nil {
		t.Fatalf("service root: %d %q %v", resp.StatusCode, resp.Header.Get("Server"), root)
	}
	system := s.SystemPath(0)
	cases := []struct {
		name, method, path, token, body string
		status                          int
		messageID                       string
	}{
		{"no session", "GET", system, "", "", 401, "Base.1.16.NoValidSession"},
		{"stale token", "GET", system, "nope", "", 401, "Base.1.16.NoValidSession"},
		{"bad password", "POST", "/redfish/v1/SessionService/Sessions", "", `{"UserName":"admin","Password":"x"}`, 401, "Base.1.16.NoValidSession"},
		{"malformed JSON", "POST", "/redfish/v1/SessionService/Sessions", "", `{`, 400, "Base.1.16.MalformedJSON"},
	}
	for _, tc := range cases {
		resp, body := do(t, s, tc.method, tc.path, tc.token, tc.body)
		if resp.StatusCode != tc.status || messageID(body) != tc.messageID {
			t.Errorf("%s: %d %s, want %d %s", tc.name, resp.StatusCode, messageID(body), tc.status, tc.messageID)
		}
	}

	resp, _ = do(t, s, "POST", "/redfish/v1/SessionService/Sessions", "", `{"UserName":"admin","Password":"password"}`)
	token, location := resp.Header.Get("X-Auth-Token"), resp.Header.Get("Location")
	if resp.StatusCode != 201 || token == "" || !strings.HasPrefix(location, "/redfish/v1/SessionService/Sessions/") {
		t.Fatalf("session: %d token %q location %q", resp.StatusCode, token, location)
	}
	reset := system + "/Actions/ComputerSystem.Reset"
	authed := []struct {
		name, method, path, body string
		status                   int
		messageID                string
	}{
		{"bad ResetType", "POST", reset, `{"ResetType":"Explode"}`, 400, "Base.1.16.ActionParameterValueNotInList"},
		{"no ResetType", "POST", reset, `{}`, 400, "Base.1.16.ActionParameterMissing"},
		{"GET the action", "GET", reset, "", 405, "Base.1.16.OperationNotAllowed"},
		{"read-only property", "PATCH", system, `{"PowerState":"On"}`, 400, "Base.1.16.PropertyNotWritable"},
		{"bad boot target", "PATCH", system, `{"Boot":{"BootSourceOverrideTarget":"Floppy"}}`, 400, "Base.1.16.PropertyValueNotInList"},
		{"unknown system", "GET", "/redfish/v1/Systems/nope", "", 404, "Base.1.16.ResourceMissingAtURI"},
		{"boot override", "PATCH", system, `{"Boot":{"BootSourceOverrideTarget":"Pxe","BootSourceOverrideEnabled":"Once","BootSourceOverrideMode":"Legacy"}}`, 200, ""},
		{"power on", "POST", reset, `{"ResetType":"On"}`, 204, ""},
		{"log out", "DELETE", location, "", 204, ""},
		{"logged out", "GET", system, "", 401, "Base.1.16.NoValidSession"},
	}
	for _, tc := range authed {
		resp, body := do(t, s, tc.method, tc.path, token, tc.body)
		if resp.StatusCode != tc.status || messageID(body) != tc.messageID {
			t.Errorf("%s: %d %s, want %d %s", tc.name, resp.StatusCode, messageID(body), tc.status, tc.messageID)
		}
	}
	if on, _ := m.PowerState(context.Background()); !on {
		t.Error("the machine is off after ResetType On")
	}
	if _, boots := s.Boot(0); len(boots) != 1 || boots[0] != (BootOverride{"Pxe", "Once", "Legacy"}) {
		t.Errorf("boots %+v, want one with Pxe Once Legacy", boots)
	}
	for _, r := range s.Requests() {
		if strings.Contains(r.Path, "Sessions") && r.Body != nil && r.Body["Password"] != "(not recorded)" {
			t.Errorf("the stand-in recorded a password: %v", r.Body)
		}
	}
}

// TestRedfishtool drives the stand-in with Debian's redfishtool: a client
// written from the specification by DMTF, not by us.
func TestRedfishtool(t *testing.T) {
	if _, err := exec.LookPath("redfishtool"); err != nil {
		t.Skip("redfishtool is not installed (Debian package redfishtool)")
	}
	m := &MemMachine{}
	s := Start(t, Options{Machine: m})
	u, _ := url.Parse(s.URL)
	for _, auth := range []string{"Session", "Basic"} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		out, err := exec.CommandContext(ctx, "redfishtool", "-r", u.Host, "-S", "Always", "-A", auth, "-u", "admin", "-p", "password",
			"Systems", "-1", "reset", "On").CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("redfishtool -A %s: %v\n%s", auth, err, out)
		}
		if on, _ := m.PowerState(context.Background()); !on {
			t.Fatalf("redfishtool -A %s: the machine is still off\n%s", auth, out)
		}
		_ = m.PowerOff(context.Background())
	}
	var sawSession, sawBasic bool
	for _, r := range s.Requests() {
		if strings.HasSuffix(r.Path, "ComputerSystem.Reset") {
			if r.Body["ResetType"] != "On" {
				t.Errorf("redfishtool sent %v", r.Body)
			}
			sawSession = sawSession || r.Auth == "session"
			sawBasic = sawBasic || r.Auth == "basic"
		}
	}
	if !sawSession || !sawBasic {
		t.Errorf("resets with a session %v, with basic auth %v; want both", sawSession, sawBasic)
	}
	if s.Sessions() != 0 {
		t.Errorf("redfishtool left %d sessions", s.Sessions())
	}
}
