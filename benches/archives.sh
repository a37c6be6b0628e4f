#!/usr/bin/env bash
# Members of archives: `hashsweep hash --archives` against the shell baseline that lists each
# archive and pipes every member into sha256sum (`unzip -p a.zip m | sha256sum`,
# `tar -xOf a.tar.gz m | sha256sum`), on one tree of zips and tar.gz files built here. Both
# runs read a warm page cache (the archives are read once before timing); the ratio is
# baseline time / hashsweep time, measured in the same run. Each digest of hashsweep's is
# checked against the baseline's.
#
# A last case reads the tree from a cold page cache (dropped first; root only): the bytes
# hashsweep made the device read (`read_bytes` of its /proc/PID/io: other processes' reads do
# not count), the bytes its read calls returned (`rchar`: page cache hits too) and the time,
# against the tree's size: one read from disk is about 1.0x. HASHSWEEP_BEFORE=path measures
# another binary (an older build) the same way, in the same run.
#
# Usage: benches/archives.sh             (QUICK=1 for a small tree; HASHSWEEP=path to skip the
#                                          release build; HASHSWEEP_BEFORE=path to compare)
# Runs under flock /tmp/hashsweep-bench.lock so no two benchmarks overlap.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(dirname "$HERE")"
source "$HERE/common.sh"

if [[ -z ${HASHSWEEP_BENCH_LOCKED:-} ]]; then
    export HASHSWEEP_BENCH_LOCKED=1
    exec flock /tmp/hashsweep-bench.lock "$0" "$@"
fi

require_tools archives.sh "apt-get install unzip python3" unzip tar sha256sum python3
hashsweep_binary archives.sh

if [[ -n ${QUICK:-} ]]; then archives=8 members=40; else archives=40 members=200; fi
work="$(mktemp -d "${TMPDIR:-/tmp}/archives-bench.XXXXXX")"
trap 'rm -rf "$work"' EXIT
tree="$work/tree"
mkdir -p "$tree"

echo "== building $archives zips and $archives tar.gz files of $members members each" >&2
python3 - "$tree" "$archives" "$members" <<'PY'
import io, random, sys, tarfile, zipfile
root, n, m = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(19)
def member(i):
    # Half compressible text, half random bytes: 4 KiB to 256 KiB.
    size = rng.randint(4 << 10, 256 << 10)
    if i % 2:
        return rng.randbytes(size)
    return (b"log line %d " % i) * (size // 12)
for a in range(n):
    with zipfile.ZipFile(f"{root}/z{a}.zip", "w", zipfile.ZIP_DEFLATED) as z:
        for i in range(m):
            z.writestr(f"d{i % 7}/m{i}.bin", member(i))
    with tarfile.open(f"{root}/t{a}.tar.gz", "w:gz") as t:
        for i in range(m):
            data = member(i)
            info = tarfile.TarInfo(f"d{i % 7}/m{i}.bin")
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
PY
du -sh "$tree" >&2
cat "$tree"/* >/dev/null

baseline() {
    for z in "$tree"/*.zip; do
        unzip -Z1 "$z" | while IFS= read -r m; do
            printf '%s  %s!%s\n' "$(unzip -p "$z" "$m" | sha256sum | cut -d' ' -f1)" "$z" "$m"
        done
    done
    for t in "$tree"/*.tar.gz; do
        tar -tzf "$t" | while IFS= read -r m; do
            printf '%s  %s!%s\n' "$(tar -xzOf "$t" "$m" | sha256sum | cut -d' ' -f1)" "$t" "$m"
        done
    done
}

now() { date +%s.%N; }
t0=$(now)
baseline | sort >"$work/baseline.txt"
t1=$(now)
"$BIN" hash --archives "$tree" | grep '!' | sort >"$work/hashsweep.txt"
t2=$(now)

if ! cmp -s "$work/baseline.txt" "$work/hashsweep.txt"; then
    echo "archives.sh: hashsweep's member digests differ from the baseline's" >&2
    diff "$work/baseline.txt" "$work/hashsweep.txt" | head >&2
    exit 1
fi
# A fairer second baseline for the tar.gz files alone: tar decompresses each archive once and
# runs sha256sum per member (--to-command), against hashsweep reading only gzip and tar.
t3=$(now)
for t in "$tree"/*.tar.gz; do
    tar -xzf "$t" --to-command='sha256sum | cut -d" " -f1' >/dev/null
done
t4=$(now)
"$BIN" hash --archives=gzip,tar "$tree"/*.tar.gz >/dev/null
t5=$(now)
python3 - "$t0" "$t1" "$t2" "$t3" "$t4" "$t5" "$(wc -l <"$work/baseline.txt")" <<'PY'
import sys
t0, t1, t2, t3, t4, t5, n = map(float, sys.argv[1:])
b, h = t1 - t0, t2 - t1
print(f"{int(n)} members: baseline (unzip -p / tar -xzOf | sha256sum per member) {b:.2f} s, "
      f"hashsweep hash --archives {h:.2f} s, ratio {b / h:.1f}x")
b, h = t4 - t3, t5 - t4
print(f"tar.gz only: tar -xzf --to-command=sha256sum (one pass) {b:.2f} s, "
      f"hashsweep hash --archives=gzip,tar {h:.2f} s, ratio {b / h:.1f}x")
PY

# Cold page cache: bytes read from the device and time, per binary.
if [[ ! -w /proc/sys/vm/drop_caches ]]; then
    echo "cold case skipped: /proc/sys/vm/drop_caches is not writable (run as root)" >&2
    exit 0
fi
tree_bytes=$(du -sb "$tree" | cut -f1)
cold() {
    local label=$1 bin=$2
    sync
    echo 3 >/proc/sys/vm/drop_caches
    # The binary itself is read back in first: only the tree's reads are counted.
    cat "$bin" >/dev/null
    python3 - "$label" "$tree_bytes" "$bin" hash --archives "$tree" <<'PY'
import os, subprocess, sys, time
label, tree = sys.argv[1], int(sys.argv[2])
t = time.monotonic()
p = subprocess.Popen(sys.argv[3:], stdout=subprocess.DEVNULL)
# Exited but not reaped: its /proc/PID/io still holds the counts of all its threads.
os.waitid(os.P_PID, p.pid, os.WEXITED | os.WNOWAIT)
took = time.monotonic() - t
io = dict(l.split(": ") for l in open(f"/proc/{p.pid}/io").read().split("\n") if l)
if p.wait() != 0:
    sys.exit(f"{label}: exit {p.returncode}")
dev, calls = int(io["read_bytes"]), int(io["rchar"])
print(f"cold cache, {label}: {dev / 1e6:.1f} MB from the device ({dev / tree:.2f}x the "
      f"{tree / 1e6:.1f} MB tree), {calls / 1e6:.1f} MB through read calls ({calls / tree:.2f}x), "
      f"{took:.2f} s")
PY
}
cold "hashsweep hash --archives" "$BIN"
if [[ -n ${HASHSWEEP_BEFORE:-} ]]; then
    cold "before ($HASHSWEEP_BEFORE)" "$HASHSWEEP_BEFORE"
    cold "hashsweep hash --archives, again" "$BIN"
fi
