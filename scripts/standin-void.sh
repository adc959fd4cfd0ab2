#!/bin/sh
# standin-void.sh [DIR]: build the VOID STAND-IN: a Void-style NETBOOT
# tarball whose installer is a stand-in for void-mklive's autoinstaller, and
# a stand-in for a Void package repository built from Debian's binaries. No
# part of it is Void: it keeps the contracts bootstrapd relies on (see
# testdata/voidinstaller/init and stubs/xbps-install) so that an installed
# node really boots from its disk under real firmware.
#
# Layout:  DIR/<hash>/void-x86_64-NETBOOT-20260101.tar.gz  vmlinuz + initrd, named
#                         as mknet.sh names it (a fixed date) so that
#                         `bootstrapd netboot import` takes it
#          DIR/<hash>/repo/x86_64-repodata, repo/<pkg>.tar  the main repository
#          DIR/<hash>/repo/nonfree/...                      the nonfree one (nomad)
#          DIR/current -> <hash>
# <hash> covers every input: the kernel fixture (scripts/testkernel.sh), the
# files under testdata/voidinstaller, this script, the Debian package versions
# the binaries come from and the nomad binary. Idempotent and locked; prints
# the folder on stdout.
#
# Repository format (the stand-in's own, documented in stubs/xbps-install):
# an index x86_64-repodata with one line per package, "name version deps...",
# and one uncompressed tarball per package (gunzip is slow under TCG).
#
# Env: NOMAD_BIN, the real Nomad binary for the nonfree "nomad" package
# (default /var/cache/bootstrapd-test/cluster/bin/nomad, from clusterbins.sh).
set -eu

DIR=${1:-/var/cache/bootstrapd-test/void-standin}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SRC=$ROOT/testdata/voidinstaller
NOMAD_BIN=${NOMAD_BIN:-/var/cache/bootstrapd-test/cluster/bin/nomad}
# The Debian packages whose files go into the installer and the packages.
DEBS="busybox-static runit dropbear-bin extlinux syslinux-common systemd-boot-efi efibootmgr fdisk dosfstools e2fsprogs util-linux mount dash coreutils libc6 tzdata"

log() { echo "standin-void: $*" >&2; }
die() {
	log "$*"
	exit 1
}

[ -x "$NOMAD_BIN" ] || die "no nomad binary at $NOMAD_BIN (set NOMAD_BIN; scripts/clusterbins.sh builds one)"
for p in $DEBS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || die "Debian package $p is missing (scripts/deps.sh installs it)"
done
# The kernel fixture, where netlab.Kernel takes it from.
KFIX=$("$ROOT/scripts/testkernel.sh" ${BOOTSTRAPD_TEST_KERNEL_DIR:+"$BOOTSTRAPD_TEST_KERNEL_DIR"})

mkdir -p "$DIR"
exec 9>"$DIR/.lock"
flock 9

