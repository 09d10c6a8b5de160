#!/usr/bin/env bash
# Prism load tests (issue 8): in ONE run, against the same prism-mock, measure
#   direct   load generator -> mock
#   nginx    load generator -> nginx (plain reverse proxy, 1 worker) -> mock
#   bare     load generator -> bare Pingora pass-through (1 thread) -> mock
#   prism    load generator -> Prism (1 data-plane thread, auth/parse/route/metrics/log) -> mock
# with the proxy under test pinned to PROXY_CPU and the load generator and mock to LOAD_CPU.
#
#   load-tests/run.sh                 full run: 15 s per measurement, 3 repetitions, medians
#   QUICK=1 load-tests/run.sh         3 s per measurement (smoke test of the harness)
#   SCENARIOS="chat32 sse20" ...      a subset (chat32 chat256 sse20 anthropic body64k body1m
#                                     openloop memory bodyhold)
# Other knobs: DURATION WARMUP REPS RATE MEM_STREAMS MEM_TARGETS MEM_PACE_MS MEM_TOKENS PROXY_CPU LOAD_CPU
# BASE_PORT OUT PRISM_BIN MOCK_BIN BARE_BIN ACCESS_LOG (Prism's stdout; default a scratch file),
# PROFILE=1 (perf profiles of each proxy under chat32 and sse20, after the measurements).
#
# Results: $OUT/results.jsonl (one line per measurement) and $OUT/summary.md (medians, ratios,
# targets). Every load loop is bounded in time and count and targets 127.0.0.1 only.
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then
    DURATION=${DURATION:-3}
    WARMUP=${WARMUP:-1}
else
    DURATION=${DURATION:-15}
    WARMUP=${WARMUP:-5}
fi
REPS=${REPS:-3}
RATE=${RATE:-1000}
SCENARIOS=${SCENARIOS:-"chat32 chat256 sse20 anthropic body64k body1m openloop memory bodyhold"}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
BASE_PORT=${BASE_PORT:-19100}
NONSTREAM_TOKENS=${NONSTREAM_TOKENS:-8}
MEM_PACE_MS=${MEM_PACE_MS:-1000}
MEM_TOKENS=${MEM_TOKENS:-30}
KEY=sk-loadtest
PRISM_BIN=${PRISM_BIN:-$ROOT/target/release/prism}
MOCK_BIN=${MOCK_BIN:-$ROOT/target/release/prism-mock}
BARE_BIN=${BARE_BIN:-$HERE/bare-pingora/target/release/bare-pingora}
ACCESS_LOG=${ACCESS_LOG:-}
OUT=${OUT:-$HERE/results/$(date -u +%Y%m%dT%H%M%SZ)}
RUN=$(mktemp -d /tmp/prism-loadtest.XXXXXX)
# Prism's access log (one JSON line per request on stdout) goes to a real file, emptied before
# each measurement; its line count is recorded next to wrk's request count.
ACCESS_LOG=${ACCESS_LOG:-$RUN/prism-access.log}

MOCK_PORT=$BASE_PORT
NGINX_PORT=$((BASE_PORT + 1))
BARE_PORT=$((BASE_PORT + 2))
PRISM_PORT=$((BASE_PORT + 3))
PRISM_ADMIN_PORT=$((BASE_PORT + 4))
PRISM_METRICS_PORT=$((BASE_PORT + 5))
URL_PATH=/v1/chat/completions

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" | tee -a "$OUT/run.log" >&2; }
die() { log "FATAL: $*"; exit 1; }

mkdir -p "$OUT"
: >"$OUT/run.log"

# ---------------------------------------------------------------- preflight
# The release binaries are rebuilt unless given: a stale target/release/prism would measure
# yesterday's gateway (cargo does nothing when they are current).
if [ "$PRISM_BIN" = "$ROOT/target/release/prism" ]; then
    (cd "$ROOT" && cargo build --release --bins 2>&1 | tail -1) >&2
fi
for b in "$PRISM_BIN" "$MOCK_BIN" "$BARE_BIN"; do
    [ -x "$b" ] || die "missing $b (cargo build --release --bins; and in load-tests/bare-pingora: cargo build --release)"
done
for t in nginx wrk taskset python3 curl; do
    command -v "$t" >/dev/null || die "missing $t (apt-get install -y nginx wrk util-linux python3 curl)"
