#!/usr/bin/env bash
# Cached throughput of `hashsweep serve` on one Redis against a three-master Redis Cluster, in
# one run (issue 21's target: the cluster >= 60% of the single node, p99 < 20 ms a request).
#
#   flock /tmp/hashsweep-bench.lock benches/gateway_cluster.sh           # N=100 000, 20 s a case
#   QUICK=1 flock /tmp/hashsweep-bench.lock benches/gateway_cluster.sh   # N=20 000, 5 s a case
#
# Everything on 127.0.0.1: one redis-server, three more as a cluster (`--cluster-enabled yes`,
# `redis-cli --cluster create … --cluster-replicas 0`), no persistence; the upstream stand-in
# `mock-api`; two gateways, `--store redis://…` and `--store redis-cluster://…`. N random
# SHA-256 digests in bodies of 1000 are POSTed once through each gateway (the warm-up; every
# answer checked for 1000 entries), then the same wrk command as benches/gateway.sh
# (`wrk -t$THREADS -c$CONNS -d${DURATION}s --latency -s benches/gateway_post.lua`) runs against
# each, alternating ROUNDS times: every request a 1000-hash body already stored. Checked: no
# non-2xx, no socket errors, no cache miss during the runs. Reported: requests/s, hashes/s,
# p50/p99/max per request for each store, the ratio cluster / single (medians over rounds), and
# whether the targets hold. With 2 cores shared by wrk, the gateway and four Redis processes the
# figures are a ratio on one machine, not what a cluster of real machines serves.
#
# Environment: QUICK=1, N (a multiple of 1000), DURATION, CONNS (8), THREADS (2), ROUNDS (1),
# HASHSWEEP / MOCK_API (binaries; default: `cargo build --release`), KEEP=1 (keep the temp dir),
# SERVE_EXTRA (more `serve` flags for both gateways, split on spaces: SERVE_EXTRA=--prevalence).

set -euo pipefail

QUICK=${QUICK:-0}
if [[ $QUICK == 1 ]]; then
    N=${N:-20000} DURATION=${DURATION:-5}
else
    N=${N:-100000} DURATION=${DURATION:-20}
fi
CONNS=${CONNS:-8}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-1}
BATCH=1000
TOKEN="bench-token-$$-0123456789"
UPSTREAM_KEY="upstream-key-$$-123456"
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
((N % BATCH == 0 && N >= BATCH)) || { echo "gateway_cluster.sh: N must be a multiple of $BATCH" >&2; exit 2; }
for t in redis-server redis-cli wrk curl python3; do
    command -v "$t" >/dev/null || { echo "gateway_cluster.sh: needs $t (apt-get install redis-server wrk curl)" >&2; exit 2; }
done

if [[ -z ${HASHSWEEP:-} || -z ${MOCK_API:-} ]]; then
    echo "== cargo build --release" >&2
    (cd "$REPO" && cargo build --release --locked -p hashsweep -p hashsweep-mock --bin hashsweep --bin mock-api >&2)
fi
BIN=${HASHSWEEP:-$REPO/target/release/hashsweep}
MOCK=${MOCK_API:-$REPO/target/release/mock-api}

