package api

import (
	"fmt"
	"strings"

	"github.com/bootstrapd/bootstrapd/internal/profile"
)

// profile is the loaded profile a node is enrolled with. Every node needs
// one: a node enrolled without would find out only at its first PXE boot,
// at the rack, that it has nothing to install ("profile "", which is not
// loaded"), so enroll says it now, with what there is to choose from.
func (s *Server) profile(name string) (*profile.Profile, error) {
	if p := s.Profiles[name]; p != nil {
		return p, nil
	}
	loaded := profile.Names(s.Profiles)
	switch {
	case len(loaded) == 0:
		return nil, fmt.Errorf("no install profiles are loaded: put one in the site's profiles_dir (README: Profiles) and restart bootstrapd, then enroll with -profile <name> or set default_profile")
	case name == "":
		return nil, fmt.Errorf("which install profile? give -profile %s, or set default_profile in the site (loaded: %s)",
			loaded[0], strings.Join(loaded, ", "))
	}
	return nil, fmt.Errorf("no profile named %q (loaded: %s; see `bootstrapd profiles`)", name, strings.Join(loaded, ", "))
}
