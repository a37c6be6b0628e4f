//! The vendor's answers: a bulk or detailed 200 body, an error body, and rate-limit headers.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    hashsweep_fuzz::vendor_answer(data);
});
