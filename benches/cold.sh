#!/usr/bin/env bash
# Whole-process benchmark of sweeps that read what is NOT in the page cache: a cold disk and a
# share with a fixed latency per file-system operation. As root (it drops the page cache), and
# under the bench lock, from the repository:
#
#   flock /tmp/hashsweep-bench.lock benches/cold.sh           # full: ~10 min on a quiet machine
#   QUICK=1 flock /tmp/hashsweep-bench.lock benches/cold.sh   # smaller trees, fewer settings
#
# Cases (all in one run, so the ratios compare figures taken under the same load):
#   disk    TREE (default /usr; QUICK: /usr/share), page cache dropped before every run
#           (`sync; echo 3 > /proc/sys/vm/drop_caches`): `scan --offline --no-cache` with
#           default flags, with -j swept and with --io-depth swept; `rhash -r --sha256`;
#           `find -type f -print0 | xargs -0 -P16 -n128 sha256sum`; and fio on the same file
#           system: sequential 1 MiB direct reads (queue depth 16) and 16 KiB random direct
#           reads (queue depth 32). The device's time for the tree is modelled as
#               files / IOPS(16 KiB random) + bytes / bandwidth(1 MiB sequential)
#           (one random access per file, then its bytes streamed); "of device" is that time
#           over the command's. The CPU bound, bytes / (openssl sha256 one core x cores), is
#           printed beside it.
#   share   a tree of small files (benches/make_tree.py) behind a FUSE passthrough that sleeps
#           in every operation (slowfs.py; 2 ms and 10 ms): default, -j and --io-depth swept,
#           rhash -r, xargs. FUSE drops its page cache on each open, so every run is cold.
#   rate    --max-io-rate 20M on a cold tree of ~400 MB (QUICK: ~130 MB): bytes read / wall
#           time against 20 MiB/s.
# Targets (from issue 15): disk: default within 1.1x of the best setting, >= 85% of device;
# share: default within 1.2x of the best setting, >= 15x rhash -r; rate: within 10%.
#
# Environment:
#   QUICK=1          /usr/share, -j 1 4 16 64, --io-depth 4 16 64, shares of 500 / 150 files
#   TREE=DIR         the cold disk tree (default /usr, QUICK /usr/share)
#   RUNS=N           runs per command (default 1; every run is cold)
#   JS="..." DEPTHS="..."   the -j and --io-depth settings of the disk case (defaults above)
#   HASHSWEEP=PATH   use this binary instead of `cargo build --release`
#   BEFORE=PATH      also time this binary (e.g. main's) with its default and -j 32
#   SLOWFS=PATH      the FUSE passthrough (default ../shared/tools/slowfs.py beside the repo)
#   TMPDIR           where the share and rate trees and the fio file go (same device as TREE
#                    for the fio figures to mean anything)
#   CASES="disk share rate"   the cases to run (default all three; the summary shows those run)
#   KEEP=1           keep the temp directory
# Needs: root, hyperfine, rhash, fio, fusermount (apt-get install hyperfine rhash fio fuse
# libfuse2), python3 with fusepy (pip install fusepy), openssl.
# The machine's load changes the figures: CPU pressure is printed before and after.

set -euo pipefail

QUICK=${QUICK:-0}
RUNS=${RUNS:-1}
if [[ $QUICK == 1 ]]; then
    TREE=${TREE:-/usr/share}
    JS=${JS:-"1 4 16 64"} DEPTHS=${DEPTHS:-"4 16 64"}
    SHARE_2MS_FILES=500 SHARE_10MS_FILES=150 SHARE_JS="16 64" SHARE_DEPTHS="16 64"
    RATE_FILES=1000 FIO_SIZE=512M FIO_TIME=4
else
    TREE=${TREE:-/usr}
    JS=${JS:-"1 2 4 8 16 32 64"} DEPTHS=${DEPTHS:-"2 4 8 16 32 64 128"}
    SHARE_2MS_FILES=2000 SHARE_10MS_FILES=500 SHARE_JS="4 16 64" SHARE_DEPTHS="8 32 64 128"
    RATE_FILES=3000 FIO_SIZE=2G FIO_TIME=8
