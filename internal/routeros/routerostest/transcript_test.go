package routerostest

import "testing"

// Published transcripts replayed byte for byte. Where a source shows a
// router the test router cannot be (another menu, a legacy login), the
// request is adapted and the comment says how.
func TestTranscripts(t *testing.T) {
	tests := []struct {
		name    string
		version string
		setup   func(r *Router)
		login   bool
		script  string
	}{
		{
			name: "manual: initial login, 6.43 and later",
			script: `
				<--- /login
				<--- =name=admin
				<--- =password=secret
				<--- EOS
				---> !done
				---> EOS`,
		},
		{
			// BenMenking/routeros-api#52 (RouterOS 6.47.6): the trap has no
			// category and the connection stays usable.
			name: "failed login", version: "6.49",
			script: `
				<--- /login
				<--- =name=admin
				<--- =password=wrong
				<--- EOS
				---> !trap
				---> =message=invalid user name or password (6)
				---> EOS
				---> !done
				---> EOS
				<--- /login
				<--- =name=admin
				<--- =password=secret
				<--- EOS
				---> !done
				---> EOS`,
		},
		{
			name: "command before login",
			script: `
				<--- /ip/address/print
				<--- EOS
				---> !trap
				---> =message=not logged in
				---> EOS
				---> !done
				---> EOS`,
		},
		{
			// librouteros docs/api_analysis.rst "Adding element"; two
			// addresses exist already so the new one is *3 as there.
			name: "add returns ret", login: true,
			setup: func(r *Router) {
				r.Seed(pathAddress, map[string]string{"address": "10.0.0.1/24", "interface": "ether2"})
				r.Seed(pathAddress, map[string]string{"address": "10.0.1.1/24", "interface": "ether3"})
			},
			script: `
				<--- /ip/address/add
				<--- =address=192.168.1.1/24
				<--- =interface=ether1
				<--- EOS
				---> !done
				---> =ret=*3
				---> EOS`,
		},
		{
			name: "manual: !trap with category", login: true,
			script: `
				<--- /ip/address/add
				<--- =address=192.168.88.1
				<--- =interface=asdf
				<--- EOS
				---> !trap
				---> =category=1
				---> =message=input does not match any value of interface
				---> EOS
				---> !done
				---> EOS`,
		},
		{
			// The wiki manual's townet page: a misspelt menu.
			name: "unknown command", login: true,
			script: `
				<--- /ip/adress/print
				<--- EOS
				---> !trap
				---> =category=0
				---> =message=no such command or directory (adress)
				---> EOS
				---> !trap
				---> =message=no such command prefix
				---> EOS
				---> !done
				---> EOS`,
		},
		{
			// The manual's "Queries" example, with a .proplist so the reply
			// is short: all ethernet and VLAN interfaces.
			name: "manual: ?type=ether ?type=vlan ?#|", login: true,
			setup: func(r *Router) {
				r.Seed(pathBridge, map[string]string{"name": "bridge"})
				r.Seed(pathVLAN, map[string]string{"name": "prov", "vlan-id": "40", "interface": "bridge"})
			},
			script: `
				<--- /interface/print
				<--- =.proplist=.id,name,type
				<--- ?type=ether
				<--- ?type=vlan
				<--- ?#|
				<--- EOS
				---> !re
				---> =.id=*1
				---> =name=ether1
				---> =type=ether
				---> EOS
				---> !re
				---> =.id=*2
				---> =name=ether2
				---> =type=ether
				---> EOS
				---> !re
				---> =.id=*3
				---> =name=ether3
				---> =type=ether
				---> EOS
				---> !re
				---> =.id=*4
				---> =name=ether4
				---> =type=ether
				---> EOS
				---> !re
				---> =.id=*5
				---> =name=ether5
				---> =type=ether
				---> EOS
				---> !re
				---> =.id=*7
				---> =name=prov
				---> =type=vlan
				---> EOS
				---> !done
				---> EOS`,
		},
		{
			// The manual's "Query word" example negates the same query.
			name: "manual: ?#|!", login: true,
			setup: func(r *Router) {
				r.Seed(pathBridge, map[string]string{"name": "bridge"})
				r.Seed(pathVLAN, map[string]string{"name": "prov", "vlan-id": "40", "interface": "bridge"})
			},
			script: `
				<--- /interface/print
				<--- ?type=ether
				<--- ?type=vlan
				<--- ?#|!
				<--- =.proplist=name
				<--- EOS
				---> !re
				---> =name=bridge
				---> EOS
				---> !done
				---> EOS`,
		},
		{
			// The manual's "?>comment=" (non-empty comment) on /ip/route,
			// here on /ip/address.
			name: "manual: ?>comment=", login: true,
			setup: func(r *Router) {
				r.Seed(pathAddress, map[string]string{"address": "10.0.0.1/24", "interface": "ether2"})
				r.Seed(pathAddress, map[string]string{"address": "10.0.1.1/24", "interface": "ether3", "comment": "bootstrapd"})
			},
			script: `
				<--- /ip/address/print
				<--- ?>comment=
				<--- =.proplist=.id,address,comment
				<--- EOS
				---> !re
				---> =.id=*2
				---> =address=10.0.1.1/24
				---> =comment=bootstrapd
				---> EOS
				---> !done
				---> EOS`,
		},
		{
			// The forum's "/ppp/secret/print ?name=smith =.proplist=.id",
			// on /user.
			name: "print .id by name", login: true,
			script: `
				<--- /user/print
				<--- ?name=admin
				<--- =.proplist=.id
				<--- EOS
				---> !re
				---> =.id=*1
				---> EOS
				---> !done
				---> EOS`,
		},
		{
			// librouteros "Multiple empty responses": a .proplist naming a
			// property no row has gives attribute-less !re sentences (that
			// router had seven services; 6.49 has eight).
			name: "attribute-less !re", version: "6.49", login: true,
			script: `
				<--- /ip/service/print
				<--- =.proplist=comment
				<--- EOS
				---> !re
				---> EOS
				---> !re
				---> EOS
				---> !re
				---> EOS
				---> !re
				---> EOS
				---> !re
				---> EOS
				---> !re
				---> EOS
				---> !re
				---> EOS
				---> !re
				---> EOS
				---> !done
				---> EOS`,
		},
		{
			// An empty print is !empty then !done from 7.18
			// (mikrotik-java #89), each tagged.
			name: "!empty on 7.19, tagged", version: "7.19", login: true,
			script: `
				<--- /ip/pool/print
				<--- .tag=7
				<--- EOS
				---> !empty
				---> .tag=7
				---> EOS
				---> !done
				---> .tag=7
				---> EOS`,
		},
		{
			name: "no !empty before 7.18", version: "7.17", login: true,
			script: `
				<--- /ip/pool/print
				<--- EOS
				---> !done
				---> EOS`,
		},
		{
			name: "tags on a trap", login: true,
			script: `
				<--- /ip/pool/remove
				<--- =.id=*99
				<--- .tag=a1
				<--- EOS
				---> !trap
				---> .tag=a1
				---> =category=0
				---> =message=no such item (4)
				---> EOS
				---> !done
				---> .tag=a1
				---> EOS`,
		},
		{
			name: "count-only", login: true,
			script: `
				<--- /interface/print
				<--- =count-only=
				<--- ?type=ether
				<--- EOS
				---> !done
				---> =ret=5
				---> EOS`,
		},
		{
			// The manual's "API command notes": /quit -> !fatal and a bare
			// reason, then the router hangs up.
			name: "manual: /quit", login: true,
			script: `
				<--- /quit
				<--- EOS
				---> !fatal
				---> session terminated on request
				---> EOS
				---> CLOSED`,
		},
		{
			// The manual: a first byte >= 0xF8 is a reserved control byte.
			name: "control byte is fatal", login: true,
			script: `
				<--- RAW f8
				---> !fatal
				---> malformed sentence
				---> EOS
				---> CLOSED`,
		},
		{
			// An empty sentence is ignored (the manual), so the print that
			// follows is the only reply.
			name: "empty sentence ignored", login: true,
			script: `
				<--- RAW 00
				<--- /system/identity/print
				<--- EOS
				---> !re
				---> =name=MikroTik
				---> EOS
				---> !done
				---> EOS`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := New(Options{Version: tt.version, Password: "secret"})
			if tt.setup != nil {
				tt.setup(r)
			}
			rc := dialRaw(t, r.Listen(t))
			if tt.login {
				rc.play(loginTranscript)
			}
			rc.play(tt.script)
		})
	}
}
