package netboot

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// tarGz is entries as a gzipped tarball, in memory.
func tarGz(t testing.TB, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.body)), Typeflag: e.typ, Linkname: e.link}
		if e.typ == 0 {
			h.Typeflag = tar.TypeReg
		} else {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil && h.Size > 0 {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// FuzzImport: any bytes as a NETBOOT tarball import or fail, never panic,
// and an import leaves exactly what it says: vmlinuz and initrd with the
// sums it reports, SHA256SUMS listing them, and the link on the version.
func FuzzImport(f *testing.F) {
	f.Add(tarGz(f, entry{name: "vmlinuz", body: "KERNEL"}, entry{name: "initrd", body: "INITRD"}))
	f.Add(tarGz(f,
		entry{name: "../../escape", body: "x"},
		entry{name: "vmlinuz", typ: tar.TypeSymlink, link: "/etc/passwd"},
		entry{name: "void/", typ: tar.TypeDir},
		entry{name: "void/vmlinuz", body: "KERNEL"},
		entry{name: "void/initrd", body: "INITRD"},
		entry{name: "void/initrd", body: "SECOND"},
		entry{name: "void/pxelinux.0", body: "PXELINUX"},
		entry{name: "initrd", typ: tar.TypeLink, link: "void/vmlinuz"},
	))
	f.Add(tarGz(f, entry{name: "vmlinuz", body: "K"}))
	f.Add([]byte{})
	f.Add([]byte{0x1f, 0x8b})
	f.Fuzz(func(t *testing.T, data []byte) {
		src, nb := t.TempDir(), t.TempDir()
		tarball := filepath.Join(src, "void-x86_64-NETBOOT-20250202.tar.gz")
		if err := os.WriteFile(tarball, data, 0o644); err != nil {
			t.Fatal(err)
		}
		imp, err := Import(tarball, nb, "void")
		if err != nil {
			// Nothing half-written is left where it would be served.
			if ents, _ := os.ReadDir(nb); len(ents) != 0 {
				t.Fatalf("failed import (%v) left %v", err, ents)
			}
			return
		}
		if imp.Dir != "void-x86_64-20250202" || imp.Link != "void" || imp.Skipped {
			t.Fatalf("import %+v", imp)
		}
		var want strings.Builder
		for _, name := range []string{"vmlinuz", "initrd"} {
			b, err := os.ReadFile(filepath.Join(nb, "void", name))
			if err != nil {
				t.Fatal(err)
			}
			if sum(string(b)) != imp.Sums[name] {
				t.Fatalf("%s: sum %s, reported %s", name, sum(string(b)), imp.Sums[name])
			}
			want.WriteString(imp.Sums[name] + "  " + name + "\n")
		}
		if b, err := os.ReadFile(filepath.Join(nb, "void", SumsFile)); err != nil || string(b) != want.String() {
			t.Fatalf("SHA256SUMS %q, %v; want %q", b, err, want.String())
		}
		ents, _ := os.ReadDir(filepath.Join(nb, imp.Dir))
		if len(ents) != 3 {
			t.Fatalf("%s holds %v", imp.Dir, ents)
		}
		// What was imported passes the checker.
		root, err := os.OpenRoot(nb)
		if err != nil {
			t.Fatal(err)
		}
		defer root.Close()
		c := NewChecker(root)
		for _, name := range []string{"void/vmlinuz", "void/initrd"} {
			if err := checkFile(t, c, root, name); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
		}
	})
}

func checkFile(t *testing.T, c *Checker, root *os.Root, name string) error {
	t.Helper()
	f, err := root.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	return c.Check(name, f, fi)
}

// FuzzChecker: any SHA256SUMS content, never a panic; a file is refused
// (mismatch, or a malformed SHA256SUMS named with its line) or passed, and
// a file a well-formed line lists with another sum never passes.
func FuzzChecker(f *testing.F) {
	f.Add([]byte(sum("KERNEL")+"  vmlinuz\n"+sum("INITRD")+"  initrd\n"), []byte("KERNEL"))
	f.Add([]byte(sum("KERNEL")+" *vmlinuz\n"), []byte("KERNEL"))
	f.Add([]byte(sum("OTHER")+"  vmlinuz\n"), []byte("KERNEL"))
	f.Add([]byte(strings.ToUpper(sum("KERNEL"))+"  vmlinuz\n\n"), []byte("KERNEL"))
	f.Add([]byte(""), []byte(""))
	f.Fuzz(func(t *testing.T, sums, kernel []byte) {
		nb := t.TempDir()
		dir := filepath.Join(nb, "void")
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, body := range map[string][]byte{"vmlinuz": kernel, "initrd": []byte("INITRD"), SumsFile: sums} {
			if err := os.WriteFile(filepath.Join(dir, name), body, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		root, err := os.OpenRoot(nb)
		if err != nil {
			t.Fatal(err)
		}
		defer root.Close()
		c := NewChecker(root)
		actual := map[string]string{"vmlinuz": sum(string(kernel)), "initrd": sum("INITRD")}
		for _, name := range []string{"vmlinuz", "initrd"} {
			// Twice: the second may come from the checker's cache.
			for range 2 {
				err := checkFile(t, c, root, "void/"+name)
				switch {
				case err == nil:
					for _, line := range strings.Split(string(sums), "\n") {
						s, file, ok := strings.Cut(line, "  ")
						if ok && file == name && len(s) == 64 && !strings.EqualFold(s, actual[name]) {
							t.Fatalf("%s passed, but SHA256SUMS line %q says otherwise", name, line)
						}
					}
				case errors.Is(err, ErrMismatch):
				case errors.Is(err, ErrMalformedSums):
					if !strings.Contains(err.Error(), filepath.Join(dir, SumsFile)) {
						t.Fatalf("error %q does not name the SHA256SUMS", err)
					}
				default:
					t.Fatalf("%s: %v", name, err)
				}
			}
		}
	})
}
