//! DCSO Bloom filters: any bytes as a filter, and built filters read back.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    hashsweep_fuzz::bloom(data);
});
