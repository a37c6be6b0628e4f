#!/usr/bin/env bash
# Load benchmark of `hashsweep serve` (the lookup gateway) answering cached lookups, with wrk,
# then one cold case: misses asked by several clients at once, through a slow upstream.
#
#   benches/gateway.sh            # N=200 000 digests, 20 s of load per case, M=100 000: ~60 s
#   QUICK=1 benches/gateway.sh    # N=20 000, 5 s per case, M=10 000: ~15 s
#
# Everything listens on 127.0.0.1 only: redis-server on a free port with no persistence, the
# upstream stand-in `mock-api` (crates/mock), `hashsweep serve --store redis://…` in front of
# them, and later the Python baseline on the same Redis. Steps and cases:
#   warm      N distinct random SHA-256 digests (the first is EICAR's, so that one stored value
#             has a data_id and a detection) in bodies of 1000 (body_000.json …), each POSTed once
#             through the gateway; every answer is checked (one entry per hash, in order,
#             upper-case, EICAR infected, the rest unknown). Then /metrics must show N cache
#             misses, 0 hits and about N/1000 upstream requests, and Redis must hold N keys
#             (its used_memory growth / N = bytes per entry).
#   hashsweep wrk -t$THREADS -c$CONNS -d${DURATION}s --latency -s benches/gateway_post.lua against
#             the gateway: every request a 1000-hash body already in Redis. Checked: no non-2xx,
#             no socket errors, and over the run no upstream request and no cache miss (/metrics).
#   prevalence the same wrk command against a second gateway, the same but with --prevalence
#             (same Redis, token and bodies): every request also records its token for its 1000
#             digests, in the same round trip (PREVALENCE=0 skips it). One token: the steady
#             state of a fleet rescanning (the name is already recorded; the TTL is refreshed).
#             Checked as the hashsweep case; reported with the ratio prevalence/hashsweep.
#   python    the same wrk command against benches/py_gateway.py (stdlib http.server +
#             a minimal RESP client, one MGET per request, same Redis, same answer shape).
#             Checked: its answers to two bodies equal the gateway's, no non-2xx, no miss.
#   cold      misses and coalescing under load. A second mock-api with --latency $COLD_LATENCY
#             (default 200ms) and a second gateway (same flags, tokens and Redis, --api-url that
#             mock). M fresh random digests (default N/2, QUICK 10 000), none in Redis, in 4
#             copies of the list, copy k rotated by k x 250 digests and cut into bodies of 1000;
#             client c (of $CONNS) takes copy c % 4 and the clients of one copy split its bodies
#             into contiguous runs: every digest is in the bodies of 4 different clients, and
#             clients 4g..4g+3 post bodies that overlap by 750/500/250 digests at the same time.
#             Driver: benches/gateway_cold.py (python3, one thread and one keep-alive
#             http.client connection per client, all started together, each posts its own
#             bodies once and stops; wrk cannot stop one connection after its last body).
#             It measures the gateway's coalescing, not peak throughput (the driver is Python).
#             Reported: wall time, client hashes/s, p50/p90/p99/max per request, and from the
#             second gateway's /metrics: upstream requests (ideal ceil(M/1000)), upstream
#             hashes (must be M: each digest asked once however many clients ask), coalesced,
#             cache hits and misses. Checked: upstream hashes == M exactly, every answer 200
#             with 1000 entries in order (all unknown), hits + misses == 4M, misses >= M.
# Reported: requests/s, hashes/s (= requests/s x 1000), p50/p90/p99/max per request, the ratio
# hashsweep / python, CPU used by the server, Redis, wrk and everything else (other work on the
# machine, steal) during each run (100% = one core), peak RSS (VmHWM) of the gateway, Redis
# bytes per entry, and the targets: >= 500 000 hashes/s over $CONNS connections and p99 < 20 ms
# per 1000-hash request.
#
# Environment:
#   QUICK=1          N=20 000 and DURATION=5 unless set
#   N=COUNT          distinct digests to warm and cycle through (default 200000; a multiple of 1000)
#   DURATION=SECS    wrk duration per case (default 20)
#   CONNS=N          wrk connections (default 8)
#   THREADS=N        wrk threads (default 2)
#   ROUNDS=N         alternate hashsweep and python runs N times (default 1); medians are compared
#   COLD=0           skip the cold case
#   PREVALENCE=0     skip the --prevalence case
#   COLD_M=COUNT     distinct digests in the cold case (default N/2 rounded down to 1000s)
#   COLD_LATENCY=D   the cold upstream's added latency per request (default 200ms)
#   HASHSWEEP=PATH   use this binary instead of building with `cargo build --release`
#   MOCK_API=PATH    use this mock-api (crates/mock) instead of building it with
#                    `cargo build --release -p hashsweep-mock --bin mock-api`
#   KEEP=1           keep the temp directory (printed) instead of removing it
#   TMPDIR           where the bodies go (~14 MB for N=200 000)
#
# Needs redis-server, redis-cli, wrk (installed with `apt-get install -y redis-server wrk` if
# missing and we are root), curl, python3, /usr/bin/time. CPU pressure (/proc/pressure/cpu) is
# printed before and after: with 2 cores, the load generator, Redis and the gateway all share
# them, and a busy machine makes runs incomparable.

set -euo pipefail

QUICK=${QUICK:-0}
if [[ $QUICK == 1 ]]; then
    N=${N:-20000} DURATION=${DURATION:-5}
else
    N=${N:-200000} DURATION=${DURATION:-20}
