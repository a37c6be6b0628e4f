//! `--circl`: CIRCL hashlookup asked before the MetaDefender budget. The collector hands it
//! the digests that would go to the service (after the caches and the local sets), by their
//! SHA-1 (MD5 when SHA-1 is not computed), in chunks of [`CHUNK`]; what CIRCL knows and no
//! source flags is `known_good` (`source: circl`) and costs no budget; what it knows and a
//! source flags (`KnownMalicious`) goes to the service before anything else; the rest goes on
//! as it came. With a `--known-good` Bloom filter (CIRCL's) only its hits are sent (CIRCL's
//! "hybrid" strategy: a filter has no false negatives, so a miss is not in CIRCL either).
//!
//! CIRCL's answers, found and not found, are kept in the cache by CIRCL's URL (see
//! `hashsweep_cache::circl`): a digest answered by an earlier run within the answer's TTL is
//! not asked again, and its answer counts as if it had been.
//!
//! An outage or a throttle costs only CIRCL's own answers: its digests, and every later one
//! the cache does not answer, go to the service as if `--circl` were not given, and the run
//! says so once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use super::plan::Rank;
use hashsweep_cache::Cache;
use hashsweep_core::digest::{Digest, DigestHash};
pub use hashsweep_lookup::circl::CirclCounts as CirclReport;
use hashsweep_lookup::circl::{CHUNK, CirclAnswers, CirclClient, CirclRecord};

/// The collector's CIRCL state.
pub(super) struct CirclStage {
    client: Arc<CirclClient>,
    /// Only Bloom-filter hits are asked (a filter is given).
    pub(super) only_bloom_hits: bool,
    /// First-seen digests (the service's key) → the digest CIRCL is asked by.
    ask: HashMap<Digest, Digest, DigestHash>,
    pending: Vec<(Digest, Digest, Rank)>,
    /// CIRCL's records, by the service's key.
    pub(super) answers: HashMap<Digest, CirclRecord, DigestHash>,
    pub(super) report: CirclReport,
}

impl CirclStage {
    pub(super) fn new(client: Arc<CirclClient>, only_bloom_hits: bool) -> CirclStage {
        CirclStage {
            client,
            only_bloom_hits,
            ask: HashMap::default(),
            pending: Vec::new(),
            answers: HashMap::default(),
            report: CirclReport::default(),
        }
    }

    /// A first-seen digest CIRCL may be asked about, by `by` (its SHA-1 or MD5).
    pub(super) fn note(&mut self, key: Digest, by: Digest) {
        self.ask.insert(key, by);
    }

    /// Hold `key` for CIRCL if it is to be asked; `false` when it goes on to the service.
    /// After an outage it is still held, for the cache's answer only.
    pub(super) fn hold(&mut self, key: Digest, rank: Rank) -> bool {
        match self.ask.remove(&key) {
            Some(by) => {
                self.pending.push((key, by, rank));
                true
            }
            None => false,
        }
    }

    pub(super) fn full(&self) -> bool {
        self.pending.len() >= CHUNK
    }

    /// Settle what is held: from the cache's answers that still stand at `now`, then by
    /// asking CIRCL about the rest (unless it failed earlier in the run), whose answers the
    /// cache keeps. Returns what the service is still to be asked about, with the rank to ask
    /// it by.
    pub(super) fn flush(&mut self, cache: Option<&Cache>, now: SystemTime) -> Vec<(Digest, Rank)> {
        let pending = std::mem::take(&mut self.pending);
        if pending.is_empty() {
            return Vec::new();
        }
        let service = self.client.base();
        let by: Vec<Digest> = pending.iter().map(|p| p.1).collect();
        // A failed read asks CIRCL instead (counted by the cache, told once).
        let mut settled: HashMap<Digest, Option<CirclRecord>> = cache
            .and_then(|c| c.get_circl(service, &by, now).ok())
            .unwrap_or_default();
        self.report.cached += pending
            .iter()
            .filter(|p| settled.contains_key(&p.1))
            .count() as u64;
        let mut ask: Vec<Digest> = by
            .iter()
            .copied()
            .filter(|d| !settled.contains_key(d))
            .collect();
        ask.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        ask.dedup();
        if !ask.is_empty() && self.report.error.is_none() {
            let a = self.client.lookup(&ask);
            self.learn(&a, cache, now);
            settled.extend(a.not_found.iter().map(|d| (*d, None)));
            settled.extend(a.found.into_iter().map(|(d, r)| (d, Some(r))));
        }
        let mut onward = Vec::new();
        for (key, by, rank) in pending {
            match settled.get(&by) {
                Some(Some(r)) if r.known_malicious.is_none() => {
                    self.report.found += 1;
                    self.report.known += 1;
                    self.answers.insert(key, r.clone());
                }
                Some(Some(r)) => {
                    // Flagged by CIRCL's sources: the service first.
                    self.report.found += 1;
                    self.report.flagged += 1;
                    self.answers.insert(key, r.clone());
                    onward.push((key, Rank::FLAGGED_ELSEWHERE));
                }
                // Not known (a Bloom hit that was a false positive takes its own rank back).
                Some(None) => {
                    self.report.not_found += 1;
                    onward.push((key, rank.unknown_elsewhere()));
                }
                // Not answered: it goes on as it came.
                None => {
                    self.report.unanswered += 1;
                    onward.push((key, rank));
                }
            }
        }
        onward
    }

    /// At the end of a run: the digests noted for CIRCL that never came to it (the verdict
    /// cache answered them) take a flagged record from CIRCL's cached answers, so that their
    /// records say who flags them night after night. Only flagged ones: a record that merely
    /// knows the file never overrides the service's answer.
    pub(super) fn recall(&mut self, cache: Option<&Cache>, now: SystemTime) {
        let Some(cache) = cache.filter(|_| !self.ask.is_empty()) else {
            return;
        };
        let Ok(flagged) = cache.flagged_circl(self.client.base(), now) else {
            return;
        };
        for (key, by) in self.ask.drain() {
            if let Some(r) = flagged.get(&by) {
                self.report.cached += 1;
                self.report.found += 1;
                self.report.flagged += 1;
                self.answers.insert(key, r.clone());
            }
        }
    }

    /// Count one lookup and keep its answers (found and not found) for later runs.
    fn learn(&mut self, a: &CirclAnswers, cache: Option<&Cache>, now: SystemTime) {
        self.report.asked += (a.found.len() + a.not_found.len() + a.failed.len()) as u64;
        self.report.requests += a.requests;
        if let Some(e) = &a.error {
            self.report
                .error
                .get_or_insert_with(|| hashsweep_core::ErrorChain(e).to_string());
        }
        if let Some(c) = cache {
            let found: Vec<(Digest, &CirclRecord)> = a.found.iter().map(|(d, r)| (*d, r)).collect();
            // A cache that cannot be written costs the next run a question, not this run an
            // answer (counted by the cache, told once).
            let _ = c.put_circl(self.client.base(), &found, &a.not_found, now);
        }
    }
}
