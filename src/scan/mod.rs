//! The scan pipeline: wires walk → hash → dedup → batch → lookup and joins the verdicts back
//! to every path.
//!
//! Threads and channels:
//! ```text
//! walker ──WalkEvent──▶ N hash workers ──FileResult──▶ collector (this thread: dedup)
//!                                                        │ Digest (first sighting only)
//!                                                        ▼
//!                       M lookup workers ◀─LookupBatch── batcher
//!                              │ outcomes
//!                              └──────────────▶ collector
//! ```
//! Lookups overlap hashing: the collector hands each new digest to the batcher as soon as it is
//! hashed, and batches leave while the walk goes on. There are more hash workers than CPUs when
//! reads wait for a device: only `-j` hash at once, and how many read is set by [`io`].

pub mod archive;
pub mod circl;
pub mod dedup;
pub mod fstype;
pub mod hash;
pub mod io;
mod join;
pub mod plan;
pub mod process;
mod remembered;
pub mod sizes;
pub mod upload;
pub mod walk;
mod worker;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded, select};
use crossbeam_deque::{Injector, Stealer, Worker};

use self::dedup::Dedup;
use self::hash::{FileResult, FileStatus, HashOptions, Hasher, LinkMap, Origin};
use self::io::{IoGate, IoOptions};
use self::plan::{BudgetOptions, Planner, Rank, Ranker};
use self::process::{ProcessCounts, ProcessInfo, ProcessScope};
use self::walk::{WalkOptions, walk};
use self::worker::{DigestCache, Doorbell, Task, Turn, WorkQueue, hash_worker};
use crate::cache::{Cache, FileKey};
use crate::digest::{Algo, Digest, DigestHash, Digests};
use crate::file::FileKind;
use crate::known::LocalSets;
use crate::known::packages::{PackageCheck, PackageDb};
use crate::lookup::batch::Feed;
use crate::lookup::{
    Answer, HashOutcome, LookupError, LookupOptions, Plan, ReputationClient, spawn_lookup,
};
use crate::progress::Progress;

pub use self::join::outcome_fields;

/// How long an interrupted run waits for requests already in flight.
pub const STOP_GRACE: Duration = Duration::from_secs(3);

/// Everything a scan needs, resolved from the command line.
#[derive(Clone)]
pub struct ScanConfig {
    pub roots: Vec<PathBuf>,
    pub walk: WalkOptions,
    pub hash: HashOptions,
    /// Hash worker threads (at most this many hash at once; see `io` for reads in flight).
    pub threads: usize,
    /// `--io-depth`, `--max-io-rate`.
    pub io: IoOptions,
    /// `None`: offline, no lookups.
    pub lookup: Option<LookupOptions>,
    /// Digest and verdict cache (`None`: `--no-cache`).
    pub cache: Option<Arc<Cache>>,
    /// `--known-good` / `--known-bad` hash sets.
    pub local: Option<Arc<LocalSets>>,
    /// `--budget`, `--priority-path`: how the lookup budget is spent.
    pub budget: BudgetOptions,
    /// `--processes`: also hash the running programs' images.
    pub processes: Option<ProcessScope>,
    /// `--packages`: the system's package databases.
    pub packages: Option<Arc<PackageDb>>,
}

/// What a scan learned: one result per path, and one outcome per distinct digest looked up.
pub struct ScanOutput {
    /// The local hash sets the records are classified by.
    pub local: Option<Arc<LocalSets>>,
    /// The package databases the records are checked against.
    pub packages: Option<Arc<PackageDb>>,
    /// Sorted by path bytes.
    pub files: Vec<FileResult>,
    /// Distinct digests and their outcomes.
    pub dedup: Dedup,
    pub lookup_algo: Option<Algo>,
    pub requests: u64,
    pub retries: u64,
    /// Distinct digests answered from the verdict cache (no request).
    pub verdicts_cached: u64,
    /// Cache reads and writes that failed (the sweep went on without them).
    pub cache_errors: u64,
    /// What the run did with the lookup budget (`None`: offline).
    pub plan: Option<Plan>,
    pub elapsed: Duration,
    /// Network mounts the walk crossed, as `PATH (TYPE)` (for the summary).
    pub network_mounts: Vec<String>,
    /// With `--processes`: the running programs' images, by the `/proc` path each was read
    /// through (the path of its [`FileResult`]), and what the listing could not read.
    pub processes: HashMap<Box<Path>, ProcessInfo>,
    pub process_counts: Option<ProcessCounts>,
    /// The run's time, the date of the answers it asked for (see `crate::clock`).
    pub answered_now: SystemTime,
    /// `--circl`: CIRCL hashlookup's records, by the service's key, and what it did.
    pub circl: HashMap<Digest, crate::lookup::circl::CirclRecord, DigestHash>,
    pub circl_report: Option<circl::CirclReport>,
}

