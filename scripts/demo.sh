#!/usr/bin/env bash
# demo.sh: a rack bring-up on this machine, from bare metal to CI capacity.
#
#   make demo            one node
#   make demo NODES=3    three
#
# In network namespaces it makes a provisioning network (bridge br0
# 10.77.0.1/24, a tap per node) and starts, on it: a RouterOS *stand-in*
# (bootstrapd's test router, which speaks the API wire protocol; it is not
# a MikroTik), Vault (1.14.1) and Nomad (1.6.1) agents, the open-source
# releases, with Nomad's token integration for Vault, and bootstrapd with
# examples/demo/site.hcl. Then `router apply` and `cluster init`, and for
# each node: enroll, PXE-boot in QEMU through the stand-in installer (it
# honours the Void autoinstaller's contract and runs the real void-nomad
# post-install script), then "boot from disk": a Nomad client in the node's
# own namespace with the config and tokens its join bundle put on its disk.
# The Concourse worker job (a stand-in task) reads the node's key from
# Vault through Nomad, checks it, and runs: the node is ready. Everything it creates is removed on exit or Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

NODES=${NODES:-1}
NS=bootstrapd-demo
WORK=/tmp/bootstrapd-demo
SITE=examples/demo/site.hcl
BIN=bin/bootstrapd
export BOOTSTRAPD_ADDR=unix://$WORK/api.sock

[ "$(id -u)" = 0 ] || {
	echo "demo: run as root (it creates network namespaces and taps)" >&2
	exit 1
}
case $NODES in [1-9]) ;; *)
	echo "demo: NODES=$NODES: from 1 to 9" >&2
	exit 2
	;;
esac

T0=$(date +%s.%N)
say() { printf '\033[1m[%5.1fs]\033[0m %s\n' "$(awk "BEGIN { print $(date +%s.%N) - $T0 }")" "$*"; }

