package routeros

import (
	"fmt"
	"net/netip"
	"strings"
)

// CertificateName is the certificate the bootstrap script makes for
// api-ssl, in the router's /certificate.
const CertificateName = "bootstrapd-api"

// ScriptParams is what the bootstrap script needs.
type ScriptParams struct {
	Bootstrap Bootstrap
	Marker    string
	// User and Password are the dedicated API account bootstrapd logs in
	// with; its group may use the API and read and write config, nothing
	// else (no ssh, winbox, web, ftp, password changes or reboot).
	User, Password string
	// AllowFrom are the addresses the account and the API service accept:
	// the operator's, and bootstrapd's own on the provisioning network.
	AllowFrom []netip.Addr
	// TLS makes a self-signed certificate and serves api-ssl with it (pin
	// its fingerprint in the site); otherwise plain api, for a cable whose
	// both ends the operator can see.
	TLS bool
}

// BootstrapScript is a RouterOS script for netinstall (`netinstall-cli -s`)
// or a fresh router's terminal: just enough for bootstrapd to log in over
// the API. `router apply` removes its address and VLAN once bootstrapd
// reaches the router through the provisioning network instead.
func BootstrapScript(p ScriptParams) string {
	var b strings.Builder
	line := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	comment := p.Marker + " bootstrap"
	allow := make([]string, len(p.AllowFrom))
	for i, a := range p.AllowFrom {
		allow[i] = netip.PrefixFrom(a, a.BitLen()).String()
	}
	allowed := strings.Join(allow, ",")

	line("# bootstrapd: bootstrap script (bootstrapd router bootstrap-script).")
	line("# It holds the password of the API user %s: keep the file private, delete it once applied.", p.User)
	line("# netinstall runs it before the interfaces exist; wait for them (at most 60 s).")
	line(":local i 0")
	line(":while ([:len [/interface ethernet find]] = 0 && $i < 60) do={ :delay 1s; :set i ($i + 1) }")
	for _, o := range p.Bootstrap.objects() {
		line("%s add %s comment=%s", strings.ReplaceAll(o.Path, "/", " ")[1:], props(o.Props), quote(comment))
	}
	line("/user group add name=%s policy=api,read,write,test,!local,!telnet,!ssh,!ftp,!winbox,!web,!password,!reboot,!sniff,!romon comment=%s",
		quote(p.User), quote(p.Marker))
	line("/user add name=%s group=%s password=%s address=%s comment=%s",
		quote(p.User), quote(p.User), quote(p.Password), allowed, quote(p.Marker))
	service := "api"
	if p.TLS {
		service = "api-ssl"
		sans := "IP:" + p.Bootstrap.Address.Addr().String()
		line("/certificate add name=%s common-name=%s subject-alt-name=%s key-size=2048 days-valid=3650",
			CertificateName, p.Bootstrap.Address.Addr(), sans)
		line("/certificate sign %s", CertificateName)
		// The signed certificate has a fingerprint (the SHA-256 of its DER
		// bytes, in hex: what bootstrapd pins); wait for it, since
		// generating the key can take a while on a small router [I].
		line(":local fp \"\"")
		line(":local j 0")
		line(":while ([:len $fp] = 0 && $j < 60) do={ :do { :set fp [/certificate get %s fingerprint] } on-error={}; :if ([:len $fp] = 0) do={ :delay 1s; :set j ($j + 1) } }", CertificateName)
		line("/ip service set api-ssl certificate=%s", CertificateName)
		line("/ip service set api disabled=yes")
	}
	// 7.24 renamed the service's address to available-from.
	line(":do { /ip service set %s disabled=no available-from=%s } on-error={ /ip service set %s disabled=no address=%s }",
		service, allowed, service, allowed)
	if p.TLS {
		// Printed for the terminal and logged for netinstall, where nobody
		// sees the output: the operator compares it with what `bootstrapd
		// router fingerprint` reads over the network before pinning it.
		line("# Compare this with `bootstrapd router fingerprint -addr %s`; `/certificate print detail where name=%s` shows it again.",
			netip.AddrPortFrom(p.Bootstrap.Address.Addr(), 8729), CertificateName)
		line(":put (\"bootstrapd: api-ssl certificate fingerprint \" . $fp)")
		line(":log info (\"bootstrapd: api-ssl certificate fingerprint \" . $fp)")
	}
	return b.String()
}

// props renders an object's properties as name=value words, keys sorted.
func props(m map[string]string) string {
	words := make([]string, 0, len(m))
	for _, k := range sortedKeys(m) {
		words = append(words, k+"="+quote(m[k]))
	}
	return strings.Join(words, " ")
}

// quote makes a RouterOS script string: inside double quotes, `"`, `\` and
// `$` (variable substitution) are escaped, and control bytes become \HH,
// so no value can end the string or the line.
func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\' || c == '$' || c == '?':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20 || c == 0x7f:
			fmt.Fprintf(&b, "\\%02X", c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}
