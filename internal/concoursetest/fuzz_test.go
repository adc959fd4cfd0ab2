package concoursetest

import (
	"bytes"
	"testing"
)

// FuzzParseWorker: any bytes on a command's stdin give a worker with a
// loggable name, or an error; never a panic.
func FuzzParseWorker(f *testing.F) {
	f.Add([]byte(`{"name":"n1","platform":"linux","tags":["a"],"team":"main","addr":"","start_time":1}`))
	f.Add([]byte(`{"name":"n1"}{"name":"n2"}`))
	f.Add([]byte(`{"name":"n\u00001"}`))
	f.Add([]byte("{\"name\":\"\xff\"}"))
	f.Fuzz(func(t *testing.T, b []byte) {
		w, err := ParseWorker(bytes.NewReader(b))
		if err != nil {
			return
		}
		if w.Name == "" || len(w.Name) > maxField || bytes.ContainsAny([]byte(w.Name), " \n\r\t") || len(w.Tags) > maxTags {
			t.Errorf("accepted worker %+v", w)
		}
	})
}

// FuzzParseCommand: any exec request gives a known command or an error.
func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{"forward-worker --garden 0.0.0.0:7777 --baggageclaim 0.0.0.0:7788", "retire-worker", "", "  ", "rm -rf /"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCommand(s)
		if err == nil && (c.Name == "" || len(s) > maxCommand) {
			t.Errorf("accepted %q as %+v", s, c)
		}
	})
}

// FuzzParseAuthorizedKeys: any authorized keys file parses or errs.
func FuzzParseAuthorizedKeys(f *testing.F) {
	f.Add([]byte("# comment\n\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIF4bJkC1pr3cYbSwbRzr4W5hpAKH3FoQytDeGyGOiKUd w\n"))
	f.Add([]byte("ssh-rsa AAAA\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ParseAuthorizedKeys(b)
	})
}

// FuzzParseWorkerKey: any key file gives an RSA signer or an error.
func FuzzParseWorkerKey(f *testing.F) {
	f.Add([]byte("-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----\n"))
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseWorkerKey(b)
		if err == nil && s.PublicKey().Type() != "ssh-rsa" {
			t.Errorf("accepted a %s key", s.PublicKey().Type())
		}
	})
}
