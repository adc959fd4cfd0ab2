package cluster

import (
	"strings"
	"testing"
)

func TestParseVersion(t *testing.T) {
	for in, want := range map[string]Version{
		"1.6.1": {1, 6, 1}, "v1.11.3": {1, 11, 3}, "1.6.1-dev": {1, 6, 1}, "1.10.0+ent": {1, 10, 0}, "2.0.5": {2, 0, 5},
	} {
		if got, err := ParseVersion(in); err != nil || got != want {
			t.Errorf("ParseVersion(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "1.6", "one.two.three", "x1.6.1"} {
		if _, err := ParseVersion(bad); err == nil || !strings.Contains(err.Error(), "MAJOR.MINOR.PATCH") {
			t.Errorf("ParseVersion(%q): %v", bad, err)
		}
	}
}

// TestArrange: the Vault integration and introduction tokens each Nomad
// version gets, by default and as a site asks, and the refusals that name
// the version.
func TestArrange(t *testing.T) {
	yes, no := true, false
	for _, tt := range []struct {
		version     string
		integration string
		intro       *bool
		want        string // VaultIntegration, or the error's text
		introWant   bool
	}{
		{"1.6.1", "", nil, VaultToken, false},
		{"1.6.3", VaultToken, &no, VaultToken, false},
		{"1.7.0", "", nil, VaultWorkloadIdentity, false},
		{"1.9.7", VaultToken, nil, VaultToken, false}, // deprecated, still there
		{"1.10.0", "", nil, VaultWorkloadIdentity, false},
		{"1.11.3", "", nil, VaultWorkloadIdentity, true},
		{"1.11.3", "", &no, VaultWorkloadIdentity, false},
		{"2.0.5", VaultWorkloadIdentity, &yes, VaultWorkloadIdentity, true},
		{"1.6.1", VaultWorkloadIdentity, nil, "run 1.6.1, which has no workload identity for Vault", false},
		{"1.10.0", VaultToken, nil, "run 1.10.0, which removed the token integration", false},
		{"1.10.2", "", &yes, "run 1.10.2, which has no client introduction tokens", false},
		{"1.6.1", "approle", nil, `vault integration "approle"`, false},
	} {
		v, err := ParseVersion(tt.version)
		if err != nil {
			t.Fatal(err)
		}
		a, err := Arrange(v, tt.integration, tt.intro)
		switch {
		case tt.want != VaultToken && tt.want != VaultWorkloadIdentity:
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Arrange(%s, %q, %v) = %+v, %v; want error %q", v, tt.integration, tt.intro, a, err, tt.want)
			}
		case err != nil || a.VaultIntegration != tt.want || a.Introduction != tt.introWant || !strings.HasPrefix(a.Why, "Nomad "+tt.version+": "):
			t.Errorf("Arrange(%s, %q, %v) = %+v, %v; want %s, introduction %v", v, tt.integration, tt.intro, a, err, tt.want, tt.introWant)
		}
	}
}
