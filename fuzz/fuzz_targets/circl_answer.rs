//! CIRCL hashlookup's bulk answers.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    hashsweep_fuzz::circl_answer(data);
});
