package netboot

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
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

// maxSums bounds what is read of a SHA256SUMS: import writes two lines of
// it, and it is read again for every request of a file beside it.
const maxSums = 64 << 10

// ErrMalformedSums means a SHA256SUMS holds something import never writes.
// Every file beside it is refused until it is imported again: a garbled
// line could be the one that vouched for the file asked for.
var ErrMalformedSums = errors.New("malformed SHA256SUMS")

// recorded is name's sum in the SHA256SUMS of its directory, or "" when
// the directory has none or it does not list name.
func (c *Checker) recorded(name string) (string, error) {
	dir, base := path.Split(name)
	sumsName := path.Join(dir, SumsFile)
	f, err := c.root.Open(sumsName)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSums+1))
	if err != nil {
		return "", err
	}
	where := filepath.Join(c.root.Name(), sumsName)
	if len(b) > maxSums {
		return "", fmt.Errorf("%s is larger than %d KiB (%w); import the tarball again (bootstrapd netboot import)", where, maxSums>>10, ErrMalformedSums)
	}
	found := ""
	seen := map[string]bool{}
	for i, line := range strings.Split(string(b), "\n") {
		if line == "" {
			continue
		}
		sum, file, ok := parseSumLine(line)
		if !ok || seen[file] {
			if len(line) > 100 {
				line = line[:100] + "..."
			}
			why := "is not \"<sha256 in hex>  <file>\""
			if ok {
				why = "lists " + file + " a second time"
			}
			return "", fmt.Errorf("%s:%d: %q %s (%w); import the tarball again (bootstrapd netboot import)", where, i+1, line, why, ErrMalformedSums)
		}
		seen[file] = true
		if file == base {
			found = sum
		}
	}
	return found, nil
}

// parseSumLine reads one line as sha256sum writes it: 64 hex digits, then
// two spaces (text mode) or a space and a star (binary mode), then the
// file name. The sum comes back in lower case, as Check computes it.
func parseSumLine(line string) (sum, file string, ok bool) {
	if len(line) < 64+2+1 {
		return "", "", false
	}
	sum, sep, file := line[:64], line[64:66], line[66:]
	if sep != "  " && sep != " *" {
		return "", "", false
	}
	if _, err := hex.DecodeString(sum); err != nil {
		return "", "", false
	}
	if strings.ContainsFunc(file, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return "", "", false
	}
	return strings.ToLower(sum), file, true
}
