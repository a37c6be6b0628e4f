//! One line of a `sha256sum`-style list (`hashsweep hash -c`, `--known-*` lists).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    hashsweep_fuzz::hashlist_line(data);
});
