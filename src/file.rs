//! What the operating system says about a file, in the project's terms: its identity and
//! timestamps as `fstat` gave them ([`FileMeta`], the digest cache's key and the hard-link
//! detector's), and I/O errors described for a report line ([`describe_io`]).

use std::io;
use std::os::unix::fs::MetadataExt;

/// Identity and timestamps of a file as seen by `fstat` when it was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FileMeta {
    pub dev: u64,
    pub ino: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
}

impl FileMeta {
    pub fn of(m: &std::fs::Metadata) -> FileMeta {
        FileMeta {
            dev: m.dev(),
            ino: m.ino(),
            mtime_ns: nanos(m.mtime(), m.mtime_nsec()),
            ctime_ns: nanos(m.ctime(), m.ctime_nsec()),
        }
    }
}

/// Seconds and nanoseconds as one i64 of nanoseconds, saturating: a timestamp past 2262 (any
/// user can set one) must not overflow.
pub fn nanos(secs: i64, nsec: i64) -> i64 {
    secs.saturating_mul(1_000_000_000).saturating_add(nsec)
}

/// A short human description of an I/O error, without Rust's "(os error N)" noise.
pub fn describe_io(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => {
            let s = e.to_string();
            match s.find(" (os error") {
                Some(i) => s[..i].to_string(),
                None => format!("{s} (errno {code})"),
            }
        }
        None => e.to_string(),
    }
}
