#!/usr/bin/env bash
# bench-dhcp.sh: DHCP load test, Kea and bootstrapd under the same perfdhcp load.
#
# Two network namespaces joined by a veth pair: the server side (10.80.0.1/12)
# runs one DHCP server at a time, the client side (10.80.0.2/12) runs Kea's
# perfdhcp. For each server the rate goes up a fixed series until more than
# MAX_DROP % of exchanges fail; every step gets a fresh server with empty lease
# storage. After each step the server is killed with SIGKILL and its lease
# storage is compared with the leases perfdhcp saw ACKed.
#
# Run as root from the repository: `make bench` (builds bin/bootstrapd first).
# Knobs (environment): RATES, PERIOD, CLIENTS, MAX_DROP, SERVERS, BUDGET, KEEP,
# BIN, BIN2 and ORDER (before/after in one run), and for finding where a
# server's CPU goes, ATTACH and PROFILE (below).
# Nothing outside the two namespaces, the veth pair and one temp directory is
# created, and the exit trap deletes all of them. Host interfaces are not touched.
set -euo pipefail

cd "$(dirname "$0")/.."

RATES=${RATES:-"1000 2000 3000 4000 5000 6000 8000 12000"} # exchanges/s offered, in order
PERIOD=${PERIOD:-10}           # seconds of load per step
CLIENTS=${CLIENTS:-100000}     # distinct client MACs (perfdhcp -R)
MAX_DROP=${MAX_DROP:-0.1}      # % of exchanges lost that ends a server's series
SERVERS=${SERVERS:-"kea bootstrapd bootstrapd-etcd"}
BUDGET=${BUDGET:-330}          # seconds; no step starts after this (a full run takes about 4 min)
KEEP=${KEEP:-0}                # 1: keep the temp dir (configs, logs, perfdhcp output)
BIN=${BIN:-$PWD/bin/bootstrapd}
# BIN2: a second bootstrapd binary, run as the server "bootstrapd2" (add it to
# SERVERS), e.g. the build before a change next to the one after it.
BIN2=${BIN2:-}
# ORDER=rate: every server at one rate, then the next rate, instead of each
# server's whole series in turn: servers compared step by step see the same
# background load, which on a shared machine changes within minutes.
ORDER=${ORDER:-server}
# ATTACH: a command run beside every step's load, with $SERVER_PID and $DIR
# (the step's directory) in its environment, e.g.
#   ATTACH='perf stat -e task-clock,context-switches,raw_syscalls:sys_enter -p $SERVER_PID -o $DIR/perf.txt'
#   ATTACH='strace -c -f -o $DIR/strace.txt -p $SERVER_PID'   # slows the server: for counts only
# It gets SIGINT when perfdhcp ends (perf and strace then write their
# summary). Its output stays in the step's directory: use KEEP=1.
ATTACH=${ATTACH:-}
# PROFILE=1: bootstrapd writes a Go CPU profile to the step's directory
# (cpu.pprof). The profile is only written by a clean stop, so those steps
# end with SIGTERM instead of SIGKILL, and their durability check says less:
# do not use the "missing on disk" column of a PROFILE run.
PROFILE=${PROFILE:-0}

SERVER_IP=10.80.0.1
CLIENT_IP=10.80.0.2
PREFIX=12
SUBNET=10.80.0.0/12
POOL_LO=10.81.0.0
POOL_HI=10.87.255.254
WAIT_US=1000000 # perfdhcp -W: wait 1 s for late replies after the period

NS_S=bench-dhcp-s-$$
NS_C=bench-dhcp-c-$$
VETH_S=bds$$ # interface names stay under 16 characters
VETH_C=bdc$$

die() { echo "bench-dhcp: $*" >&2; exit 1; }
log() { printf '[%3ds] %s\n' "$SECONDS" "$*" >&2; }

[[ $EUID -eq 0 ]] || die "needs root (network namespaces): sudo make bench"
for cmd in ip perfdhcp kea-dhcp4 jq awk ss curl /usr/bin/time; do
	command -v "$cmd" >/dev/null || die "$cmd not found (Debian: apt-get install iproute2 kea-admin kea-dhcp4-server jq curl time)"
