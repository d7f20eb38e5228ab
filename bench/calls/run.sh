#!/usr/bin/env bash
# Call benchmarks with media anchored: Tsunagu vs Kamailio 5.6 + rtpengine
# (userspace forwarding), in the same run, with the same load generators.
#
#   bench/calls/run.sh            # both benchmarks, both peers -> bench/calls/last-result.txt
#
#   caps   call setups per second: SIPp caller -> server -> SIPp callee, each call
#          INVITE/100/180/200/ACK, CAPS_MEDIA_SECONDS of G.711 RTP both ways
#          through the server's relay, BYE. Highest offered rate with < 1 % failed
#          calls and < 1 retransmission per 100 calls (as bench/register).
#   relay  concurrent relayed G.711 calls on ONE core (server pinned to CPU
#          SERVER_CPU, load generator on GEN_CPU): setup_calls.py sets up N calls
#          over SIP, rtpload sends 20 ms packets both ways through the relay for
#          RELAY_SECONDS and measures loss and the latency the relay adds.
#   record the relay benchmark's N calls on one core run twice, without and with
#          call recording (Tsunagu: recording_mode none / all; rtpengine:
#          --recording-method=pcap and the record-call flag): CPU per recorded
#          call, split by thread, loss, latency, bytes, the upload measured apart
#          -> RECORD_RESULT_FILE (not a default benchmark: BENCHES=record)
#   ivr    N calls the server answers itself with a long prompt (Tsunagu: a DID
#          to ivr:main; rtpengine: "play media" over its ng protocol on a relayed
#          call): CPU per prompt stream on one core, and the stream as received
#          (packets/s, missing sequence numbers, inter-arrival) -> IVR_RESULT_FILE
#
# Environment (all optional):
#   PEERS="kamailio tsunagu"    which servers, in this order
#   BENCHES="caps relay"        which benchmarks
#   TSUNAGU_BIN=path            default target/release/tsunagu
#   BUILD=1                     build it first (flock /tmp/cargo.lock cargo build --release --bin tsunagu);
#                               also done when the default binary is missing
#   CAPS_RATES="50 100 ..."     offered call rates (calls/s), rising; stops at the first failure
#   CAPS_STEP_SECONDS=30        how long each rate is offered (calls = rate x seconds)
#   CAPS_MEDIA_SECONDS=2        RTP streamed per call before the BYE
#   CAPS_REFINE=1               after the first failing rate, try once halfway
#   RELAY_CALLS="250 500 ..."   concurrent calls, rising; stops at the first step with loss
#   RELAY_REF_CALLS=1000        always measured (the "p99 at 1,000 calls" figure)
#   RELAY_SECONDS=20            counted window; RELAY_WARMUP=3 and RELAY_RAMP=2 s before it
#   RELAY_MAX_P99_MS=20         a step with 0 loss but a higher p99 does not "pass"
#   RELAY_SETUP_RATE=200        calls/s while setting up (setup_calls.py --rate)
#   RELAY_BASELINE=1            first run rtpload alone (no relay) at each N: loopback floor, generator capacity
#   RELAY_REFINE=1              after the first failing N, try once halfway
#   SERVER_CPU=1 GEN_CPU=0      CPUs for the relay benchmark (taskset)
#   KAM_PORT RTPE_NG_PORT TSU_SIP_PORT TSU_HTTP_PORT CALLER_PORT CALLEE_PORT
#                               default 27100 27110 27200 (TLS on +1) 27300 27400 27500
#   MEDIA_PORT_MIN=16000 MEDIA_PORT_MAX=25999   the server's relay ports (both servers)
#   GEN_RTP_BASE=10000          rtpload's ports: GEN_RTP_BASE .. +2N-1
#   KEEP_WORK=1                 keep the temporary directory (logs, SIPp statistics)
#   RESULT_FILE=path            default bench/calls/last-result.txt (caps, relay)
#   RECORD_CALLS="200 500"      record: concurrent calls, each measured without and with recording
#   RECORD_SECONDS=20           record and ivr: counted window (RELAY_WARMUP, RELAY_RAMP before it)
#   RECORD_UPLOAD_TIMEOUT=300   record: longest wait for every recording row to become `stored`
#   RECORD_REPEAT=1             record: each pair (without, with) this many times, interleaved
#   RECORD_RESULT_FILE=path     default bench/calls/last-result-record.txt
#   IVR_CALLS="200 500"         ivr: concurrent calls answered by the server with a prompt
#   IVR_PROMPT_SECONDS=120      ivr: length of the prompt (longer than the call is held)
#   IVR_RESULT_FILE=path        default bench/calls/last-result-ivr.txt
#   TSUNAGU_LOG=warn            RUST_LOG-style filter for the server
#
# See README.md next to this file.

set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

PEERS=${PEERS:-"kamailio tsunagu"}
BENCHES=${BENCHES:-"caps relay"}
CAPS_RATES=${CAPS_RATES:-"50 100 200 300 400 500 600 800 1000 1200 1500"}
CAPS_STEP_SECONDS=${CAPS_STEP_SECONDS:-30}
CAPS_MEDIA_SECONDS=${CAPS_MEDIA_SECONDS:-2}
CAPS_REFINE=${CAPS_REFINE:-1}
RELAY_CALLS=${RELAY_CALLS:-"250 500 1000 1500 2000"}
RELAY_REF_CALLS=${RELAY_REF_CALLS:-1000}
RELAY_SECONDS=${RELAY_SECONDS:-20}
RELAY_WARMUP=${RELAY_WARMUP:-3}
RELAY_RAMP=${RELAY_RAMP:-2}
RELAY_MAX_P99_MS=${RELAY_MAX_P99_MS:-20}
RELAY_SETUP_RATE=${RELAY_SETUP_RATE:-200}
RELAY_BASELINE=${RELAY_BASELINE:-1}
RELAY_REFINE=${RELAY_REFINE:-1}
SERVER_CPU=${SERVER_CPU:-1}
GEN_CPU=${GEN_CPU:-0}
KAM_PORT=${KAM_PORT:-27100}
RTPE_NG_PORT=${RTPE_NG_PORT:-27110}
TSU_SIP_PORT=${TSU_SIP_PORT:-27200}
TSU_HTTP_PORT=${TSU_HTTP_PORT:-27300}
CALLER_PORT=${CALLER_PORT:-27400}
CALLEE_PORT=${CALLEE_PORT:-27500}
MEDIA_PORT_MIN=${MEDIA_PORT_MIN:-16000}
MEDIA_PORT_MAX=${MEDIA_PORT_MAX:-25999}
GEN_RTP_BASE=${GEN_RTP_BASE:-10000}
SIPP_UAC_MEDIA_PORT=9000
SIPP_UAS_MEDIA_PORT=9010
KEEP_WORK=${KEEP_WORK:-0}
RESULT_FILE=${RESULT_FILE:-$HERE/last-result.txt}
RECORD_CALLS=${RECORD_CALLS:-"200 500"}
RECORD_SECONDS=${RECORD_SECONDS:-20}
RECORD_UPLOAD_TIMEOUT=${RECORD_UPLOAD_TIMEOUT:-300}
RECORD_REPEAT=${RECORD_REPEAT:-1}
RECORD_RESULT_FILE=${RECORD_RESULT_FILE:-$HERE/last-result-record.txt}
IVR_CALLS=${IVR_CALLS:-"200 500"}
IVR_PROMPT_SECONDS=${IVR_PROMPT_SECONDS:-120}
IVR_RESULT_FILE=${IVR_RESULT_FILE:-$HERE/last-result-ivr.txt}
IVR_DID=5550200
DEFAULT_TSUNAGU_BIN=$ROOT/target/release/tsunagu
TSUNAGU_BIN=${TSUNAGU_BIN:-$DEFAULT_TSUNAGU_BIN}
DID=5550100
EXT=1001
MAX_FAIL_PCT=1
MAX_RETRANS_PCT=1
MIN_ACHIEVED_PCT=95
MIN_MEDIA_PCT=95
SERVER_LIFETIME=10800 # every server is started under `timeout`: 3 h at most
LOCK=/tmp/cargo.lock
PY=/usr/bin/python3
[[ -x $PY ]] || PY=$(command -v python3)