fi
CASES=${CASES:-disk share rate}
has_case() { [[ " $CASES " == *" $1 "* ]]; }
RATE=20M
RATE_BPS=$((20 << 20))
CORES=$(nproc)
STARTED=$(date +%s)
cpu_pressure() { awk '/^some/ { print $2, $3 }' /proc/pressure/cpu 2>/dev/null || true; }
PRESSURE_BEFORE="$(cpu_pressure), load $(cut -d' ' -f1-3 /proc/loadavg)"

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
SLOWFS=${SLOWFS:-$REPO/../shared/tools/slowfs.py}

# shellcheck source=benches/common.sh
source "$HERE/common.sh"
[[ $(id -u) == 0 ]] || { echo "cold.sh: run as root (it drops the page cache)" >&2; exit 2; }
require_tools cold.sh "apt-get install hyperfine rhash fio fuse libfuse2; pip install fusepy" \
    hyperfine rhash fio fusermount mountpoint python3 openssl sha256sum /usr/bin/time
python3 -c 'import fuse' 2>/dev/null || { echo "cold.sh: python3 lacks fusepy (pip install fusepy)" >&2; exit 2; }
[[ -f $SLOWFS ]] || { echo "cold.sh: no slowfs.py at $SLOWFS (set SLOWFS)" >&2; exit 2; }
[[ -d $TREE ]] || { echo "cold.sh: no tree at $TREE" >&2; exit 2; }
hashsweep_binary cold.sh

