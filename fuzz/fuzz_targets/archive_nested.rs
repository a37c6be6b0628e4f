//! Any archive, its format found by its first bytes, nested six levels deep at most.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    hashsweep_fuzz::archive(data, None);
});
