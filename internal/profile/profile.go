// Package profile loads install profiles: which kernel and initrd a node
// boots to install, with what command line, and how it boots once installed.
package profile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/template"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// Profile is one file in the profiles directory; its name is the file name
// without ".hcl".
type Profile struct {
	Name           string   `hcl:"name,label"`
	Description    string   `hcl:"description,optional"`
	Kernel         string   `hcl:"kernel"`
	Initrd         []string `hcl:"initrd,optional"`
	Cmdline        string   `hcl:"cmdline,optional"`
	InstallTimeout string   `hcl:"install_timeout,optional"`
	LocalBoot      string   `hcl:"local_boot,optional"`

	Timeout time.Duration
	cmdline *template.Template
	File    string
}

// Data is what a profile's templates see.
type Data struct {
	MAC, Hostname, IP string
	Server            string // base URL of bootstrapd's node HTTP, no trailing slash
	StatusURL         string // where the installer reports, carrying its one-time token
	ConfigURL         string // the node's install config, same token
}

// DefaultInstallTimeout bounds an install that never reports back.
const DefaultInstallTimeout = time.Hour

type file struct {
	Profiles []*Profile `hcl:"profile,block"`
}

// LoadDir reads every *.hcl file in dir. Each holds one or more
// `profile "name" { ... }` blocks. Errors carry file:line.
func LoadDir(dir string) (map[string]*Profile, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.hcl"))
	if err != nil {
		return nil, err
	}
	out := map[string]*Profile{}
	var errs []error
	for _, p := range paths {
		ps, err := loadFile(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, pr := range ps {
			if prev, dup := out[pr.Name]; dup {
				errs = append(errs, fmt.Errorf("%s: profile %q is also defined in %s", pr.File, pr.Name, prev.File))
				continue
			}
			out[pr.Name] = pr
		}
	}
	return out, errors.Join(errs...)
}

func loadFile(path string) ([]*Profile, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	f, diags := hclsyntax.ParseConfig(src, path, hcl.InitialPos)
	if diags.HasErrors() {
		return nil, diags
	}
	var parsed file
	if diags := gohcl.DecodeBody(f.Body, nil, &parsed); diags.HasErrors() {
		return nil, diags
	}
	body := f.Body.(*hclsyntax.Body)
	for i, p := range parsed.Profiles {
		blk := body.Blocks[i].Body
		at := func(attr string) string {
			line := blk.SrcRange.Start.Line
			if a, ok := blk.Attributes[attr]; ok {
				line = a.SrcRange.Start.Line
			}
			return fmt.Sprintf("%s:%d", path, line)
		}
		p.File = at("")
		if p.Timeout = DefaultInstallTimeout; p.InstallTimeout != "" {
			if p.Timeout, err = time.ParseDuration(p.InstallTimeout); err != nil || p.Timeout <= 0 {
				return nil, fmt.Errorf("%s: install_timeout %q is not a duration like \"45m\"", at("install_timeout"), p.InstallTimeout)
			}
		}
		switch p.LocalBoot {
		case "", "exit", "sanboot", "none":
		default:
			return nil, fmt.Errorf("%s: local_boot %q is not one of exit, sanboot, none", at("local_boot"), p.LocalBoot)
		}
		p.cmdline, err = template.New(p.Name).Option("missingkey=error").Parse(p.Cmdline)
		if err != nil {
			return nil, fmt.Errorf("%s: cmdline template: %w", at("cmdline"), err)
		}
		// Render once with sample data so a template that names a field
		// that does not exist fails at load, not when a node is booting.
		if _, err := p.RenderCmdline(Data{}); err != nil {
			return nil, fmt.Errorf("%s: %w", at("cmdline"), err)
		}
	}
	return parsed.Profiles, nil
}

// RenderCmdline renders the kernel command line for one node.
func (p *Profile) RenderCmdline(d Data) (string, error) {
	var b strings.Builder
	if err := p.cmdline.Execute(&b, d); err != nil {
		return "", fmt.Errorf("cmdline template: %w", err)
	}
	return strings.Join(strings.Fields(b.String()), " "), nil
}

// Names lists profile names, sorted.
func Names(ps map[string]*Profile) []string {
	out := make([]string, 0, len(ps))
	for n := range ps {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
