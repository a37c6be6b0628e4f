//! Report reading for `diff` and baselines: JSON, NDJSON and CSV reports.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    hashsweep_fuzz::report_read(data);
});