done
OHA=${OHA:-$(command -v oha || true)}
if [ -z "$OHA" ] && [ -x "$HOME/.cargo/bin/oha" ]; then OHA=$HOME/.cargo/bin/oha; fi
[ -n "$OHA" ] || log "oha not found (cargo install --locked oha): the open-loop scenario is skipped"

# Open files: the hard limit is what this process may reach; memory at N streams needs ~2N fds
# in the proxy (client + upstream side).
HARD_NOFILE=$(ulimit -Hn)
[ "$HARD_NOFILE" = unlimited ] && HARD_NOFILE=1048576
ulimit -n "$HARD_NOFILE" 2>/dev/null || true
NOFILE=$(ulimit -n)
MAX_STREAMS=$(((NOFILE - 1000) / 2)) # nginx starts refusing within ~500 of the limit
if [ -z "${MEM_STREAMS:-}" ]; then
    if [ "$MAX_STREAMS" -ge 10000 ]; then MEM_STREAMS="1000 10000"; else MEM_STREAMS="1000 $MAX_STREAMS"; fi
fi

{
    echo "date: $(date -u +%FT%TZ)"
    echo "command: QUICK=$QUICK DURATION=$DURATION WARMUP=$WARMUP REPS=$REPS SCENARIOS=\"$SCENARIOS\" $0"
    echo "nproc: $(nproc)"
    lscpu | grep -E '^(Model name|CPU\(s\)|Thread|Core|Socket|L2|L3|Hypervisor)'
    free -h | head -2
    echo "kernel: $(uname -r)"
    echo "nginx: $(nginx -v 2>&1)"
    echo "wrk: $(wrk -v 2>&1 | head -1)"
    echo "oha: $([ -n "$OHA" ] && "$OHA" --version 2>&1 | head -1)"
    echo "prism: $("$PRISM_BIN" --version 2>&1 | head -1) ($PRISM_BIN)"
    echo "open files limit: $NOFILE; memory streams: $MEM_STREAMS"
    echo "busy processes at start (fuzzers, builds):"
    pgrep -af 'fuzz/target|cargo|rustc' | grep -v pgrep | cut -c1-120 || echo "  none"
} >"$OUT/machine.txt" 2>&1
log "output: $OUT (scratch $RUN)"

python3 "$HERE/tools/bodies.py" "$RUN/bodies" "$NONSTREAM_TOKENS" || die "cannot write bodies"

# ---------------------------------------------------------------- processes
declare -A PID=()

start_bg() { # NAME CPU CMD... : start pinned, remember the pid
    local name=$1 cpu=$2
    shift 2
    taskset -c "$cpu" "$@" >"$RUN/$name.out" 2>"$RUN/$name.err" &
    PID[$name]=$!
}

stop_one() { # NAME
    local name=$1 p=${PID[$1]:-}
    [ -n "$p" ] || return 0
    kill -TERM "$p" 2>/dev/null
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null
    wait "$p" 2>/dev/null
    unset "PID[$name]"
}