done
[[ " $SERVERS " != *" bootstrapd-etcd "* ]] || command -v etcd >/dev/null || die "etcd not found (Debian: apt-get install etcd-server)"
[[ -x $BIN ]] || die "$BIN missing: run make build"

TMP=$(mktemp -d /tmp/bench-dhcp.XXXXXX)
SERVER_PID=
CLK_TCK=$(getconf CLK_TCK)
NPROC=$(nproc)

# --- cleanup ---------------------------------------------------------------

# stop_server [SIGNAL]: stop the running server (TERM, then KILL after 5 s).
# Its stderr goes nowhere so that bash's "Killed" job notice stays quiet.
stop_server() {
	[[ -n $SERVER_PID ]] || return 0
	kill -"${1:-TERM}" "$SERVER_PID" 2>/dev/null || true
	for _ in $(seq 50); do
		kill -0 "$SERVER_PID" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$SERVER_PID" 2>/dev/null || true
	wait "$SERVER_PID" || true
	SERVER_PID=
} 2>/dev/null

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	stop_server
	stop_etcd
	# Deleting a namespace deletes the veth end inside it, and so the pair.
	ip netns del "$NS_S" 2>/dev/null || true
	ip netns del "$NS_C" 2>/dev/null || true
	ip link del "$VETH_S" 2>/dev/null || true # only if setup failed half-way
	if [[ $KEEP == 1 ]]; then
		echo "bench-dhcp: kept $TMP" >&2
	else
		rm -rf "$TMP"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- network ---------------------------------------------------------------

setup_net() {
	ip netns add "$NS_S"
	ip netns add "$NS_C"
	ip link add "$VETH_S" type veth peer name "$VETH_C"
	ip link set "$VETH_S" netns "$NS_S"
	ip link set "$VETH_C" netns "$NS_C"
	ip -n "$NS_S" addr add "$SERVER_IP/$PREFIX" dev "$VETH_S"
	ip -n "$NS_C" addr add "$CLIENT_IP/$PREFIX" dev "$VETH_C"
	for ns in "$NS_S" "$NS_C"; do ip -n "$ns" link set lo up; done
	ip -n "$NS_S" link set "$VETH_S" up
	ip -n "$NS_C" link set "$VETH_C" up
}

# wait_for TIMEOUT_S CMD...: poll CMD every 0.1 s until it succeeds.
wait_for() {
	local n=$(($1 * 10))
	shift
	for _ in $(seq "$n"); do
		"$@" && return 0
		kill -0 "$SERVER_PID" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}

port67_bound() { ip netns exec "$NS_S" ss -Hlun 'sport = :67' | grep -q .; }

# --- servers ---------------------------------------------------------------
# start_<server> DIR starts the server with its state in DIR and sets
# SERVER_PID; leases_<server> DIR prints "mac ip" for every lease the server
# has on disk (for bootstrapd: as loaded by a restarted daemon).

start_kea() {
	local dir=$1
	cat >"$dir/kea.json" <<-EOF
		{ "Dhcp4": {
		  "interfaces-config": { "interfaces": ["$VETH_S"], "dhcp-socket-type": "udp" },
		  "lease-database": { "type": "memfile", "persist": true, "name": "$dir/leases4.csv", "lfc-interval": 0 },
		  "valid-lifetime": 3600,
		  "subnet4": [ { "id": 1, "subnet": "$SUBNET", "pools": [ { "pool": "$POOL_LO - $POOL_HI" } ] } ],
		  "loggers": [ { "name": "kea-dhcp4", "severity": "WARN", "output_options": [ { "output": "stderr" } ] } ]
		} }
	EOF
	# Pid and lock files go to DIR instead of /run/kea, so a Kea run by the
	# system (or a stale pid file) does not stop this one from starting.
	KEA_PIDFILE_DIR=$dir KEA_LOCKFILE_DIR=$dir \
		ip netns exec "$NS_S" kea-dhcp4 -c "$dir/kea.json" >"$dir/server.log" 2>&1 &
	SERVER_PID=$!
	wait_for 10 port67_bound || { cat "$dir/server.log" >&2; die "kea-dhcp4 did not start"; }
}

