#!/usr/bin/env bash
# REGISTER benchmark: Tsunagu vs Kamailio 5.6, digest auth, 10,000 users, SIPp.
#
#   bench/register/run.sh            # both peers, results in bench/register/last-result.txt
#
# Environment (all optional):
#   PEERS="kamailio tsunagu"   which servers to measure, in this order
#   TSUNAGU_BIN=path           default target/release/tsunagu (built if missing)
#   BUILD=1                    run cargo build --release even if the binary exists
#   USERS=10000                number of distinct users (extensions 100000...)
#   RATES="1000 2000 ..."      offered rates (registrations/s), rising; stops at first failure
#   STEP_SECONDS=40            how long each rate is sustained (> 32 s, the life of a
#                              UDP non-INVITE server transaction, so that a stateful
#                              server reaches its steady state within the step)
#   REFINE=1                   after the first failing step, try once halfway between
#   KAM_PORT TSU_SIP_PORT TSU_HTTP_PORT SIPP_PORT   default: first free from
#                              25100, 25200 (UDP+TCP, TLS on +1), 25300, 25400
#   KEEP_WORK=1                keep the temporary directory (logs, SIPp stats)
#   RESULT_FILE=path           default bench/register/last-result.txt
#
# One "registration" = REGISTER -> 401 -> REGISTER with Authorization -> 200
# (two SIP transactions), counted as ONE. A step passes when < 1 % of the
# registrations failed, SIPp retransmitted < 1 retransmission per 100
# registrations, and the achieved rate is >= 95 % of the offered rate.
# See README.md next to this file.

set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

PEERS=${PEERS:-"kamailio tsunagu"}
USERS=${USERS:-10000}
FIRST_EXT=${FIRST_EXT:-100000}
RATES=${RATES:-"1000 2000 4000 8000 12000 16000 20000 24000 28000 32000"}
STEP_SECONDS=${STEP_SECONDS:-40}
REFINE=${REFINE:-1}
# Ports: given ones are used as they are; by default the first free one from a base.
KAM_PORT=${KAM_PORT:-}
TSU_SIP_PORT=${TSU_SIP_PORT:-}
TSU_HTTP_PORT=${TSU_HTTP_PORT:-}
SIPP_PORT=${SIPP_PORT:-}
KEEP_WORK=${KEEP_WORK:-0}
RESULT_FILE=${RESULT_FILE:-$HERE/last-result.txt}
DEFAULT_TSUNAGU_BIN=$ROOT/target/release/tsunagu
TSUNAGU_BIN=${TSUNAGU_BIN:-$DEFAULT_TSUNAGU_BIN}
MAX_FAIL_PCT=1
MAX_RETRANS_PCT=1
MIN_ACHIEVED_PCT=95
LOCK=/tmp/cargo.lock

log() { printf '%s %s\n' "$(date +%T)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------- prerequisites
for tool in sipp flock curl awk sort timeout; do
	command -v "$tool" >/dev/null || die "$tool not found (apt-get install -y sip-tester kamailio curl)"
done
case " $PEERS " in *" kamailio "*)
	command -v kamailio >/dev/null || die "kamailio not found (apt-get install -y kamailio)" ;;
esac
for rate in $RATES; do
	[[ $rate =~ ^[0-9]+$ ]] && ((rate > 0)) || die "bad rate '$rate' in RATES"
done
((STEP_SECONDS > 0 && STEP_SECONDS <= 300)) || die "STEP_SECONDS must be 1..300"

# Build Tsunagu before taking the lock for the measurement (cargo takes the same lock).
if [[ " $PEERS " == *" tsunagu "* ]]; then
	if [[ ! -x $TSUNAGU_BIN || ( ${BUILD:-0} == 1 && $TSUNAGU_BIN == "$DEFAULT_TSUNAGU_BIN" ) ]]; then
		[[ $TSUNAGU_BIN == "$DEFAULT_TSUNAGU_BIN" ]] || die "TSUNAGU_BIN=$TSUNAGU_BIN is not executable"
		log "building $TSUNAGU_BIN (cargo build --release -p tsunagu-server, under $LOCK)"
		(cd "$ROOT" && flock "$LOCK" cargo build --release -p tsunagu-server) ||
			die "cargo build failed"
	fi
fi

