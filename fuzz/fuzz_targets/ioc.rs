//! IOC lists of each kind: MISP event, restSearch and feed, STIX, MalwareBazaar, ClamAV.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    hashsweep_fuzz::ioc(data);
});
