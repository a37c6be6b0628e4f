//! rpm's package database byte by byte: a header blob, ndb `Packages.db`, Berkeley DB `Packages`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    hashsweep_fuzz::package_rpm(data);
});
