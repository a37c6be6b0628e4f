//! The gateway's request parsing: a `POST /v4/hash` body.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    hashsweep_fuzz::gateway_request(data);
});
