//! Lookup stage: asks the reputation service about batches of digests.
//!
//! [`batch`] cuts distinct digests into requests; `dispatch` runs the batcher and the lookup
//! workers; [`verdict`] names what an answer means.
//!
//! [`ReputationClient`] is the seam: the CLI and (later) the gateway talk to it; [`http`] is the
//! real client for MetaDefender's `POST /v4/hash`; [`protocol`] builds request bodies and reads
//! answers, transport-free so it can be tested and fuzzed on its own. Every digest asked gets an
//! outcome: an [`Answer`] or a [`LookupError`]. Nothing is guessed and a failure is never "clean".

pub mod batch;
pub mod budget;
pub mod circl;
mod dispatch;
pub mod error;
pub mod http;
pub mod protocol;
pub mod upload;
pub mod verdict;

use std::fmt;

use serde::Serialize;

use hashsweep_core::digest::Digest;

pub use batch::LookupBatch;
pub use budget::{Budget, Plan};
pub use dispatch::{DEFAULT_CONCURRENCY, LookupOptions, lookup_digests, spawn_lookup};
pub use error::{LookupError, Reason};
pub use http::{ClientConfig, HttpClient, Patience};
pub use verdict::Verdict;

/// The API key. Its `Debug` and `Display` never show it; only [`ApiKey::expose`] does, and only
/// the HTTP layer calls that.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// Trims surrounding white space (a key file usually ends in a newline). Empty is refused.
    pub fn new(raw: &str) -> Option<ApiKey> {
        let k = raw.trim();
        (!k.is_empty()).then(|| ApiKey(k.to_string()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey([redacted])")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// One engine's result, kept with `--details`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct EngineResult {
    pub engine: String,
    pub threat_found: String,
    pub scan_result_i: Option<i64>,
    pub def_time: Option<String>,
}

/// The service's answer for one digest. Kept once per distinct digest for the whole run, so it
/// is compact (56 bytes): the verdict is derived from the code, not stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub scan_result_i: i64,
    pub total_detected_avs: i64,
    pub data_id: Option<Box<str>>,
    pub details: Option<Box<[EngineResult]>>,
    /// On how many hosts of the fleet the digest is: `hashsweep_hosts`, sent by a gateway with
    /// `--prevalence` (never by the service). Not part of the verdict, not cached.
    pub hosts: Option<u32>,
}

impl Answer {
    /// The verdict word for this answer (see [`Verdict::from_code`]).
    pub fn verdict(&self) -> Verdict {
        Verdict::from_code(self.scan_result_i, Some(self.total_detected_avs))
    }
}

/// An answer, or why there is none.
pub type HashOutcome = Result<Answer, LookupError>;

/// Counters a client keeps about its traffic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientStats {
    pub requests: u64,
    pub retries: u64,
    pub throttled: u64,
}

/// Something that can look up batches of digests.
pub trait ReputationClient: Send + Sync {
    /// One outcome per digest of the batch, in any order; every digest appears exactly once.
    fn lookup(&self, batch: &LookupBatch) -> Vec<(Digest, HashOutcome)>;

    fn stats(&self) -> ClientStats;

    /// Why lookups stopped for the rest of the run (key refused, quota spent), if they did.
    fn halted(&self) -> Option<LookupError> {
        None
    }

    /// The key's budget as the service last stated it; `None` until an answer said.
    fn budget(&self) -> Option<Budget> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_redacted_in_debug_and_display() {
        let k = ApiKey::new(" s3cr3t-key\n").unwrap();
        assert_eq!(k.expose(), "s3cr3t-key");
        assert!(!format!("{k:?} {k}").contains("s3cr3t"));
        assert!(ApiKey::new(" \n").is_none());
    }
}
