package netboot

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"sync"
	"time"
)

// Checker verifies served files against the SHA256SUMS recorded beside
// them at import. Files without a recorded sum (the iPXE binaries, say)
// pass. A verified file is not hashed again until its size or mtime change.
type Checker struct {
	root *os.Root
	mu   sync.Mutex
	ok   map[string]stamp
}

type stamp struct {
	size int64
	mod  time.Time
}

// NewChecker checks files under root.
func NewChecker(root *os.Root) *Checker {
	return &Checker{root: root, ok: map[string]stamp{}}
}

// ErrMismatch means a file is not what was imported.
var ErrMismatch = errors.New("does not match its recorded sha256")

// Check verifies f (opened as name under the root). It leaves f's offset
// at the start.
func (c *Checker) Check(name string, f *os.File, fi fs.FileInfo) error {
	want, err := c.recorded(name)
	if err != nil || want == "" {
		return err
	}
	st := stamp{fi.Size(), fi.ModTime()}
	c.mu.Lock()
	seen, ok := c.ok[name]
	c.mu.Unlock()
	if ok && seen == st {
		return nil
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return fmt.Errorf("%s %w (%s, have %s): import it again", name, ErrMismatch, want[:12], got[:12])
	}
	c.mu.Lock()
	c.ok[name] = st
	c.mu.Unlock()
	return nil
}

// recorded is name's sum in the SHA256SUMS of its directory, or "".
func (c *Checker) recorded(name string) (string, error) {
	dir, base := path.Split(name)
	f, err := c.root.Open(path.Join(dir, SumsFile))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		sum, file, ok := strings.Cut(sc.Text(), "  ")
		if ok && file == base {
			return sum, nil
		}
	}
	return "", sc.Err()
}