# The whole measurement holds the cargo lock (on fd 9 of this shell; the
# servers and SIPp are started with 9>&- so they never inherit it): no compile
# may run next to it on this 2-core machine, and we wait for a running one.
exec 9>>"$LOCK"
if ! flock -n 9; then
	log "waiting for $LOCK (a cargo build is running; none may run during the measurement)"
	flock -w 7200 9 || die "could not get $LOCK within 2 hours"
fi

# ---------------------------------------------------------------- work dir, cleanup
WORK=$(mktemp -d /tmp/register-bench.XXXXXX)
KAM_PIDS=()
TSU_PID=
SIPP_SUB=
FINISHED=0

stop_pids() { # stop_pids PID...: TERM, wait up to 5 s, then KILL (only these pids)
	local pid i
	for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
	for ((i = 0; i < 50; i++)); do
		local alive=0
		for pid in "$@"; do kill -0 "$pid" 2>/dev/null && alive=1; done
		((alive)) || return 0
		sleep 0.1
	done
	for pid in "$@"; do kill -KILL "$pid" 2>/dev/null || true; done
}

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [[ -n $SIPP_SUB ]] && kill -0 "$SIPP_SUB" 2>/dev/null; then
		local kids
		kids=$(pgrep -P "$SIPP_SUB" || true)
		# shellcheck disable=SC2086
		stop_pids $kids "$SIPP_SUB"
	fi
	stop_kamailio
	stop_tsunagu
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
# pick_port NAME BASE KIND...: keep $NAME if set (it must be free), else the
# first port from BASE (40 tries, step 2) free for every KIND.
pick_port() {
	local name=$1 base=$2 p
	shift 2
	if [[ -n ${!name} ]]; then
		port_free "${!name}" "$@" || die "port ${!name} ($name) is in use"
		return 0
	fi
	for ((p = base; p < base + 80; p += 2)); do
		if port_free "$p" "$@" && { [[ $name != TSU_SIP_PORT ]] || port_free $((p + 1)) tcp; }; then
			printf -v "$name" %s "$p"
			return 0
		fi
	done
	die "no free port for $name from $base"
}

# ---------------------------------------------------------------- users
# Deterministic per-user passwords (16 chars), three views of the same list:
#   users.csv        Tsunagu import (extension,password,name)
#   sipp-users.csv   SIPp injection: USER;[authentication username=USER password=PW];
#   htdb/htable      db_text table read by Kamailio's htable at startup
generate_users() {
	mkdir -p "$WORK/htdb"
	awk -v n="$USERS" -v first="$FIRST_EXT" -v dir="$WORK" 'BEGIN {
		srand(20240611)
		cs = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
		ht = dir "/htdb/htable"; sp = dir "/sipp-users.csv"; ts = dir "/users.csv"
		print "id(int,auto) key_name(str) key_type(int) value_type(int) key_value(str) expires(int)" > ht
		print "SEQUENTIAL" > sp
		print "extension,password,name" > ts
		for (i = 0; i < n; i++) {
			u = first + i; pw = ""
			for (j = 0; j < 16; j++) pw = pw substr(cs, int(rand() * length(cs)) + 1, 1)
			printf "%d:%d:0:0:%s:0\n", i + 1, u, pw > ht
			printf "%d;[authentication username=%d password=%s];\n", u, u, pw > sp
			printf "%d,%s,User %d\n", u, pw, u > ts
		}
	}'
	log "generated $USERS users ($FIRST_EXT..$((FIRST_EXT + USERS - 1))) in $WORK"
}

# ---------------------------------------------------------------- SIPp clock shim
# SIPp 3.6 timestamps with CLOCK_MONOTONIC_COARSE: response times come out in
# 4 ms steps (kernel HZ=250). This LD_PRELOAD shim maps the coarse clocks to the
# precise ones (vDSO, cheap with the tsc clocksource) so rtd has microseconds.
SHIM=
build_shim() {
	command -v cc >/dev/null || { log "no C compiler: response times keep SIPp's coarse clock"; return 0; }
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
	if cc -shared -fPIC -O2 -o "$WORK/fineclock.so" "$WORK/fineclock.c" -ldl 2>"$WORK/fineclock.log"; then
		SHIM=$WORK/fineclock.so
	else
		log "could not build the clock shim: response times keep SIPp's coarse clock"
	fi
}

