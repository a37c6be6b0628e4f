//! The text package databases (dpkg, apk, pacman) as `--packages` reads them from a root.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    hashsweep_fuzz::package_db(data);
});