log() { printf '%s %s\n' "$(date +%T)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------- prerequisites
for tool in sipp kamailio rtpengine gcc taskset flock curl awk sort timeout ss pgrep; do
	command -v "$tool" >/dev/null || die "$tool not found (scripts/setup.sh installs sip-tester kamailio rtpengine-daemon)"
done
[[ -n $PY ]] || die "python3 not found"
for n in $CAPS_RATES $RELAY_CALLS $RELAY_REF_CALLS $RECORD_CALLS $IVR_CALLS; do
	[[ $n =~ ^[0-9]+$ ]] && ((n > 0)) || die "bad number '$n' in CAPS_RATES / RELAY_CALLS / RECORD_CALLS / IVR_CALLS"
done
((RECORD_SECONDS > 0 && RECORD_SECONDS <= 300)) || die "RECORD_SECONDS must be 1..300"
((RECORD_UPLOAD_TIMEOUT > 0 && RECORD_UPLOAD_TIMEOUT <= 1800)) || die "RECORD_UPLOAD_TIMEOUT must be 1..1800"
((RECORD_REPEAT >= 1 && RECORD_REPEAT <= 10)) || die "RECORD_REPEAT must be 1..10"
((IVR_PROMPT_SECONDS >= RECORD_SECONDS + 30 && IVR_PROMPT_SECONDS <= 900)) || die "IVR_PROMPT_SECONDS must be RECORD_SECONDS+30..900"
((CAPS_STEP_SECONDS > 0 && CAPS_STEP_SECONDS <= 300)) || die "CAPS_STEP_SECONDS must be 1..300"
((CAPS_MEDIA_SECONDS >= 0 && CAPS_MEDIA_SECONDS <= 60)) || die "CAPS_MEDIA_SECONDS must be 0..60"
((RELAY_SECONDS > 0 && RELAY_SECONDS <= 300)) || die "RELAY_SECONDS must be 1..300"
((CPUS = $(nproc))) && ((SERVER_CPU < CPUS && GEN_CPU < CPUS)) || die "SERVER_CPU/GEN_CPU beyond $(nproc) CPUs"
max_relay=0
for n in $RELAY_CALLS $RELAY_REF_CALLS $RECORD_CALLS $IVR_CALLS; do ((n > max_relay)) && max_relay=$n; done
((GEN_RTP_BASE + 2 * max_relay <= MEDIA_PORT_MIN || GEN_RTP_BASE >= MEDIA_PORT_MAX)) ||
	die "rtpload ports $GEN_RTP_BASE..$((GEN_RTP_BASE + 2 * max_relay)) overlap the relay range $MEDIA_PORT_MIN..$MEDIA_PORT_MAX"
# rtpengine takes 4 ports per call (RTP+RTCP on both sides).
(((MEDIA_PORT_MAX - MEDIA_PORT_MIN + 1) / 4 >= max_relay)) ||
	die "relay port range $MEDIA_PORT_MIN..$MEDIA_PORT_MAX too small for $max_relay calls (4 ports per call)"
for p in $KAM_PORT $RTPE_NG_PORT $TSU_SIP_PORT $TSU_HTTP_PORT $CALLER_PORT $CALLEE_PORT; do
	((p < MEDIA_PORT_MIN || p > MEDIA_PORT_MAX)) || die "port $p lies in the relay range (UDP SO_REUSEADDR would let the relay steal it)"
	((p < GEN_RTP_BASE || p >= GEN_RTP_BASE + 2 * max_relay)) || die "port $p lies in rtpload's range"
done

# ---------------------------------------------------------------- Tsunagu: build, capability check
TSU_SKIP=
if [[ " $PEERS " == *" tsunagu "* ]]; then
	if [[ ! -x $TSUNAGU_BIN || ( ${BUILD:-0} == 1 && $TSUNAGU_BIN == "$DEFAULT_TSUNAGU_BIN" ) ]]; then
		if [[ $TSUNAGU_BIN == "$DEFAULT_TSUNAGU_BIN" ]]; then
			log "building $TSUNAGU_BIN (cargo build --release --bin tsunagu, under $LOCK)"
			(cd "$ROOT" && flock "$LOCK" cargo build --release --bin tsunagu) || TSU_SKIP="cargo build failed"
		else
			TSU_SKIP="TSUNAGU_BIN=$TSUNAGU_BIN is not executable"
		fi
	fi
	if [[ -z $TSU_SKIP ]]; then
		for sub in serve "trunk add" "did add" "user add"; do
			# shellcheck disable=SC2086
			if ! "$TSUNAGU_BIN" $sub --help >/dev/null 2>&1; then
				TSU_SKIP="$TSUNAGU_BIN has no \`$sub\` subcommand (built $(date -r "$TSUNAGU_BIN" '+%F %T')); rebuild with BUILD=1 once it exists"
				break
			fi
		done
	fi
	[[ -z $TSU_SKIP ]] || log "tsunagu: SKIPPED - $TSU_SKIP"
fi

# The whole measurement holds the cargo lock (fd 9; every child is started
# with 9>&- so none inherits it): no compile next to it on this 2-core machine.
exec 9>>"$LOCK"
if ! flock -n 9; then
	log "waiting for $LOCK (a cargo build is running; none may run during the measurement)"
	flock -w 7200 9 || die "could not get $LOCK within 2 hours"
fi

# ---------------------------------------------------------------- work dir, cleanup
WORK=$(mktemp -d /tmp/calls-bench.XXXXXX)
SRV_TIMEOUT_PIDS=() # `timeout` wrappers of the running servers
KAM_PIDS=()
RTPE_PID=
TSU_PID=
BG_PIDS=() # SIPp subshells, setup_calls.py, rtpload
FINISHED=0

stop_pids() { # stop_pids PID...: TERM, wait up to 5 s, then KILL (only these pids)
	local pid i alive
	for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
	for ((i = 0; i < 50; i++)); do
		alive=0
		for pid in "$@"; do kill -0 "$pid" 2>/dev/null && alive=1; done
		((alive)) || return 0
		sleep 0.1
	done
	for pid in "$@"; do kill -KILL "$pid" 2>/dev/null || true; done
}
# descendants PID: PID's children, grandchildren, ... (deepest last)
descendants() {
	local kid
	for kid in $(pgrep -P "$1" 2>/dev/null || true); do
		echo "$kid"
		descendants "$kid"
	done
}
stop_tree() { # stop_tree PID...: the processes and everything below them
	local pid all=()
	for pid in "$@"; do
		[[ -n $pid ]] || continue
		all+=("$pid")
		mapfile -t -O "${#all[@]}" all < <(descendants "$pid")
	done
	((${#all[@]})) || return 0
	stop_pids "${all[@]}"
}
stop_servers() {
	((${#SRV_TIMEOUT_PIDS[@]})) || return 0
	# Kamailio first (it talks to rtpengine), then everything else.
	stop_tree "${SRV_TIMEOUT_PIDS[@]}"
	SRV_TIMEOUT_PIDS=()
	KAM_PIDS=()
	RTPE_PID=
	TSU_PID=
}
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	((${#BG_PIDS[@]})) && stop_tree "${BG_PIDS[@]}"
	stop_servers
	if ((KEEP_WORK)) || ((FINISHED == 0)); then
		log "work directory kept: $WORK"
	else
		rm -rf "$WORK"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port_free() { # port_free PORT KIND...: KIND udp | tcp (a listener on PORT)
	local kind
	for kind in "${@:2}"; do
		case $kind in
		udp) ! ss -Hlnu "sport = :$1" | grep -q . || return 1 ;;
		tcp) ! ss -Hlnt "sport = :$1" | grep -q . || return 1 ;;
		esac
	done
}
need_free() { port_free "$@" || die "port $1 is in use (set the *_PORT variables)"; }
wait_udp() { # wait_udp PORT SECONDS: until something listens on UDP PORT
	local i
	for ((i = 0; i < $2 * 10; i++)); do
		port_free "$1" udp || return 0
		sleep 0.1
	done
	return 1
}

# ---------------------------------------------------------------- accounting
CLK_TCK=$(getconf CLK_TCK)
cpu_ticks() { # cpu_ticks PID...: sum of utime+stime (all threads) of these processes
	local total=0 pid v
	for pid in "$@"; do
		[[ -n $pid && -r /proc/$pid/stat ]] || continue
		v=$(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$pid/stat" 2>/dev/null) || continue
		total=$((total + ${v:-0}))
	done
	echo "$total"
}
pss_mb() { # pss_mb PID...: proportional set size of these processes together, MB
	local pid kb=0 v
	for pid in "$@"; do
		[[ -n $pid ]] || continue
		v=$(awk '/^Pss:/ { print $2; exit }' "/proc/$pid/smaps_rollup" 2>/dev/null) || continue
		kb=$((kb + ${v:-0}))
	done
	echo $((kb / 1024))
}
host_ticks() { # "busy total" jiffies of the whole machine (/proc/stat), a rough cross-check
	awk '$1 == "cpu" { t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t; exit }' /proc/stat
}
pct() { # pct FILE P -> P-th percentile (nearest rank) of the numbers in FILE
	[[ -s $1 ]] || { echo nan; return; }
	sort -g "$1" | awk -v p="$2" '{ a[NR] = $1 } END { r = int(NR * p / 100 + 0.999999); if (r < 1) r = 1; printf "%.3f", a[r] }'
}
kv() { # kv KEY LINE: the value of KEY=value in a line of key=value pairs ("-" if absent)
	awk -v k="$1" '{ for (i = 1; i <= NF; i++) { n = index($i, "="); if (substr($i, 1, n - 1) == k) { print substr($i, n + 1); f = 1; exit } } } END { if (!f) print "-" }' <<<"$2"
}

# RTP packets that reached 127.0.0.1:PORT since its socket was opened: SIPp never
# reads its media socket, so after the first ~200 packets fill the receive
# buffer every further one is counted as a drop in /proc/net/udp; queued ones
# are estimated from the queue's bytes (~768 bytes of buffer per packet).
udp_rx_packets() {
	awk -v port="$(printf ':%04X' "$1")" 'NR > 1 && substr($2, length($2) - 4) == port {
		split($5, q, ":"); rxq = 0; h = toupper(q[2])
		for (i = 1; i <= length(h); i++) rxq = rxq * 16 + index("0123456789ABCDEF", substr(h, i, 1)) - 1
		n += $NF + int(rxq / 768); f = 1 }
		END { if (f) print n; else print "-" }' /proc/net/udp
}

# Packets the server's relay has forwarded so far (rtpengine: ng "statistics";
# Tsunagu: tsunagu_media_packets_relayed_total on /metrics), or "-".
relayed_packets() {
	case $1 in
	kamailio)
		"$PY" - "$RTPE_NG_PORT" <<'EOF' 2>/dev/null || echo -
import re, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)
s.sendto(b"st1 d7:command10:statisticse", ("127.0.0.1", int(sys.argv[1])))
m = re.search(rb"14:relayedpacketsi(\d+)e", s.recv(1 << 20))
print(int(m.group(1)) if m else "-")
EOF
		;;
	tsunagu)
		curl -sf -m 2 "http://127.0.0.1:$TSU_HTTP_PORT/metrics" 2>/dev/null |
			awk '/^tsunagu_media_packets_relayed_total/ { s += $NF; f = 1 } END { if (f) printf "%.0f\n", s; else print "-" }' || echo -
		;;
	esac
}

# Tsunagu's own count of media packets it refused or could not send
# (tsunagu_media_packets_dropped_total, tsunagu_media_send_dropped_total).
relay_drops() {
	[[ $1 == tsunagu ]] || { echo -; return; }
	curl -sf -m 2 "http://127.0.0.1:$TSU_HTTP_PORT/metrics" 2>/dev/null |
		awk '/^tsunagu_media_packets_dropped_total/ { d += $NF } /^tsunagu_media_send_dropped_total/ { s += $NF }
			END { printf "refused %.0f, send-dropped %.0f\n", d, s }' || echo -
}

# Host-wide UDP counters (this benchmark is all the UDP traffic there is).
udp_counters() {
	awk '/^Udp:/ { if (!h) { for (i = 2; i <= NF; i++) k[i] = $i; h = 1 } else { for (i = 2; i <= NF; i++) printf "%s=%s ", k[i], $i } }' /proc/net/snmp
}

# ---------------------------------------------------------------- files
PASSWORD=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
prepare_files() {
	# 2 s of a 440 Hz tone, G.711 u-law (raw), looped by SIPp's rtp_stream.
	"$PY" - "$WORK/media.ulaw" <<'EOF'
import math, sys
def ulaw(x):
    sign = 0x80 if x < 0 else 0
    x = min(abs(x), 32635) + 0x84
    exp, mask = 7, 0x4000
    while exp > 0 and not x & mask:
        exp -= 1; mask >>= 1
    return ~(sign | exp << 4 | (x >> (exp + 3)) & 0x0F) & 0xFF
open(sys.argv[1], "wb").write(bytes(ulaw(int(8000 * math.sin(2 * math.pi * 440 * i / 8000))) for i in range(16000)))
EOF
	printf 'SEQUENTIAL\n%s;[authentication username=%s password=%s];\n' "$EXT" "$EXT" "$PASSWORD" >"$WORK/callee.csv"
	gcc -O2 -Wall -o "$WORK/rtpload" "$HERE/rtpload.c" 2>"$WORK/rtpload-build.log" ||
		{ cat "$WORK/rtpload-build.log" >&2; die "could not compile rtpload.c"; }
	# SIPp 3.6 timestamps with CLOCK_MONOTONIC_COARSE (4 ms steps): map the coarse
	# clocks to the precise ones so response times have microseconds (see bench/register).
	cat >"$WORK/fineclock.c" <<'EOF'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <time.h>
int clock_gettime(clockid_t id, struct timespec *ts)
{
	static int (*real)(clockid_t, struct timespec *);
	if (!real)
		real = (int (*)(clockid_t, struct timespec *))dlsym(RTLD_NEXT, "clock_gettime");
	if (id == CLOCK_MONOTONIC_COARSE)
		id = CLOCK_MONOTONIC;
	else if (id == CLOCK_REALTIME_COARSE)
		id = CLOCK_REALTIME;
	return real(id, ts);
}
EOF
	SHIM=
	if gcc -shared -fPIC -O2 -o "$WORK/fineclock.so" "$WORK/fineclock.c" -ldl 2>/dev/null; then
		SHIM=$WORK/fineclock.so
	else
		log "could not build the clock shim: SIPp response times keep 4 ms steps"
	fi
}

# ---------------------------------------------------------------- servers
# spawn_bounded LOG PIN CMD...: start CMD under `timeout` (bounded lifetime),
# pinned to CPU PIN unless PIN is "-"; sets SPAWNED to CMD's pid.
spawn_bounded() {
	local logf=$1 pin=$2 tpid i
	shift 2
	if [[ $pin == - ]]; then
		timeout --kill-after=5 "$SERVER_LIFETIME" "$@" >"$logf" 2>&1 9>&- &
	else
		timeout --kill-after=5 "$SERVER_LIFETIME" taskset -c "$pin" "$@" >"$logf" 2>&1 9>&- &
	fi
	tpid=$!
	SRV_TIMEOUT_PIDS+=("$tpid")
	SPAWNED=
	for ((i = 0; i < 50; i++)); do
		SPAWNED=$(pgrep -P "$tpid" | head -1 || true)
		[[ -n $SPAWNED ]] && break
		sleep 0.1
	done
	[[ -n $SPAWNED ]] || { tail -20 "$logf" >&2; die "$* did not start"; }
}

start_kamailio() { # start_kamailio PIN ("-" = not pinned)
	local pin=$1 i main
	need_free "$KAM_PORT" udp
	need_free "$RTPE_NG_PORT" udp
	# rtpengine 10.5, userspace only: --table=-1 (no kernel forwarding table; the
	# Debian default config would ask for table 0), no config file, its own
	# control port and port range on loopback, sessions freed at once on delete.
	spawn_bounded "$WORK/rtpengine.log" "$pin" rtpengine --config-file=none --table=-1 --foreground \
		--log-stderr --log-level=4 --interface=127.0.0.1 --listen-ng="127.0.0.1:$RTPE_NG_PORT" \
		--port-min="$MEDIA_PORT_MIN" --port-max="$MEDIA_PORT_MAX" --delete-delay=0 --timeout=60 \
		--pidfile="$WORK/rtpengine.pid" ${RTPE_EXTRA[@]+"${RTPE_EXTRA[@]}"}
	RTPE_PID=$SPAWNED
	wait_udp "$RTPE_NG_PORT" 10 || { tail -20 "$WORK/rtpengine.log" >&2; die "rtpengine not listening on $RTPE_NG_PORT"; }
	spawn_bounded "$WORK/kamailio.log" "$pin" kamailio -f "$HERE/kamailio.cfg" -DD -E -w "$WORK" -m 512 -M 16 \
		-l "udp:127.0.0.1:$KAM_PORT" -A "RTPENGINE_SOCK=\"udp:127.0.0.1:$RTPE_NG_PORT\"" \
		-A "DID=\"$DID\"" -A "EXT=\"$EXT\"" -A "PASSWORD=\"$PASSWORD\"" ${KAM_EXTRA[@]+"${KAM_EXTRA[@]}"}
	main=$SPAWNED
	for ((i = 0; i < 100; i++)); do
		kill -0 "$main" 2>/dev/null || { tail -20 "$WORK/kamailio.log" >&2; die "kamailio exited at startup"; }
		if ! port_free "$KAM_PORT" udp && (($(pgrep -c -P "$main" || true) >= 8)); then break; fi
		sleep 0.1
	done
	sleep 1 # let every worker finish its child_init
	mapfile -t KAM_PIDS < <(echo "$main"; pgrep -P "$main")
	log "kamailio $(kamailio -v | awk 'NR==1{print $3}') on 127.0.0.1:$KAM_PORT (${#KAM_PIDS[@]} processes) + rtpengine $(rtpengine --version 2>&1 | awk '{print $2; exit}') (pid $RTPE_PID, ng $RTPE_NG_PORT, ports $MEDIA_PORT_MIN-$MEDIA_PORT_MAX), $([[ $pin == - ]] && echo "not pinned" || echo "pinned to CPU $pin")"
}

start_tsunagu() { # start_tsunagu PIN
	local pin=$1 data=$WORK/tsunagu-data i
	need_free "$TSU_SIP_PORT" udp tcp
	need_free $((TSU_SIP_PORT + 1)) tcp
	need_free "$TSU_HTTP_PORT" tcp
	rm -rf "$data"
	mkdir -p "$data"
	{
		"$TSUNAGU_BIN" user add "$EXT" --password "$PASSWORD" --data "$data" &&
			"$TSUNAGU_BIN" trunk add carrier --host "127.0.0.1:$CALLER_PORT" --data "$data" &&
			{ "$TSUNAGU_BIN" did add "$DID" --to "user:$EXT" --data "$data" ||
				"$TSUNAGU_BIN" did add "$DID" --to "$EXT" --data "$data"; }
	} >"$WORK/tsunagu-setup.log" 2>&1 9>&- || { tail -20 "$WORK/tsunagu-setup.log" >&2; die "tsunagu user/trunk/did setup failed"; }
	# record benchmark: recording on or off, and no recording notice (the
	# calls are set up exactly like unrecorded ones: no early media first).
	if [[ -n ${TSU_RECORDING:-} ]]; then
		{
			"$TSUNAGU_BIN" setting set --data "$data" recording_mode "$TSU_RECORDING" &&
				"$TSUNAGU_BIN" setting set --data "$data" recording_notice ""
		} >>"$WORK/tsunagu-setup.log" 2>&1 9>&- || { tail -20 "$WORK/tsunagu-setup.log" >&2; die "tsunagu recording settings failed"; }
	fi
	# ivr benchmark: the DID IVR_DID goes to an IVR menu whose prompt is the
	# long prompt file (so it is still playing when the calls end).
	if [[ ${TSU_IVR:-0} == 1 ]]; then
		{
			"$TSUNAGU_BIN" announcement add --data "$data" bench-prompt --file "$WORK/prompt.wav" &&
				"$TSUNAGU_BIN" ivr add --data "$data" main --prompt bench-prompt --option 0=repeat \
					--invalid-prompt bench-prompt --timeout-prompt bench-prompt --timeout-ms 60000 &&
				"$TSUNAGU_BIN" did add "$IVR_DID" --to ivr:main --data "$data"
		} >>"$WORK/tsunagu-setup.log" 2>&1 9>&- || { tail -20 "$WORK/tsunagu-setup.log" >&2; die "tsunagu announcement/ivr setup failed"; }
	fi
	TSUNAGU_SIP_LISTEN=127.0.0.1:$TSU_SIP_PORT TSUNAGU_HTTP_LISTEN=127.0.0.1:$TSU_HTTP_PORT \
		TSUNAGU_MEDIA_PORT_MIN=$MEDIA_PORT_MIN TSUNAGU_MEDIA_PORT_MAX=$MEDIA_PORT_MAX \
		TSUNAGU_MEDIA_ADDRESS=127.0.0.1 TSUNAGU_LOG=${TSUNAGU_LOG:-warn} \
		TSUNAGU_MEDIA_RELAY_THREADS=$([[ $pin == - ]] && echo 0 || echo 1) \
		spawn_bounded "$WORK/tsunagu.log" "$pin" "$TSUNAGU_BIN" serve --data "$data"
	TSU_PID=$SPAWNED
	for ((i = 0; i < 300; i++)); do
		kill -0 "$TSU_PID" 2>/dev/null || { tail -20 "$WORK/tsunagu.log" >&2; die "tsunagu serve exited at startup"; }
		curl -sf -m 1 "http://127.0.0.1:$TSU_HTTP_PORT/healthz" >/dev/null 2>&1 && break
		sleep 0.1
	done
	curl -sf -m 2 "http://127.0.0.1:$TSU_HTTP_PORT/healthz" >/dev/null || die "tsunagu /healthz not answering after 30 s"
	log "tsunagu on 127.0.0.1:$TSU_SIP_PORT (http $TSU_HTTP_PORT, media $MEDIA_PORT_MIN-$MEDIA_PORT_MAX), pid $TSU_PID, $([[ $pin == - ]] && echo "not pinned" || echo "pinned to CPU $pin")"
}

start_peer() { # start_peer PEER PIN: sets SIP_PORT, SRV_PIDS (all), RELAY_PID (the media relay), SIP_PIDS
	case $1 in
	kamailio)
		start_kamailio "$2"
		SIP_PORT=$KAM_PORT
		SRV_PIDS=("${KAM_PIDS[@]}" "$RTPE_PID")
		SIP_PIDS=("${KAM_PIDS[@]}")
		RELAY_PID=$RTPE_PID
		;;
	tsunagu)
		start_tsunagu "$2"
		SIP_PORT=$TSU_SIP_PORT
		SRV_PIDS=("$TSU_PID")
		SIP_PIDS=()
		RELAY_PID=$TSU_PID
		;;
	esac
}
check_alive() { # check_alive PEER: die with the log if a server process is gone
	local pid
	for pid in "${SRV_PIDS[@]}"; do
		kill -0 "$pid" 2>/dev/null && continue
		log "$1: server process $pid DIED; last log lines:"
		tail -20 "$WORK/$([[ $1 == kamailio ]] && echo kamailio || echo tsunagu).log" >&2 || true
		[[ $1 == kamailio ]] && tail -20 "$WORK/rtpengine.log" >&2
		return 1
	done
}

# register_callee PEER: SIPp registers EXT from CALLEE_PORT (digest MD5).
register_callee() {
	local dir=$WORK/$1-register rc=0
	mkdir -p "$dir"
	(cd "$dir" && timeout --kill-after=5 30 sipp "127.0.0.1:$SIP_PORT" -sf "$ROOT/bench/register/register.xml" \
		-inf "$WORK/callee.csv" -i 127.0.0.1 -p "$CALLEE_PORT" -m 1 -timeout 20s -nostdin \
		-trace_err -error_file errors.log -trace_msg -message_file messages.log >screen.log 2>&1 9>&-) || rc=$?
	((rc == 0)) || { head -40 "$dir/errors.log" >&2 2>/dev/null || true; die "$1: the callee could not register as $EXT (SIPp rc $rc), see $dir"; }
}

# ---------------------------------------------------------------- CAPS
CAPS_HEADER=$(printf "%-8s %5s %7s %6s %6s %6s %6s %8s %8s %8s %6s %6s %6s %6s %7s %6s %8s %8s %4s %s" \
	peer offer achieved calls ok fail% retr% p50ms p99ms byep99 media% srvCPU rtpeCPU sippCPU hostCPU pssMB srvs/1k sipps/1k res why)

sipp_stats() { # sipp_stats STAT.CSV: key=value of the last cumulative line
	awk -F';' 'NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
		{ last = $0 }
		END { split(last, v, ";")
			printf "outgoing=%d success=%d failed=%d retrans=%d unexpected=%d timeouts=%d maxretrans=%d incoming=%d\n",
				v[col["OutgoingCall(C)"]], v[col["SuccessfulCall(C)"]], v[col["FailedCall(C)"]],
				v[col["Retransmissions(C)"]], v[col["FailedUnexpectedMessage(C)"]],
				v[col["FailedTimeoutOnRecv(C)"]], v[col["FailedMaxUDPRetrans(C)"]], v[col["IncomingCall(C)"]] }' "$1" 2>/dev/null
}
sub_cpu() { # sub_cpu TIMESFILE: user+sys seconds of the children of a subshell (2nd line of `times`)
	awk 'NR==2 { s = 0; for (i = 1; i <= 2; i++) { split($i, a, "m"); sub(/s$/, "", a[2]); s += a[1] * 60 + a[2] } print s }' "$1" 2>/dev/null || echo 0
}

# caps_step PEER RATE: sets STEP_LINE; returns 0 if the step passed.
caps_step() {
	local peer=$1 rate=$2
	local calls=$((rate * CAPS_STEP_SECONDS)) dir=$WORK/caps-$1-$2
	local media_ms=$((CAPS_MEDIA_SECONDS * 1000))
	local limit=$((rate * (CAPS_MEDIA_SECONDS + 10) + 100))
	mkdir -p "$dir/uas" "$dir/uac"
	ln -sf "$WORK/media.ulaw" "$dir/uas/media.ulaw"
	ln -sf "$WORK/media.ulaw" "$dir/uac/media.ulaw"
	# Callee first; it stops by itself after `calls` calls, or is stopped below.
	(
		cd "$dir/uas"
		rc=0
		timeout --kill-after=5 $((CAPS_STEP_SECONDS + CAPS_MEDIA_SECONDS + 120)) \
			sipp "127.0.0.1:$SIP_PORT" -sf "$HERE/uas.xml" -i 127.0.0.1 -p "$CALLEE_PORT" \
			-mi 127.0.0.1 -mp "$SIPP_UAS_MEDIA_PORT" -m "$calls" -l "$limit" \
			-timeout $((CAPS_STEP_SECONDS + CAPS_MEDIA_SECONDS + 100))s -nostdin -buff_size 4194304 \
			-trace_stat -stf stat.csv -fd 1 -trace_err -error_file errors.log -max_log_size 20000000 \
			>screen.log 2>&1 9>&- || rc=$?
		echo "$rc" >rc
		times >times
	) &
	local uas_sub=$!
	BG_PIDS=("$uas_sub")
	sleep 0.5
	local srv0 rtpe0 t0 t1 host0 udp0
	udp0=$(udp_counters)
	host0=$(host_ticks)
	srv0=$(cpu_ticks "${SRV_PIDS[@]}")
	rtpe0=$(cpu_ticks "$RELAY_PID")
	t0=$(date +%s.%N)
	(
		cd "$dir/uac"
		rc=0
		LD_PRELOAD=$SHIM timeout --kill-after=5 $((CAPS_STEP_SECONDS + CAPS_MEDIA_SECONDS + 100)) \
			sipp "127.0.0.1:$SIP_PORT" -sf "$HERE/uac.xml" -s "$DID" -i 127.0.0.1 -p "$CALLER_PORT" \
			-mi 127.0.0.1 -mp "$SIPP_UAC_MEDIA_PORT" -r "$rate" -rp 1000 -m "$calls" -l "$limit" \
			-d "$media_ms" -timeout $((CAPS_STEP_SECONDS + CAPS_MEDIA_SECONDS + 80))s -nostdin \
			-buff_size 4194304 -trace_stat -stf stat.csv -fd 1 -trace_rtt -rtt_freq 100 \
			-trace_err -error_file errors.log -max_log_size 20000000 \
			>screen.log 2>&1 9>&- || rc=$?
		echo "$rc" >rc
		times >times
	) &
	local uac_sub=$!
	BG_PIDS=("$uas_sub" "$uac_sub")
	# Sample the callee's media socket while the caller runs (the callee SIPp may
	# end first when calls fail: it stops after `calls` calls, failed ones included).
	local media_rx=- sample
	while kill -0 "$uac_sub" 2>/dev/null; do
		sample=$(udp_rx_packets "$SIPP_UAS_MEDIA_PORT")
		[[ $sample == - ]] || media_rx=$sample
		sleep 0.5
	done
	wait "$uac_sub" || true
	t1=$(date +%s.%N)
	sample=$(udp_rx_packets "$SIPP_UAS_MEDIA_PORT") # the callee SIPp is normally still in its final pause
	[[ $sample == - ]] || media_rx=$sample
	local srv1 rtpe1 host1 pss i
	srv1=$(cpu_ticks "${SRV_PIDS[@]}")
	rtpe1=$(cpu_ticks "$RELAY_PID")
	host1=$(host_ticks)
	pss=$(pss_mb "${SRV_PIDS[@]}")
	# The callee ends after its last call (4 s after the last 200 to BYE).
	for ((i = 0; i < 100; i++)); do kill -0 "$uas_sub" 2>/dev/null || break; sleep 0.1; done
	if kill -0 "$uas_sub" 2>/dev/null; then stop_tree "$uas_sub"; fi
	wait "$uas_sub" 2>/dev/null || true
	BG_PIDS=()
	{
		echo "RTP packets that reached the callee SIPp: $media_rx; relayed packets as the server counts them now: $(relayed_packets "$peer") ($(relay_drops "$peer"))"
		echo "host UDP counters before: $udp0"
		echo "host UDP counters after:  $(udp_counters)"
	} >"$dir/media.txt"

	[[ -s $dir/uac/stat.csv ]] || { tail -5 "$dir/uac/screen.log" >&2; die "SIPp (caller) wrote no statistics, see $dir"; }
	local uac uas
	uac=$(sipp_stats "$dir/uac/stat.csv")
	uas=$(sipp_stats "$dir/uas/stat.csv")
	local rtt samples span p50 p99 bp99
	rtt=$(cat "$dir"/uac/*_rtt.csv 2>/dev/null | awk -F';' -v dir="$dir" '
		$3 == 1 { print $2 > (dir "/rtd1.txt"); n++; if (n == 1 || $1 < first) first = $1; if ($1 > last) last = $1 }
		$3 == 2 { print $2 > (dir "/rtd2.txt") }
		END { printf "samples=%d span=%.3f", n, (last - first) / 1000 }')
	samples=$(kv samples "$rtt")
	span=$(kv span "$rtt")
	p50=$(pct "$dir/rtd1.txt" 50)
	p99=$(pct "$dir/rtd1.txt" 99)
	bp99=$(pct "$dir/rtd2.txt" 99)
	rm -f "$dir"/uac/*_rtt.csv "$dir/rtd1.txt" "$dir/rtd2.txt"
	local sipp_cpu
	sipp_cpu=$(awk -v a="$(sub_cpu "$dir/uac/times")" -v b="$(sub_cpu "$dir/uas/times")" 'BEGIN { print a + b }')

	local passed=0
	STEP_LINE=$(awk -v peer="$peer" -v rate="$rate" -v calls="$calls" \
		-v succ="$(kv success "$uac")" -v failed="$(kv failed "$uac")" -v retr_c="$(kv retrans "$uac")" \
		-v retr_s="$(kv retrans "$uas")" -v uas_failed="$(kv failed "$uas")" -v unexp="$(kv unexpected "$uac")" \
		-v tmo="$(kv timeouts "$uac")" -v mrt="$(kv maxretrans "$uac")" -v rc="$(cat "$dir/uac/rc" 2>/dev/null || echo 255)" \
		-v samples="$samples" -v span="$span" -v t0="$t0" -v t1="$t1" -v p50="$p50" -v p99="$p99" -v bp99="$bp99" \
		-v srv="$((srv1 - srv0))" -v rtpe="$((rtpe1 - rtpe0))" -v peerkind="$peer" -v hz="$CLK_TCK" \
		-v host0="$host0" -v host1="$host1" -v ncpu="$(nproc)" -v pss="$pss" -v sippcpu="$sipp_cpu" \
		-v media_rx="$media_rx" -v media_s="$CAPS_MEDIA_SECONDS" \
		-v maxfail="$MAX_FAIL_PCT" -v maxre="$MAX_RETRANS_PCT" -v minach="$MIN_ACHIEVED_PCT" -v minmedia="$MIN_MEDIA_PCT" '
	BEGIN {
		wall = t1 - t0
		failpct = 100 * (calls - succ) / calls
		repct = 100 * (retr_c + retr_s) / calls
		achieved = (span > 0 && samples > 1) ? (samples - 1) / span : 0
		srvs = srv / hz
		split(host0, h0, " "); split(host1, h1, " ")
		hostpct = (h1[2] > h0[2]) ? 100 * ncpu * (h1[1] - h0[1]) / (h1[2] - h0[2]) : 0
		# RTP through the relay to the callee: the caller streams media_s seconds at 50 packets/s.
		media = (media_rx != "-" && succ > 0 && media_s > 0) ? sprintf("%.0f", 100 * media_rx / (succ * media_s * 50)) : "-"
		rtpecpu = (peerkind == "kamailio") ? sprintf("%.0f%%", 100 * rtpe / hz / wall) : "-"
		why = ""
		if (rc != 0 && rc != 1) why = why sprintf("sipp-rc=%s;", rc)
		if (failpct >= maxfail) why = why sprintf("failed=%.2f%%;", failpct)
		if (100 * uas_failed / calls >= maxfail) why = why sprintf("callee-failed=%d;", uas_failed)
		if (repct >= maxre) why = why sprintf("retrans=%.2f%%;", repct)
		if (achieved < rate * minach / 100) why = why sprintf("achieved<%d%%;", minach)
		if (media != "-" && media + 0 < minmedia) why = why sprintf("media=%s%%<%d%%;", media, minmedia)
		ok = (why == "") ? "PASS" : "FAIL"
		if (why == "") why = "-"
		sub(/;$/, "", why)
		printf "%-8s %5d %7.0f %6d %6d %6.2f %6.2f %8s %8s %8s %6s %5.0f%% %6s %5.0f%% %6.0f%% %6d %8.3f %8.3f %4s %s caller-retrans=%d callee-retrans=%d callee-failed=%d unexpected=%d recv-timeouts=%d max-retrans=%d\n",
			peer, rate, achieved, calls, succ, failpct, repct, p50, p99, bp99, media,
			100 * srvs / wall, rtpecpu, 100 * sippcpu / wall, hostpct, pss,
			(succ > 0 ? 1000 * srvs / succ : 0), (succ > 0 ? 1000 * sippcpu / succ : 0), ok, why,
			retr_c, retr_s, uas_failed, unexp, tmo, mrt
		exit (ok == "PASS" ? 0 : 1)
	}') || passed=1
	return "$passed"
}

declare -A CAPS_BEST CAPS_FAIL RELAY_BEST RELAY_BEST0 RELAY_FAIL RELAY_REF
CAPS_LINES=()
measure_caps() { # measure_caps PEER
	local peer=$1 rate best="" fail="" prev=0
	start_peer "$peer" -
	register_callee "$peer"
	log "$peer: caps, ${CAPS_STEP_SECONDS}s per rate, ${CAPS_MEDIA_SECONDS}s of RTP per call, rates: $CAPS_RATES"
	echo "$CAPS_HEADER" >&2
	for rate in $CAPS_RATES; do
		((rate > prev)) || die "CAPS_RATES must rise"
		prev=$rate
		if caps_step "$peer" "$rate"; then best=$STEP_LINE; else fail=$STEP_LINE; fi
		echo "$STEP_LINE" >&2
		CAPS_LINES+=("$STEP_LINE")
		check_alive "$peer" || { fail=${fail:-$STEP_LINE}; break; }
		[[ -z $fail ]] || break
		sleep 3
	done
	if ((CAPS_REFINE)) && [[ -n $fail ]] && check_alive "$peer"; then
		local lo hi mid
		lo=$(awk '{print $2}' <<<"${best:-x 0}")
		hi=$(awk '{print $2}' <<<"$fail")
		mid=$(((lo + hi) / 2 / 10 * 10))
		if ((mid > lo && mid < hi)); then
			sleep 8 # let a retransmission storm die down
			if caps_step "$peer" "$mid"; then best=$STEP_LINE; else fail=$STEP_LINE; fi
			echo "$STEP_LINE" >&2
			CAPS_LINES+=("$STEP_LINE")
		fi
	fi
	CAPS_BEST[$peer]=$best
	CAPS_FAIL[$peer]=$fail
	stop_servers
}

# ---------------------------------------------------------------- relay
RELAY_HEADER=$(printf "%-8s %5s %5s %5s %8s %8s %5s %7s %7s %8s %8s %8s %7s %7s %7s %6s %7s %4s %s" \
	peer calls up legs lost loss% misr p50us p99us p999us maxus late99us relCPU genCPU sipCPU pssMB setup/s res why)

# relay_step PEER N [TAG]: sets STEP_LINE; returns 0 pass, 1 fail with loss/errors, 2 fail on latency only
relay_step() {
	local peer=$1 n=$2 dir=$WORK/relay-$1-$2${3:-}
	mkdir -p "$dir"
	rm -f "$dir/release" "$dir/endpoints.txt" "$dir/stats.txt"
	local ports_a=$GEN_RTP_BASE ports_end=$((GEN_RTP_BASE + 2 * n - 1)) p
	for ((p = ports_a; p <= ports_end; p += 97)); do need_free "$p" udp; done
	taskset -c "$GEN_CPU" "$PY" "$HERE/setup_calls.py" --server "127.0.0.1:$SIP_PORT" \
		--caller-port "$CALLER_PORT" --callee-port "$CALLEE_PORT" --ext "$EXT" --password "$PASSWORD" \
		--did "$DID" --calls "$n" --rate "$RELAY_SETUP_RATE" --rtp-base "$GEN_RTP_BASE" \
		--out "$dir/endpoints.txt" --stats "$dir/stats.txt" --release-file "$dir/release" \
		--hold-max $((RELAY_RAMP + RELAY_WARMUP + RELAY_SECONDS + 60)) \
		--max-seconds $((n / RELAY_SETUP_RATE + RELAY_RAMP + RELAY_WARMUP + RELAY_SECONDS + 200)) \
		>"$dir/driver.log" 2>&1 9>&- &
	local drv=$!
	BG_PIDS=("$drv")
	local i limit=$(((n / RELAY_SETUP_RATE + 60) * 10))
	for ((i = 0; i < limit; i++)); do
		[[ -s $dir/endpoints.txt ]] && break
		kill -0 "$drv" 2>/dev/null || break
		sleep 0.1
	done
	local setup_line="" load="" sip0 sip1 t0 t1
	setup_line=$(grep '^phase=setup' "$dir/stats.txt" 2>/dev/null || true)
	if [[ -s $dir/endpoints.txt ]]; then
		sip0=$(cpu_ticks "${SIP_PIDS[@]}")
		t0=$(date +%s.%N)
		taskset -c "$GEN_CPU" "$WORK/rtpload" -f "$dir/endpoints.txt" -R "$RELAY_RAMP" -w "$RELAY_WARMUP" \
			-d "$RELAY_SECONDS" -g 500 -p "relay=$RELAY_PID" -o "$dir/rtpload.txt" \
			>"$dir/rtpload.out" 2>"$dir/rtpload.err" 9>&- || true
		t1=$(date +%s.%N)
		sip1=$(cpu_ticks "${SIP_PIDS[@]}")
		load=$(cat "$dir/rtpload.txt" 2>/dev/null || true)
		[[ -n $load ]] || { log "rtpload failed:"; cat "$dir/rtpload.err" >&2; }
	else
		log "$peer: no call set up within the time limit, see $dir/driver.log"
		tail -5 "$dir/driver.log" >&2 || true
	fi
	local pss
	pss=$(pss_mb "${SRV_PIDS[@]}") # with the calls still up
	touch "$dir/release"
	for ((i = 0; i < (n / 100 + 60) * 10; i++)); do kill -0 "$drv" 2>/dev/null || break; sleep 0.1; done
	kill -0 "$drv" 2>/dev/null && stop_tree "$drv"
	wait "$drv" 2>/dev/null || true
	BG_PIDS=()
	local down_line
	down_line=$(grep '^phase=teardown' "$dir/stats.txt" 2>/dev/null || true)
	local sipcpu="-"
	if [[ -n $load && ${#SIP_PIDS[@]} -gt 0 ]]; then
		sipcpu=$(awk -v d="$((sip1 - sip0))" -v hz="$CLK_TCK" -v w="$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}')" 'BEGIN { printf "%.0f%%", 100 * d / hz / w }')
	fi
	local rc=0
	STEP_LINE=$(awk -v peer="$peer" -v n="$n" -v up="$(kv up "$setup_line")" -v legs="$(kv callee_legs "$setup_line")" \
		-v setup_rate="$(kv setup_rate "$setup_line")" -v sfail="$(kv fail_reasons "$setup_line")" \
		-v lost="$(kv lost "$load")" -v losspct="$(kv loss_pct "$load")" -v misr="$(kv misrouted "$load")" \
		-v silent="$(kv silent_senders "$load")" -v senderr="$(kv send_errors "$load")" -v dup="$(kv dup "$load")" \
		-v p50="$(kv relay_p50_us "$load")" -v p99="$(kv relay_p99_us "$load")" -v p999="$(kv relay_p999_us "$load")" \
		-v pmax="$(kv relay_max_us "$load")" -v late="$(kv late_p99_us "$load")" -v relcpu="$(kv cpu_relay_pct "$load")" \
		-v gencpu="$(kv gen_cpu_pct "$load")" -v sent="$(kv sent "$load")" -v sipcpu="$sipcpu" -v pss="$pss" \
		-v byes="$(kv byes "$down_line")" -v byeok="$(kv bye_ok "$down_line")" -v sbyes="$(kv server_byes "$down_line")" \
		-v maxp99="$RELAY_MAX_P99_MS" -v baselate="$(kv late_p99_us "${BASE_LINE[$n]:-}")" '
	function num(x) { return (x == "-" || x == "") ? -1 : x + 0 }
	BEGIN {
		why = ""; lat = 0
		if (num(up) != n) why = why sprintf("setup:%s/%d(%s);", up, n, sfail)
		if (num(legs) != n) why = why sprintf("callee-legs:%s;", legs)
		if (sent == "-") why = why "no-rtpload;"
		else {
			if (num(lost) != 0) why = why sprintf("lost=%s;", lost)
			if (num(silent) > 0) why = why sprintf("silent-senders=%s;", silent)
			if (num(misr) > 0) why = why sprintf("misrouted=%s;", misr)
			if (num(senderr) > 0) why = why sprintf("send-errors=%s;", senderr)
		}
		if (num(byeok) != num(up) || num(byes) != num(up)) why = why sprintf("bye-ok:%s/%s;", byeok, up)
		if (num(sbyes) > 0) why = why sprintf("server-byes=%s;", sbyes)
		hard = (why != "")
		if (!hard && num(p99) > maxp99 * 1000) { why = sprintf("p99>%dms;", maxp99); lat = 1 }
		ok = (why == "") ? "PASS" : "FAIL"
		# Not a failure of the server by itself, but say so: the generator fell behind.
		if (num(late) > 2000) why = why sprintf("generator-late(p99=%dus);", late)
		if (num(baselate) > 2000) why = why sprintf("generator-limited(alone:late99=%dus);", baselate)
		if (why == "") why = "-"
		sub(/;$/, "", why)
		printf "%-8s %5d %5s %5s %8s %8s %5s %7s %7s %8s %8s %8s %6s%% %6s%% %7s %6d %7s %4s %s dup=%s\n",
			peer, n, up, legs, lost, losspct, misr, p50, p99, p999, pmax, late, relcpu, gencpu, sipcpu, pss, setup_rate, ok, why, dup
		if (ok == "PASS") exit 0
		exit (hard ? 1 : 2)
	}') || rc=$?
	return "$rc"
}

# relay_baseline N: rtpload with no relay (a_i <-> b_i directly), the same N and
# timeline: the loopback floor of the latency, and whether the generator alone
# keeps its schedule at N on one CPU. Sets BASE_LINE[N].
declare -A BASE_LINE
relay_baseline() {
	local n=$1 dir=$WORK/relay-baseline-$1 i
	mkdir -p "$dir"
	for ((i = 0; i < n; i++)); do
		echo "$((GEN_RTP_BASE + i)) 127.0.0.1 $((GEN_RTP_BASE + n + i)) A"
		echo "$((GEN_RTP_BASE + n + i)) 127.0.0.1 $((GEN_RTP_BASE + i)) B"
	done >"$dir/endpoints.txt"
	taskset -c "$GEN_CPU" "$WORK/rtpload" -f "$dir/endpoints.txt" -R "$RELAY_RAMP" -w "$RELAY_WARMUP" \
		-d "$RELAY_SECONDS" -g 500 -o "$dir/rtpload.txt" >/dev/null 2>"$dir/rtpload.err" 9>&- || true
	BASE_LINE[$n]=$(cat "$dir/rtpload.txt" 2>/dev/null || echo "failed")
	log "baseline (no relay, $n calls = $((2 * n)) endpoints on CPU $GEN_CPU): $(cat "$dir/rtpload.err" 2>/dev/null | tail -1)"
}

measure_relay() { # measure_relay PEER
	local peer=$1 n best="" best0="" fail="" prev=0 rc ref="" lastpass=0 firstfail=0 latfail=0
	start_peer "$peer" "$SERVER_CPU"
	log "$peer: relay, server on CPU $SERVER_CPU, generator on CPU $GEN_CPU, ${RELAY_SECONDS}s counted per step, calls: $RELAY_CALLS"
	echo "$RELAY_HEADER" >&2
	for n in $RELAY_CALLS; do
		((n > prev)) || die "RELAY_CALLS must rise"
		prev=$n
		rc=0
		relay_step "$peer" "$n" || rc=$?
		echo "$STEP_LINE" >&2
		RELAY_LINES+=("$STEP_LINE")
		((n == RELAY_REF_CALLS)) && ref=$STEP_LINE
		case $rc in
		0) best=$STEP_LINE; best0=$STEP_LINE; lastpass=$n ;;
		2) best0=$STEP_LINE; [[ -n $fail ]] || fail=$STEP_LINE; ((latfail)) || latfail=$n ;;
		*) [[ -n $fail ]] || fail=$STEP_LINE; firstfail=$n ;;
		esac
		check_alive "$peer" || break
		((rc == 1)) && break
		sleep 3
	done
	# Refine once halfway at each boundary: last pass .. first latency failure,
	# and last step without loss .. first step with loss.
	local lo hi mid b
	for b in pass loss; do
		((RELAY_REFINE)) && check_alive "$peer" || break
		if [[ $b == pass ]]; then
			lo=$(awk '{print $2}' <<<"${best:-x 0}")
			hi=$latfail
		else
			lo=$(awk '{print $2}' <<<"${best0:-x 0}")
			hi=$firstfail
		fi
		((hi > 0)) || continue
		mid=$(((lo + hi) / 2 / 50 * 50))
		((mid > lo && mid < hi)) || continue
		sleep 3
		rc=0
		relay_step "$peer" "$mid" || rc=$?
		echo "$STEP_LINE" >&2
		RELAY_LINES+=("$STEP_LINE")
		if ((rc == 0)) && ((mid > $(awk '{print $2+0}' <<<"${best:-x 0}"))); then best=$STEP_LINE; fi
		if ((rc == 0 || rc == 2)) && ((mid > $(awk '{print $2+0}' <<<"${best0:-x 0}"))); then best0=$STEP_LINE; fi
	done
	if [[ -z $ref ]] && check_alive "$peer"; then
		sleep 3
		rc=0
		relay_step "$peer" "$RELAY_REF_CALLS" -ref || rc=$?
		echo "$STEP_LINE" >&2
		RELAY_LINES+=("$STEP_LINE")
		ref=$STEP_LINE
		if ((rc == 0)) && ((RELAY_REF_CALLS > $(awk '{print $2+0}' <<<"${best:-x 0}"))); then best=$STEP_LINE; fi
		if ((rc == 0 || rc == 2)) && ((RELAY_REF_CALLS > $(awk '{print $2+0}' <<<"${best0:-x 0}"))); then best0=$STEP_LINE; fi
	fi
	RELAY_BEST[$peer]=$best
	RELAY_BEST0[$peer]=$best0
	RELAY_FAIL[$peer]=$fail
	RELAY_REF[$peer]=$ref
	stop_servers
}

# ---------------------------------------------------------------- record, ivr
RTPE_EXTRA=()
KAM_EXTRA=()

# field_kv LINE CLASS KEY: KEY=value inside "CLASS=[...]" of a step line
field_kv() {
	awk -v c="$2" -v k="$3" '{ i = index($0, c "=["); if (!i) { print "-"; exit }
		r = substr($0, i + length(c) + 2); r = substr(r, 1, index(r, "]") - 1)
		n = split(r, a, " "); for (j = 1; j <= n; j++) { split(a[j], kvp, "="); if (kvp[1] == k) { print kvp[2]; exit } } print "-" }' <<<"$1"
}
# thr_snapshot PID: "TID NAME NS" per thread, ns on the CPU from
# /proc/PID/task/*/schedstat.
thr_snapshot() {
	local t comm ns
	for t in /proc/"$1"/task/*; do
		comm=$(tr -c 'A-Za-z0-9\n' '_' <"$t/comm" 2>/dev/null) || continue
		ns=$(awk '{ print $1 }' "$t/schedstat" 2>/dev/null) || continue
		echo "${t##*/} $comm ${ns:-0}"
	done
}
# Tsunagu's thread classes: media-relay-* (relay threads), media-recorder,
# tokio-rt-worker (tokio workers and blocking threads), sqlx-sqlite-worker
# (the database), sip-udp-* (SIP receive threads), the rest.
THR_CLASSIFY='function cls(k) { if (k ~ /^media_relay/) return "relay"; if (k ~ /^media_recorder/) return "recorder";
	if (k ~ /^tokio/) return "tokio"; if (k ~ /^sqlx/) return "sqlite"; if (k ~ /^sip_udp/) return "sip"; return "other" }
	function out(c, t) { printf "relay=%.2f recorder=%.2f tokio=%.2f sqlite=%.2f sip=%.2f other=%.2f total=%.2f\n",
		c["relay"], c["recorder"], c["tokio"], c["sqlite"], c["sip"], c["other"], t }'
# thr_split BEFORE AFTER SECONDS: the CPU between two snapshots per thread
# class, % of one core (a thread that ended in between is missed).
thr_split() {
	awk -v secs="$3" "$THR_CLASSIFY"'FNR == NR { a[$1] = $3; next } { v = 100 * ($3 - a[$1]) / 1e9 / secs; c[cls($2)] += v; t += v }
		END { out(c, t) }' "$1" "$2"
}
# thr_classes LOAD_LINE: the same classes from rtpload's thr_NAME_pct keys (the counted window).
thr_classes() {
	tr ' ' '\n' <<<"$1" | awk -F= "$THR_CLASSIFY"'$1 ~ /^thr_.*_pct$/ { k = substr($1, 5, length($1) - 8); v = $2 + 0; t += v; c[cls(k)] += v; f = 1 }
		END { if (f) out(c, t); else print "relay=- recorder=- tokio=- sqlite=- sip=- other=- total=-" }'
}
# thr_top LOAD_LINE: every thread name with its share of a core, biggest first (rtpengine's threads).
thr_top() {
	tr ' ' '\n' <<<"$1" | awk -F= '$1 ~ /^thr_.*_pct$/ && $2 + 0 >= 0.05 { printf "%s=%.2f\n", substr($1, 5, length($1) - 8), $2 }' |
		sort -t= -k2 -gr | tr '\n' ' '
}

# media_step PEER N DIR DID [RTPLOAD_ARGS...]: set up N calls to DID with
# setup_calls.py, run MS_HOOK DIR N if set (e.g. rtpengine "play media"), load
# them with rtpload for RECORD_SECONDS (CPU of the relay process and its threads
# in the counted window), read the memory, then tear them down. Sets MS_SETUP,
# MS_LOAD, MS_DOWN (key=value lines), MS_PSS, MS_THR0 (thread snapshot file at
# the release) and MS_T_RELEASE / MS_T_DOWN (epoch seconds).
media_step() {
	local peer=$1 n=$2 dir=$3 did=$4
	shift 4
	mkdir -p "$dir"
	rm -f "$dir/release" "$dir/endpoints.txt" "$dir/stats.txt" "$dir/calls.txt"
	local p
	for ((p = GEN_RTP_BASE; p <= GEN_RTP_BASE + 2 * n - 1; p += 97)); do need_free "$p" udp; done
	taskset -c "$GEN_CPU" "$PY" "$HERE/setup_calls.py" --server "127.0.0.1:$SIP_PORT" \
		--caller-port "$CALLER_PORT" --callee-port "$CALLEE_PORT" --ext "$EXT" --password "$PASSWORD" \
		--did "$did" --calls "$n" --rate "$RELAY_SETUP_RATE" --rtp-base "$GEN_RTP_BASE" \
		--out "$dir/endpoints.txt" --stats "$dir/stats.txt" --release-file "$dir/release" --calls-out "$dir/calls.txt" \
		--hold-max $((RELAY_RAMP + RELAY_WARMUP + RECORD_SECONDS + 60)) \
		--max-seconds $((n / RELAY_SETUP_RATE + RELAY_RAMP + RELAY_WARMUP + RECORD_SECONDS + 200)) \
		>"$dir/driver.log" 2>&1 9>&- &
	local drv=$! i limit=$(((n / RELAY_SETUP_RATE + 60) * 10))
	BG_PIDS=("$drv")
	for ((i = 0; i < limit; i++)); do
		[[ -s $dir/endpoints.txt ]] && break
		kill -0 "$drv" 2>/dev/null || break
		sleep 0.1
	done
	MS_SETUP=$(grep '^phase=setup' "$dir/stats.txt" 2>/dev/null || true)
	MS_LOAD=
	if [[ -s $dir/endpoints.txt ]]; then
		[[ -z ${MS_HOOK:-} ]] || "$MS_HOOK" "$dir" "$n"
		taskset -c "$GEN_CPU" "$WORK/rtpload" -f "$dir/endpoints.txt" -R "$RELAY_RAMP" -w "$RELAY_WARMUP" \
			-d "$RECORD_SECONDS" -g 500 -p "relay=$RELAY_PID" -T "$RELAY_PID" "$@" -o "$dir/rtpload.txt" \
			>"$dir/rtpload.out" 2>"$dir/rtpload.err" 9>&- || true
		MS_LOAD=$(cat "$dir/rtpload.txt" 2>/dev/null || true)
		[[ -n $MS_LOAD ]] || { log "rtpload failed:"; cat "$dir/rtpload.err" >&2; }
	else
		log "$peer: no call set up within the time limit, see $dir/driver.log"
		tail -5 "$dir/driver.log" >&2 || true
	fi
	MS_PSS=$(pss_mb "${SRV_PIDS[@]}")
	MS_THR0=$dir/threads-release.txt
	thr_snapshot "$RELAY_PID" >"$MS_THR0"
	MS_T_RELEASE=$(date +%s.%N)
	touch "$dir/release"
	for ((i = 0; i < (n / 100 + 60) * 10; i++)); do kill -0 "$drv" 2>/dev/null || break; sleep 0.1; done
	kill -0 "$drv" 2>/dev/null && stop_tree "$drv"
	wait "$drv" 2>/dev/null || true
	BG_PIDS=()
	MS_T_DOWN=$(date +%s.%N)
	MS_DOWN=$(grep '^phase=teardown' "$dir/stats.txt" 2>/dev/null || true)
}

# The prompt of the ivr benchmark: IVR_PROMPT_SECONDS of a 440/660 Hz tone,
# 8 kHz 16-bit mono WAV (Tsunagu imports it as an announcement; rtpengine
# plays the file itself).
make_prompt() {
	"$PY" - "$WORK/prompt.wav" "$IVR_PROMPT_SECONDS" <<'EOF'
import math, struct, sys, wave
n = int(sys.argv[2]) * 8000
w = wave.open(sys.argv[1], "wb"); w.setnchannels(1); w.setsampwidth(2); w.setframerate(8000)
frames = bytearray()
for i in range(n):
    f = 440 if (i // 4000) % 2 == 0 else 660
    frames += struct.pack("<h", int(6000 * math.sin(2 * math.pi * f * i / 8000)))
w.writeframes(bytes(frames)); w.close()
EOF
}

# record_step PEER N MODE (none|all): one server start, N calls, the report line.
declare -A REC_LINE
RECORD_LINES=()
record_step() {
	local peer=$1 n=$2 mode=$3 r=${4:-1} dir=$WORK/record-$1-$2-$3-$4
	mkdir -p "$dir"
	TSU_RECORDING=
	RTPE_EXTRA=()
	KAM_EXTRA=()
	if [[ $peer == tsunagu ]]; then
		TSU_RECORDING=$mode
	elif [[ $mode == all ]]; then
		mkdir -p "$dir/rtpe-rec"
		RTPE_EXTRA=(--recording-dir="$dir/rtpe-rec" --recording-method=pcap)
		KAM_EXTRA=(-A RECORD_CALL)
	fi
	start_peer "$peer" "$SERVER_CPU"
	TSU_RECORDING=
	RTPE_EXTRA=()
	KAM_EXTRA=()
	local data=$WORK/tsunagu-data
	MS_HOOK=
	media_step "$peer" "$n" "$dir" "$DID"
	# After the teardown: Tsunagu's recordings are closed and uploaded; wait
	# until every row is `stored` (bounded), and take the CPU of that phase.
	local rows=- stored=- bytes=- upload_s=- files=- objbytes=- dropped=- thr1 split_up="-" t_end
	if [[ $mode == none ]]; then
		# The same span without recording: the teardown's own CPU (BYEs, call
		# records), to tell the upload's share apart.
		sleep 1
		t_end=$(date +%s.%N)
		thr1=$dir/threads-stored.txt
		thr_snapshot "$RELAY_PID" >"$thr1"
		upload_s=$(awk -v a="$MS_T_RELEASE" -v b="$t_end" 'BEGIN { printf "%.1f", b - a }')
		split_up=$(thr_split "$MS_THR0" "$thr1" "$upload_s")
	fi
	if [[ $mode == all ]]; then
		local i deadline list
		deadline=$(($(date +%s) + RECORD_UPLOAD_TIMEOUT))
		if [[ $peer == tsunagu ]]; then
			while :; do
				list=$(taskset -c "$GEN_CPU" "$TSUNAGU_BIN" recording list --data "$data" --limit 1000000 2>/dev/null 9>&- || true)
				rows=$(grep -c . <<<"$list" || true)
				stored=$(awk -F'\t' '$4 == "stored"' <<<"$list" | grep -c . || true)
				((rows > 0 && stored == rows)) && break
				(($(date +%s) < deadline)) || break
				sleep 0.5
			done
			t_end=$(date +%s.%N)
			bytes=$(awk -F'\t' '{ s += $5 } END { printf "%.0f", s }' <<<"$list")
			files=$(find "$data/objects" -type f -name '*.wav' 2>/dev/null | wc -l)
			objbytes=$(du -sb "$data/objects" 2>/dev/null | awk '{ print $1 }')
			dropped=$(curl -sf -m 2 "http://127.0.0.1:$TSU_HTTP_PORT/metrics" 2>/dev/null |
				awk '/^tsunagu_recording_dropped_total/ { s += $NF; f = 1 } END { printf "%.0f\n", f ? s : 0 }' || echo -)
			echo "$list" >"$dir/recording-list.txt"
		else
			# rtpengine writes its pcap files as packets go; a deleted call's file is closed at once.
			sleep 1
			t_end=$(date +%s.%N)
			files=$(find "$dir/rtpe-rec/pcaps" -type f -size +24c 2>/dev/null | wc -l)
			rows=$(find "$dir/rtpe-rec/pcaps" -type f 2>/dev/null | wc -l)
			stored=$files
			bytes=$(du -sb "$dir/rtpe-rec/pcaps" 2>/dev/null | awk '{ print $1 }')
			objbytes=$bytes
		fi
		thr1=$dir/threads-stored.txt
		thr_snapshot "$RELAY_PID" >"$thr1"
		upload_s=$(awk -v a="$MS_T_RELEASE" -v b="$t_end" 'BEGIN { printf "%.1f", b - a }')
		split_up=$(thr_split "$MS_THR0" "$thr1" "$upload_s")
	fi
	local load=$MS_LOAD split
	if [[ $peer == tsunagu ]]; then split=$(thr_classes "$load"); else split=$(thr_top "$load"); fi
	STEP_LINE=$(printf "%-8s %5d %4s %5s %6s %8s %7s %7s %8s %7s %7s %6s %5s %5s %12s %8s %7s" \
		"$peer" "$n" "$mode" "$(kv up "$MS_SETUP")" "$(kv lost "$load")" "$(kv loss_pct "$load")" \
		"$(kv relay_p50_us "$load")" "$(kv relay_p99_us "$load")" "$(kv relay_p999_us "$load")" "$(kv late_p99_us "$load")" \
		"$(kv cpu_relay_pct "$load")" "$MS_PSS" "$rows" "$stored" "$bytes" "$upload_s" "$dropped")
	local tear_ms=-
	[[ $split_up == - ]] || tear_ms=$(awk -v t="$(field_kv "x upload=[$split_up]" upload total)" -v s="$upload_s" -v n="$n" 'BEGIN { printf "%.2f", t * s * 10 / n }')
	[[ $peer == kamailio ]] && tear_ms=-
	STEP_LINE="$STEP_LINE bye_ok=$(kv bye_ok "$MS_DOWN")/$(kv up "$MS_SETUP") teardown_cpu_ms_per_call=$tear_ms window=[$split] upload=[$split_up]"
	STEP_LINE="$STEP_LINE rep=$r"
	REC_LINE[$peer,$n,$mode,$r]=$STEP_LINE
	RECORD_LINES+=("$STEP_LINE")
	echo "$STEP_LINE" >&2
	check_alive "$peer" || true
	stop_servers
}
RECORD_HEADER=$(printf "%-8s %5s %4s %5s %6s %8s %7s %7s %8s %7s %7s %6s %5s %5s %12s %8s %7s" \
	peer calls rec up lost loss% p50us p99us p999us late99 relCPU pssMB rows stored bytes upl_s dropped)

measure_record() { # measure_record PEER
	local peer=$1 n
	log "$peer: record, server on CPU $SERVER_CPU, generator on CPU $GEN_CPU, ${RECORD_SECONDS}s counted, calls: $RECORD_CALLS, each without and with recording"
	echo "$RECORD_HEADER" >&2
	local r
	for n in $RECORD_CALLS; do
		for ((r = 1; r <= RECORD_REPEAT; r++)); do
			record_step "$peer" "$n" none "$r"
			sleep 2
			record_step "$peer" "$n" all "$r"
			sleep 2
		done
	done
}

# play_media DIR N: rtpengine plays the prompt file to every caller (ng
# "play media", from-tag = the caller's tag), as an IVR or announcement would.
play_media() {
	taskset -c "$GEN_CPU" "$PY" - "$RTPE_NG_PORT" "$1/calls.txt" "$WORK/prompt.wav" >"$1/play-media.txt" 2>&1 9>&- <<'EOF' || true
import random, re, socket, sys, time
def benc(o):
    if isinstance(o, int): return b"i%de" % o
    if isinstance(o, str): o = o.encode()
    if isinstance(o, bytes): return b"%d:%s" % (len(o), o)
    if isinstance(o, list): return b"l" + b"".join(benc(x) for x in o) + b"e"
    return b"d" + b"".join(benc(k) + benc(v) for k, v in sorted(o.items())) + b"e"
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)
ok = bad = 0; errors = {}
t0 = time.monotonic()
for line in open(sys.argv[2]):
    call_id, from_tag, to_tag = line.split()
    cookie = b"%08x" % random.getrandbits(32)
    s.sendto(cookie + b" " + benc({"command": "play media", "call-id": call_id, "from-tag": from_tag, "file": sys.argv[3]}),
             ("127.0.0.1", int(sys.argv[1])))
    try:
        r = s.recv(65536)
    except OSError as e:
        r = str(e).encode()
    if b"6:result2:ok" in r:
        ok += 1
    else:
        bad += 1; k = r[:120]; errors[k] = errors.get(k, 0) + 1
print("play_media ok=%d failed=%d seconds=%.2f errors=%r" % (ok, bad, time.monotonic() - t0, errors))
EOF
	log "rtpengine: $(cat "$1/play-media.txt")"
}

declare -A IVR_LINE
IVR_LINES=()
ivr_step() { # ivr_step PEER N
	local peer=$1 n=$2 dir=$WORK/ivr-$1-$2 load split did rtpargs
	mkdir -p "$dir"
	if [[ $peer == tsunagu ]]; then
		TSU_IVR=1
		did=$IVR_DID
		MS_HOOK=
		rtpargs=(-F A)
	else
		did=$DID
		MS_HOOK=play_media
		rtpargs=(-Q B -F A)
	fi
	start_peer "$peer" "$SERVER_CPU"
	TSU_IVR=0
	media_step "$peer" "$n" "$dir" "$did" "${rtpargs[@]}"
	MS_HOOK=
	load=$MS_LOAD
	if [[ $peer == tsunagu ]]; then split=$(thr_classes "$load"); else split=$(thr_top "$load"); fi
	STEP_LINE=$(printf "%-8s %5d %5s %5s %6s %9s %8s %6s %6s %7s %8s %8s %8s %7s %7s %6s" \
		"$peer" "$n" "$(kv up "$MS_SETUP")" "$(kv stream_streams "$load")" "$(kv stream_silent "$load")" \
		"$(kv stream_pps "$load")" "$(kv stream_pps_per_stream "$load")" "$(kv stream_min_pkts "$load")" \
		"$(kv stream_expected_per_stream "$load")" "$(kv stream_missing_seq "$load")" \
		"$(kv stream_ia_p50_us "$load")" "$(kv stream_ia_p99_us "$load")" "$(kv stream_ia_max_us "$load")" \
		"$(kv late_p99_us "$load")" "$(kv cpu_relay_pct "$load")" "$MS_PSS")
	STEP_LINE="$STEP_LINE bye_ok=$(kv bye_ok "$MS_DOWN")/$(kv up "$MS_SETUP") ia_p10/p90=$(kv stream_ia_p10_us "$load")/$(kv stream_ia_p90_us "$load") ssrc_changes=$(kv stream_ssrc_changes "$load") reordered=$(kv stream_reordered "$load") rtcp=$(kv stream_rtcp "$load") relayed_lost=$(kv lost "$load") window=[$split]"
	IVR_LINE[$peer,$n]=$STEP_LINE
	IVR_LINES+=("$STEP_LINE")
	echo "$STEP_LINE" >&2
	check_alive "$peer" || true
	stop_servers
}
IVR_HEADER=$(printf "%-8s %5s %5s %5s %6s %9s %8s %6s %6s %7s %8s %8s %8s %7s %7s %6s" \
	peer calls up strms silent pkts/s pps/strm minpkt expect missing ia50us ia99us iamaxus late99 relCPU pssMB)

measure_ivr() { # measure_ivr PEER
	local peer=$1 n
	log "$peer: ivr, server on CPU $SERVER_CPU, generator on CPU $GEN_CPU, ${RECORD_SECONDS}s counted, calls: $IVR_CALLS"
	echo "$IVR_HEADER" >&2
	for n in $IVR_CALLS; do
		ivr_step "$peer" "$n"
		sleep 2
	done
}

# ---------------------------------------------------------------- main
need_free "$CALLER_PORT" udp
need_free "$CALLEE_PORT" udp
prepare_files
START=$(date '+%F %T %Z')
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
RELAY_LINES=()
RUN_PEERS=()
for peer in $PEERS; do
	case $peer in
	kamailio) RUN_PEERS+=(kamailio) ;;
	tsunagu) [[ -n $TSU_SKIP ]] || RUN_PEERS+=(tsunagu) ;;
	*) die "unknown peer '$peer' (kamailio, tsunagu)" ;;
	esac