/// The collector: runs on the calling thread, takes every result, hands each new digest to the
/// lookup stage (or answers it from the verdict cache), and writes new digests and verdicts
/// to the cache in batches.
struct Collector<'a> {
    algo: Algo,
    files: Vec<FileResult>,
    dedup: Dedup,
    digest_tx: Option<Sender<Feed>>,
    cache: Option<&'a Cache>,
    /// First-seen digests waiting for one batched verdict-cache lookup, with their best rank
    /// and how many paths hold them so far.
    pending_verdicts: Vec<(Digest, Rank, u32)>,
    local: Option<&'a LocalSets>,
    packages: Option<&'a PackageDb>,
    pending_rows: Vec<(FileKey, Digests, FileKind)>,
    /// With `--archives` and the cache: what was found inside the archives read.
    archive_rows: Option<ArchiveRows>,
    last_flush: Instant,
    verdicts_cached: u64,
    /// Whether the user was told that the cache failed (once per run).
    cache_warned: bool,
    progress: &'a dyn Progress,
    /// The lookup budget's keeper and the order of risk (with lookups only).
    budget: Option<BudgetKeeper>,
    /// Running programs' images by the path they are read through (`--processes`).
    processes: &'a HashMap<Box<Path>, ProcessInfo>,
    /// The run's "now" for answers' ages (see `crate::clock`).
    now: SystemTime,
    /// `--max-age`: an answer older than this is no answer (see [`BudgetOptions::max_age`]).
    max_age: Duration,
    /// `--circl`: CIRCL hashlookup, asked before the service.
    circl: Option<circl::CirclStage>,
}

/// What was found inside the archives read in this run, on its way to the cache, with the
/// settings it was found with.
struct ArchiveRows {
    options: String,
    md5: bool,
    sha1: bool,
    pending: Vec<(FileKey, crate::cache::ArchiveRow)>,
}

/// The lookup stage's side of the budget: who asks the service, and what is decided so far.
struct BudgetKeeper {
    client: Arc<dyn ReputationClient>,
    planner: Planner,
    ranker: Ranker,
    /// Digests handed to the lookup stage, and outcomes back from it.
    sent: u64,
    returned: u64,
    /// Ranks of what was sent, filled in when the plan is made.
    ranks: HashMap<Digest, Rank, DigestHash>,
    plan: Option<Plan>,
    /// What an earlier run heard of the budget, until this run hears for itself.
    remembered: Option<crate::lookup::Budget>,
}

