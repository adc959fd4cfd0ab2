package routerostest

import (
	"strings"
	"testing"
)

// TestTerminal: console lines run as the API commands of the same name,
// with the console's quoting; `:do { } on-error={ }` falls back; scripting
// and /certificate are skipped and returned; the first refused command
// stops the script at its line.
func TestTerminal(t *testing.T) {
	cases := []struct {
		name, script string
		skipped      int
		err          string
		check        func(r *Router) string
	}{
		{
			name: "quoting",
			script: "# a comment\n/user group add name=\"ops\" policy=api,read\n" +
				"/user add name=\"op\\\"s\" group=ops password=\"a\\\\b \\$x\\0Ay\\_z\" comment=\"two words\"\n",
			check: func(r *Router) string {
				for _, u := range r.Rows("/user") {
					if u["name"] == `op"s` {
						if u["password"] != "a\\b $x\ny z" || u["comment"] != "two words" {
							return "user " + strings.Join([]string{u["password"], u["comment"]}, "|")
						}
						return ""
					}
				}
				return "no user"
			},
		},
		{
			name:   "from the root menu, and on-error",
			script: "interface vlan add name=v interface=ether1 vlan-id=7\n:do { /ip service set telnet available-from=10.0.0.0/8 } on-error={ /ip service set telnet address=10.0.0.0/8 disabled=yes }\n",
			check: func(r *Router) string {
				for _, s := range r.Rows("/ip/service") {
					if s["name"] == "telnet" && (s["address"] != "10.0.0.0/8" || s["disabled"] != "true") {
						return "telnet " + s["address"]
					}
				}
				if len(r.Rows("/interface/vlan")) != 1 {
					return "no vlan"
				}
				return ""
			},
		},
		{name: "skipped", script: ":local i 0\n:put \"x\"\n/certificate add name=c common-name=x\n", skipped: 3},
		{name: "refused", script: "/user add name=x group=nosuch\n/user add name=y group=full\n", err: "line 1: user add: input does not match"},
		{name: "unknown", script: "/ip frobnicate x=1\n", err: "no such command"},
		{name: "unterminated", script: "/user add name=\"x\n", err: "never ends"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := New(Options{Version: "7.19"})
			skipped, err := r.Terminal(c.script)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want %q", err, c.err)
				}
				return
			}
			if err != nil || len(skipped) != c.skipped {
				t.Fatalf("skipped %q, err %v", skipped, err)
			}
			if c.check != nil {
				if msg := c.check(r); msg != "" {
					t.Error(msg)
				}
			}
		})
	}
}
