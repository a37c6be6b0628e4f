//! The vendor's file API answers: upload, poll, key information, a gateway's intent answer.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    hashsweep_fuzz::upload_answer(data);
});
