//! Known files: hash lists and sets the user gives (`--known-good`, `--known-bad`), and what
//! they say about a file before anything is asked of the service.
//!
//! [`hashlist`] reads single lines (sha256sum, md5sum, bare hashes); [`hashset`] loads whole
//! lists into compact sorted tables, indexed once beside the cache; [`rds`] reads NSRL RDSv3
//! databases into such tables; [`LocalSets`] classifies a file's digests against the good and
//! bad sets. [`packages`] reads the system's own package databases (dpkg, rpm, apk, pacman):
//! what each file should be, by path.

pub mod bloom;
mod error;
pub mod hashlist;
pub mod hashset;
pub mod ioc;
pub mod packages;
pub mod rds;
mod stamp;

pub use hashset::{HashSet, Match};
use hashsweep_core::digest::Digests;

/// Local hash sets: a digest in `good` is `known_good` and not sent; one in `bad` is
/// `infected` with source `local`, sent only with `--also-lookup`.
pub struct LocalSets {
    pub good: HashSet,
    pub bad: HashSet,
    pub also_lookup: bool,
}

/// What the local sets say about one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Local<'a> {
    /// In a `--known-good` set: how (a list, or an NSRL RDS package and its application type).
    Good(Match<'a>),
    Bad,
}

impl LocalSets {
    /// Bad wins over good; any computed digest of the file may match.
    pub fn classify(&self, d: &Digests) -> Option<Local<'_>> {
        if self.bad.find(d).is_some() {
            Some(Local::Bad)
        } else {
            self.good.find(d).map(Local::Good)
        }
    }

    /// Whether a `--known-good` Bloom filter (CIRCL hashlookup's) probably holds the file's
    /// SHA-1: its lookup goes last in the budget's order, and its record says `circl-bloom`.
    pub fn circl_bloom(&self, d: &Digests) -> bool {
        self.good.bloom_hit(d).is_some()
    }

    /// Whether a file with this classification is sent to the service.
    pub fn wants_lookup(&self, l: Option<Local<'_>>) -> bool {
        match l {
            None => true,
            Some(Local::Good(_)) => false,
            Some(Local::Bad) => self.also_lookup,
        }
    }
}
