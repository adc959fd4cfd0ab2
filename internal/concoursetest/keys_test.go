package concoursetest

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// TestKeygen: both key types are written 0600 with a .pub that matches,
// and the TSA loads them.
func TestKeygen(t *testing.T) {
	for _, kind := range []string{KeyRSA, KeyEd25519} {
		t.Run(kind, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "tsa_host_key")
			if err := os.WriteFile(p, []byte("old"), 0o644); err != nil {
				t.Fatal(err)
			}
			pub, err := Keygen(p, kind)
			if err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(p)
			if err != nil || fi.Mode().Perm() != 0o600 {
				t.Fatalf("key file %v, %v; want mode 0600", fi, err)
			}
			s, err := ReadHostKey(p)
			if err != nil {
				t.Fatal(err)
			}
			keys, err := ReadAuthorizedKeys(p + ".pub")
			if err != nil || len(keys) != 1 || ssh.FingerprintSHA256(keys[0]) != ssh.FingerprintSHA256(pub) ||
				ssh.FingerprintSHA256(s.PublicKey()) != ssh.FingerprintSHA256(pub) {
				t.Errorf(".pub %v, %v; want %s", keys, err, ssh.FingerprintSHA256(pub))
			}
		})
	}
	if _, err := Keygen(filepath.Join(t.TempDir(), "k"), "dsa"); err == nil {
		t.Error("Keygen of an unknown type succeeded")
	}
}

// TestWorkerFromEnv: the worker takes what `concourse worker` takes, and
// refuses, naming the variable, what the real worker could not use.
func TestWorkerFromEnv(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	rsaPEM, _ := workerKey(t)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	edBlock, err := ssh.MarshalPrivateKey(ed, "")
	if err != nil {
		t.Fatal(err)
	}
	hostPub, err := Keygen(filepath.Join(dir, "tsa_host_key"), KeyEd25519)
	if err != nil {
		t.Fatal(err)
	}
	good := map[string]string{
		"CONCOURSE_NAME":                   "n1",
		"CONCOURSE_TSA_HOST":               "10.77.0.10:2222,10.77.0.11:2222",
		"CONCOURSE_TSA_PUBLIC_KEY":         filepath.Join(dir, "tsa_host_key.pub"),
		"CONCOURSE_TSA_WORKER_PRIVATE_KEY": write("worker_key", rsaPEM),
		"CONCOURSE_TAG":                    "a,b",
	}
	for _, tt := range []struct {
		name   string
		change map[string]string
		want   string // "" for success
	}{
		{"good", nil, ""},
		{"no name", map[string]string{"CONCOURSE_NAME": ""}, "CONCOURSE_NAME is not set"},
		{"name with a space", map[string]string{"CONCOURSE_NAME": "n 1"}, "CONCOURSE_NAME"},
		{"TSA host without port", map[string]string{"CONCOURSE_TSA_HOST": "10.77.0.10"}, "not host:port"},
		{"no TSA key file", map[string]string{"CONCOURSE_TSA_PUBLIC_KEY": filepath.Join(dir, "nope")}, "CONCOURSE_TSA_PUBLIC_KEY"},
		{"empty TSA key file", map[string]string{"CONCOURSE_TSA_PUBLIC_KEY": write("empty.pub", nil)}, "holds no key"},
		{"ed25519 worker key", map[string]string{"CONCOURSE_TSA_WORKER_PRIVATE_KEY": write("ed", pem.EncodeToMemory(edBlock))}, "OPENSSH PRIVATE KEY"},
		{"public key as the private key", map[string]string{"CONCOURSE_TSA_WORKER_PRIVATE_KEY": good["CONCOURSE_TSA_PUBLIC_KEY"]}, "no PEM block"},
		{"directory as the key", map[string]string{"CONCOURSE_TSA_WORKER_PRIVATE_KEY": dir}, "not a regular file"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{}
			for k, v := range good {
				env[k] = v
			}
			for k, v := range tt.change {
				env[k] = v
			}
			w, err := WorkerFromEnv(func(k string) string { return env[k] })
			if tt.want != "" {
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Errorf("error %v, want %q", err, tt.want)
				}
				if body := strings.Split(string(rsaPEM), "\n")[1]; err != nil && strings.Contains(err.Error(), body) {
					t.Errorf("the error shows the key: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if w.Worker.Name != "n1" || len(w.TSAHosts) != 2 || len(w.Worker.Tags) != 2 ||
				len(w.TSAKeys) != 1 || ssh.FingerprintSHA256(w.TSAKeys[0]) != ssh.FingerprintSHA256(hostPub) {
				t.Errorf("worker %+v", w)
			}
		})
	}
}