fi
CONNS=${CONNS:-8}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-1}
BATCH=1000
COLD=${COLD:-1}
PREVALENCE=${PREVALENCE:-1}
COLD_M=${COLD_M:-$((N / 2 / BATCH * BATCH))}
((COLD_M >= BATCH)) || COLD_M=$BATCH
COLD_LATENCY=${COLD_LATENCY:-200ms}
COLD_COPIES=4
((CONNS >= COLD_COPIES)) || COLD_COPIES=$CONNS
TOKEN="bench-token-$$-0123456789"
UPSTREAM_KEY="upstream-key-$$-123456"
TARGET_HPS=500000
TARGET_P99_MS=20
STARTED=$(date +%s)
cpu_pressure() { awk '/^some/ { print $2, $3 }' /proc/pressure/cpu 2>/dev/null || true; }
PRESSURE_BEFORE="$(cpu_pressure), load $(cut -d' ' -f1-3 /proc/loadavg)"

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)

if ((N % BATCH != 0 || N < BATCH)); then
    echo "gateway.sh: N=$N must be a positive multiple of $BATCH" >&2
    exit 2
fi
if [[ $COLD == 1 ]] && ((COLD_M % BATCH != 0 || COLD_M / BATCH < (CONNS + COLD_COPIES - 1) / COLD_COPIES)); then
    echo "gateway.sh: COLD_M=$COLD_M must be a multiple of $BATCH with at least" \
        "$(((CONNS + COLD_COPIES - 1) / COLD_COPIES)) bodies per copy for CONNS=$CONNS" >&2
    exit 2
fi

if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null || ! command -v wrk >/dev/null; then
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
        echo "== apt-get install -y redis-server wrk" >&2
        apt-get install -y redis-server wrk >&2 ||
            { apt-get update >&2 && apt-get install -y redis-server wrk >&2; }
    fi
fi
# shellcheck source=benches/common.sh
source "$HERE/common.sh"
require_tools gateway.sh "apt-get install redis-server wrk curl time" \
    redis-server redis-cli wrk curl python3 /usr/bin/time
hashsweep_binary gateway.sh
mock_binary gateway.sh

TMP=$(mktemp -d "${TMPDIR:-/tmp}/hashsweep-gateway.XXXXXX")
REDIS_PID= MOCK_PID= GW_PID= PY_PID= MOCK2_PID= GW2_PID= GWP_PID=
stop() { # stop PID: SIGTERM, then wait up to 10 s, then SIGKILL
    local pid=$1
    [[ -n $pid ]] || return 0
    kill "$pid" 2>/dev/null || return 0
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    local rc=$?
    stop "$PY_PID"
    stop "$GWP_PID"
    stop "$GW2_PID"
    stop "$MOCK2_PID"
    stop "$GW_PID"
    stop "$MOCK_PID"
    stop "$REDIS_PID"
    if [[ ${KEEP:-0} == 1 ]]; then
        echo "gateway.sh: kept $TMP" >&2
    else
        rm -rf "$TMP"
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_for FILE SED-EXPR PID WHAT: print the first match of SED-EXPR in FILE (up to 10 s)
wait_for() {
    local file=$1 expr=$2 pid=$3 what=$4 got=
    for _ in $(seq 200); do
        got=$(sed -n "$expr" "$file" | head -1)
        [[ -n $got ]] && { echo "$got"; return 0; }
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    echo "gateway.sh: $what did not start; its output:" >&2
    cat "$TMP"/"$what".* >&2 || true
    return 1
}

# metric URL NAME: the sum of a Prometheus counter over its labels (0 when absent)
metric() {
    curl -sf "$1/metrics" | awk -v n="$2" '$1 == n || index($1, n "{") == 1 { s += $NF } END { printf "%d\n", s }'
}

# cpu_ticks PID: user + system clock ticks used so far
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
# busy_ticks: clock ticks the whole machine spent busy (user nice system irq softirq steal)
busy_ticks() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }
CLK_TCK=$(getconf CLK_TCK)

rcli() { redis-cli -p "$REDIS_PORT" "$@"; }

# ---------------------------------------------------------------------------------------------
echo "== starting redis-server, mock-api and hashsweep serve in $TMP" >&2
REDIS_PORT=$(free_port)
(cd "$TMP" && exec redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --daemonize no >"$TMP/redis.out" 2>"$TMP/redis.err") &
REDIS_PID=$!
for _ in $(seq 200); do
    [[ $(rcli ping 2>/dev/null) == PONG ]] && break
    kill -0 "$REDIS_PID" 2>/dev/null || { cat "$TMP"/redis.* >&2; exit 2; }
    sleep 0.05
done
[[ $(rcli ping 2>/dev/null) == PONG ]] || { echo "gateway.sh: redis did not start" >&2; exit 2; }
REDIS_VERSION=$(rcli info server | tr -d '\r' | sed -n 's/^redis_version://p')

METADEFENDER_APIKEY=$UPSTREAM_KEY "$MOCK" --listen 127.0.0.1:0 \
    >"$TMP/mock.out" 2>"$TMP/mock.err" &
MOCK_PID=$!
MOCK_URL=$(wait_for "$TMP/mock.out" \
    's/^mock MetaDefender API listening on \(http:\/\/127\.0\.0\.1:[0-9]*\).*/\1/p' "$MOCK_PID" mock)

echo "bench $TOKEN" >"$TMP/tokens"
GW_CMD=("$BIN" serve --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --tokens "$TMP/tokens"
    --store "redis://127.0.0.1:$REDIS_PORT/0" --api-url "$MOCK_URL" --log warn)
