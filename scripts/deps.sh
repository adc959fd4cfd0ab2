#!/usr/bin/env bash
# Installs the Debian packages bootstrapd's tests, demo and benchmarks use.
# Safe to run again: it installs only what is missing.
set -euo pipefail

# qemu-system-x86 ipxe-qemu ovmf   PXE clients (BIOS iPXE ROM, UEFI firmware)
# ipxe                             the iPXE binaries bootstrapd serves (make netboot)
# busybox-static cpio kmod         the stand-in installer initramfs (scripts/testkernel.sh)
# e2fsprogs                        debugfs reads the installed node's disk image
# udhcpc isc-dhcp-client           real DHCP clients
# dnsmasq-base                     the other DHCP server in the proxy-mode test
# tftp-hpa atftp curl              real TFTP (atftp: windowsize) and HTTP clients
# kea-admin kea-dhcp4-server jq    perfdhcp and Kea for `make bench`
# nginx-light wrk tftpd-hpa nftables  the file peers, the HTTP load and the client address spread of `make bench-files`
# iproute2                         network namespaces
# etcd-server                      the shared store's real etcd members (tests of several instances)
# gcc libc6-dev                    cgo, for Nomad's build (scripts/clusterbins.sh)
# procps bsdextrautils             pgrep (the demo test), column (the demo's summary)
# the lint of shell scripts:       shellcheck
# chromium                         the headless browser the status page's test (TestUI) drives
# valgrind                         instruction counts of the in-process DHCP benchmark (docs/benchmarks.md, DHCP cost)
# openipmi ipmitool redfishtool    ipmi_sim, the BMC the IPMI tests drive; ipmitool and redfishtool cross-check them (tests only)
# The Void stand-in (scripts/standin-void.sh) copies Debian's binaries into its installer and packages:
# fdisk dosfstools                 sfdisk and mkfs.vfat in the installer (GPT/dos labels, the ESP)
# runit                            runit as PID 1, runsvdir, sv, ... in base-system
# dropbear-bin                     the sshd stand-in
# extlinux syslinux-common         the BIOS boot loader stand-in (package grub)
# systemd-boot-efi efibootmgr      the EFI boot loader stand-in (grub-x86_64-efi) and its NVRAM entry
packages=(qemu-system-x86 ipxe-qemu ovmf ipxe busybox-static cpio kmod e2fsprogs udhcpc isc-dhcp-client
	dnsmasq-base tftp-hpa atftp curl kea-admin kea-dhcp4-server jq nginx-light wrk tftpd-hpa nftables iproute2 gcc libc6-dev procps bsdextrautils shellcheck chromium
	valgrind openipmi ipmitool redfishtool etcd-server
	fdisk dosfstools runit dropbear-bin extlinux syslinux-common systemd-boot-efi efibootmgr)

missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "installing: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q
	apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
