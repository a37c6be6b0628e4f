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
//! hashed, and batches leave while the walk goes on.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded, select, unbounded};
use crossbeam_deque::{Injector, Stealer, Worker};
use crossbeam_utils::Backoff;

use crate::batch::{LookupBatch, MAX_BATCH, run_batcher};
use crate::cache::{Cache, FileKey};
use crate::client::{Answer, HashOutcome, ReputationClient};
use crate::dedup::Dedup;
use crate::digest::{Algo, Digest, Digests};
use crate::hash::{FileResult, FileStatus, HashOptions, Hasher, LinkMap, Origin};
use crate::hashset::HashSet;
use crate::progress::Progress;
use crate::report::{Record, Summary};
use crate::verdict::Verdict;
use crate::walk::{WalkEvent, WalkOptions, walk};

/// How long an interrupted run waits for requests already in flight.
pub const STOP_GRACE: Duration = Duration::from_secs(3);

/// How batches are formed and sent.
#[derive(Debug, Clone)]
pub struct LookupOptions {
    /// Which digest is sent.
    pub algo: Algo,
    pub batch_size: usize,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// How long a partial batch waits for more digests.
    pub batch_wait: Duration,
}

impl Default for LookupOptions {
    fn default() -> Self {
        LookupOptions {
            algo: Algo::Sha256,
            batch_size: MAX_BATCH,
            concurrency: 4,
            batch_wait: Duration::from_secs(1),
        }
    }
}

/// Everything a scan needs, resolved from the command line.
#[derive(Clone)]
pub struct ScanConfig {
    pub roots: Vec<PathBuf>,
    pub walk: WalkOptions,
    pub hash: HashOptions,
    /// Hash worker threads.
    pub threads: usize,
    /// `None`: offline, no lookups.
    pub lookup: Option<LookupOptions>,
    /// Digest and verdict cache (`None`: `--no-cache`).
    pub cache: Option<Arc<Cache>>,
    /// `--known-good` / `--known-bad` hash sets.
    pub local: Option<Arc<LocalSets>>,
}

/// Local hash sets: a digest in `good` is `known_good` and not sent; one in `bad` is
/// `infected` with source `local`, sent only with `--also-lookup`.
pub struct LocalSets {
    pub good: HashSet,
    pub bad: HashSet,
    pub also_lookup: bool,
}

/// What the local sets say about one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Local {
    Good,
    Bad,
}

impl LocalSets {
    /// Bad wins over good; any computed digest of the file may match.
    pub fn classify(&self, d: &Digests) -> Option<Local> {
        let all = [
            Some(Digest::Sha256(d.sha256)),
            d.md5.map(Digest::Md5),
            d.sha1.map(Digest::Sha1),
        ];
        let hit = |set: &HashSet| all.iter().flatten().any(|x| set.contains(x));
        if hit(&self.bad) {
            Some(Local::Bad)
        } else if hit(&self.good) {
            Some(Local::Good)
        } else {
            None
        }
    }

    /// Whether a file with this classification is sent to the service.
    fn wants_lookup(&self, l: Option<Local>) -> bool {
        match l {
            None => true,
            Some(Local::Good) => false,
            Some(Local::Bad) => self.also_lookup,
        }
    }
}

/// What a scan learned: one result per path, and one outcome per distinct digest looked up.
pub struct ScanOutput {
    /// The local hash sets the records are classified by.
    pub local: Option<Arc<LocalSets>>,
    /// Sorted by path bytes.
    pub files: Vec<FileResult>,
    /// Distinct digests and their outcomes.
    pub dedup: Dedup,
    pub lookup_algo: Option<Algo>,
    pub requests: u64,
    pub retries: u64,
    /// Distinct digests answered from the verdict cache (no request).
    pub verdicts_cached: u64,
    pub elapsed: Duration,
}

/// The collector: runs on the calling thread, takes every result, hands each new digest to the
/// lookup stage (or answers it from the verdict cache), and writes new digests and verdicts
/// to the cache in batches.
struct Collector<'a> {
    algo: Algo,
    files: Vec<FileResult>,
    dedup: Dedup,
    digest_tx: Option<Sender<Digest>>,
    cache: Option<&'a Cache>,
    /// First-seen digests waiting for one batched verdict-cache lookup.
    pending_verdicts: Vec<Digest>,
    local: Option<&'a LocalSets>,
    pending_rows: Vec<(FileKey, Digests)>,
    last_flush: Instant,
    verdicts_cached: u64,
    progress: &'a dyn Progress,
}

