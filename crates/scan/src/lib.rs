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
mod collect;
use collect::{ArchiveRows, BudgetKeeper, Collector};
pub mod dedup;
mod error;
pub mod fstype;
pub mod hash;
pub mod hashed;
pub mod io;
mod join;
pub mod plan;
pub mod process;
pub mod progress;
mod remembered;
pub mod rules;
pub mod sizes;
pub mod upload;
pub mod walk;
mod worker;

pub use error::ScanError;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{RecvTimeoutError, Sender, bounded, select};
use crossbeam_deque::{Injector, Stealer, Worker};

use self::dedup::Dedup;
use self::hash::{FileResult, HashOptions, Hasher, LinkMap};
use self::io::{IoGate, IoOptions};
use self::plan::{BudgetOptions, Planner, Ranker};
use self::process::{ProcessCounts, ProcessInfo, ProcessScope};
use self::walk::{WalkOptions, walk};
use self::worker::{DigestCache, Doorbell, Task, Turn, WorkQueue, hash_worker};
use crate::progress::Progress;
use hashsweep_cache::Cache;
use hashsweep_core::digest::{Algo, Digest, DigestHash};
use hashsweep_known::LocalSets;
use hashsweep_known::packages::PackageDb;
use hashsweep_lookup::{LookupError, LookupOptions, Plan, ReputationClient, spawn_lookup};

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
    /// `--yara`: the compiled rules, matched on every file's bytes as they are hashed. The
    /// digest cache then answers no file (a file not read cannot be matched): every file is
    /// read, and the verdict cache still saves the lookups.
    pub rules: Option<Arc<rules::RuleSet>>,
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
    /// The run's time, the date of the answers it asked for (see `hashsweep_core::clock`).
    pub answered_now: SystemTime,
    /// `--circl`: CIRCL hashlookup's records, by the service's key, and what it did.
    pub circl: HashMap<Digest, hashsweep_lookup::circl::CirclRecord, DigestHash>,
    pub circl_report: Option<circl::CirclReport>,
}

/// Run the pipeline to the end (or until `stop` is set).
pub fn scan(
    cfg: &ScanConfig,
    client: Option<Arc<dyn ReputationClient>>,
    progress: &dyn Progress,
    stop: &Arc<AtomicBool>,
) -> Result<ScanOutput, ScanError> {
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
                    hashsweep_core::platform::describe_io(&e)
                ));
                (Vec::new(), Some(ProcessCounts::default()))
            }
        },
        None => (Vec::new(), None),
    };
    if let Some(c) = process_counts
        && c.denied > 0
    {
        let hint = if hashsweep_core::platform::is_superuser() {
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
            + Duration::from_secs(hashsweep_lookup::budget::unix_secs(
                hashsweep_core::clock::now(),
            )),
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
                    (Some(cache), Some(scope)) => cache
                        .get_budget(scope, hashsweep_core::clock::now())
                        .ok()
                        .flatten(),
                    _ => None,
                },
                ranker: Ranker::new(&cfg.budget)
                    .map_err(|e| ScanError::Usage(format!("invalid --priority-path: {e}")))?,
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
            let rules = cfg.rules.as_deref();
            let cache = cfg
                .cache
                .as_deref()
                .filter(|_| rules.is_none())
                .map(|cache| DigestCache {
                    cache,
                    packages: cfg.packages.as_deref(),
                    opts: cfg.hash,
                });
            let turn = Turn {
                index,
                gate: gate_ref,
            };
            s.spawn(move || {
                // The matcher is made here: a yara-x scanner stays on the thread that made it.
                let mut hasher = Hasher::new(cfg.hash)
                    .with_packages(cfg.packages.clone())
                    .with_roots(Arc::clone(roots_ref))
                    .with_links(Arc::clone(links_ref))
                    .with_stop(Arc::clone(stop))
                    .with_gate(Arc::clone(gate_ref))
                    .with_rules(rules.map(rules::RuleSet::matcher));
                hash_worker(&mut hasher, cache.as_ref(), &local, queue, turn, &res_tx)
            });
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
        c.recall_circl();
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
            .unwrap_or_else(|_| Err(ScanError::Internal("the walker thread panicked".into())));
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
fn current_budget(client: &dyn ReputationClient) -> Option<hashsweep_lookup::Budget> {
    match (client.halted(), client.budget()) {
        // A refused key is no budget matter: what is asked gets the refusal (error).
        (Some(LookupError::QuotaSpent(_)), b) => Some(hashsweep_lookup::Budget {
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
mod tests;