TMP=$(mktemp -d "${TMPDIR:-/tmp}/hashsweep-gwcluster.XXXXXX")
PIDS=()
cleanup() {
    local rc=$?
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    if [[ ${KEEP:-0} == 1 ]]; then echo "kept $TMP" >&2; else rm -rf "$TMP"; fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_line() { # wait_line FILE SED-EXPR: the first match (up to 20 s)
    for _ in $(seq 400); do
        local got
        got=$(sed -n "$2" "$1" | head -1)
        [[ -n $got ]] && { echo "$got"; return 0; }
        sleep 0.05
    done
    echo "gateway_cluster.sh: nothing like $2 in $1:" >&2
    cat "$1" >&2
    return 1
}
metric() { curl -sf "$1/metrics" | awk -v n="$2" '$1 == n || index($1, n "{") == 1 { s += $NF } END { printf "%d\n", s }'; }
redis() { # redis DIR PORT [ARGS...]
    local dir=$1 port=$2
    shift 2
    mkdir -p "$dir"
    (cd "$dir" && exec redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no "$@" \
        >"$dir/out" 2>&1) &
    PIDS+=($!)
    for _ in $(seq 200); do
        [[ $(redis-cli -p "$port" ping 2>/dev/null) == PONG ]] && return 0
        sleep 0.05
    done
    echo "gateway_cluster.sh: redis on $port did not start" >&2
    return 1
}

echo "== one redis-server, a three-master cluster, mock-api, two gateways in $TMP" >&2
SINGLE=$(free_port)
redis "$TMP/single" "$SINGLE"
SEEDS=()
for i in 0 1 2; do
    p=$(free_port) bus=$(free_port)
    redis "$TMP/node$i" "$p" --cluster-enabled yes --cluster-config-file nodes.conf \
        --cluster-port "$bus" --cluster-node-timeout 5000
    SEEDS+=("127.0.0.1:$p")
done
redis-cli --cluster create "${SEEDS[@]}" --cluster-replicas 0 --cluster-yes >"$TMP/create.out" 2>&1 ||
    { cat "$TMP/create.out" >&2; exit 2; }
for _ in $(seq 200); do
    redis-cli -p "${SEEDS[0]#*:}" cluster info | grep -q cluster_state:ok && break
    sleep 0.1
done
CLUSTER_URL="redis-cluster://$(IFS=,; echo "${SEEDS[*]}")"

METADEFENDER_APIKEY=$UPSTREAM_KEY "$MOCK" --listen 127.0.0.1:0 >"$TMP/mock.out" 2>&1 &
PIDS+=($!)
MOCK_URL=$(wait_line "$TMP/mock.out" 's/^mock MetaDefender API listening on \(http:\/\/127\.0\.0\.1:[0-9]*\).*/\1/p')
echo "bench $TOKEN" >"$TMP/tokens"
declare -A URL ADMIN
for store in single cluster; do
    spec="redis://127.0.0.1:$SINGLE/0"
    [[ $store == cluster ]] && spec=$CLUSTER_URL
    METADEFENDER_APIKEY=$UPSTREAM_KEY "$BIN" serve --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
        --tokens "$TMP/tokens" --store "$spec" --api-url "$MOCK_URL" --log warn ${SERVE_EXTRA:-} \
        >"$TMP/gw-$store.out" 2>"$TMP/gw-$store.err" &
    PIDS+=($!)
    URL[$store]=$(wait_line "$TMP/gw-$store.err" 's/^hashsweep serve: listening on \(http:\/\/127\.0\.0\.1:[0-9]*\).*/\1/p')
    ADMIN[$store]=$(wait_line "$TMP/gw-$store.err" 's/.*; admin on \(http:\/\/127\.0\.0\.1:[0-9]*\).*/\1/p')
done

echo "== $N digests in $((N / BATCH)) bodies; warm-up through each gateway" >&2
python3 - "$TMP/bodies" "$N" "$BATCH" <<'PY'
import json, os, sys
out, n, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
os.makedirs(out)
digests = [os.urandom(32).hex() for _ in range(n)]
for i in range(n // batch):
    with open(os.path.join(out, f"body_{i:03d}.json"), "w") as f:
        json.dump({"hash": digests[i * batch:(i + 1) * batch]}, f, separators=(",", ":"))
PY
for store in single cluster; do
    python3 - "${URL[$store]}" "$TOKEN" "$TMP/bodies" <<'PY'
import concurrent.futures, glob, json, sys, urllib.request
url, token, bodies = sys.argv[1:4]
def post(path):
    body = open(path, "rb").read()
    req = urllib.request.Request(url + "/v4/hash", data=body, method="POST",
                                 headers={"apikey": token, "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        got = json.load(r)
    return r.status == 200 and len(got["data"]) == len(json.loads(body)["hash"])
files = sorted(glob.glob(bodies + "/body_*.json"))
with concurrent.futures.ThreadPoolExecutor(2) as pool:
    bad = sum(1 for ok in pool.map(post, files) if not ok)
if bad:
    sys.exit(f"gateway_cluster.sh: {bad} of {len(files)} warm-up answers were wrong")
PY
done
KEYS=0
for s in "${SEEDS[@]}"; do
    k=$(redis-cli -p "${s#*:}" dbsize)
    echo "   cluster node $s: $k keys" >&2
    KEYS=$((KEYS + k))
done
((KEYS >= N)) || { echo "gateway_cluster.sh: the cluster holds $KEYS keys, fewer than $N" >&2; exit 1; }

PRESSURE="$(awk '/^some/ { print $2, $3 }' /proc/pressure/cpu 2>/dev/null), load $(cut -d' ' -f1-3 /proc/loadavg)"
RESULTS=$TMP/results
FAILED=
for round in $(seq "$ROUNDS"); do
    for store in single cluster; do
        miss0=$(metric "${ADMIN[$store]}" hashsweep_gateway_cache_misses_total)
        out=$TMP/wrk-$store-$round
        GW_BODIES=$TMP/bodies GW_TOKEN=$TOKEN GW_LABEL=$store GW_THREADS=$THREADS \
            wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency -s "$HERE/gateway_post.lua" \
            "${URL[$store]}/v4/hash" >"$out" 2>&1
        miss1=$(metric "${ADMIN[$store]}" hashsweep_gateway_cache_misses_total)
        line=$(grep '^RESULT ' "$out" || true)
        [[ -n $line ]] || { cat "$out" >&2; exit 1; }
        declare -A r=()
        for kv in ${line#RESULT }; do r[${kv%%=*}]=${kv#*=}; done
        errs=$((r[non2xx] + r[connect] + r[read] + r[write] + r[timeout]))
        ((errs == 0)) || { echo "   FAILED: $store: $errs errors or non-2xx" >&2; FAILED=1; }
        ((miss1 == miss0)) || { echo "   FAILED: $store: $((miss1 - miss0)) cache misses" >&2; FAILED=1; }
        echo "$store ${r[rps]} ${r[hashes_per_s]} ${r[p50_ms]} ${r[p99_ms]} ${r[max_ms]}" >>"$RESULTS"
        echo "   $store round $round: ${r[rps]} req/s, p99 ${r[p99_ms]} ms" >&2
    done
done

python3 - "$RESULTS" "$N" "$DURATION" "$CONNS" "$THREADS" "$PRESSURE" <<'PY'
import statistics, sys
path, n, dur, conns, threads, pressure = sys.argv[1:7]
rows = {}
for line in open(path):
    store, *v = line.split()
    rows.setdefault(store, []).append([float(x) for x in v])
med = {s: [statistics.median(c) for c in zip(*r)] for s, r in rows.items()}
print(f"N={n} digests, wrk -t{threads} -c{conns} -d{dur}s, {len(rows['single'])} round(s); "
      f"CPU pressure before the runs (avg10 avg60): {pressure}")
print("| store | requests/s | hashes/s | p50 ms | p99 ms | max ms |")
print("|---|---:|---:|---:|---:|---:|")
for s in ("single", "cluster"):
    rps, hps, p50, p99, mx = med[s]
    name = "one Redis" if s == "single" else "Redis Cluster, 3 masters"
    print(f"| {name} | {rps:.0f} | {hps:.0f} | {p50:.2f} | {p99:.2f} | {mx:.1f} |")
ratio = med["cluster"][0] / med["single"][0]
ok = ratio >= 0.6 and med["cluster"][3] < 20
print(f"cluster / single throughput: {ratio:.2f} (target >= 0.60); cluster p99 "
      f"{med['cluster'][3]:.2f} ms (target < 20): {'met' if ok else 'NOT met'}")
PY
[[ -z $FAILED ]] || exit 1