impl Collector<'_> {
    fn take_file(&mut self, res: FileResult) {
        if let FileStatus::Hashed {
            digests,
            meta,
            warning,
            origin,
        } = &res.status
        {
            let wanted = self
                .local
                .is_none_or(|l| l.wants_lookup(l.classify(digests)));
            if let Some(key) = digests.get(self.algo)
                && self.dedup.first_sighting(key)
                && wanted
                && let Some(tx) = &self.digest_tx
            {
                if self.cache.is_some() {
                    // Asked of the verdict cache in batches (one read transaction each).
                    self.pending_verdicts.push(key);
                    if self.pending_verdicts.len() >= VERDICT_BATCH {
                        self.resolve_pending();
                    }
                } else {
                    let _ = tx.send(key);
                }
            }
            if *origin != Origin::Cache && warning.is_none() && self.cache.is_some() {
                self.pending_rows
                    .push((FileKey::new(meta, res.size.unwrap_or(0)), *digests));
                self.flush_digests(false);
            }
            self.progress.file_done(res.size.unwrap_or(0));
        }
        self.files.push(res);
    }

    /// Answer pending digests from the verdict cache; send the rest to the lookup stage.
    fn resolve_pending(&mut self) {
        if self.pending_verdicts.is_empty() {
            return;
        }
        let keys = std::mem::take(&mut self.pending_verdicts);
        let mut hits = self
            .cache
            .and_then(|c| c.get_verdicts(&keys, SystemTime::now()).ok())
            .unwrap_or_default();
        for k in keys {
            match hits.remove(&k) {
                Some(a) => {
                    self.verdicts_cached += 1;
                    self.dedup.answer(k, Ok(a));
                }
                None => {
                    if let Some(tx) = &self.digest_tx {
                        let _ = tx.send(k);
                    }
                }
            }
        }
    }

    fn take_outcomes(&mut self, batch: Vec<(Digest, HashOutcome)>) {
        if let Some(cache) = self.cache {
            let good: Vec<(Digest, Answer)> = batch
                .iter()
                .filter_map(|(d, o)| o.as_ref().ok().map(|a| (*d, a.clone())))
                .collect();
            // A cache that cannot be written costs the next run a lookup, not this run a result.
            let _ = cache.put_verdicts(&good, SystemTime::now());
        }
        for (d, o) in batch {
            self.dedup.answer(d, o);
        }
        self.progress
            .lookups(self.dedup.answered() as u64, self.dedup.distinct() as u64);
    }

    /// Write pending digest rows every 1000 rows or every second (so a killed run loses
    /// little), or now when `force`.
    fn flush_digests(&mut self, force: bool) {
        let due =
            self.pending_rows.len() >= 1000 || self.last_flush.elapsed() >= Duration::from_secs(1);
        if let Some(cache) = self.cache
            && !self.pending_rows.is_empty()
            && (force || due)
        {
            let _ = cache.put_digests(&self.pending_rows);
            self.pending_rows.clear();
            self.last_flush = Instant::now();
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
        crate::walk::exclude_matcher(root, &cfg.walk.excludes)?;
    }
    let threads = cfg.threads.max(1);
    let lookup = cfg.lookup.as_ref().zip(client.clone());

    let mut walk_result = Ok(());
    let algo = lookup.as_ref().map(|(o, _)| o.algo).unwrap_or(Algo::Sha256);
    let mut c = Collector {
        algo,
        files: Vec::new(),
        dedup: Dedup::default(),
        digest_tx: None,
        cache: cfg.cache.as_deref(),
        pending_verdicts: Vec::new(),
        local: cfg.local.as_deref(),
        pending_rows: Vec::new(),
        last_flush: Instant::now(),
        verdicts_cached: 0,
        progress,
    };

    let links: Arc<LinkMap> = Arc::default();
    let roots: Arc<std::collections::HashSet<PathBuf>> =
        Arc::new(cfg.roots.iter().cloned().collect());
    // Walk events go to a work-stealing queue: pushing costs no system call, and an idle hash
    // worker takes work from the queue or from a busy worker's local deque, so a few big files
    // spread over all workers and many small ones cost no wake-ups.
    let injector = Injector::<Task>::new();
    let walk_done = AtomicBool::new(false);
    let locals: Vec<Worker<Task>> = (0..threads).map(|_| Worker::new_fifo()).collect();
    let stealers: Vec<Stealer<Task>> = locals.iter().map(Worker::stealer).collect();
    let queue = WorkQueue {
        injector: &injector,
        stealers: &stealers,
        walk_done: &walk_done,
    };

    std::thread::scope(|s| {
        let (res_tx, res_rx) = bounded::<Vec<FileResult>>(256);
        let walk_handle = s.spawn(move || {
            let sink = |ev| {
                // Soft back-pressure: a walk far ahead of hashing only holds memory.
                while queue.injector.len() > MAX_QUEUED && !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_micros(200));
                }
                queue.injector.push(Task { ev, checked: false });
            };
            // Set even if the walk panics, so the hash workers never wait for it forever.
            struct Done<'a>(&'a AtomicBool);
            impl Drop for Done<'_> {
                fn drop(&mut self) {
                    self.0.store(true, Ordering::Release);
                }
            }
            let _done = Done(queue.walk_done);
            walk(&cfg.roots, &cfg.walk, &sink, stop)
        });
        for local in locals {
            let res_tx = res_tx.clone();
            let mut hasher = Hasher::new(cfg.hash)
                .with_roots(Arc::clone(&roots))
                .with_links(Arc::clone(&links))
                .with_stop(Arc::clone(stop))
                .with_cache(cfg.cache.clone());
            s.spawn(move || hash_worker(&mut hasher, &local, queue, &res_tx));
        }
        drop(res_tx);

        let out_rx = lookup.as_ref().map(|(opts, client)| {
            let (tx, rx) = spawn_lookup(Arc::clone(client), opts, stop);
            c.digest_tx = Some(tx);
            rx
        });
        // Offline, the outcome arm of the select below waits on a channel that never fires.
        let no_outcomes = crossbeam_channel::never();
        loop {
            select! {
                recv(res_rx) -> msg => match msg {
                    Ok(results) => {
                        results.into_iter().for_each(|r| c.take_file(r));
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
        walk_result = walk_handle
            .join()
            .unwrap_or_else(|_| Err(crate::Error::Internal("the walker thread panicked".into())));
    });
    walk_result?;
    progress.finish();

    let Collector {
        mut files,
        dedup,
        verdicts_cached,
        ..
    } = c;
    // Raw bytes: as deterministic as component order and several times cheaper.
    files.sort_unstable_by(|a, b| {
        a.path
            .as_os_str()
            .as_encoded_bytes()
            .cmp(b.path.as_os_str().as_encoded_bytes())
    });
    // A root given twice, or one inside another, walks the same paths twice: one record each.
    files.dedup_by(|a, b| a.path == b.path);
    let stats = client.map(|c| c.stats()).unwrap_or_default();
    Ok(ScanOutput {
        local: cfg.local.clone(),
        files,
        lookup_algo: lookup.map(|(o, _)| o.algo),
        dedup,
        requests: stats.requests,
        retries: stats.retries,
        verdicts_cached,
        elapsed: started.elapsed(),
    })
}

/// Digests asked of the verdict cache at once.
const VERDICT_BATCH: usize = 256;

/// Walk events queued at most, before the walker waits for the hash workers.
const MAX_QUEUED: usize = 1 << 16;

/// One unit of hash work: a walk event, and whether the digest cache was already asked.
struct Task {
    ev: WalkEvent,
    checked: bool,
}

/// Where hash workers find work: the walker's queue and each other's local deques.
#[derive(Clone, Copy)]
struct WorkQueue<'a> {
    injector: &'a Injector<Task>,
    stealers: &'a [Stealer<Task>],
    walk_done: &'a AtomicBool,
}

