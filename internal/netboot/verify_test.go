package netboot

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// checkWith writes sums as void/SHA256SUMS beside an initrd holding
// "INITRD" and checks the initrd, turning a panic into a test failure.
func checkWith(t *testing.T, sums string) (sumsPath string, err error) {
	t.Helper()
	nb := t.TempDir()
	dir := filepath.Join(nb, "void")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	sumsPath = filepath.Join(dir, SumsFile)
	for name, body := range map[string]string{"initrd": "INITRD", SumsFile: sums} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	root, err := os.OpenRoot(nb)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	f, err := root.Open("void/initrd")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("Check panicked on SHA256SUMS %q: %v", sums, r)
		}
	}()
	return sumsPath, NewChecker(root).Check("void/initrd", f, fi)
}

// TestCheckerSums: a SHA256SUMS line that is not "<64 hex>  <file>" is an
// error naming the file and line (it was a panic for a short sum, and a
// garbled line was skipped, leaving its file unchecked), and never a pass.
func TestCheckerSums(t *testing.T) {
	good := sum("INITRD")
	cases := []struct {
		name, sums string
		line       string // "" for success; else the ":N:" the error names
		want       error
	}{
		{"good", good + "  initrd\n", "", nil},
		{"binary marker", good + " *initrd\n", "", nil},
		{"upper case", strings.ToUpper(good) + "  initrd\n", "", nil},
		{"blank lines", "\n" + sum("K") + "  vmlinuz\n\n" + good + "  initrd\n", "", nil},
		{"not listed", sum("K") + "  vmlinuz\n", "", nil},
		{"empty", "", "", nil},
		{"mismatch", sum("OTHER") + "  initrd\n", "", ErrMismatch},
		{"short sum", "abc  initrd\n", ":1:", ErrMalformedSums},
		{"short sum, second line", sum("K") + "  vmlinuz\nabc  initrd\n", ":2:", ErrMalformedSums},
		{"not hex", strings.Repeat("g", 64) + "  initrd\n", ":1:", ErrMalformedSums},
		{"long sum", good + "00  initrd\n", ":1:", ErrMalformedSums},
		{"one space", good + " initrd\n", ":1:", ErrMalformedSums},
		{"garbage before the file's line", "garbage\n" + good + "  initrd\n", ":1:", ErrMalformedSums},
		{"no file name", good + "  \n", ":1:", ErrMalformedSums},
		{"carriage return", good + "  initrd\r\n", ":1:", ErrMalformedSums},
		{"listed twice", good + "  initrd\n" + sum("X") + "  initrd\n", ":2:", ErrMalformedSums},
		{"huge", strings.Repeat(good+"  x\n", 2000), "", ErrMalformedSums},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sumsPath, err := checkWith(t, c.sums)
			if c.want == nil {
				if err != nil {
					t.Fatalf("Check: %v", err)
				}
				return
			}
			if !errors.Is(err, c.want) {
				t.Fatalf("Check: %v, want %v", err, c.want)
			}
			if c.want == ErrMalformedSums && !strings.Contains(err.Error(), sumsPath+c.line) {
				t.Errorf("error %q does not name %s%s", err, sumsPath, c.line)
			}
		})
	}
}
