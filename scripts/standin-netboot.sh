#!/bin/sh
# standin-netboot.sh OUT.tar.gz: a Void-style NETBOOT tarball (vmlinuz,
# initrd) whose initrd is the test fixture's busybox initramfs with the
# stand-in installer (testdata/voidinstaller) laid over it as a second
# archive: it honours the Void autoinstaller's contract (sources
# autoinstall.cfg, partitions the disk, runs end_script) without Void. For
# the demo; `bootstrapd netboot import` takes it like a real one.
set -eu
OUT=$1
ROOT=$(cd "$(dirname "$0")/.." && pwd)
fixture=$("$ROOT/scripts/testkernel.sh")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/overlay/stubs" "$tmp/tar"
cp "$ROOT/testdata/voidinstaller/init" "$ROOT/testdata/voidinstaller/target-passwd" "$tmp/overlay/"
cp "$ROOT"/testdata/voidinstaller/stubs/* "$tmp/overlay/stubs/"
chmod 0755 "$tmp/overlay/init" "$tmp/overlay/target-passwd" "$tmp"/overlay/stubs/*
(cd "$tmp/overlay" && find . | sort | cpio -o -H newc -R 0:0 --quiet | gzip -9) >"$tmp/overlay.cpio.gz"
cp "$fixture/vmlinuz" "$tmp/tar/vmlinuz"
cat "$fixture/initramfs.gz" "$tmp/overlay.cpio.gz" >"$tmp/tar/initrd"
tar -C "$tmp/tar" -czf "$OUT" vmlinuz initrd
