//! What the on-disk indexes of hash lists and NSRL databases share: a source file's stamp
//! (the version an index was built from) and the names of index files in the index directory.

use std::fs::{self, File};

use hashsweep_core::file::NamePattern;

/// What identifies one version of a source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Stamp(pub(super) [u64; 6]);

impl Stamp {
    pub(super) fn of(file: &File, m: &fs::Metadata) -> Stamp {
        Stamp(hashsweep_core::platform::stamp(file, m))
    }
}

/// Index files are `hashset-<16 hex>.idx`, written as `.hashset-<random>.tmp` first.
pub(super) const INDEX_NAME: (&str, &str) = ("hashset-", ".idx");
pub(super) const INDEX_TMP: (&str, &str) = (".hashset-", ".tmp");

/// The names of the files `HashSet::load` (and the RDS reader) writes in its index directory (indexes, and the
/// temp files they are written to), for a walk of a tree that holds that directory.
pub fn index_names() -> Vec<NamePattern> {
    [INDEX_NAME, INDEX_TMP]
        .into_iter()
        .map(|(start, end)| NamePattern::Around(start.into(), end.into()))
        .collect()
}
