package cluster

import (
	"maps"
	"slices"
	"strings"
	"testing"

	hcl1 "github.com/hashicorp/hcl"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// hostile are values a label or hostname could carry to break out of a
// quoted string or be interpolated by one HCL version or the other.
var hostile = []string{
	`plain`,
	`quote " and } brace`,
	"newline\nevil = true\n# ",
	`backslash \" \\ \n`,
	`${file("/etc/shadow")}`,
	`$${already escaped}`,
	`%{ if true }directive%{ endif }`,
	`${ "unterminated`,
	`}" evil = "x`,
	"\x00nul \x07bell \x1b[31m\x7fdel",
	"\u2028line sep \u00e9 \U0001F600 \uFEFF",
	`$`, `${`, `%`, `%{`, `\`, `"`, "",
}

func TestClientConfigRoundTrip(t *testing.T) {
	meta := map[string]string{"rack": "r1"}
	for i, v := range hostile {
		meta["k"+string(rune('a'+i))] = v
	}
	p := ClientParams{
		Name: "n7", Region: "lab", Datacenter: `dc"1`, NodePool: "${pool}", NodeClass: hostile[2],
		Servers: []string{"10.0.0.1:4647", `10.0.0.2:4647", "6.6.6.6:4647`}, RetryJoin: []string{"provider=mdns service=${x}"},
		Meta: meta, Worker: true, ACL: true,
		TLSCAFile: "/etc/nomad.d/ca.pem", TLSCertFile: "/etc/nomad.d/c.pem", TLSKeyFile: "/etc/nomad.d/%{k}.pem",
		VaultAddr: "https://vault:8200", VaultIntegration: VaultWorkloadIdentity, VaultCAFile: "/etc/vault ca.pem", RawExec: true,
	}
	out, err := ClientConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	wantMeta := maps.Clone(meta)
	wantMeta[WorkerMetaKey] = "true"

	// HCL 2 (hclsyntax): the syntax every HashiCorp parser shares today.
	f, diags := hclsyntax.ParseConfig(out, "client.hcl", hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatalf("hclsyntax: %v\n%s", diags, out)
	}
	body := f.Body.(*hclsyntax.Body)
	top := attrs(t, body, "name", "region", "datacenter", "data_dir")
	if top["name"] != "n7" || top["datacenter"] != p.Datacenter || top["data_dir"] != DefaultDataDir || top["region"] != "lab" {
		t.Errorf("top-level attributes %q", top)
	}
	blocks := map[string]*hclsyntax.Body{}
	for _, b := range body.Blocks {
		blocks[strings.Join(append([]string{b.Type}, b.Labels...), " ")] = b.Body
	}
	if got := slices.Sorted(maps.Keys(blocks)); !slices.Equal(got, []string{"acl", "client", "plugin raw_exec", "tls", "vault"}) {
		t.Fatalf("blocks %q", got)
	}
	client := blocks["client"]
	ca := attrs(t, client, "enabled", "node_pool", "node_class", "servers", "meta", "options")
	if ca["node_pool"] != p.NodePool || ca["node_class"] != p.NodeClass || ca["enabled"] != "true" {
		t.Errorf("client attributes %q", ca)
	}
	if got := stringList(t, client.Attributes["servers"]); !slices.Equal(got, p.Servers) {
		t.Errorf("servers %q, want %q", got, p.Servers)
	}
	if got := stringMap(t, client.Attributes["meta"]); !maps.Equal(got, wantMeta) {
		t.Errorf("meta round trip:\n got %q\nwant %q", got, wantMeta)
	}
	if got := stringMap(t, client.Attributes["options"]); got["fingerprint.denylist"] != cloudFingerprinters || len(got) != 1 {
		t.Errorf("options %q", got)
	}
	if len(client.Blocks) != 1 || client.Blocks[0].Type != "server_join" {
		t.Fatalf("client blocks: %d", len(client.Blocks))
	}
	if got := stringList(t, client.Blocks[0].Body.Attributes["retry_join"]); !slices.Equal(got, p.RetryJoin) {
		t.Errorf("retry_join %q", got)
	}
	if va := attrs(t, blocks["vault"], "enabled", "address", "jwt_auth_backend_path", "ca_file"); va["jwt_auth_backend_path"] != DefaultVaultJWTPath || va["ca_file"] != p.VaultCAFile {
		t.Errorf("vault %q", va)
	}
	// The token integration: the servers derive task tokens, and Nomad
	// before 1.7 knows no jwt_auth_backend_path.
	tp := p
	tp.VaultIntegration = VaultToken
	tokenOut, err := ClientConfig(tp)
	if err != nil {
		t.Fatal(err)
	}
	tf, diags := hclsyntax.ParseConfig(tokenOut, "client.hcl", hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	for _, b := range tf.Body.(*hclsyntax.Body).Blocks {
		if b.Type == "vault" {
			if va := attrs(t, b.Body, "enabled", "address", "ca_file"); va["enabled"] != "true" || va["address"] != p.VaultAddr {
				t.Errorf("vault block for the token integration %q", va)
			}
		}
	}
	if ta := attrs(t, blocks["tls"], "http", "rpc", "ca_file", "cert_file", "key_file", "verify_server_hostname"); ta["key_file"] != p.TLSKeyFile {
		t.Errorf("tls %q", ta)
	}

	// HCL 1: what the Nomad agent itself reads its configuration with.
	var v1 struct {
		Name       string `hcl:"name"`
		Datacenter string `hcl:"datacenter"`
		Client     struct {
			NodePool  string            `hcl:"node_pool"`
			NodeClass string            `hcl:"node_class"`
			Servers   []string          `hcl:"servers"`
			Meta      map[string]string `hcl:"meta"`
			Options   map[string]string `hcl:"options"`
		} `hcl:"client"`
		TLS struct {
			KeyFile string `hcl:"key_file"`
		} `hcl:"tls"`
		Vault struct {
			CAFile string `hcl:"ca_file"`
		} `hcl:"vault"`
	}
	if err := hcl1.Decode(&v1, string(out)); err != nil {
		t.Fatalf("hcl v1: %v\n%s", err, out)
	}
	if v1.Name != "n7" || v1.Datacenter != p.Datacenter || v1.Client.NodePool != p.NodePool || v1.Client.NodeClass != p.NodeClass ||
		!slices.Equal(v1.Client.Servers, p.Servers) || v1.TLS.KeyFile != p.TLSKeyFile || v1.Vault.CAFile != p.VaultCAFile {
		t.Errorf("hcl v1 read back %+v", v1)
	}
	if !maps.Equal(v1.Client.Meta, wantMeta) {
		t.Errorf("hcl v1 meta round trip:\n got %q\nwant %q", v1.Client.Meta, wantMeta)
	}
}

// attrs evaluates a body's attributes, failing on any not in allowed: an
// injected attribute would show up here.
func attrs(t *testing.T, b *hclsyntax.Body, allowed ...string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for name, a := range b.Attributes {
		if !slices.Contains(allowed, name) {
			t.Errorf("unexpected attribute %q", name)
			continue
		}
		v, diags := a.Expr.Value(nil)
		if diags.HasErrors() {
			t.Fatalf("%s: %v", name, diags)
		}
		switch {
		case v.Type() == cty.String:
			out[name] = v.AsString()
		case v.Type() == cty.Bool:
			out[name] = map[bool]string{true: "true", false: "false"}[v.True()]
		default:
			out[name] = "<" + v.Type().FriendlyName() + ">"
		}
	}
	return out
}

func stringList(t *testing.T, a *hclsyntax.Attribute) []string {
	t.Helper()
	v, diags := a.Expr.Value(nil)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	var out []string
	for _, e := range v.AsValueSlice() {
		out = append(out, e.AsString())
	}
	return out
}

func stringMap(t *testing.T, a *hclsyntax.Attribute) map[string]string {
	t.Helper()
	v, diags := a.Expr.Value(nil)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	out := map[string]string{}
	for k, e := range v.AsValueMap() {
		out[k] = e.AsString()
	}
	return out
}

func TestClientConfigMinimal(t *testing.T) {
	out, err := ClientConfig(ClientParams{Name: "n1", Servers: []string{"10.0.0.1:4647"}})
	if err != nil {
		t.Fatal(err)
	}
	s := string(out)
	for _, absent := range []string{"meta", "acl", "tls", "vault", "raw_exec", "node_pool", "region"} {
		if strings.Contains(s, absent) {
			t.Errorf("minimal config mentions %s:\n%s", absent, s)
		}
	}
	if !strings.Contains(s, `"fingerprint.denylist" = "env_aws,env_gce,env_azure,env_digitalocean"`) {
		t.Errorf("cloud fingerprinters not denied:\n%s", s)
	}
}

func TestClientConfigRefuses(t *testing.T) {
	ok := ClientParams{Name: "n1", Servers: []string{"10.0.0.1:4647"}}
	tests := []struct {
		name string
		edit func(*ClientParams)
		want string
	}{
		{"no name", func(p *ClientParams) { p.Name = "" }, "node name is empty"},
		{"no servers", func(p *ClientParams) { p.Servers = nil }, "no servers"},
		{"half tls", func(p *ClientParams) { p.TLSCAFile = "/ca.pem" }, "have 1 of 3"},
		{"meta key with space", func(p *ClientParams) { p.Meta = map[string]string{"a b": "x"} }, `meta key "a b"`},
		{"meta key interpolation", func(p *ClientParams) { p.Meta = map[string]string{"${x}": "x"} }, "meta key"},
		{"invalid utf-8", func(p *ClientParams) { p.NodeClass = "\xff" }, "not valid UTF-8"},
		{"vault without an integration", func(p *ClientParams) { p.VaultAddr = "http://vault:8200" }, `vault integration ""`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := ok
			tt.edit(&p)
			out, err := ClientConfig(p)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
			if out != nil {
				t.Errorf("output with an error:\n%s", out)
			}
		})
	}
}

func TestHCLQuoteHCL2Template(t *testing.T) {
	// Inside a jobspec a quoted string is an HCL 2 template: nothing quoted
	// may become an interpolation or a directive.
	for _, v := range hostile {
		q, err := hclQuote(v)
		if err != nil {
			t.Fatal(err)
		}
		expr, diags := hclsyntax.ParseExpression([]byte(q), "v", hcl.InitialPos)
		if diags.HasErrors() {
			t.Errorf("%q: %v", v, diags)
			continue
		}
		if vars := expr.Variables(); len(vars) != 0 {
			t.Errorf("%q quoted as %s references variables", v, q)
		}
		got, diags := expr.Value(nil)
		if diags.HasErrors() || got.AsString() != v {
			t.Errorf("%q quoted as %s reads back as %q (%v)", v, q, got.AsString(), diags)
		}
	}
}
