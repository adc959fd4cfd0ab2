package config

import (
	"crypto/x509"
	"path/filepath"
	"time"
)

// BMCPasswordEnv is where the site-wide BMC password comes from when the
// bmc block names no password_file. Never a flag: argv is world-readable.
const BMCPasswordEnv = "BOOTSTRAPD_BMC_PASSWORD"

// Bounds of the bmc block. A BMC that takes longer than MaxBMCTimeout to
// answer one request is broken, and the retries are power cycles of a
// machine that did not install: a handful is plenty.
const (
	DefaultBMCTimeout = 10 * time.Second
	MinBMCTimeout     = 100 * time.Millisecond
	MaxBMCTimeout     = 5 * time.Minute
	MaxInstallRetries = 10
)

// BMC is the bmc block: how bootstrapd logs in to nodes' baseboard
// management controllers (IPMI or Redfish), and what the lifecycle does
// with them. Each node names its own BMC (enroll -bmc); the credentials
// here are the default a node's own reference (-bmc-credentials)
// overrides. The block is optional: without it nodes may still have a BMC,
// each with its own credentials.
type BMC struct {
	User         string `hcl:"user,optional"`
	PasswordFile string `hcl:"password_file,optional"`
	// Redfish speaks HTTPS: its certificate is checked against CAFile, or
	// pinned by Fingerprint, or (neither) the system's roots. Plain HTTP
	// sends the password in the clear, so only with InsecureHTTP.
	CAFile       string `hcl:"ca_file,optional"`
	Fingerprint  string `hcl:"fingerprint,optional"`
	InsecureHTTP bool   `hcl:"insecure_http,optional"`
	// Timeout bounds each request to a BMC: one that stops answering
	// fails the action, it never hangs it.
	Timeout string `hcl:"timeout,optional"`
	// PowerOnEnroll is what enroll does without -power: true sets a
	// one-time PXE boot and powers the node (when it has a BMC).
	PowerOnEnroll bool `hcl:"power_on_enroll,optional"`
	// PowerOffOnRetire adds "power off" to retire's teardown steps.
	PowerOffOnRetire bool `hcl:"power_off_on_retire,optional"`
	// InstallRetries is how many times an install that misses its deadline
	// is retried by a power cycle (with the one-time PXE boot) before the
	// node is failed; only nodes with a BMC are retried.
	InstallRetries int `hcl:"install_retries,optional"`

	TimeoutD time.Duration
	RootCAs  *x509.CertPool
	password string
}

// Password is the site-wide BMC password from password_file or the
// environment ("" when the site gives no default credentials).
func (b *BMC) Password() string { return b.password }

// String describes the block without the password.
func (b BMC) String() string {
	return "bmc user=" + b.User + " password_file=" + b.PasswordFile
}

// bmcDefaults makes the block present (the daemon reads its defaults
// whether or not the site wrote it) and its paths absolute.
func (s *Site) bmcDefaults(dir string) {
	if s.BMC == nil {
		s.BMC = &BMC{}
	}
	for _, p := range []*string{&s.BMC.PasswordFile, &s.BMC.CAFile} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
}

// validateBMC checks the bmc block and reads its password.
func (s *Site) validateBMC() error {
	b := s.BMC
	b.TimeoutD = DefaultBMCTimeout
	if b.Timeout != "" {
		d, err := time.ParseDuration(b.Timeout)
		if err != nil || d < MinBMCTimeout || d > MaxBMCTimeout {
			return s.Errorf("bmc.timeout", "bmc timeout %q must be a duration from %v to %v, like \"10s\"", b.Timeout, MinBMCTimeout, MaxBMCTimeout)
		}
		b.TimeoutD = d
	}
	if b.InstallRetries < 0 || b.InstallRetries > MaxInstallRetries {
		return s.Errorf("bmc.install_retries", "install_retries %d is outside 0..%d (power cycles of an install that missed its deadline)", b.InstallRetries, MaxInstallRetries)
	}
	if b.InsecureHTTP && (b.CAFile != "" || b.Fingerprint != "") {
		key := "bmc.ca_file"
		if b.Fingerprint != "" {
			key = "bmc.fingerprint"
		}
		return s.Errorf(key, "insecure_http = true sends Redfish requests, and the password, over plain HTTP, where a certificate means nothing: remove insecure_http or %s", key[len("bmc."):])
	}
	var err error
	if b.RootCAs, err = s.tlsTrust("bmc", b.Fingerprint, b.CAFile, "`openssl s_client -connect <bmc>:443 | openssl x509 -noout -fingerprint -sha256` prints a BMC's"); err != nil {
		return err
	}
	if b.PasswordFile != "" && b.User == "" {
		return s.Errorf("bmc.password_file", "bmc password_file is set but user is not: set user = \"...\" (the BMC account bootstrapd logs in as)")
	}
	// Without a user there are no site-wide credentials, and every node
	// with a BMC names its own (-bmc-credentials).
	b.password, err = s.credential("bmc.password_file", b.PasswordFile, BMCPasswordEnv, "BMC password", b.User != "")
	if b.User == "" {
		b.password = ""
	}
	return err
}
