//! The collector: the stage on the calling thread that takes every result, answers a new digest
//! from the verdict cache or hands it to the lookup stage (within the budget's plan), and writes
//! new digests and answers to the cache in batches.

use super::dedup::Dedup;
use super::hash::{FileResult, FileStatus, Origin};
use super::plan::{Planner, Rank, Ranker};
use super::process::ProcessInfo;
use super::{MAINTENANCE_BUDGET, VERDICT_BATCH, current_budget};
use crate::progress::Progress;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use hashsweep_cache::{Cache, FileKey};
use hashsweep_core::digest::{Algo, Digest, DigestHash, Digests};
use hashsweep_core::file::FileKind;
use hashsweep_known::LocalSets;
use hashsweep_known::packages::{PackageCheck, PackageDb};
use hashsweep_lookup::batch::Feed;
use hashsweep_lookup::{Answer, HashOutcome, LookupError, Plan, ReputationClient};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The collector: runs on the calling thread, takes every result, hands each new digest to the
/// lookup stage (or answers it from the verdict cache), and writes new digests and verdicts
/// to the cache in batches.
pub(super) struct Collector<'a> {
    pub(super) algo: Algo,
    pub(super) files: Vec<FileResult>,
    pub(super) dedup: Dedup,
    pub(super) digest_tx: Option<Sender<Feed>>,
    pub(super) cache: Option<&'a Cache>,
    /// First-seen digests waiting for one batched verdict-cache lookup, with their best rank
    /// and how many paths hold them so far.
    pub(super) pending_verdicts: Vec<(Digest, Rank, u32)>,
    pub(super) local: Option<&'a LocalSets>,
    pub(super) packages: Option<&'a PackageDb>,
    pub(super) pending_rows: Vec<(FileKey, Digests, FileKind)>,
    /// With `--archives` and the cache: what was found inside the archives read.
    pub(super) archive_rows: Option<ArchiveRows>,
    pub(super) last_flush: Instant,
    pub(super) verdicts_cached: u64,
    /// Whether the user was told that the cache failed (once per run).
    pub(super) cache_warned: bool,
    pub(super) progress: &'a dyn Progress,
    /// The lookup budget's keeper and the order of risk (with lookups only).
    pub(super) budget: Option<BudgetKeeper>,
    /// Running programs' images by the path they are read through (`--processes`).
    pub(super) processes: &'a HashMap<Box<Path>, ProcessInfo>,
    /// The run's "now" for answers' ages (see `hashsweep_core::clock`).
    pub(super) now: SystemTime,
    /// `--max-age`: an answer older than this is no answer (see [`BudgetOptions::max_age`]).
    pub(super) max_age: Duration,
    /// `--circl`: CIRCL hashlookup, asked before the service.
    pub(super) circl: Option<crate::circl::CirclStage>,
}

/// What was found inside the archives read in this run, on its way to the cache, with the
/// settings it was found with.
pub(super) struct ArchiveRows {
    pub(super) options: String,
    pub(super) md5: bool,
    pub(super) sha1: bool,
    pub(super) pending: Vec<(FileKey, hashsweep_cache::ArchiveRow)>,
}

/// The lookup stage's side of the budget: who asks the service, and what is decided so far.
pub(super) struct BudgetKeeper {
    pub(super) client: Arc<dyn ReputationClient>,
    pub(super) planner: Planner,
    pub(super) ranker: Ranker,
    /// Digests handed to the lookup stage, and outcomes back from it.
    pub(super) sent: u64,
    pub(super) returned: u64,
    /// Ranks of what was sent, filled in when the plan is made.
    pub(super) ranks: HashMap<Digest, Rank, DigestHash>,
    pub(super) plan: Option<Plan>,
    /// What an earlier run heard of the budget, until this run hears for itself.
    pub(super) remembered: Option<hashsweep_lookup::Budget>,
}

