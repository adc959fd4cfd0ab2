package e2e

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bootstrapd/bootstrapd/internal/netlab"
)

// TestStalledLogReader: bootstrapd's stderr is a pipe that nobody reads
// once it has started (a paused pager, a wedged journald). The pipe holds
// 64 KiB; the requests below log ten times that. Every one is answered in
// time, and once the reader comes back every line is there.
func TestStalledLogReader(t *testing.T) {
	lab := netlab.NewLab(t, "10.89.0.1/24")
	dir := t.TempDir()
	site := writeSite(t, lab, dir, `  mode   = "reservation"
  subnet = "10.89.0.0/24"`, "")
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	cmd := lab.Command(context.Background(), binary(t), "serve", "-config", site, "-log-format", "json")
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill(); <-exited })

	// Read until it serves, then stop reading.
	lines := bufio.NewReader(pr)
	var head strings.Builder
	for !strings.Contains(head.String(), "bootstrapd serving") {
		line, err := lines.ReadString('\n')
		if err != nil {
			t.Fatalf("bootstrapd exited at start: %v\n%s", err, head.String())
		}
		head.WriteString(line)
	}

	hc := &http.Client{Transport: &http.Transport{DialContext: lab.Dial}, Timeout: 5 * time.Second}
	const requests = 3000 // ~250 bytes of log each: 750 KB
	for i := range requests {
		resp, err := hc.Get("http://" + lab.Addr.String() + ":8080/boot.ipxe")
		if err != nil {
			t.Fatalf("request %d, with the log unread: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d: %s", i, resp.Status)
		}
	}

	// The reader comes back; a stop flushes what is queued.
	rest := make(chan string)
	go func() { b, _ := io.ReadAll(lines); rest <- string(b) }()
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		exited <- err
		if err != nil {
			t.Errorf("bootstrapd after SIGTERM: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("bootstrapd did not stop within 10 s of SIGTERM")
	}
	log := <-rest
	if n := strings.Count(log, `"path":"/boot.ipxe"`); n != requests || !strings.Contains(log, "bootstrapd stopped") {
		t.Errorf("%d of %d requests logged, stop logged: %v", n, requests, strings.Contains(log, "bootstrapd stopped"))
	}
}
