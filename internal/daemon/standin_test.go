package daemon

import (
	"crypto/sha256"
	"encoding/hex"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bootstrapd/bootstrapd/internal/cluster"
	"github.com/bootstrapd/bootstrapd/internal/config"
)

// TestWorkerJobStandInWorker: with nomad.stand_in_worker, the worker job
// fetches the binary from the node HTTP server at the address nodes use,
// with the file's sha256; without it, it names no binary.
func TestWorkerJobStandInWorker(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "concourse-standin")
	if err := os.WriteFile(bin, []byte("\x7fELF stand-in"), 0o755); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("\x7fELF stand-in"))
	for _, tt := range []struct {
		name, listen, binary string
		want                 []string
		notWant              string
		err                  string
	}{
		{"any address", ":8080", bin, []string{`source      = "http://10.77.0.1:8080/stand-in/concourse-standin"`, `checksum = "sha256:` + hex.EncodeToString(sum[:]) + `"`}, "", ""},
		{"own address", "10.77.0.2:8081", bin, []string{`"http://10.77.0.2:8081/stand-in/concourse-standin"`}, "", ""},
		{"none", ":8080", "", nil, "artifact", ""},
		{"gone since load", ":8080", bin + ".old", nil, "", "nomad.stand_in_worker"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			site := &config.Site{Server: netip.MustParseAddr("10.77.0.1"), HTTP: &config.HTTP{Listen: tt.listen},
				Vault: &config.Vault{KVMount: "kv"},
				Nomad: &config.Nomad{WorkerTemplate: "../../profiles/concourse-worker.nomad.hcl.tmpl", StandIn: true, StandInWorker: tt.binary,
					TSAHost: "10.77.0.1:2222", TSAPublicKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIF4bJkC1pr3cYbSwbRzr4W5hpAKH3FoQytDeGyGOiKUd tsa"}}
			job, err := WorkerJob(site, cluster.Arrangement{VaultIntegration: cluster.VaultToken})
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Errorf("WorkerJob: %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.want {
				if !strings.Contains(job, w) {
					t.Errorf("no %s in\n%s", w, job)
				}
			}
			if tt.notWant != "" && strings.Contains(job, tt.notWant) {
				t.Errorf("%s in\n%s", tt.notWant, job)
			}
		})
	}
}
