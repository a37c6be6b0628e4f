//! Dedup stage: one lookup per distinct digest, however many paths share it.

use std::collections::HashSet;

use crate::digest::Digest;

/// Remembers which digests have already been handed to the batcher.
#[derive(Debug, Default)]
pub struct Dedup {
    seen: HashSet<Digest>,
}

impl Dedup {
    /// True the first time a digest is seen: the caller should look it up.
    pub fn first_sighting(&mut self, d: Digest) -> bool {
        self.seen.insert(d)
    }

    /// Number of distinct digests seen.
    pub fn distinct(&self) -> usize {
        self.seen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_sighting_is_not_new() {
        let mut d = Dedup::default();
        let a = Digest::Sha256([1; 32]);
        assert!(d.first_sighting(a));
        assert!(!d.first_sighting(a));
        assert!(d.first_sighting(Digest::Sha256([2; 32])));
        assert_eq!(d.distinct(), 2);
    }
}
