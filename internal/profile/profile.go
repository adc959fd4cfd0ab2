// Package profile loads install profiles: which kernel and initrd a node
// boots to install, with what command line, and how it boots once installed.
package profile

import (
	"bytes"
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
	// Templates are files rendered per node and served to its installer at
	// <ConfigURL>/<name>: name -> template file, relative to the profile.
	Templates map[string]string `hcl:"templates,optional"`
	Nomad     *Nomad            `hcl:"nomad,block"`

	Timeout   time.Duration
	cmdline   *template.Template
	templates map[string]*template.Template
	File      string
}

// Nomad is how a node installed with this profile joins the cluster.
type Nomad struct {
	Datacenter string            `hcl:"datacenter,optional" json:"datacenter,omitempty"`
	NodePool   string            `hcl:"node_pool,optional" json:"node_pool,omitempty"`
	NodeClass  string            `hcl:"node_class,optional" json:"node_class,omitempty"`
	Meta       map[string]string `hcl:"meta,optional" json:"meta,omitempty"`
}

// Data is what a profile's templates see: the node record and where it
// talks to bootstrapd.
type Data struct {
	MAC, Hostname, IP string
	Profile           string
	Labels            map[string]string
	Nomad             Nomad
	Server            string // base URL of bootstrapd's node HTTP, no trailing slash
	StatusURL         string // where the installer reports, carrying its one-time token
	ConfigURL         string // base URL of the node's rendered templates, same token
	JoinURL           string // POST here, with the token, to claim the join bundle (Nomad client config, wrapped Vault token) once
	PackageCache      string // the package cache's repository URL (glibc; musl is under /musl), or "" without one
}

// sample is the data templates are rendered with at load, so that a
// template naming a field that does not exist fails then, not at install.
func (p *Profile) sample() Data {
	d := Data{MAC: "52:54:00:00:00:01", Hostname: "n1", IP: "10.0.0.1", Profile: p.Name, Labels: map[string]string{},
		Server: "http://10.0.0.254:8080", StatusURL: "http://10.0.0.254:8080/install/TOKEN/status",
		ConfigURL: "http://10.0.0.254:8080/install/TOKEN/config", JoinURL: "http://10.0.0.254:8080/install/TOKEN/join"}
	if p.Nomad != nil {
		d.Nomad = *p.Nomad
	}
	return d
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
		// Name, kernel, initrd and command line are written into the iPXE
		// script (IPXEScript), which has no quoting: what could change its
		// lines or commands is refused here, at its line, not at boot.
		if why := checkName(p.Name); why != "" {
			return nil, fmt.Errorf("%s: %s", at(""), why)
		}
		if why := checkAsset("kernel", p.Kernel); why != "" {
			return nil, fmt.Errorf("%s: %s", at("kernel"), why)
		}
		for _, f := range p.Initrd {
			if why := checkAsset("initrd", f); why != "" {
				return nil, fmt.Errorf("%s: %s", at("initrd"), why)
			}
		}
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
		p.cmdline, err = template.New(p.Name).Funcs(funcs()).Option("missingkey=error").Parse(p.Cmdline)
		if err != nil {
			return nil, fmt.Errorf("%s: cmdline template: %w", at("cmdline"), err)
		}
		cmdline, err := p.RenderCmdline(p.sample())
		if err != nil {
			return nil, fmt.Errorf("%s: %w", at("cmdline"), err)
		}
		if why := checkCmdline(cmdline); why != "" {
			return nil, fmt.Errorf("%s: %s", at("cmdline"), why)
		}
		if err := p.loadTemplates(filepath.Dir(path)); err != nil {
			return nil, fmt.Errorf("%s: profile %s: %w", at("templates"), p.Name, err)
		}
	}
	return parsed.Profiles, nil
}

// loadTemplates parses and test-renders every template file. A template's
// own errors carry its file and line (text/template names it by path).
func (p *Profile) loadTemplates(dir string) error {
	p.templates = map[string]*template.Template{}
	for name, file := range p.Templates {
		if name == "" || strings.ContainsAny(name, "/\\") {
			return fmt.Errorf("template name %q must be a plain file name", name)
		}
		if !filepath.IsAbs(file) {
			file = filepath.Join(dir, file)
		}
		src, err := os.ReadFile(file)
		if err != nil {
			return fmt.Errorf("template %s: %w", name, err)
		}
		t, err := template.New(file).Funcs(funcs()).Option("missingkey=error").Parse(string(src))
		if err != nil {
			return errors.New(strings.TrimPrefix(err.Error(), "template: "))
		}
		p.templates[name] = t
		if _, err := p.Render(name, p.sample()); err != nil {
			return err
		}
	}
	return nil
}

// ErrNoTemplate is Render's error for a name the profile does not have.
var ErrNoTemplate = errors.New("no such template")

// Render renders the named template for one node.
func (p *Profile) Render(name string, d Data) ([]byte, error) {
	t := p.templates[name]
	if t == nil {
		return nil, fmt.Errorf("%w: profile %s has no template %q", ErrNoTemplate, p.Name, name)
	}
	var b bytes.Buffer
	if err := t.Execute(&b, d); err != nil {
		return nil, errors.New(strings.TrimPrefix(err.Error(), "template: "))
	}
	return b.Bytes(), nil
}

// RenderCmdline renders the kernel command line for one node.
func (p *Profile) RenderCmdline(d Data) (string, error) {
	if p.cmdline == nil {
		// A Profile not made by LoadDir has no parsed template.
		if p.Cmdline != "" {
			return "", fmt.Errorf("profile %s: cmdline template not parsed (profiles come from LoadDir)", p.Name)
		}
		return "", nil
	}
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
