package config

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// The pinning edit works on the file's bytes, with hclsyntax's ranges saying
// where things are, rather than through hclwrite: hclwrite rebuilds the file
// from its tokens and re-spaces what it touches, and an operator's site file
// (aligned columns, comments) must come back exactly as written but for the
// one line.

// routerBlock reads the site file at path and returns its source and its
// router block, without validating anything else, so that it works on a
// site that does not load yet (no fingerprint is what it is there to fix).
func routerBlock(path string) ([]byte, *hclsyntax.Block, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read site config: %w", err)
	}
	b, err := routerBlockIn(path, src)
	return src, b, err
}

// routerBlockIn is routerBlock for a file's contents in memory.
func routerBlockIn(path string, src []byte) (*hclsyntax.Block, error) {
	f, diags := hclsyntax.ParseConfig(src, path, hcl.InitialPos)
	if diags.HasErrors() {
		return nil, diagError(path, diags)
	}
	var found *hclsyntax.Block
	for _, b := range f.Body.(*hclsyntax.Body).Blocks {
		if b.Type != "router" {
			continue
		}
		if found != nil {
			return nil, &Error{File: path, Pos: b.TypeRange.Start, Msg: "a second router block: a site has one"}
		}
		found = b
	}
	if found == nil {
		return nil, &Error{File: path, Pos: hcl.InitialPos, Msg: "no router block: add one (README: The router)"}
	}
	return found, nil
}

// stringAttr is a literal string attribute of b, or "" when b has none.
func stringAttr(path string, b *hclsyntax.Block, name string) (string, error) {
	a := b.Body.Attributes[name]
	if a == nil {
		return "", nil
	}
	v, diags := a.Expr.Value(nil)
	if diags.HasErrors() || v.Type() != cty.String || v.IsNull() {
		return "", &Error{File: path, Pos: a.SrcRange.Start, Msg: fmt.Sprintf("router %s is not a string", name)}
	}
	return v.AsString(), nil
}

// RouterAPI is the router block's api address in the site file at path,
// read without validating the rest of the site.
func RouterAPI(path string) (string, error) {
	_, b, err := routerBlock(path)
	if err != nil {
		return "", err
	}
	api, err := stringAttr(path, b, "api")
	if err == nil && api == "" {
		err = &Error{File: path, Pos: b.TypeRange.Start, Msg: "the router block has no api = \"host:8729\""}
	}
	return api, err
}

// PinFingerprint writes fingerprint = "<fp>" into the router block of the
// site file at path and returns the line it is on. A fingerprint already
// there gets the new value; otherwise a line is added under api, indented
// and aligned like it. Every other byte of the file stays as it was, and
// the file keeps its mode. changed is false when the pin was there already.
func PinFingerprint(path, fp string) (line int, changed bool, err error) {
	if !fingerprintRE.MatchString(fp) {
		return 0, false, fmt.Errorf("fingerprint %q is not a SHA-256 in hex", fp)
	}
	src, b, err := routerBlock(path)
	if err != nil {
		return 0, false, err
	}
	if a := b.Body.Attributes["ca_file"]; a != nil {
		return 0, false, &Error{File: path, Pos: a.SrcRange.Start,
			Msg: "the router block trusts the router through ca_file; remove that line to pin the fingerprint instead (one or the other)"}
	}
	quoted := strconv.Quote(fp)
	var out []byte
	if a := b.Body.Attributes["fingerprint"]; a != nil {
		r := a.Expr.Range()
		out = splice(src, r.Start.Byte, r.End.Byte, quoted)
		line = a.SrcRange.Start.Line
	} else {
		api := b.Body.Attributes["api"]
		if api == nil {
			return 0, false, &Error{File: path, Pos: b.TypeRange.Start, Msg: "the router block has no api = \"host:8729\""}
		}
		// The new line goes after api's line, which must end inside the
		// block (not `router { api = "..." }` on one line).
		nl := bytes.IndexByte(src[api.SrcRange.End.Byte:], '\n')
		if nl < 0 || api.SrcRange.End.Byte+nl >= b.CloseBraceRange.Start.Byte {
			return 0, false, &Error{File: path, Pos: api.SrcRange.Start,
				Msg: fmt.Sprintf("cannot add a line under api here; put fingerprint = %s into the router block yourself", quoted)}
		}
		at := api.SrcRange.End.Byte + nl + 1
		lineStart := api.SrcRange.Start.Byte - (api.SrcRange.Start.Column - 1)
		indent := src[lineStart:api.SrcRange.Start.Byte]
		if len(bytes.TrimLeft(indent, " \t")) != 0 {
			indent = []byte("  ") // api is not first on its line
		}
		// Align "=" with api's, as `hclfmt` and the README do.
		pad := max(1, api.EqualsRange.Start.Column-api.NameRange.End.Column+len("api")-len("fingerprint"))
		text := fmt.Sprintf("%sfingerprint%s= %s\n", indent, strings.Repeat(" ", pad), quoted)
		out = splice(src, at, at, text)
		line = api.SrcRange.Start.Line + 1
	}
	if bytes.Equal(out, src) {
		return line, false, nil
	}
	// Read back what was written before it replaces the file.
	if b2, err := routerBlockIn(path, out); err != nil {
		return 0, false, fmt.Errorf("the edited file does not parse (nothing was written): %w", err)
	} else if got, _ := stringAttr(path, b2, "fingerprint"); got != fp {
		return 0, false, fmt.Errorf("the edited file does not hold the fingerprint (nothing was written)")
	}
	return line, true, replaceFile(path, out)
}

func splice(src []byte, from, to int, text string) []byte {
	out := make([]byte, 0, len(src)+len(text))
	out = append(out, src[:from]...)
	out = append(out, text...)
	return append(out, src[to:]...)
}

// replaceFile writes b to path through a temporary file in the same
// directory and a rename, so a crash leaves the old file or the new one,
// never half of one; the new file keeps the old one's mode.
func replaceFile(path string, b []byte) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after a successful rename there is nothing to remove
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(fi.Mode().Perm()); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
