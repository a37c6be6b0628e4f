#!/usr/bin/env bash
# Build cost of a commit, for comparing two (issue 29: the workspace split and the gateway
# feature). Each commit is checked out into its own folder with its own target directory, so
# every build is clean; then one file of the scan stage is touched and the build repeated
# (incremental). Prints wall and CPU seconds (user+sys: steadier than wall on a busy machine)
# and the release binary's size.
#
#   benches/build_times.sh COMMIT [COMMIT...]        # e.g. d8e29cc HEAD
#   FEATURES="--no-default-features" benches/build_times.sh HEAD
#
# Needs only cargo; run it on a quiet machine for wall times that mean something.
set -euo pipefail
repo=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)
work=${WORK:-$(mktemp -d)}
features=${FEATURES:-}
measure() { # label, command...
  local label=$1; shift
  local t; t=$(mktemp)
  /usr/bin/time -f "%e %U %S" -o "$t" "$@" >/dev/null 2>&1
  read -r wall user sys < "$t"
  printf "%-44s wall %7.1f s  cpu %7.1f s\n" "$label" "$wall" "$(awk "BEGIN { print $user + $sys }")"
}
for c in "$@"; do
  sha=$(git -C "$repo" rev-parse --short "$c")
  dir=$work/$sha
  rm -rf "$dir" && git -C "$repo" worktree prune && git -C "$repo" worktree add -q --detach "$dir" "$c"
  (
    cd "$dir"
    cargo fetch --locked >/dev/null 2>&1
    measure "$sha release, clean $features" cargo build --release --locked --bin hashsweep $features
    size=$(stat -c %s target/release/hashsweep)
    echo "$sha release binary: $size bytes ($(( size / 1024 / 1024 )) MiB) $features"
    measure "$sha dev, clean $features" cargo build --locked --bin hashsweep $features
    # One file of the scan stage, wherever it lives at this commit.
    f=crates/scan/src/dedup.rs
    [ -e "$f" ] || f=src/scan/dedup.rs
    echo "// touched" >> "$f"
    measure "$sha dev, incremental (touch $f) $features" cargo build --locked --bin hashsweep $features
    git checkout -q -- "$f"
  )
  git -C "$repo" worktree remove --force "$dir"
done
