#!/bin/sh
# standin-netboot.sh OUT.tar.gz: kept for scripts/demo.sh. Copies the VOID
# STAND-IN's NETBOOT tarball (scripts/standin-void.sh builds it, with the
# package repository stand-in beside it) to OUT, and prints the repository
# folder on stdout: the stand-in installer installs from it, so it must be
# served over HTTP and named in the node's xbps_repository label.
set -eu
OUT=$1
dir=$("$(dirname "$0")/standin-void.sh")
cp "$dir/void-x86_64-NETBOOT-20260101.tar.gz" "$OUT"
echo "$dir/repo"