impl WorkQueue<'_> {
    /// The next event for the worker owning `local` (crossbeam-deque's documented pattern).
    fn find(&self, local: &Worker<Task>) -> Option<Task> {
        local.pop().or_else(|| {
            std::iter::repeat_with(|| {
                self.injector
                    .steal_batch_and_pop(local)
                    .or_else(|| self.stealers.iter().map(Stealer::steal).collect())
            })
            .find(|s| !s.is_retry())
            .and_then(|s| s.success())
        })
    }

    /// The walk is over and nothing is left anywhere to take.
    fn drained(&self) -> bool {
        self.walk_done.load(Ordering::Acquire)
            && self.injector.is_empty()
            && self.stealers.iter().all(Stealer::is_empty)
    }
}

/// One hash worker. Results go to the collector in batches, flushed whenever the worker runs
/// out of work (so the collector never waits on a half-full batch) or after a slow file.
fn hash_worker(
    hasher: &mut Hasher,
    local: &Worker<Task>,
    queue: WorkQueue<'_>,
    tx: &Sender<Vec<FileResult>>,
) {
    const RESULT_BATCH: usize = 64;
    const CACHE_BATCH: usize = 32;
    let mut out: Vec<FileResult> = Vec::with_capacity(RESULT_BATCH);
    let backoff = Backoff::new();
    loop {
        if let Some(task) = queue.find(local) {
            backoff.reset();
            if hasher.has_cache() && !task.checked && matches!(task.ev, WalkEvent::File(_)) {
                // Gather the unchecked files this worker holds and ask the cache about all of
                // them in one transaction; misses go back on the deque, checked, so another
                // worker can still steal them (a batch must not pin big files to one worker).
                let mut paths = Vec::new();
                let mut next = Some(task);
                while let Some(t) = next.take() {
                    match t {
                        Task {
                            ev: WalkEvent::File(p),
                            checked: false,
                        } => paths.push(p),
                        other => {
                            local.push(other);
                            break;
                        }
                    }
                    if paths.len() < CACHE_BATCH {
                        next = local.pop();
                    }
                }
                let (hits, misses) = hasher.split_cached(paths);
                out.extend(hits);
                for p in misses {
                    local.push(Task {
                        ev: WalkEvent::File(p),
                        checked: true,
                    });
                }
            } else {
                let started = Instant::now();
                out.push(hasher.process_uncached(task.ev));
                if started.elapsed() > Duration::from_millis(20)
                    && tx.send(std::mem::take(&mut out)).is_err()
                {
                    return;
                }
            }
            if out.len() >= RESULT_BATCH && tx.send(std::mem::take(&mut out)).is_err() {
                return;
            }
            continue;
        }
        if !out.is_empty() && tx.send(std::mem::take(&mut out)).is_err() {
            return;
        }
        if queue.drained() {
            return;
        }
        if backoff.is_completed() {
            std::thread::sleep(Duration::from_micros(100));
        } else {
            backoff.snooze();
        }
    }
}

