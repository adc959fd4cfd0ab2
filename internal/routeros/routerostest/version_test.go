package routerostest

import "testing"

func TestParseVersion(t *testing.T) {
	tests := []struct {
		in      string
		want    version
		wantErr bool
	}{
		{"7.19", v(7, 19), false},
		{"7.19.1", v(7, 19), false},
		{"6.49.10", v(6, 49), false},
		{"7.20beta2", v(7, 20), false},
		{"7", version{}, true},
		{"seven.1", version{}, true},
		{"7.x", version{}, true},
	}
	for _, tt := range tests {
		got, err := parseVersion(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("parseVersion(%q) = %v, %v", tt.in, got, err)
		}
	}
	if !v(7, 19).atLeast(v(7, 18)) || v(6, 49).atLeast(v(7, 0)) || !v(7, 0).atLeast(v(6, 49)) {
		t.Error("atLeast")
	}
}
