package api

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/bootstrapd/bootstrapd/internal/profile"
)

// TestEnrollNeedsAProfile: a node is enrolled with a loaded profile, its
// own or the site's default; without either, enroll is refused and says
// which profiles there are, rather than the node finding out at its first
// PXE boot.
func TestEnrollNeedsAProfile(t *testing.T) {
	two := map[string]*profile.Profile{
		"void-nomad": {Name: "void-nomad", Kernel: "void/vmlinuz", Timeout: time.Hour},
		"plain":      {Name: "plain", Kernel: "vmlinuz", LocalBoot: "exit", Timeout: time.Hour},
	}
	cases := []struct {
		name         string
		profiles     map[string]*profile.Profile
		def, profile string
		want         string // the profile enrolled with, or "!" and the error
	}{
		{"default", two, "plain", "", "plain"},
		{"given", two, "", "void-nomad", "void-nomad"},
		{"given over the default", two, "plain", "void-nomad", "void-nomad"},
		{"neither", two, "", "", "!which install profile? give -profile plain, or set default_profile in the site (loaded: plain, void-nomad)"},
		{"unknown", two, "", "nope", `!no profile named "nope" (loaded: plain, void-nomad;`},
		{"none loaded", nil, "", "", "!no install profiles are loaded"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, _ := newServer(t, slog.New(slog.NewTextHandler(io.Discard, nil)))
			s.Profiles, s.DefaultProfile = c.profiles, c.def
			cl, _ := listen(t, s)
			n, err := cl.Enroll(context.Background(), EnrollRequest{MAC: "52:54:00:aa:bb:01", Profile: c.profile})
			if want, ok := strings.CutPrefix(c.want, "!"); ok {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("enrolled %+v, %v; want refused with %q", n, err, want)
				}
				return
			}
			if err != nil || n.Profile != c.want {
				t.Errorf("enrolled %q, %v; want %q", n.Profile, err, c.want)
			}
		})
	}
}