/// Start the batcher and `concurrency` lookup workers. Send digests into the returned sender
/// (drop it when done); outcomes arrive per batch on the receiver, which closes once every
/// batch is answered. The threads are detached so an interrupted run need not wait for a
/// request in flight; once `stop` is set no new request is started.
pub fn spawn_lookup(
    client: Arc<dyn ReputationClient>,
    opts: &LookupOptions,
    stop: &Arc<AtomicBool>,
) -> (Sender<Digest>, Receiver<Vec<(Digest, HashOutcome)>>) {
    let (digest_tx, digest_rx) = unbounded::<Digest>();
    let concurrency = opts.concurrency.max(1);
    let (batch_tx, batch_rx) = bounded::<LookupBatch>(concurrency);
    let (out_tx, out_rx) = unbounded();
    let (size, wait) = (opts.batch_size, opts.batch_wait);
    std::thread::spawn(move || run_batcher(digest_rx, batch_tx, size, wait));
    for _ in 0..concurrency {
        let batch_rx = batch_rx.clone();
        let out_tx = out_tx.clone();
        let client = Arc::clone(&client);
        let stop = Arc::clone(stop);
        std::thread::spawn(move || {
            for batch in batch_rx {
                if stop.load(Ordering::Relaxed) || out_tx.send(client.lookup(&batch)).is_err() {
                    break;
                }
            }
        });
    }
    (digest_tx, out_rx)
}

