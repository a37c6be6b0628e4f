//! Dedup stage: one lookup per distinct digest, however many paths share it, and the place
//! each distinct digest's outcome is kept once it is answered.
//!
//! The table maps each digest to a 4-byte index; outcomes live in a plain vector beside it,
//! grown only as answers arrive. At a million distinct digests the table's power-of-two growth
//! doubles whatever each slot holds, so the slot is kept small and answers are not boxed (a
//! box per answer cost more in allocator overhead and fragmentation than the answer itself).

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use hashsweep_core::digest::Digest;
use hashsweep_lookup::HashOutcome;

/// The table is split in shards by the digest's first byte, so growing it never needs the
/// old and the new table of the whole set in memory at once (a single table at a million
/// digests briefly held both, 43 MB + 86 MB).
const SHARDS: usize = 16;

#[derive(Debug, Default)]
pub struct Dedup {
    shards: [HashMap<Digest, u32>; SHARDS],
    distinct: usize,
    outcomes: Vec<Option<HashOutcome>>,
    answered: usize,
    /// Answers that came from the cache, not from this run's lookups: when the service gave
    /// each (unix seconds) and whether it is stale (due for a refresh that did not happen).
    /// Digests answered in this run are not here.
    aged: HashMap<Digest, Aged>,
}

/// The date of an answer kept from an earlier run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Aged {
    /// When the service gave it (unix seconds).
    pub answered_at: i64,
    /// Older than its TTL: the path keeps it until a refresh.
    pub stale: bool,
}

impl Dedup {
    fn shard(d: &Digest) -> usize {
        usize::from(d.as_bytes()[0]) % SHARDS
    }

    /// True the first time a digest is seen: the caller should look it up.
    pub fn first_sighting(&mut self, d: Digest) -> bool {
        let next = self.distinct as u32;
        match self.shards[Self::shard(&d)].entry(d) {
            Entry::Vacant(v) => {
                v.insert(next);
                self.distinct += 1;
                true
            }
            Entry::Occupied(_) => false,
        }
    }

    /// Keep the outcome for `d` (replacing any earlier one).
    pub fn answer(&mut self, d: Digest, outcome: HashOutcome) {
        self.first_sighting(d);
        let i = self.shards[Self::shard(&d)][&d] as usize;
        if self.outcomes.len() <= i {
            self.outcomes.resize_with(i + 1, || None);
        }
        if self.outcomes[i].is_none() {
            self.answered += 1;
        }
        self.outcomes[i] = Some(outcome);
    }

    /// An answer from the cache: keep it with its date (replacing any outcome).
    pub fn answer_aged(&mut self, d: Digest, answer: hashsweep_lookup::Answer, aged: Aged) {
        self.answer(d, Ok(answer));
        self.aged.insert(d, aged);
    }

    /// An outcome of this run's lookup. A failed refresh (an error, or not asked after all)
    /// leaves the answer kept from the cache in place: nothing learned is lost.
    pub fn answer_looked_up(&mut self, d: Digest, outcome: HashOutcome) {
        if outcome.is_err() && self.aged.contains_key(&d) {
            return;
        }
        self.aged.remove(&d);
        self.answer(d, outcome);
    }

    /// When an answer kept from the cache was given; `None` for one from this run's lookups
    /// (and for digests without an answer).
    pub fn aged(&self, d: &Digest) -> Option<Aged> {
        self.aged.get(d).copied()
    }

    /// The outcome for `d`, once answered.
    pub fn outcome(&self, d: &Digest) -> Option<&HashOutcome> {
        let i = *self.shards[Self::shard(d)].get(d)? as usize;
        self.outcomes.get(i)?.as_ref()
    }

    /// Number of distinct digests seen.
    pub fn distinct(&self) -> usize {
        self.distinct
    }

    /// Number of distinct digests with an outcome.
    pub fn answered(&self) -> usize {
        self.answered
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hashsweep_lookup::LookupError;

    #[test]
    fn second_sighting_is_not_new_and_answers_are_kept_once() {
        let mut d = Dedup::default();
        let a = Digest::Sha256([1; 32]);
        assert!(d.first_sighting(a));
        assert!(!d.first_sighting(a));
        assert!(d.first_sighting(Digest::Sha256([2; 32])));
        assert_eq!(d.distinct(), 2);
        assert!(d.outcome(&a).is_none());
        d.answer(a, Err(LookupError::Transport("x".into())));
        d.answer(a, Err(LookupError::MissingEntry));
        assert_eq!(d.answered(), 1);
        assert_eq!(d.outcome(&a), Some(&Err(LookupError::MissingEntry)));
    }
}
