#!/usr/bin/env bash
# Generates what the .deb installs beside the binary, from the binary itself (so the man pages
# and completions match its --help):   packaging/assets.sh target/release/hashsweep target/assets
# Writes OUT/man/*.1.gz (hashsweep(1) and one page per subcommand) and OUT/completions/
# {hashsweep.bash,_hashsweep,hashsweep.fish}. `cargo deb --no-build` then packs them (Cargo.toml's
# [package.metadata.deb] lists them).
set -euo pipefail
bin=${1:?usage: packaging/assets.sh BINARY OUTDIR}
out=${2:?usage: packaging/assets.sh BINARY OUTDIR}
rm -rf "$out/man" "$out/completions"
mkdir -p "$out/man" "$out/completions"
"$bin" man | gzip -9n >"$out/man/hashsweep.1.gz"
# The subcommands are the ones hashsweep(1) lists ("hashsweep\-scan(1)" lines).
for sub in $("$bin" man | sed -n 's/^hashsweep\\-\(.*\)(1)$/\1/p' | sed 's/\\-/-/g'); do
    "$bin" man "$sub" | gzip -9n >"$out/man/hashsweep-$sub.1.gz"
done
"$bin" completions bash >"$out/completions/hashsweep.bash"
"$bin" completions zsh >"$out/completions/_hashsweep"
"$bin" completions fish >"$out/completions/hashsweep.fish"
