package profile

import (
	"fmt"
	"strings"
)

// nameChar is what a profile name is made of: it is written into the
// install script, given to `enroll -profile` and kept in node records.
func nameChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-'
}

// checkName says what is wrong with a profile name, or "".
func checkName(name string) string {
	ok := name != "" && len(name) <= 63 && name[0] != '.' && name[0] != '_' && name[0] != '-'
	for i := 0; ok && i < len(name); i++ {
		ok = nameChar(name[i])
	}
	if !ok {
		return fmt.Sprintf("profile name %q must be letters, digits, '.', '_' and '-', at most 63, starting with a letter or digit", name)
	}
	return ""
}

// checkAsset says what is wrong with a kernel or initrd path, or "". The
// path is relative to the netboot directory and appended to the assets URL
// as it is, so it holds no character that means something in a URL or to
// iPXE (%, ?, #, $, space, \, ...).
func checkAsset(what, p string) string {
	for _, part := range strings.Split(p, "/") {
		ok := part != ""
		for i := 0; ok && i < len(part); i++ {
			ok = nameChar(part[i]) || strings.IndexByte("+~@=,", part[i]) >= 0
		}
		if !ok {
			return fmt.Sprintf("%s %q must be a path in the netboot directory, like \"void/vmlinuz\": letters, digits and . _ - + ~ @ = , between single slashes", what, p)
		}
		if part == "." || part == ".." {
			return fmt.Sprintf("%s %q must stay inside the netboot directory: no . or .. in it", what, p)
		}
	}
	return ""
}

// ipxeWord says why v cannot be one word of an iPXE command, or "".
//
// iPXE scripts have no quoting: a line is a command (a '\n' ends it, a
// '\r' before that is dropped, and a '\' at its end joins the next line to
// it), split into words at ASCII white space; a word "||", "&&" or ";"
// starts another command and one starting with '#' comments out the rest.
// So a value is written as words only when none of that can happen, and
// otherwise the script is not rendered: there is no escaping to fall back to.
func ipxeWord(v string) string {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c <= ' ' || c == 0x7f {
			// Space, tab, '\r', '\n' and the rest of C0: a word boundary,
			// a line boundary or a byte iPXE's C strings stop at.
			return fmt.Sprintf("%q holds a space or control character", v)
		}
	}
	switch {
	case v == "||" || v == "&&" || v == ";":
		return fmt.Sprintf("%q would start another iPXE command", v)
	case strings.HasPrefix(v, "#"):
		return fmt.Sprintf("%q would comment out the rest of the iPXE line", v)
	case strings.HasSuffix(v, `\`):
		// Harmless mid-line, but no word is told it is last.
		return fmt.Sprintf("%q ends in a backslash, which joins iPXE lines", v)
	}
	return ""
}

// checkCmdline says why the rendered command line cannot go on the iPXE
// kernel line, or "".
func checkCmdline(cmdline string) string {
	for _, w := range strings.Fields(cmdline) {
		if why := ipxeWord(w); why != "" {
			return "kernel command line: " + why
		}
	}
	return ""
}

// IPXEScript renders the script that installs this profile on the node d
// describes: its initrds and kernel from d.Server's /assets/, the command
// line rendered for it, then boot. Every value goes through ipxeWord, so a
// value can add no line, command or comment to the script; one that would
// is an error and no script is rendered.
func (p *Profile) IPXEScript(d Data) ([]byte, error) {
	cmdline, err := p.RenderCmdline(d)
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	var bad []string
	word := func(what, v string) string {
		if why := ipxeWord(v); why != "" {
			bad = append(bad, what+" "+why)
		}
		return v
	}
	if why := checkAsset("kernel", p.Kernel); why != "" {
		bad = append(bad, why)
	}
	assets := word("server URL", d.Server) + "/assets/"
	// The echo is for the person at the console; MAC and hostname come from
	// the node record, the name from the profile.
	fmt.Fprintf(&b, "#!ipxe\necho bootstrapd: installing %s (%s) with profile %s\n",
		word("hostname", d.Hostname), word("MAC", d.MAC), word("profile name", p.Name))
	var initrds strings.Builder
	for i, f := range p.Initrd {
		if why := checkAsset("initrd", f); why != "" {
			bad = append(bad, why)
		}
		name := fmt.Sprintf("initrd%d", i)
		fmt.Fprintf(&b, "initrd --name %s %s%s\n", name, assets, f)
		initrds.WriteString(" initrd=" + name)
	}
	fmt.Fprintf(&b, "kernel %s%s%s", assets, p.Kernel, initrds.String())
	for _, w := range strings.Fields(cmdline) {
		b.WriteString(" " + word("command line", w))
	}
	b.WriteString("\nboot\n")
	if len(bad) > 0 {
		return nil, fmt.Errorf("profile %s: no iPXE script for %s: %s", p.Name, d.MAC, strings.Join(bad, "; "))
	}
	return []byte(b.String()), nil
}
