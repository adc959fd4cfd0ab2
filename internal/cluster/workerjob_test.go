package cluster

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// taskBlocks parses a rendered worker job and returns the nested blocks
// of its task name, by type.
func taskBlocks(t *testing.T, src, name string) map[string][]*hclsyntax.Block {
	t.Helper()
	f, diags := hclsyntax.ParseConfig([]byte(src), "job.hcl", hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatalf("rendered job does not parse: %v\n%s", diags, src)
	}
	var task *hclsyntax.Block
	var walk func(b *hclsyntax.Body)
	walk = func(b *hclsyntax.Body) {
		for _, blk := range b.Blocks {
			if blk.Type == "task" && blk.Labels[0] == name {
				task = blk
				return
			}
			walk(blk.Body)
		}
	}
	walk(f.Body.(*hclsyntax.Body))
	if task == nil {
		t.Fatalf("no task %q in\n%s", name, src)
	}
	out := map[string][]*hclsyntax.Block{}
	for _, blk := range task.Body.Blocks {
		out[blk.Type] = append(out[blk.Type], blk)
	}
	return out
}

func attrValue(t *testing.T, b *hclsyntax.Block, name string) cty.Value {
	t.Helper()
	a, ok := b.Body.Attributes[name]
	if !ok {
		return cty.NilVal
	}
	v, diags := a.Expr.Value(nil)
	if diags.HasErrors() {
		t.Fatalf("%s.%s: %v", b.Type, name, diags)
	}
	return v
}

// TestRenderWorkerJobVault: each Vault integration renders its own vault
// block (policies for the token integration, a role for workload
// identity) and the key template, in the task that reads the key (the
// stand-in's prestart key check, the real worker); no Vault renders
// neither. Nomad 1.6 parses the token form in TestNomadCluster; this
// covers the role form, which 1.6 does not know.
func TestRenderWorkerJobVault(t *testing.T) {
	for _, tt := range []struct {
		name      string
		job       WorkerJob
		task      string // the one that reads the key
		policies  []string
		role      string
		templates int
	}{
		{"stand-in without vault", WorkerJob{StandIn: true}, "worker", nil, "", 0},
		{"stand-in, token", WorkerJob{StandIn: true, Vault: VaultToken}, "key-check", []string{PolicyConcourseWorker}, "", 1},
		{"stand-in, workload identity", WorkerJob{StandIn: true, Vault: VaultWorkloadIdentity, VaultRole: "cw"}, "key-check", nil, "cw", 1},
		{"real, token, own policy", WorkerJob{Vault: VaultToken, VaultPolicy: "ci-worker", TSAHost: "tsa:2222", TSAPublicKey: "ssh-rsa AAAA"}, "worker", []string{"ci-worker"}, "", 2},
		{"real, workload identity", WorkerJob{Vault: VaultWorkloadIdentity, VaultRole: "concourse-worker", TSAHost: "tsa:2222", TSAPublicKey: "ssh-rsa AAAA"}, "worker", nil, "concourse-worker", 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			src, err := RenderWorkerJob(workerTemplate, tt.job)
			if err != nil {
				t.Fatal(err)
			}
			blocks := taskBlocks(t, src, tt.task)
			if tt.task != WorkerTask && len(taskBlocks(t, src, WorkerTask)["vault"]) != 0 {
				t.Errorf("the stand-in worker task has a vault block of its own:\n%s", src)
			}
			if got := len(blocks["template"]); got != tt.templates {
				t.Errorf("%d templates, want %d", got, tt.templates)
			}
			if tt.policies == nil && tt.role == "" {
				if len(blocks["vault"]) != 0 {
					t.Errorf("a vault block without Vault:\n%s", src)
				}
				return
			}
			if len(blocks["vault"]) != 1 {
				t.Fatalf("%d vault blocks:\n%s", len(blocks["vault"]), src)
			}
			v := blocks["vault"][0]
			if p := attrValue(t, v, "policies"); tt.policies != nil {
				var got []string
				if p != cty.NilVal {
					for _, e := range p.AsValueSlice() {
						got = append(got, e.AsString())
					}
				}
				if !slices.Equal(got, tt.policies) || attrValue(t, v, "role") != cty.NilVal {
					t.Errorf("vault block: policies %q, want %q and no role", got, tt.policies)
				}
			} else if r := attrValue(t, v, "role"); r == cty.NilVal || r.AsString() != tt.role {
				t.Errorf("vault block: role %v, want %q and no policies", r, tt.role)
			}
			key := blocks["template"][0].Body.Attributes["data"]
			if key == nil || !strings.Contains(string(key.SrcRange.SliceBytes([]byte(src))), `"kv/data/concourse/workers/%s" (env "node.unique.name")`) {
				t.Errorf("no worker key template:\n%s", src)
			}
		})
	}
}

// TestStandInWorkerChecksKey runs the stand-in's key check (its prestart
// task's shell command, as rendered) against a secrets directory the way
// Nomad's template would fill it: a valid key passes (exit 0, and the
// worker task starts); a missing or malformed one fails it, so the worker
// task never runs and the node never reaches ready. The worker task itself
// runs until SIGUSR2, as a drain sends.
func TestStandInWorkerChecksKey(t *testing.T) {
	src, err := RenderWorkerJob(workerTemplate, WorkerJob{StandIn: true, Vault: VaultToken})
	if err != nil {
		t.Fatal(err)
	}
	script := func(task string) string {
		cfg := taskBlocks(t, src, task)["config"][0]
		if cmd := attrValue(t, cfg, "command"); cmd.AsString() != "/bin/sh" {
			t.Fatalf("%s: command %v", task, cmd)
		}
		args := attrValue(t, cfg, "args").AsValueSlice()
		if len(args) != 2 || args[0].AsString() != "-c" {
			t.Fatalf("%s: args %v", task, args)
		}
		return args[1].AsString()
	}
	check := script("key-check")
	priv, pub, err := GenerateWorkerKey()
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		key  []byte // nil: no file
		ok   bool
	}{
		{"valid key", append(priv, '\n'), true},
		{"missing", nil, false},
		{"empty", []byte("\n"), false},
		{"public key instead", pub, false},
		{"cut short", priv[:len(priv)/2], false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if tt.key != nil {
				if err := os.WriteFile(filepath.Join(dir, "worker_key"), tt.key, 0o400); err != nil {
					t.Fatal(err)
				}
			}
			cmd := exec.Command("/bin/sh", "-c", check)
			cmd.Env = []string{"PATH=/usr/bin:/bin", "NOMAD_SECRETS_DIR=" + dir, "NODE_NAME=n1"}
			out, err := cmd.CombinedOutput()
			switch {
			case tt.ok && (err != nil || !strings.Contains(string(out), "key for n1 read from Vault")):
				t.Errorf("a valid key: %v, output %q", err, out)
			case !tt.ok && (err == nil || !strings.Contains(string(out), "no RSA private key")):
				t.Errorf("passed: %v, output %q", err, out)
			}
		})
	}

	t.Run("worker runs until SIGUSR2", func(t *testing.T) {
		cmd := exec.Command("/bin/sh", "-c", script(WorkerTask))
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			t.Fatalf("the stand-in worker exited on its own: %v", err)
		case <-time.After(500 * time.Millisecond):
		}
		_ = cmd.Process.Signal(syscall.SIGUSR2)
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("after SIGUSR2: %v", err)
			}
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			t.Fatal("did not exit on SIGUSR2")
		}
	})
}
