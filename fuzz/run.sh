#!/usr/bin/env bash
# Run the fuzz targets (issue 33): build them once, seed each corpus from the test fixtures'
# recipes (seeds.py), then run each target for SECONDS (default 600) and print its executions.
#
#   fuzz/run.sh [SECONDS] [TARGET...]      # every target (`cargo fuzz list`) when none named
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`); stable Rust, no sanitizer (libFuzzer's
# coverage only; add `-s address` on nightly for AddressSanitizer). What a run finds is kept in
# fuzz/corpus/<target> (inputs reaching new code) and fuzz/artifacts/<target> (crashes): make
# each crash a regression test (fuzz/README.md) before fixing it. Exits 1 if any target crashed.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-600}
[ "$#" -gt 0 ] && shift
if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list)
fi
flags=(--sanitizer none -O -a)
cargo fuzz build "${flags[@]}"
seeds=$(mktemp -d)
trap 'rm -rf "$seeds"' EXIT
python3 seeds.py "$seeds"
failed=()
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "$seeds/$t"
  log="$seeds/$t.log"
  # -timeout: one input taking longer is a finding (an archive stops itself after 5 s);
  # -rss_limit_mb: so is memory past 2 GiB.
  if cargo fuzz run "${flags[@]}" "$t" "corpus/$t" "$seeds/$t" -- \
      -max_total_time="$secs" -timeout=30 -rss_limit_mb=2048 -print_final_stats=1 \
      >"$log" 2>&1; then
    status=ok
  else
    status=CRASHED
    failed+=("$t")
    tail -n 40 "$log" >&2
  fi
  execs=$(awk '/stat::number_of_executed_units/ { print $2 }' "$log" | tail -n 1)
  cov=$(grep -Eo 'cov: [0-9]+' "$log" | tail -n 1 || true)
  echo "fuzz $t: ${execs:-?} executions in ${secs}s, ${cov:-cov: ?}, corpus $(ls "corpus/$t" | wc -l): $status"
done
if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz: crashes in ${failed[*]} (inputs in fuzz/artifacts/)" >&2
  exit 1
fi
