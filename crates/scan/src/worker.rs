//! The hash workers: each takes walk events from a shared work-stealing queue, asks the digest
//! cache about unchanged files in batches, has the [`Hasher`] read the rest, and sends results to
//! the collector in batches. The hasher only reads and hashes; this is where the cache is asked.
//! There are more workers than CPUs (see [`super::io`]): only the first `depth` take work, the
//! rest wait parked until the reads' latency calls for them.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering, fence};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use crossbeam_deque::{Injector, Stealer, Worker};
use crossbeam_utils::Backoff;

use super::hash::{FileResult, FileStatus, HashOptions, Hasher, Origin};
use super::io::IoGate;
use super::remembered;
use super::walk::WalkEvent;
use hashsweep_cache::{Cache, FileKey};
use hashsweep_core::file::{FileKind, FileMeta};
use hashsweep_core::sync::lock;

/// The digest cache as the workers ask it: files whose (dev, ino, size, mtime, ctime) are
/// unchanged since they were last hashed are answered without being opened.
pub(super) struct DigestCache<'a> {
    pub(super) cache: &'a Cache,
    pub(super) opts: HashOptions,
    /// A file a package owns is a hit only with the digest its package records.
    pub(super) packages: Option<&'a hashsweep_known::packages::PackageDb>,
}

impl DigestCache<'_> {
    /// Look several files (and running programs' images) up in one read transaction (a single
    /// lookup is mostly transaction overhead). Returns the hits as results (an archive's
    /// followed by its members') and the misses to be read.
    fn split(&self, events: Vec<WalkEvent>) -> (Vec<FileResult>, Vec<WalkEvent>) {
        // With --streams every file is opened to list its streams: a stream can be written
        // without the file's times (the cache's key) showing it, so none is taken unread.
        if self.opts.streams && cfg!(windows) {
            return (Vec::new(), events);
        }
        let found = self.lookup(&events);
        let (mut hits, mut misses) = (Vec::new(), Vec::new());
        for (ev, hit) in events.into_iter().zip(found) {
            match hit {
                Some(h) => hits.extend(h),
                None => misses.push(ev),
            }
        }
        (hits, misses)
    }

    /// For each path, the cached digests for its current (dev, ino, size, mtime, ctime) when
    /// the cache holds every digest asked for; one `stat` each, no `open`, one read
    /// transaction for all. With `--archives`, a file that may be an archive is a hit only
    /// with what an earlier sweep with the same settings found inside it (then its members
    /// follow it); an image is never opened as an archive, so it needs no such row. One entry
    /// per event ([`WalkEvent::File`] or [`WalkEvent::Process`]), `None` for a miss.
    ///
    /// An image is stated through its `/proc` link, which leads to the inode the process runs
    /// (its dev, ino, size and times), even when its file was deleted or replaced. A deleted
    /// one is trusted from the cache too: an inode number is reused only once the inode is
    /// freed, and it is not freed while the process holds it, which it does for as long as
    /// the link leads to it. A process that exited meanwhile has no link to state: a miss.
    fn lookup(&self, events: &[WalkEvent]) -> Vec<Option<Vec<FileResult>>> {
        let stat = |ev: &WalkEvent| {
            let (p, follow) = match ev {
                WalkEvent::File(p) => (p, self.opts.follow_symlinks),
                WalkEvent::Process(p) => (p, true),
                _ => return None,
            };
            let (m, meta) = hashsweep_core::platform::stat_path(p, follow).ok()?;
            let wanted =
                m.file_type().is_file() && self.opts.max_size.is_none_or(|max| m.len() <= max);
            wanted.then_some((meta, m.len()))
        };
        let metas: Vec<Option<(FileMeta, u64)>> = events.iter().map(stat).collect();
        let paths: Vec<(&Path, bool)> = events
            .iter()
            .map(|ev| match ev {
                WalkEvent::Process(p) => (p.as_path(), true),
                WalkEvent::File(p)
                | WalkEvent::Guarded(p)
                | WalkEvent::Special { path: p, .. }
                | WalkEvent::Error { path: p, .. } => (p.as_path(), false),
            })
            .collect();
        let keys: Vec<FileKey> = metas
            .iter()
            .flatten()
            .map(|(meta, size)| FileKey::new(meta, *size))
            .collect();
        let mut found = self
            .cache
            .get_files_many(&keys, self.opts.md5, self.opts.sha1)
            .unwrap_or_default()
            .into_iter();
        let hits: Vec<Option<(FileKey, Option<FileKind>, FileResult)>> = paths
            .iter()
            .zip(metas)
            .map(|((p, image), m)| {
                let (meta, size) = m?;
                let (digests, kind) = found.next().flatten()?;
                if let Some(pk) = self.packages
                    && !image
                    && !pk.needs(p).met_by(&digests)
                {
                    return None;
                }
                let res = FileResult {
                    archive: None,
                    path: (*p).into(),
                    size: Some(size),
                    status: FileStatus::Hashed {
                        digests,
                        meta,
                        warning: None,
                        origin: Origin::Cache,
                        // A row from before kinds were kept: the name is all there is.
                        kind: kind.unwrap_or_else(|| FileKind::sniff(&[], p)),
                        rules: None,
                    },
                };
                Some((FileKey::new(&meta, size), kind, res))
            })
            .collect();
        let Some(archives) = self.opts.archives.as_ref() else {
            return hits
                .into_iter()
                .map(|h| h.map(|(_, _, r)| vec![r]))
                .collect();
        };
        // An image is answered as it is; what else may be an archive needs its members too:
        // one more read for all of them.
        let (hits, images): (Vec<_>, Vec<_>) = hits
            .into_iter()
            .zip(&paths)
            .map(|(h, (_, image))| match image {
                true => (None, h.map(|(_, _, r)| vec![r])),
                false => (h, None),
            })
            .unzip();
        let keys: Vec<FileKey> = hits.iter().flatten().map(|(key, _, _)| *key).collect();
        let rows = match keys.is_empty() {
            true => Vec::new(),
            false => self
                .cache
                .get_archives_many(
                    &keys,
                    &remembered::fingerprint(archives),
                    self.opts.md5,
                    self.opts.sha1,
                )
                .unwrap_or_default(),
        };
        let mut rows = rows.into_iter();
        hits.into_iter()
            .zip(images)
            .map(|(h, image)| {
                if image.is_some() {
                    return image;
                }
                // Every kind: a stream format is found by content, so a gzip named `x.js` (a
                // script by its name) is opened too, and its row is needed like an archive's.
                let (_, _, mut res) = h?;
                // A miss (or a failed read): read it, and open it, again.
                let row = rows.next().flatten()?;
                let FileStatus::Hashed { meta, .. } = &res.status else {
                    return None;
                };
                let (inside, members) = remembered::from_row(&res.path, meta, row);
                res.archive = inside.map(Box::new);
                let mut all = Vec::with_capacity(1 + members.len());
                all.push(res);
                all.extend(members);
                Some(all)
            })
            .collect()
    }
}

