package routerostest

import (
	"fmt"
	"strconv"
	"strings"
)

// version is a RouterOS release as major.minor; the patch level never
// changes the API behaviour this router models.
type version struct{ major, minor int }

// parseVersion accepts "7.19", "7.19.1", "6.49.10" and "7.20beta2".
func parseVersion(s string) (version, error) {
	parts := strings.SplitN(s, ".", 3)
	if len(parts) < 2 {
		return version{}, fmt.Errorf("routerostest: version %q: want major.minor", s)
	}
	major, err := strconv.Atoi(parts[0])
	if err != nil {
		return version{}, fmt.Errorf("routerostest: version %q: %w", s, err)
	}
	minorDigits := parts[1]
	if i := strings.IndexFunc(parts[1], func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
		minorDigits = parts[1][:i]
	}
	minor, err := strconv.Atoi(minorDigits)
	if err != nil {
		return version{}, fmt.Errorf("routerostest: version %q: %w", s, err)
	}
	return version{major, minor}, nil
}

// v builds a version literal for the menu tables.
func v(major, minor int) version { return version{major, minor} }

// atLeast reports whether x is the same release as floor or a later one.
func (x version) atLeast(floor version) bool {
	if x.major != floor.major {
		return x.major > floor.major
	}
	return x.minor >= floor.minor
}

// zero reports whether x is unset (no bound).
func (x version) zero() bool { return x == version{} }