/// Look up a fixed set of digests (the `lookup` subcommand). Duplicates are asked once.
pub fn lookup_digests(
    digests: &[Digest],
    client: Arc<dyn ReputationClient>,
    opts: &LookupOptions,
    stop: &Arc<AtomicBool>,
) -> HashMap<Digest, HashOutcome> {
    let mut outcomes = HashMap::new();
    let (tx, rx) = spawn_lookup(client, opts, stop);
    let mut dedup = Dedup::default();
    for d in digests {
        if dedup.first_sighting(*d) {
            let _ = tx.send(*d);
        }
    }
    drop(tx);
    while !stop.load(Ordering::Relaxed) {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(batch) => outcomes.extend(batch),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    outcomes
}

impl ScanOutput {
    /// The report record for one file: its own status joined with its digest's outcome.
    pub fn record<'a>(&'a self, f: &'a FileResult) -> Record<'a> {
        let base = Record {
            path: Some(&f.path),
            size: f.size,
            mtime: None,
            inode: None,
            sha256: None,
            md5: None,
            sha1: None,
            verdict: Verdict::Error,
            answer: None,
            error: None,
            note: None,
            change: None,
            source: None,
        };
        match &f.status {
            FileStatus::Skipped(reason) => Record {
                verdict: Verdict::Skipped,
                note: Some(reason),
                ..base
            },
            FileStatus::Error(e) => Record {
                verdict: Verdict::Error,
                error: Some(e),
                ..base
            },
            FileStatus::Interrupted => Record {
                verdict: Verdict::NotLookedUp,
                error: Some("interrupted before the file was read"),
                ..base
            },
            FileStatus::Hashed {
                digests,
                warning,
                meta,
                ..
            } => {
                let base = Record {
                    note: warning.as_deref(),
                    mtime: Some(system_time(meta.mtime_ns)),
                    inode: Some(meta.ino),
                    ..base
                }
                .with_digests(Some(digests));
                let local = self.local.as_ref().and_then(|l| l.classify(digests));
                let outcome = self
                    .lookup_algo
                    .and_then(|a| digests.get(a))
                    .and_then(|d| self.dedup.outcome(&d));
                match (local, self.lookup_algo) {
                    (Some(Local::Good), _) => Record {
                        verdict: Verdict::KnownGood,
                        ..base
                    },
                    // Known bad: infected whatever the service says; its answer is kept when
                    // one was asked for (--also-lookup).
                    (Some(Local::Bad), _) => Record {
                        verdict: Verdict::Infected,
                        source: Some("local"),
                        answer: outcome.and_then(|o| o.as_ref().ok()),
                        ..base
                    },
                    (None, None) => Record {
                        verdict: Verdict::NotLookedUp,
                        ..base
                    },
                    (None, Some(_)) => {
                        let (verdict, answer, error) = outcome_fields(outcome);
                        Record {
                            verdict,
                            answer,
                            error,
                            ..base
                        }
                    }
                }
            }
        }
    }

    /// Indices of `files` in report order: by path, or detections first for the table.
    /// Path order needs no index at all (the files are sorted); only the table's
    /// detections-first order builds one.
    pub fn order(&self, detections_first: bool) -> Box<dyn Iterator<Item = usize>> {
        if !detections_first {
            return Box::new(0..self.files.len());
        }
        let mut idx: Vec<u32> = (0..self.files.len() as u32).collect();
        idx.sort_by_cached_key(|&i| self.record(&self.files[i as usize]).verdict.rank());
        Box::new(idx.into_iter().map(|i| i as usize))
    }

    /// Totals for the summary and the exit status.
    pub fn summary(&self) -> Summary {
        let mut s = Summary {
            distinct_digests: self.dedup.distinct() as u64,
            requests: self.requests,
            retries: self.retries,
            ..Summary::default()
        };
        s.verdicts_cached = self.verdicts_cached;
        for f in &self.files {
            s.count(&self.record(f));
            if let FileStatus::Hashed {
                warning, origin, ..
            } = &f.status
            {
                s.changed += u64::from(warning.is_some());
                match origin {
                    Origin::Read => s.bytes_read += f.size.unwrap_or(0),
                    Origin::Cache => s.files_cached += 1,
                    Origin::Link => s.files_linked += 1,
                }
            }
        }
        s.set_elapsed(self.elapsed);
        s
    }
}

/// Nanoseconds since the epoch (negative before it) as a `SystemTime`.
fn system_time(ns: i64) -> SystemTime {
    let d = Duration::from_nanos(ns.unsigned_abs());
    if ns >= 0 {
        SystemTime::UNIX_EPOCH + d
    } else {
        SystemTime::UNIX_EPOCH - d
    }
}

/// Verdict, answer and error for a looked-up digest's outcome (`None`: never answered).
pub fn outcome_fields(o: Option<&HashOutcome>) -> (Verdict, Option<&Answer>, Option<&str>) {
    match o {
        Some(Ok(a)) => (a.verdict(), Some(a), None),
        Some(Err(e)) => (Verdict::Error, None, Some(e)),
        None => (
            Verdict::NotLookedUp,
            None,
            Some("lookup did not complete (interrupted)"),
        ),
    }
}
