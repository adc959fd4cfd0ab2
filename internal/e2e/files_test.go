package e2e

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bootstrapd/bootstrapd/internal/netlab"
)

// TestTFTPAndHTTPWithRealClients fetches netboot files with tftp-hpa and
// curl from another namespace, and checks that every way out of the netboot
// directory is refused while the server keeps serving.
func TestTFTPAndHTTPWithRealClients(t *testing.T) {
	lab := netlab.NewLab(t, "10.91.0.1/24")
	dir := t.TempDir()
	writeSite(t, lab, dir, `  mode = "off"`, "")
	nb := filepath.Join(dir, "netboot")
	if err := os.Symlink("/etc/hostname", filepath.Join(nb, "escape")); err != nil {
		t.Fatal(err)
	}
	startDaemon(t, lab, dir)
	host := lab.AddHost(t, "10.91.0.2/24")
	want, _ := os.ReadFile(filepath.Join(nb, "undionly.kpxe"))

	run := func(name string, args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		out, err := host.Command(ctx, name, args...).CombinedOutput()
		return string(out), err
	}
	out := filepath.Join(dir, "out")
	fetched := func() []byte { b, _ := os.ReadFile(out); os.Remove(out); return b }

	// tftp-hpa (blksize 512).
	if o, err := run("tftp", "10.91.0.1", "-m", "binary", "-c", "get", "undionly.kpxe", out); err != nil || !bytes.Equal(fetched(), want) {
		t.Fatalf("tftp-hpa get (apt-get install tftp-hpa): %v\n%s", err, o)
	}
	// curl over TFTP with a negotiated block size.
	if o, err := run("curl", "-sS", "--tftp-blksize", "1468", "-o", out, "tftp://10.91.0.1/undionly.kpxe"); err != nil || !bytes.Equal(fetched(), want) {
		t.Fatalf("curl tftp: %v\n%s", err, o)
	}
	// curl over HTTP, whole file and a range.
	if o, err := run("curl", "-sSf", "-o", out, "http://10.91.0.1:8080/assets/undionly.kpxe"); err != nil || !bytes.Equal(fetched(), want) {
		t.Fatalf("curl http: %v\n%s", err, o)
	}
	o, err := run("curl", "-sSf", "-r", "100-1123", "-o", out, "-w", "%{http_code}", "http://10.91.0.1:8080/assets/undionly.kpxe")
	if got := fetched(); err != nil || o != "206" || !bytes.Equal(got, want[100:1124]) {
		t.Fatalf("curl range: code %s, %d bytes, err %v", o, len(got), err)
	}

	// Ways out of the directory. tftp-hpa exits 0 on a TFTP error, so the
	// output and the absence of the file are what count.
	for _, name := range []string{"../site.hcl", "/etc/passwd", "escape", "a/../../site.hcl"} {
		o, _ := run("tftp", "10.91.0.1", "-m", "binary", "-c", "get", name, out)
		if got := fetched(); len(got) > 0 || !strings.Contains(o, "Error code") {
			t.Errorf("tftp get %q: got %d bytes, output %q", name, len(got), o)
		}
		if o, err := run("curl", "-sS", "--path-as-is", "-o", out, "tftp://10.91.0.1/"+strings.TrimPrefix(name, "/")); err == nil {
			t.Errorf("curl tftp %q succeeded: %s (%d bytes)", name, o, len(fetched()))
		}
		fetched()
		if o, err := run("curl", "-sSfL", "--path-as-is", "-o", out, "http://10.91.0.1:8080/assets/"+name); err == nil {
			t.Errorf("curl http %q succeeded: %s (%d bytes)", name, o, len(fetched()))
		}
		fetched()
	}
	// Writes are refused.
	src := filepath.Join(dir, "upload")
	os.WriteFile(src, []byte("x"), 0o644)
	if o, _ := run("tftp", "10.91.0.1", "-m", "binary", "-c", "put", src, "upload"); !strings.Contains(o, "Error code") {
		t.Errorf("tftp put was not refused: %q", o)
	}
	if _, err := os.Stat(filepath.Join(nb, "upload")); err == nil {
		t.Error("tftp put wrote a file")
	}
	// Still serving after all that.
	if o, err := run("tftp", "10.91.0.1", "-m", "binary", "-c", "get", "snponly.efi", out); err != nil || len(fetched()) == 0 {
		t.Fatalf("tftp after refusals: %v\n%s", err, o)
	}
}
