// Package routerostest is a test router: a TCP (and TLS) server that speaks the
// RouterOS API wire protocol and behaves like a RouterOS 6 or 7 device closely
// enough that a client cannot tell it from one in the ways bootstrapd cares
// about: length-prefixed words, the >= 6.43 login, print with .proplist and ?
// queries (including the ?# stack operations), add/set/unset/remove on a menu
// of typed, versioned properties, !trap with RouterOS's messages and
// categories, !empty on 7.18+, and !fatal on /quit and protocol violations.
//
// It exists because no RouterOS can run on a plain Linux box. errors.go names,
// next to each message, the transcript or client it was taken from; where no
// source shows what a router sends, the comment marks the text as inferred.
//
// Tests drive it through hooks that a real router lacks: Seed and Rows to set
// up and inspect state, Commands to count what a client sent, FailNext to make
// one command fail mid-apply, Hang/Resume to test deadlines, RawNext to answer
// with bytes no RouterOS sends (a 4 GiB length, a trickle), and Reboot and
// Upgrade to end every session under a client, the latter into another
// release. Like RouterOS, it closes connections from outside a service's
// address list (available-from on 7.24).
package routerostest
