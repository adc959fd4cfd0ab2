package profile

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// These tests load the real profiles/ directory and run what the void-nomad
// profile renders: the autoinstaller config through sh, and the post-install
// script against a scratch target with the installer's tools faked.

func repoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test directory")
		}
		dir = parent
	}
}

func voidProfile(t testing.TB) *Profile {
	t.Helper()
	ps, err := LoadDir(filepath.Join(repoRoot(t), "profiles"))
	if err != nil {
		t.Fatal(err)
	}
	p := ps["void-nomad"]
	if p == nil {
		t.Fatalf("no void-nomad profile in profiles/ (have %v)", Names(ps))
	}
	return p
}

// voidData is a node as bootstrapd's HTTP handler would render it.
func voidData(p *Profile, mac, host string, labels map[string]string) Data {
	return voidDataAt(p, "http://10.9.0.1:8080", mac, host, labels)
}

func voidDataAt(p *Profile, base, mac, host string, labels map[string]string) Data {
	token := "T0k-" + host
	d := Data{MAC: mac, Hostname: host, IP: "10.9.0.21", Profile: p.Name, Labels: labels, Server: base,
		StatusURL: base + "/install/" + token + "/status",
		ConfigURL: base + "/install/" + token + "/config",
		JoinURL:   base + "/install/" + token + "/join"}
	if d.Labels == nil {
		d.Labels = map[string]string{}
	}
	if p.Nomad != nil {
		d.Nomad = *p.Nomad
	}
	return d
}

type voidNode struct {
	name string
	data Data
	cfg  map[string]string // what sourcing autoinstall.cfg must set (password aside)
}

