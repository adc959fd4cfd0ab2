package netboot

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type entry struct {
	name, body string
	typ        byte
	link       string
}

func tarball(t *testing.T, dir, name string, entries ...entry) string {
	t.Helper()
	p := filepath.Join(dir, name)
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	gz := gzip.NewWriter(f)
	tw := tar.NewWriter(gz)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.body)), Typeflag: e.typ, Linkname: e.link}
		if e.typ == 0 {
			h.Typeflag = tar.TypeReg
		} else {
			h.Size = 0
		}
		tw.WriteHeader(h)
		tw.Write([]byte(e.body))
	}
	tw.Close()
	gz.Close()
	f.Close()
	return p
}

func sum(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }

func TestImport(t *testing.T) {
	src, nb := t.TempDir(), t.TempDir()
	good := tarball(t, src, "void-x86_64-NETBOOT-20250202.tar.gz",
		entry{name: "../../escape", body: "x"},                            // never written: names come from the wanted list
		entry{name: "vmlinuz", typ: tar.TypeSymlink, link: "/etc/passwd"}, // not a plain file: skipped
		entry{name: "void/vmlinuz", body: "KERNEL"},
		entry{name: "void/initrd", body: "INITRD"},
		entry{name: "void/pxelinux.0", body: "PXELINUX"},
	)
	imp, err := Import(good, nb, "void")
	if err != nil {
		t.Fatal(err)
	}
	if imp.Dir != "void-x86_64-20250202" || imp.Sums["vmlinuz"] != sum("KERNEL") || imp.Skipped {
		t.Errorf("import: %+v", imp)
	}
	for f, want := range map[string]string{
		"void/vmlinuz":    "KERNEL",
		"void/initrd":     "INITRD",
		"void/SHA256SUMS": sum("KERNEL") + "  vmlinuz\n" + sum("INITRD") + "  initrd\n",
	} {
		if b, err := os.ReadFile(filepath.Join(nb, f)); err != nil || string(b) != want {
			t.Errorf("%s = %q, %v", f, b, err)
		}
	}
	entries, _ := os.ReadDir(nb)
	if len(entries) != 2 { // the versioned dir and the link, no temp dirs or escapes
		t.Errorf("netboot dir holds %v", entries)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(nb), "escape")); err == nil {
		t.Error("a ../ entry escaped")
	}
	if again, err := Import(good, nb, "void"); err != nil || !again.Skipped {
		t.Errorf("re-import: %+v %v", again, err)
	}

	// A newer build moves the link; the old one stays for a rollback.
	newer := tarball(t, src, "void-x86_64-NETBOOT-20260101.tar.gz", entry{name: "vmlinuz", body: "K2"}, entry{name: "initrd", body: "I2"})
	if _, err := Import(newer, nb, "void"); err != nil {
		t.Fatal(err)
	}
	if target, _ := os.Readlink(filepath.Join(nb, "void")); target != "void-x86_64-20260101" {
		t.Errorf("link -> %s", target)
	}

	for _, c := range []struct {
		name    string
		entries []entry
		want    string
	}{
		{"void-x86_64-NETBOOT-20250202.tar.gz", []entry{{name: "vmlinuz", body: "OTHER"}, {name: "initrd", body: "INITRD"}}, "already imported with different content"},
		{"void-x86_64-NETBOOT-20270101.tar.gz", []entry{{name: "vmlinuz", body: "K"}}, "has no initrd"},
		{"void-live-x86_64-20250202-base.iso", nil, "not a Void netboot tarball name"},
	} {
		if _, err := Import(tarball(t, t.TempDir(), c.name, c.entries...), nb, "void"); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
}

func TestChecker(t *testing.T) {
	src, nb := t.TempDir(), t.TempDir()
	if _, err := Import(tarball(t, src, "void-x86_64-NETBOOT-20250202.tar.gz",
		entry{name: "vmlinuz", body: "KERNEL"}, entry{name: "initrd", body: "INITRD"}), nb, "void"); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(nb, "undionly.kpxe"), []byte("ipxe"), 0o644)
	root, err := os.OpenRoot(nb)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	c := NewChecker(root)
	check := func(name string) error {
		f, err := root.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		fi, _ := f.Stat()
		return c.Check(name, f, fi)
	}
	for _, name := range []string{"void/vmlinuz", "void/initrd", "undionly.kpxe"} {
		if err := check(name); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	// Tampered after import: refused.
	os.WriteFile(filepath.Join(nb, "void-x86_64-20250202", "initrd"), []byte("EVIL!!"), 0o644)
	if err := check("void/initrd"); !errors.Is(err, ErrMismatch) {
		t.Errorf("tampered initrd: %v", err)
	}
}
