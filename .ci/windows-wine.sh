#!/usr/bin/env bash
# Sets up building and running x86_64-pc-windows-gnu binaries here: MinGW links them, Wine runs
# them (cargo's runner), so `cargo test --target x86_64-pc-windows-gnu` runs the tests on Windows
# APIs. Prints the environment to use:   eval "$(.ci/windows-wine.sh)"
# (A copy of the project tools' windows-wine.sh, so CI needs nothing outside the repository.)
# Debian 12's Wine 8 lacks bcryptprimitives.dll (ProcessPrng), which Rust's std imports for
# randomness; a six-line stand-in built from RtlGenRandom is put into the Wine prefix.
set -euo pipefail
prefix=${WINEPREFIX:-${XDG_CACHE_HOME:-$HOME/.cache}/hashsweep-wine}
need=()
command -v x86_64-w64-mingw32-gcc >/dev/null 2>&1 || need+=(gcc-mingw-w64-x86-64)
[ -x /usr/lib/wine/wine64 ] || need+=(wine64)
if [ "${#need[@]}" -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}"; } >&2
fi
rustup target list --installed 2>/dev/null | grep -qx x86_64-pc-windows-gnu || rustup target add x86_64-pc-windows-gnu >&2
export WINEPREFIX=$prefix WINEDEBUG=-all
if [ ! -f "$prefix/drive_c/windows/system32/bcryptprimitives.dll" ]; then
  mkdir -p "$prefix"
  /usr/lib/wine/wine64 cmd /c exit >/dev/null 2>&1 || true   # creates the prefix
  tmp=$(mktemp -d)
  printf '%s\n' '#include <windows.h>' '#include <ntsecapi.h>' \
    'BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) { return RtlGenRandom(data, (ULONG)len); }' > "$tmp/bcp.c"
  printf '%s\n' 'LIBRARY bcryptprimitives' 'EXPORTS' 'ProcessPrng' > "$tmp/bcp.def"
  x86_64-w64-mingw32-gcc -shared -O2 -o "$prefix/drive_c/windows/system32/bcryptprimitives.dll" \
    "$tmp/bcp.c" "$tmp/bcp.def" -ladvapi32
  rm -rf "$tmp"
fi
cat <<ENV
export WINEPREFIX='$prefix' WINEDEBUG=-all
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=x86_64-w64-mingw32-gcc
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER=/usr/lib/wine/wine64
ENV