done
((${#RUN_PEERS[@]})) || die "nothing to measure (tsunagu skipped: $TSU_SKIP)"
for bench in $BENCHES; do
	case $bench in
	caps)
		for peer in "${RUN_PEERS[@]}"; do measure_caps "$peer"; sleep 2; done ;;
	relay)
		if ((RELAY_BASELINE)); then
			for n in $(printf '%s\n' $RELAY_CALLS $RELAY_REF_CALLS | sort -nu); do relay_baseline "$n"; done
		fi
		for peer in "${RUN_PEERS[@]}"; do measure_relay "$peer"; sleep 2; done ;;
	record)
		for peer in "${RUN_PEERS[@]}"; do measure_record "$peer"; sleep 2; done ;;
	ivr)
		make_prompt
		for peer in "${RUN_PEERS[@]}"; do measure_ivr "$peer"; sleep 2; done ;;
	*) die "unknown benchmark '$bench' (caps, relay, record, ivr)" ;;
	esac
done

# ---------------------------------------------------------------- report
field() { awk -v f="$2" '{ print $f }' <<<"$1"; }
report_head() {
	echo "machine: $(nproc) CPUs ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)), $(uname -r), loadavg before: $LOAD_BEFORE"
	echo "tools: $(sipp -v 2>&1 | grep -o 'SIPp v[^ ]*' | head -1), kamailio $(kamailio -v 2>/dev/null | awk 'NR==1{print $3}'), rtpengine $(rtpengine --version 2>&1 | awk '{print $2; exit}') (userspace, --table=-1)," \
		"$(if [[ " $PEERS " != *" tsunagu "* ]]; then echo 'tsunagu not requested'; elif [[ -n $TSU_SKIP ]]; then echo "tsunagu SKIPPED: $TSU_SKIP"; else echo "$("$TSUNAGU_BIN" --version 2>/dev/null | head -1) ($TSUNAGU_BIN, built $(date -r "$TSUNAGU_BIN" '+%F %T'))"; fi)"
}
if [[ " $BENCHES " == *" caps "* || " $BENCHES " == *" relay "* ]]; then
{
	echo "Call benchmarks ($START) - bench/calls/run.sh"
	echo "machine: $(nproc) CPUs ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)), $(uname -r), loadavg before: $LOAD_BEFORE"
	echo "tools: $(sipp -v 2>&1 | grep -o 'SIPp v[^ ]*' | head -1), kamailio $(kamailio -v 2>/dev/null | awk 'NR==1{print $3}'), rtpengine $(rtpengine --version 2>&1 | awk '{print $2; exit}') (userspace, --table=-1)," \
		"$(if [[ " $PEERS " != *" tsunagu "* ]]; then echo 'tsunagu not requested'; elif [[ -n $TSU_SKIP ]]; then echo "tsunagu SKIPPED: $TSU_SKIP"; else echo "$("$TSUNAGU_BIN" --version 2>/dev/null | head -1) ($TSUNAGU_BIN, built $(date -r "$TSUNAGU_BIN" '+%F %T'))"; fi)"
	if [[ " $BENCHES " == *" caps "* ]]; then
		echo
		echo "== CAPS: call setups per second with media anchored (servers not pinned, SIPp on the same 2 CPUs)"
		echo "call = INVITE -> 100/180/200 -> ACK, ${CAPS_MEDIA_SECONDS}s of G.711 RTP both ways through the relay, BYE -> 200; ${CAPS_STEP_SECONDS}s per rate"
		echo "pass = <${MAX_FAIL_PCT}% failed calls, <${MAX_RETRANS_PCT} retransmission (caller+callee) per 100 calls, achieved >= ${MIN_ACHIEVED_PCT}% of offered, media% >= ${MIN_MEDIA_PCT}"
		echo "p50/p99 = INVITE sent -> 200 received (SIPp rtd); byep99 = BYE -> 200; media% = RTP packets that reached the callee through the relay / (calls x ${CAPS_MEDIA_SECONDS}s x 50)"
		echo "srvCPU = all server processes (Kamailio+rtpengine / Tsunagu), rtpeCPU = rtpengine's share, % of one core; srvs/1k = server CPU s per 1,000 calls"
		echo
		echo "$CAPS_HEADER"
		printf '%s\n' "${CAPS_LINES[@]}"
		echo
		printf "%-9s %10s %9s %9s %9s %16s  %s\n" peer "max calls/s" achieved "p50 ms" "p99 ms" "server CPU s/1k" "first failing rate"
		for peer in "${RUN_PEERS[@]}"; do
			b=${CAPS_BEST[$peer]:-}
			f=${CAPS_FAIL[$peer]:-}
			fdesc="none up to the last rate"
			[[ -z $f ]] || fdesc="$(field "$f" 2)/s: $(field "$f" 20) (server CPU $(field "$f" 12), rtpengine $(field "$f" 13), SIPp $(field "$f" 14), host $(field "$f" 15))"
			if [[ -n $b ]]; then
				printf "%-9s %10s %9s %9s %9s %16s  %s\n" "$peer" "$(field "$b" 2)" "$(field "$b" 3)" "$(field "$b" 8)" "$(field "$b" 9)" "$(field "$b" 17)" "$fdesc"
			else
				printf "%-9s %10s %9s %9s %9s %16s  %s\n" "$peer" "<$(awk '{print $1}' <<<"$CAPS_RATES")" - - - - "$fdesc"
			fi
		done
		if [[ -n ${CAPS_BEST[tsunagu]:-} && -n ${CAPS_BEST[kamailio]:-} ]]; then
			awk -v t="${CAPS_BEST[tsunagu]}" -v k="${CAPS_BEST[kamailio]}" 'BEGIN {
				split(t, a, " +"); split(k, b, " +")
				printf "ratio tsunagu/kamailio+rtpengine, each at its own max: calls/s %.2f, p99 %.2f, server CPU per call %.2f\n",
					a[2] / b[2], (b[9] > 0 ? a[9] / b[9] : 0), (b[17] > 0 ? a[17] / b[17] : 0) }'
			printf '%s\n' "${CAPS_LINES[@]}" | awk '
				$19 == "PASS" { line[$1, $2] = $0; if ($1 == "tsunagu") t[$2] = 1; if ($1 == "kamailio") k[$2] = 1 }
				END {
					best = 0
					for (r in t) if ((r in k) && r + 0 > best) best = r + 0
					if (!best) exit
					split(line["tsunagu", best], a, " +"); split(line["kamailio", best], b, " +")
					printf "at the same load, %d calls/s (highest both passed): p99 %s / %s ms = %.2f, server CPU per call %s / %s s/1k = %.2f\n",
						best, a[9], b[9], (b[9] > 0 ? a[9] / b[9] : 0), a[17], b[17], (b[17] > 0 ? a[17] / b[17] : 0) }'
		fi
	fi
	if [[ " $BENCHES " == *" relay "* ]]; then
		echo
		echo "== RELAY: concurrent G.711 calls relayed on ONE core (server pinned to CPU $SERVER_CPU, generator + SIP driver on CPU $GEN_CPU)"
		echo "per call 2 x 50 packets/s of 172 bytes through the relay; ${RELAY_RAMP}s ramp + ${RELAY_WARMUP}s warm-up, then ${RELAY_SECONDS}s counted"
		echo "pass = every call set up and torn down, 0 packets lost (of those sent in the counted window), none misrouted, relay p99 <= ${RELAY_MAX_P99_MS} ms"
		echo "latency = kernel receive timestamp (when the relay's send reaches loopback) - send time in the payload, microseconds;"
		echo "        late99us = p99 of how late rtpload's own sends left (> 2000 flags a generator that could not keep its schedule)"
		echo "relCPU = the relay process (rtpengine / tsunagu) during the counted window, genCPU = rtpload (it busy-waits: ~100 % by design),"
		echo "        sipCPU = Kamailio's processes; pssMB = server memory (PSS, all its processes) with the calls up"
		if ((RELAY_BASELINE)); then
			echo "baseline, rtpload alone on CPU $GEN_CPU with no relay (a_i -> b_i directly; same packets, same timeline):"
			for n in $(printf '%s\n' "${!BASE_LINE[@]}" | sort -n); do
				b=${BASE_LINE[$n]}
				printf "  %5d calls: latency p50 %s us, p99 %s us, lost %s, send lateness p99 %s us%s\n" "$n" "$(kv relay_p50_us "$b")" \
					"$(kv relay_p99_us "$b")" "$(kv lost "$b")" "$(kv late_p99_us "$b")" \
					"$(awk -v l="$(kv late_p99_us "$b")" 'BEGIN { if (l == "-" || l + 0 > 2000) print "  <- the generator alone cannot keep up: steps at this N measure the generator too" }')"
			done
		fi
		echo
		echo "$RELAY_HEADER"
		printf '%s\n' "${RELAY_LINES[@]}"
		echo
		printf "%-9s %14s %16s %12s %12s %12s %12s  %s\n" peer "max 0-loss" "max 0-loss+p99" "p99 @$RELAY_REF_CALLS" "p50 @$RELAY_REF_CALLS" "relCPU @$RELAY_REF_CALLS" "pssMB @$RELAY_REF_CALLS" "first failing step"
		for peer in "${RUN_PEERS[@]}"; do
			b0=${RELAY_BEST0[$peer]:-}
			b=${RELAY_BEST[$peer]:-}
			r=${RELAY_REF[$peer]:-}
			f=${RELAY_FAIL[$peer]:-}
			printf "%-9s %14s %16s %12s %12s %12s %12s  %s\n" "$peer" "${b0:+$(field "$b0" 2)}" "${b:+$(field "$b" 2)}" \
				"${r:+$(field "$r" 9) us}" "${r:+$(field "$r" 8) us}" "${r:+$(field "$r" 13)}" "${r:+$(field "$r" 16)}" \
				"${f:+$(field "$f" 2) calls: $(field "$f" 19)}"
		done
		if [[ -n ${RELAY_REF[tsunagu]:-} && -n ${RELAY_REF[kamailio]:-} ]]; then
			awk -v t="${RELAY_REF[tsunagu]}" -v k="${RELAY_REF[kamailio]}" -v t0="$(field "${RELAY_BEST0[tsunagu]:-x 0}" 2)" \
				-v k0="$(field "${RELAY_BEST0[kamailio]:-x 0}" 2)" -v n="$RELAY_REF_CALLS" 'BEGIN {
				split(t, a, " +"); split(k, b, " +")
				printf "ratio tsunagu/kamailio+rtpengine: max 0-loss calls %s, at %d calls: p99 %.2f, relay CPU %.2f, memory %.2f\n",
					(k0 > 0 ? sprintf("%.2f", t0 / k0) : "-"), n, (b[9] > 0 ? a[9] / b[9] : 0),
					(b[13] + 0 > 0 ? (a[13] + 0) / (b[13] + 0) : 0), (b[16] > 0 ? a[16] / b[16] : 0) }'
			# The same load for both: the highest N both passed (0 loss, p99 within the limit),
			# where neither relay is saturated, so its CPU per call means something.
			printf '%s\n' "${RELAY_LINES[@]}" | awk '
				$18 == "PASS" { line[$1, $2] = $0; if ($1 == "tsunagu") t[$2] = 1; if ($1 == "kamailio") k[$2] = 1 }
				END {
					best = 0
					for (r in t) if ((r in k) && r + 0 > best) best = r + 0
					if (!best) exit
					split(line["tsunagu", best], a, " +"); split(line["kamailio", best], b, " +")
					printf "at the same load, %d calls (highest both passed): p99 %s / %s us = %.2f, relay CPU %s / %s = %.2f, memory %s / %s MB = %.2f\n",
						best, a[9], b[9], (b[9] > 0 ? a[9] / b[9] : 0), a[13], b[13], (b[13] + 0 > 0 ? (a[13] + 0) / (b[13] + 0) : 0),
						a[16], b[16], (b[16] > 0 ? a[16] / b[16] : 0) }'
			# CPU per call only means something below saturation: the highest N both
			# passed with both relays under 90 % of their core.
			printf '%s\n' "${RELAY_LINES[@]}" | awk '
				$18 == "PASS" && $13 + 0 < 90 { line[$1, $2] = $0; if ($1 == "tsunagu") t[$2] = 1; if ($1 == "kamailio") k[$2] = 1 }
				END {
					best = 0
					for (r in t) if ((r in k) && r + 0 > best) best = r + 0
					if (!best) exit
					split(line["tsunagu", best], a, " +"); split(line["kamailio", best], b, " +")
					printf "relay CPU per call below saturation, %d calls (highest both passed under 90%% CPU): %.3f / %.3f %% of a core per call = %.2f (%.1f / %.1f us per relayed packet)\n",
						best, (a[13] + 0) / best, (b[13] + 0) / best, (b[13] + 0 > 0 ? (a[13] + 0) / (b[13] + 0) : 0),
						(a[13] + 0) * 1e4 / (best * 100), (b[13] + 0) * 1e4 / (best * 100) }'
		fi
	fi
	if [[ -n $TSU_SKIP && " $PEERS " == *" tsunagu "* ]]; then
		echo
		echo "tsunagu: SKIPPED - $TSU_SKIP"
	elif [[ -s $WORK/tsunagu.log ]]; then
		echo
		echo "tsunagu log: $(grep -c . "$WORK/tsunagu.log") lines, $(grep -ciE 'error|panic' "$WORK/tsunagu.log" || true) with error/panic"
		grep -iE 'error|panic' "$WORK/tsunagu.log" | sort | uniq -c | sort -rn | head -5 || true
	fi
} | tee "$RESULT_FILE.tmp"
mv "$RESULT_FILE.tmp" "$RESULT_FILE"
log "written to $RESULT_FILE"
fi


