package config

import "time"

// Discovery bounds what unknown MACs can make bootstrapd keep: anyone on
// the provisioning network can send DHCP from as many made-up MACs as they
// like, and each would be a discovered node.
type Discovery struct {
	MaxNodes    int    `hcl:"max_nodes,optional"`    // discovered nodes kept at once; default 512
	ForgetAfter string `hcl:"forget_after,optional"` // a discovered node unseen this long is forgotten; default 24h

	ForgetAfterD time.Duration
}

// Defaults and bounds of the discovery block.
const (
	DefaultMaxDiscovered = 512
	DefaultForgetAfter   = 24 * time.Hour
	maxMaxDiscovered     = 65536
)

func (s *Site) validateDiscovery() error {
	if s.Discovery == nil {
		s.Discovery = &Discovery{}
	}
	d := s.Discovery
	if d.MaxNodes == 0 {
		d.MaxNodes = DefaultMaxDiscovered
	}
	if d.MaxNodes < 1 || d.MaxNodes > maxMaxDiscovered {
		return s.Errorf("discovery.max_nodes", "discovery max_nodes %d must be from 1 to %d", d.MaxNodes, maxMaxDiscovered)
	}
	d.ForgetAfterD = DefaultForgetAfter
	if d.ForgetAfter != "" {
		v, err := time.ParseDuration(d.ForgetAfter)
		if err != nil || v < time.Minute || v > 30*24*time.Hour {
			return s.Errorf("discovery.forget_after", "discovery forget_after %q must be a duration from 1m to 720h, like \"24h\"", d.ForgetAfter)
		}
		d.ForgetAfterD = v
	}
	return nil
}
