package cluster

import (
	"context"
	"encoding/json"
	"maps"
	"net"
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
	"github.com/hashicorp/nomad/api"
	"github.com/zclconf/go-cty/cty"
	"golang.org/x/crypto/ssh"

	"github.com/bootstrapd/bootstrapd/internal/cluster/clustertest"
	"github.com/bootstrapd/bootstrapd/internal/concoursetest"
	"github.com/bootstrapd/bootstrapd/internal/testlog"
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

// standInJob is a stand-in worker job with the concourse-standin binary.
func standInJob() WorkerJob {
	return WorkerJob{StandIn: true, Vault: VaultToken, TSAHost: "10.77.0.1:2222", TSAPublicKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIF4bJkC1pr3cYbSwbRzr4W5hpAKH3FoQytDeGyGOiKUd tsa",
		StandInURL: "http://10.77.0.1:8080/stand-in/concourse-standin", StandInSHA256: strings.Repeat("0123456789abcdef", 4)}
}

// TestRenderWorkerJobStandInBinary: with a stand-in binary, the worker
// task fetches it with its checksum and runs it with the real worker's
// environment and key templates, as Nomad 1.6 parses the job; what could
// not be fetched safely or connect is refused.
func TestRenderWorkerJobStandInBinary(t *testing.T) {
	j := standInJob()
	src, err := RenderWorkerJob(workerTemplate, j)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "job.hcl")
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	// `nomad job run -output` parses the jobspec locally, as the servers
	// would, and prints the API job without submitting it.
	out, err := exec.Command(clustertest.Binary(t, "nomad"), "job", "run", "-output", path).Output()
	if err != nil {
		t.Fatalf("nomad 1.6 does not parse the job: %v\n%s", err, src)
	}
	var parsed struct{ Job api.Job }
	if err := json.Unmarshal(out, &parsed); err != nil {
		t.Fatal(err)
	}
	tasks := parsed.Job.TaskGroups[0].Tasks
	if len(tasks) != 2 || tasks[0].Name != "key-check" || tasks[0].Vault == nil || tasks[1].Name != WorkerTask {
		t.Fatalf("tasks %+v", tasks)
	}
	w := tasks[1]
	if len(w.Artifacts) != 1 {
		t.Fatalf("artifacts %+v", w.Artifacts)
	}
	a := w.Artifacts[0]
	if *a.GetterSource != j.StandInURL || a.GetterOptions["checksum"] != "sha256:"+j.StandInSHA256 ||
		*a.GetterMode != "file" || *a.RelativeDest != "local/concourse-standin" {
		t.Errorf("artifact %+v", a)
	}
	want := map[string]string{
		"CONCOURSE_NAME": "${node.unique.name}", "CONCOURSE_TSA_HOST": j.TSAHost,
		"CONCOURSE_TSA_PUBLIC_KEY":         "${NOMAD_SECRETS_DIR}/tsa_host_key.pub",
		"CONCOURSE_TSA_WORKER_PRIVATE_KEY": "${NOMAD_SECRETS_DIR}/worker_key",
	}
	if w.Driver != "raw_exec" || w.KillSignal != "SIGUSR2" || w.Vault == nil || len(w.Templates) != 2 || !maps.Equal(w.Env, want) {
		t.Errorf("worker task: driver %s kill %s vault %v templates %d env %v", w.Driver, w.KillSignal, w.Vault, len(w.Templates), w.Env)
	}
	if got := *w.Templates[1].EmbeddedTmpl; got != j.TSAPublicKey {
		t.Errorf("TSA key template %q", got)
	}

	for _, tt := range []struct {
		name   string
		change func(*WorkerJob)
		want   string
	}{
		{"no vault", func(j *WorkerJob) { j.Vault = "" }, "no Vault integration"},
		{"no TSA host", func(j *WorkerJob) { j.TSAHost = "" }, "TSA host"},
		{"no TSA key", func(j *WorkerJob) { j.TSAPublicKey = "" }, "TSA public key"},
		{"ftp URL", func(j *WorkerJob) { j.StandInURL = "ftp://10.77.0.1/concourse-standin" }, "not an http(s) URL"},
		{"no checksum", func(j *WorkerJob) { j.StandInSHA256 = "" }, "sha256"},
		{"upper-case checksum", func(j *WorkerJob) { j.StandInSHA256 = strings.ToUpper(j.StandInSHA256) }, "lowercase hex"},
		{"checksum without URL", func(j *WorkerJob) { j.StandInURL = "" }, "not an http(s) URL"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			j := standInJob()
			tt.change(&j)
			if _, err := RenderWorkerJob(workerTemplate, j); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("RenderWorkerJob: %v, want %q", err, tt.want)
			}
		})
	}
}

