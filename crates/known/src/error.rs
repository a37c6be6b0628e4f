//! Why a `--known-good` / `--known-bad` source could not be loaded: one error for every kind
//! of source (hash lists, NSRL RDS, Bloom filters, IOC feeds), naming the file.

use std::io;
use std::path::PathBuf;

use super::bloom::BloomError;
use super::ioc::IocError;

/// Why a hash set could not be loaded. Lines without a digest are not errors: they are counted
/// (see `HashSet::skipped_lines`) and skipped.
#[derive(Debug, thiserror::Error)]
pub enum HashSetError {
    #[error("cannot open hash list {path}")]
    Open { path: PathBuf, source: io::Error },
    /// An SQLite file that SQLite cannot read (damaged, truncated, not really SQLite).
    #[error("{what} NSRL RDS database {path}")]
    Rds {
        path: PathBuf,
        what: &'static str,
        source: rusqlite::Error,
    },
    /// An SQLite database that is not an RDSv3 one (another program's database).
    #[error("{path} is {reason}")]
    NotRds { path: PathBuf, reason: String },
    /// A file whose header says DCSO Bloom filter, and that cannot be used as one.
    #[error(transparent)]
    Bloom(#[from] BloomError),
    /// A MISP, STIX, MalwareBazaar or ClamAV list that cannot be read.
    #[error(transparent)]
    Ioc(#[from] IocError),
    #[error("cannot read hash list {path} at line {line}")]
    Read {
        path: PathBuf,
        line: u64,
        source: io::Error,
    },
    /// Every line that was not blank, a comment or a header failed to parse: almost surely the
    /// wrong file, so it is refused rather than loaded as an empty set.
    #[error(
        "{path} holds no MD5, SHA-1 or SHA-256 digest ({skipped} lines skipped; line {line}: {reason})"
    )]
    NoDigests {
        path: PathBuf,
        skipped: u64,
        line: u64,
        reason: String,
    },
    /// A JSON file (a hashsweep report, most likely): no hash list is JSON, and a report says
    /// what was found, not what to trust, so it is refused rather than read for its digests.
    #[error(
        "{path} is {what}, not a hash list: a report lists what was found, not what to trust. \
         To use the digests of its clean files: jq -r 'select(.verdict == \"clean\") | .sha256' \
         REPORT.ndjson > good.sha256"
    )]
    Report { path: PathBuf, what: &'static str },
}