/// Whether the digest cache may answer for `ev`: a file, or a running program's image. A
/// guarded file's size cannot be trusted, so neither can a key made of it.
fn cacheable(ev: &WalkEvent) -> bool {
    matches!(ev, WalkEvent::File(_) | WalkEvent::Process(_))
}

/// One unit of hash work: a walk event, and whether the digest cache was already asked.
pub(super) struct Task {
    pub(super) ev: WalkEvent,
    pub(super) checked: bool,
}

/// Where idle workers sleep until there is work: with many readers waiting on a slow walk
/// (a share), polling would burn the CPU the hashing needs.
#[derive(Default)]
pub(super) struct Doorbell {
    sleepers: AtomicUsize,
    lock: Mutex<()>,
    rung: Condvar,
}

impl Doorbell {
    /// Work was queued: wake one sleeper, if any (no lock taken when none sleeps).
    pub(super) fn ring(&self) {
        fence(Ordering::SeqCst);
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            let _g = lock(&self.lock);
            self.rung.notify_one();
        }
    }

    /// The walk ended: wake every sleeper to see it.
    pub(super) fn ring_all(&self) {
        let _g = lock(&self.lock);
        self.rung.notify_all();
    }

    /// Sleep until rung (or briefly, as a guard against a missed ring), unless `ready()`.
    fn wait(&self, ready: impl Fn() -> bool) {
        let g = lock(&self.lock);
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if !ready() {
            let _ = self.rung.wait_timeout(g, Duration::from_millis(10));
        }
        self.sleepers.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Where hash workers find work: the walker's queue and each other's local deques.
#[derive(Clone, Copy)]
pub(super) struct WorkQueue<'a> {
    pub(super) injector: &'a Injector<Task>,
    pub(super) stealers: &'a [Stealer<Task>],
    pub(super) walk_done: &'a AtomicBool,
    pub(super) bell: &'a Doorbell,
}

