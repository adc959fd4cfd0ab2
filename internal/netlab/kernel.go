package netlab

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// KernelDirEnv overrides where scripts/testkernel.sh keeps the boot fixture.
const KernelDirEnv = "BOOTSTRAPD_TEST_KERNEL_DIR"

var kernel struct {
	once               sync.Once
	vmlinuz, initramfs string
	err                error
}

// Kernel returns the test boot fixture: a Debian kernel and a busybox initramfs
// whose /init (testdata/initramfs/init) does DHCP, then POSTs "mac=<MAC>" to the
// URL in the kernel argument bootstrapd.report=URL (and with bootstrapd.fetch=URL
// fetches a file and prints its sha256), printing "NETLAB: ..." console lines,
// then powers off. It runs scripts/testkernel.sh once per test process; the
// script caches its work, so only the first run on a machine downloads anything.
func Kernel(t testing.TB) (vmlinuz, initramfs string) {
	t.Helper()
	kernel.once.Do(func() {
		root, err := RepoRoot()
		if err != nil {
			kernel.err = err
			return
		}
		args := []string{filepath.Join(root, "scripts", "testkernel.sh")}
		if dir := os.Getenv(KernelDirEnv); dir != "" {
			args = append(args, dir)
		}
		cmd := exec.Command("sh", args...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			kernel.err = errors.New(err.Error() + ": " + stderr.String())
			return
		}
		dir := strings.TrimSpace(string(out))
		kernel.vmlinuz = filepath.Join(dir, "vmlinuz")
		kernel.initramfs = filepath.Join(dir, "initramfs.gz")
	})
	if kernel.err != nil {
		t.Fatalf("netlab: building the test kernel fixture (scripts/testkernel.sh: needs apt-get, dpkg-deb, cpio, busybox-static and Debian's archive on first run): %v", kernel.err)
	}
	return kernel.vmlinuz, kernel.initramfs
}

// RepoRoot walks up from the working directory (a package folder under go test)
// to the folder holding go.mod.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("netlab: no go.mod above the working directory")
		}
		dir = parent
	}
}

// KernelArgs returns the fixture's kernel command line for an iPXE script such as
//
//	kernel BASE/vmlinuz <KernelArgs(...)>
//	initrd BASE/initramfs.gz
//	boot
//
// initrd=initramfs.gz is needed under UEFI: the Linux EFI stub loads the initrd by
// that name (the basename of the initrd URL) from iPXE's virtual filesystem, since
// Debian's iPXE (2019) does not offer it by LoadFile2; without it the kernel panics
// "VFS: Unable to mount root fs". BIOS boots ignore it. panic=1 turns a kernel
// panic into a reboot, which QEMU's -no-reboot turns into an exit, so a broken
// boot fails fast instead of hanging until the test's deadline. reportURL and
// fetchURL may be "".
func KernelArgs(reportURL, fetchURL string) string {
	args := "initrd=initramfs.gz console=ttyS0 panic=1"
	if reportURL != "" {
		args += " bootstrapd.report=" + reportURL
	}
	if fetchURL != "" {
		args += " bootstrapd.fetch=" + fetchURL
	}
	return args
}
