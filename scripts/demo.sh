#!/usr/bin/env bash
# demo.sh: a rack bring-up on this machine, from bare metal to CI capacity.
#
#   make demo            one node
#   make demo NODES=3    three
#
# In a network namespace it makes a provisioning network (bridge br0
# 10.77.0.1/24, a tap per node) and starts, on it: a RouterOS *stand-in*
# (bootstrapd's test router, which speaks the API wire protocol; it is not
# a MikroTik), Vault (1.14.1) and Nomad (1.6.1) agents, the open-source
# releases, with Nomad's token integration for Vault, a Nomad client "web"
# running seed 000's web job with a Concourse TSA *stand-in*, a Void package
# repository *stand-in* (Debian's binaries and the real Nomad, over HTTP),
# and bootstrapd with examples/demo/site.hcl. Then `router apply` and
# `cluster init`, and for each node: enroll, power on a QEMU VM (SeaBIOS,
# PXE first, TCG). The Void installer *stand-in* (it honours the Void
# autoinstaller's contract) partitions the disk, installs from the
# repository through bootstrapd's package cache and runs the real
# void-nomad post-install script; the node
# reboots, PXE-boots again, bootstrapd hands it to its disk, runit starts
# its services and its Nomad client joins with what the join bundle put on
# the disk. The Concourse worker job's allocation (a stand-in worker) runs
# in the VM, reads its key from Vault through Nomad and registers with the
# TSA stand-in: the node is ready. Everything it creates is removed on exit
# or Ctrl-C. Each node's serial console is in /tmp/bootstrapd-demo/console<N>.log.
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
	local rc=$?
	set +e
	# A failed demo shows what each part said last before it is all removed.
	if [ "$rc" != 0 ] && [ "$rc" != 130 ]; then
		for f in "$WORK"/*.log; do
			[ -s "$f" ] || continue
			echo "--- last lines of $f"
			tail -n 12 "$f"
		done
	fi
	for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
	# Nomad's task executors outlive their agent (so a restarted agent can
	# reattach): whatever still runs in the namespace goes with it.
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
go build -o bin/concourse-standin ./internal/concoursetest/standin
cluster=$(scripts/clusterbins.sh 2>"$(mktemp)")
VAULT=$cluster/bin/vault
NOMAD=$cluster/bin/nomad
rm -rf "$WORK"
mkdir -p "$WORK/netboot" "$WORK/state"
chmod 700 "$WORK"
cp netboot/undionly.kpxe netboot/snponly.efi netboot/ipxe.efi "$WORK/netboot/"
# The Void stand-in: installer (NETBOOT tarball) and package repository.
VOID=$(NOMAD_BIN=$NOMAD scripts/standin-void.sh)
"$BIN" netboot import "$VOID/void-x86_64-NETBOOT-20260101.tar.gz" -dir "$WORK/netboot" -name void >/dev/null
install -m 0755 bin/concourse-standin "$WORK/concourse-standin"
install -m 0600 examples/demo/tsa-standin-host-key "$WORK/tsa-host-key"
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

say "starting the package repository stand-in (Void's xbpsrepository, from Debian's binaries) at http://10.77.0.1:8081"
start ip netns exec "$NS" busybox httpd -f -p 10.77.0.1:8081 -h "$VOID/repo"
say "starting Nomad client \"web\" (Concourse's web node: the TSA stand-in runs there)"
cat >"$WORK/web.hcl" <<HCL
name      = "web"
data_dir  = "$WORK/web"
bind_addr = "10.77.0.1"
disable_update_check = true
ports {
  http = 5646
  rpc  = 5647
  serf = 5648
}
client {
  enabled           = true
  servers           = ["10.77.0.1:4647"]
  network_interface = "br0" # the namespace has no default route
}
plugin "raw_exec" {
  config {
    enabled = true
  }
}
vault {
  enabled = true
  address = "http://10.77.0.1:8200"
}
HCL
start ip netns exec "$NS" "$NOMAD" agent -config "$WORK/web.hcl" >"$WORK/nomad-web.log" 2>&1

say "starting bootstrapd (log: $WORK/bootstrapd.log)"
"$BIN" check -config "$SITE"
start ip netns exec "$NS" "$BIN" serve -config "$SITE" -log-format text >"$WORK/bootstrapd.log" 2>&1
waitfor 20 "bootstrapd" "$BIN" nodes

say "bootstrapd router apply   (bootstrapd synced the router when it started: VLAN, address, NAT, identity, api-ssl)"
"$BIN" router apply | sed 's/^/    /'
say "bootstrapd cluster init   (Vault: KV, policies, token roles; Nomad: the Concourse worker system job)"
in_ns "$BIN" cluster init -config "$SITE" 2>&1 | sed 's/^/    /'

# console_summary N: the milestones of node N's serial console as they
# appear, each once: the install, the reboot, the disk boot, runit, Nomad.
console_summary() {
	local n=$1 i=0 marks=(
		"VOID stand-in installer: config ok|PXE: the stand-in installer runs"
		"bootstrapd postinstall: installed; rebooting|installed: rebooting"
		"is installed; booting the local disk|PXE again: bootstrapd hands it to its disk"
		"VOID stand-in dracut: root|disk boot: root mounted from the disk"
		"VOID stand-in runit: stage 2|runit: services up"
		"client: node registration complete|nomad: the client joined the servers"
	)
	while [ $i -lt ${#marks[@]} ]; do
		if grep -qF -- "${marks[$i]%%|*}" "$WORK/console$n.log" 2>/dev/null; then
			say "demo$n console: ${marks[$i]#*|}"
			i=$((i + 1))
			continue
		fi
		sleep 1
	done
}

say "seed 000's web job on \"web\": the TSA stand-in lets in the worker keys Vault holds"
web_job() { # web_job RUN: (re)run seed 000's web job; a new run renders the keys afresh
	NOMAD_TOKEN=$(cat "$WORK/nomad-token") in_ns "$NOMAD" job run -address=http://10.77.0.1:4646 -detach \
		-var standin="$WORK/concourse-standin" -var listen=10.77.0.1:2222 -var host_key="$WORK/tsa-host-key" \
		-var run="$1" examples/demo/concourse-web.nomad.hcl | sed 's/^/    /'
}
web_job 1
waitfor 120 "the TSA stand-in" in_ns bash -c 'exec 3<>/dev/tcp/10.77.0.1/2222'

say "enrolling $NODES node(s) and powering them on (QEMU, SeaBIOS, PXE first, TCG: a few minutes)"
start "$BIN" events -f
for n in $(seq "$NODES"); do
	mac=52:54:00:77:00:0$n
	"$BIN" enroll "$mac" -hostname "demo$n" -label disk=/dev/vda >/dev/null
	truncate -s 1G "$WORK/disk$n.img"
	in_ns ip tuntap add "tap$n" mode tap
	in_ns ip link set "tap$n" master br0
	in_ns ip link set "tap$n" up
	# Network first, then the disk: the node's firmware order for its
	# whole life. A reboot reboots (no -no-reboot).
	start ip netns exec "$NS" qemu-system-x86_64 -accel tcg -m 1024 -nographic \
		-netdev "tap,id=n0,ifname=tap$n,script=no,downscript=no" -device "e1000,netdev=n0,mac=$mac,bootindex=1" \
		-drive "file=$WORK/disk$n.img,format=raw,if=none,id=d0" -device virtio-blk-pci,drive=d0,bootindex=2 \
		</dev/null >"$WORK/console$n.log" 2>&1
	console_summary "$n" &
	PIDS+=($!)
done

is() { [ "$("$BIN" node show "$1" -json | jq -r .state)" = "$2" ]; }
for n in $(seq "$NODES"); do
	waitfor 1200 "demo$n to be ready" is "demo$n" ready || {
		"$BIN" node show "demo$n"
		tail -n 30 "$WORK/console$n.log"
		exit 1
	}
done
# The web job's template renders authorized_worker_keys from a LIST that
# consul-template polls every 5 minutes (the real web node's too): run it
# again so the TSA knows the new workers' keys now rather than then.
say "seed 000's web job again: authorized_worker_keys rendered with the new workers' keys"
web_job 2
registered() { [ "$(cat "$WORK"/web/alloc/*/alloc/logs/tsa.stdout.* 2>/dev/null | grep -c "worker demo[0-9]* registered")" -ge "$NODES" ]; }
waitfor 180 "the workers to register with the TSA stand-in" registered
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
say "Nomad's view (the nodes' clients run in their VMs, at their own addresses):"
NOMAD_TOKEN=$(cat "$WORK/nomad-token") in_ns "$NOMAD" node status -address=http://10.77.0.1:4646 -verbose 2>/dev/null |
	cut -c 1-150 | sed 's/^/    /'
say "the TSA stand-in's view (workers that proved their Vault key over SSH):"
cat "$WORK"/web/alloc/*/alloc/logs/tsa.stdout.* | grep "registered" | sed 's/^/    /'
say "the package cache's view (each package fetched from the repository once, however many nodes installed it):"
in_ns curl -fs http://10.77.0.1:8080/metrics | grep -E '^bootstrapd_package_cache_(upstream|served)_bytes_total' | sed 's/^/    /'