cleanup() {
    for n in "${!PID[@]}"; do stop_one "$n"; done
    # keep the processes' own logs (small) next to the results
    for f in "$RUN"/*.err; do
        [ -s "$f" ] && tail -c 200000 "$f" >"$OUT/log-$(basename "$f")"
    done
    [ -s "$RUN/nginx/error.log" ] && tail -c 200000 "$RUN/nginx/error.log" >"$OUT/log-nginx-error.log"
    rm -rf "$RUN"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_port() { # PORT : up to 10 s
    for _ in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

start_mock() {
    start_bg mock "$LOAD_CPU" "$MOCK_BIN" --listen "127.0.0.1:$MOCK_PORT" --no-split
    wait_port "$MOCK_PORT" || die "mock did not start: $(cat "$RUN/mock.err")"
}

start_nginx() {
    local p=$RUN/nginx
    mkdir -p "$p"
    sed -e "s#@LISTEN@#127.0.0.1:$NGINX_PORT#" -e "s#@UPSTREAM@#127.0.0.1:$MOCK_PORT#" \
        -e "s#@PREFIX@#$p#g" -e "s#@NOFILE@#$NOFILE#" -e "s#@CONNS@#$((NOFILE * 2))#" \
        "$HERE/conf/nginx.conf.tmpl" >"$p/nginx.conf"
    start_bg nginx "$PROXY_CPU" nginx -p "$p" -c "$p/nginx.conf" -e "$p/error.log"
    wait_port "$NGINX_PORT" || die "nginx did not start: $(cat "$RUN/nginx.err" "$p/error.log")"
}

start_bare() {
    start_bg bare "$PROXY_CPU" "$BARE_BIN" --listen "127.0.0.1:$BARE_PORT" --upstream "127.0.0.1:$MOCK_PORT" --threads 1
    wait_port "$BARE_PORT" || die "bare-pingora did not start: $(cat "$RUN/bare.err")"
}

start_prism() {
    local r=$RUN/prism
    rm -rf "$r"
    mkdir -p "$r/data"
    sed -e "s#@MOCK@#127.0.0.1:$MOCK_PORT#g" -e "s#@RUN@#$r#g" "$HERE/conf/prism.toml.tmpl" >"$r/prism.toml"
    PRISM_LISTEN=127.0.0.1:$PRISM_PORT PRISM_ADMIN_LISTEN=127.0.0.1:$PRISM_ADMIN_PORT \
        PRISM_METRICS_LISTEN=127.0.0.1:$PRISM_METRICS_PORT PRISM_DATA_DIR=$r/data \
        PRISM_API_KEYS=$KEY PRISM_LOG=warn \
        taskset -c "$PROXY_CPU" "$PRISM_BIN" serve -c "$r/prism.toml" >>"$ACCESS_LOG" 2>"$RUN/prism.err" &
    PID[prism]=$!
    wait_port "$PRISM_PORT" || die "prism did not start: $(cat "$RUN/prism.err")"
}

DEATHS=0
ensure_up() { # TARGET : restart a proxy that died, after saving how it died
    local name=$1
    case $name in prism*) name=prism ;; direct) name=mock ;; esac
    local p=${PID[$name]:-}
    [ -n "$p" ] && kill -0 "$p" 2>/dev/null && return 0
    wait "$p" 2>/dev/null
    local status=$?
    DEATHS=$((DEATHS + 1))
    log "!! $name (pid $p) is gone, exit status $status (>128: signal $((status - 128))); restarting; stderr kept as died-$DEATHS-$name.err"
    cp "$RUN/$name.err" "$OUT/died-$DEATHS-$name.err" 2>/dev/null
    [ "$name" = nginx ] && cp "$RUN/nginx/error.log" "$OUT/died-$DEATHS-nginx-error.log" 2>/dev/null
    record "{\"scenario\":\"process-died\",\"target\":\"$name\",\"status\":$status,\"when\":\"$(date -u +%T)\"}"
    unset "PID[$name]"
    case $name in
        mock) start_mock ;;
        nginx) start_nginx ;;
        bare) start_bare ;;
        prism) start_prism ;;
    esac
}

port_of() {
    case $1 in
        direct) echo "$MOCK_PORT" ;;
        nginx) echo "$NGINX_PORT" ;;
        bare) echo "$BARE_PORT" ;;
        prism*) echo "$PRISM_PORT" ;;
    esac
}

pid_of() { # the process whose tree is measured (the mock for "direct")
    case $1 in
        direct) echo "${PID[mock]}" ;;
        prism*) echo "${PID[prism]}" ;;
        *) echo "${PID[$1]}" ;;
    esac
}

tree_pids() { echo "$1" $(pgrep -P "$1" 2>/dev/null); }

tree_kb() { # PID FIELD(VmRSS|VmHWM): sum over the process and its children
    local sum=0 v
    for p in $(tree_pids "$1"); do
        v=$(awk -v f="$2:" '$1 == f { print $2 }' "/proc/$p/status" 2>/dev/null)
        sum=$((sum + ${v:-0}))
    done
    echo "$sum"
}

tree_cpu_ticks() { # utime + stime of the process tree (all threads), in clock ticks
    local sum=0 v
    for p in $(tree_pids "$1"); do
        v=$(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$p/stat" 2>/dev/null)
        sum=$((sum + ${v:-0}))
    done
    echo "$sum"
}

reset_hwm() { for p in $(tree_pids "$1"); do echo 5 >"/proc/$p/clear_refs" 2>/dev/null; done; }

TICKS=$(getconf CLK_TCK)

# ---------------------------------------------------------------- measurements
record() { echo "$1" >>"$OUT/results.jsonl"; }

wrk_once() { # TARGET BODY CONNS SECS -> WRKJSON payload on stdout (empty on failure)
    local port body=$2 conns=$3 secs=$4
    port=$(port_of "$1")
    WRK_BODY_FILE=$body WRK_KEY=$KEY timeout $((secs + 30)) taskset -c "$LOAD_CPU" \
        wrk -t1 -c"$conns" -d"${secs}s" --timeout 10s -s "$HERE/tools/post.lua" \
        "http://127.0.0.1:$port$URL_PATH" 2>&1 | tee -a "$OUT/wrk.log" | sed -n 's/^WRKJSON //p'
}

# throughput SCENARIO CONNS "target=bodyfile ..." : warm-up, then REPS rounds over the targets
throughput() {
    local scen=$1 conns=$2 specs=$3 spec t body rep json pid cpu0 cpu1 rss0 hwm
    log "== $scen: $conns connections, ${DURATION}s x $REPS, warm-up ${WARMUP}s"
    declare -A base=()
    for spec in $specs; do
        t=${spec%%=*}
        ensure_up "$t"
        base[$t]=$(tree_kb "$(pid_of "$t")" VmRSS) # resident memory before this scenario's load
    done
    for spec in $specs; do
        t=${spec%%=*} body=$RUN/bodies/${spec#*=}
        ensure_up "$t"
        wrk_once "$t" "$body" "$conns" "$WARMUP" >/dev/null
    done
    for rep in $(seq 1 "$REPS"); do
        for spec in $specs; do
            t=${spec%%=*} body=$RUN/bodies/${spec#*=}
            ensure_up "$t"
            pid=$(pid_of "$t")
            rss0=$(tree_kb "$pid" VmRSS)
            reset_hwm "$pid"
            [ -f "$ACCESS_LOG" ] && : >"$ACCESS_LOG"
            cpu0=$(tree_cpu_ticks "$pid")
            json=$(wrk_once "$t" "$body" "$conns" "$DURATION")
            cpu1=$(tree_cpu_ticks "$pid")
            hwm=$(tree_kb "$pid" VmHWM)
            logged=null
            case $t in prism*) sleep 0.2; [ -f "$ACCESS_LOG" ] && logged=$(wc -l <"$ACCESS_LOG") ;; esac
            if [ -z "$json" ]; then
                log "   $scen $t rep $rep: wrk failed (see wrk.log)"
                json='{"rps":0,"failed":true}'
            fi
            record "{\"scenario\":\"$scen\",\"target\":\"$t\",\"rep\":$rep,\"conns\":$conns,\"cpu_s\":$(awk "BEGIN{print ($cpu1-$cpu0)/$TICKS}"),\"rss_before_kb\":$rss0,\"rss_scenario_start_kb\":${base[$t]},\"hwm_kb\":$hwm,\"access_log_lines\":$logged,\"wrk\":$json}"
            log "   $scen $t rep $rep: $(echo "$json" | python3 "$HERE/tools/lt.py" brief-wrk)"
        done
    done
}

oha_once() { # TARGET SECS -> oha JSON on stdout
    local port
    port=$(port_of "$1")
    timeout $(($2 + 30)) taskset -c "$LOAD_CPU" "$OHA" --no-tui --output-format json -z "${2}s" -q "$RATE" \
        --latency-correction -c 64 -m POST -H "Authorization: Bearer $KEY" -T application/json \
        -D "$RUN/bodies/chat.json" "http://127.0.0.1:$port$URL_PATH" 2>>"$OUT/oha.err"
}

openloop() {
    [ -n "$OHA" ] || { log "== openloop skipped: no oha"; return; }
    local t rep json
    log "== openloop: $RATE rps fixed, ${DURATION}s x $REPS, latency from the intended send time"
    for t in direct nginx bare prism; do
        ensure_up "$t"
        oha_once "$t" "$WARMUP" >/dev/null
    done
    for rep in $(seq 1 "$REPS"); do
        for t in direct nginx bare prism; do
            ensure_up "$t"
            json=$(oha_once "$t" "$DURATION" | python3 "$HERE/tools/lt.py" pick-oha)
            [ -n "$json" ] || json='{"failed":true}'
            record "{\"scenario\":\"openloop\",\"target\":\"$t\",\"rep\":$rep,\"oha\":$json}"
            log "   openloop $t rep $rep: $json"
        done
    done
}

memory_one() { # TARGET N
    local t=$1 n=$2 pid idle peak cur holder_out ready done_line model
    case $t in
        nginx) stop_one nginx; start_nginx ;;
        bare) stop_one bare; start_bare ;;
        prism) stop_one prism; start_prism ;;
    esac
    pid=$(pid_of "$t")
    # a little traffic first, so lazily built state exists in every proxy
    wrk_once "$t" "$RUN/bodies/sse20.json" 4 1 >/dev/null
    sleep 1
    idle=$(tree_kb "$pid" VmRSS)
    model="openai/m@tokens=$MEM_TOKENS,pace=$MEM_PACE_MS"
    holder_out=$RUN/holder.out
    : >"$holder_out"
    taskset -c "$LOAD_CPU" python3 "$HERE/tools/holder.py" --addr "127.0.0.1:$(port_of "$t")" --n "$n" \
        --model "$model" --key "$KEY" --ramp-secs 40 --max-secs $((MEM_TOKENS * MEM_PACE_MS / 1000 + 60)) \
        >"$holder_out" 2>>"$OUT/holder.err" &
    local hpid=$!
    for _ in $(seq 1 450); do grep -q '^READY' "$holder_out" && break; sleep 0.1; done
    ready=$(grep '^READY' "$holder_out")
    # sample the proxy's resident memory while every stream is open
    peak=0
    for _ in $(seq 1 10); do
        cur=$(tree_kb "$pid" VmRSS)
        [ "$cur" -gt "$peak" ] && peak=$cur
        sleep 0.3
    done
    for _ in $(seq 1 $((MEM_TOKENS * MEM_PACE_MS / 100 + 700))); do kill -0 "$hpid" 2>/dev/null || break; sleep 0.1; done
    kill "$hpid" 2>/dev/null
    wait "$hpid" 2>/dev/null
    done_line=$(sed -n 's/^DONE //p' "$holder_out")
    [ -n "$done_line" ] || done_line='{"failed":true}'
    record "{\"scenario\":\"memory\",\"target\":\"$t\",\"streams\":$n,\"idle_kb\":$idle,\"peak_kb\":$peak,\"ready\":\"$ready\",\"holder\":$done_line}"
    log "   memory $t $n streams: idle $((idle / 1024)) MiB, open $((peak / 1024)) MiB; $ready; $done_line"
}

# bodyhold: K requests with a 1 MiB body held inside each proxy at once (the mock delays its
# answer by MEM_BODY_DELAY_MS), on a fresh proxy: resident memory per held request, in bodies.
bodyhold() {
    local k=${BODY_HOLD:-64} t pid idle peak cur hpid out
    log "== bodyhold: $k requests with a 1 MiB body held at once (answer delayed ${MEM_BODY_DELAY_MS:-5000} ms)"
    python3 - "$RUN/bodies/body1m.json" "$RUN/bodies/body1m-delay.json" "${MEM_BODY_DELAY_MS:-5000}" <<'PY'
import json, sys
b = json.load(open(sys.argv[1]))
b["model"] = b["model"].split("@")[0] + "@delay=" + sys.argv[3]
pad = len(json.dumps(b, separators=(",", ":"))) - 1024 * 1024
b["messages"][0]["content"] = b["messages"][0]["content"][: len(b["messages"][0]["content"]) - pad]
out = json.dumps(b, separators=(",", ":"))
assert len(out) == 1024 * 1024
open(sys.argv[2], "w").write(out)
PY
    for t in ${MEM_TARGETS:-nginx bare prism}; do
        case $t in
            nginx) stop_one nginx; start_nginx ;;
            bare) stop_one bare; start_bare ;;
            prism) stop_one prism; start_prism ;;
        esac
        pid=$(pid_of "$t")
        wrk_once "$t" "$RUN/bodies/body64k.json" 4 1 >/dev/null
        sleep 1
        idle=$(tree_kb "$pid" VmRSS)
        out=$RUN/bodyhold.out
        : >"$out"
        taskset -c "$LOAD_CPU" python3 "$HERE/tools/holder.py" --addr "127.0.0.1:$(port_of "$t")" --n "$k" \
            --body-file "$RUN/bodies/body1m-delay.json" --ready-on-send --connect-parallel "$k" --key "$KEY" \
            --ramp-secs 20 --max-secs 40 >"$out" 2>>"$OUT/holder.err" &
        hpid=$!
        for _ in $(seq 1 200); do grep -q '^READY' "$out" && break; sleep 0.1; done
        sleep 0.5
        peak=0
        for _ in $(seq 1 8); do
            cur=$(tree_kb "$pid" VmRSS)
            [ "$cur" -gt "$peak" ] && peak=$cur
            sleep 0.25
        done
        for _ in $(seq 1 450); do kill -0 "$hpid" 2>/dev/null || break; sleep 0.1; done
        kill "$hpid" 2>/dev/null
        wait "$hpid" 2>/dev/null
        local done_line
        done_line=$(sed -n 's/^DONE //p' "$out")
        [ -n "$done_line" ] || done_line='{"failed":true}'
        record "{\"scenario\":\"bodyhold\",\"target\":\"$t\",\"held\":$k,\"idle_kb\":$idle,\"peak_kb\":$peak,\"holder\":$done_line}"
        log "   bodyhold $t: idle $((idle / 1024)) MiB, $k held $((peak / 1024)) MiB: $(((peak - idle) / k)) KiB per request; $done_line"
    done
}

memory() {
    log "== memory: $MEM_STREAMS concurrent streams of ${MEM_TOKENS} events every ${MEM_PACE_MS} ms"
    local t n
    for n in $MEM_STREAMS; do
        for t in ${MEM_TARGETS:-nginx bare prism}; do memory_one "$t" "$n"; done
    done
}

thread_switches() { # PID : "thread-name switches" for every thread of the process tree
    local p t
    for p in $(tree_pids "$1"); do
        for t in /proc/"$p"/task/*; do
            awk -v n="$(cat "$t/comm" 2>/dev/null)" '/^(non)?voluntary_ctxt_switches/ { s += $2 } END { print n, s + 0 }' \
                "$t/status" 2>/dev/null
        done
    done
}

# PROFILE=1: a flat CPU profile (perf, self time by symbol) of each proxy under the chat32 and
# sse20 loads, after the measurements (the sampling would perturb them).
profile() {
    command -v perf >/dev/null || { log "== profile skipped: no perf (apt-get install linux-perf)"; return; }
    local scen conns body t pid
    for scen in chat32 sse20; do
        case $scen in chat32) body=chat.json ;; *) body=sse20.json ;; esac
        for t in nginx bare prism; do
            # a fresh process, warmed up: the memory scenarios leave a fragmented heap behind
            stop_one "$t"
            "start_$t"
            wrk_once "$t" "$RUN/bodies/$body" 32 2 >/dev/null
            pid=$(pid_of "$t")
            log "== profile $scen $t (${DURATION}s)"
            timeout $((DURATION + 30)) perf record -F 1999 -p "$(tree_pids "$pid" | tr ' ' ',')" -o "$RUN/perf.data" \
                -- sleep "$DURATION" >/dev/null 2>&1 &
            local ppid=$!
            sleep 0.5
            thread_switches "$pid" >"$RUN/sw0"
            wrk_once "$t" "$RUN/bodies/$body" 32 "$((DURATION - 1))" >"$RUN/prof.json"
            thread_switches "$pid" >"$RUN/sw1"
            wait "$ppid"
            # context switches per request, by thread name (all threads of the process tree)
            python3 - "$RUN/sw0" "$RUN/sw1" "$RUN/prof.json" >"$OUT/switches-$scen-$t.txt" <<'PY'
import json, sys
from collections import Counter
def load(p):
    c = Counter()
    for line in open(p):
        name, n = line.rsplit(" ", 1)
        c[name] += int(n)
    return c
a, b = load(sys.argv[1]), load(sys.argv[2])
text = open(sys.argv[3]).read().strip()
reqs = json.loads(text)["requests"] if text else 0
print(f"requests: {reqs}")
for name in sorted(b, key=lambda k: -(b[k] - a[k])):
    d = b[name] - a[name]
    if d:
        print(f"{name}: {d} context switches, {d / max(1, reqs):.2f} per request")
PY
            # system calls per request (strace -c; slows the proxy down, so counts only, at 8 connections)
            if command -v strace >/dev/null; then
                # shellcheck disable=SC2046 # one -p per process of the tree (nginx: master and worker)
                timeout 30 strace -c -f $(for p in $(tree_pids "$pid"); do echo "-p $p"; done) \
                    -o "$RUN/strace.out" 2>/dev/null &
                local spid=$!
                sleep 1
                wrk_once "$t" "$RUN/bodies/$body" 8 3 >"$RUN/strace.json"
                sleep 0.5
                kill -INT "$spid" 2>/dev/null
                wait "$spid" 2>/dev/null
                python3 - "$RUN/strace.out" "$RUN/strace.json" >"$OUT/syscalls-$scen-$t.txt" <<'PY'
import json, re, sys
text = open(sys.argv[2]).read().strip()
reqs = json.loads(text)["requests"] if text else 0
rows = []
for line in open(sys.argv[1]):
    m = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(\d+\s+)?(\w+)$", line.rstrip())
    if m and m[3] != "total":
        rows.append((int(m[1]), m[3]))
total = sum(c for c, _ in rows)
print(f"requests: {reqs}; system calls per request: {total / max(1, reqs):.1f}")
for c, name in sorted(rows, reverse=True):
    if c / max(1, reqs) >= 0.01:
        print(f"{name}: {c / max(1, reqs):.2f}")
PY
            fi
            perf report -i "$RUN/perf.data" --stdio --no-children -F overhead,dso,sym --percent-limit 0.3 \
                2>/dev/null | grep -v -e '^#' -e '^$' | sed 's/ *$//' | head -100 >"$OUT/profile-$scen-$t.txt"
        done
    done
}

# ---------------------------------------------------------------- run
start_mock
start_nginx
start_bare
start_prism
log "mock :$MOCK_PORT (cpu $LOAD_CPU), nginx :$NGINX_PORT, bare :$BARE_PORT, prism :$PRISM_PORT (cpu $PROXY_CPU)"

# smoke: every target answers every body with 200 before anything is measured
for t in direct nginx bare prism; do
    for b in chat sse20 body64k body1m; do
        code=$(curl -s -o "$RUN/smoke.out" -w '%{http_code}' --max-time 10 -H "Authorization: Bearer $KEY" \
            -H 'Content-Type: application/json' --data-binary "@$RUN/bodies/$b.json" \
            "http://127.0.0.1:$(port_of "$t")$URL_PATH")
        [ "$code" = 200 ] || die "smoke: $t $b -> HTTP $code: $(head -c 300 "$RUN/smoke.out")"
        [ "$b" = chat ] && [ "$t" = direct ] && log "non-streaming answer: $(wc -c <"$RUN/smoke.out") bytes"
    done
done
code=$(curl -s -o "$RUN/smoke.out" -w '%{http_code}' --max-time 10 -H "Authorization: Bearer $KEY" \
    --data-binary "@$RUN/bodies/anth20.json" "http://127.0.0.1:$PRISM_PORT$URL_PATH")
[ "$code" = 200 ] && grep -q '\[DONE\]' "$RUN/smoke.out" || die "smoke: prism anthropic stream -> HTTP $code"

ALL="direct nginx bare prism"
specs() { local s="" t; for t in $ALL; do s="$s $t=$1"; done; echo "$s"; }

busy_check() { # note other heavy work (fuzzers, builds) seen on the machine during a scenario
    local busy
    busy=$(pgrep -a -f 'fuzz/target|cargo-fuzz|cargo |rustc |cc1' | grep -v -e pgrep -e binary_backend |
        awk '{ print $2 }' | xargs -r -n1 basename | sort | uniq -c | tr -s ' ' | tr '\n' ';')
    if [ -n "$busy" ]; then
        log "   busy machine: $busy"
        record "{\"scenario\":\"busy\",\"during\":\"$1\",\"when\":\"$(date -u +%T)\",\"procs\":\"$busy\"}"
    fi
}

for scen in $SCENARIOS; do
    busy_check "$scen"
    case $scen in
        chat32) throughput chat32 32 "$(specs chat.json)" ;;
        chat256) throughput chat256 256 "$(specs chat.json)" ;;
        sse20) throughput sse20 32 "$(specs sse20.json)" ;;
        anthropic) throughput anthropic 32 "prism=sse20.json prism-anthropic=anth20.json" ;;
        body64k) throughput body64k 32 "$(specs body64k.json)" ;;
        body1m) throughput body1m 32 "$(specs body1m.json)" ;;
        openloop) openloop ;;
        memory) memory ;;
        bodyhold) bodyhold ;;
        *) log "unknown scenario $scen (skipped)" ;;
    esac
done

busy_check end
[ "${PROFILE:-0}" = 1 ] && profile

python3 "$HERE/tools/lt.py" report "$OUT" >"$OUT/summary.md" || die "report failed"
cat "$OUT/summary.md"
log "done: $OUT/summary.md"
