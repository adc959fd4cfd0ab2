package routerostest

import "fmt"

// trap is a failed command: RouterOS answers it with !trap (=category= when
// the router gives one, then =message=) followed by !done.
type trap struct {
	category string // "" when RouterOS sends no category
	message  string
}

func (t *trap) Error() string { return t.message }

// sentence renders the trap as reply words.
func (t *trap) sentence() []string {
	s := []string{"!trap"}
	if t.category != "" {
		s = append(s, "=category="+t.category)
	}
	return append(s, "=message="+t.message)
}

// Trap categories from the MikroTik API manual ("!trap", "category").
const (
	catMissing  = "0" // missing item or command
	catArgument = "1" // argument value failure
)

// The messages below are the words real routers were seen to send. Each
// says where it was seen; [I] marks an inference where no transcript exists.

// errNoSuchCommand is the first of the two traps for an unknown command or
// menu: the townet page of the MikroTik wiki manual shows
// "!trap =category=0 =message=no such command or directory (adress)" then
// "!trap =message=no such command prefix" then "!done" for /ip/adress/print.
func errNoSuchCommand(word string) *trap {
	return &trap{category: catMissing, message: "no such command or directory (" + word + ")"}
}

// errNoSuchCommandPrefix is the second trap of the same reply.
func errNoSuchCommandPrefix() *trap { return &trap{message: "no such command prefix"} }

// errLogin: RouterOS >= 6.43 (BenMenking/routeros-api#52 on 6.47.6,
// LaiArturs/RouterOS_API#9) answers a bad /login with this trap and !done,
// without a category, and keeps the connection open.
func errLogin() *trap { return &trap{message: "invalid user name or password (6)"} }

// errNotLoggedIn [I]: no transcript shows what RouterOS answers to a command
// before /login; the manual only says the router limits what may be sent
// before login. Test doubles in the wild use this text.
func errNotLoggedIn() *trap { return &trap{message: "not logged in"} }

// errUnknownParameter: mikrotik-java #15, #36, #39, #49 (RouterOS 6) show a
// bare "unknown parameter"; terraform-provider-routeros #679 (RouterOS 7.18,
// REST, whose detail is the API message) shows "unknown parameter
// src-address". [I] that 7.x names the parameter and 6.x does not. Read-only
// properties are not arguments of add/set, so they get this too [I].
func errUnknownParameter(ver version, name string) *trap {
	if ver.major >= 7 {
		return &trap{message: "unknown parameter " + name}
	}
	return &trap{message: "unknown parameter"}
}

// errNoSuchItem: "no such item (4)" is what clients match on for a remove or
// set of a missing .id (tik4net #13; the "remove_lease" and PHP radius
// clients quoted in the report). Category 0 ("missing item") [I]: the PHP
// client finds the message at word 2, after a category word.
func errNoSuchItem() *trap { return &trap{category: catMissing, message: "no such item (4)"} }

// errBadItemNumber: RouterOS's text for an id that is not *HEX (seen in
// scripts and API clients matching "invalid internal item number").
func errBadItemNumber() *trap { return &trap{message: "invalid internal item number"} }

// errNoMatch: the manual's own !trap example,
// /ip/address/add =address=192.168.88.1 =interface=asdf ->
// "!trap =category=1 =message=input does not match any value of interface".
func errNoMatch(prop string) *trap {
	return &trap{category: catArgument, message: "input does not match any value of " + prop}
}

// errNotInteger: "invalid value 99999 for authentication-port, an integer
// required" (PHP radius client, at word 2: after a category word, so 1).
func errNotInteger(prop, value string) *trap {
	return &trap{category: catArgument, message: fmt.Sprintf("invalid value %s for %s, an integer required", value, prop)}
}

// errInvalidValue: "invalid value for argument ipv6-address" (same PHP
// client) for values of the wrong shape: booleans, addresses [I for which
// properties use this form].
func errInvalidValue(prop string) *trap {
	return &trap{category: catArgument, message: "invalid value for argument " + prop}
}

// errMissing: "missing value(s) of argument(s) password" and "... value" are
// RouterOS's texts for a required argument left out (seen from scripts on
// 7.20-7.24); the API category, if any, is not known.
func errMissing(names string) *trap {
	return &trap{message: "missing value(s) of argument(s) " + names}
}

// Duplicate messages, per menu (see menus.go):
const (
	// reference routeros.md section 1, and community.routeros's unit fake.
	dupInterface = "failure: already have interface with such name"
	// Ansible playbooks against real routers match on it for /ip/address.
	dupAddress = "failure: already have such address"
	// a provisioning client's list of RouterOS's "already exists" texts.
	dupPool = "failure: pool with such name exists"
	// firewall address lists and the like; the generic form [I for the
	// menus that use it: dhcp-server, network, lease, relay, user, group].
	dupEntry = "failure: already have such entry"
	// reference routeros.md section 1 [I that /ip/dns/static uses it].
	dupExists = "entry already exists"
	// a RouterOS console transcript and a REST 400 detail.
	dupBridgePort = "failure: device already added as bridge port"
)

// errDynamicLease: reference routeros.md section 1.
func errDynamicLease() *trap { return &trap{message: "failure: can not change dynamic lease"} }

// errConfiguredElsewhere: terraform-provider-routeros #769 (RouterOS 7.19)
// when a set by name hits a dynamic connection row of /ip/service.
func errConfiguredElsewhere() *trap { return &trap{message: "failure: this is configured elsewhere"} }

// errDynamic [I]: other menus' refusal to change a dynamic row.
func errDynamic() *trap { return &trap{message: "failure: can not change dynamic entry"} }

// errBadQuery [I]: RouterOS's text for a malformed ?# word is not known.
func errBadQuery(word string) *trap {
	return &trap{message: "invalid query " + word}
}

// Reasons sent after !fatal, bare words as RouterOS sends them.
const (
	// the manual's "API command notes" page: >>> /quit  <<< !fatal
	// <<< session terminated on request.
	fatalQuit = "session terminated on request"
	// [I] the manual names these cases but not their texts.
	fatalProtocol      = "malformed sentence"
	fatalTooManyBefore = "too many commands before login"
)
