// Package netboot imports installer kernels and initrds into the netboot
// directory and checks them when they are served.
//
// Void does not publish netboot tarballs; the operator builds one with
// void-mklive's mknet.sh (void-<arch>-NETBOOT-<date>.tar.gz) and imports
// it. The import writes <name>-<arch>-<date>/{vmlinuz,initrd,SHA256SUMS}
// and points the symlink <name> at it, so profiles say "void/vmlinuz" and
// a new import (or a rollback) is one symlink change.
package netboot

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
)

// SumsFile lists the sha256 of every file in an imported directory.
const SumsFile = "SHA256SUMS"

// wanted are the files taken from a NETBOOT tarball; the rest (pxelinux
// and its modules) is for PXELINUX, which bootstrapd replaces with iPXE.
var wanted = []string{"vmlinuz", "initrd"}

var tarballName = regexp.MustCompile(`^void-([a-z0-9_]+(?:-musl)?)-NETBOOT-(\d{8})\.tar\.gz$`)

// Imported is the result of an import.
type Imported struct {
	Dir     string            // the versioned directory, relative to the netboot dir
	Link    string            // the stable name profiles use
	Sums    map[string]string // file -> sha256
	Skipped bool              // already imported with the same content
}

// Import unpacks vmlinuz and initrd from a Void NETBOOT tarball into
// netbootDir. name is the stable link ("void").
func Import(tarball, netbootDir, name string) (Imported, error) {
	m := tarballName.FindStringSubmatch(filepath.Base(tarball))
	if m == nil {
		return Imported{}, fmt.Errorf("%s: not a Void netboot tarball name (want void-<arch>-NETBOOT-<YYYYMMDD>.tar.gz, as void-mklive's mknet.sh writes)", tarball)
	}
	version := name + "-" + m[1] + "-" + m[2]
	out := Imported{Dir: version, Link: name, Sums: map[string]string{}}
	final := filepath.Join(netbootDir, version)
	// Unpack into a temporary directory beside the final one and rename it
	// into place, so a half-written import is never served.
	tmp, err := os.MkdirTemp(netbootDir, "."+version+".")
	if err != nil {
		return out, fmt.Errorf("netboot directory: %w", err)
	}
	defer os.RemoveAll(tmp)
	if err := unpack(tarball, tmp, out.Sums); err != nil {
		return out, err
	}
	var sums strings.Builder
	for _, f := range wanted {
		if out.Sums[f] == "" {
			return out, fmt.Errorf("%s has no %s: is it a NETBOOT tarball from mknet.sh?", tarball, f)
		}
		fmt.Fprintf(&sums, "%s  %s\n", out.Sums[f], f)
	}
	if err := os.WriteFile(filepath.Join(tmp, SumsFile), []byte(sums.String()), 0o644); err != nil {
		return out, err
	}
	if old, err := os.ReadFile(filepath.Join(final, SumsFile)); err == nil {
		if string(old) != sums.String() {
			return out, fmt.Errorf("%s is already imported with different content; remove %s to import it again", version, final)
		}
		out.Skipped = true
	} else {
		if err := os.Chmod(tmp, 0o755); err != nil {
			return out, err
		}
		if err := os.Rename(tmp, final); err != nil {
			return out, err
		}
	}
	return out, relink(netbootDir, name, version)
}

// unpack writes the wanted files of tarball into dir, hashing as it goes.
// Only plain files whose base name is wanted are taken, whatever directory
// the tarball puts them in; nothing in the archive chooses a path here.
func unpack(tarball, dir string, sums map[string]string) error {
	f, err := os.Open(tarball)
	if err != nil {
		return err
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		return fmt.Errorf("%s: %w", tarball, err)
	}
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", tarball, err)
		}
		base := path.Base(h.Name)
		if h.Typeflag != tar.TypeReg || !isWanted(base) || sums[base] != "" {
			continue
		}
		sum, err := writeFile(filepath.Join(dir, base), tr)
		if err != nil {
			return err
		}
		sums[base] = sum
	}
}

func isWanted(name string) bool {
	for _, w := range wanted {
		if name == w {
			return true
		}
	}
	return false
}

func writeFile(p string, r io.Reader) (string, error) {
	out, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(out, h), r); err != nil {
		out.Close()
		return "", err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), out.Close()
}

// relink points netbootDir/name at version, replacing the link atomically.
func relink(netbootDir, name, version string) error {
	link := filepath.Join(netbootDir, name)
	if fi, err := os.Lstat(link); err == nil && fi.Mode()&os.ModeSymlink == 0 {
		return fmt.Errorf("%s exists and is not a symlink; move it away so imports can manage it", link)
	}
	tmp := link + ".new"
	os.Remove(tmp)
	if err := os.Symlink(version, tmp); err != nil {
		return err
	}
	return os.Rename(tmp, link)
}