leases_kea() {
	# memfile CSV: address,hwaddr,... ; a lease may be written more than once.
	awk -F, 'NR > 1 && $2 != "" { print $2, $1 }' "$1/leases4.csv" | sort -u
}

write_site() {
	local dir=$1
	mkdir -p "$dir/state" "$dir/netboot" "$dir/profiles"
	: >"$dir/netboot/undionly.kpxe" # the daemon checks that the boot files exist
	: >"$dir/netboot/snponly.efi"
	cat >"$dir/site.hcl" <<-EOF
		interface    = "$VETH_S"
		state_dir    = "$dir/state"
		netboot_dir  = "$dir/netboot"
		profiles_dir = "$dir/profiles"
		dhcp {
		  mode       = "pool"
		  subnet     = "$SUBNET"
		  range      = ["$POOL_LO", "$POOL_HI"]
		  lease_time = "1h"
		}
		http { listen = "$SERVER_IP:8080" }
		tftp { listen = "$SERVER_IP:6969" }
		api { socket = "$dir/api.sock" }
	EOF
}

# server_bin SERVER: the binary of a bootstrapd server (bootstrapd, bootstrapd2).
server_bin() {
	case $1 in
	bootstrapd2) echo "${BIN2:?BIN2 is not set (SERVERS names bootstrapd2)}" ;;
	*) echo "$BIN" ;;
	esac
}
start_bootstrapd2() { BIN=$(server_bin bootstrapd2) start_bootstrapd "$@"; }
leases_bootstrapd2() { BIN=$(server_bin bootstrapd2) leases_bootstrapd "$@"; }

start_bootstrapd() {
	local dir=$1 log=${2:-server.log}
	[[ -f $dir/site.hcl ]] || write_site "$dir"
	"$BIN" check -config "$dir/site.hcl" >/dev/null
	local flags=()
	[[ $PROFILE == 1 && $log == server.log ]] && flags=(-cpuprofile "$dir/cpu.pprof")
	ip netns exec "$NS_S" "$BIN" serve -config "$dir/site.hcl" -log-format json "${flags[@]}" 2>"$dir/$log" &
	SERVER_PID=$!
	wait_for 10 grep -q '"bootstrapd serving"' "$dir/$log" ||
		{ cat "$dir/$log" >&2; die "bootstrapd did not start"; }
}