HASH=$({
	cat "$0"
	(cd "$SRC" && find . -type f | LC_ALL=C sort | xargs sha256sum)
	(cd "$KFIX" && sha256sum vmlinuz initramfs.gz modules/*.ko)
	# shellcheck disable=SC2086 # a list of names
	dpkg-query -W -f='${Package} ${Version}\n' $DEBS
	sha256sum <"$NOMAD_BIN"
} | sha256sum | cut -c1-16)
OUT=$DIR/$HASH
if [ ! -f "$OUT/.done" ]; then
	log "building $OUT"
	TMP=$(mktemp -d "$DIR/.tmp.XXXXXX")
	trap 'rm -rf "$TMP"' EXIT
	B=$TMP/build
	mkdir -p "$B" "$TMP/out/repo/nonfree"

	# withlibs DEST FILE...: copy each ELF's shared libraries (ldd) and the
	# dynamic loader into DEST, a library folder.
	withlibs() {
		dest=$1
		shift
		mkdir -p "$dest"
		for f in "$@"; do
			ldd "$f" 2>/dev/null | awk '/=> \//{print $3} /^\t\/lib64\//{print $1}' |
				while read -r lib; do cp -L "$lib" "$dest/"; done
		done
	}

	# ---- the installer overlay (a second initrd archive over the netlab one)
	O=$B/overlay
	mkdir -p "$O/stubs" "$O/bin" "$O/sbin" "$O/lib64" "$O/etc"
	cp "$SRC/init" "$O/init"
	cp "$SRC"/stubs/* "$O/stubs/"
	# The real NETBOOT initrd has a non-busybox /bin/sh and util-linux: with
	# busybox sh its applets win over PATH, and busybox umount has no -R,
	# which the post-install script's `umount -R "$target"` needs.
	cp /usr/bin/dash "$O/bin/sh"
	cp /usr/bin/umount "$O/bin/umount"
	# coreutils' chroot: busybox's runs its own applet when one has the
	# name (passwd, ...) instead of the target's program, once /proc is
	# bound into the target.
	cp /usr/sbin/chroot "$O/bin/chroot"
	cp /usr/sbin/sfdisk /usr/sbin/blkid "$O/sbin/"
	cp /usr/sbin/mke2fs "$O/sbin/mkfs.ext4"
	cp /usr/sbin/mkfs.fat "$O/sbin/mkfs.vfat"
	cp /etc/mke2fs.conf "$O/etc/"
	withlibs "$O/lib/x86_64-linux-gnu" "$O"/bin/* "$O"/sbin/*
	mv "$O/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" "$O/lib64/"
	# Disk and filesystem modules the netlab initramfs does not load.
	mkdir -p "$O/lib/standin"
	while read -r m; do cp "$KFIX/modules/$m.ko" "$O/lib/standin/"; done <"$KFIX/modules/disk.order"
	cp "$KFIX/modules/disk.order" "$O/lib/standin/modules.order"
	chmod -R a+rX "$O"
	chmod 0755 "$O/init" "$O"/stubs/*
	(cd "$O" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet | gzip -9) >"$B/overlay.cpio.gz"
	mkdir -p "$B/nb"
	cp "$KFIX/vmlinuz" "$B/nb/vmlinuz"
	cat "$KFIX/initramfs.gz" "$B/overlay.cpio.gz" >"$B/nb/initrd"
	chmod 0644 "$B/nb/vmlinuz" "$B/nb/initrd"
	tar -C "$B/nb" -czf "$TMP/out/void-x86_64-NETBOOT-20260101.tar.gz" vmlinuz initrd

	# ---- packages
	# pkgroot NAME: a fresh package tree with the static files from
	# testdata/voidinstaller/pkgs/NAME; prints its path.
	pkgroot() {
		mkdir -p "$B/pkg/$1"
		if [ -d "$SRC/pkgs/$1" ]; then cp -a "$SRC/pkgs/$1/." "$B/pkg/$1/"; fi
		chmod -R go-w "$B/pkg/$1"
		echo "$B/pkg/$1"
	}
	# pack REPO NAME DEPS...: tar the tree and add its index line.
	pack() {
		repo=$TMP/out/$1
		name=$2
		shift 2
		tar -C "$B/pkg/$name" --owner=0 --group=0 --numeric-owner --sort=name -cf "$repo/$name.tar" .
		echo "$name 0.standin_1 $*" >>"$repo/x86_64-repodata"
	}
	printf '# VOID stand-in repository index: name version deps...\n' >"$TMP/out/repo/x86_64-repodata"
	cp "$TMP/out/repo/x86_64-repodata" "$TMP/out/repo/nonfree/x86_64-repodata"

	# base-system: Void's usrmerged layout, glibc, busybox, runit, the
	# runit-void stand-in, dhcpcd/sshd/chronyd stand-ins, the kernel and a
	# dracut stand-in initramfs.
	P=$(pkgroot base-system)
	mkdir -p "$P/usr/bin" "$P/usr/lib" "$P/boot" "$P/proc" "$P/sys" "$P/dev" "$P/run" "$P/mnt" \
		"$P/var/db/xbps-standin" "$P/var/log" "$P/var/cache/xbps" "$P/etc/runit/runsvdir/default" "$P/usr/share" \
		"$P/usr/libexec" "$P/usr/local/bin" "$P/usr/local/lib" "$P/usr/local/sbin" "$P/usr/local/share"
	# The /usr skeleton above is Void's base-files, and Nomad relies on it:
	# its artifact sandbox (landlock) refuses to start when /usr/local/bin
	# or /usr/libexec is missing, so no job could download an artifact.
	install -d -m 0700 "$P/root"
	install -d -m 1777 "$P/tmp" "$P/var/tmp"
	ln -s usr/bin "$P/bin"
	ln -s usr/bin "$P/sbin"
	ln -s usr/lib "$P/lib"
	ln -s usr/lib "$P/lib64"
	ln -s bin "$P/usr/sbin"
	ln -s lib "$P/usr/lib64"
	ln -s /run/runit/runsvdir/current "$P/var/service"
	ln -s /run/runit/stopit "$P/etc/runit/stopit"
	ln -s /run/runit/reboot "$P/etc/runit/reboot"
	cp /bin/busybox "$P/usr/bin/busybox"
	cp /sbin/runit /usr/bin/runsvdir /usr/bin/runsv /usr/bin/sv /usr/bin/chpst /usr/bin/svlogd "$P/usr/bin/"
	ln -s runit "$P/usr/bin/init"
	cp /usr/sbin/dropbear /usr/bin/dropbearkey /usr/sbin/blkid "$P/usr/bin/"
	cp "$SRC/target-passwd" "$P/usr/bin/passwd"
	for a in poweroff reboot halt; do ln -s shutdown-standin "$P/usr/bin/$a"; done
	for a in $(/bin/busybox --list); do
		[ -e "$P/usr/bin/$a" ] || [ -L "$P/usr/bin/$a" ] || ln -s busybox "$P/usr/bin/$a"
	done
	withlibs "$P/usr/lib" "$P"/usr/bin/runit "$P"/usr/bin/dropbear "$P"/usr/bin/blkid
	chmod 0600 "$P/etc/shadow"
	cp -a /usr/share/zoneinfo "$P/usr/share/"
	cp "$KFIX/vmlinuz" "$P/boot/vmlinuz"
	# The dracut stand-in: busybox, /init, the disk/NIC/filesystem modules.
	R=$B/dracut
	mkdir -p "$R/bin" "$R/lib/modules" "$R/proc" "$R/sys" "$R/dev" "$R/sysroot"
	cp /bin/busybox "$R/bin/busybox"
	cp "$SRC/dracut-init" "$R/init"
	cat "$KFIX/modules/netlab.order" "$KFIX/modules/disk.order" >"$R/lib/modules/modules.order"
	while read -r m; do cp "$KFIX/modules/$m.ko" "$R/lib/modules/"; done <"$R/lib/modules/modules.order"
	chmod 0755 "$R/init" "$R/bin/busybox"
	(cd "$R" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet | gzip -9) >"$P/boot/initramfs.img"
	pack repo base-system

	# grub: the BIOS boot loader stand-in (extlinux) and grub-install/update-grub.
	P=$(pkgroot grub)
	mkdir -p "$P/usr/lib/grub-standin/i386-pc"
	cp /usr/bin/extlinux "$P/usr/bin/"
	cp /usr/lib/EXTLINUX/mbr.bin "$P/usr/lib/grub-standin/i386-pc/"
	pack repo grub base-system

	# grub-x86_64-efi: the EFI boot loader stand-in (systemd-boot).
	P=$(pkgroot grub-x86_64-efi)
	mkdir -p "$P/usr/lib/grub-standin/x86_64-efi"
	cp /usr/lib/systemd/boot/efi/systemd-bootx64.efi "$P/usr/lib/grub-standin/x86_64-efi/grubx64.efi"
	pack repo grub-x86_64-efi grub efibootmgr

	P=$(pkgroot efibootmgr)
	mkdir -p "$P/usr/bin"
	cp /usr/bin/efibootmgr "$P/usr/bin/"
	withlibs "$P/usr/lib" "$P/usr/bin/efibootmgr"
	pack repo efibootmgr base-system

	pkgroot curl >/dev/null
	pack repo curl base-system

	# nonfree
	pkgroot void-repo-nonfree >/dev/null
	pack repo/nonfree void-repo-nonfree
	P=$(pkgroot nomad)
	mkdir -p "$P/usr/bin" "$P/etc/nomad.d" "$P/var/lib/nomad"
	cp "$NOMAD_BIN" "$P/usr/bin/nomad"
	withlibs "$P/usr/lib" "$P/usr/bin/nomad"
	pack repo/nonfree nomad cni-plugins
	# Empty: Nomad's raw_exec and exec drivers need no CNI plugin; bridge
	# networking would (Void's package ships them in /usr/libexec/cni).
	P=$(pkgroot cni-plugins)
	mkdir -p "$P/usr/libexec/cni"
	pack repo cni-plugins
	pkgroot chrony >/dev/null
	pack repo chrony base-system

	touch "$TMP/out/.done"
	rm -rf "$OUT"
	mv "$TMP/out" "$OUT"
	rm -rf "$TMP"
	trap - EXIT
fi
ln -sfn "$HASH" "$DIR/current.new"
mv -T "$DIR/current.new" "$DIR/current"
echo "$OUT"