// voidNodes are the nodes the templates are rendered for. Payloads in the
// hostile one create files in canary if they ever run.
func voidNodes(p *Profile, canary string) []voidNode {
	cfg := func(d Data, disk, tz, repo string) map[string]string {
		return map[string]string{"disk": disk, "hostname": d.Hostname, "username": "void", "timezone": tz,
			"keymap": "us", "libclocale": "en_US.UTF-8", "xbpsrepository": repo, "pkgs": "curl",
			"end_action": "script", "end_script": d.ConfigURL + "/postinstall.sh"}
	}
	plain := voidData(p, "52:54:00:aa:bb:01", "n1", nil)
	labelled := voidData(p, "52:54:00:aa:bb:02", "n2", map[string]string{
		"disk": "/dev/vda", "timezone": "Europe/Berlin", "xbps_repository": "https://mirror.example/void/current", "rack": "r1"})
	h := map[string]string{
		"disk":            "/dev/sdb'; touch " + canary + "/disk; '",
		"timezone":        "$(touch " + canary + "/tz)",
		"xbps_repository": "`touch " + canary + "/repo`; rm -rf / \"'$HOME\\",
		"password":        "$(touch " + canary + "/password)",
		"note":            "ünï ✓ ${x} %{y}",
	}
	hostile := voidData(p, "52:54:00:aa:bb:03", "n3", h)
	// The Nomad block comes from the profile file, which HCL lets hold
	// anything; its values go through hclq into a quoted here-document.
	hostile.Nomad = Nomad{Datacenter: `dc"1 ${var.x}`, NodePool: "p%{ if true }", NodeClass: `c\`,
		Meta: map[string]string{"concourse_worker": "true", `k"ey ${x}`: "v'$(touch " + canary + "/meta)`x`\nBOOTSTRAPD_NOMAD_HCL\n%%{y}"}}
	// With the site's package cache, a node without the label installs
	// through it; the label still wins.
	cached := voidData(p, "52:54:00:aa:bb:04", "n4", nil)
	cached.PackageCache = "http://10.9.0.1:8080/xbps"
	cachedLabelled := labelled
	cachedLabelled.PackageCache = cached.PackageCache
	return []voidNode{
		{"plain", plain, cfg(plain, "/dev/sda", "UTC", "https://repo-default.voidlinux.org/current")},
		{"labelled", labelled, cfg(labelled, "/dev/vda", "Europe/Berlin", "https://mirror.example/void/current")},
		{"hostile", hostile, cfg(hostile, h["disk"], h["timezone"], h["xbps_repository"])},
		{"cached", cached, cfg(cached, "/dev/sda", "UTC", "http://10.9.0.1:8080/xbps")},
		{"cached, labelled", cachedLabelled, cfg(cachedLabelled, "/dev/vda", "Europe/Berlin", "https://mirror.example/void/current")},
	}
}

func render(t *testing.T, p *Profile, name string, d Data, dir string) string {
	t.Helper()
	out, err := p.Render(name, d)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, out, 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestVoidNomadProfile(t *testing.T) {
	p := voidProfile(t)
	if p.Kernel != "void/vmlinuz" || !slices.Equal(p.Initrd, []string{"void/initrd"}) || p.Timeout != 45*time.Minute || p.LocalBoot != "exit" {
		t.Fatalf("void-nomad = kernel %q initrd %q timeout %v local_boot %q", p.Kernel, p.Initrd, p.Timeout, p.LocalBoot)
	}
	if p.Nomad == nil || p.Nomad.Datacenter != "dc1" || p.Nomad.NodePool != "default" || p.Nomad.NodeClass != "ci" ||
		len(p.Nomad.Meta) != 1 || p.Nomad.Meta["concourse_worker"] != "true" {
		t.Fatalf("nomad block = %+v", p.Nomad)
	}
	if len(p.Templates) != 2 || p.Templates["autoinstall.cfg"] != "void-nomad/autoinstall.cfg.tmpl" ||
		p.Templates["postinstall.sh"] != "void-nomad/postinstall.sh.tmpl" {
		t.Fatalf("templates = %v", p.Templates)
	}
	d := voidData(p, "52:54:00:aa:bb:01", "n1", nil)
	cmdline, err := p.RenderCmdline(d)
	want := "root=/dev/null auto autourl=http://10.9.0.1:8080/install/T0k-n1/config/autoinstall.cfg " +
		"console=tty0 console=ttyS0,115200n8 vconsole.unicode=1 vconsole.keymap=us locale.LANG=en_US.UTF-8 loglevel=4"
	if err != nil || cmdline != want {
		t.Fatalf("cmdline = %q, %v\nwant %q", cmdline, err, want)
	}
}

// TestVoidNomadLint: both files parse as sh and shellcheck finds nothing, for
// every node, hostile labels included.
func TestVoidNomadLint(t *testing.T) {
	shellcheck, err := exec.LookPath("shellcheck")
	if err != nil {
		t.Fatal("shellcheck is not installed (Debian package shellcheck); the rendered scripts must be checked")
	}
	p := voidProfile(t)
	canary := t.TempDir()
	for _, n := range voidNodes(p, canary) {
		dir := t.TempDir()
		for _, name := range []string{"autoinstall.cfg", "postinstall.sh"} {
			path := render(t, p, name, n.data, dir)
			for _, sh := range shells(t) {
				args := append(append([]string{}, sh[1:]...), "-n", path)
				if out, err := exec.Command(sh[0], args...).CombinedOutput(); err != nil {
					t.Errorf("%s: %s -n %s: %v\n%s", n.name, sh[0], name, err, out)
				}
			}
			if out, err := exec.Command(shellcheck, "-s", "sh", "-f", "gcc", path).CombinedOutput(); err != nil {
				t.Errorf("%s: shellcheck %s: %v\n%s", n.name, name, err, out)
			}
		}
	}
	assertEmptyDir(t, canary)
}

var cfgVars = []string{"disk", "hostname", "password", "username", "timezone", "keymap", "libclocale",
	"xbpsrepository", "pkgs", "end_action", "end_script"}

// sourceCfg sources the config as the installer does (sh, set -e) and
// returns the variables it set, and the names of all variables it added.
func sourceCfg(t *testing.T, path string, env ...string) (vals map[string]string, added []string) {
	t.Helper()
	dir := t.TempDir()
	before, after := filepath.Join(dir, "before"), filepath.Join(dir, "after")
	script := `set -e; set >"$2"; . "$1"; set >"$3"`
	for _, v := range cfgVars {
		script += fmt.Sprintf(`; printf '%%s=%%s\n' %s "$%s"`, v, v)
	}
	cmd := exec.Command("sh", "-c", script, "sh", path, before, after)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || stderr.Len() > 0 {
		t.Fatalf("sourcing %s: %v\n%s", path, err, stderr.String())
	}
	vals = map[string]string{}
	for _, l := range strings.Split(strings.TrimSuffix(string(out), "\n"), "\n") {
		k, v, _ := strings.Cut(l, "=")
		vals[k] = v
	}
	names := func(file string) map[string]bool {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]bool{}
		for _, l := range strings.Split(string(b), "\n") {
			if name := regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_]*)=`).FindStringSubmatch(l); name != nil {
				m[name[1]] = true
			}
		}
		return m
	}
	had := names(before)
	for n := range names(after) {
		if !had[n] {
			added = append(added, n)
		}
	}
	slices.Sort(added)
	return vals, added
}

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

func TestVoidNomadAutoinstallSourced(t *testing.T) {
	p := voidProfile(t)
	canary := t.TempDir()
	wantAdded := slices.Sorted(slices.Values(cfgVars))
	for _, n := range voidNodes(p, canary) {
		path := render(t, p, "autoinstall.cfg", n.data, t.TempDir())
		vals, added := sourceCfg(t, path)
		if !slices.Equal(added, wantAdded) {
			t.Errorf("%s: sourcing sets %v, want exactly %v", n.name, added, wantAdded)
		}
		if !uuidRE.MatchString(vals["password"]) {
			t.Errorf("%s: password = %q, want a random UUID", n.name, vals["password"])
		}
		again, _ := sourceCfg(t, path)
		if again["password"] == vals["password"] {
			t.Errorf("%s: the same password twice: %q", n.name, vals["password"])
		}
		delete(vals, "password")
		for k, want := range n.cfg {
			if vals[k] != want {
				t.Errorf("%s: %s = %q, want %q", n.name, k, vals[k], want)
			}
		}
		// The repository default follows the initrd's libc; a label wins.
		musl, _ := sourceCfg(t, path, "XBPS_ARCH=x86_64-musl")
		want := n.cfg["xbpsrepository"]
		switch n.name {
		case "plain":
			want = "https://repo-default.voidlinux.org/current/musl"
		case "cached":
			want = "http://10.9.0.1:8080/xbps/musl"
		}
		if musl["xbpsrepository"] != want {
			t.Errorf("%s: with XBPS_ARCH=x86_64-musl, xbpsrepository = %q, want %q", n.name, musl["xbpsrepository"], want)
		}
	}
	assertEmptyDir(t, canary)
}

// rig is a scratch installer: a target directory as the autoinstaller
// leaves it, and a PATH of the NETBOOT initrd's tools plus recorders for
// everything the script must not really run.
type rig struct {
	t                                    *testing.T
	dir, fakes, tools, target, tmp       string
	calls, posts, joinTar                string
	repo                                 string
	data                                 Data
	script                               string
	client                               string // curl | wget | target-curl | none | http-curl | http-busybox
	xbpsError                            string // what a failing xbps-install says
	failXbps, refuseInstalled, tarOnPath bool
}

// initrdTools approximates what void-mklive's NETBOOT initrd has (dracut
// base plus the autoinstaller and netmenu modules): no curl, wget or tar.
var initrdTools = []string{"awk", "cat", "chmod", "cp", "cut", "env", "grep", "head", "ln", "ls", "mkdir",
	"mktemp", "mv", "readlink", "rm", "sed", "sleep", "sort", "touch"}

func newRig(t *testing.T, p *Profile, d Data, client string) *rig {
	t.Helper()
	dir := t.TempDir()
	r := &rig{t: t, dir: dir, fakes: filepath.Join(dir, "fakes"), tools: filepath.Join(dir, "tools"),
		target: filepath.Join(dir, "target"), tmp: filepath.Join(dir, "tmp"),
		calls: filepath.Join(dir, "calls"), posts: filepath.Join(dir, "posts"), joinTar: filepath.Join(dir, "join.tar"),
		repo: "https://repo.example/current", data: d, client: client, tarOnPath: client == "curl" || client == "wget"}
	for _, d := range []string{r.fakes, r.tools, r.tmp, filepath.Join(r.target, "usr/bin"),
		filepath.Join(r.target, "usr/share/zoneinfo/Europe")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// tzdata, from base-system.
	for _, z := range []string{"UTC", "Europe/Berlin"} {
		if err := os.WriteFile(filepath.Join(r.target, "usr/share/zoneinfo", z), []byte("TZif"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tools := initrdTools
	if r.tarOnPath {
		tools = append(slices.Clone(tools), "tar")
	}
	var busybox string
	switch client {
	case "http-curl":
		tools = append(slices.Clone(tools), "tar", "curl")
	case "http-busybox":
		tools = append(slices.Clone(tools), "tar", "wget")
		var err error
		if busybox, err = exec.LookPath("busybox"); err != nil {
			t.Fatal("busybox is not installed (Debian package busybox-static): needed to run the script with busybox's wget, tar and awk")
		}
	}
	for _, tool := range tools {
		real, err := exec.LookPath(tool)
		if busybox != "" {
			real, err = busybox, nil // an applet symlink: busybox goes by the name
		}
		if err != nil {
			t.Fatalf("%s is needed to run the post-install script: %v", tool, err)
		}
		if err := os.Symlink(real, filepath.Join(r.tools, tool)); err != nil {
			t.Fatal(err)
		}
	}
	r.script = render(t, p, "postinstall.sh", d, dir)
	r.writeJoinTar()
	return r
}

func (r *rig) q(s string) string {
	q, err := shq(s)
	if err != nil {
		r.t.Fatal(err)
	}
	return q
}

// fake writes a recorder named name into dir: it appends its argv, one call
// a line, to the calls file, then runs body.
func (r *rig) fake(dir, name, body string) {
	r.t.Helper()
	src := "#!/bin/sh\n{ printf '%s' " + r.q(name) + `; for a in "$@"; do printf ' %s' "$a"; done; printf '\n'; } >>` + r.q(r.calls) + "\n" + body
	if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o755); err != nil {
		r.t.Fatal(err)
	}
}

// httpFake is curl or wget: it records the POST and answers it.
func (r *rig) httpFake(dataFlag, argFlags string) string {
	refuse := ""
	if r.refuseInstalled {
		refuse = "case $body in *'&status=installed') echo 'fake: 403 Forbidden' >&2; exit 22 ;; esac\n"
	}
	return `body= url=
while [ $# -gt 0 ]; do
	case $1 in
	` + dataFlag + `) body=$2; shift ;;
	` + argFlags + `) shift ;;
	-*) ;;
	*) url=$1 ;;
	esac
	shift