// TestStandInBinaryRegisters runs the worker task's command as rendered,
// the way raw_exec would after fetching the artifact (a file without the
// execute bit), against the stand-in TSA: the worker registers with the
// key in its secrets directory, and retires and exits 0 on SIGUSR2.
func TestStandInBinaryRegisters(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("no go command to build concourse-standin: %v", err)
	}
	dir := t.TempDir()
	taskDir, secrets := filepath.Join(dir, "local"), filepath.Join(dir, "secrets")
	for _, d := range []string{taskDir, secrets} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(taskDir, "concourse-standin")
	if out, err := exec.Command(goBin, "build", "-o", bin, "../concoursetest/standin").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	if err := os.Chmod(bin, 0o644); err != nil { // as go-getter writes it
		t.Fatal(err)
	}
	tsaKey := filepath.Join(dir, "tsa_host_key")
	tsaPub, err := concoursetest.Keygen(tsaKey, concoursetest.KeyEd25519)
	if err != nil {
		t.Fatal(err)
	}
	priv, pub, err := GenerateWorkerKey()
	if err != nil {
		t.Fatal(err)
	}
	authorized := filepath.Join(dir, "authorized_worker_keys")
	for name, b := range map[string][]byte{authorized: pub, filepath.Join(secrets, "worker_key"): priv,
		filepath.Join(secrets, "tsa_host_key.pub"): ssh.MarshalAuthorizedKey(tsaPub)} {
		if err := os.WriteFile(name, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	hostKey, err := concoursetest.ReadHostKey(tsaKey)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	events := &testlog.Buffer{}
	tsa := &concoursetest.TSA{HostKey: hostKey, AuthorizedKeys: authorized, Events: events}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go tsa.Serve(ctx, ln)

	j := standInJob()
	j.TSAHost = ln.Addr().String()
	src, err := RenderWorkerJob(workerTemplate, j)
	if err != nil {
		t.Fatal(err)
	}
	blocks := taskBlocks(t, src, WorkerTask)
	args := attrValue(t, blocks["config"][0], "args").AsValueSlice()
	env := []string{"PATH=/usr/bin:/bin", "NOMAD_TASK_DIR=" + taskDir}
	for k, v := range blocks["env"][0].Body.Attributes {
		// Nomad's interpolation, by hand: the values are plain quoted
		// strings with ${...} in them.
		s := strings.Trim(string(v.Expr.Range().SliceBytes([]byte(src))), `"`)
		s = strings.ReplaceAll(s, "${NOMAD_SECRETS_DIR}", secrets)
		env = append(env, k+"="+strings.ReplaceAll(s, "${node.unique.name}", "n1"))
	}
	cmd := exec.Command("/bin/sh", args[0].AsString(), args[1].AsString())
	cmd.Env, cmd.Dir = env, dir
	var out testlog.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	fp := ssh.FingerprintSHA256(mustPublicKey(t, pub))
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(events.String(), "stand-in TSA: worker n1 registered (key "+fp+")") {
		select {
		case err := <-done:
			t.Fatalf("the stand-in worker exited: %v\n%s", err, out.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("not registered:\nTSA: %s\nworker: %s", events.String(), out.String())
		}
	}
	cmd.Process.Signal(syscall.SIGUSR2)
	select {
	case err := <-done:
		if err != nil || !strings.Contains(events.String(), "stand-in TSA: worker n1 retired") {
			t.Errorf("after SIGUSR2: %v\nTSA: %s\nworker: %s", err, events.String(), out.String())
		}
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		t.Fatal("did not exit on SIGUSR2")
	}
	if strings.Contains(out.String(), strings.Split(string(priv), "\n")[1]) {
		t.Error("the worker's output shows its private key")
	}
}

func mustPublicKey(t *testing.T, authorized []byte) ssh.PublicKey {
	t.Helper()
	k, _, _, _, err := ssh.ParseAuthorizedKey(authorized)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