impl Collector<'_> {
    /// One batch from a hash worker: an archive and its members come in the same batch.
    pub(super) fn take_batch(&mut self, results: Vec<FileResult>) {
        let start = self.files.len();
        results.into_iter().for_each(|r| self.take_file(r));
        self.remember_archives(start);
    }

    /// Keep what was found inside the archives read from disk among `files[start..]` (each
    /// followed by its members) for the cache; written with the digest rows.
    fn remember_archives(&mut self, start: usize) {
        let Some(rows) = self.archive_rows.as_mut() else {
            return;
        };
        let files = &self.files[start..];
        let mut i = 0;
        while i < files.len() {
            let f = &files[i];
            let members = files[i + 1..]
                .iter()
                .take_while(|m| m.container_member().is_some_and(|(c, _)| c == &*f.path))
                .count();
            if let FileStatus::Hashed {
                meta,
                warning: None,
                origin: Origin::Read,
                ..
            } = &f.status
                && let Some(row) = crate::remembered::to_row(f, &files[i + 1..i + 1 + members])
            {
                rows.pending
                    .push((FileKey::new(meta, f.size.unwrap_or(0)), row));
            }
            i += 1 + members;
        }
    }

    fn take_file(&mut self, res: FileResult) {
        if let FileStatus::Hashed {
            digests,
            meta,
            warning,
            origin,
            kind,
            rules,
        } = &res.status
        {
            let package = self.packages.and_then(|p| p.check(&res.path, digests));
            // The local sets decide a file they list; the package databases one they vouch
            // for (a match, unless --packages=verify-only).
            let wanted = match self.local.map(|l| (l, l.classify(digests))) {
                Some((l, c @ Some(_))) => l.wants_lookup(c),
                _ => !self.packages.is_some_and(|p| p.vouches(package.as_ref())),
            };
            let modified = package.is_some_and(|p| p.check == Some(PackageCheck::Modified));
            if let Some(key) = digests.get(self.algo)
                && wanted
                && self.digest_tx.is_some()
            {
                let running_deleted = self
                    .processes
                    .get(&res.path)
                    .is_some_and(|p| p.deleted && !p.library());
                // Known to CIRCL's filter: asked only with budget to spare.
                let circl = self.local.is_some_and(|l| l.circl_bloom(digests));
                let rank = |b: &BudgetKeeper| {
                    if running_deleted {
                        return Rank::RUNNING_DELETED;
                    }
                    if rules.as_deref().and_then(|r| r.hits()).is_some() {
                        return Rank::RULE_MATCH;
                    }
                    if modified {
                        return Rank::MODIFIED_PACKAGE;
                    }
                    let r = b
                        .ranker
                        .rank(&res.path, *kind, meta.mtime_ns, meta.ctime_ns);
                    if circl { r.known_elsewhere() } else { r }
                };
                if self.dedup.first_sighting(key) {
                    if let Some(c) = self.circl.as_mut()
                        && (circl || !c.only_bloom_hits)
                        && let Some(by) = digests
                            .sha1
                            .map(Digest::Sha1)
                            .or(digests.md5.map(Digest::Md5))
                    {
                        c.note(key, by);
                    }
                    let rank = self.budget.as_ref().map_or(Rank::from_code(0), rank);
                    if self.cache.is_some() {
                        // Asked of the verdict cache in batches (one read transaction each).
                        self.pending_verdicts.push((key, rank, 1));
                        if self.pending_verdicts.len() >= VERDICT_BATCH {
                            self.resolve_pending();
                        }
                    } else {
                        self.want(key, rank);
                    }
                } else if let Some(b) = self.budget.as_mut() {
                    // Another path holds it: its best rank counts, and it is not rare. It may
                    // still wait for the verdict cache, or be held for the plan.
                    let r = rank(b);
                    if let Some(p) = self.pending_verdicts.iter_mut().find(|p| p.0 == key) {
                        p.1 = p.1.min(r);
                        p.2 = p.2.saturating_add(1);
                    } else if b.planner.holds_any() {
                        b.planner.again(&key, r);
                    }
                }
            }
            // A member's (or a data stream's) digests are not the file's on disk: never a
            // digest-cache row.
            if !matches!(
                origin,
                Origin::Cache | Origin::Archive | Origin::ArchiveCache | Origin::Stream
            ) && warning.is_none()
                && self.cache.is_some()
            {
                self.pending_rows.push((
                    FileKey::new(meta, res.size.unwrap_or(0)),
                    *digests,
                    *kind,
                ));
                self.flush_digests(false);
            }
        }
        // Every path counts, hashed or not, so the count meets the walk's total (which has
        // no members of archives and no data streams: they are not walked).
        let hashed = matches!(res.status, FileStatus::Hashed { .. });
        let member = matches!(
            res.archive.as_deref(),
            Some(crate::archive::Inside::Member { .. })
        );
        if !member && !crate::hash::is_stream(&res) {
            self.progress
                .file_done(if hashed { res.size.unwrap_or(0) } else { 0 });
        }
        self.files.push(res);
    }

    /// Answer pending digests from the verdict cache; send the rest to the lookup stage. An
    /// answer on file that is fresh for its verdict and the file's kind answers the digest; an
    /// older one still answers it (stale) and the digest is offered for a refresh; one past
    /// `--max-age` answers nothing, and the digest is offered for a refresh that, if the
    /// budget does not reach it, leaves it `deferred`.
    pub(super) fn resolve_pending(&mut self) {
        if self.pending_verdicts.is_empty() {
            return;
        }
        let pending = std::mem::take(&mut self.pending_verdicts);
        let keys: Vec<Digest> = pending.iter().map(|p| p.0).collect();
        // A failed read asks the service instead (counted by the cache, told once).
        let mut hits = self
            .cache
            .and_then(|c| c.get_answers(&keys, self.now).ok())
            .unwrap_or_default();
        self.check_cache();
        let ttls = self.cache.map(Cache::ttls).unwrap_or_default();
        let now = hashsweep_lookup::budget::unix_secs(self.now) as i64;
        for (k, rank, paths) in pending {
            let Some(cached) = hits.remove(&k) else {
                self.want(k, rank);
                self.again(&k, rank, paths);
                continue;
            };
            // An answer dated in the future (the clock went back) has no known age: stale.
            let age = u64::try_from(now.saturating_sub(cached.looked_up_at))
                .ok()
                .filter(|_| cached.looked_up_at <= now)
                .map(Duration::from_secs);
            let fresh = cached.complete
                && age.is_some_and(|age| {
                    ttls.for_answer(&cached.answer.verdict(), rank.kind())
                        .is_some_and(|ttl| age < ttl)
                });
            let overdue = age.is_none_or(|age| age > self.max_age);
            if fresh {
                self.verdicts_cached += 1;
            }
            if !overdue {
                let aged = crate::dedup::Aged {
                    answered_at: cached.looked_up_at,
                    stale: !fresh,
                };
                self.dedup.answer_aged(k, cached.answer, aged);
            }
            if fresh {
                continue;
            }
            let Some(tx) = &self.digest_tx else { continue };
            if let Some(b) = self.budget.as_mut() {
                if b.planner
                    .offer_refresh(k, rank, cached.looked_up_at, overdue)
                {
                    b.sent += 1;
                    let _ = tx.send(Feed::Digest(k));
                }
                self.again(&k, rank, paths);
            }
        }
    }

    /// A digest offered for the plan is held by `paths` paths in all.
    pub(super) fn again(&mut self, d: &Digest, rank: Rank, paths: u32) {
        if let Some(b) = self.budget.as_mut() {
            for _ in 1..paths {
                b.planner.again(d, rank);
            }
        }
    }

    /// A digest needs the service: ask CIRCL first (`--circl`), or send it now, or hold it for
    /// the plan.
    pub(super) fn want(&mut self, d: Digest, rank: Rank) {
        if self.digest_tx.is_none() {
            return;
        }
        if let Some(c) = self.circl.as_mut()
            && c.hold(d, rank)
        {
            if c.full() {
                self.flush_circl();
            }
            return;
        }
        self.want_now(d, rank);
    }

    /// Ask CIRCL about the digests it holds; the ones it does not settle go on.
    pub(super) fn flush_circl(&mut self) {
        let Some(c) = self.circl.as_mut() else { return };
        for (d, rank) in c.flush(self.cache, self.now) {
            self.want_now(d, rank);
        }
        self.check_cache();
    }

    /// At the end of the walk, after the last [`Collector::flush_circl`]: flagged records
    /// for the digests the verdict cache answered (see `CirclStage::recall`).
    pub(super) fn recall_circl(&mut self) {
        if let Some(c) = self.circl.as_mut() {
            c.recall(self.cache, self.now);
        }
        self.check_cache();
    }

    /// [`Collector::want`] past CIRCL.
    fn want_now(&mut self, d: Digest, rank: Rank) {
        let Some(tx) = &self.digest_tx else { return };
        match self.budget.as_mut() {
            Some(b) => {
                if b.planner.offer(d, rank) {
                    b.sent += 1;
                    let _ = tx.send(Feed::Digest(d));
                } else if b.planner.take_flush() {
                    // The first digests went to learn the budget: send them now, not after
                    // the batch wait.
                    let _ = tx.send(Feed::Flush);
                }
            }
            None => {
                let _ = tx.send(Feed::Digest(d));
            }
        }
    }

    /// Answers came back: what they said about the budget may let held digests go. A round
    /// that got no answer says nothing about the budget, and a client stopped for the run is
    /// sent nothing more.
    fn learn_budget(&mut self, answered: bool) {
        let (Some(b), Some(tx)) = (self.budget.as_mut(), &self.digest_tx) else {
            return;
        };
        if b.client.halted().is_some() {
            return;
        }
        let budget = b.client.budget().or(b.remembered);
        if budget.is_none() && !answered {
            return;
        }
        for d in b.planner.learn(budget) {
            b.sent += 1;
            let _ = tx.send(Feed::Digest(d));
        }
    }

    /// The end of the walk: with digests held, wait for the answers to what was sent (so the
    /// budget is current), then ask the best of the held ones and defer the rest.
    pub(super) fn plan(
        &mut self,
        out_rx: &Receiver<Vec<(Digest, HashOutcome)>>,
        stop: &AtomicBool,
    ) {
        while let Some(b) = &self.budget
            && b.returned < b.sent
            && b.planner.holds_any()
            && !stop.load(Ordering::Relaxed)
        {
            match out_rx.recv_timeout(Duration::from_millis(100)) {
                Ok(batch) => self.take_outcomes(batch),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let Some(b) = self.budget.as_mut() else {
            return;
        };
        let planner = std::mem::replace(&mut b.planner, Planner::new(Some(0), 1));
        let held = planner.held();
        let history = match (self.cache, held.is_empty()) {
            (Some(c), false) => c.history(&held).unwrap_or_default(),
            _ => Default::default(),
        };
        let fleet = history.hosts;
        let earlier: HashMap<Digest, (Rank, i64)> = history
            .deferred
            .into_iter()
            .map(|(d, (r, since))| (d, (Rank::from_code(r), since)))
            .collect();
        let crate::plan::Decision {
            asked,
            deferred,
            overdue,
            plan,
            ranks,
        } = planner.finish(
            current_budget(&*b.client).or(b.remembered),
            &earlier,
            &fleet,
        );
        if let Some(tx) = &self.digest_tx {
            for d in &asked {
                b.sent += 1;
                let _ = tx.send(Feed::Digest(*d));
            }
        }
        b.ranks = ranks;
        if plan.needed > 0 {
            self.progress.note(&plan.human(self.now));
        }
        b.plan = Some(plan);
        let reason = match b.client.halted() {
            // The service said the day is spent: say so, with when it resets.
            Some(e @ LookupError::QuotaSpent(_)) => LookupError::Deferred(
                format!("deferred: {}; a later run asks it first", e.message()).into(),
            ),
            _ => LookupError::Deferred(
                "deferred by the lookup budget: the hashes this run could ask went to files \
                 that matter more; a later run asks it first"
                    .into(),
            ),
        };
        let max_age = humantime::format_duration(self.max_age).to_string();
        for (d, _) in &deferred {
            let reason = match overdue.get(d) {
                Some(&at) => LookupError::Deferred(
                    format!(
                        "deferred: its last answer ({}) is older than --max-age {max_age}, and \
                         the hashes this run could ask went to files never asked or that \
                         matter more; a later run asks it first",
                        hashsweep_report::rfc3339(
                            UNIX_EPOCH + Duration::from_secs(at.max(0) as u64)
                        )
                        .unwrap_or_default()
                    )
                    .into(),
                ),
                None => reason.clone(),
            };
            self.dedup.answer(*d, Err(reason));
        }
        if let Some(c) = self.cache {
            let rows: Vec<(Digest, u8)> = deferred.iter().map(|(d, r)| (*d, r.code())).collect();
            let _ = c.put_deferred(&rows, hashsweep_core::clock::now());
            self.check_cache();
        }
    }

    pub(super) fn take_outcomes(&mut self, batch: Vec<(Digest, HashOutcome)>) {
        if let Some(b) = self.budget.as_mut() {
            b.returned += batch.len() as u64;
        }
        let answered = batch.iter().any(|(_, o)| o.is_ok());
        if let Some(cache) = self.cache {
            let good: Vec<(Digest, Answer)> = batch
                .iter()
                .filter_map(|(d, o)| o.as_ref().ok().map(|a| (*d, a.clone())))
                .collect();
            // A cache that cannot be written costs the next run a lookup, not this run a
            // result: the cache counts the failure and `check_cache` tells the user once.
            // Dated with the run's time, as the report dates them.
            let _ = cache.put_verdicts(&good, self.now);
            // Refused for the day after all (429000): owed to a later run like the rest.
            let rank_of = |d: &Digest| {
                self.budget
                    .as_ref()
                    .and_then(|b| b.ranks.get(d).copied())
                    .unwrap_or(Rank::from_code(u8::MAX))
                    .code()
            };
            // (Before the plan, such a digest goes back into it instead; see below.)
            let planned = self.budget.as_ref().is_none_or(|b| b.plan.is_some());
            let owed: Vec<(Digest, u8)> = batch
                .iter()
                .filter(|(_, o)| planned && o.as_ref().is_err_and(LookupError::is_deferral))
                .map(|(d, _)| (*d, rank_of(d)))
                .collect();
            let _ = cache.put_deferred(&owed, hashsweep_core::clock::now());
            self.check_cache();
        }
        for (d, o) in batch {
            // Refused for the day before the plan was made: it goes back into the plan.
            if let Some(b) = self.budget.as_mut()
                && b.plan.is_none()
                && o.as_ref().is_err_and(LookupError::is_deferral)
            {
                b.planner.unasked(&d);
                continue;
            }
            self.dedup.answer_looked_up(d, o);
        }
        self.learn_budget(answered);
        self.progress
            .lookups(self.dedup.answered() as u64, self.dedup.distinct() as u64);
    }

    /// Write pending digest rows every 1000 rows or every second (so a killed run loses
    /// little), or now when `force`.
    pub(super) fn flush_digests(&mut self, force: bool) {
        let due =
            self.pending_rows.len() >= 1000 || self.last_flush.elapsed() >= Duration::from_secs(1);
        let archives = self
            .archive_rows
            .as_ref()
            .is_some_and(|a| !a.pending.is_empty());
        if let Some(cache) = self.cache
            && (!self.pending_rows.is_empty() || archives)
            && (force || due)
        {
            if !self.pending_rows.is_empty() {
                let _ = cache.put_files(&self.pending_rows);
            }
            self.pending_rows.clear();
            if let Some(a) = self.archive_rows.as_mut()
                && !a.pending.is_empty()
            {
                let _ = cache.put_archives(&a.pending, &a.options, a.md5, a.sha1);
                a.pending.clear();
            }
            self.last_flush = Instant::now();
            self.check_cache();
        }
    }

    /// Tell the user, once, that the cache failed: the sweep goes on, the next one pays for it.
    fn check_cache(&mut self) {
        if let Some(cache) = self.cache
            && !self.cache_warned
            && let Some(first) = cache.first_error()
        {
            self.cache_warned = true;
            self.progress.warn(&format!(
                "{first}; the sweep goes on, but what was not stored is read and asked again \
                 next time (use --cache PATH on a writable disk, or --no-cache)"
            ));
        }
    }

    /// At the end of a run: date the rows served from the cache and prune when due, within
    /// [`MAINTENANCE_BUDGET`].
    pub(super) fn maintain_cache(&mut self) {
        if let Some(cache) = self.cache {
            let _ = cache.maintain(hashsweep_core::clock::now(), MAINTENANCE_BUDGET);
            self.check_cache();
        }
    }
}