done
printf '%s %s\n' "$url" "$body" >>` + r.q(r.posts) + "\n" + refuse + `case $url in
` + r.q(r.data.JoinURL) + `) cat ` + r.q(r.joinTar) + ` ;;
` + r.q(r.data.StatusURL) + `) echo "ok"; ;;
*) echo "fake: unexpected URL $url" >&2; exit 22 ;;
esac
`
}

func (r *rig) writeFakes() {
	curl := r.httpFake("--data-binary", "--connect-timeout | --max-time")
	switch r.client {
	case "curl":
		r.fake(r.fakes, "curl", curl)
	case "wget":
		r.fake(r.fakes, "wget", r.httpFake("--post-data", "-O"))
	case "target-curl":
		// What the installer put in the target (pkgs='curl', base-system's tar).
		r.fake(filepath.Join(r.target, "usr/bin"), "curl", curl)
		real, err := exec.LookPath("tar")
		if err != nil {
			r.t.Fatal(err)
		}
		if err := os.Symlink(real, filepath.Join(r.target, "usr/bin/tar")); err != nil {
			r.t.Fatal(err)
		}
	}
	xbps := `r=
while [ $# -gt 0 ]; do
	case $1 in -r) r=$2; shift ;; esac
	shift
done
[ -n "$r" ] || { echo "fake xbps-install: no -r" >&2; exit 2; }
`
	if r.failXbps {
		msg := r.xbpsError
		if msg == "" {
			msg = "ERROR: nomad-1.10.5_1: broken, unresolvable shlib `libfoo.so.1'"
		}
		xbps += "echo 'nomad-1.10.5_1: installing ...'\n" +
			"printf '%s\\n' " + r.q(msg) + " >&2\n" +
			"echo 'Transaction aborted due to unresolved shlibs.' >&2\nexit 19\n"
	} else {
		xbps += `mkdir -p "$r/etc/sv/nomad" "$r/etc/sv/sshd" "$r/etc/sv/dhcpcd" "$r/etc/sv/chronyd" "$r/etc/runit/runsvdir/default"
echo 'nomad-1.10.5_1: installed successfully.'
`
	}
	r.fake(r.fakes, "xbps-install", xbps)
	// chroot ROOT CMD ...: the target's own CMD if it has one, run from
	// ROOT as chroot(8) would; otherwise a recorder of ours; never a host
	// binary.
	r.fake(r.fakes, "chroot", `root=$1 cmd=$2
shift 2
if [ -x "$root/usr/bin/$cmd" ]; then
	cd "$root" && exec "$root/usr/bin/$cmd" "$@"
fi
if [ -x `+r.q(r.fakes)+`/"$cmd" ]; then
	exec `+r.q(r.fakes)+`/"$cmd" "$@"
fi
echo "fake chroot: no $cmd in $root" >&2
exit 127
`)
	for _, name := range []string{"passwd", "sv", "umount", "reboot", "sync"} {
		r.fake(r.fakes, name, "")
	}
}

