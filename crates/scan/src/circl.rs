//! `--circl`: CIRCL hashlookup asked before the MetaDefender budget. The collector hands it
//! the digests that would go to the service (after the caches and the local sets), by their
//! SHA-1 (MD5 when SHA-1 is not computed), in chunks of [`CHUNK`]; what CIRCL knows and no
//! source flags is `known_good` (`source: circl`) and costs no budget; what it knows and a
//! source flags (`KnownMalicious`) goes to the service before anything else; the rest goes on
//! as it came. With a `--known-good` Bloom filter (CIRCL's) only its hits are sent (CIRCL's
//! "hybrid" strategy: a filter has no false negatives, so a miss is not in CIRCL either).
//!
//! An outage or a throttle costs only CIRCL's own answers: its digests, and every later one,
//! go to the service as if `--circl` were not given, and the run says so once.

use std::collections::HashMap;
use std::sync::Arc;

use super::plan::Rank;
use hashsweep_core::digest::{Digest, DigestHash};
use hashsweep_lookup::circl::{CHUNK, CirclClient, CirclRecord};

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

/// What `--circl` did in a run (for the summary).
#[derive(Debug, Clone, Default)]
pub struct CirclReport {
    pub asked: u64,
    pub requests: u64,
    pub known: u64,
    pub flagged: u64,
    /// Why CIRCL stopped answering, if it did (the rest went to the service).
    pub error: Option<String>,
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
    pub(super) fn hold(&mut self, key: Digest, rank: Rank) -> bool {
        if self.report.error.is_some() {
            return false;
        }
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

    /// Ask CIRCL about what is held; what the service is still to be asked about, with the
    /// rank to ask it by.
    pub(super) fn flush(&mut self) -> Vec<(Digest, Rank)> {
        let pending = std::mem::take(&mut self.pending);
        if pending.is_empty() {
            return Vec::new();
        }
        let by: Vec<Digest> = pending.iter().map(|p| p.1).collect();
        let a = self.client.lookup(&by);
        self.report.asked += by.len() as u64;
        self.report.requests += a.requests;
        if let Some(e) = a.error {
            self.report
                .error
                .get_or_insert_with(|| hashsweep_core::ErrorChain(&e).to_string());
        }
        let not_found: std::collections::HashSet<Digest> = a.not_found.iter().copied().collect();
        let mut onward = Vec::new();
        for (key, by, rank) in pending {
            match a.found.get(&by) {
                Some(r) if r.known_malicious.is_none() => {
                    self.report.known += 1;
                    self.answers.insert(key, r.clone());
                }
                Some(r) => {
                    // Flagged by CIRCL's sources: the service first.
                    self.report.flagged += 1;
                    self.answers.insert(key, r.clone());
                    onward.push((key, Rank::FLAGGED_ELSEWHERE));
                }
                // Not known (a Bloom hit that was a false positive takes its own rank back),
                // or not answered (it goes on as it came).
                None if not_found.contains(&by) => onward.push((key, rank.unknown_elsewhere())),
                None => onward.push((key, rank)),
            }
        }
        onward
    }
}
