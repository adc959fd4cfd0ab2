package main

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

// TestRun: the subcommands' argument handling; the TSA and the worker
// themselves are tested in package concoursetest.
func TestRun(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct {
		name  string
		args  []string
		usage bool
		out   string
	}{
		{"no command", nil, true, ""},
		{"unknown command", []string{"web"}, true, ""},
		{"keygen without file", []string{"keygen"}, true, ""},
		{"keygen", []string{"keygen", "-t", "ed25519", filepath.Join(dir, "k")}, false, "stand-in TSA host key SHA256:"},
		{"tsa without keys", []string{"tsa", "-listen", "127.0.0.1:0"}, true, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			err := run(context.Background(), tt.args, &out, &errb)
			if got := errors.As(err, new(usageError)); got != tt.usage {
				t.Fatalf("run(%q) = %v; usage error %t, want %t", tt.args, err, got, tt.usage)
			}
			if !tt.usage && (err != nil || !strings.Contains(out.String(), tt.out)) {
				t.Errorf("run(%q) = %v, output %q", tt.args, err, out.String())
			}
		})
	}
}
