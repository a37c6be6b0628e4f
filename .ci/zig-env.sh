#!/usr/bin/env bash
# Sets up cross-checking for macOS (and other targets) with cargo-zigbuild: zig serves as the C
# compiler and linker for the C parts of dependencies (ring, the bundled SQLite). Both come from
# PyPI into a virtual environment; rustup adds the Rust targets. Prints the environment to use:
#   eval "$(.ci/zig-env.sh)"; cargo-zigbuild check --target aarch64-apple-darwin
# (A copy of the project tools' zig-env.sh, so CI needs nothing outside the repository.)
# Linking a macOS binary needs Apple's SDK, which is not here: check and test-build only.
set -euo pipefail
venv=${ZIG_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/hashsweep-zig}
if [ ! -x "$venv/bin/cargo-zigbuild" ]; then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q ziglang cargo-zigbuild >&2
fi
for t in aarch64-apple-darwin x86_64-apple-darwin; do
  rustup target list --installed 2>/dev/null | grep -qx "$t" || rustup target add "$t" >&2
done
echo "export PATH='$venv/bin':\"\$PATH\""