const (
	joinHCL = "client {\n  servers = [\"10.9.0.10:4647\"]\n}\n"
	sshKey  = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBootstrapdTestKeyOnly operator@lab\n"
)

func (r *rig) writeJoinTar() {
	if err := os.WriteFile(r.joinTar, joinTar(r.t), 0o600); err != nil {
		r.t.Fatal(err)
	}
}

// joinTar is the join bundle bootstrapd would serve: the Nomad client's
// join config and root's SSH keys.
func joinTar(t *testing.T) []byte {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range []struct {
		name, body string
		mode       int64
	}{{"etc/nomad.d/client-join.hcl", joinHCL, 0o640}, {"root/.ssh/", "", 0o700}, {"root/.ssh/authorized_keys", sshKey, 0o600}} {
		h := &tar.Header{Name: e.name, Mode: e.mode, Size: int64(len(e.body)), Typeflag: tar.TypeReg, Uname: "root", Gname: "root", ModTime: time.Unix(1700000000, 0)}
		if strings.HasSuffix(e.name, "/") {
			h.Typeflag = tar.TypeDir
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// run runs the script as the installer does, with only target and
// xbpsrepository in its environment (plus PATH, and TMPDIR to keep its work
// directory in the test's).
func (r *rig) run() (output string, err error) {
	r.writeFakes()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	env := []string{"PATH=" + r.fakes + ":" + r.tools, "target=" + r.target, "xbpsrepository=" + r.repo, "TMPDIR=" + r.tmp}
	// The script runs as root here and ends in reboot -f. Make sure the
	// shell its #! names finds our recorders, not the real thing (a
	// busybox sh built with standalone applets would run its own reboot
	// whatever PATH says).
	guard := exec.CommandContext(ctx, "/bin/sh", "-c", `for c in reboot umount sync chroot passwd sv xbps-install; do command -v "$c"; done`)
	guard.Env = env
	found, err := guard.Output()
	if err != nil {
		r.t.Fatalf("checking the shell's command lookup: %v", err)
	}
	for _, c := range strings.Fields(string(found)) {
		if filepath.Dir(c) != r.fakes {
			r.t.Fatalf("refusing to run the script: /bin/sh would run %s, not the recorder in %s", c, r.fakes)
		}
	}
	cmd := exec.CommandContext(ctx, r.script)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// calls are the recorded commands, with the target written $T, and a POST
// written "<client> status <status>" or "<client> join".
func (r *rig) recorded() []string {
	b, err := os.ReadFile(r.calls)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		r.t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		if l == "" {
			continue
		}
		f := strings.Fields(l)
		switch {
		case f[0] == "curl" || f[0] == "wget":
			switch u := f[len(f)-1]; u {
			case r.data.StatusURL:
				body, _ := url.ParseQuery(f[len(f)-2])
				l = f[0] + " status " + body.Get("status")
			case r.data.JoinURL:
				l = f[0] + " join"
			}
		case f[0] == "chroot" && len(f) > 2 && f[2] == "curl":
			l = "chroot " + f[1] + " curl"
		}
		out = append(out, strings.ReplaceAll(l, r.target, "$T"))
	}
	return out
}

// reports are the statuses POSTed to the status URL, in order; every POST
// carries the node's MAC.
func (r *rig) reports() (reports []string, joins int) {
	b, err := os.ReadFile(r.posts)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		r.t.Fatal(err)
	}
	for _, l := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		if l == "" {
			continue
		}
		u, body, _ := strings.Cut(l, " ")
		form, err := url.ParseQuery(body)
		if err != nil || form.Get("mac") != r.data.MAC {
			r.t.Errorf("POST %s with body %q: mac %q, %v", u, body, form.Get("mac"), err)
		}
		switch u {
		case r.data.StatusURL:
			if len(form) != 2 {
				r.t.Errorf("status POST %q: want exactly mac and status", body)
			}
			reports = append(reports, form.Get("status"))
		case r.data.JoinURL:
			if len(form) != 1 {
				r.t.Errorf("join POST %q: want exactly mac", body)
			}
			joins++
		default:
			r.t.Errorf("POST to %s", u)
		}
	}
	return reports, joins
}

func (r *rig) file(rel string, mode os.FileMode) string {
	r.t.Helper()
	path := filepath.Join(r.target, rel)
	fi, err := os.Stat(path)
	if err != nil {
		r.t.Fatal(err)
	}
	if fi.Mode().Perm() != mode {
		r.t.Errorf("%s: mode %v, want %v", rel, fi.Mode().Perm(), mode)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		r.t.Fatal(err)
	}
	return string(b)
}

const wantBaseHCL = `# Written at install by bootstrapd (profile void-nomad).
datacenter = "dc1"
data_dir   = "/var/lib/nomad"

client {
  enabled    = true
  # Void's cni-plugins; Nomad looks in /opt/cni/bin otherwise.
  cni_path   = "/usr/libexec/cni"
  node_pool  = "default"
  node_class = "ci"
  meta       = {
    "concourse_worker" = "true"
  }
  options    = {
    # Bare metal: do not wait on cloud metadata endpoints.
    "fingerprint.denylist" = "env_aws,env_gce,env_azure,env_digitalocean"
  }
}
`

var wantSteps = []string{"packages", "config", "join", "services", "passwords"}

func TestVoidNomadPostinstall(t *testing.T) {
	p := voidProfile(t)
	for _, client := range []string{"curl", "target-curl", "wget"} {
		t.Run(client, func(t *testing.T) {
			d := voidData(p, "52:54:00:aa:bb:01", "n1", nil)
			if client == "wget" {
				d = voidData(p, "52:54:00:aa:bb:02", "n2", map[string]string{"timezone": "Europe/Berlin"})
			}
			r := newRig(t, p, d, client)
			out, err := r.run()
			if err != nil {
				t.Fatalf("postinstall.sh: %v\n%s", err, out)
			}
			// The commands, in order.
			name := client
			if client == "target-curl" {
				name = "curl"
			}
			post := func(what string) []string {
				if client == "target-curl" {
					return []string{"chroot $T curl", name + " " + what}
				}
				return []string{name + " " + what}
			}
			var want []string
			want = append(want, post("status installing: packages")...)
			want = append(want, "xbps-install -Sy -R "+r.repo+" -R "+r.repo+"/nonfree -r $T void-repo-nonfree nomad cni-plugins chrony")
			want = append(want, post("status installing: config")...)
			want = append(want, post("status installing: join")...)
			want = append(want, post("join")...)
			if client == "target-curl" {
				want = append(want, "chroot $T tar -x -v -f -")
			}
			want = append(want, post("status installing: services")...)
			want = append(want, post("status installing: passwords")...)
			want = append(want, "chroot $T passwd -l root", "passwd -l root", "chroot $T passwd -l void", "passwd -l void")
			want = append(want, post("status installed")...)
			want = append(want, "sync", "umount -R $T", "reboot -f")
			if got := r.recorded(); !slices.Equal(got, want) {
				t.Errorf("commands:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
			}
			// The exact HTTP client invocation, once.
			calls, _ := os.ReadFile(r.calls)
			first := strings.SplitN(string(calls), "\n", 2)[0]
			wantFirst := "curl -fsS --connect-timeout 10 --max-time 300 --data-binary mac=52%3A54%3A00%3Aaa%3Abb%3A01&status=installing%3A%20packages " + d.StatusURL
			switch client {
			case "target-curl":
				wantFirst = "chroot " + r.target + " " + wantFirst
			case "wget":
				wantFirst = "wget -q -O - --post-data mac=52%3A54%3A00%3Aaa%3Abb%3A02&status=installing%3A%20packages " + d.StatusURL
			}
			if first != wantFirst {
				t.Errorf("first call:\n  %s\nwant\n  %s", first, wantFirst)
			}
			reports, joins := r.reports()
			wantReports := []string{}
			for _, s := range wantSteps {
				wantReports = append(wantReports, "installing: "+s)
			}
			wantReports = append(wantReports, "installed")
			if !slices.Equal(reports, wantReports) || joins != 1 {
				t.Errorf("reports %q and %d join claims, want %q and 1", reports, joins, wantReports)
			}

			// What the target holds now.
			if got := r.file("etc/nomad.d/base.hcl", 0o640); got != wantBaseHCL {
				t.Errorf("base.hcl:\n%s\nwant:\n%s", got, wantBaseHCL)
			}
			if got := r.file("etc/nomad.d/client-join.hcl", 0o640); got != joinHCL {
				t.Errorf("client-join.hcl = %q", got)
			}
			if got := r.file("root/.ssh/authorized_keys", 0o600); got != sshKey {
				t.Errorf("authorized_keys = %q", got)
			}
			if fi, err := os.Stat(filepath.Join(r.target, "root/.ssh")); err != nil || fi.Mode().Perm() != 0o700 {
				t.Errorf("root/.ssh: %v, %v", fi, err)
			}
			for _, svc := range []string{"nomad", "sshd", "dhcpcd", "chronyd"} {
				if l, err := os.Readlink(filepath.Join(r.target, "etc/runit/runsvdir/default", svc)); err != nil || l != "/etc/sv/"+svc {
					t.Errorf("service %s link: %q, %v", svc, l, err)
				}
			}
			zone := "UTC"
			if client == "wget" {
				zone = "Europe/Berlin"
			}
			if l, err := os.Readlink(filepath.Join(r.target, "etc/localtime")); err != nil || l != "/usr/share/zoneinfo/"+zone {
				t.Errorf("localtime -> %q, %v", l, err)
			}
			// The work directory (log, join bundle) is gone.
			if ents, _ := os.ReadDir(r.tmp); len(ents) != 0 {
				t.Errorf("left in TMPDIR: %v", ents)
			}
			if !strings.Contains(out, "installed; rebooting") {
				t.Errorf("output:\n%s", out)
			}
		})
	}
}

func TestVoidNomadPostinstallPackagesFail(t *testing.T) {
	p := voidProfile(t)
	r := newRig(t, p, voidData(p, "52:54:00:aa:bb:01", "n1", nil), "curl")
	r.failXbps = true
	out, err := r.run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("postinstall.sh: %v, want a failure\n%s", err, out)
	}
	reports, joins := r.reports()
	if len(reports) != 2 || reports[0] != "installing: packages" || joins != 0 {
		t.Fatalf("reports %q, %d joins", reports, joins)
	}
	failed := reports[1]
	for _, want := range []string{"failed: packages: exit status 19\n", "== packages",
		"ERROR: nomad-1.10.5_1: broken, unresolvable shlib `libfoo.so.1'", "Transaction aborted due to unresolved shlibs."} {
		if !strings.Contains(failed, want) || !strings.HasPrefix(failed, "failed: packages: exit status 19\n") {
			t.Errorf("failure report %q lacks %q", failed, want)
		}
	}
	calls := r.recorded()
	want := []string{"curl status installing: packages",
		"xbps-install -Sy -R " + r.repo + " -R " + r.repo + "/nonfree -r $T void-repo-nonfree nomad cni-plugins chrony",
		"curl status " + failed}
	if !slices.Equal(calls, want) {
		t.Errorf("commands:\n  %s\nwant:\n  %s", strings.Join(calls, "\n  "), strings.Join(want, "\n  "))
	}
	if _, err := os.Stat(filepath.Join(r.target, "etc/nomad.d/base.hcl")); err == nil {
		t.Error("base.hcl written after packages failed")
	}
	if !strings.Contains(out, "step packages failed: exit status 19") {
		t.Errorf("console output:\n%s", out)
	}
}

// Hostile labels and Nomad values: the config step writes them as data
// (base.hcl reads back exactly), then fails on the impossible timezone;
// nothing runs, nothing reboots.
func TestVoidNomadPostinstallHostile(t *testing.T) {
	p := voidProfile(t)
	canary := t.TempDir()
	n := voidNodes(p, canary)[2]
	r := newRig(t, p, n.data, "curl")
	out, err := r.run()
	if err == nil {
		t.Fatalf("postinstall.sh succeeded with a timezone that is a command\n%s", out)
	}
	assertEmptyDir(t, canary)
	reports, _ := r.reports()
	wantWhy := "failed: config: timezone " + n.data.Labels["timezone"] + ": no such zone in " + r.target + "/usr/share/zoneinfo\n"
	if len(reports) != 3 || !strings.HasPrefix(reports[2], wantWhy) {
		t.Fatalf("reports %q, want the last to start %q", reports, wantWhy)
	}
	for _, c := range r.recorded() {
		if strings.HasPrefix(c, "reboot") || strings.HasPrefix(c, "umount") {
			t.Errorf("%s after a failure", c)
		}
	}
	src := r.file("etc/nomad.d/base.hcl", 0o640)
	f, diags := hclsyntax.ParseConfig([]byte(src), "base.hcl", hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatalf("base.hcl does not parse: %v\n%s", diags, src)
	}
	body := f.Body.(*hclsyntax.Body)
	str := func(attrs hclsyntax.Attributes, name string) string {
		v, diags := attrs[name].Expr.Value(nil)
		if diags.HasErrors() {
			t.Fatalf("%s: %v", name, diags)
		}
		return v.AsString()
	}
	client := body.Blocks[0].Body.Attributes
	if got := str(body.Attributes, "datacenter"); got != n.data.Nomad.Datacenter {
		t.Errorf("datacenter = %q", got)
	}
	if str(client, "node_pool") != n.data.Nomad.NodePool || str(client, "node_class") != n.data.Nomad.NodeClass {
		t.Errorf("node_pool %q node_class %q", str(client, "node_pool"), str(client, "node_class"))
	}
	meta, diags := client["meta"].Expr.Value(nil)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	got := map[string]string{}
	for k, v := range meta.AsValueMap() {
		got[k] = v.AsString()
	}
	if len(got) != len(n.data.Nomad.Meta) {
		t.Errorf("meta = %q", got)
	}
	for k, v := range n.data.Nomad.Meta {
		if got[k] != v {
			t.Errorf("meta[%q] = %q, want %q", k, got[k], v)
		}
	}
}

// If bootstrapd does not take "installed", the node must not reboot: it
// would come back as installing and be served the installer again.
func TestVoidNomadPostinstallInstalledRefused(t *testing.T) {
	p := voidProfile(t)
	r := newRig(t, p, voidData(p, "52:54:00:aa:bb:01", "n1", nil), "curl")
	r.refuseInstalled = true
	out, err := r.run()
	if err == nil {
		t.Fatalf("postinstall.sh succeeded\n%s", out)
	}
	calls := r.recorded()
	if last := calls[len(calls)-1]; last != "curl status installed" {
		t.Errorf("last command %q, want the refused report", last)
	}
	reports, _ := r.reports()
	if last := reports[len(reports)-1]; last != "installed" {
		t.Errorf("a failure was reported after installed: %q", last)
	}
	if !strings.Contains(out, "did not take the installed report; not rebooting") {
		t.Errorf("output:\n%s", out)
	}
}

// With no way to POST, the script says so and stops before touching the
// target.
func TestVoidNomadPostinstallNoClient(t *testing.T) {
	p := voidProfile(t)
	r := newRig(t, p, voidData(p, "52:54:00:aa:bb:01", "n1", nil), "none")
	out, err := r.run()
	if err == nil {
		t.Fatalf("postinstall.sh succeeded\n%s", out)
	}
	if calls := r.recorded(); len(calls) != 0 {
		t.Errorf("commands run: %q", calls)
	}
	for _, want := range []string{"no HTTP client to reach bootstrapd: need curl or wget", "could not report the failure"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// bootstrapdStub answers the install endpoints the way bootstrapd's node
// HTTP does: the status report must be a urlencoded form, the join bundle
// is a tar.
type bootstrapdStub struct {
	mu      sync.Mutex
	reports []url.Values
	joins   []url.Values
	bad     []string
}

func (b *bootstrapdStub) handler(token string, bundle []byte) http.Handler {
	mux := http.NewServeMux()
	form := func(w http.ResponseWriter, r *http.Request) (url.Values, bool) {
		ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if err := r.ParseForm(); err != nil || ct != "application/x-www-form-urlencoded" {
			b.mu.Lock()
			b.bad = append(b.bad, fmt.Sprintf("%s %s: content type %q, %v", r.Method, r.URL.Path, ct, err))
			b.mu.Unlock()
			http.Error(w, "send a form", http.StatusUnsupportedMediaType)
			return nil, false
		}
		return r.PostForm, true
	}
	mux.HandleFunc("POST /install/"+token+"/status", func(w http.ResponseWriter, r *http.Request) {
		if f, ok := form(w, r); ok {
			b.mu.Lock()
			b.reports = append(b.reports, f)
			b.mu.Unlock()
			fmt.Fprintln(w, "ok n1 installing")
		}
	})
	mux.HandleFunc("POST /install/"+token+"/join", func(w http.ResponseWriter, r *http.Request) {
		if f, ok := form(w, r); ok {
			b.mu.Lock()
			b.joins = append(b.joins, f)
			b.mu.Unlock()
			w.Write(bundle)
		}
	})
	return mux
}

// The report encoding and the join claim against a real HTTP server, with
// real clients: curl, and busybox's wget (with busybox's awk, tar, mktemp,
// as in the e2e stand-in installer).
func TestVoidNomadPostinstallRealHTTP(t *testing.T) {
	p := voidProfile(t)
	tricky := "ERROR: a&b=c%20d+e;ü \"q\" 'x' $(nope) \\ %zz end"
	for _, client := range []string{"http-curl", "http-busybox"} {
		for _, fail := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/fail=%v", client, fail), func(t *testing.T) {
				stub := &bootstrapdStub{}
				srv := httptest.NewServer(stub.handler("T0k-n1", joinTar(t)))
				defer srv.Close()
				d := voidDataAt(p, srv.URL, "52:54:00:aa:bb:01", "n1", nil)
				r := newRig(t, p, d, client)
				r.failXbps, r.xbpsError = fail, tricky
				out, err := r.run()
				if (err != nil) != fail {
					t.Fatalf("postinstall.sh: %v\n%s", err, out)
				}
				stub.mu.Lock()
				defer stub.mu.Unlock()
				if len(stub.bad) > 0 {
					t.Errorf("bad requests: %q", stub.bad)
				}
				var got []string
				for _, f := range stub.reports {
					if len(f) != 2 || f.Get("mac") != d.MAC {
						t.Errorf("report form %q", f)
					}
					got = append(got, f.Get("status"))
				}
				if fail {
					if len(got) != 2 || got[0] != "installing: packages" ||
						!strings.HasPrefix(got[1], "failed: packages: exit status 19\n== packages\n") ||
						!strings.Contains(got[1], "\n"+tricky+"\n") {
						t.Errorf("reports %q", got)
					}
					if len(stub.joins) != 0 {
						t.Errorf("join claimed after a failure")
					}
					return
				}
				want := []string{"installing: packages", "installing: config", "installing: join", "installing: services",
					"installing: passwords", "installed"}
				if !slices.Equal(got, want) {
					t.Errorf("reports %q, want %q", got, want)
				}
				if len(stub.joins) != 1 || len(stub.joins[0]) != 1 || stub.joins[0].Get("mac") != d.MAC {
					t.Errorf("join claims %q", stub.joins)
				}
				if got := r.file("etc/nomad.d/client-join.hcl", 0o640); got != joinHCL {
					t.Errorf("client-join.hcl = %q", got)
				}
				if got := r.file("root/.ssh/authorized_keys", 0o600); got != sshKey {
					t.Errorf("authorized_keys = %q", got)
				}
				calls := r.recorded()
				if n := len(calls); n < 3 || !slices.Equal(calls[n-3:], []string{"sync", "umount -R $T", "reboot -f"}) {
					t.Errorf("commands %q", calls)
				}
			})
		}
	}
}
