//! Hash lists and sets from a file: every text format, and NSRL RDS (SQLite) when the bytes are one.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    hashsweep_fuzz::hashset(data);
});
