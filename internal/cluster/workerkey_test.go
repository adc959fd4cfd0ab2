package cluster

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh"
)

// sharedWorkerKey is generated once per test binary and handed out to
// every test: RSA generation costs up to seconds here, and what a test
// checks is where a key goes, not that two keys differ.
var sharedWorkerKey = sync.OnceValue(func() (k struct {
	priv, pub []byte
	err       error
}) {
	k.priv, k.pub, k.err = GenerateWorkerKey()
	return k
})

// testWorkerKey stands in for GenerateWorkerKey in a Vault under test and
// counts how often it is asked for a key.
type testWorkerKey struct {
	mu    sync.Mutex
	calls int
}

func (k *testWorkerKey) gen() ([]byte, []byte, error) {
	k.mu.Lock()
	k.calls++
	k.mu.Unlock()
	s := sharedWorkerKey()
	return s.priv, s.pub, s.err
}

func (k *testWorkerKey) count() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.calls
}

// checkWorkerKeyPair fails t unless priv is a PKCS#1 PEM RSA key, as the
// Concourse worker loads it, whose public half is the authorized key pub.
func checkWorkerKeyPair(t *testing.T, priv, pub []byte) {
	t.Helper()
	block, rest := pem.Decode(priv)
	if block == nil || block.Type != "RSA PRIVATE KEY" || len(bytes.TrimSpace(rest)) != 0 {
		t.Fatalf("private key is not one PEM block of type RSA PRIVATE KEY: %.40q", priv)
	}
	key, err := x509.ParsePKCS1PrivateKey(block.Bytes)
	if err != nil {
		t.Fatalf("parse PKCS#1: %v", err)
	}
	if err := key.Validate(); err != nil {
		t.Fatalf("RSA key invalid: %v", err)
	}
	if got := key.N.BitLen(); got != workerKeyBits {
		t.Errorf("key has %d bits, want %d", got, workerKeyBits)
	}
	parsed, _, _, rest2, err := ssh.ParseAuthorizedKey(pub)
	if err != nil || len(bytes.TrimSpace(rest2)) != 0 {
		t.Fatalf("public key %q is not one authorized_keys line: %v", pub, err)
	}
	want, err := ssh.NewPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if parsed.Type() != ssh.KeyAlgoRSA || !bytes.Equal(parsed.Marshal(), want.Marshal()) {
		t.Fatalf("public key %q is not the private key's public half", pub)
	}
}

func TestGenerateWorkerKey(t *testing.T) {
	var k testWorkerKey
	priv, pub, err := k.gen()
	if err != nil {
		t.Fatal(err)
	}
	checkWorkerKeyPair(t, priv, pub)
	if !strings.HasPrefix(string(pub), "ssh-rsa ") || !strings.HasSuffix(string(pub), "\n") {
		t.Errorf("authorized key %q: want one ssh-rsa line", pub)
	}
}

func TestCheckNodeHostname(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"n7", true},
		{"node-01", true},
		{"n7.rack1.lab", true},
		{"N7", true},
		{strings.Repeat("a", 63), true},
		{"", false},
		{".", false},
		{"..", false},
		{"../web", false},
		{"a/../../web", false},
		{"a/b", false},
		{"n7/", false},
		{"*", false},
		{"+", false},
		{"n7.", false},
		{".n7", false},
		{"a..b", false},
		{"-n7", false},
		{"n7-", false},
		{"n_7", false},
		{"n 7", false},
		{"n7\n", false},
		{"n7%2f..", false},
		{"{{identity.entity.name}}", false},
		{"nö", false},
		{strings.Repeat("a", 64), false},
		{strings.Repeat("a.", 127) + "a", false}, // 255 characters
	} {
		t.Run(fmt.Sprintf("%.20q", tc.name), func(t *testing.T) {
			err := checkNodeHostname(tc.name)
			if (err == nil) != tc.ok {
				t.Fatalf("checkNodeHostname(%q) = %v, want ok=%v", tc.name, err, tc.ok)
			}
		})
	}
}