if [[ " $BENCHES " == *" record "* ]]; then
{
	echo "Recording benchmark ($START) - BENCHES=record bench/calls/run.sh"
	report_head
	echo
	echo "== RECORD: the same N concurrent G.711 calls on ONE core (server pinned to CPU $SERVER_CPU, generator + SIP driver on CPU $GEN_CPU),"
	echo "   each N run twice, each time with a fresh server: without recording and with every call recorded"
	echo "tsunagu: recording_mode none / all, recording_notice \"\" (no notice, so recorded calls are set up exactly like the others);"
	echo "         the relay thread copies each packet into the call's tap, media-recorder writes a stereo u-law WAV spool file,"
	echo "         at call end it is uploaded to the object store (the default: DATA/objects on the same disk) and the row marked stored"
	echo "kamailio: rtpengine --recording-method=pcap --recording-dir=... (userspace: its pcap writer, no kernel module, no recording daemon),"
	echo "         Kamailio's offer carries the flag record-call; one pcap file per call, both directions"
	echo "per call 2 x 50 packets/s of 172 bytes through the relay; ${RELAY_RAMP}s ramp + ${RELAY_WARMUP}s warm-up, then ${RECORD_SECONDS}s counted"
	echo "relCPU = the relay process in the counted window, % of one core (/proc/PID/stat); window=[...] = its threads in the same window"
	echo "         (/proc/PID/task/*/schedstat; tsunagu: media-relay-* / media-recorder / tokio-rt-worker / sqlx-sqlite-worker / sip-udp-* / the rest;"
	echo "         rtpengine: by thread name, those >= 0.05 %)"
	echo "rows/stored = recording rows and how many became 'stored' (rtpengine: pcap files / non-empty ones); bytes = the recordings' bytes;"
	echo "upl_s = BYEs sent -> every row stored (teardown + close + upload; without recording, and rtpengine: teardown + 1 s), upload=[...] = the"
	echo "         server's threads over that span, % of a core; teardown_cpu_ms_per_call = their CPU over it per call (tsunagu: with - without = the"
	echo "         close and upload of one recording, plus its row's update)"
	echo "dropped = tsunagu_recording_dropped_total (batches the relay dropped because the writer was behind)"
	echo
	echo "$RECORD_HEADER"
	printf '%s\n' "${RECORD_LINES[@]}"
	echo
	echo "CPU per recorded call = (relCPU with recording - relCPU without) / N, % of one core; target <= 0.1 % (ADR 0005: also 0 loss and p99 within 10 %)"
	for peer in "${RUN_PEERS[@]}"; do
		for n in $RECORD_CALLS; do
		for ((r = 1; r <= RECORD_REPEAT; r++)); do
			a=${REC_LINE[$peer,$n,none,$r]:-}
			b=${REC_LINE[$peer,$n,all,$r]:-}
			[[ -n $a && -n $b ]] || continue
			awk -v peer="$peer" -v n="$n" -v a="$a" -v b="$b" -v r="$r" -v reps="$RECORD_REPEAT" \
				-v ar="$(field_kv "$a" window relay)" -v br="$(field_kv "$b" window relay)" \
				-v bw="$(field_kv "$b" window recorder)" -v at="$(field_kv "$a" window tokio)" -v bt="$(field_kv "$b" window tokio)" \
				-v as="$(field_kv "$a" window sqlite)" -v bs="$(field_kv "$b" window sqlite)" \
				-v atot="$(field_kv "$a" window total)" -v btot="$(field_kv "$b" window total)" \
				-v atear="$(kv teardown_cpu_ms_per_call "$a")" -v btear="$(kv teardown_cpu_ms_per_call "$b")" 'BEGIN {
				split(a, x, " +"); split(b, y, " +")
				d = (y[11] - x[11]) / n
				line = sprintf("%-8s %5d calls: relCPU %s -> %s %%: %.4f %% of a core per recorded call (%s); loss %s -> %s %%; p99 %s -> %s us (%+.0f %%)",
					peer, n, x[11], y[11], d, (d <= 0.1 ? "target met" : "target MISSED"), x[6], y[6], x[8], y[8],
					(x[8] > 0 ? 100 * (y[8] - x[8]) / x[8] : 0))
				if (peer == "tsunagu" && atot != "-")
					line = line sprintf("\n                 threads (schedstat): total %.2f -> %.2f %% = %.4f %%/call; relay threads %.2f -> %.2f (%+.4f %%/call), media-recorder %.2f (%.4f %%/call), tokio %.2f -> %.2f (%+.4f %%/call), sqlite %.2f -> %.2f",
						atot, btot, (btot - atot) / n, ar, br, (br - ar) / n, bw, bw / n, at, bt, (bt - at) / n, as, bs)
				if (y[13] != "-" && y[14] != "-")
					line = line sprintf("\n                 recordings: %s rows, %s stored, %s bytes (%.0f per call), BYEs sent -> all stored %s s, dropped batches %s",
						y[13], y[14], y[15], (y[15] > 0 && y[13] > 0 ? y[15] / y[13] : 0), y[16], y[17])
				if (atear != "-" && btear != "-")
					line = line sprintf("\n                 at the end: server CPU from the BYEs until all stored %s ms per call, without recording %s ms: %.2f ms of CPU per recording to close and upload (once per call, not per second)",
						btear, atear, btear - atear)
				print line (reps > 1 ? " (pair " r ")" : "") }'
		done
		done
	done
	if ((RECORD_REPEAT > 1)); then
		echo
		echo "over the $RECORD_REPEAT pairs (each pair: a server without recording, then one with), % of a core per recorded call:"
		for peer in "${RUN_PEERS[@]}"; do
			for n in $RECORD_CALLS; do
				for ((r = 1; r <= RECORD_REPEAT; r++)); do
					a=${REC_LINE[$peer,$n,none,$r]:-}
					b=${REC_LINE[$peer,$n,all,$r]:-}
					[[ -n $a && -n $b ]] || continue
					echo "$(field "$a" 11) $(field "$b" 11)"
				done | awk -v peer="$peer" -v n="$n" '{ d = ($2 - $1) / n; s += d; a += $1; b += $2; k++; if (k == 1 || d < lo) lo = d; if (k == 1 || d > hi) hi = d }
					END { if (k) printf "%-8s %5d calls: relCPU mean %.1f -> %.1f %%, per recorded call mean %.4f %% (min %.4f, max %.4f) - %s\n",
						peer, n, a / k, b / k, s / k, lo, hi, (s / k <= 0.1 ? "target met" : "target MISSED") }'
			done
		done
	fi
	echo
	echo "External reference, self-reported, not measured here: RustPBX reports 0.08-0.13 % of a core per recorded call."
	if [[ -s $WORK/tsunagu.log ]]; then
		echo
		echo "tsunagu log (last server): $(grep -c . "$WORK/tsunagu.log") lines, $(grep -ciE 'error|panic' "$WORK/tsunagu.log" || true) with error/panic"
	fi
} | tee "$RECORD_RESULT_FILE.tmp"
mv "$RECORD_RESULT_FILE.tmp" "$RECORD_RESULT_FILE"
log "written to $RECORD_RESULT_FILE"
fi

