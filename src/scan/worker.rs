//! The hash workers: each takes walk events from a shared work-stealing queue, asks the digest
//! cache about unchanged files in batches, has the [`Hasher`] read the rest, and sends results to
//! the collector in batches. The hasher only reads and hashes; this is where the cache is asked.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use crossbeam_deque::{Injector, Stealer, Worker};
use crossbeam_utils::Backoff;

use super::hash::{FileResult, FileStatus, HashOptions, Hasher, Origin};
use super::walk::WalkEvent;
use crate::cache::{Cache, FileKey};
use crate::file::{FileKind, FileMeta};

/// The digest cache as the workers ask it: files whose (dev, ino, size, mtime, ctime) are
/// unchanged since they were last hashed are answered without being opened.
pub(super) struct DigestCache<'a> {
    pub(super) cache: &'a Cache,
    pub(super) opts: HashOptions,
}

impl DigestCache<'_> {
    /// Look several files up in one read transaction (a single lookup is mostly transaction
    /// overhead). Returns the hits as results and the misses to be read.
    fn split(&self, paths: Vec<PathBuf>) -> (Vec<FileResult>, Vec<PathBuf>) {
        let found = self.lookup(&paths);
        let (mut hits, mut misses) = (Vec::new(), Vec::new());
        for (p, hit) in paths.into_iter().zip(found) {
            match hit {
                Some(h) => hits.push(h),
                None => misses.push(p),
            }
        }
        (hits, misses)
    }

    /// For each path, the cached digests for its current (dev, ino, size, mtime, ctime) when
    /// the cache holds every digest asked for; one `stat` each, no `open`, one read
    /// transaction for all. One entry per path, `None` for a miss.
    fn lookup(&self, paths: &[PathBuf]) -> Vec<Option<FileResult>> {
        let stat = |p: &Path| {
            let m = if self.opts.follow_symlinks {
                std::fs::metadata(p)
            } else {
                std::fs::symlink_metadata(p)
            }
            .ok()?;
            let wanted =
                m.file_type().is_file() && self.opts.max_size.is_none_or(|max| m.len() <= max);
            wanted.then(|| (FileMeta::of(&m), m.len()))
        };
        let metas: Vec<Option<(FileMeta, u64)>> = paths.iter().map(|p| stat(p)).collect();
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
        paths
            .iter()
            .zip(metas)
            .map(|(p, m)| {
                let (meta, size) = m?;
                let (digests, kind) = found.next().flatten()?;
                Some(FileResult {
                    archive: None,
                    path: p.as_path().into(),
                    size: Some(size),
                    status: FileStatus::Hashed {
                        digests,
                        meta,
                        warning: None,
                        origin: Origin::Cache,
                        // A row from before kinds were kept: the name is all there is.
                        kind: kind.unwrap_or_else(|| FileKind::sniff(&[], p)),
                    },
                })
            })
            .collect()
    }
}

/// One unit of hash work: a walk event, and whether the digest cache was already asked.
pub(super) struct Task {
    pub(super) ev: WalkEvent,
    pub(super) checked: bool,
}

/// Where hash workers find work: the walker's queue and each other's local deques.
#[derive(Clone, Copy)]
pub(super) struct WorkQueue<'a> {
    pub(super) injector: &'a Injector<Task>,
    pub(super) stealers: &'a [Stealer<Task>],
    pub(super) walk_done: &'a AtomicBool,
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
pub(super) fn hash_worker(
    hasher: &mut Hasher,
    cache: Option<&DigestCache<'_>>,
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
            if let Some(cache) = cache
                && !task.checked
                && matches!(task.ev, WalkEvent::File(_))
            {
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
                let (hits, misses) = cache.split(paths);
                for h in hits {
                    hasher.push_with_members(h, &mut out);
                }
                for p in misses {
                    local.push(Task {
                        ev: WalkEvent::File(p),
                        checked: true,
                    });
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
        if backoff.is_completed() {
            std::thread::sleep(Duration::from_micros(100));
        } else {
            backoff.snooze();
        }
    }
}
