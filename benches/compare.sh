#!/usr/bin/env bash
# Whole-process comparison of hashsweep with common hashing tools, using hyperfine.
#
#   benches/compare.sh            # full run: ~3.5 min on a quiet 2-core machine, ~9 min busy
#   QUICK=1 benches/compare.sh    # smaller trees and fewer runs, under a minute
#
# Cases (all on a warm page cache, nothing leaves 127.0.0.1):
#   big     4 x 512 MiB files: hashsweep vs rhash, xargs sha256sum, hashdeep, against the
#           hardware limit (openssl speed sha256, one core, times the cores used)
#   multi   the same files with --md5 --sha1 in one read vs the sum of single-algorithm passes
#   small   100 000 files of 0-16 KiB in 300 directories: files/s against xargs -P2 sha256sum
#   lookup  50 000 distinct small files (half of the small tree) against `mock-api` (crates/mock)
#           with 300 ms latency: offline scan, scan with lookups (50 requests, concurrency 4)
#           and lookup-only; ratio wall(with lookups) / max(hash time, lookup time)
#   cache   (binaries with the digest cache) the small tree with a fresh cache file (every
#           digest written) and again with that cache warm (nothing read), against the same
#           scan with --no-cache. Every other case runs with HASHSWEEP_NO_CACHE=1, so repeated
#           runs really hash, lookups are really sent, and ~/.cache is never touched.
#   rss     peak RSS (/usr/bin/time -v) of scan --offline on 50 000 and 100 000 files, and the
#           bytes per file this implies
#
# Environment:
#   QUICK=1          4 x 64 MiB, 20 000 small files (10 000 for lookups), 2 runs
#   RUNS=N WARMUP=N  hyperfine runs per command (default 3 and 1)
#   HASHSWEEP=PATH   use this binary instead of building with `cargo build --release`
#   VERSUS=PATH      a second hashsweep binary (e.g. the static musl build) timed beside the
#                    first in the same hyperfine runs of the big, small and lookup cases; a
#                    closing table gives each of its times as a ratio to the first binary's
#   MOCK_API=PATH    use this mock-api (crates/mock) instead of building it with
#                    `cargo build --release -p hashsweep-mock --bin mock-api`
#   KEEP=1           keep the temp directory (printed) instead of removing it
#   BUDGET=SECONDS   skip the remaining cases once this much time has passed (default 540)
#   TMPDIR           where the trees are made (needs ~3 GiB, ~0.6 GiB with QUICK=1)
#
# The big-file cases run without a hyperfine warm-up (the page cache is warmed beforehand);
# the others use WARMUP. CPU pressure (/proc/pressure/cpu) is printed before and after: results
# taken while other work competes for the 2 cores are not comparable between runs.
#
# Note: reports go to stdout redirected to /dev/null, never `-o /dev/null`: up to bb370ac, `-o`
# wrote a temp file beside the target and renamed it over it, which as root replaced /dev/null
# itself with a regular file (later versions write to non-regular targets directly).
# Needs: hyperfine, rhash, hashdeep (apt-get install hyperfine rhash hashdeep), coreutils,
# python3, openssl, /usr/bin/time.

set -euo pipefail

QUICK=${QUICK:-0}
if [[ $QUICK == 1 ]]; then
    BIG_COUNT=4 BIG_MIB=64 SMALL_FILES=20000 SMALL_DIRS=60
    RUNS=${RUNS:-2} WARMUP=${WARMUP:-1}
else
    BIG_COUNT=4 BIG_MIB=512 SMALL_FILES=100000 SMALL_DIRS=300
    RUNS=${RUNS:-3} WARMUP=${WARMUP:-1}
fi
LATENCY_MS=300
CONCURRENCY=4
BATCH=1000
CORES=$(nproc)
APIKEY="bench-key-$$"
BUDGET=${BUDGET:-540}
export HASHSWEEP_NO_CACHE=1
STARTED=$(date +%s)
cpu_pressure() { awk '/^some/ { print $2, $3 }' /proc/pressure/cpu 2>/dev/null || true; }
PRESSURE_BEFORE="$(cpu_pressure), load $(cut -d' ' -f1-3 /proc/loadavg)"

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)

# shellcheck source=benches/common.sh
source "$HERE/common.sh"
require_tools compare.sh "apt-get install hyperfine rhash hashdeep time" \
    hyperfine rhash hashdeep python3 openssl sha256sum /usr/bin/time
