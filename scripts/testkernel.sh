#!/bin/sh
# testkernel.sh [DIR]: build the netlab boot fixture (a Debian kernel and a busybox
# initramfs whose /init does DHCP and calls back over HTTP) into DIR.
#
# Layout:  DIR/<abi>_<pkgversion>/{vmlinuz,initramfs.gz}  and  DIR/current -> that.
# Idempotent: the kernel is fetched once per package version; the initramfs is
# rebuilt only when testdata/initramfs or the busybox binary changes. Offline, the
# last good build (DIR/current) is used. Prints the fixture folder on stdout.
set -eu

DIR=${1:-/var/cache/bootstrapd-test/kernel}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SRC=$ROOT/testdata/initramfs
BUSYBOX=/bin/busybox
# NIC drivers in insmod order: e1000 (BIOS VM) and the virtio-net chain (UEFI VM).
MODULES="e1000 virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci failover net_failover virtio_net virtio_blk crc16 mbcache jbd2 crc32c_generic ext4"
# Also extracted, not in the netlab initramfs: what the Void stand-in
# (scripts/standin-void.sh) needs for disks, an ESP and EFI variables (NVMe,
# vfat with Debian's default codepage/iocharset, efivarfs), in insmod order.
# Written to modules/netlab.order and modules/disk.order.
DISK_MODULES="crct10dif_common crc-t10dif crc64 crc64-rocksoft t10-pi nvme-core nvme fat vfat nls_cp437 nls_ascii efivarfs"

log() { echo "testkernel: $*" >&2; }
die() {
	log "$*"
	exit 1
}

mkdir -p "$DIR"
# Test binaries of several packages may run this at once: one builder at a time.
exec 9>"$DIR/.lock"
flock 9

# Which kernel: the one Debian's linux-image-amd64 points at (bookworm: 6.1).
find_pkg() {
	PKG=$(apt-cache depends linux-image-amd64 2>/dev/null |
		sed -n 's/^ *Depends: \(linux-image-6\.1\.[0-9a-z.-]*-amd64\)$/\1/p' | head -n 1) || true
	if [ -z "$PKG" ]; then
		PKG=$(apt-cache pkgnames linux-image-6.1. 2>/dev/null |
			grep -E '^linux-image-6\.1\.[0-9]+-[0-9]+-amd64$' | sort -V | tail -n 1) || true
	fi
}
find_pkg
# A fresh machine may have no package lists yet; fetch them once if we can.
if [ -z "$PKG" ] && [ ! -e "$DIR/current" ] && [ "$(id -u)" = 0 ]; then
	log "no package lists: apt-get update"
	apt-get update -q >&2 || true
	find_pkg
fi
VER=
if [ -n "$PKG" ]; then
	VER=$(apt-cache show --no-all-versions "$PKG" 2>/dev/null | sed -n 's/^Version: //p' | head -n 1) || true
fi

KDIR=
if [ -n "$PKG" ] && [ -n "$VER" ]; then
	KDIR=$DIR/${PKG#linux-image-}_$VER
	missing=
	for m in $MODULES $DISK_MODULES; do [ -f "$KDIR/modules/$m.ko" ] || missing=$m; done
	if [ ! -f "$KDIR/vmlinuz" ] || [ -n "$missing" ]; then
		log "fetching $PKG $VER"
		TMP=$(mktemp -d "$DIR/.tmp.XXXXXX")
		trap 'rm -rf "$TMP"' EXIT
		if (cd "$TMP" && apt-get download -q "$PKG=$VER" >&2 2>"$TMP/apt.err"); then
			dpkg-deb -x "$TMP"/*.deb "$TMP/x"
			mkdir -p "$TMP/out/modules"
			cp "$TMP"/x/boot/vmlinuz-* "$TMP/out/vmlinuz"
			for m in $MODULES $DISK_MODULES; do
				f=$(find "$TMP/x/lib/modules" -name "$m.ko" -o -name "$m.ko.xz" | head -n 1)
				[ -n "$f" ] || die "module $m not in $PKG"
				case "$f" in
				*.xz) xz -dc "$f" >"$TMP/out/modules/$m.ko" ;;
				*) cp "$f" "$TMP/out/modules/$m.ko" ;;
				esac
			done
			rm -rf "$KDIR"
			mv "$TMP/out" "$KDIR"
		else
			log "apt-get download failed: $(cat "$TMP/apt.err")"
			KDIR=
		fi
		rm -rf "$TMP"
		trap - EXIT
	fi
fi
if [ -z "$KDIR" ]; then
	[ -f "$DIR/current/vmlinuz" ] || die "no kernel package found and no previous build in $DIR (needs apt-get update and Debian's archive once)"
	KDIR=$(cd "$DIR/current" && pwd -P)
	log "using previous build $KDIR"
fi

# The module lists, for scripts that build on the fixture.
for list in "netlab:$MODULES" "disk:$DISK_MODULES"; do
	f=$KDIR/modules/${list%%:*}.order
	want=$(echo "${list#*:}" | tr ' ' '\n')
	[ "$(cat "$f" 2>/dev/null)" = "$want" ] || echo "$want" >"$f"
done

# The initramfs: rebuilt when its inputs change (so editing init takes effect).
SUM=$(cat "$SRC/init" "$SRC/udhcpc.script" "$BUSYBOX" | sha256sum | cut -d' ' -f1)
SUM=$SUM-$(echo "$MODULES" | sha256sum | cut -c1-8)
if [ ! -f "$KDIR/initramfs.gz" ] || [ "$(cat "$KDIR/initramfs.sum" 2>/dev/null)" != "$SUM" ]; then
	[ -x "$BUSYBOX" ] || die "$BUSYBOX missing (apt-get install busybox-static)"
	log "building initramfs in $KDIR"
	TMP=$(mktemp -d "$DIR/.tmp.XXXXXX")
	trap 'rm -rf "$TMP"' EXIT
	R=$TMP/root
	mkdir -p "$R/bin" "$R/etc" "$R/lib/netlab" "$R/proc" "$R/sys" "$R/dev" "$R/tmp"
	cp "$BUSYBOX" "$R/bin/busybox"
	cp "$SRC/init" "$R/init"
	cp "$SRC/udhcpc.script" "$R/etc/udhcpc.script"
	chmod 0755 "$R/init" "$R/etc/udhcpc.script" "$R/bin/busybox"
	for m in $MODULES; do
		cp "$KDIR/modules/$m.ko" "$R/lib/netlab/"
		echo "$m" >>"$R/lib/netlab/modules.order"
	done
	(cd "$R" && find . | sort | cpio -o -H newc -R 0:0 --quiet | gzip -9) >"$TMP/initramfs.gz"
	mv "$TMP/initramfs.gz" "$KDIR/initramfs.gz"
	echo "$SUM" >"$KDIR/initramfs.sum"
	rm -rf "$TMP"
	trap - EXIT
fi

ln -sfn "$(basename "$KDIR")" "$DIR/current.new"
mv -T "$DIR/current.new" "$DIR/current"
echo "$KDIR"
