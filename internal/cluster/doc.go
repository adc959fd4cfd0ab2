// Package cluster makes an installed node part of the CI cluster: Vault
// (policies, a token role, one response-wrapped token per node, Concourse
// worker keys in KV v2) and Nomad (the Concourse worker system job,
// client introduction tokens, watching nodes register, draining them on
// retire). It talks to real Vault and Nomad through their Go API clients;
// every call is idempotent so the reconciler can retry it.
package cluster
