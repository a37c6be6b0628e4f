//! The xz walker on arbitrary bytes (nested archives inside it opened too).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    hashsweep_fuzz::archive(data, Some(hashsweep::scan::archive::Format::Xz));
});