METADEFENDER_APIKEY=$UPSTREAM_KEY "${GW_CMD[@]}" >"$TMP/gw.out" 2>"$TMP/gw.err" &
GW_PID=$!
GW_URL=$(wait_for "$TMP/gw.err" \
    's/^hashsweep serve: listening on \(http:\/\/127\.0\.0\.1:[0-9]*\).*/\1/p' "$GW_PID" gw)
# /metrics is served on the admin listener only.
GW_ADMIN=$(wait_for "$TMP/gw.err" 's/.*; admin on \(http:\/\/127\.0\.0\.1:[0-9]*\).*/\1/p' "$GW_PID" gw)
GWP_URL= GWP_ADMIN=
if [[ $PREVALENCE == 1 ]]; then
    GWP_CMD=("${GW_CMD[@]}" --prevalence)
    METADEFENDER_APIKEY=$UPSTREAM_KEY "${GWP_CMD[@]}" >"$TMP/gwp.out" 2>"$TMP/gwp.err" &
    GWP_PID=$!
    GWP_URL=$(wait_for "$TMP/gwp.err" \
        's/^hashsweep serve: listening on \(http:\/\/127\.0\.0\.1:[0-9]*\).*/\1/p' "$GWP_PID" gwp)
    GWP_ADMIN=$(wait_for "$TMP/gwp.err" 's/.*; admin on \(http:\/\/127\.0\.0\.1:[0-9]*\).*/\1/p' "$GWP_PID" gwp)
fi
echo "   redis $REDIS_VERSION on 127.0.0.1:$REDIS_PORT (pid $REDIS_PID), mock $MOCK_URL" \
    "(pid $MOCK_PID), gateway $GW_URL (pid $GW_PID)" >&2

# ---------------------------------------------------------------------------------------------
echo "== generating $N digests in $((N / BATCH)) bodies of $BATCH" >&2
BODIES=$TMP/bodies
python3 - "$BODIES" "$N" "$BATCH" <<'PY'
import json, os, sys
out, n, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
os.makedirs(out)
EICAR = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f"
seen = {EICAR}
digests = [EICAR]
while len(digests) < n:
    h = os.urandom(32).hex()
    if h not in seen:
        seen.add(h)
        digests.append(h)
