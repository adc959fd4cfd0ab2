#!/usr/bin/env bash
# bench-files.sh: file serving, bootstrapd next to nginx (HTTP) and tftpd-hpa
# (TFTP), in the same run, on the same files.
#
# Two network namespaces joined by a veth pair. The server side has two
# addresses: bootstrapd listens on 10.90.0.1 (node HTTP on 8080, TFTP on 69),
# nginx and in.tftpd on 10.90.0.3 (8080 and 69). The client side runs wrk and
# curl. bootstrapd caps connections (16) and TFTP transfers (8) per client
# address, as it must on a shared network; a load generator from one address
# would measure those caps, not the serving. So the client namespace owns 128
# more addresses: nftables spreads wrk's connections over them (source NAT by
# a hash of the source port), and each concurrent TFTP fetch binds one of them
# (curl --interface; NAT would not follow a TFTP transfer to the server's new
# port). The peers see the same spread.
#
# Run as root from the repository: `make bench-files` (builds bin/bootstrapd
# first). The machine is shared and its load comes and goes, so the peer and
# bootstrapd take turns: ROUNDS wrk runs each (peer, bootstrapd, peer, ...)
# and RUNS TFTP fetches each, and the table gives the medians. Knobs
# (environment): DURATION (seconds of one wrk run, default 10), ROUNDS
# (default 2), RUNS (default 5), STORM (concurrent TFTP fetches, default
# 200), MEASURES (which of "http tftp storm" to run, default all), BS_FLAGS
# (more flags for bootstrapd serve, e.g. "-cpuprofile /tmp/files.pprof"),
# KEEP=1 (keep the temp dir: configs, logs, raw samples). Nothing outside the two
# namespaces, the veth pair and one temp directory is created, and the exit
# trap deletes all of them.
set -euo pipefail

cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-2}
RUNS=${RUNS:-5}
STORM=${STORM:-200}
MEASURES=${MEASURES:-"http tftp storm"}
read -ra BS_FLAGS <<<"${BS_FLAGS:-}"
KEEP=${KEEP:-0}
BIN=${BIN:-$PWD/bin/bootstrapd}
SMALL_SRC=${SMALL_SRC:-/usr/lib/ipxe/undionly.kpxe}

BS_IP=10.90.0.1   # bootstrapd
PEER_IP=10.90.0.3 # nginx and in.tftpd
CLIENT_IP=10.90.0.2
NS_S=bench-files-s-$$
NS_C=bench-files-c-$$
VETH_S=bfs$$
VETH_C=bfc$$

die() { echo "bench-files: $*" >&2; exit 1; }
log() { printf '[%3ds] %s\n' "$SECONDS" "$*" >&2; }

[[ $EUID -eq 0 ]] || die "needs root (network namespaces): sudo make bench-files"
for cmd in ip nft nginx wrk in.tftpd curl awk ss; do
	command -v "$cmd" >/dev/null || die "$cmd not found (Debian: apt-get install iproute2 nftables nginx-light wrk tftpd-hpa curl)"
done
[[ -x $BIN ]] || die "$BIN missing: run make build"
[[ -f $SMALL_SRC ]] || die "$SMALL_SRC missing (Debian: apt-get install ipxe)"

TMP=$(mktemp -d /tmp/bench-files.XXXXXX)
chmod 0755 "$TMP" # nginx's workers and in.tftpd drop to nobody
PIDS=()

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	ip netns del "$NS_S" 2>/dev/null || true
	ip netns del "$NS_C" 2>/dev/null || true
	ip link del "$VETH_S" 2>/dev/null || true
	if [[ $KEEP == 1 ]]; then
		echo "bench-files: kept $TMP" >&2
	else
		rm -rf "$TMP"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- network -------------------------------------------------------------------

ip netns add "$NS_S"
ip netns add "$NS_C"
ip link add "$VETH_S" type veth peer name "$VETH_C"
ip link set "$VETH_S" netns "$NS_S"
ip link set "$VETH_C" netns "$NS_C"
ip -n "$NS_S" addr add "$BS_IP/16" dev "$VETH_S"
ip -n "$NS_S" addr add "$PEER_IP/16" dev "$VETH_S"
ip -n "$NS_C" addr add "$CLIENT_IP/16" dev "$VETH_C"
map=()
for i in $(seq 0 127); do
	ip -n "$NS_C" addr add "10.90.1.$i/16" dev "$VETH_C"
	map+=("$i : 10.90.1.$i")
done
for ns in "$NS_S" "$NS_C"; do ip -n "$ns" link set lo up; done
ip -n "$NS_S" link set "$VETH_S" up
ip -n "$NS_C" link set "$VETH_C" up
joined=$(IFS=,; echo "${map[*]}")
ip netns exec "$NS_C" nft -f - <<-EOF
	table ip bench {
	  chain post {
	    type nat hook postrouting priority srcnat;
	    oifname "$VETH_C" ip saddr $CLIENT_IP meta l4proto tcp snat ip to jhash th sport mod 128 map { $joined }
	  }
	}
EOF

# --- files and servers -----------------------------------------------------------