TMP=$(mktemp -d "${TMPDIR:-/tmp}/hashsweep-cold.XXXXXX")
MNT=$TMP/mnt
SLOWFS_PID=
unmount() {
    if mountpoint -q "$MNT" 2>/dev/null; then fusermount -u "$MNT" 2>/dev/null || umount -l "$MNT" || true; fi
    if [[ -n $SLOWFS_PID ]]; then
        kill "$SLOWFS_PID" 2>/dev/null || true
        wait "$SLOWFS_PID" 2>/dev/null || true
        SLOWFS_PID=
    fi
}
cleanup() {
    local rc=$?
    unmount
    if [[ ${KEEP:-0} == 1 ]]; then echo "cold.sh: kept $TMP" >&2; else rm -rf "$TMP"; fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

RESULTS=$TMP/results.tsv # case, label, mean, stddev
: >"$RESULTS"
DROP='sync; echo 3 > /proc/sys/vm/drop_caches'
HS="$BIN scan --offline --no-cache --format ndjson"
export HASHSWEEP_NO_CACHE=1

# run_case CASE PREPARE label1 cmd1 [label2 cmd2 ...]: hyperfine (failures ignored: a tree like
# /usr may hold a file that vanishes), rows appended to $RESULTS.
run_case() {
    local case=$1 prep=$2 args=()
    shift 2
    while (($#)); do
        args+=("--command-name=$1" "$2")
        shift 2
    done
    local prep_args=()
    [[ -n $prep ]] && prep_args=(--prepare "$prep")
    echo "== case $case" >&2
    hyperfine --style basic -i --runs "$RUNS" "${prep_args[@]}" --export-json "$TMP/$case.json" \
        "${args[@]}" >&2
    python3 -c 'import json,sys
for r in json.load(open(sys.argv[1]))["results"]:
    print(sys.argv[2], r["command"], r["mean"], r["stddev"] or 0, sep="\t")' \
        "$TMP/$case.json" "$case" >>"$RESULTS"
}

# sweep_args CASE_ROOT JS DEPTHS: the label/command pairs every case times.
sweep_args() {
    local root=$1 js=$2 depths=$3 j d
    SWEEP=("default" "$HS $root >/dev/null")
    for j in $js; do SWEEP+=("-j $j" "$HS -j $j $root >/dev/null"); done
    for d in $depths; do SWEEP+=("--io-depth $d" "$HS --io-depth $d $root >/dev/null"); done
    if [[ -n ${BEFORE:-} ]]; then
        local old="$BEFORE scan --offline --no-cache --format ndjson"
        SWEEP+=("before: default" "$old $root >/dev/null" "before: -j 32" "$old -j 32 $root >/dev/null")
    fi
    # The default again, last: the first timed command has been slower on a loaded machine;
    # the summary takes the mean of both default rows.
    SWEEP+=("default, again" "$HS $root >/dev/null")
}

tree_stats() { # FILES BYTES of the regular files under $1 (symlinks not followed)
    # %.0f: awk's %d stops at 2^31 - 1 (mawk), which a tree of several GB passes.
    find "$1" -type f -printf '%s\n' | awk '{ n++; b += $1 } END { printf "%d %.0f\n", n, b }'
}

# --- device figures: fio on the file system that holds TMPDIR ---------------------------------
FIO_FILE=$TMP/fio.dat
if [[ $(df --output=source "$TMP" | tail -1) != $(df --output=source "$TREE" | tail -1) ]]; then
    echo "cold.sh: WARNING: $TMP and $TREE are on different file systems: fio measures $TMP's" >&2
fi
fio_run() { # NAME RW BS DEPTH -> "bytes_per_s iops"
    fio --name="$1" --filename="$FIO_FILE" --size="$FIO_SIZE" --rw="$2" --bs="$3" --direct=1 \
        --ioengine=libaio --iodepth="$4" --runtime="$FIO_TIME" --time_based --group_reporting \
        --output-format=json 2>/dev/null |
        python3 -c 'import json,sys; r=json.load(sys.stdin)["jobs"][0]["read"]; print(r["bw_bytes"], r["iops"])'
}
echo "== fio ($FIO_SIZE file, ${FIO_TIME}s each)" >&2
fio --name=lay --filename="$FIO_FILE" --size="$FIO_SIZE" --rw=write --bs=1M --direct=1 \
    --ioengine=libaio --iodepth=8 >/dev/null 2>&1
read -r SEQ_BPS _ < <(fio_run seq read 1M 16)
read -r _ RAND_IOPS < <(fio_run rand randread 16k 32)
rm -f "$FIO_FILE"
echo "   sequential 1 MiB QD16: $SEQ_BPS B/s; random 16 KiB QD32: $RAND_IOPS IOPS" >&2
OSSL_SHA256=$(openssl speed -seconds 2 -bytes 1048576 sha256 2>/dev/null | awk '$1 == "sha256" { sub(/k$/, "", $2); print $2 * 1000 }')

# --- cold disk ----------------------------------------------------------------------------------
DISK_FILES=0 DISK_BYTES=0 DISK_RSS=nan
if has_case disk; then
read -r DISK_FILES DISK_BYTES < <(tree_stats "$TREE")
echo "== disk tree $TREE: $DISK_FILES files, $DISK_BYTES bytes" >&2
sweep_args "$TREE" "$JS" "$DEPTHS"
# One cold run, not timed: the first one after fio and the tree walk above is slower for every
# command (measured: 4.5 s against 2.5 s for the same default run).
sync && echo 3 >/proc/sys/vm/drop_caches
$HS "$TREE" >/dev/null 2>&1 || true
run_case disk "$DROP" "${SWEEP[@]}" \
    "rhash -r --sha256" "rhash -r --sha256 $TREE >/dev/null" \
    "xargs -P16 sha256sum" "find $TREE -type f -print0 | xargs -0 -P16 -n128 sha256sum >/dev/null"
sync && echo 3 >/proc/sys/vm/drop_caches
/usr/bin/time -f '%M' -o "$TMP/rss" $HS "$TREE" >/dev/null 2>&1 || true
DISK_RSS=$(tail -1 "$TMP/rss")
fi

# --- shares ------------------------------------------------------------------------------------
share_case() { # LATENCY_MS FILES
    local ms=$1 files=$2 src=$TMP/share-src-$1
    python3 "$HERE/make_tree.py" "$src" "$files"
    mkdir -p "$MNT"
    python3 "$SLOWFS" "$src" "$MNT" --latency-ms "$ms" >"$TMP/slowfs-$ms.log" 2>&1 &
    SLOWFS_PID=$!
    for _ in $(seq 100); do mountpoint -q "$MNT" && break; sleep 0.1; done
    mountpoint -q "$MNT" || { cat "$TMP/slowfs-$ms.log" >&2; exit 2; }
    read -r n b < <(tree_stats "$src")
    echo "== share ${ms} ms: $n files, $b bytes" >&2
    # The first sweep after mounting meets names the kernel has not looked up yet, and it
    # serializes those lookups per directory for a FUSE server without FUSE_PARALLEL_DIROPS
    # (libfuse 2, so fusepy; Linux 5c672ab3f0ee); later lookups only revalidate, in parallel. Every timed command below would pay it only if it
    # ran first, so one untimed default sweep goes first, and its time is reported apart.
    local t0 t1
    t0=$(date +%s.%N)
    $HS "$MNT" >/dev/null 2>&1 || true
    t1=$(date +%s.%N)
    sweep_args "$MNT" "$SHARE_JS" "$SHARE_DEPTHS"
    run_case "share-${ms}ms" "" "${SWEEP[@]}" \
        "rhash -r --sha256" "rhash -r --sha256 $MNT >/dev/null" \
        "xargs -P16 sha256sum" "find $MNT -type f -print0 | xargs -0 -P16 -n128 sha256sum >/dev/null"
    printf 'share-%sms\t%s\t%s\t%s\n' "$ms" "$n" "$b" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" >>"$TMP/shares.tsv"
    unmount
}
: >"$TMP/shares.tsv"
if has_case share; then
    share_case 2 "$SHARE_2MS_FILES"
    share_case 10 "$SHARE_10MS_FILES"
fi

# --- --max-io-rate ---------------------------------------------------------------------------------
RATE_TREE=$TMP/rate RATE_N=0 RATE_BYTES=0
if has_case rate; then
python3 "$HERE/make_tree.py" "$RATE_TREE" "$RATE_FILES" $((256 << 10))
sync
read -r RATE_N RATE_BYTES < <(tree_stats "$RATE_TREE")
echo "== rate tree: $RATE_N files, $RATE_BYTES bytes" >&2
run_case rate "$DROP" "--max-io-rate $RATE" "$HS --max-io-rate $RATE $RATE_TREE >/dev/null" \
    "default (no cap)" "$HS $RATE_TREE >/dev/null"
fi

# ---------------------------------------------------------------------------------------------------
PRESSURE_AFTER="$(cpu_pressure), load $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$RESULTS" "$TMP/shares.tsv" "$TREE" "$DISK_FILES" "$DISK_BYTES" "$SEQ_BPS" \
    "$RAND_IOPS" "$OSSL_SHA256" "$CORES" "$RATE_N" "$RATE_BYTES" "$RATE_BPS" "$RATE" \
    "$DISK_RSS" "$PRESSURE_BEFORE" "$PRESSURE_AFTER" "$QUICK" <<'PY'
import math, sys
(results, shares, tree, dfiles, dbytes, seq, iops, ossl, cores, rn, rb, rbps, rate, rss,
 p_before, p_after, quick) = sys.argv[1:18]
dfiles, dbytes, seq, iops, ossl = int(dfiles), int(dbytes), float(seq), float(iops), float(ossl)
cores, rn, rb, rbps = int(cores), int(rn), int(rb), int(rbps)
rows, order = {}, []
for line in open(results):
    case, label, mean, sd = line.rstrip("\n").split("\t")
    rows.setdefault(case, {})[label] = (float(mean), float(sd))
    order.append((case, label))
share_sizes = {}
for line in open(shares):
    case, n, b, first = line.split()
    share_sizes[case] = (int(n), int(b), float(first))

def ours(case):
    return {l: v for l, v in rows[case].items()
            if l.startswith("default") or l.startswith("-j ") or l.startswith("--io-depth ")}

def default(case):
    """The default's time: the mean of its two rows (first and last of the case)."""
    r = rows[case]
    both = [r[l][0] for l in ("default", "default, again") if l in r]
    return sum(both) / len(both)

def table(case, nbytes, nfiles, extra_cols):
    r = rows[case]
    best_label, (best, _) = min(ours(case).items(), key=lambda kv: kv[1][0])
    heads = ["command", "seconds", "MB/s", "files/s", "x best setting"] + [h for h, _ in extra_cols]
    print("| " + " | ".join(heads) + " |")
    print("|" + "---|" * len(heads))
    for c, label in order:
        if c != case:
            continue
        m, sd = r[label]
        cells = [f"`{label}`", f"{m:.2f} ± {sd:.2f}" if sd else f"{m:.2f}",
                 f"{nbytes / m / 1e6:,.0f}", f"{nfiles / m:,.0f}", f"{m / best:.2f}"]
        cells += [f(m) for _, f in extra_cols]
        print("| " + " | ".join(cells) + " |")
    print()
    return best_label, best

print(f"\n## Cold sweeps ({'QUICK' if quick == '1' else 'full'} run; whole process, seconds, "
      f"mean of the runs; hyperfine)\n")
device = dfiles / iops + dbytes / seq
cpu = dbytes / (ossl * cores)
if "disk" in rows:
    print(f"### Cold disk: `{tree}`, {dfiles:,} files, {dbytes / 2**30:.2f} GiB, page cache dropped "
          f"before every run\n")
    print(f"Device (fio, same file system): sequential 1 MiB QD16 {seq / 1e6:,.0f} MB/s, random "
          f"16 KiB QD32 {iops:,.0f} IOPS. Device time for this tree = {dfiles:,} / {iops:,.0f} + "
          f"{dbytes / 1e6:,.0f} MB / {seq / 1e6:,.0f} MB/s = {device:.2f} s. CPU bound (openssl "
          f"sha256 {ossl / 1e6:,.0f} MB/s x {cores} cores) = {cpu:.2f} s.\n")
    best_label, best = table("disk", dbytes, dfiles,
                             [("of device", lambda m: f"{device / m:.0%}"),
                              ("of max(device, CPU)", lambda m: f"{max(device, cpu) / m:.0%}")])
    d = default("disk")
    rh = rows["disk"]["rhash -r --sha256"][0]
    print(f"Default (mean of its two rows) / best setting (`{best_label}`): **{d / best:.2f}** "
          f"(target <= 1.1); default "
          f"reaches **{device / d:.0%}** of the device time (target >= 85%; "
          f"{max(device, cpu) / d:.0%} of max(device, CPU)); rhash -r / default = {rh / d:.1f}. "
          f"Peak RSS of a default cold run: {rss} KiB.\n")
for case in ("share-2ms", "share-10ms"):
    if case not in rows:
        continue
    n, b, first = share_sizes[case]
    ms = case.split("-")[1]
    print(f"### Share: FUSE passthrough sleeping {ms} per operation (slowfs.py), {n:,} files, "
          f"{b / 1e6:.1f} MB\n")
    rh = rows[case]["rhash -r --sha256"][0]
    best_label, best = table(case, b, n, [("rhash -r / this", lambda m, rh=rh: f"{rh / m:.1f}")])
    d = default(case)
    print(f"Default (mean of its two rows) / best setting (`{best_label}`): **{d / best:.2f}** "
          f"(target <= 1.2); "
          f"rhash -r / default: **{rh / d:.1f}x** (target >= 15x). The first sweep after "
          f"mounting (default flags, untimed by hyperfine, run before all of the above: every "
          f"name new to the kernel) took {first:.2f} s, {rh / first:.1f}x faster than rhash -r "
          f"on known names.\n")
if "rate" in rows:
    m = rows["rate"][f"--max-io-rate {rate}"][0]
    free = rows["rate"]["default (no cap)"][0]
    got = rb / m
    print(f"### `--max-io-rate {rate}`: cold tree of {rn:,} files, {rb / 2**20:,.0f} MiB\n")
    print("| command | seconds | MiB/s |\n|---|---|---|")
    print(f"| `--max-io-rate {rate}` | {m:.2f} | {got / 2**20:.2f} |")
    print(f"| default (no cap) | {free:.2f} | {rb / free / 2**20:.2f} |\n")
    print(f"Read rate under the cap: {got / 2**20:.2f} MiB/s against {rbps / 2**20:.0f} MiB/s: "
          f"**{got / rbps - 1:+.1%}** (target within 10%).\n")
print(f"CPU pressure (some avg10 avg60) before: {p_before}; after: {p_after}.")
PY
echo "(total $(($(date +%s) - STARTED)) s)"
