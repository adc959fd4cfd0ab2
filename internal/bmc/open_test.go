package bmc

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/stmcginnis/gofish/schemas"
)

func TestParseTarget(t *testing.T) {
	cases := []struct {
		in   string
		want Target
		err  string // a part of the error; "" for none
	}{
		{"ipmi://10.0.9.11", Target{Scheme: "ipmi", Host: "10.0.9.11", Port: 623}, ""},
		{"ipmi://10.0.9.11:6230", Target{Scheme: "ipmi", Host: "10.0.9.11", Port: 6230}, ""},
		{"IPMI://bmc-n7.lab", Target{Scheme: "ipmi", Host: "bmc-n7.lab", Port: 623}, ""},
		{"ipmi://[fd00::11]", Target{Scheme: "ipmi", Host: "fd00::11", Port: 623}, ""},
		{"redfish://10.0.9.11", Target{Scheme: "redfish", Host: "10.0.9.11", Port: 443}, ""},
		{"redfish://10.0.9.11:8443/", Target{Scheme: "redfish", Host: "10.0.9.11", Port: 8443}, ""},
		{"redfish://10.0.9.11/redfish/v1/Systems/System.Embedded.1", Target{Scheme: "redfish", Host: "10.0.9.11", Port: 443, SystemPath: "/redfish/v1/Systems/System.Embedded.1"}, ""},
		{"redfish+http://10.0.9.11", Target{Scheme: "redfish+http", Host: "10.0.9.11", Port: 80}, ""},
		{"redfish://admin:hunter2@10.0.9.11", Target{}, "carries credentials"},
		{"ipmi://admin@10.0.9.11", Target{}, "carries credentials"},
		{"http://10.0.9.11", Target{}, "is not ipmi, redfish or redfish+http"},
		{"ipmi://", Target{}, "no host"},
		{"ipmi:10.0.9.11", Target{}, "no host"},
		{"ipmi://10.0.9.11:0", Target{}, "port"},
		{"ipmi://10.0.9.11:99999", Target{}, "port"},
		{"ipmi://10.0.9.11/x", Target{}, "no path"},
		{"redfish://10.0.9.11/redfish/v1/Systems/", Target{}, "the path must be"},
		{"redfish://10.0.9.11/redfish/v1/Systems/a/b", Target{}, "the path must be"},
		{"redfish://10.0.9.11/redfish/v1/Managers/1", Target{}, "the path must be"},
		{"redfish://10.0.9.11/?x=1", Target{}, "no query"},
		{"redfish://10.0.9.11/#f", Target{}, "no query"},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			u, err := url.Parse(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParseTarget(u)
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("error %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("error %v, want one saying %q", err, tc.err)
			case got != tc.want:
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
			if err != nil && strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error shows the password: %v", err)
			}
		})
	}
	if _, err := Open(context.Background(), nil, Credentials{}, Options{}); err == nil {
		t.Error("Open(nil URL) succeeded")
	}
}

// FuzzParseTarget: whatever -bmc gets, parsing neither panics nor echoes
// a password, and what it accepts names itself back as the same target.
func FuzzParseTarget(f *testing.F) {
	for _, s := range []string{"ipmi://10.0.9.11", "redfish://h:8443/redfish/v1/Systems/1", "redfish+http://[::1]:80/", "redfish://u:pw@h", "ipmi:x", "redfish://h/redfish/v1/Systems/%2e%2e"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := url.Parse(s)
		if err != nil {
			return
		}
		tg, err := ParseTarget(u)
		if err != nil {
			if p, ok := u.User.Password(); ok && len(p) > 3 && strings.Contains(err.Error(), p) {
				t.Fatalf("error %q shows the password", err)
			}
			return
		}
		if tg.Port < 1 || tg.Port > 65535 || tg.Host == "" {
			t.Fatalf("accepted %q as %+v", s, tg)
		}
		if tg.SystemPath != "" && (!strings.HasPrefix(tg.SystemPath, systemsPrefix) || strings.Count(tg.SystemPath, "/") != 4) {
			t.Fatalf("accepted system path %q", tg.SystemPath)
		}
		again, err := url.Parse(tg.Name() + tg.SystemPath)
		if err != nil {
			t.Fatalf("name %q does not parse: %v", tg.Name(), err)
		}
		if back, err := ParseTarget(again); err != nil || back != tg {
			t.Fatalf("%q parsed to %+v, its name %q to %+v, %v", s, tg, tg.Name(), back, err)
		}
	})
}

func TestResetType(t *testing.T) {
	mockup := []schemas.ResetType{"On", "ForceOff", "GracefulShutdown", "GracefulRestart", "ForceRestart", "Nmi", "ForceOn", "PushPowerButton"}
	cases := []struct {
		a       Action
		was     State
		allowed []schemas.ResetType
		want    schemas.ResetType
	}{
		{PowerOn, Off, mockup, "On"},
		{PowerOff, On, mockup, "ForceOff"},
		{PowerCycle, On, mockup, "ForceRestart"},
		{PowerCycle, Off, mockup, "On"},
		{PowerCycle, On, append(mockup, "PowerCycle"), "PowerCycle"},
		{PowerOn, Off, []schemas.ResetType{"ForceOn"}, "ForceOn"},
		{PowerOff, On, []schemas.ResetType{"GracefulShutdown"}, "GracefulShutdown"},
		{PowerOn, Off, nil, "On"}, // no AllowableValues: the first choice
		{PowerOn, Off, []schemas.ResetType{"Nmi"}, ""},
		{"reboot", On, mockup, ""},
	}
	for _, tc := range cases {
		got, err := resetType(tc.a, tc.was, tc.allowed)
		if got != tc.want || (tc.want == "") != (err != nil) {
			t.Errorf("resetType(%s, was %s, %v) = %q, %v; want %q", tc.a, tc.was, tc.allowed, got, err, tc.want)
		}
	}
}

// FuzzRedfishError: whatever error body a BMC sends, the words shown are
// bounded and parsing does not panic.
func FuzzRedfishError(f *testing.F) {
	f.Add(400, []byte(`{"error":{"code":"Base.1.16.GeneralError","message":"x","@Message.ExtendedInfo":[{"MessageId":"Base.1.16.PropertyNotWritable","Message":"The property Boot is a read only property."}]}}`))
	f.Add(500, []byte(`<html><body>Internal Server Error</body></html>`))
	f.Add(401, []byte(``))
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		err := schemas.ConstructError(status, body)
		var re *schemas.Error
		if !errors.As(err, &re) {
			t.Fatalf("ConstructError gave %T", err)
		}
		msg := redfishMessage(re)
		if msg == "" {
			t.Fatal("no words")
		}
		if len(re.ExtendedInfos) == 0 && len(msg) > 210 {
			t.Fatalf("message of %d bytes", len(msg))
		}
		_ = redfishError(Target{Scheme: "redfish", Host: "h", Port: 443}, Options{}, "op", err)
	})
}
