package clustertest

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// VaultServer is a running `vault server -dev`: in memory, unsealed, HTTP
// on loopback, KV v2 at secret/ (as -dev always mounts it).
type VaultServer struct {
	Addr      string // http://127.0.0.1:<port>
	RootToken string // random per server, so a test can look for it in logs
	LogPath   string // the server's stdout and stderr
	// HTTP reaches Addr from the test process (through the namespace of
	// a Place); give it to vaultapi.Config.HttpClient.
	HTTP *http.Client
}

// StartVault starts a dev-mode Vault on loopback for t and stops it when
// t ends. Its output goes to a file that is printed if the test fails.
func StartVault(t testing.TB) *VaultServer {
	t.Helper()
	return StartVaultIn(t, Place{})
}

// StartVaultIn is StartVault at a Place: on a lab's network.
func StartVaultIn(t testing.TB, at Place) *VaultServer {
	t.Helper()
	bin := Binary(t, "vault")
	dir := t.TempDir()
	token := "root-" + rand.Text()
	// A free port found now may be taken before vault binds it; vault then
	// exits at once, and another port is tried.
	var err error
	for attempt := 1; attempt <= 3; attempt++ {
		var s *VaultServer
		if s, err = startVault(t, at, bin, dir, token, attempt); err == nil {
			return s
		}
	}
	t.Fatalf("clustertest: %v", err)
	return nil
}

func startVault(t testing.TB, at Place, bin, dir, token string, attempt int) (*VaultServer, error) {
	port, err := freePortPair()
	if err != nil {
		return nil, err
	}
	listen := net.JoinHostPort(at.host(), strconv.Itoa(port))
	s := &VaultServer{
		Addr:      "http://" + listen,
		RootToken: token,
		LogPath:   filepath.Join(dir, fmt.Sprintf("vault-%d.log", attempt)),
		HTTP:      at.client(),
	}
	// The root token goes by environment, not argv (which `ps` shows to
	// every user), as bootstrapd's own secrets do.
	p, err := startProc(at.NS, bin, dir, s.LogPath, []string{"VAULT_DEV_ROOT_TOKEN_ID=" + token},
		"server", "-dev", "-dev-no-store-token", "-dev-listen-address="+listen)
	if err != nil {
		return nil, err
	}
	cmd, exited := p.cmd, p.exited
	if err := waitHealthy(s.HTTP, s.Addr, exited, time.Minute); err != nil {
		_ = cmd.Process.Kill()
		logTail(t, s.LogPath)
		return nil, fmt.Errorf("vault dev server at %s: %w (output above, full log %s)", s.Addr, err, s.LogPath)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			logTail(t, s.LogPath)
		}
	})
	return s, nil
}

// waitHealthy polls /v1/sys/health until Vault answers 200 (initialized,
// unsealed, active), the process exits, or the time is up.
func waitHealthy(client *http.Client, addr string, exited <-chan struct{}, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, addr+"/v1/sys/health", nil)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("sys/health answers %s", resp.Status)
		}
		select {
		case <-exited:
			return errors.New("exited before it was healthy (log above)")
		case <-ctx.Done():
			return fmt.Errorf("not healthy after %s: %v", limit, err)
		case <-tick.C:
		}
	}
}

// freePortPair finds a loopback port p with p+1 free too: vault -dev also
// binds its cluster listener on the next port.
func freePortPair() (int, error) {
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		p := l.Addr().(*net.TCPAddr).Port
		l2, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p+1))
		l.Close()
		if err == nil {
			l2.Close()
			return p, nil
		}
	}
	return 0, errors.New("no free pair of loopback ports")
}

// logTail shows the end of a server log in the test output.
func logTail(t testing.TB, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Logf("clustertest: %v", err)
		return
	}
	if len(b) > 8<<10 {
		b = b[len(b)-8<<10:]
	}
	t.Logf("clustertest: %s (end):\n%s", path, b)
}