FILES=$TMP/netboot
mkdir -p "$FILES" "$TMP/bootstrapd/state" "$TMP/bootstrapd/profiles" "$TMP/nginx"
install -m 0644 "$SMALL_SRC" "$FILES/undionly.kpxe"
head -c $((32 << 20)) /dev/urandom >"$FILES/big.bin"
chmod 0644 "$FILES/big.bin"
cp "$FILES/undionly.kpxe" "$FILES/snponly.efi" # the daemon checks the boot files exist
SMALL_SIZE=$(stat -c %s "$FILES/undionly.kpxe")

cat >"$TMP/bootstrapd/site.hcl" <<-EOF
	interface    = "$VETH_S"
	state_dir    = "$TMP/bootstrapd/state"
	netboot_dir  = "$FILES"
	profiles_dir = "$TMP/bootstrapd/profiles"
	dhcp { mode = "off" }
	http { listen = "$BS_IP:8080" }
	tftp { listen = "$BS_IP:69" }
	api { socket = "$TMP/bootstrapd/api.sock" }
EOF
"$BIN" check -config "$TMP/bootstrapd/site.hcl" >/dev/null
ip netns exec "$NS_S" "$BIN" serve -config "$TMP/bootstrapd/site.hcl" -log-format json "${BS_FLAGS[@]}" 2>"$TMP/bootstrapd/server.log" &
BS_PID=$!
PIDS+=("$BS_PID")

# Debian's defaults where they matter (2 workers here: one per core,
# sendfile, tcp_nopush, an access log), and nothing else.
cat >"$TMP/nginx/nginx.conf" <<-EOF
	worker_processes auto;
	daemon off;
	pid $TMP/nginx/nginx.pid;
	error_log $TMP/nginx/error.log;
	events { worker_connections 1024; }
	http {
	  sendfile on;
	  tcp_nopush on;
	  access_log $TMP/nginx/access.log;
	  client_body_temp_path $TMP/nginx;
	  default_type application/octet-stream;
	  server {
	    listen $PEER_IP:8080;
	    root $FILES;
	  }
	}
EOF
ip netns exec "$NS_S" nginx -c "$TMP/nginx/nginx.conf" -e "$TMP/nginx/error.log" &
PIDS+=("$!")
ip netns exec "$NS_S" in.tftpd --foreground --listen --address "$PEER_IP:69" --secure "$FILES" 2>"$TMP/tftpd.log" &
PIDS+=("$!")

# up URL: the server answers a small fetch.
up() { ip netns exec "$NS_C" curl -fsS -o /dev/null --max-time 2 "$1" 2>/dev/null; }
for url in "http://$BS_IP:8080/assets/undionly.kpxe" "http://$PEER_IP:8080/undionly.kpxe" \
	"tftp://$BS_IP/undionly.kpxe" "tftp://$PEER_IP/undionly.kpxe"; do
	for _ in $(seq 50); do
		up "$url" && continue 2
		kill -0 "$BS_PID" 2>/dev/null || { cat "$TMP/bootstrapd/server.log" >&2; die "bootstrapd exited"; }
		sleep 0.2
	done
	cat "$TMP/bootstrapd/server.log" "$TMP/nginx/error.log" "$TMP/tftpd.log" >&2 || true
	die "$url does not answer"
done
log "servers up: bootstrapd $BS_IP, nginx and in.tftpd $PEER_IP"

# --- measures -------------------------------------------------------------------

# wrk_run URL: DURATION s of wrk with 100 connections, its report kept in
# wrk.txt; fails the run if any request failed.
wrk_run() {
	local out
	out=$(ip netns exec "$NS_C" wrk -t 2 -c 100 -d "${DURATION}s" --timeout 60s "$1")
	echo "$out" >>"$TMP/wrk.txt"
	if grep -q "Socket errors\|Non-2xx" <<<"$out"; then
		echo "$out" >&2
		die "wrk saw errors on $1"
	fi
	echo "$out"
}
# wrk_rate URL: requests per second.
wrk_rate() { wrk_run "$1" | awk '/^Requests\/sec:/ { printf "%.0f\n", $2 }'; }
# wrk_mib URL: MiB/s read, partial responses included: with a 32 MiB file
# and 100 connections few requests end within DURATION, so requests/s
# would mostly count the ones that happened to finish.
wrk_mib() {
	wrk_run "$1" | awk '/^Transfer\/sec:/ {
		v = $2; u = v; sub(/[A-Za-z]+$/, "", v); sub(/^[0-9.]+/, "", u)
		m = u == "GB" ? 1024 : u == "MB" ? 1 : u == "KB" ? 1 / 1024 : 1 / 1048576
		printf "%.0f\n", v * m }'
}

# tftp_mib URL BLKSIZE: download speed of one fetch, MiB/s.
tftp_mib() {
	local s
	s=$(ip netns exec "$NS_C" curl -fsS --max-time 120 --tftp-blksize "$2" -o /dev/null -w '%{speed_download}' "$1") ||
		die "tftp fetch $1 (blksize $2) failed"
	awk -v s="$s" 'BEGIN { printf "%.1f\n", s / 1048576 }'
}

