//! Dedup stage: one lookup per distinct digest, however many paths share it, and the place
//! each distinct digest's outcome is kept once it is answered.
//!
//! One table serves both: a digest seen for the first time gets an empty slot, the answer fills
//! it. Outcomes are boxed so an unanswered slot (offline, or still in flight) costs a pointer,
//! not a whole answer: at a million distinct digests the table's power-of-two growth makes the
//! slot size matter more than anything else held per file.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use crate::client::HashOutcome;
use crate::digest::Digest;

#[derive(Debug, Default)]
pub struct Dedup {
    slots: HashMap<Digest, Option<Box<HashOutcome>>>,
    answered: usize,
}

impl Dedup {
    /// True the first time a digest is seen: the caller should look it up.
    pub fn first_sighting(&mut self, d: Digest) -> bool {
        match self.slots.entry(d) {
            Entry::Vacant(v) => {
                v.insert(None);
                true
            }
            Entry::Occupied(_) => false,
        }
    }

    /// Keep the outcome for `d` (replacing any earlier one).
    pub fn answer(&mut self, d: Digest, outcome: HashOutcome) {
        let slot = self.slots.entry(d).or_default();
        if slot.is_none() {
            self.answered += 1;
        }
        *slot = Some(Box::new(outcome));
    }

    /// The outcome for `d`, once answered.
    pub fn outcome(&self, d: &Digest) -> Option<&HashOutcome> {
        self.slots.get(d).and_then(|s| s.as_deref())
    }

    /// Number of distinct digests seen.
    pub fn distinct(&self) -> usize {
        self.slots.len()
    }

    /// Number of distinct digests with an outcome.
    pub fn answered(&self) -> usize {
        self.answered
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_sighting_is_not_new_and_answers_are_kept_once() {
        let mut d = Dedup::default();
        let a = Digest::Sha256([1; 32]);
        assert!(d.first_sighting(a));
        assert!(!d.first_sighting(a));
        assert!(d.first_sighting(Digest::Sha256([2; 32])));
        assert_eq!(d.distinct(), 2);
        assert!(d.outcome(&a).is_none());
        d.answer(a, Err("x".into()));
        d.answer(a, Err("y".into()));
        assert_eq!(d.answered(), 1);
        assert_eq!(d.outcome(&a), Some(&Err("y".to_string())));
    }
}
