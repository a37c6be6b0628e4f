//! Known files: hash lists and sets the user gives (`--known-good`, `--known-bad`), and what
//! they say about a file before anything is asked of the service.
//!
//! [`hashlist`] reads single lines (sha256sum, md5sum, bare hashes); [`hashset`] loads whole
//! lists into compact sorted tables, indexed once beside the cache; [`LocalSets`] classifies a
//! file's digests against the good and bad sets.

pub mod hashlist;
pub mod hashset;

use crate::digest::{Digest, Digests};
pub use hashset::HashSet;

/// Local hash sets: a digest in `good` is `known_good` and not sent; one in `bad` is
/// `infected` with source `local`, sent only with `--also-lookup`.
pub struct LocalSets {
    pub good: HashSet,
    pub bad: HashSet,
    pub also_lookup: bool,
}

/// What the local sets say about one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Local {
    Good,
    Bad,
}

impl LocalSets {
    /// Bad wins over good; any computed digest of the file may match.
    pub fn classify(&self, d: &Digests) -> Option<Local> {
        let all = [
            Some(Digest::Sha256(d.sha256)),
            d.md5.map(Digest::Md5),
            d.sha1.map(Digest::Sha1),
        ];
        let hit = |set: &HashSet| all.iter().flatten().any(|x| set.contains(x));
        if hit(&self.bad) {
            Some(Local::Bad)
        } else if hit(&self.good) {
            Some(Local::Good)
        } else {
            None
        }
    }

    /// Whether a file with this classification is sent to the service.
    pub fn wants_lookup(&self, l: Option<Local>) -> bool {
        match l {
            None => true,
            Some(Local::Good) => false,
            Some(Local::Bad) => self.also_lookup,
        }
    }
}