impl Collector<'_> {
    /// One batch from a hash worker: an archive and its members come in the same batch.
    fn take_batch(&mut self, results: Vec<FileResult>) {
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
                && let Some(row) = remembered::to_row(f, &files[i + 1..i + 1 + members])
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
        let member = matches!(res.archive.as_deref(), Some(archive::Inside::Member { .. }));
        if !member && !hash::is_stream(&res) {
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
    fn resolve_pending(&mut self) {
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
        let now = crate::lookup::budget::unix_secs(self.now) as i64;
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
                let aged = dedup::Aged {
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
    fn again(&mut self, d: &Digest, rank: Rank, paths: u32) {
        if let Some(b) = self.budget.as_mut() {
            for _ in 1..paths {
                b.planner.again(d, rank);
            }
        }
    }

    /// A digest needs the service: ask CIRCL first (`--circl`), or send it now, or hold it for
    /// the plan.
    fn want(&mut self, d: Digest, rank: Rank) {
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
    fn flush_circl(&mut self) {
        let Some(c) = self.circl.as_mut() else { return };
        for (d, rank) in c.flush() {
            self.want_now(d, rank);
        }
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
    fn plan(&mut self, out_rx: &Receiver<Vec<(Digest, HashOutcome)>>, stop: &AtomicBool) {
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
        let plan::Decision {
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
                        crate::report::rfc3339(UNIX_EPOCH + Duration::from_secs(at.max(0) as u64))
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
            let _ = c.put_deferred(&rows, crate::clock::now());
            self.check_cache();
        }
    }

    fn take_outcomes(&mut self, batch: Vec<(Digest, HashOutcome)>) {
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
            let _ = cache.put_deferred(&owed, crate::clock::now());
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
    fn flush_digests(&mut self, force: bool) {
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
    fn maintain_cache(&mut self) {
        if let Some(cache) = self.cache {
            let _ = cache.maintain(crate::clock::now(), MAINTENANCE_BUDGET);
            self.check_cache();
        }
    }
}

/// Run the pipeline to the end (or until `stop` is set).
pub fn scan(
    cfg: &ScanConfig,
    client: Option<Arc<dyn ReputationClient>>,
    progress: &dyn Progress,
    stop: &Arc<AtomicBool>,
) -> Result<ScanOutput, crate::Error> {
    let started = Instant::now();
    // Check globs before starting threads, so a typo is a clean usage error.
    for root in &cfg.roots {
        walk::exclude_matcher(root, &cfg.walk.excludes)?;
        if !cfg.walk.pseudo_fs
            && let Some(reason) = walk::pseudo_root(root)
        {
            progress.warn(&format!(
                "{} is on a {reason}: not entered (its files are the kernel's, not files; \
                 --pseudo-fs reads them anyway, with a deadline and a size cap)",
                root.display()
            ));
        }
    }
    if cfg.hash.streams && !cfg!(windows) {
        progress.warn(
            "--streams reads NTFS alternate data streams (Windows only): files here have none",
        );
    }
    let threads = cfg.threads.max(1);
    let lookup = cfg.lookup.as_ref().zip(client.clone());

    let mut walk_result = Ok(walk::WalkStats::default());
    let (images, mut process_counts) = match cfg.processes {
        Some(_) if !cfg!(target_os = "linux") => {
            progress
                .warn("--processes is Linux only (it reads /proc): no running programs checked");
            (Vec::new(), Some(ProcessCounts::default()))
        }
        Some(scope) => match process::list(Path::new("/proc"), scope) {
            Ok(found) => (found.images, Some(found.counts)),
            Err(e) => {
                progress.warn(&format!(
                    "--processes: cannot list /proc: {}; no running programs checked",
                    crate::file::describe_io(&e)
                ));
                (Vec::new(), Some(ProcessCounts::default()))
            }
        },
        None => (Vec::new(), None),
    };
    if let Some(c) = process_counts
        && c.denied > 0
    {
        let hint = if crate::platform::is_superuser() {
            "refused even to root (another namespace, or a protected process)"
        } else {
            "not this user's to inspect: run as root to check every running program"
        };
        progress.warn(&format!(
            "--processes: {} could not be inspected: {hint}",
            if c.denied == 1 {
                "1 process".to_string()
            } else {
                format!("{} processes", c.denied)
            }
        ));
    }
    let image_paths: Vec<PathBuf> = images.iter().map(|(p, _)| p.clone()).collect();
    let processes: HashMap<Box<Path>, ProcessInfo> = images
        .into_iter()
        .map(|(p, i)| (p.into_boxed_path(), i))
        .collect();
    let algo = lookup.as_ref().map(|(o, _)| o.algo).unwrap_or(Algo::Sha256);
    let mut c = Collector {
        algo,
        files: Vec::new(),
        dedup: Dedup::default(),
        digest_tx: None,
        cache: cfg.cache.as_deref(),
        pending_verdicts: Vec::new(),
        local: cfg.local.as_deref(),
        packages: cfg.packages.as_deref(),
        pending_rows: Vec::new(),
        archive_rows: match (&cfg.cache, &cfg.hash.archives) {
            (Some(_), Some(a)) => Some(ArchiveRows {
                options: remembered::fingerprint(a),
                md5: cfg.hash.md5,
                sha1: cfg.hash.sha1,
                pending: Vec::new(),
            }),
            _ => None,
        },
        last_flush: Instant::now(),
        verdicts_cached: 0,
        cache_warned: false,
        progress,
        processes: &processes,
        // Whole seconds: the cache keeps seconds, so an answer reads back as it was reported.
        now: UNIX_EPOCH
            + Duration::from_secs(crate::lookup::budget::unix_secs(crate::clock::now())),
        max_age: cfg.budget.max_age,
        circl: lookup
            .as_ref()
            .and_then(|(o, _)| o.circl.clone())
            .map(|client| {
                let blooms = cfg
                    .local
                    .as_ref()
                    .is_some_and(|l| !l.good.blooms().is_empty());
                circl::CirclStage::new(client, blooms)
            }),
        budget: match &lookup {
            Some((_, client)) => Some(BudgetKeeper {
                client: Arc::clone(client),
                planner: Planner::new(
                    cfg.budget.cap,
                    cfg.lookup.as_ref().map_or(1, |l| l.batch_size as u64),
                ),
                // What an earlier run heard of this key's budget: no walk-order lookups to
                // learn it.
                remembered: match (cfg.cache.as_deref(), &cfg.budget.scope) {
                    (Some(cache), Some(scope)) => {
                        cache.get_budget(scope, crate::clock::now()).ok().flatten()
                    }
                    _ => None,
                },
                ranker: Ranker::new(&cfg.budget)
                    .map_err(|e| crate::Error::Usage(format!("invalid --priority-path: {e}")))?,
                sent: 0,
                returned: 0,
                ranks: HashMap::default(),
                plan: None,
            }),
            None => None,
        },
    };
    if let Some(b) = c.budget.as_mut()
        && let Some(known) = b.remembered
    {
        b.planner.remember(known);
    }

    let links: Arc<LinkMap> = Arc::default();
    let roots: Arc<std::collections::HashSet<PathBuf>> =
        Arc::new(cfg.roots.iter().cloned().collect());
    // Walk events go to a work-stealing queue: pushing costs no system call, and an idle hash
    // worker takes work from the queue or from a busy worker's local deque, so a few big files
    // spread over all workers and many small ones cost no wake-ups.
    let injector = Injector::<Task>::new();
    let walk_done = AtomicBool::new(false);
    let bell = Doorbell::default();
    let gate = Arc::new(IoGate::new(threads, cfg.io));
    let locals: Vec<Worker<Task>> = (0..gate.readers()).map(|_| Worker::new_fifo()).collect();
    let stealers: Vec<Stealer<Task>> = locals.iter().map(Worker::stealer).collect();
    let queue = WorkQueue {
        injector: &injector,
        stealers: &stealers,
        walk_done: &walk_done,
        bell: &bell,
    };
    // Running programs first: what they are matters most on a live system. The digest cache
    // answers for an unchanged image as for a file.
    let image_count = image_paths.len() as u64;
    for p in image_paths {
        injector.push(Task {
            ev: walk::WalkEvent::Process(p),
            checked: false,
        });
    }

    std::thread::scope(|s| {
        let (res_tx, res_rx) = bounded::<Vec<FileResult>>(256);
        let walk_handle = s.spawn(move || {
            let found = AtomicU64::new(0);
            let sink = |ev| {
                found.fetch_add(1, Ordering::Relaxed);
                // Soft back-pressure: a walk far ahead of hashing only holds memory.
                while queue.injector.len() > MAX_QUEUED && !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_micros(200));
                }
                queue.push(Task { ev, checked: false });
            };
            // Set even if the walk panics, so the hash workers never wait for it forever.
            struct Done<'a>(&'a AtomicBool, &'a Doorbell);
            impl Drop for Done<'_> {
                fn drop(&mut self) {
                    self.0.store(true, Ordering::Release);
                    self.1.ring_all();
                }
            }
            let _done = Done(queue.walk_done, queue.bell);
            let r = walk(&cfg.roots, &cfg.walk, &sink, stop);
            progress.walk_done(found.load(Ordering::Relaxed) + image_count);
            r
        });
        // Starts reader `index`; a copy goes to the grower below.
        let (gate_ref, roots_ref, links_ref) = (&gate, &roots, &links);
        let start = move |index: usize, local: Worker<Task>, res_tx: Sender<Vec<FileResult>>| {
            let mut hasher = Hasher::new(cfg.hash)
                .with_packages(cfg.packages.clone())
                .with_roots(Arc::clone(roots_ref))
                .with_links(Arc::clone(links_ref))
                .with_stop(Arc::clone(stop))
                .with_gate(Arc::clone(gate_ref));
            let cache = cfg.cache.as_deref().map(|cache| DigestCache {
                cache,
                packages: cfg.packages.as_deref(),
                opts: cfg.hash,
            });
            let turn = Turn {
                index,
                gate: gate_ref,
            };
            s.spawn(move || hash_worker(&mut hasher, cache.as_ref(), &local, queue, turn, &res_tx));
        };
        let mut locals = locals.into_iter().enumerate();
        for (index, local) in locals.by_ref().take(gate.depth()) {
            start(index, local, res_tx.clone());
        }
        // The other readers start only when the depth first reaches them (a warm sweep never
        // starts them); the grower waits for that, or for the end of the work.
        s.spawn(move || {
            for (index, local) in locals {
                if !gate_ref.park(index, || queue.drained()) {
                    break;
                }
                start(index, local, res_tx.clone());
            }
            drop(res_tx);
        });

        let out_rx = lookup.as_ref().map(|(opts, client)| {
            let in_flight = progress.in_flight().unwrap_or_default();
            let (tx, rx) = spawn_lookup(Arc::clone(client), opts, stop, in_flight);
            c.digest_tx = Some(tx);
            rx
        });
        // Offline, the outcome arm of the select below waits on a channel that never fires.
        let no_outcomes = crossbeam_channel::never();
        loop {
            select! {
                recv(res_rx) -> msg => match msg {
                    Ok(results) => {
                        c.take_batch(results);
                        // Nothing more waiting: do not hold digests back from the lookup stage.
                        if res_rx.is_empty() {
                            c.resolve_pending();
                        }
                    }
                    Err(_) => break,
                },
                recv(out_rx.as_ref().unwrap_or(&no_outcomes)) -> msg => if let Ok(batch) = msg { c.take_outcomes(batch) },
            }
        }
        c.resolve_pending();
        c.flush_circl();
        if let Some(rx) = &out_rx {
            c.plan(rx, stop);
        }
        c.digest_tx = None;
        c.flush_digests(true);
        // Wait for the answers still due; once stopped, give in-flight requests a short grace
        // and leave the rest (their threads are not joined; the process is about to exit).
        let mut deadline: Option<Instant> = None;
        while let Some(rx) = &out_rx {
            if deadline.is_none() && stop.load(Ordering::Relaxed) {
                deadline = Some(Instant::now() + STOP_GRACE);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(batch) => c.take_outcomes(batch),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        // What the service said of the budget, for the next run.
        if let (Some(cache), Some(scope), Some(b)) = (
            c.cache,
            &cfg.budget.scope,
            c.budget.as_ref().and_then(|b| b.client.budget()),
        ) {
            let _ = cache.put_budget(scope, &b);
        }
        if !stop.load(Ordering::Relaxed) {
            c.maintain_cache();
        }
        walk_result = walk_handle
            .join()
            .unwrap_or_else(|_| Err(crate::Error::Internal("the walker thread panicked".into())));
    });
    let walk_stats = walk_result?;
    progress.finish();

    let Collector {
        mut files,
        dedup,
        verdicts_cached,
        budget,
        now: answered_now,
        circl,
        ..
    } = c;
    let (circl, circl_report) = match circl {
        Some(c) => (c.answers, Some(c.report)),
        None => Default::default(),
    };
    // Raw bytes: as deterministic as component order and several times cheaper.
    files.sort_unstable_by(|a, b| {
        a.path
            .as_os_str()
            .as_encoded_bytes()
            .cmp(b.path.as_os_str().as_encoded_bytes())
    });
    // A root given twice, or one inside another, walks the same paths twice: one record each.
    files.dedup_by(|a, b| a.path == b.path);
    if let Some(c) = process_counts.as_mut() {
        process::settle(&mut files, &processes, c);
    }
    let stats = client.map(|c| c.stats()).unwrap_or_default();
    Ok(ScanOutput {
        local: cfg.local.clone(),
        packages: cfg.packages.clone(),
        files,
        lookup_algo: lookup.map(|(o, _)| o.algo),
        dedup,
        requests: stats.requests,
        retries: stats.retries,
        verdicts_cached,
        cache_errors: cfg.cache.as_ref().map_or(0, |c| c.stats().errors),
        plan: budget.and_then(|b| b.plan),
        elapsed: started.elapsed(),
        network_mounts: walk_stats.network_mounts,
        processes,
        process_counts,
        answered_now,
        circl,
        circl_report,
    })
}

/// The budget the plan may spend: what the service last said, or nothing at all once it has
/// stopped the client for the day.
fn current_budget(client: &dyn ReputationClient) -> Option<crate::lookup::Budget> {
    match (client.halted(), client.budget()) {
        // A refused key is no budget matter: what is asked gets the refusal (error).
        (Some(LookupError::QuotaSpent(_)), b) => Some(crate::lookup::Budget {
            limit: b.and_then(|b| b.limit),
            remaining: 0,
            resets_at: b.and_then(|b| b.resets_at),
        }),
        (_, b) => b,
    }
}

/// How long the end of a run may spend pruning the cache (the rest waits for the next run).
const MAINTENANCE_BUDGET: Duration = Duration::from_secs(2);

/// Digests asked of the verdict cache at once.
const VERDICT_BATCH: usize = 256;

/// Walk events queued at most, before the walker waits for the hash workers.
const MAX_QUEUED: usize = 1 << 16;

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Records warnings.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);

    impl Progress for Recorder {
        fn file_done(&self, _: u64) {}
        fn lookups(&self, _: u64, _: u64) {}
        fn warn(&self, message: &str) {
            self.0.lock().unwrap().push(message.to_string());
        }
        fn note(&self, _: &str) {}
        fn finish(&self) {}
    }

    /// A cache that cannot be written does not fail the sweep: every file is still hashed,
    /// the user is told once, and the failures are counted for the summary.
    #[test]
    fn cache_write_failures_are_warned_once_and_counted() {
        let tree = tempfile::tempdir().unwrap();
        for i in 0..50 {
            std::fs::write(tree.path().join(format!("f{i}")), format!("file {i}")).unwrap();
        }
        // Old enough to be cached (outside the racy window).
        let old = SystemTime::now() - Duration::from_secs(3600);
        for i in 0..50 {
            let f = std::fs::File::options()
                .write(true)
                .open(tree.path().join(format!("f{i}")))
                .unwrap();
            f.set_modified(old).unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        let (cache, _) = Cache::open(dir.path().join("c.sqlite")).unwrap();
        cache.fail_writes();
        let cfg = ScanConfig {
            roots: vec![tree.path().to_path_buf()],
            walk: WalkOptions::default(),
            hash: HashOptions::default(),
            threads: 2,
            io: IoOptions::default(),
            lookup: None,
            cache: Some(Arc::new(cache)),
            local: None,
            budget: BudgetOptions::default(),
            processes: None,
            packages: None,
        };
        let progress = Recorder::default();
        let out = scan(&cfg, None, &progress, &Arc::new(AtomicBool::new(false))).unwrap();
        assert_eq!(out.files.len(), 50);
        assert!(out.files.iter().all(|f| f.digests().is_some()));
        let warnings = progress.0.lock().unwrap().clone();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("c.sqlite"),
            "names the cache: {warnings:?}"
        );
        let summary = out.summary();
        assert!(summary.cache_errors >= 1, "{summary:?}");
        assert!(
            summary.human().contains("cache errors"),
            "{}",
            summary.human()
        );
    }
}