for i in range(n // batch):
    with open(os.path.join(out, f"body_{i:03d}.json"), "w") as f:
        json.dump({"hash": digests[i * batch:(i + 1) * batch]}, f, separators=(",", ":"))
PY
BODY_BYTES=$(du -sb --apparent-size "$BODIES" | cut -f1)
MEM_BEFORE=$(rcli info memory | tr -d '\r' | sed -n 's/^used_memory://p')

echo "== warm: each body POSTed once through the gateway (2 at a time), every answer checked" >&2
WARM_START=$(date +%s.%N)
python3 - "$GW_URL" "$TOKEN" "$BODIES" <<'PY'
import concurrent.futures, glob, json, sys, urllib.request
url, token, bodies = sys.argv[1:4]
EICAR = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f".upper()

def post(path):
    body = open(path, "rb").read()
    asked = json.loads(body)["hash"]
    req = urllib.request.Request(url + "/v4/hash", data=body, method="POST",
                                 headers={"apikey": token, "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        status, got = r.status, json.load(r)
    data = got["data"]
    problems = []
    if status != 200:
        problems.append(f"status {status}")
    if len(data) != len(asked):
        problems.append(f"{len(data)} entries for {len(asked)} hashes")
    for h, e in zip(asked, data):
        if e.get("hash") != h.upper():
            problems.append(f"entry for {e.get('hash')} where {h.upper()} was asked")
            break
        want = 1 if e["hash"] == EICAR else 5
        if e.get("scan_result_i") != want or not isinstance(e.get("total_detected_avs"), int):
            problems.append(f"{h}: {e}")
            break
    return path, problems

files = sorted(glob.glob(bodies + "/body_*.json"))
bad = 0
with concurrent.futures.ThreadPoolExecutor(2) as pool:
    for path, problems in pool.map(post, files):
        if problems:
            bad += 1
            print(f"   WRONG answer to {path}: {'; '.join(problems[:3])}", file=sys.stderr)
if bad:
    sys.exit(f"gateway.sh: {bad} of {len(files)} warm-up answers were wrong")
PY
WARM_S=$(python3 -c "import time; print(f'{time.time() - $WARM_START:.1f}')")
W_MISSES=$(metric "$GW_ADMIN" hashsweep_gateway_cache_misses_total)
W_HITS=$(metric "$GW_ADMIN" hashsweep_gateway_cache_hits_total)
W_UPSTREAM=$(metric "$GW_ADMIN" hashsweep_gateway_upstream_requests_total)
DBSIZE=$(rcli dbsize)
MEM_AFTER=$(rcli info memory | tr -d '\r' | sed -n 's/^used_memory://p')
BYTES_PER_ENTRY=$(((MEM_AFTER - MEM_BEFORE) / N))
echo "   warm-up: ${WARM_S} s; cache misses $W_MISSES, hits $W_HITS, upstream requests $W_UPSTREAM" \
    "(ideal $((N / BATCH))); Redis: $DBSIZE keys, used_memory $MEM_BEFORE -> $MEM_AFTER" \
    "(~$BYTES_PER_ENTRY bytes/entry)" >&2
FAILED=
check() { # check CONDITION MESSAGE
    if ! eval "$1"; then
        echo "   CHECK FAILED: $2" >&2
        FAILED="$FAILED; $2"
    fi
}
check "((W_MISSES == N))" "warm-up cache misses $W_MISSES != N=$N"
check "((W_HITS == 0))" "warm-up cache hits $W_HITS != 0"
check "((W_UPSTREAM >= N / BATCH && W_UPSTREAM <= N / BATCH + N / BATCH / 10 + 2))" \
    "warm-up upstream requests $W_UPSTREAM, not about N/1000=$((N / BATCH))"
check "((DBSIZE == N))" "Redis holds $DBSIZE keys, not N=$N"
SAMPLE_KEY=$(rcli randomkey)
echo "   stored, e.g.: $SAMPLE_KEY = $(rcli get "$SAMPLE_KEY") (ttl $(rcli ttl "$SAMPLE_KEY") s);" \
    "EICAR: $(rcli get "hashsweep:v1:sha256:275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f")" >&2

# ---------------------------------------------------------------------------------------------
echo "== starting benches/py_gateway.py" >&2
python3 "$HERE/py_gateway.py" --listen 127.0.0.1:0 --redis-port "$REDIS_PORT" --tokens "$TMP/tokens" \
    >"$TMP/py.out" 2>"$TMP/py.err" &
PY_PID=$!
PY_URL=$(wait_for "$TMP/py.out" 's/^py_gateway listening on \(http:\/\/127\.0\.0\.1:[0-9]*\).*/\1/p' \
    "$PY_PID" py)
echo "   python gateway $PY_URL (pid $PY_PID)" >&2

# Same answers from both (parsed JSON, in order) for the first body (with EICAR) and the last.
LAST_BODY=$(printf 'body_%03d.json' $((N / BATCH - 1)))
for b in body_000.json "$LAST_BODY"; do
    for side in gw py; do
        url=$GW_URL
        [[ $side == py ]] && url=$PY_URL
        curl -sf -H "apikey: $TOKEN" -H 'Content-Type: application/json' \
            --data-binary "@$BODIES/$b" "$url/v4/hash" >"$TMP/answer.$side.json" ||
            echo '{"curl":"failed"}' >"$TMP/answer.$side.json"
    done
    if python3 -c 'import json, sys; a, b = (json.load(open(p)) for p in sys.argv[1:3]); sys.exit(a != b or len(a.get("data", [])) != 1000)' \
        "$TMP/answer.gw.json" "$TMP/answer.py.json"; then
        echo "   $b: the python gateway's answer equals hashsweep's (1000 entries)" >&2
    else
        check false "$b: the python gateway's answer differs from hashsweep's"
        head -c 600 "$TMP/answer.gw.json" >&2; echo >&2
        head -c 600 "$TMP/answer.py.json" >&2; echo >&2
    fi
done
check "[[ \$(curl -s -o /dev/null -w '%{http_code}' -H 'apikey: wrong-token-0123456789' --data-binary @$BODIES/body_000.json $GW_URL/v4/hash) == 401 ]]" \
    "hashsweep accepted a wrong token"

# ---------------------------------------------------------------------------------------------
RESULTS=$TMP/results.tsv # label, round, requests, rps, hashes/s, p50, p90, p99, max, CPU %s, non2xx
: >"$RESULTS"
WRK_CMD_SHOWN="wrk -t$THREADS -c$CONNS -d${DURATION}s --latency -s benches/gateway_post.lua URL/v4/hash"

# run_wrk LABEL URL ROUND
run_wrk() {
    local label=$1 url=$2 round=$3 out=$TMP/wrk.$1.$3
    local pid=$GW_PID admin=$GW_ADMIN
    [[ $label == python ]] && pid=$PY_PID
    [[ $label == prevalence ]] && pid=$GWP_PID admin=$GWP_ADMIN
    local up0 miss0 hit0 pymiss0
    up0=$(metric "$admin" hashsweep_gateway_upstream_requests_total)
    miss0=$(metric "$admin" hashsweep_gateway_cache_misses_total)
    hit0=$(metric "$admin" hashsweep_gateway_cache_hits_total)
    pymiss0=$(metric "$PY_URL" pygw_cache_misses_total)
    local t_srv0 t_redis0 t_all0 t0 t1
    t_srv0=$(cpu_ticks "$pid")
    t_redis0=$(cpu_ticks "$REDIS_PID")
    t_all0=$(busy_ticks)
    echo "== $label (round $round): $WRK_CMD_SHOWN" >&2
    t0=$(date +%s.%N)
    GW_BODIES=$BODIES GW_TOKEN=$TOKEN GW_HASHES=$BATCH GW_LABEL=$label GW_THREADS=$THREADS \
        /usr/bin/time -f 'WRKCPU %U %S' -o "$out.time" \
        wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency -s "$HERE/gateway_post.lua" \
        "$url/v4/hash" >"$out" 2>&1 || { cat "$out" >&2; check false "wrk failed against $label"; return 0; }
    t1=$(date +%s.%N)
    local t_srv1 t_redis1 t_all1
    t_srv1=$(cpu_ticks "$pid")
    t_redis1=$(cpu_ticks "$REDIS_PID")
    t_all1=$(busy_ticks)
    sed -n '/^Running/,$p' "$out" | grep -v '^RESULT' | sed 's/^/   /' >&2
    local result
    result=$(grep '^RESULT ' "$out" | head -1)
    [[ -n $result ]] || { check false "no RESULT line from wrk against $label"; return 0; }
    local -A r=()
    # shellcheck disable=SC2086 # word splitting of key=value pairs is intended
    for kv in ${result#RESULT }; do r[${kv%%=*}]=${kv#*=}; done
    local up1 miss1 hit1 pymiss1
    up1=$(metric "$admin" hashsweep_gateway_upstream_requests_total)
    miss1=$(metric "$admin" hashsweep_gateway_cache_misses_total)
    hit1=$(metric "$admin" hashsweep_gateway_cache_hits_total)
    pymiss1=$(metric "$PY_URL" pygw_cache_misses_total)
    local wall cpu_srv cpu_redis cpu_wrk cpu_other
    wall=$(python3 -c "print($t1 - $t0)")
    cpu_srv=$(python3 -c "print(f'{($t_srv1 - $t_srv0) / $CLK_TCK / $wall * 100:.0f}')")
    cpu_redis=$(python3 -c "print(f'{($t_redis1 - $t_redis0) / $CLK_TCK / $wall * 100:.0f}')")
    cpu_wrk=$(awk -v w="$wall" '/^WRKCPU/ { printf "%.0f", ($2 + $3) / w * 100 }' "$out.time")
    # everything else the machine did meanwhile (other work, steal): the noise
    cpu_other=$(python3 -c "print(f'{max(0, ($t_all1 - $t_all0) / $CLK_TCK / $wall * 100 - $cpu_srv - $cpu_redis - ${cpu_wrk:-0}):.0f}')")
    echo "   CPU over the run (100% = one core, $(nproc) cores): $label server ${cpu_srv}%," \
        "redis ${cpu_redis}%, wrk ${cpu_wrk}%, everything else ${cpu_other}%" >&2
    check "((r[non2xx] == 0))" "$label round $round: ${r[non2xx]} non-2xx answers"
    check "((r[connect] + r[read] + r[write] + r[timeout] == 0))" \
        "$label round $round: socket errors (connect ${r[connect]}, read ${r[read]}, write ${r[write]}, timeout ${r[timeout]})"
    check "((r[requests] > 0))" "$label round $round: no request completed"
    if [[ $label != python ]]; then
        local hits=$((hit1 - hit0))
        echo "   /metrics over the run: upstream requests +$((up1 - up0)), cache misses" \
            "+$((miss1 - miss0)), cache hits +$hits (wrk counted ${r[requests]} x $BATCH =" \
            "$((r[requests] * BATCH)); requests cut off at the end are answered but not counted)" >&2
        check "((up1 == up0))" "$label round $round: upstream requests grew by $((up1 - up0))"
        check "((miss1 == miss0))" "$label round $round: cache misses grew by $((miss1 - miss0))"
        check "((hits >= r[requests] * BATCH && hits <= (r[requests] + CONNS) * BATCH))" \
            "$label round $round: $hits cache hits for ${r[requests]} requests"
    else
        check "((pymiss1 == pymiss0))" "python round $round: $((pymiss1 - pymiss0)) digests not found in Redis"
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$label" "$round" "${r[requests]}" \
        "${r[rps]}" "${r[hashes_per_s]}" "${r[p50_ms]}" "${r[p90_ms]}" "${r[p99_ms]}" \
        "${r[max_ms]}" "$cpu_srv/$cpu_redis/$cpu_wrk/$cpu_other" "${r[non2xx]}" >>"$RESULTS"
}

for round in $(seq "$ROUNDS"); do
    run_wrk hashsweep "$GW_URL" "$round"
    [[ $PREVALENCE == 1 ]] && run_wrk prevalence "$GWP_URL" "$round"
    run_wrk python "$PY_URL" "$round"
done
if [[ $PREVALENCE == 1 ]]; then
    # Every digest of the bodies was recorded for the one token, with the TTL.
    PREV_CHECK=$(curl -s -X POST --data-binary @"$BODIES/body_000.json" "$GWP_ADMIN/v1/prevalence" |
        python3 -c 'import json,sys; v=json.load(sys.stdin); print(sum(1 for p in v if p["hosts"] == 1 and p["names"] == ["bench"]), len(v))')
    check "[[ '$PREV_CHECK' == '$BATCH $BATCH' ]]" "prevalence: $PREV_CHECK of body_000 recorded for the one host"
    PREV_KEYS=$(rcli --scan --pattern 'hashsweep:v1:hosts:*' | wc -l)
    echo "   prevalence: $PREV_KEYS names keys in Redis after the run (N=$N digests)" >&2
    check "kill -0 $GWP_PID 2>/dev/null" "the --prevalence gateway is no longer running"
fi

GW_HWM=$(awk '/^VmHWM/ { print $2 }' "/proc/$GW_PID/status")
PY_HWM=$(awk '/^VmHWM/ { print $2 }' "/proc/$PY_PID/status")
REDIS_HWM=$(awk '/^VmHWM/ { print $2 }' "/proc/$REDIS_PID/status")
MEM_FINAL=$(rcli info memory | tr -d '\r' | sed -n 's/^used_memory_human://p')
check "kill -0 $GW_PID 2>/dev/null" "the gateway is no longer running"
grep -iE 'error|panic' "$TMP/gw.err" | head -5 | sed 's/^/   gateway stderr: /' >&2 || true

# ---------------------------------------------------------------------------------------------
# cold: M fresh digests, each in the bodies of 4 clients, through a second gateway whose
# upstream answers after $COLD_LATENCY. Key=value results in $COLD_RESULT for the summary.
COLD_RESULT=$TMP/cold.result
: >"$COLD_RESULT"
COLD_DRIVER_SHOWN="python3 benches/gateway_cold.py --url URL --token TOKEN --digests FILE --clients $CONNS --copies $COLD_COPIES --batch $BATCH"
if [[ $COLD == 1 ]]; then
    echo "== cold: second mock-api (--latency $COLD_LATENCY) and second gateway on the same Redis" >&2
    METADEFENDER_APIKEY=$UPSTREAM_KEY "$MOCK" --listen 127.0.0.1:0 --latency "$COLD_LATENCY" \
        >"$TMP/mock2.out" 2>"$TMP/mock2.err" &
    MOCK2_PID=$!
    MOCK2_URL=$(wait_for "$TMP/mock2.out" \
        's/^mock MetaDefender API listening on \(http:\/\/127\.0\.0\.1:[0-9]*\).*/\1/p' "$MOCK2_PID" mock2)
    GW2_CMD=("$BIN" serve --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --tokens "$TMP/tokens"
        --store "redis://127.0.0.1:$REDIS_PORT/0" --api-url "$MOCK2_URL" --log warn)
    METADEFENDER_APIKEY=$UPSTREAM_KEY "${GW2_CMD[@]}" >"$TMP/gw2.out" 2>"$TMP/gw2.err" &
    GW2_PID=$!
    GW2_URL=$(wait_for "$TMP/gw2.err" \
        's/^hashsweep serve: listening on \(http:\/\/127\.0\.0\.1:[0-9]*\).*/\1/p' "$GW2_PID" gw2)
    GW2_ADMIN=$(wait_for "$TMP/gw2.err" \
        's/.*; admin on \(http:\/\/127\.0\.0\.1:[0-9]*\).*/\1/p' "$GW2_PID" gw2)
    echo "   mock $MOCK2_URL (pid $MOCK2_PID), gateway $GW2_URL (pid $GW2_PID)" >&2
    python3 -c '
import os, sys
n, path = int(sys.argv[1]), sys.argv[2]
seen = set()
while len(seen) < n:
    seen.add(os.urandom(32).hex())
open(path, "w").write("\n".join(seen) + "\n")' "$COLD_M" "$TMP/cold_digests.txt"
    COLD_KEYS0=$(rcli dbsize)

    declare -A c0=() c1=()
    cold_metrics() { # cold_metrics ARRAY-NAME: the second gateway's counters
        local -n into=$1
        into[up]=$(metric "$GW2_ADMIN" hashsweep_gateway_upstream_requests_total)
        into[uph]=$(metric "$GW2_ADMIN" hashsweep_gateway_upstream_hashes_total)
        into[coal]=$(metric "$GW2_ADMIN" hashsweep_gateway_coalesced_total)
        into[hit]=$(metric "$GW2_ADMIN" hashsweep_gateway_cache_hits_total)
        into[miss]=$(metric "$GW2_ADMIN" hashsweep_gateway_cache_misses_total)
        into[uperr]=$(metric "$GW2_ADMIN" hashsweep_gateway_upstream_errors_total)
    }
    cold_metrics c0
    t_srv0=$(cpu_ticks "$GW2_PID")
    t_redis0=$(cpu_ticks "$REDIS_PID")
    t_all0=$(busy_ticks)
    echo "== cold: $CONNS clients, $COLD_M fresh digests x $COLD_COPIES copies, bodies of $BATCH posted once:" \
        "$COLD_DRIVER_SHOWN" >&2
    t0=$(date +%s.%N)
    /usr/bin/time -f 'WRKCPU %U %S' -o "$TMP/cold.time" \
        python3 "$HERE/gateway_cold.py" --url "$GW2_URL" --token "$TOKEN" \
        --digests "$TMP/cold_digests.txt" --clients "$CONNS" --copies "$COLD_COPIES" \
        --batch "$BATCH" >"$TMP/cold.out" || check false "the cold driver failed"
    t1=$(date +%s.%N)
    t_srv1=$(cpu_ticks "$GW2_PID")
    t_redis1=$(cpu_ticks "$REDIS_PID")
    t_all1=$(busy_ticks)
    cold_metrics c1
    COLD_KEYS1=$(rcli dbsize)
    result=$(grep '^RESULT ' "$TMP/cold.out" | head -1 || true)
    declare -A cr=()
    # shellcheck disable=SC2086 # word splitting of key=value pairs is intended
    for kv in ${result#RESULT }; do cr[${kv%%=*}]=${kv#*=}; done
    if [[ -z $result ]]; then
        check false "no RESULT line from the cold driver"
    else
        wall=$(python3 -c "print($t1 - $t0)")
        cpu_srv=$(python3 -c "print(f'{($t_srv1 - $t_srv0) / $CLK_TCK / $wall * 100:.0f}')")
        cpu_redis=$(python3 -c "print(f'{($t_redis1 - $t_redis0) / $CLK_TCK / $wall * 100:.0f}')")
        cpu_drv=$(awk -v w="$wall" '/^WRKCPU/ { printf "%.0f", ($2 + $3) / w * 100 }' "$TMP/cold.time")
        cpu_other=$(python3 -c "print(f'{max(0, ($t_all1 - $t_all0) / $CLK_TCK / $wall * 100 - $cpu_srv - $cpu_redis - ${cpu_drv:-0}):.0f}')")
        d_up=$((c1[up] - c0[up])) d_uph=$((c1[uph] - c0[uph])) d_coal=$((c1[coal] - c0[coal]))
        d_hit=$((c1[hit] - c0[hit])) d_miss=$((c1[miss] - c0[miss])) d_uperr=$((c1[uperr] - c0[uperr]))
        ideal_up=$(((COLD_M + BATCH - 1) / BATCH))
        asked=$((COLD_COPIES * COLD_M))
        echo "   CPU over the run (100% = one core, $(nproc) cores): gateway ${cpu_srv}%," \
            "redis ${cpu_redis}%, driver ${cpu_drv}%, everything else ${cpu_other}%" >&2
        echo "   /metrics of the second gateway over the run: upstream requests +$d_up (ideal" \
            "$ideal_up), upstream hashes +$d_uph (must be M=$COLD_M), coalesced +$d_coal" \
            "(misses - coalesced = $((d_miss - d_coal)) claimed in Redis)," \
            "cache hits +$d_hit, misses +$d_miss (hits + misses must be $asked), upstream" \
            "errors +$d_uperr; Redis keys $COLD_KEYS0 -> $COLD_KEYS1 (+$((COLD_KEYS1 - COLD_KEYS0)))" >&2
        check "((d_uph == COLD_M))" \
            "cold: upstream hashes $d_uph != M=$COLD_M (some digests were asked upstream more than once, or not at all)"
        check "((cr[requests] == asked / BATCH))" "cold: ${cr[requests]} requests, not $((asked / BATCH))"
        check "((cr[non2xx] == 0 && cr[errors] == 0))" \
            "cold: ${cr[non2xx]} non-2xx answers, ${cr[errors]} requests without an answer"
        check "((cr[bad_answers] == 0))" \
            "cold: ${cr[bad_answers]} wrong answers (${cr[short_answers]} without 1000 entries)"
        check "((d_hit + d_miss == asked))" "cold: cache hits $d_hit + misses $d_miss != $asked"
        check "((d_miss >= COLD_M))" "cold: only $d_miss cache misses for $COLD_M fresh digests"
        check "((d_uperr == 0))" "cold: $d_uperr upstream errors"
        check "kill -0 $GW2_PID 2>/dev/null" "the second gateway is no longer running"
        if ((COLD_KEYS1 - COLD_KEYS0 != COLD_M)); then
            echo "   NOTE: Redis grew by $((COLD_KEYS1 - COLD_KEYS0)) keys, not M=$COLD_M (claims left?)" >&2
        fi
        {
            echo "${result#RESULT }"
            echo "cpu=$cpu_srv/$cpu_redis/$cpu_drv/$cpu_other up=$d_up ideal_up=$ideal_up uph=$d_uph"
            echo "coal=$d_coal hit=$d_hit miss=$d_miss keys=$((COLD_KEYS1 - COLD_KEYS0)) latency=$COLD_LATENCY"
        } | tr ' ' '\n' >"$COLD_RESULT"
    fi
    grep -iE 'error|panic' "$TMP/gw2.err" | head -5 | sed 's/^/   second gateway stderr: /' >&2 || true
fi

# ---------------------------------------------------------------------------------------------
PRESSURE_AFTER="$(cpu_pressure), load $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$RESULTS" "$N" "$BATCH" "$CONNS" "$THREADS" "$DURATION" "$TARGET_HPS" "$TARGET_P99_MS" \
    "$GW_HWM" "$PY_HWM" "$REDIS_HWM" "$BYTES_PER_ENTRY" "$MEM_BEFORE" "$MEM_AFTER" "$MEM_FINAL" \
    "$W_UPSTREAM" "$WARM_S" "$BODY_BYTES" "$PRESSURE_BEFORE" "$PRESSURE_AFTER" "$(nproc)" \
    "$REDIS_VERSION" "$COLD_RESULT" <<'PY'
import statistics, sys
(path, n, batch, conns, threads, duration, target_hps, target_p99, gw_hwm, py_hwm, redis_hwm,
 bpe, mem0, mem1, mem_final, w_up, warm_s, body_bytes, p_before, p_after, cores,
 redis_version, cold_path) = sys.argv[1:24]
n, batch, conns = int(n), int(batch), int(conns)
cold = dict(line.strip().split("=", 1) for line in open(cold_path) if "=" in line)
rows = [line.rstrip("\n").split("\t") for line in open(path)]
by = {}
for label, rnd, reqs, rps, hps, p50, p90, p99, mx, cpu, non2xx in rows:
    by.setdefault(label, []).append(dict(round=int(rnd), reqs=int(reqs), rps=float(rps),
        hps=float(hps), p50=float(p50), p90=float(p90), p99=float(p99), max=float(mx), cpu=cpu,
        non2xx=int(non2xx)))
med = {k: {f: statistics.median(r[f] for r in v) for f in ("rps", "hps", "p50", "p90", "p99", "max")}
       for k, v in by.items()}
ratio = (med["hashsweep"]["hps"] / med["python"]["hps"]
         if "hashsweep" in med and "python" in med and med["python"]["hps"] else float("nan"))
prev_ratio = (med["prevalence"]["hps"] / med["hashsweep"]["hps"]
              if "prevalence" in med and "hashsweep" in med and med["hashsweep"]["hps"] else None)

print()
print(f"## hashsweep serve vs a plain Python gateway: cached lookups, {batch} SHA-256 per request"
      f"{'; and cold lookups' if cold else ''}")
print()
print(f"wrk -t{threads} -c{conns} -d{duration}s --latency, bodies cycled over N={n:,} digests "
      f"all in Redis {redis_version}; {cores} cores shared by wrk, Redis and the gateway.")
if cold:
    print(f"cold: {cold['clients']} clients of benches/gateway_cold.py (python3, one thread and "
          f"keep-alive connection each) post {cold['requests']} bodies once: "
          f"{int(cold['distinct']):,} fresh digests x {cold['copies']}, through a second gateway "
          f"whose upstream (mock-api) adds {cold['latency']}; CPU column: server/redis/driver/other.")
print()
print("| case | round | req/s | hashes/s | p50 (ms) | p90 (ms) | p99 (ms) | max (ms) | non-2xx | CPU % server/redis/wrk/other | ratio hashsweep/python |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for label in ("hashsweep", "prevalence", "python"):
    for r in by.get(label, []):
        rr = f"{ratio:.2f}" if label == "hashsweep" and len(by[label]) == 1 else ""
        print(f"| {label} | {r['round']} | {r['rps']:,.1f} | {r['hps']:,.0f} | {r['p50']:.2f} | "
              f"{r['p90']:.2f} | {r['p99']:.2f} | {r['max']:.2f} | {r['non2xx']} | {r['cpu']} | {rr} |")
if cold:
    print(f"| cold | 1 | {float(cold['rps']):,.1f} | {float(cold['hashes_per_s']):,.0f} | "
          f"{float(cold['p50_ms']):.2f} | {float(cold['p90_ms']):.2f} | {float(cold['p99_ms']):.2f} | "
          f"{float(cold['max_ms']):.2f} | {cold['non2xx']} | {cold['cpu']} |  |")
if any(len(v) > 1 for v in by.values()):
    for label, m in med.items():
        rr = f"{ratio:.2f}" if label == "hashsweep" else ""
        print(f"| {label} | median | {m['rps']:,.1f} | {m['hps']:,.0f} | {m['p50']:.2f} | "
              f"{m['p90']:.2f} | {m['p99']:.2f} | {m['max']:.2f} | | | {rr} |")
print()
if "hashsweep" in med:
    h = med["hashsweep"]
    ok_hps = h["hps"] >= int(target_hps)
    ok_p99 = h["p99"] < float(target_p99)
    print(f"Targets: >= {int(target_hps):,} hashes/s over {conns} connections: "
          f"{'MET' if ok_hps else 'NOT MET'} ({h['hps']:,.0f}); p99 < {target_p99} ms per "
          f"{batch}-hash request: {'MET' if ok_p99 else 'NOT MET'} ({h['p99']:.2f} ms).")
print(f"Ratio hashsweep/python (hashes/s{', medians' if any(len(v) > 1 for v in by.values()) else ''}): "
      f"{ratio:.2f}.")
if prev_ratio is not None:
    p = med["prevalence"]
    print(f"Ratio prevalence/hashsweep (hashes/s): {prev_ratio:.2f} (the cost of serve --prevalence: "
          f"{p['hps']:,.0f} vs {med['hashsweep']['hps']:,.0f} hashes/s; p99 {p['p99']:.2f} vs "
          f"{med['hashsweep']['p99']:.2f} ms).")
print(f"Peak RSS (VmHWM): gateway {int(gw_hwm) / 1024:.1f} MiB, python gateway "
      f"{int(py_hwm) / 1024:.1f} MiB, redis-server {int(redis_hwm) / 1024:.1f} MiB.")
print(f"Redis used_memory for {n:,} entries: {int(mem0):,} -> {int(mem1):,} bytes, "
      f"{(int(mem1) - int(mem0)) / n:.0f} bytes per entry (key + value + expiry); {mem_final} at the end.")
print(f"Warm-up: {n // batch} requests of {batch} misses in {warm_s} s, {w_up} upstream requests "
      f"(ideal {n // batch}); request bodies {int(body_bytes) / 1e6:.1f} MB.")
if cold:
    m = int(cold["distinct"])
    ok = int(cold["uph"]) == m
    print(f"Cold (misses and coalescing): {m:,} distinct digests asked {int(cold['hashes']):,} times "
          f"({cold['requests']} requests) in {float(cold['wall_s']):.2f} s: "
          f"{float(cold['hashes_per_s']):,.0f} client hashes/s, p50 {float(cold['p50_ms']):.1f} ms, "
          f"p99 {float(cold['p99_ms']):.1f} ms per request; upstream {cold['up']} requests "
          f"(ideal {cold['ideal_up']}) and {int(cold['uph']):,} hashes (ideal {m:,}: "
          f"{'OK, each digest asked once' if ok else 'WRONG'}); coalesced {int(cold['coal']):,}, "
          f"cache hits {int(cold['hit']):,}, misses {int(cold['miss']):,}; "
          f"{cold['bad_answers']} wrong answers, {cold['non2xx']} non-2xx; Redis +{int(cold['keys']):,} keys.")
print(f"CPU pressure (some avg10 avg60) before: {p_before}; after: {p_after}.")
PY
echo
echo "Command lines:"
echo "  $WRK_CMD_SHOWN   (URL = the gateway, then the python one;" \
    "env GW_BODIES GW_TOKEN GW_HASHES GW_LABEL GW_THREADS)"
echo "  METADEFENDER_APIKEY=... ${GW_CMD[*]/#$TMP/\$TMP}"
echo "  python3 benches/py_gateway.py --listen 127.0.0.1:0 --redis-port $REDIS_PORT --tokens \$TMP/tokens"
if [[ $COLD == 1 ]]; then
    echo "  METADEFENDER_APIKEY=... $MOCK --listen 127.0.0.1:0 --latency $COLD_LATENCY   (cold upstream)"
    echo "  METADEFENDER_APIKEY=... ${GW2_CMD[*]/#$TMP/\$TMP}   (cold gateway)"
    echo "  $COLD_DRIVER_SHOWN   (URL = the cold gateway)"
fi
echo "(total $(($(date +%s) - STARTED)) s)"
if [[ -n $FAILED ]]; then
    echo "gateway.sh: CHECKS FAILED${FAILED}" >&2
    exit 1
fi
