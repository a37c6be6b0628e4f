//! The gateway's upload requests: the intent body and the `filename` header.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    hashsweep_fuzz::gateway_upload(data);
});