impl WorkQueue<'_> {
    /// Queue a walk event and wake an idle worker for it.
    pub(super) fn push(&self, task: Task) {
        self.injector.push(task);
        self.bell.ring();
    }

    /// The next event for the worker owning `local` (crossbeam-deque's documented pattern).
    /// A batch taken from the walker's queue leaves the rest on this worker's deque: another
    /// worker is woken to steal from it.
    fn find(&self, local: &Worker<Task>) -> Option<Task> {
        local.pop().or_else(|| {
            let found = std::iter::repeat_with(|| {
                self.injector
                    .steal_batch_and_pop(local)
                    .or_else(|| self.stealers.iter().map(Stealer::steal).collect())
            })
            .find(|s| !s.is_retry())
            .and_then(|s| s.success());
            if !local.is_empty() {
                self.bell.ring();
            }
            found
        })
    }

    /// Something may be there to take, or nothing ever will be.
    fn ready(&self) -> bool {
        self.walk_done.load(Ordering::Acquire)
            || !self.injector.is_empty()
            || self.stealers.iter().any(|s| !s.is_empty())
    }

    /// The walk is over and nothing is left anywhere to take.
    pub(super) fn drained(&self) -> bool {
        self.walk_done.load(Ordering::Acquire)
            && self.injector.is_empty()
            && self.stealers.iter().all(Stealer::is_empty)
    }
}

/// The worker's place among the readers, and the gate that says whether it may run.
#[derive(Clone, Copy)]
pub(super) struct Turn<'a> {
    pub(super) index: usize,
    pub(super) gate: &'a IoGate,
}

/// One hash worker. Results go to the collector in batches, flushed whenever the worker runs
/// out of work (so the collector never waits on a half-full batch) or after a slow file.
pub(super) fn hash_worker(
    hasher: &mut Hasher<'_>,
    cache: Option<&DigestCache<'_>>,
    local: &Worker<Task>,
    queue: WorkQueue<'_>,
    turn: Turn<'_>,
    tx: &Sender<Vec<FileResult>>,
) {
    // Parked workers leave once the work is drained: wake them to see it.
    struct WakeOnExit<'a>(&'a IoGate);
    impl Drop for WakeOnExit<'_> {
        fn drop(&mut self) {
            self.0.wake_all();
        }
    }
    let _wake = WakeOnExit(turn.gate);
    const RESULT_BATCH: usize = 64;
    const CACHE_BATCH: usize = 32;
    let mut out: Vec<FileResult> = Vec::with_capacity(RESULT_BATCH);
    let backoff = Backoff::new();
    loop {
        if !turn.gate.may_run(turn.index) {
            // Beyond the depth: hand over what is done, and wait (what this worker's deque
            // holds is stolen by the running ones).
            if !out.is_empty() && tx.send(std::mem::take(&mut out)).is_err() {
                return;
            }
            if !turn.gate.park(turn.index, || queue.drained()) {
                return;
            }
        }
        if let Some(task) = queue.find(local) {
            backoff.reset();
            if let Some(cache) = cache
                && !task.checked
                && cacheable(&task.ev)
            {
                // Gather the unchecked files this worker holds and ask the cache about all of
                // them in one transaction; misses go back on the deque, checked, so another
                // worker can still steal them (a batch must not pin big files to one worker).
                let mut events = Vec::new();
                let mut next = Some(task);
                while let Some(t) = next.take() {
                    match t {
                        Task { ev, checked: false } if cacheable(&ev) => events.push(ev),
                        other => {
                            local.push(other);
                            break;
                        }
                    }
                    if events.len() < CACHE_BATCH {
                        next = local.pop();
                    }
                }
                // One `stat` a path: on a share they wait like reads, and count as latency.
                let asked = Instant::now();
                let calls = u32::try_from(events.len()).unwrap_or(u32::MAX);
                let (hits, misses) = cache.split(events);
                turn.gate.waited(asked.elapsed(), calls);
                // Answered whole, members and all: nothing to open.
                out.extend(hits);
                for ev in misses {
                    local.push(Task { ev, checked: true });
                }
            } else {
                let started = Instant::now();
                let res = hasher.process(task.ev);
                hasher.push_with_members(res, &mut out);
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
        // The first -j workers spin a little (on a warm cache the walker is a moment away);
        // the readers beyond them, there because reads wait, sleep at once: dozens of them
        // spinning would take the CPU the hashing needs.
        if backoff.is_completed() || turn.index >= turn.gate.cpus() {
            queue.bell.wait(|| queue.ready());
        } else {
            backoff.snooze();
        }
    }
}