# ---------------------------------------------------------------- CPU accounting
CLK_TCK=$(getconf CLK_TCK)
cpu_ticks() { # cpu_ticks PID...: sum of utime+stime (all threads) of these processes
	local total=0 pid v
	for pid in "$@"; do
		[[ -r /proc/$pid/stat ]] || continue
		v=$(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$pid/stat" 2>/dev/null) || continue
		total=$((total + ${v:-0}))
	done
	echo "$total"
}

thread_ticks() { # thread_ticks PID...: "tid ticks" per thread of these processes
	local pid t
	for pid in "$@"; do
		for t in /proc/"$pid"/task/*/stat; do
			[[ -r $t ]] && awk '{ tid = $1; sub(/^.*\) /, ""); print tid, $12 + $13 }' "$t" 2>/dev/null
		done
	done
	return 0
}
pss_mb() { # pss_mb PID...: proportional set size of these processes together, MB
	local pid kb=0 v
	for pid in "$@"; do
		v=$(awk '/^Pss:/ { print $2; exit }' "/proc/$pid/smaps_rollup" 2>/dev/null) || continue
		kb=$((kb + ${v:-0}))
	done
	echo $((kb / 1024))
}

host_ticks() { # "busy total" jiffies of the whole machine (/proc/stat), a rough cross-check
	awk '$1 == "cpu" { t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t; exit }' /proc/stat
}

# ---------------------------------------------------------------- Kamailio
start_kamailio() {
	pick_port KAM_PORT 25100 udp
	local pidfile=$WORK/kamailio.pid
	kamailio -f "$HERE/kamailio.cfg" -DD -E -P "$pidfile" -w "$WORK" -m 256 -M 16 \
		-l "udp:127.0.0.1:$KAM_PORT" -A "HTDBURL=\"text://$WORK/htdb\"" \
		>"$WORK/kamailio.log" 2>&1 9>&- &
	local main=$! i
	KAM_PIDS=("$main")
	for ((i = 0; i < 100; i++)); do
		kill -0 "$main" 2>/dev/null || { tail -20 "$WORK/kamailio.log" >&2; die "kamailio exited at startup"; }
		if ! port_free "$KAM_PORT" udp && (($(pgrep -c -P "$main" || true) >= 8)); then
			break
		fi
		sleep 0.1
	done
	sleep 1 # let every worker finish its child_init
	mapfile -t KAM_PIDS < <(echo "$main"; pgrep -P "$main")
	log "kamailio $(kamailio -v | awk 'NR==1{print $3}') up on 127.0.0.1:$KAM_PORT, ${#KAM_PIDS[@]} processes (pid $main)"
}
stop_kamailio() {
	((${#KAM_PIDS[@]})) || return 0
	local kids
	kids=$(pgrep -P "${KAM_PIDS[0]}" || true)
	# shellcheck disable=SC2086
	stop_pids "${KAM_PIDS[0]}" $kids "${KAM_PIDS[@]:1}"
	KAM_PIDS=()
}

# ---------------------------------------------------------------- Tsunagu
start_tsunagu() {
	pick_port TSU_SIP_PORT 25200 udp tcp
	pick_port TSU_HTTP_PORT 25300 tcp
	local data=$WORK/tsunagu-data i
	mkdir -p "$data"
	TSUNAGU_LOG=${TSUNAGU_LOG:-warn} timeout 300 "$TSUNAGU_BIN" user import --data "$data" "$WORK/users.csv" \
		>"$WORK/tsunagu-import.log" 2>&1 9>&- || { tail -20 "$WORK/tsunagu-import.log" >&2; die "tsunagu user import failed"; }
	TSUNAGU_LOG=${TSUNAGU_LOG:-warn} "$TSUNAGU_BIN" serve --data "$data" \
		--sip "127.0.0.1:$TSU_SIP_PORT" --http "127.0.0.1:$TSU_HTTP_PORT" \
		>"$WORK/tsunagu.log" 2>&1 9>&- &
	TSU_PID=$!
	for ((i = 0; i < 300; i++)); do
		kill -0 "$TSU_PID" 2>/dev/null || { tail -20 "$WORK/tsunagu.log" >&2; die "tsunagu serve exited at startup"; }
		curl -sf -m 1 "http://127.0.0.1:$TSU_HTTP_PORT/healthz" >/dev/null 2>&1 && break
		sleep 0.1
	done
	curl -sf -m 2 "http://127.0.0.1:$TSU_HTTP_PORT/healthz" >/dev/null ||
		die "tsunagu /healthz not answering after 30 s"
	log "tsunagu up on 127.0.0.1:$TSU_SIP_PORT (http $TSU_HTTP_PORT), pid $TSU_PID, $(grep -c . "$WORK/tsunagu-import.log" || true) import log lines"
}
stop_tsunagu() {
	[[ -n $TSU_PID ]] || return 0
	stop_pids "$TSU_PID"
	TSU_PID=
}

# ---------------------------------------------------------------- one SIPp step
# run_step PEER PORT RATE: sets STEP_LINE (one row of the step table) and
# returns 0 if the step passed. Not run in a subshell, so that the EXIT trap
# knows SIPP_SUB and can stop SIPp.
run_step() {
	local peer=$1 port=$2 rate=$3
	local calls=$((rate * STEP_SECONDS))
	local dir=$WORK/$peer-$rate
	mkdir -p "$dir"
	local -a server_pids
	if [[ $peer == kamailio ]]; then server_pids=("${KAM_PIDS[@]}"); else server_pids=("$TSU_PID"); fi
	local srv0 srv1 t0 t1 host0 host1 thr0 thr1
	host0=$(host_ticks)
	thr0=$(thread_ticks "${server_pids[@]}")
	srv0=$(cpu_ticks "${server_pids[@]}")
	t0=$(date +%s.%N)
	(
		cd "$dir"
		rc=0
		LD_PRELOAD=$SHIM timeout --kill-after=5 $((STEP_SECONDS + 70)) \
			sipp "127.0.0.1:$port" -sf "$HERE/register.xml" -inf "$WORK/sipp-users.csv" \
			-i 127.0.0.1 -p "$SIPP_PORT" -r "$rate" -rp 1000 -m "$calls" \
			-timeout $((STEP_SECONDS + 40))s -nostdin -buff_size 4194304 \
			-trace_stat -stf stat.csv -fd 1 -trace_rtt -rtt_freq 1000 \
			-trace_err -error_file errors.log -max_log_size 20000000 \
			>screen.log 2>&1 9>&- || rc=$?
		echo "$rc" >rc
		times >times
	) &
	SIPP_SUB=$!
	wait "$SIPP_SUB" || true
	SIPP_SUB=
	t1=$(date +%s.%N)
	srv1=$(cpu_ticks "${server_pids[@]}")
	thr1=$(thread_ticks "${server_pids[@]}")
	host1=$(host_ticks)
	# The busiest single thread (Kamailio: process) of the server: a value near
	# 100 % while the machine has idle CPU points at a serial bottleneck.
	local maxthr pss
	maxthr=$(awk 'NR == FNR { before[$1] = $2; next } { d = $2 - before[$1]; if (d > m) m = d } END { print m + 0 }' \
		<(echo "$thr0") <(echo "$thr1"))
	pss=$(pss_mb "${server_pids[@]}")

	local sipp_rc
	sipp_rc=$(cat "$dir/rc" 2>/dev/null || echo 255)
	[[ -s $dir/stat.csv ]] || { tail -5 "$dir/screen.log" >&2; die "SIPp wrote no statistics (rc $sipp_rc), see $dir"; }
	# SIPp CPU (user+sys of the waited-for children): 2nd line of `times`, "XmY.YYYs XmY.YYYs".
	local sipp_cpu
	sipp_cpu=$(awk 'NR==2 { s = 0; for (i = 1; i <= 2; i++) { split($i, a, "m"); sub(/s$/, "", a[2]); s += a[1] * 60 + a[2] } print s }' "$dir/times")
	# Last cumulative line of the SIPp statistics, by column name.
	local stats
	stats=$(awk -F';' 'NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
		{ last = $0 }
		END { n = split(last, v, ";")
			printf "outgoing=%d success=%d failed=%d retrans=%d unexpected=%d timeouts=%d maxretrans=%d",
				v[col["OutgoingCall(C)"]], v[col["SuccessfulCall(C)"]], v[col["FailedCall(C)"]],
				v[col["Retransmissions(C)"]], v[col["FailedUnexpectedMessage(C)"]],
				v[col["FailedTimeoutOnRecv(C)"]], v[col["FailedMaxUDPRetrans(C)"]] }' "$dir/stat.csv")
	local outgoing success failed retrans unexpected timeouts maxretrans
	eval "$stats"
	# Response times of whole registrations (rtd 1) and of the authenticated transaction (rtd 2).
	local rtt
	rtt=$(cat "$dir"/*_rtt.csv 2>/dev/null | awk -F';' -v dir="$dir" '
		$3 == 1 { print $2 > (dir "/rtd1.txt"); n++; if (n == 1 || $1 < first) first = $1; if ($1 > last) last = $1 }
		$3 == 2 { print $2 > (dir "/rtd2.txt") }
		END { span = (last - first) / 1000; printf "samples=%d span=%.3f", n, span }')
	local samples span
	eval "$rtt"
	pct() { # pct FILE P -> P-th percentile (nearest rank) of the numbers in FILE, ms
		[[ -s $1 ]] || { echo nan; return; }
		sort -g "$1" | awk -v p="$2" '{ a[NR] = $1 } END { r = int(NR * p / 100 + 0.999999); if (r < 1) r = 1; printf "%.3f", a[r] }'
	}
	local p50 p99 auth_p99
	p50=$(pct "$dir/rtd1.txt" 50)
	p99=$(pct "$dir/rtd1.txt" 99)
	auth_p99=$(pct "$dir/rtd2.txt" 99)
	rm -f "$dir"/*_rtt.csv "$dir/rtd1.txt" "$dir/rtd2.txt"

	local passed=0
	STEP_LINE=$(awk -v peer="$peer" -v rate="$rate" -v calls="$calls" -v succ="$success" -v failed="$failed" \
		-v retrans="$retrans" -v unexp="$unexpected" -v tmo="$timeouts" -v mrt="$maxretrans" \
		-v samples="$samples" -v span="$span" -v t0="$t0" -v t1="$t1" \
		-v srv="$((srv1 - srv0))" -v hz="$CLK_TCK" -v host0="$host0" -v host1="$host1" -v ncpu="$(nproc)" -v maxthr="$maxthr" -v pss="$pss" -v sippcpu="$sipp_cpu" -v rc="$sipp_rc" \
		-v p50="$p50" -v p99="$p99" -v ap99="$auth_p99" \
		-v maxfail="$MAX_FAIL_PCT" -v maxre="$MAX_RETRANS_PCT" -v minach="$MIN_ACHIEVED_PCT" '
	BEGIN {
		wall = t1 - t0
		notdone = calls - succ                      # failed + never completed
		failpct = 100 * notdone / calls
		repct = 100 * retrans / calls
		achieved = (span > 0 && samples > 1) ? (samples - 1) / span : 0
		srvs = srv / hz
		split(host0, h0, " "); split(host1, h1, " ")
		hostpct = (h1[2] > h0[2]) ? 100 * ncpu * (h1[1] - h0[1]) / (h1[2] - h0[2]) : 0
		why = ""
		if (rc != 0 && rc != 1) why = why sprintf("sipp-rc=%s;", rc)
		if (failpct >= maxfail) why = why sprintf("failed=%.2f%%;", failpct)
		if (repct >= maxre) why = why sprintf("retrans=%.2f%%;", repct)
		if (achieved < rate * minach / 100) why = why sprintf("achieved<%d%%;", minach)
		ok = (why == "") ? "PASS" : "FAIL"
		if (why == "") why = "-"
		sub(/;$/, "", why)
		printf "%-8s %6d %7.0f %6d %6d %7.2f %7.2f %8s %8s %8s %6.0f%% %6.0f%% %6.0f%% %6.0f%% %6d %9.3f %9.3f %4s %s unexpected=%d recv-timeouts=%d max-retrans=%d\n",
			peer, rate, achieved, calls, succ, failpct, repct, p50, p99, ap99,
			100 * srvs / wall, 100 * sippcpu / wall, hostpct, 100 * maxthr / hz / wall, pss,
			(succ > 0 ? 1000 * srvs / succ : 0), (succ > 0 ? 1000 * sippcpu / succ : 0),
			ok, why, unexp, tmo, mrt
		exit (ok == "PASS" ? 0 : 1)
	}') || passed=1
	return "$passed"
}

# smoke_test PEER PORT: 20 registrations at 20/s must all succeed, else the
# setup (users, passwords, realm) is wrong and there is nothing to measure.
smoke_test() {
	local peer=$1 port=$2 dir=$WORK/$1-smoke rc=0
	mkdir -p "$dir"
	(cd "$dir" && timeout --kill-after=5 60 sipp "127.0.0.1:$port" -sf "$HERE/register.xml" \
		-inf "$WORK/sipp-users.csv" -i 127.0.0.1 -p "$SIPP_PORT" -r 20 -m 20 -timeout 30s -nostdin \
		-trace_err -error_file errors.log -trace_msg -message_file messages.log >screen.log 2>&1 9>&-) || rc=$?
	if ((rc != 0)); then
		log "$peer: smoke test (20 registrations) failed, SIPp rc $rc; first errors:"
		head -40 "$dir/errors.log" >&2 2>/dev/null || true
		die "$peer does not accept the digest registrations, see $dir"
	fi
	log "$peer: smoke test passed (20/20 registrations)"
}

STEP_HEADER=$(printf "%-8s %6s %7s %6s %6s %7s %7s %8s %8s %8s %7s %7s %7s %7s %6s %9s %9s %4s %s" \
	peer offer achieved calls ok fail% retr% p50ms p99ms authp99 srvCPU sippCPU hostCPU maxThr pssMB srvs/1k sipps/1k res why)

# ---------------------------------------------------------------- search one peer
# measure_peer PEER PORT: rising rates, stop at the first failing step (+ one
# halfway refinement). Sets BEST_LINE_<peer> / FAIL_LINE_<peer>.
declare -A BEST_LINE FAIL_LINE
STEP_LINES=()
measure_peer() {
	local peer=$1 port=$2 rate best="" fail="" prev=0
	smoke_test "$peer" "$port"
	log "$peer: steps of ${STEP_SECONDS}s at rates: $RATES"
	echo "$STEP_HEADER" >&2
	for rate in $RATES; do
		((rate > prev)) || die "RATES must rise"
		prev=$rate
		if run_step "$peer" "$port" "$rate"; then
			best=$STEP_LINE
		else
			fail=$STEP_LINE
		fi
		echo "$STEP_LINE" >&2
		STEP_LINES+=("$STEP_LINE")
		[[ -z $fail ]] || break
		sleep 2
	done
	if ((REFINE)) && [[ -n $fail ]]; then
		local lo hi mid
		lo=$(awk '{print $2}' <<<"${best:-x 0}")
		hi=$(awk '{print $2}' <<<"$fail")
		mid=$(((lo + hi) / 2 / 500 * 500))
		if ((mid > lo && mid < hi)); then
			sleep 5 # let a retransmission storm die down
			if run_step "$peer" "$port" "$mid"; then best=$STEP_LINE; else fail=$STEP_LINE; fi
			echo "$STEP_LINE" >&2
			STEP_LINES+=("$STEP_LINE")
		fi
	fi
	BEST_LINE[$peer]=$best
	FAIL_LINE[$peer]=$fail
}

# ---------------------------------------------------------------- main
pick_port SIPP_PORT 25400 udp
generate_users
build_shim
START=$(date '+%F %T %Z')
for peer in $PEERS; do
	case $peer in
	kamailio)
		start_kamailio
		measure_peer kamailio "$KAM_PORT"
		stop_kamailio
		;;
	tsunagu)
		start_tsunagu
		measure_peer tsunagu "$TSU_SIP_PORT"
		if ! kill -0 "$TSU_PID" 2>/dev/null; then
			log "tsunagu DIED during the run, last log lines:"
			tail -20 "$WORK/tsunagu.log" >&2
		fi
		stop_tsunagu
		;;
	*) die "unknown peer '$peer' (kamailio, tsunagu)" ;;
	esac
	sleep 2
done

# ---------------------------------------------------------------- report
field() { awk -v f="$2" '{ print $f }' <<<"$1"; }
{
	echo "REGISTER benchmark ($START) - bench/register/run.sh"
	echo "machine: $(nproc) CPUs, $(uname -r), loadavg before: $(cut -d' ' -f1-3 /proc/loadavg)," \
		"net.core.rmem_default=$(sysctl -n net.core.rmem_default 2>/dev/null) rmem_max=$(sysctl -n net.core.rmem_max 2>/dev/null)"
	echo "tools: $(sipp -v 2>&1 | grep -o 'SIPp v[^ ]*' | head -1), kamailio $(kamailio -v 2>/dev/null | awk 'NR==1{print $3}')," \
		"$( [[ " $PEERS " == *" tsunagu "* ]] && echo "$("$TSUNAGU_BIN" --version 2>/dev/null | head -1) ($TSUNAGU_BIN, built $(date -r "$TSUNAGU_BIN" '+%F %T'))" || echo 'tsunagu -')"
	echo "load: $USERS users ($FIRST_EXT..), UDP 127.0.0.1, ${STEP_SECONDS}s per step, rates: $RATES"
	echo "one registration = REGISTER -> 401 -> REGISTER+Authorization -> 200 (2 transactions), counted as 1"
	echo "pass = <${MAX_FAIL_PCT}% failed, <${MAX_RETRANS_PCT} retransmission per 100 registrations, achieved >= ${MIN_ACHIEVED_PCT}% of offered"
	echo "response time = SIPp rtd from first REGISTER sent to 200 received (both round trips; SIPp's own queueing included)"
	echo "CPU = utime+stime from /proc/PID/stat (all processes / threads of the server) during the step, % of one core;"
	echo "      hostCPU = whole machine from /proc/stat (includes kernel softirq work and anything else running)"
	echo "      maxThr = busiest single server thread (Kamailio: process); pssMB = server memory (PSS) after the step"
	echo
	echo "steps:"
	echo "$STEP_HEADER"
	printf '%s\n' "${STEP_LINES[@]}"
	echo
	printf "%-9s %12s %10s %9s %9s %16s %15s  %s\n" peer "max reg/s" achieved "p50 ms" "p99 ms" "server CPU s/1k" "SIPp CPU s/1k" "first failing step"
	for peer in $PEERS; do
		b=${BEST_LINE[$peer]:-}
		f=${FAIL_LINE[$peer]:-}
		fdesc="none up to the last rate"
		[[ -z $f ]] || fdesc="$(field "$f" 2)/s: $(field "$f" 19) (server CPU $(field "$f" 11), busiest thread $(field "$f" 14), SIPp $(field "$f" 12), host $(field "$f" 13))"
		if [[ -n $b ]]; then
			printf "%-9s %12s %10s %9s %9s %16s %15s  %s\n" "$peer" "$(field "$b" 2)" "$(field "$b" 3)" \
				"$(field "$b" 8)" "$(field "$b" 9)" "$(field "$b" 16)" "$(field "$b" 17)" "$fdesc"
		else
			printf "%-9s %12s %10s %9s %9s %16s %15s  %s\n" "$peer" "<$(awk '{print $1}' <<<"$RATES")" - - - - - "$fdesc"
		fi
	done
	if [[ -n ${BEST_LINE[tsunagu]:-} && -n ${BEST_LINE[kamailio]:-} ]]; then
		awk -v t="${BEST_LINE[tsunagu]}" -v k="${BEST_LINE[kamailio]}" 'BEGIN {
			split(t, a, " +"); split(k, b, " +")
			printf "\nratio tsunagu/kamailio, each at its own max rate: rate %.2f, p99 %.2f, server CPU per registration %.2f\n",
				a[2] / b[2], (b[9] > 0 ? a[9] / b[9] : 0), (b[16] > 0 ? a[16] / b[16] : 0)
		}'
		# The same load for both: the highest offered rate that both passed.
		printf '%s\n' "${STEP_LINES[@]}" | awk '
			$18 == "PASS" { key = $2; line[$1, key] = $0; if ($1 == "tsunagu") t[key] = 1; if ($1 == "kamailio") k[key] = 1 }
			END {
				best = 0
				for (r in t) if ((r in k) && r + 0 > best) best = r + 0
				if (!best) exit
				split(line["tsunagu", best], a, " +"); split(line["kamailio", best], b, " +")
				printf "at the same load, %d reg/s (highest rate both passed): p99 tsunagu %s ms / kamailio %s ms = %.2f, server CPU per registration %.3f / %.3f s/1k = %.2f\n",
					best, a[9], b[9], (b[9] > 0 ? a[9] / b[9] : 0), a[16], b[16], (b[16] > 0 ? a[16] / b[16] : 0)
			}'
	fi
	if [[ " $PEERS " == *" tsunagu "* && -s $WORK/tsunagu.log ]]; then
		echo
		echo "tsunagu log: $(grep -c . "$WORK/tsunagu.log") lines, $(grep -ciE 'error|panic' "$WORK/tsunagu.log" || true) with error/panic"
		grep -iE 'error|panic' "$WORK/tsunagu.log" | sort | uniq -c | sort -rn | head -5 || true
	fi
} | tee "$RESULT_FILE.tmp"
mv "$RESULT_FILE.tmp" "$RESULT_FILE"
log "written to $RESULT_FILE"
FINISHED=1
