#!/usr/bin/env bash
# What the HTML report costs next to ndjson: an offline sweep (no cache) of a tree of many small
# files, written once as ndjson and once as html, each RUNS times; prints the median wall times,
# the ratio html/ndjson and the report sizes. The tree stays in the page cache (both formats
# read the same files), so the difference is the writing.
#
#   benches/report_formats.sh            # 200 000 files
#   QUICK=1 benches/report_formats.sh    # 20 000 files, for a quick look
#   HASHSWEEP=target/debug/hashsweep ... # use this binary instead of building the release one
#
# Run it alone: flock /tmp/hashsweep-bench.lock benches/report_formats.sh
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
# shellcheck source=benches/common.sh
source "$HERE/common.sh"
require_tools report_formats.sh "python3 is needed to make the tree" python3
hashsweep_binary report_formats.sh

FILES=${FILES:-$([[ -n ${QUICK:-} ]] && echo 20000 || echo 200000)}
RUNS=${RUNS:-3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 "$HERE/make_tree.py" "$work/tree" "$FILES" 2048
# Warm the page cache once so both formats read from memory.
"$BIN" scan --offline --no-cache -q -o "$work/warm.ndjson" "$work/tree" || true

median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
# One timed sweep writing report.EXT; prints seconds.
once() {
    local t0 t1
    t0=$(date +%s.%N)
    "$BIN" scan --offline --no-cache -q -o "$work/report.$1" "$work/tree" || true
    t1=$(date +%s.%N)
    python3 -c "print($t1 - $t0)"
}
# Alternate the two formats, so a load that comes and goes weighs on both alike.
: >"$work/nd.times"
: >"$work/html.times"
for ((i = 0; i < RUNS; i++)); do
    once ndjson >>"$work/nd.times"
    once html >>"$work/html.times"
done
nd=$(median <"$work/nd.times")
html=$(median <"$work/html.times")
printf '%d files, %d runs each (median wall time)\n' "$FILES" "$RUNS"
printf 'ndjson: %.2f s, %s bytes\n' "$nd" "$(stat -c %s "$work/report.ndjson")"
printf 'html:   %.2f s, %s bytes\n' "$html" "$(stat -c %s "$work/report.html")"
printf 'ratio html/ndjson: %.2f\n' "$(python3 -c "print($html / $nd)")"