// BenchmarkRSAKeygen measures what the worker key size costs; see
// workerKeyBits. Run with -benchtime=20x: each iteration is one key.
func BenchmarkRSAKeygen(b *testing.B) {
	for _, bits := range []int{3072, 4096} {
		b.Run(fmt.Sprint(bits), func(b *testing.B) {
			for b.Loop() {
				if _, err := rsa.GenerateKey(rand.Reader, bits); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkGenerateWorkerKey(b *testing.B) {
	for b.Loop() {
		if _, _, err := GenerateWorkerKey(); err != nil {
			b.Fatal(err)
		}
	}
}

func TestVaultWorkerKey(t *testing.T) {
	t.Parallel()
	keys := &testWorkerKey{}
	srv, v, w := testVault(t, keys)
	ctx := t.Context()
	kv := rootClient(t, srv).KVv2("kv")
	read := func(node string) (priv, pub string) {
		t.Helper()
		s, err := kv.Get(ctx, "concourse/workers/"+node)
		if err != nil {
			t.Fatal(err)
		}
		priv, _ = s.Data["private_key"].(string)
		pub, _ = s.Data["public_key"].(string)
		w.add(priv)
		return priv, pub
	}
	listed := func() []string {
		t.Helper()
		s, err := rootClient(t, srv).Logical().List("kv/metadata/concourse/workers/")
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		if s != nil {
			for _, k := range s.Data["keys"].([]any) {
				names = append(names, k.(string))
			}
		}
		return names
	}
	put := func(node string) bool {
		t.Helper()
		created, err := v.PutWorkerKey(ctx, node)
		w.checkErr(t, err)
		if err != nil {
			t.Fatal(err)
		}
		return created
	}

	if !put("n7") {
		t.Fatal("first PutWorkerKey: created=false")
	}
	priv, pub := read("n7")
	checkWorkerKeyPair(t, []byte(priv), []byte(pub))

	// A second call keeps the key, and does not even generate one.
	calls := keys.count()
	if put("n7") {
		t.Error("second PutWorkerKey: created=true")
	}
	if p2, _ := read("n7"); p2 != priv || keys.count() != calls {
		t.Errorf("second PutWorkerKey replaced the key or generated one (%d calls)", keys.count()-calls)
	}

	// Two racing writers: one writes, the other keeps the first's key.
	var wg sync.WaitGroup
	results := make(chan bool, 2)
	for range 2 {
		wg.Go(func() {
			created, err := v.PutWorkerKey(ctx, "n9")
			if err != nil {
				t.Error(err)
			}
			results <- created
		})
	}
	wg.Wait()
	if a, b := <-results, <-results; a == b {
		t.Errorf("racing PutWorkerKey: created %v and %v, want exactly one", a, b)
	}
	if s, err := kv.GetMetadata(ctx, "concourse/workers/n9"); err != nil || s.CurrentVersion != 1 {
		t.Errorf("after the race: %v, %+v; want one version", err, s)
	}

	// A soft-deleted key leaves nothing to read: write a new version.
	if err := kv.Delete(ctx, "concourse/workers/n9"); err != nil {
		t.Fatal(err)
	}
	if !put("n9") {
		t.Error("PutWorkerKey after a soft delete: created=false")
	}
	if p, _ := read("n9"); p == "" {
		t.Error("no key readable after PutWorkerKey over a soft delete")
	}

	if got := listed(); !slices.Equal(got, []string{"n7", "n9"}) {
		t.Fatalf("listed %q, want n7 n9", got)
	}
	for range 2 {
		err := v.DeleteWorkerKey(ctx, "n7")
		w.checkErr(t, err)
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := listed(); !slices.Equal(got, []string{"n9"}) {
		t.Errorf("after DeleteWorkerKey(n7) listed %q, want n9", got)
	}
	if err := v.DeleteWorkerKey(ctx, "never-there"); err != nil {
		t.Errorf("DeleteWorkerKey of a node without a key: %v", err)
	}

	// Hostile names are refused before Vault is asked anything.
	for _, bad := range []string{"", "..", "../web", "n9/../../web", "*", "n7\n"} {
		if _, err := v.PutWorkerKey(ctx, bad); err == nil || !strings.Contains(err.Error(), "not a hostname") {
			t.Errorf("PutWorkerKey(%q) = %v", bad, err)
		}
		if err := v.DeleteWorkerKey(ctx, bad); err == nil {
			t.Errorf("DeleteWorkerKey(%q) worked", bad)
		}
	}
	if got := listed(); !slices.Equal(got, []string{"n9"}) {
		t.Errorf("after hostile names listed %q, want n9", got)
	}
}
