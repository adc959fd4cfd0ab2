package e2e

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bootstrapd/bootstrapd/internal/netlab"
	nomadapi "github.com/hashicorp/nomad/api"
)

// webStandIn is a stand-in for Concourse's web node, as far as worker keys
// go (it is not Concourse): a batch job with seed 000's
// authorized_worker_keys template, the one in
// examples/demo/concourse-web.nomad.hcl (the concourse-web policy, LIST over
// the workers' metadata, one read per worker), whose task prints what Nomad
// rendered. It runs on a client named "web". Its verbs: the job's ID, then
// the template.
const webStandIn = `job %q {
  type        = "batch"
  datacenters = ["*"]
  constraint {
    attribute = "${node.unique.name}"
    value     = "web"
  }
  group "web" {
    restart {
      attempts = 0
      mode     = "fail"
    }
    reschedule {
      attempts  = 0
      unlimited = false
    }
    task "web" {
      driver = "raw_exec"
      config {
        command = "/bin/cat"
        args    = ["${NOMAD_SECRETS_DIR}/authorized_worker_keys"]
      }
      vault {
        policies = ["concourse-web"]
      }
      template {
        destination = "${NOMAD_SECRETS_DIR}/authorized_worker_keys"
        data        = <<-EOF
%s
        EOF
      }
      resources {
        cpu    = 20
        memory = 32
      }
    }
  }
}
`

// webKeys runs the web stand-in once (run numbers its job) and returns the
// authorized_worker_keys it rendered. Each run renders afresh: a long-lived
// web task would only see a change when consul-template next polls Vault
// (every 5 minutes for a LIST).
func webKeys(t *testing.T, nc *nomadapi.Client, run int) string {
	t.Helper()
	id := fmt.Sprintf("concourse-web-standin-%d", run)
	job, err := nc.Jobs().ParseHCL(fmt.Sprintf(webStandIn, id, workerKeysTemplate(t)), true)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := nc.Jobs().Register(job, nil); err != nil {
		t.Fatal(err)
	}
	var alloc *nomadapi.AllocationListStub
	eventually(t, 90*time.Second, id+" complete", func() bool {
		allocs, _, err := nc.Jobs().Allocations(id, true, nil)
		if err != nil || len(allocs) == 0 {
			return false
		}
		alloc = allocs[0]
		if alloc.ClientStatus == nomadapi.AllocClientStatusFailed {
			t.Fatalf("%s failed: %+v", id, alloc.TaskStates)
		}
		return alloc.ClientStatus == nomadapi.AllocClientStatusComplete
	})
	return allocLog(t, nc, alloc.ID, "web")
}

// workerKeysTemplate is the authorized_worker_keys template of seed 000's
// web job as examples/demo/concourse-web.nomad.hcl has it.
func workerKeysTemplate(t *testing.T) string {
	t.Helper()
	root, _ := netlab.RepoRoot()
	b, err := os.ReadFile(filepath.Join(root, "examples", "demo", "concourse-web.nomad.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	_, body, ok := strings.Cut(string(b), "data        = <<-EOF\n")
	body, _, ok2 := strings.Cut(body, "\n        EOF")
	if !ok || !ok2 {
		t.Fatal("examples/demo/concourse-web.nomad.hcl: no authorized_worker_keys template (data = <<-EOF ... EOF)")
	}
	return body
}

// workerOutput is the stdout of a task of the worker job on the named node.
func workerOutput(t *testing.T, nc *nomadapi.Client, node, task string) string {
	t.Helper()
	allocs, _, err := nc.Jobs().Allocations("concourse-worker", true, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range allocs {
		if a.NodeName == node {
			return allocLog(t, nc, a.ID, task)
		}
	}
	t.Fatalf("no worker allocation on %s", node)
	return ""
}

func allocLog(t *testing.T, nc *nomadapi.Client, allocID, task string) string {
	t.Helper()
	a, _, err := nc.Allocations().Info(allocID, nil)
	if err != nil {
		t.Fatal(err)
	}
	r, err := nc.AllocFS().Cat(a, "alloc/logs/"+task+".stdout.0", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, _ := io.ReadAll(r)
	return string(b)
}
