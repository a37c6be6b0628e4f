#!/usr/bin/env bash
# Load-time benchmark for src/hashset.rs: generate a 10 000 000-line plain SHA-256 list, then
# load it with /usr/bin/time -v: without an index, building the on-disk index, reusing it, and
# reusing it followed by a million lookups (which page the mapped index in). Prints elapsed time
# and peak RSS for each.
#
# Usage: benches/hashset_load.sh [LINES]      (default 10000000; needs python3, /usr/bin/time)
# Scratch files go to a temp dir (about 0.7 GB for 10 M lines) that is removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

lines="${1:-10000000}"
work="$(mktemp -d "${TMPDIR:-/tmp}/hashset-bench.XXXXXX")"
trap 'rm -rf "$work"' EXIT
list="$work/sha256.txt"
idx="$work/index"

echo "generating $lines random SHA-256 lines into $list"
python3 - "$lines" "$list" <<'PY'
import random, sys
n, path = int(sys.argv[1]), sys.argv[2]
rng = random.Random(20240501)
block = 100_000
with open(path, "w") as f:
    left = n
    while left:
        k = min(block, left)
        h = rng.randbytes(32 * k).hex()
        f.write("\n".join(h[i:i + 64] for i in range(0, 64 * k, 64)))
        f.write("\n")
        left -= k
PY
ls -l "$list"

cargo build --release --quiet --example hashset_load
bin="${CARGO_TARGET_DIR:-target}/release/examples/hashset_load"

run() {
  local label="$1"; shift
  echo "== $label: $bin $*"
  /usr/bin/time -v "$bin" "$@" 2>"$work/time.txt"
  grep -E "Elapsed \(wall clock\)|Maximum resident set size" "$work/time.txt" | sed 's/^\s*/   /'
}

# Drop nothing from the page cache: all three runs read the list (or index) from memory, which
# is what a repeated scan sees.
run "no index" "$list"
run "first load, builds the index" --index-dir "$idx" "$list"
run "second load, reuses the index" --index-dir "$idx" "$list"
run "reuses the index, then 1 000 000 random lookups" --index-dir "$idx" --probe 1000000 "$list"
ls -l "$idx"