# bootstrapd-etcd: bootstrapd with its store in a three-member etcd cluster
# (Debian's etcd-server) in the server's namespace, each member with its own
# data directory on the same disk: the lab's shared store, on one machine.
# Its CPU figures are bootstrapd's and the members' together.
ETCD_PIDS=()
start_etcd() {
	local dir=$1 i cluster=""
	for i in 0 1 2; do cluster+="${cluster:+,}m$i=http://127.0.0.1:$((2380 + 10 * i))"; done
	for i in 0 1 2; do
		ip netns exec "$NS_S" etcd --name "m$i" --data-dir "$dir/etcd-m$i" \
			--listen-client-urls "http://127.0.0.1:$((2379 + 10 * i))" --advertise-client-urls "http://127.0.0.1:$((2379 + 10 * i))" \
			--listen-peer-urls "http://127.0.0.1:$((2380 + 10 * i))" --initial-advertise-peer-urls "http://127.0.0.1:$((2380 + 10 * i))" \
			--initial-cluster "$cluster" --initial-cluster-state new --logger zap --log-outputs "$dir/etcd-m$i.log" &
		ETCD_PIDS+=($!)
	done
	for _ in $(seq 100); do
		ip netns exec "$NS_S" curl -fsS http://127.0.0.1:2379/health 2>/dev/null | grep -q '"health":"true"' && return 0
		sleep 0.1
	done
	die "etcd did not come up (logs in $dir)"
}
stop_etcd() {
	((${#ETCD_PIDS[@]})) || return 0
	kill -KILL "${ETCD_PIDS[@]}" 2>/dev/null || true
	wait "${ETCD_PIDS[@]}" 2>/dev/null || true
	ETCD_PIDS=()
}
start_bootstrapd-etcd() {
	local dir=$1
	if [[ ! -f $dir/site.hcl ]]; then
		start_etcd "$dir"
		write_site "$dir"
		cat >>"$dir/site.hcl" <<-EOF
			store {
			  name = "bench"
			  etcd { endpoints = ["http://127.0.0.1:2379", "http://127.0.0.1:2389", "http://127.0.0.1:2399"] }
			}
		EOF
	fi
	start_bootstrapd "$@"
}
leases_bootstrapd-etcd() {
	leases_bootstrapd "$@"
	stop_etcd
}

leases_bootstrapd() {
	local dir=$1
	# The daemon was SIGKILLed; a new one loads the leases from the store.
	start_bootstrapd "$dir" restart.log
	"$BIN" leases -addr "unix://$dir/api.sock" -json |
		jq -r '.[] | select(.mac != null and .mac != "" and (.declined | not)) | "\(.mac) \(.ip)"' | sort -u
	stop_server TERM
}

# --- measurement -------------------------------------------------------------

# CPU time comes from /proc/PID/stat, in clock ticks. The machine-wide
# counters in /proc/stat are not used: on this kind of VM they disagree with
# the per-process figures by a factor of several.
# proc_ticks PID: utime + stime of one process.
proc_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
# etcd_ticks: the etcd members' alone (0 without them).
etcd_ticks() {
	local p n=0
	for p in "${ETCD_PIDS[@]}"; do n=$((n + $(proc_ticks "$p"))); done
	echo "$n"
}
# server_ticks: the server's, and its etcd members' when it has them.
server_ticks() {
	local p n=0
	for p in "$SERVER_PID" "${ETCD_PIDS[@]}"; do n=$((n + $(proc_ticks "$p"))); done
	echo "$n"
}
# cpu_snapshot: "pid ppid ticks name" for every process, ticks counting its
# reaped children too (cutime, cstime), so short-lived processes are not missed.
cpu_snapshot() {
	# The command name in field 2 may contain spaces: cut it out by its parentheses.
	# A process that exits between the glob and the read makes cat fail,
	# which pipefail and set -e would turn into the script's end: what was
	# read is all there is to count.
	{ cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk '{
		name = $0; sub(/^[0-9]+ \(/, "", name); sub(/\) [A-Za-z] .*$/, "", name); gsub(/ /, "_", name)
		pid = $1; sub(/^.*\) /, ""); print pid, $2, $12 + $13 + $14 + $15, name }'
}
# other_ticks BEFORE AFTER EXCLUDE...: "ticks busiest-names" used between two
# snapshots by processes other than EXCLUDE (this script, whose reaped
# children include perfdhcp, and the server). A process that exits in between
# hands its whole CPU time to an ancestor's cutime; the part it had used
# before the first snapshot is taken off again.
other_ticks() {
	local before=$1 after=$2
	shift 2
	awk -v ex=" $* " '
		NR == FNR { t0[$1] = $3; pp[$1] = $2; next }
		index(ex, " " $1 " ") == 0 { seen[$1] = $4; byp[$1] = $3 - t0[$1] }
		END {
			for (p in t0) {
				if ((p in seen) || index(ex, " " p " ")) continue
				# Its time went up to the nearest ancestor still alive.
				for (a = pp[p]; (a in t0) && !(a in seen) && !index(ex, " " a " "); a = pp[a]) {}
				if (a in seen) byp[a] -= t0[p]
			}
			for (p in byp) if (byp[p] > 0) { d += byp[p]; by[seen[p]] += byp[p] }
			top = ""
			for (k = 0; k < 3; k++) {
				m = 0; n = ""
				for (p in by) if (by[p] > m) { m = by[p]; n = p }
				if (m < 5) break
				top = top (top == "" ? "" : ",") n ":" m; delete by[n]
			}
			print d + 0, (top == "" ? "-" : top)
		}' "$before" "$after"
}

# rcvbuf_errors NS: UDP datagrams the kernel dropped in NS because a socket's
# receive buffer was full (the reader was too slow).
rcvbuf_errors() {
	ip netns exec "$1" cat /proc/net/snmp | awk '$1 == "Udp:" { if (n++) print $6 }'
}

# parse_perfdhcp FILE: "do_sent do_recv do_drop% do_avg_ms ra_sent ra_recv ra_drop% ra_avg_ms"
parse_perfdhcp() {
	awk '
		/Statistics for: DISCOVER-OFFER/ { s = 1 }
		/Statistics for: REQUEST-ACK/    { s = 2 }
		/^\*\*\*Leases for/              { s = 0 }
		s && /^sent packets:/     { sent[s] = $3 }
		s && /^received packets:/ { recv[s] = $3 }
		s && /^drops ratio:/      { drop[s] = $3 }
		s && /^avg delay:/        { avg[s] = $3 }
		END {
			for (i = 1; i <= 2; i++) {
				printf "%s %s %s %s ", (i in sent) ? sent[i] : 0, (i in recv) ? recv[i] : 0,
					(i in drop) ? drop[i] : "-", (i in avg) ? avg[i] : "-"
			}
			print ""
		}' "$1"
}

# acked_leases FILE: "mac ip" for every lease perfdhcp saw ACKed (client_id is 01 + MAC).
acked_leases() {
	awk -F, '
		/^\*\*\*Leases for REQUEST-ACK/ { on = 1; next }
		/^\*\*\*/ { on = 0 }
		on && length($1) == 14 && $1 ~ /^01[0-9a-f]+$/ {
			m = substr($1, 3)
			printf "%s:%s:%s:%s:%s:%s %s\n", substr(m,1,2), substr(m,3,2), substr(m,5,2), substr(m,7,2), substr(m,9,2), substr(m,11,2), $2
		}' "$1" | sort -u
}

RESULTS=$TMP/results.tsv
: >"$RESULTS"

# run_step SERVER RATE: one fresh server, PERIOD seconds of load, a durability
# check, one line in RESULTS. Returns 1 when the step lost more than MAX_DROP %.
run_step() {
	local server=$1 rate=$2 dir=$TMP/$1-$2 rc=0
	mkdir -p "$dir"
	"start_$server" "$dir"
	local t0 w0
	t0=$(server_ticks)
	local e0
	e0=$(etcd_ticks)
	cpu_snapshot >"$dir/cpu.0"
	w0=$(date +%s%N)
	local qs0 qc0
	qs0=$(rcvbuf_errors "$NS_S")
	qc0=$(rcvbuf_errors "$NS_C")
	local cmd=(perfdhcp -4 -l "$VETH_C" -r "$rate" -R "$CLIENTS" -p "$PERIOD" -W "$WAIT_US" -x l "$SERVER_IP")
	echo "ip netns exec $NS_C ${cmd[*]}" >"$dir/command"
	local attach_pid=
	if [[ -n $ATTACH ]]; then
		SERVER_PID=$SERVER_PID DIR=$dir setsid bash -c "exec $ATTACH" >"$dir/attach.log" 2>&1 &
		attach_pid=$!
	fi
	/usr/bin/time -f '%U %S %e' -o "$dir/perfdhcp.time" \
		timeout $((PERIOD + 30)) ip netns exec "$NS_C" "${cmd[@]}" >"$dir/perfdhcp.txt" 2>&1 || rc=$?
	# perfdhcp exits 3 when some exchanges did not complete: that is a result.
	[[ $rc == 0 || $rc == 3 ]] || { cat "$dir/perfdhcp.txt" >&2; die "perfdhcp failed ($rc) against $server at $rate/s"; }
	if [[ -n $attach_pid ]]; then
		kill -INT "$attach_pid" 2>/dev/null || true
		wait "$attach_pid" || true
	fi
	local t1 w1
	t1=$(server_ticks)
	local e1
	e1=$(etcd_ticks)
	((${#ETCD_PIDS[@]} == 0)) || log "$server at $rate/s: of the server CPU, the etcd members used $((100 * (e1 - e0) / (t1 - t0 > 0 ? t1 - t0 : 1)))%"
	cpu_snapshot >"$dir/cpu.1"
	w1=$(date +%s%N)
	local qs qc
	qs=$(($(rcvbuf_errors "$NS_S") - qs0))
	qc=$(($(rcvbuf_errors "$NS_C") - qc0))

	local other others
	read -r other others < <(other_ticks "$dir/cpu.0" "$dir/cpu.1" $$ "$SERVER_PID" "${ETCD_PIDS[@]}")
	echo "$others" >"$dir/others"

	local do_sent do_drop do_avg ra_recv ra_drop ra_avg
	read -r do_sent _ do_drop do_avg _ ra_recv ra_drop ra_avg < <(parse_perfdhcp "$dir/perfdhcp.txt")

	# Durability: kill without warning, then compare what is on disk with
	# what the clients were told.
	if [[ $PROFILE == 1 && $server == bootstrapd* ]]; then
		stop_server TERM # writes cpu.pprof; see PROFILE above
	else
		stop_server KILL
	fi
	acked_leases "$dir/perfdhcp.txt" >"$dir/acked"
	"leases_$server" "$dir" >"$dir/stored"
	local acked missing
	acked=$(wc -l <"$dir/acked")
	missing=$(comm -23 "$dir/acked" "$dir/stored" | wc -l)

	awk -v s="$server" -v r="$rate" -v p="$PERIOD" -v ds="$do_sent" -v rr="$ra_recv" \
		-v dd="$do_drop" -v rd="$ra_drop" -v da="$do_avg" -v ra="$ra_avg" \
		-v dt="$((t1 - t0))" -v hz="$CLK_TCK" -v wall="$(((w1 - w0) / 1000000))" -v other="$other" \
		-v ack="$acked" -v miss="$missing" -v qs="$qs" -v qc="$qc" -v pt="$(tail -1 "$dir/perfdhcp.time")" 'BEGIN {
			split(pt, t, " ")                          # perfdhcp: user, system, elapsed seconds
			loss = ds > 0 ? 100 * (1 - rr / ds) : 100
			cpu = 100 * dt / hz / (wall / 1000)         # % of one core, over the step
			us = rr > 0 ? 1e6 * dt / hz / rr : 0       # server CPU per completed exchange
			printf "%s\t%d\t%.0f\t%.0f\t%.3f\t%s\t%s\t%s\t%s\t%.0f\t%.0f\t%.0f\t%.0f\t%d\t%d\t%d\t%d\n",
				s, r, ds / p, rr / p, loss, dd, rd, da, ra, cpu, us, 100 * (t[1] + t[2]) / t[3], 100 * other / hz / (wall / 1000), ack, miss, qs, qc
		}' >>"$RESULTS"
	log "$(tail -1 "$RESULTS" | awk -F'\t' '{ printf "%s at %s/s: %s/s completed, %s%% lost, avg delay D-O %s ms R-A %s ms, server CPU %s%%, other CPU %s%%, ACKed %s, missing on disk %s, rcvbuf drops server %s client %s", $1, $2, $4, $5, $8, $9, $10, $13, $14, $15, $16, $17 }') (busiest others, ticks: $others)"
	awk -v l="$(tail -1 "$RESULTS" | cut -f5)" -v m="$MAX_DROP" 'BEGIN { exit !(l < m) }'
}

# --- run -------------------------------------------------------------------

log "machine: $NPROC cores, $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo), kernel $(uname -r)"
log "versions: $("$BIN" version)${BIN2:+ (bootstrapd2: $("$BIN2" version))}, Kea $(kea-dhcp4 -v), perfdhcp $(perfdhcp -v 2>&1 | awk '{ print $2 }')"
setup_net

# Anything else running on the machine competes with the server and perfdhcp
# for the same cores: measure it, and say so.
cpu_snapshot >"$TMP/cpu.0"
sleep 2
cpu_snapshot >"$TMP/cpu.1"
read -r idle_ticks idle_top < <(other_ticks "$TMP/cpu.0" "$TMP/cpu.1" $$)
IDLE_BUSY=$((idle_ticks * 100 / CLK_TCK / 2))
log "CPU used by other processes before the run: $IDLE_BUSY% of one core, of $NPROC (busiest, ticks: $idle_top)"
((IDLE_BUSY < 20)) || log "WARNING: the machine is already busy; the figures will be low and noisy"

# Smoke test: bootstrapd must answer a gentle load completely before the
# numbers mean anything.
log "smoke test: bootstrapd at 100/s for 2 s"
smoke=$TMP/smoke
mkdir -p "$smoke"
start_bootstrapd "$smoke"
ip netns exec "$NS_C" perfdhcp -4 -l "$VETH_C" -r 100 -R "$CLIENTS" -p 2 -W "$WAIT_US" "$SERVER_IP" >"$smoke/perfdhcp.txt" 2>&1 ||
	{ cat "$smoke/perfdhcp.txt" "$smoke/server.log" >&2; die "smoke test: bootstrapd did not complete every exchange at 100/s"; }
stop_server TERM

declare -A STOPPED # servers whose series has ended
step() {
	[[ -z ${STOPPED[$1]:-} ]] || return 0
	if ((SECONDS > BUDGET)); then
		log "time budget ($BUDGET s) used up: not running $1 at $2/s"
		STOPPED[$1]=1
		return
	fi
	run_step "$1" "$2" || STOPPED[$1]=1
}
if [[ $ORDER == rate ]]; then
	for rate in $RATES; do
		for server in $SERVERS; do
			step "$server" "$rate"
		done
	done
else
	for server in $SERVERS; do
		for rate in $RATES; do
			step "$server" "$rate"
		done
	done
fi

# --- report ----------------------------------------------------------------

echo
echo "## DHCP load: $(date -u +%Y-%m-%d), $NPROC cores ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)), kernel $(uname -r)"
echo
echo "$("$BIN" version)${BIN2:+ (bootstrapd2: $("$BIN2" version))}; Kea $(kea-dhcp4 -v) (memfile, persist=true, multi-threading off as by default in 2.2); perfdhcp $(perfdhcp -v 2>&1 | awk '{ print $2 }'); ${PERIOD} s per step, ${CLIENTS} client MACs; other processes used ${IDLE_BUSY}% of a core before the run. CPU figures are % of one core (${NPROC}00% = all cores)."
echo
echo "| server | offered/s | sent/s | completed/s | lost % | drops D-O % | drops R-A % | avg D-O ms | avg R-A ms | server CPU % | server CPU µs/exchange | perfdhcp CPU % | other CPU % | ACKed leases | missing on disk | rcvbuf drops server | rcvbuf drops client |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
awk -F'\t' -v OFS=' | ' '{ $1 = $1; print "| " $0 " |" }' "$RESULTS"
echo
for server in $SERVERS; do
	awk -F'\t' -v s="$server" -v m="$MAX_DROP" '
		$1 == s && $5 < m && $4 > best { best = $4; line = $0 }
		END {
			if (!line) { printf "- %s: no step stayed under %s%% lost\n", s, m; exit }
			split(line, f, "\t")
			printf "- **%s**: best %s exchanges/s completed (offered %s/s) with %s%% lost; avg delay D-O %s ms, R-A %s ms\n", s, f[4], f[2], f[5], f[8], f[9]
		}' "$RESULTS"
done
echo
echo "Commands (server in namespace A on veth $VETH_S, $SERVER_IP/$PREFIX; perfdhcp in namespace B on $VETH_C, $CLIENT_IP/$PREFIX):"
echo
echo '```'
echo "ip netns exec A kea-dhcp4 -c kea.json                       # memfile, persist=true, lfc-interval=0"
echo "ip netns exec A ${BIN#"$PWD"/} serve -config site.hcl -log-format json  # dhcp mode = pool"
echo "ip netns exec B perfdhcp -4 -l $VETH_C -r RATE -R $CLIENTS -p $PERIOD -W $WAIT_US -x l $SERVER_IP   # RATE in: $RATES"
echo '```'
echo
# One generated config of each server (the steps differ only in their directory).
for f in $(compgen -G "$TMP/kea-*/kea.json" | head -1) $(compgen -G "$TMP/bootstrapd-*/site.hcl" | head -1); do
	echo "Generated ${f#"$TMP"/}:"
	echo
	echo '```'
	cat "$f"
	echo '```'
	echo
done
awk -F'\t' '$15 > 0 { bad = 1 } END { exit bad }' "$RESULTS" || die "some ACKed leases were not on disk after SIGKILL (see 'missing on disk')"
