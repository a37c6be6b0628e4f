//! The answer cache: a service's answers by digest, with the dates a sweep needs (first
//! answered, last answered, last used) and engine details kept as [`DetailsUse`] says.

use super::{Cache, CacheError, DetailsUse, bump, sql_err, unix_secs};
use hashsweep_core::digest::Digest;
use hashsweep_core::sync::lock;
use hashsweep_lookup::verdict::Verdict;
use hashsweep_lookup::{Answer, EngineResult};
use rusqlite::{OptionalExtension, TransactionBehavior, params};
use std::collections::HashMap;
use std::time::{Duration, SystemTime};

const SELECT_VERDICT: &str = "SELECT scan_result_i, total_detected_avs, data_id, looked_up_at,
     details, hosts, first_answered_at, used_at FROM verdicts
     WHERE service = ?1 AND algo = ?2 AND digest = ?3";

/// A new answer replaces the last one; the date the digest was first answered stays.
const UPSERT_VERDICT: &str = "INSERT INTO verdicts
     (service, algo, digest, scan_result_i, total_detected_avs, verdict, data_id, looked_up_at,
      details, hosts, first_answered_at, used_at)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?8, ?8)
     ON CONFLICT (service, algo, digest) DO UPDATE SET
       scan_result_i = excluded.scan_result_i,
       total_detected_avs = excluded.total_detected_avs,
       verdict = excluded.verdict,
       data_id = excluded.data_id,
       looked_up_at = excluded.looked_up_at,
       details = excluded.details,
       hosts = excluded.hosts,
       used_at = excluded.used_at,
       first_answered_at = min(first_answered_at, excluded.first_answered_at)";

/// A cached answer with its dates, as a sweep sees it (see [`Cache::get_answers`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedAnswer {
    pub answer: Answer,
    /// When the service gave this answer (unix seconds).
    pub looked_up_at: i64,
    /// When the service first answered this digest (unix seconds).
    pub first_answered_at: i64,
    /// False when the answer cannot stand for this run as it is (it was asked without the
    /// engine details this run needs): it is kept, but due for a refresh whatever its age.
    pub complete: bool,
}

/// One verdict row as read.
struct AnswerRow {
    pub(super) answer: Answer,
    pub(super) looked_up_at: i64,
    pub(super) first_answered_at: i64,
    pub(super) used_at: i64,
    /// Whether its details serve this cache's [`DetailsUse`].
    pub(super) serves: bool,
}

impl AnswerRow {
    /// The answer's age at `now`; `None` for a row dated in the future (the clock went back),
    /// whose age is not known.
    pub(super) fn age(&self, now: i64) -> Option<Duration> {
        u64::try_from(now.checked_sub(self.looked_up_at)?)
            .ok()
            .map(Duration::from_secs)
    }
}

impl From<AnswerRow> for CachedAnswer {
    fn from(r: AnswerRow) -> CachedAnswer {
        CachedAnswer {
            answer: r.answer,
            looked_up_at: r.looked_up_at,
            first_answered_at: r.first_answered_at,
            complete: r.serves,
        }
    }
}

impl Cache {
    /// The cached answers for these digests that have not expired at `now` under this cache's
    /// [`Ttls`], with their engine details as this cache's [`DetailsUse`] says.
    pub fn get_verdicts(
        &self,
        digests: &[Digest],
        now: SystemTime,
    ) -> Result<HashMap<Digest, Answer>, CacheError> {
        let r = self.try_get_verdicts(digests, now);
        self.noted(r)
    }

    fn try_get_verdicts(
        &self,
        digests: &[Digest],
        now: SystemTime,
    ) -> Result<HashMap<Digest, Answer>, CacheError> {
        let now = unix_secs(now);
        let mut out = HashMap::with_capacity(digests.len());
        for (d, row) in self.read_answers(digests)? {
            let fresh = row.age(now).is_some_and(|age| {
                self.ttls
                    .for_verdict(&row.answer.verdict())
                    .is_some_and(|ttl| age < ttl)
            });
            if fresh && row.serves {
                out.insert(d, row.answer);
            }
        }
        bump(&self.counters.verdict_hits, out.len() as u64);
        bump(
            &self.counters.verdict_misses,
            (digests.len() as u64).saturating_sub(out.len() as u64),
        );
        Ok(out)
    }