if [[ " $BENCHES " == *" ivr "* ]]; then
{
	echo "IVR prompt benchmark ($START) - BENCHES=ivr bench/calls/run.sh"
	report_head
	echo
	echo "== IVR: N concurrent calls the server answers itself with a ${IVR_PROMPT_SECONDS}-second prompt, on ONE core (server pinned to CPU $SERVER_CPU, generator on CPU $GEN_CPU)"
	echo "tsunagu: the DID $IVR_DID goes to ivr:main, whose prompt is the file (imported as an announcement); the PBX answers the call and its"
	echo "         relay thread sends one 20 ms PCMU frame per call from the call's endpoint; no callee leg"
	echo "kamailio: the DID rings the callee as in the relay benchmark (rtpengine relays the call), then rtpengine's ng \"play media\" plays the"
	echo "         WAV file to each caller (its media player decodes and encodes it); the callee is silent (rtpload -Q B), but rtpengine still"
	echo "         relays the caller's packets to it - 50 more packets/s per call that Tsunagu's IVR does not forward"
	echo "both: each caller sends 50 packets/s to the server (as a caller's voice would); ${RELAY_RAMP}s ramp + ${RELAY_WARMUP}s warm-up, ${RECORD_SECONDS}s counted"
	echo "strms/silent = callers that received / did not receive the server's stream in the window; pkts/s = all of them, pps/strm = per caller"
	echo "         (50 expected), minpkt/expect = the fewest packets one caller got / ${RECORD_SECONDS} s x 50; missing = sequence numbers missing"
	echo "ia50us/ia99us/iamaxus = inter-arrival of a stream's packets (kernel receive time), 20000 expected; relCPU = server process, % of one core"
	echo
	echo "$IVR_HEADER"
	printf '%s\n' "${IVR_LINES[@]}"
	echo
	for peer in "${RUN_PEERS[@]}"; do
		for n in $IVR_CALLS; do
			a=${IVR_LINE[$peer,$n]:-}
			[[ -n $a ]] || continue
			awk -v peer="$peer" -v n="$n" -v a="$a" 'BEGIN { split(a, x, " +")
				printf "%-8s %5d prompt streams: %.4f %% of a core per stream (%s %% / %d), %s packets/s per stream, %s missing, inter-arrival p99 %s us\n",
					peer, n, x[15] / n, x[15], n, x[7], x[10], x[12] }'
		done
	done
} | tee "$IVR_RESULT_FILE.tmp"
mv "$IVR_RESULT_FILE.tmp" "$IVR_RESULT_FILE"
log "written to $IVR_RESULT_FILE"
fi
FINISHED=1