# alternate KEY N FN PEER_URL BS_URL [ARG]: N turns of FN on the peer then
# on bootstrapd; R[KEY_peer] and R[KEY_bs] get the medians.
alternate() {
	local key=$1 n=$2 fn=$3 peer=$4 bs=$5 arg=${6:-} v
	: >"$TMP/$key.peer"
	: >"$TMP/$key.bs"
	for _ in $(seq "$n"); do
		v=$("$fn" "$peer" "$arg")
		echo "$v" >>"$TMP/$key.peer"
		v=$("$fn" "$bs" "$arg")
		echo "$v" >>"$TMP/$key.bs"
	done
	R[${key}_peer]=$(median "$TMP/$key.peer")
	R[${key}_bs]=$(median "$TMP/$key.bs")
}
median() {
	sort -n "$1" | awk '{ v[NR] = $1 } END { m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf (m >= 100 ? "%.0f" : "%.1f"), m }'
}

# storm URL: seconds for STORM concurrent fetches (blksize 1468) to all end;
# fails the run if any fetch failed.
storm() {
	local url=$1 dir start end fails
	dir=$(mktemp -d "$TMP/storm.XXXXXX")
	start=$(date +%s.%N)
	for i in $(seq "$STORM"); do
		ip netns exec "$NS_C" curl -fsS --max-time 60 --interface "10.90.1.$((i % 128))" --tftp-blksize 1468 -o /dev/null "$url" 2>"$dir/$i.err" || echo "$i" >>"$dir/failed" &
	done
	# storm runs in a command substitution: wait sees its curls only.
	wait
	end=$(date +%s.%N)
	fails=0
	[[ -f $dir/failed ]] && fails=$(wc -l <"$dir/failed")
	[[ $fails == 0 ]] || { cat "$dir"/*.err >&2; die "$fails of $STORM fetches of $url failed"; }
	awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }'
}

declare -A R
measure() { [[ " $MEASURES " == *" $1 "* ]]; }
if measure http; then
	log "HTTP small file ($SMALL_SIZE bytes), wrk -c100, $ROUNDS x ${DURATION}s each"
	alternate hs "$ROUNDS" wrk_rate "http://$PEER_IP:8080/undionly.kpxe" "http://$BS_IP:8080/assets/undionly.kpxe"
	log "HTTP 32 MiB file"
	alternate hb "$ROUNDS" wrk_mib "http://$PEER_IP:8080/big.bin" "http://$BS_IP:8080/assets/big.bin"
fi
if measure tftp; then
	for blk in 1468 512; do
		log "TFTP 32 MiB file, blksize $blk, $RUNS fetches each"
		alternate "t$blk" "$RUNS" tftp_mib "tftp://$PEER_IP/big.bin" "tftp://$BS_IP/big.bin" "$blk"
	done
fi
if measure storm; then
	log "TFTP $STORM concurrent fetches of undionly.kpxe"
	R[st_peer]=$(storm "tftp://$PEER_IP/undionly.kpxe")
	R[st_bs]=$(storm "tftp://$BS_IP/undionly.kpxe")
fi

# ratio is bootstrapd / peer, except for times (lower is better), where it
# is peer / bootstrapd: above 1 is always bootstrapd ahead.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }

echo
echo "Machine: $(nproc) cores, kernel $(uname -r); $(nginx -v 2>&1 | sed 's/^nginx version: //'), $(dpkg-query -W -f='tftpd-hpa ${Version}' tftpd-hpa 2>/dev/null), bootstrapd $("$BIN" version 2>/dev/null || echo '?'); $(date -u '+%Y-%m-%d %H:%M UTC')"
echo
echo "| measure | peer | bootstrapd | ratio |"
echo "|---|---:|---:|---:|"
if measure http; then
	echo "| HTTP, $((SMALL_SIZE / 1000)) KB file, wrk -c100 (req/s, median of $ROUNDS) | nginx: ${R[hs_peer]} | ${R[hs_bs]} | $(ratio "${R[hs_bs]}" "${R[hs_peer]}") |"
	echo "| HTTP, 32 MiB file, wrk -c100 (MiB/s, median of $ROUNDS) | nginx: ${R[hb_peer]} | ${R[hb_bs]} | $(ratio "${R[hb_bs]}" "${R[hb_peer]}") |"
fi
if measure tftp; then
	echo "| TFTP, one 32 MiB file, blksize 1468 (MiB/s, median of $RUNS) | tftpd-hpa: ${R[t1468_peer]} | ${R[t1468_bs]} | $(ratio "${R[t1468_bs]}" "${R[t1468_peer]}") |"
	echo "| TFTP, one 32 MiB file, blksize 512 (MiB/s, median of $RUNS) | tftpd-hpa: ${R[t512_peer]} | ${R[t512_bs]} | $(ratio "${R[t512_bs]}" "${R[t512_peer]}") |"
fi
if measure storm; then
	echo "| TFTP, $STORM concurrent fetches of undionly.kpxe (s, ratio peer/bootstrapd) | tftpd-hpa: ${R[st_peer]} | ${R[st_bs]} | $(ratio "${R[st_peer]}" "${R[st_bs]}") |"
fi