PIDS=()
cleanup() {
	set +e
	for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
	# Nomad's task executors outlive their agent (so a restarted agent can
	# reattach): whatever still runs in a node's namespace goes with it.
	for n in $(seq "$NODES"); do
		ip netns pids "$NS-n$n" 2>/dev/null | xargs -r kill -KILL 2>/dev/null
		ip netns del "$NS-n$n" 2>/dev/null
	done
	ip netns pids "$NS" 2>/dev/null | xargs -r kill -KILL 2>/dev/null
	ip netns del "$NS" 2>/dev/null
	# Nomad clients leave their alloc dirs' mounts behind when killed.
	grep -o " ${WORK}[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null
	rm -rf "$WORK"
	echo "demo: cleaned up (namespaces $NS*, $WORK)"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# start runs an external command in the background; its pid is the
# command's own (no subshell), so cleanup's TERM reaches it.
start() { "$@" & PIDS+=($!); }
in_ns() { ip netns exec "$NS" "$@"; }
waitfor() { # waitfor SECONDS WHAT CMD...: poll until CMD succeeds
	local limit=$1 what=$2
	shift 2
	for _ in $(seq $((limit * 5))); do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.2
	done
	say "timed out after ${limit}s waiting for $what"
	return 1
}

say "installing what the demo needs (Debian packages, iPXE, the stand-in installer, vault and nomad)"
scripts/deps.sh >/dev/null
make -s build netboot
go build -o bin/routeros-standin ./internal/routeros/routerostest/standin
cluster=$(scripts/clusterbins.sh 2>"$(mktemp)")
VAULT=$cluster/bin/vault
NOMAD=$cluster/bin/nomad
rm -rf "$WORK"
mkdir -p "$WORK/netboot" "$WORK/state"
chmod 700 "$WORK"
cp netboot/undionly.kpxe netboot/snponly.efi netboot/ipxe.efi "$WORK/netboot/"
scripts/standin-netboot.sh "$WORK/void-x86_64-NETBOOT-20260101.tar.gz"
"$BIN" netboot import "$WORK/void-x86_64-NETBOOT-20260101.tar.gz" -dir "$WORK/netboot" -name void >/dev/null
# Secrets: files only this user can read, never flags.
(
	umask 077
	head -c 24 /dev/urandom | base64 >"$WORK/router-password"
	head -c 24 /dev/urandom | base64 >"$WORK/vault-token"
	cat /proc/sys/kernel/random/uuid >"$WORK/nomad-token"
)

say "network namespace $NS: br0 10.77.0.1/24 (bootstrapd, Vault, Nomad) + 10.77.0.254 (router stand-in)"
ip netns del "$NS" 2>/dev/null || true
ip netns add "$NS"
in_ns ip link set lo up
in_ns ip link add br0 type bridge
in_ns ip addr add 10.77.0.1/24 dev br0
in_ns ip addr add 10.77.0.254/24 dev br0
in_ns ip link set br0 up

say "starting the RouterOS stand-in (test router, not a MikroTik) at 10.77.0.254:8729"
ROUTEROS_STANDIN_PASSWORD=$(cat "$WORK/router-password") start ip netns exec "$NS" bin/routeros-standin \
	-listen 10.77.0.254:8729 -cert examples/demo/router-standin.pem >"$WORK/router.log" 2>&1
STANDIN=${PIDS[-1]}
say "starting Vault 1.14.1 (dev) and Nomad 1.6.1 (logs in $WORK)"
VAULT_DEV_ROOT_TOKEN_ID=$(cat "$WORK/vault-token") HOME=$WORK start ip netns exec "$NS" "$VAULT" server -dev \
	-dev-listen-address=10.77.0.1:8200 -dev-no-store-token >"$WORK/vault.log" 2>&1
waitfor 60 "Vault" in_ns curl -fs http://10.77.0.1:8200/v1/sys/health
say "bootstrapd cluster server-token   (Vault: the nomad-server policy and nomad-cluster role; the servers' token, to a file)"
in_ns "$BIN" cluster server-token -config "$SITE" "$WORK/nomad-vault-token" | sed 's/^/    /'
cat >"$WORK/nomad-server.hcl" <<HCL
data_dir  = "$WORK/nomad-server"
bind_addr = "10.77.0.1"
disable_update_check = true
server {
  enabled          = true
  bootstrap_expect = 1
}
acl {
  enabled = true
}
vault {
  enabled          = true # the token integration: the token is VAULT_TOKEN
  address          = "http://10.77.0.1:8200"
  create_from_role = "nomad-cluster"
}
HCL
# The servers' Vault token goes by environment from its file, never argv.
VAULT_TOKEN=$(cat "$WORK/nomad-vault-token") start ip netns exec "$NS" "$NOMAD" agent -config "$WORK/nomad-server.hcl" >"$WORK/nomad-server.log" 2>&1
waitfor 60 "Nomad's leader" sh -c "ip netns exec $NS curl -fs http://10.77.0.1:4646/v1/status/leader | grep -q 4647"
# The secret goes from its file to jq to curl's stdin: never an argument.
jq -n --rawfile s "$WORK/nomad-token" '{BootstrapSecret: ($s | rtrimstr("\n"))}' |
	in_ns curl -fs -X POST --data-binary @- http://10.77.0.1:4646/v1/acl/bootstrap >/dev/null

say "starting bootstrapd (log: $WORK/bootstrapd.log)"
"$BIN" check -config "$SITE"
start ip netns exec "$NS" "$BIN" serve -config "$SITE" -log-format text >"$WORK/bootstrapd.log" 2>&1
waitfor 20 "bootstrapd" "$BIN" nodes

say "bootstrapd router apply   (bootstrapd synced the router when it started: VLAN, address, NAT, identity, api-ssl)"
"$BIN" router apply | sed 's/^/    /'
say "bootstrapd cluster init   (Vault: KV, policies, token roles; Nomad: the Concourse worker system job)"
in_ns "$BIN" cluster init -config "$SITE" 2>&1 | sed 's/^/    /'

say "enrolling $NODES node(s) and powering them on (QEMU, PXE under TCG: a minute or two)"
start "$BIN" events -f
for n in $(seq "$NODES"); do
	mac=52:54:00:77:00:0$n
	"$BIN" enroll "$mac" -hostname "demo$n" -label disk=/dev/vda >/dev/null
	truncate -s 64M "$WORK/disk$n.img"
	in_ns ip tuntap add "tap$n" mode tap
	in_ns ip link set "tap$n" master br0
	in_ns ip link set "tap$n" up
	start ip netns exec "$NS" qemu-system-x86_64 -accel tcg -m 512 -nographic -no-reboot -boot n \
		-netdev "tap,id=n0,ifname=tap$n,script=no,downscript=no" -device "e1000,netdev=n0,mac=$mac" \
		-drive "file=$WORK/disk$n.img,format=raw,if=virtio" </dev/null >"$WORK/console$n.log" 2>&1
done

is() { [ "$("$BIN" node show "$1" -json | jq -r .state)" = "$2" ]; }
for n in $(seq "$NODES"); do
	waitfor 600 "demo$n to install" is "demo$n" installed || {
		"$BIN" node show "demo$n"
		exit 1
	}
done

# The node reboots from its disk: its Nomad client starts with what the
# join bundle put there (client config, and an introduction token where the
# servers have them: Nomad 1.11), in the node's own namespace at the
# node's address.
for n in $(seq "$NODES"); do
	ip=$("$BIN" node show "demo$n" -json | jq -r .ip)
	say "demo$n boots from disk: Nomad client at $ip with the join bundle from its disk"
	ip netns add "$NS-n$n"
	in_ns ip link add "veth$n" type veth peer name eth0 netns "$NS-n$n"
	in_ns ip link set "veth$n" master br0
	in_ns ip link set "veth$n" up
	ip -n "$NS-n$n" addr add "$ip/24" dev eth0
	ip -n "$NS-n$n" link set eth0 up
	ip -n "$NS-n$n" link set lo up
	ip -n "$NS-n$n" route add default via 10.77.0.254 # what DHCP told it
	dir=$WORK/node$n
	mkdir -p "$dir/data/client"
	debugfs -R "cat /etc/nomad.d/20-join.hcl" "$WORK/disk$n.img" >"$dir/20-join.hcl" 2>/dev/null
	if debugfs -R "stat /var/lib/nomad/client/intro_token.jwt" "$WORK/disk$n.img" 2>/dev/null | grep -q '^Inode:'; then
		(umask 077 && debugfs -R "cat /var/lib/nomad/client/intro_token.jwt" "$WORK/disk$n.img" >"$dir/data/client/intro_token.jwt" 2>/dev/null)
	fi
	printf 'data_dir = "%s"\nbind_addr = "%s"\n' "$dir/data" "$ip" >"$dir/local.hcl"
	start ip netns exec "$NS-n$n" "$NOMAD" agent -config "$dir/20-join.hcl" -config "$dir/local.hcl" >"$dir/nomad.log" 2>&1
done
for n in $(seq "$NODES"); do
	waitfor 120 "demo$n to be ready" is "demo$n" ready || {
		"$BIN" node show "demo$n"
		tail -n 30 "$WORK/node$n/nomad.log" "$WORK/node$n/20-join.hcl"
		exit 1
	}
done
sleep 0.3 # the live view's last lines

say "done: every node is ready. What each went through (seconds since the demo started):"
for n in $(seq "$NODES"); do
	"$BIN" node show "demo$n" -json | jq -r '.hostname as $h | .history[] | select((.to // "") != "") | [$h, .to, .at, .cause] | @tsv' |
		while IFS=$'\t' read -r host to at cause; do
			printf '%s\t%s\t%.1fs\t%s\n' "$host" "$to" "$(awk "BEGIN { print $(date -d "$at" +%s.%N) - $T0 }")" "$cause"
		done
done | column -t -s $'\t' -N NODE,STATE,AT,CAUSE
echo
"$BIN" nodes
say "the router stand-in's view (DNS records bootstrapd made for the nodes):"
kill -USR1 "$STANDIN"
sleep 0.3
grep -E "^/ip/dns/static|^/system/identity" "$WORK/router.log" | sed 's/^/    /'
say "Nomad's view:"
NOMAD_TOKEN=$(cat "$WORK/nomad-token") in_ns "$NOMAD" node status -address=http://10.77.0.1:4646 2>/dev/null | sed 's/^/    /'