    /// Every answer this cache's service gave for these digests, whatever its age: a sweep
    /// keeps a path's last answer until it is refreshed (see [`CachedAnswer`]). Rows a sweep
    /// has not used for [`crate::maintain::TOUCH_AFTER`] are dated now, so pruning keeps them.
    pub fn get_answers(
        &self,
        digests: &[Digest],
        now: SystemTime,
    ) -> Result<HashMap<Digest, CachedAnswer>, CacheError> {
        let r = self.try_get_answers(digests, now);
        self.noted(r)
    }

    fn try_get_answers(
        &self,
        digests: &[Digest],
        now: SystemTime,
    ) -> Result<HashMap<Digest, CachedAnswer>, CacheError> {
        let now = unix_secs(now);
        let rows = self.read_answers(digests)?;
        let touch_before = now.saturating_sub(crate::maintain::TOUCH_AFTER.as_secs() as i64);
        let touch: Vec<Digest> = rows
            .iter()
            .filter(|(_, r)| r.used_at < touch_before)
            .map(|(d, _)| *d)
            .collect();
        // Dating is for pruning only: a cache that cannot be written still serves its answers
        // (the failure is counted and told once, like any other).
        if !touch.is_empty() {
            let r = self.try_touch_answers(&touch, now);
            let _ = self.noted(r);
        }
        let hits = rows.len() as u64;
        bump(&self.counters.verdict_hits, hits);
        bump(
            &self.counters.verdict_misses,
            (digests.len() as u64).saturating_sub(hits),
        );
        Ok(rows.into_iter().map(|(d, r)| (d, r.into())).collect())
    }