hashsweep_binary compare.sh
mock_binary compare.sh

TMP=$(mktemp -d "${TMPDIR:-/tmp}/hashsweep-compare.XXXXXX")
MOCK_PID=
cleanup() {
    local rc=$?
    if [[ -n $MOCK_PID ]]; then
        kill "$MOCK_PID" 2>/dev/null || true
        wait "$MOCK_PID" 2>/dev/null || true
    fi
    if [[ ${KEEP:-0} == 1 ]]; then
        echo "compare.sh: kept $TMP" >&2
    else
        rm -rf "$TMP"
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

BIG=$TMP/big
SMALL=$TMP/small
LOOKUP_TREE=$SMALL/b # the second half of the small tree: SMALL_FILES/2 distinct files
RESULTS=$TMP/results.tsv # case, label, mean, stddev, bytes, files
: >"$RESULTS"
SKIPPED=

# ---------------------------------------------------------------------------------------------
echo "== generating trees in $TMP" >&2
python3 - "$BIG" "$BIG_COUNT" "$BIG_MIB" "$SMALL" "$SMALL_FILES" "$SMALL_DIRS" <<'PY'
import os, random, sys
big, big_count, big_mib, small, nfiles, ndirs = sys.argv[1:7]
big_count, big_mib, nfiles, ndirs = int(big_count), int(big_mib), int(nfiles), int(ndirs)
os.makedirs(big)
for i in range(big_count):
    block = os.urandom(1 << 20)  # a different random 1 MiB block per file, repeated
    with open(os.path.join(big, f"big{i}.bin"), "wb") as f:
        for _ in range(big_mib):
            f.write(block)
# Two halves, a/ and b/, each of nfiles/2 files in ndirs/2 directories; b/ is the lookup tree.
rnd = random.Random(7)
pool = os.urandom(16384)
half = nfiles // 2
made = set()
for i in range(nfiles):
    part = "a" if i < half else "b"
    d = os.path.join(small, part, f"d{(i % (ndirs // 2)):04d}")
    if d not in made:
        os.makedirs(d, exist_ok=True)
        made.add(d)
    size = rnd.randint(0, 16384)
    # an 8-byte serial number first: files of 8 bytes or more are all distinct
    data = (i.to_bytes(8, "little") + pool[8:])[:size]
    with open(os.path.join(d, f"f{i:06d}"), "wb") as f:
        f.write(data)
PY
sync # let writeback finish before timing anything
BIG_BYTES=$(du -sb --apparent-size "$BIG" | cut -f1)
SMALL_BYTES=$(du -sb --apparent-size "$SMALL" | cut -f1)
SMALL_COUNT=$(find "$SMALL" -type f | wc -l)
LOOKUP_BYTES=$(du -sb --apparent-size "$LOOKUP_TREE" | cut -f1)
LOOKUP_COUNT=$(find "$LOOKUP_TREE" -type f | wc -l)
echo "   big: $BIG_COUNT files, $BIG_BYTES bytes; small: $SMALL_COUNT files, $SMALL_BYTES bytes;" \
    "lookup tree: $LOOKUP_COUNT files ($(($(date +%s) - STARTED)) s)" >&2

# warm the page cache
find "$TMP" -type f -print0 | xargs -0 -n 2000 cat >/dev/null

# ---------------------------------------------------------------------------------------------
# run_case CASE WARMUP BYTES FILES label1 cmd1 [label2 cmd2 ...]: hyperfine, one JSON per case,
# rows appended to $RESULTS. A failing command is reported and the case goes on without it.
# Once BUDGET seconds have passed the case is skipped.
run_case() {
    local case=$1 warmup=$2 bytes=$3 files=$4
    shift 4
    if (($(date +%s) - STARTED > BUDGET)); then
        echo "== case $case SKIPPED: over the ${BUDGET}s budget" >&2
        SKIPPED="$SKIPPED $case"
        return 0
    fi
    local args=() labels=() prep=()
    while (($#)); do
        labels+=("$1")
        args+=(-n "$1" "$2")
        shift 2
    done
    # CASE_PREPARE: optional array, one --prepare command per benchmarked command
    if ((${#CASE_PREPARE[@]})); then
        for p in "${CASE_PREPARE[@]}"; do prep+=(--prepare "$p"); done
    fi
    local json=$TMP/$case.json
    echo "== case $case" >&2
    if ! hyperfine --style basic --runs "$RUNS" --warmup "$warmup" --export-json "$json" \
        "${prep[@]}" "${args[@]}" >&2; then
        echo "   (hyperfine failed for case $case; retrying command by command)" >&2
        local i=0
        : >"$json.rows"
        while ((i < ${#args[@]})); do
            local n=${args[i + 1]} c=${args[i + 2]} one_prep=()
            if ((${#prep[@]})); then one_prep=(--prepare "${CASE_PREPARE[i / 3]}"); fi
            if hyperfine --style basic --runs "$RUNS" --warmup "$warmup" \
                --export-json "$json.one" "${one_prep[@]}" -n "$n" "$c" >&2; then
                python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"][0]; print(r["command"], r["mean"], r["stddev"] or 0, sep="\t")' \
                    "$json.one" >>"$json.rows"
            else
                printf '%s\tnan\tnan\n' "$n" >>"$json.rows"
            fi
            i=$((i + 3))
        done
    else
        python3 -c 'import json,sys
for r in json.load(open(sys.argv[1]))["results"]:
    print(r["command"], r["mean"], r["stddev"] or 0, sep="\t")' "$json" >"$json.rows"
    fi
    while IFS=$'\t' read -r label mean sd; do
        printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$case" "$label" "$mean" "$sd" "$bytes" "$files" >>"$RESULTS"
    done <"$json.rows"
}

HS="$BIN scan --offline --format ndjson"
CASE_PREPARE=()
# VERSUS: the second binary's commands, labelled "versus: <the first binary's label>".
V_BIG=() V_SMALL=() V_LOOKUP=()
if [[ -n ${VERSUS:-} ]]; then
    [[ -x $VERSUS ]] || { echo "compare.sh: no binary at VERSUS=$VERSUS" >&2; exit 2; }
    VHS="$VERSUS scan --offline --format ndjson"
    V_BIG=("versus: hashsweep scan --offline" "$VHS $BIG >/dev/null")
    V_SMALL=("versus: hashsweep scan --offline" "$VHS $SMALL >/dev/null")
fi
BIG0=$BIG/big0.bin
BIG0_BYTES=$(stat -c %s "$BIG0")

# --- hardware limit: openssl on one core, no I/O ---------------------------------------------
ossl() { openssl speed -seconds 2 -bytes 1048576 "$1" 2>/dev/null | awk -v a="$1" '$1 == a { sub(/k$/, "", $2); print $2 * 1000 }'; }
OSSL_SHA256=$(ossl sha256)
OSSL_MD5=$(ossl md5)
OSSL_SHA1=$(ossl sha1)
echo "   openssl one core: sha256 $OSSL_SHA256 B/s, md5 $OSSL_MD5 B/s, sha1 $OSSL_SHA1 B/s" >&2

# --- big files --------------------------------------------------------------------------------
run_case big1 0 "$BIG0_BYTES" 1 \
    "sha256sum one file (1 core)" "sha256sum $BIG0 >/dev/null" \
    "hashsweep scan -j1 one file (1 core)" "$HS -j 1 $BIG0 >/dev/null"

run_case big 0 "$BIG_BYTES" "$BIG_COUNT" \
    "hashsweep scan --offline" "$HS $BIG >/dev/null" \
    "hashsweep hash" "$BIN hash $BIG >/dev/null" \
    "rhash -r --sha256" "rhash -r --sha256 $BIG >/dev/null" \
    "xargs -P$CORES -n1 sha256sum" "find $BIG -type f -print0 | xargs -0 -P$CORES -n1 sha256sum >/dev/null" \
    "hashdeep -r -c sha256" "hashdeep -r -c sha256 $BIG >/dev/null" \
    "${V_BIG[@]}"

run_case multi 0 "$BIG_BYTES" "$BIG_COUNT" \
    "hashsweep --md5 --sha1 (one read)" "$HS --md5 --sha1 $BIG >/dev/null" \
    "hashsweep --md5" "$HS --md5 $BIG >/dev/null" \
    "hashsweep --sha1" "$HS --sha1 $BIG >/dev/null" \
    "rhash -r --sha256 --md5 --sha1 (one read)" "rhash -r --sha256 --md5 --sha1 $BIG >/dev/null" \
    "xargs -P$CORES -n1 md5sum" "find $BIG -type f -print0 | xargs -0 -P$CORES -n1 md5sum >/dev/null" \
    "xargs -P$CORES -n1 sha1sum" "find $BIG -type f -print0 | xargs -0 -P$CORES -n1 sha1sum >/dev/null"

# --- many small files -------------------------------------------------------------------------
run_case small "$WARMUP" "$SMALL_BYTES" "$SMALL_COUNT" \
    "hashsweep scan --offline" "$HS $SMALL >/dev/null" \
    "hashsweep hash" "$BIN hash $SMALL >/dev/null" \
    "rhash -r --sha256" "rhash -r --sha256 $SMALL >/dev/null" \
    "xargs -P$CORES -n500 sha256sum" "find $SMALL -type f -print0 | xargs -0 -P$CORES -n500 sha256sum >/dev/null" \
    "hashdeep -r -c sha256" "hashdeep -r -c sha256 $SMALL >/dev/null" \
    "${V_SMALL[@]}"

# --- the digest cache (if this binary has one) -------------------------------------------------
if "$BIN" scan --help 2>/dev/null | grep -q -- '--no-cache'; then
    CACHE=$TMP/cache.sqlite
    CASE_PREPARE=("rm -f $CACHE $CACHE-wal $CACHE-shm" "true")
    run_case cache "$WARMUP" "$SMALL_BYTES" "$SMALL_COUNT" \
        "scan --offline, fresh cache (all written)" "env -u HASHSWEEP_NO_CACHE $HS --cache $CACHE $SMALL >/dev/null" \
        "scan --offline, warm cache (nothing read)" "env -u HASHSWEEP_NO_CACHE $HS --cache $CACHE $SMALL >/dev/null"
    CASE_PREPARE=()
    rm -f "$CACHE" "$CACHE-wal" "$CACHE-shm"
fi

# --- lookups overlapping hashing --------------------------------------------------------------
echo "== starting mock-api (latency ${LATENCY_MS}ms)" >&2
METADEFENDER_APIKEY=$APIKEY "$MOCK" --listen 127.0.0.1:0 --latency "${LATENCY_MS}ms" \
    >"$TMP/mock.out" 2>"$TMP/mock.err" &
MOCK_PID=$!
URL=
for _ in $(seq 100); do
    URL=$(sed -n 's/^mock MetaDefender API listening on \(http:\/\/127\.0\.0\.1:[0-9]*\).*/\1/p' "$TMP/mock.out")
    [[ -n $URL ]] && break
    kill -0 "$MOCK_PID" 2>/dev/null || { cat "$TMP/mock.err" >&2; exit 2; }
    sleep 0.1
done
[[ -n $URL ]] || { echo "compare.sh: mock-api did not start" >&2; exit 2; }
echo "   mock at $URL (pid $MOCK_PID)" >&2

export METADEFENDER_APIKEY=$APIKEY
"$BIN" hash "$LOOKUP_TREE" >"$TMP/lookup.sha256"
# correctness spot check against coreutils, and what one scan with lookups says
find "$LOOKUP_TREE" -type f -print0 | xargs -0 -P"$CORES" -n500 sha256sum | sort >"$TMP/lookup.coreutils"
if ! sort "$TMP/lookup.sha256" | cmp -s - "$TMP/lookup.coreutils"; then
    echo "compare.sh: WARNING: hashsweep hash and sha256sum disagree on $LOOKUP_TREE" >&2
fi
DISTINCT=$(cut -d' ' -f1 "$TMP/lookup.sha256" | sort -u | wc -l)
"$BIN" scan --api-url "$URL" --concurrency $CONCURRENCY --batch-size $BATCH --format ndjson \
    "$LOOKUP_TREE" >/dev/null 2>"$TMP/lookup.summary" || true
cat "$TMP/lookup.summary" >&2
REQUESTS=$(( (DISTINCT + BATCH - 1) / BATCH ))
if [[ -n ${VERSUS:-} ]]; then
    V_LOOKUP=("versus: hashsweep scan with lookups" "$VERSUS scan --api-url $URL --concurrency $CONCURRENCY --batch-size $BATCH --format ndjson $LOOKUP_TREE >/dev/null")
fi

run_case lookup "$WARMUP" "$LOOKUP_BYTES" "$LOOKUP_COUNT" \
    "hashsweep scan --offline" "$HS $LOOKUP_TREE >/dev/null" \
    "hashsweep scan with lookups" "$BIN scan --api-url $URL --concurrency $CONCURRENCY --batch-size $BATCH --format ndjson $LOOKUP_TREE >/dev/null" \
    "hashsweep lookup only (digests on stdin)" "$BIN lookup --api-url $URL --concurrency $CONCURRENCY --batch-size $BATCH --format ndjson <$TMP/lookup.sha256 >/dev/null" \
    "${V_LOOKUP[@]}"

kill "$MOCK_PID" 2>/dev/null || true
wait "$MOCK_PID" 2>/dev/null || true
MOCK_PID=

# --- peak RSS -------------------------------------------------------------------------------
rss_kb() {
    /usr/bin/time -v "$BIN" scan --offline --format ndjson "$1" 2>&1 >/dev/null |
        awk -F': ' '/Maximum resident set size/ { print $2 }'
}
rss_kb "$SMALL" >/dev/null # warm
RSS_SMALL=$(rss_kb "$SMALL")
RSS_HALF=$(rss_kb "$LOOKUP_TREE")
RSS_ONE=$(rss_kb "$BIG0")

# ---------------------------------------------------------------------------------------------
PRESSURE_AFTER="$(cpu_pressure), load $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$RESULTS" "$CORES" "$OSSL_SHA256" "$OSSL_MD5" "$OSSL_SHA1" "$LATENCY_MS" \
    "$CONCURRENCY" "$REQUESTS" "$DISTINCT" "$RSS_SMALL" "$RSS_HALF" "$RSS_ONE" "$SMALL_COUNT" \
    "$LOOKUP_COUNT" "$PRESSURE_BEFORE" "$PRESSURE_AFTER" "$SKIPPED" <<'PY'
import math, sys
(path, cores, o256, omd5, osha1, lat_ms, conc, requests, distinct, rss_small, rss_half,
 rss_one, small_count, lookup_count, p_before, p_after, skipped) = sys.argv[1:18]
cores, o256, omd5, osha1 = int(cores), float(o256), float(omd5), float(osha1)
lat, conc, requests, distinct = int(lat_ms) / 1000, int(conc), int(requests), int(distinct)
rows = {}
order = []
for line in open(path):
    case, label, mean, sd, nbytes, files = line.rstrip("\n").split("\t")
    rows[(case, label)] = (float(mean), float(sd), int(nbytes), int(files))
    order.append((case, label))

def t(case, label):
    r = rows.get((case, label))
    return r[0] if r else float("nan")

def fmt_t(m, sd=None):
    if math.isnan(m):
        return "failed"
    return f"{m:.3f} ± {sd:.3f}" if sd is not None else f"{m:.3f}"

def rate(case, label):
    m, _, nbytes, files = rows[(case, label)]
    if math.isnan(m):
        return ""
    if case in ("small", "lookup"):
        return f"{files / m:,.0f} files/s ({nbytes / m / 1e6:,.0f} MB/s)"
    return f"{nbytes / m / 1e6:,.0f} MB/s"

print()
print("## hashsweep vs baselines (hyperfine mean ± σ of the runs, seconds; warm page cache)")
print()
print("| case | command | time (s) | rate | baseline | ratio (time / baseline) |")
print("|---|---|---|---|---|---|")

def row(case, label, base_name, base_time):
    m, sd, _, _ = rows[(case, label)]
    ratio = m / base_time if base_time and not math.isnan(m) else float("nan")
    print(f"| {case} | {label} | {fmt_t(m, sd)} | {rate(case, label)} | {base_name} | "
          f"{'' if math.isnan(ratio) else f'{ratio:.2f}'} |")

# big: hardware limit = bytes / (openssl one-core sha256 x cores used)
for case, label in order:
    if case == "big1":
        nbytes = rows[(case, label)][2]
        row(case, label, f"openssl sha256 1 core ({o256 / 1e6:,.0f} MB/s): {nbytes / o256:.3f} s",
            nbytes / o256)
for case, label in order:
    if case == "big":
        nbytes = rows[(case, label)][2]
        ideal = nbytes / (o256 * cores)
        row(case, label, f"openssl sha256 x{cores} cores: {ideal:.3f} s", ideal)

# multi: one read of three digests vs three single-algorithm passes
hs = t("big", "hashsweep scan --offline")
md5sum = t("multi", f"xargs -P{cores} -n1 md5sum")
sha1sum = t("multi", f"xargs -P{cores} -n1 sha1sum")
passes = hs + md5sum + sha1sum
hs_md5, hs_sha1 = t("multi", "hashsweep --md5"), t("multi", "hashsweep --sha1")
additive = hs + (hs_md5 - hs) + (hs_sha1 - hs)
big_bytes = next((r[2] for (c, _), r in rows.items() if c == "multi"), float("nan"))
hw3 = big_bytes / cores * (1 / o256 + 1 / omd5 + 1 / osha1)
for case, label in order:
    if case == "multi":
        row(case, label, f"3 passes: hashsweep sha256 + md5sum + sha1sum = {passes:.3f} s", passes)
print(f"| multi | (derived) hashsweep sha256 + marginal md5 + marginal sha1 | {additive:.3f} | | "
      f"measured --md5 --sha1: {t('multi', 'hashsweep --md5 --sha1 (one read)'):.3f} s | "
      f"{t('multi', 'hashsweep --md5 --sha1 (one read)') / additive:.2f} |")
print(f"| multi | (limit) openssl sha256+md5+sha1 x{cores} cores | {hw3:.3f} | | "
      f"measured --md5 --sha1 | {t('multi', 'hashsweep --md5 --sha1 (one read)') / hw3:.2f} |")

# small: against xargs sha256sum
base = f"xargs -P{cores} -n500 sha256sum"
for case, label in order:
    if case == "small":
        row(case, label, f"{base}: {t('small', base):.3f} s", t("small", base))

# cache: against the same scan without the cache
for case, label in order:
    if case == "cache":
        b = t("small", "hashsweep scan --offline")
        row(case, label, f"scan --offline without cache: {b:.3f} s", b)

# lookup: wall with lookups against max(hash time, lookup floor)
hash_t = t("lookup", "hashsweep scan --offline")
floor = math.ceil(requests / conc) * lat
nominal = requests / conc * lat
lookup_only = t("lookup", "hashsweep lookup only (digests on stdin)")
with_l = t("lookup", "hashsweep scan with lookups")
for case, label in order:
    if case == "lookup":
        row(case, label, f"max(hash {hash_t:.3f}, lookups ceil({requests}/{conc})x{lat:g} = {floor:.2f}) s",
            max(hash_t, floor))
print(f"| lookup | ratio wall(with lookups) / max(hash, {requests}/{conc}x{lat:g} = {nominal:.2f} s) | "
      f"| | | {with_l / max(hash_t, nominal):.2f} |")
print(f"| lookup | ratio wall(with lookups) / max(hash, measured lookup-only {lookup_only:.3f} s) | "
      f"| | | {with_l / max(hash_t, lookup_only):.2f} |")
print(f"| lookup | ratio wall(with lookups) / (hash + lookup-only), 1.0 = no overlap at all | "
      f"| | | {with_l / (hash_t + lookup_only):.2f} |")

versus = [(c, l) for c, l in order if l.startswith("versus: ")]
if versus:
    print()
    print("## VERSUS (the second binary) against the first, same hyperfine runs")
    print()
    print("| case | command | first (s) | VERSUS (s) | ratio VERSUS / first |")
    print("|---|---|---|---|---|")
    for case, label in versus:
        first, second = t(case, label[len("versus: "):]), t(case, label)
        print(f"| {case} | {label[len('versus: '):]} | {fmt_t(first)} | {fmt_t(second)} | "
              f"{second / first:.3f} |")

print()
if skipped.strip():
    print(f"Skipped (over budget): {skipped.strip()}")
print(f"CPU pressure (some avg10 avg60) before: {p_before}; after: {p_after}.")
print(f"Lookup tree: {lookup_count} files, {distinct} distinct SHA-256 digests, {requests} requests of "
      f"up to 1000, concurrency {conc}, mock latency {lat * 1000:.0f} ms.")
rs, rh, r1 = int(rss_small), int(rss_half), int(rss_one)
sc, lc = int(small_count), int(lookup_count)
print(f"Peak RSS of `scan --offline`: {rs / 1024:.1f} MiB on {sc} files, {rh / 1024:.1f} MiB on {lc} "
      f"files, {r1 / 1024:.1f} MiB on one file; marginal "
      f"{(rs - rh) * 1024 / (sc - lc):,.0f} bytes/file, average {(rs - r1) * 1024 / sc:,.0f} bytes/file "
      f"above the one-file run.")
PY
echo "(total $(($(date +%s) - STARTED)) s)"
