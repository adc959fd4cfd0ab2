#!/usr/bin/env bash
# demo.sh: one node, bare metal to installed, on this machine.
#
# It builds bootstrapd, makes a provisioning network that exists only inside
# a network namespace (bridge br0 10.77.0.1/24 and a tap for the VM), serves
# examples/demo/site.hcl there, enrolls a node and PXE-boots it in QEMU. The
# node runs a stand-in installer (a Debian kernel and a busybox initramfs)
# that reports back to bootstrapd, exactly as a real installer does. Then it
# boots the node again to show it is sent to its local disk.
#
# Everything it creates is removed on exit or Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

NS=bootstrapd-demo
MAC=52:54:00:77:00:01
HOST=demo1
WORK=/tmp/bootstrapd-demo
SITE=examples/demo/site.hcl
BIN=bin/bootstrapd
export BOOTSTRAPD_ADDR=unix://$WORK/api.sock

[ "$(id -u)" = 0 ] || { echo "demo: run as root (it creates a network namespace and a tap)" >&2; exit 1; }

say() { printf '\033[1m[%5.1fs]\033[0m %s\n' "$(awk "BEGIN { print $(date +%s.%N) - $T0 }")" "$*"; }
T0=$(date +%s.%N)

DAEMON=
QEMU=
cleanup() {
	set +e
	[ -n "$QEMU" ] && kill "$QEMU" 2>/dev/null
	[ -n "$DAEMON" ] && kill -TERM "$DAEMON" 2>/dev/null && wait "$DAEMON" 2>/dev/null
	ip netns del "$NS" 2>/dev/null
	rm -rf "$WORK" netboot/demo
	echo "demo: cleaned up (namespace $NS, $WORK)"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "installing what the demo needs (Debian packages, iPXE binaries, the stand-in installer)"
scripts/deps.sh >/dev/null
make -s build netboot
fixture=$(scripts/testkernel.sh)
mkdir -p netboot/demo "$WORK"
cp "$fixture/vmlinuz" "$fixture/initramfs.gz" netboot/demo/
"$BIN" check -config "$SITE"

say "creating namespace $NS: br0 10.77.0.1/24 and tap0"
ip netns del "$NS" 2>/dev/null || true
ip netns add "$NS"
ip -n "$NS" link set lo up
ip -n "$NS" link add br0 type bridge
ip -n "$NS" addr add 10.77.0.1/24 dev br0
ip -n "$NS" link set br0 up
ip -n "$NS" tuntap add tap0 mode tap
ip -n "$NS" link set tap0 master br0
ip -n "$NS" link set tap0 up

say "starting bootstrapd (log: $WORK/bootstrapd.log)"
ip netns exec "$NS" "$BIN" serve -config "$SITE" -log-format text >"$WORK/bootstrapd.log" 2>&1 &
DAEMON=$!
for _ in $(seq 100); do
	grep -q "bootstrapd serving" "$WORK/bootstrapd.log" && break
	kill -0 "$DAEMON" 2>/dev/null || { cat "$WORK/bootstrapd.log"; exit 1; }
	sleep 0.1
done

boot() {
	ip netns exec "$NS" qemu-system-x86_64 -accel tcg -m 512 -nographic -no-reboot -boot n \
		-netdev tap,id=n0,ifname=tap0,script=no,downscript=no -device "e1000,netdev=n0,mac=$MAC" \
		</dev/null >"$WORK/console-$1.log" 2>&1 &
	QEMU=$!
}

say "bootstrapd enroll $MAC -hostname $HOST -wait   (the live view, until installed)"
"$BIN" enroll "$MAC" -hostname "$HOST" -wait &
WAITER=$!
sleep 0.5
say "powering on the node (QEMU, PXE; console: $WORK/console-1.log)"
boot 1
wait "$WAITER" || { say "the node did not install; see $WORK"; exit 1; }
wait "$QEMU" || true
QEMU=

say "powering on again: an installed node is sent to its local disk"
boot 2
for _ in $(seq 240); do
	grep -q "booting the local disk" "$WORK/console-2.log" && break
	sleep 0.5
done
grep -h "bootstrapd:" "$WORK/console-2.log" | tr -d '\r' | sed 's/^/    console: /'
kill "$QEMU" 2>/dev/null || true
QEMU=

say "done"
"$BIN" nodes
"$BIN" node show "$HOST"