    /// Date these answers as used by a sweep at `now` (unix seconds).
    fn try_touch_answers(&self, digests: &[Digest], now: i64) -> Result<(), CacheError> {
        let mut conn = lock(&self.writer);
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql_err(&self.path, "starting a write"))?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "UPDATE verdicts SET used_at = ?1
                     WHERE service = ?2 AND algo = ?3 AND digest = ?4",
                )
                .map_err(sql_err(&self.path, "preparing an answer's date"))?;
            for d in digests {
                stmt.execute(params![now, self.service, d.algo().name(), d.as_bytes()])
                    .map_err(sql_err(&self.path, "dating an answer"))?;
            }
        }
        tx.commit()
            .map_err(sql_err(&self.path, "committing the answers' dates"))
    }

    /// The rows of this cache's service for these digests, in one read transaction.
    fn read_answers(&self, digests: &[Digest]) -> Result<Vec<(Digest, AnswerRow)>, CacheError> {
        let mut conn = self.reader()?;
        // One read transaction: one snapshot and one lock for the whole batch.
        let tx = conn
            .transaction()
            .map_err(sql_err(&self.path, "starting a read"))?;
        let mut out = Vec::with_capacity(digests.len());
        {
            let mut stmt = tx
                .prepare_cached(SELECT_VERDICT)
                .map_err(sql_err(&self.path, "preparing a verdict lookup"))?;
            for d in digests {
                let row = stmt
                    .query_row(params![self.service, d.algo().name(), d.as_bytes()], |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, i64>(1)?,
                            r.get::<_, Option<String>>(2)?,
                            r.get::<_, i64>(3)?,
                            r.get::<_, Option<String>>(4)?,
                            r.get::<_, Option<u32>>(5)?,
                            r.get::<_, i64>(6)?,
                            r.get::<_, i64>(7)?,
                        ))
                    })
                    .optional()
                    .map_err(sql_err(&self.path, "looking up a verdict"))?;
                let Some((code, total, data_id, at, details, hosts, first, used)) = row else {
                    continue;
                };
                // A verdict that is never cached (a row from a bug or another tool) is no
                // answer at all.
                let verdict = Verdict::from_code(code, Some(total));
                if self.ttls.for_verdict(&verdict).is_none() {
                    continue;
                }
                let served = self.served_details(details.as_deref());
                out.push((
                    *d,
                    AnswerRow {
                        serves: served.is_some(),
                        answer: Answer {
                            scan_result_i: code,
                            total_detected_avs: total,
                            data_id: data_id.map(String::into_boxed_str),
                            details: served.flatten(),
                            hosts,
                        },
                        looked_up_at: at,
                        first_answered_at: first,
                        used_at: used,
                    },
                ));
            }
        }
        // Read only: dropping the transaction ends it.
        drop(tx);
        Ok(out)
    }

    /// Store answers looked up at `now`, all in one transaction. Verdicts that are not an
    /// answer (error, skipped, not looked up) are refused. Returns the number written.
    pub fn put_verdicts(
        &self,
        answers: &[(Digest, Answer)],
        now: SystemTime,
    ) -> Result<usize, CacheError> {
        let r = self.try_put_verdicts(answers, now);
        self.noted(r)
    }

    fn try_put_verdicts(
        &self,
        answers: &[(Digest, Answer)],
        now: SystemTime,
    ) -> Result<usize, CacheError> {
        let now = unix_secs(now);
        let mut conn = lock(&self.writer);
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql_err(&self.path, "starting a write"))?;
        let mut written = 0;
        {
            let mut stmt = tx
                .prepare_cached(UPSERT_VERDICT)
                .map_err(sql_err(&self.path, "preparing a verdict write"))?;
            for (d, a) in answers {
                if self.ttls.for_verdict(&a.verdict()).is_none() {
                    continue;
                }
                stmt.execute(params![
                    self.service,
                    d.algo().name(),
                    d.as_bytes(),
                    a.scan_result_i,
                    a.total_detected_avs,
                    a.verdict().to_string(),
                    a.data_id,
                    now,
                    self.stored_details(a),
                    a.hosts
                ])
                .map_err(sql_err(&self.path, "writing a verdict"))?;
                written += 1;
            }
        }
        // An answered digest is no longer owed to a later run.
        {
            let mut stmt = tx
                .prepare_cached("DELETE FROM deferred WHERE algo = ?1 AND digest = ?2")
                .map_err(sql_err(&self.path, "preparing a backlog update"))?;
            for (d, _) in answers {
                stmt.execute(params![d.algo().name(), d.as_bytes()])
                    .map_err(sql_err(&self.path, "updating the backlog"))?;
            }
        }
        tx.commit()
            .map_err(sql_err(&self.path, "committing verdicts"))?;
        bump(&self.counters.verdicts_written, written as u64);
        Ok(written)
    }
}

impl Cache {
    /// A row's `details` column as this cache serves it: `None` when the row does not serve
    /// at all (a plain answer where details are required), else the answer's `details`.
    /// A column that does not decode (a damaged row) reads as an answer without details.
    fn served_details(&self, column: Option<&str>) -> Option<Option<Box<[EngineResult]>>> {
        let stored: Option<Box<[EngineResult]>> =
            column.and_then(|text| serde_json::from_str(text).ok());
        match self.details {
            DetailsUse::AsStored => Some(stored),
            DetailsUse::Ignored => Some(None),
            DetailsUse::Required => stored.map(|list| (!list.is_empty()).then_some(list)),
        }
    }

    /// The `details` column for an answer: its engine results as JSON, `[]` for an answer
    /// asked with details that had none, NULL for one asked without.
    fn stored_details(&self, a: &Answer) -> Option<String> {
        match (&a.details, self.details) {
            (Some(list), _) => serde_json::to_string(list).ok(),
            (None, DetailsUse::Required) => Some("[]".to_string()),
            (None, _) => None,
        }
    }
}
