//! Walk stage: turns the roots given on the command line into a stream of [`WalkEvent`]s.
//!
//! It owns the traversal rules: parallel directory reading (hashsweep's own walker: no ignore
//! files, hidden files included), symlinks (not followed unless asked; loops detected when they
//! are), one-file-system, `--exclude` globs matched on the path relative to each root, and
//! hashsweep's own files in the tree ([`SkipRule`]: its cache, reported as skipped, never read).
//! The work is a shared stack of jobs, each a directory to list or an entry to `stat`: an entry
//! whose listing did not give its type (FUSE, some network and older local file systems) or a
//! symlink to follow is a job of its own, so those `stat`s wait for the device side by side
//! instead of one after another in the thread listing the directory. A root on a slow file system
//! (a share, a cold disk: its first `lstat` and listing take longer than cached ones can) is
//! walked by [`SLOW_WALK_THREADS`] threads, so listings and `stat`s overlap.
//! Kernel pseudo file systems (proc, sysfs, ...; see [`super::fstype`]) are not entered: the
//! mount point is one skipped entry, unless `--pseudo-fs`, which passes their files on as
//! [`WalkEvent::Guarded`] (read with a deadline and a size cap); ordinary mounts below one
//! (`/dev/shm`) are walked as roots of their own, except under one-file-system. Network mounts
//! crossed are kept for the summary ([`WalkStats`]).
//! It never opens a file: regular files are passed on by path, anything else is passed on as
//! [`WalkEvent::Special`] so it can be reported as skipped, and errors carry their path.

use std::ffi::OsString;
use std::fs::FileType;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ignore::gitignore::{Gitignore, GitignoreBuilder};

use super::fstype::{FsClass, FsTypes};
pub use hashsweep_core::file::{FileId, NamePattern, SkipRule, SpecialKind};
use hashsweep_core::platform::describe_io;
pub use hashsweep_core::platform::file_id;

/// How to walk. Built once from the command line.
#[derive(Debug, Clone, Default)]
pub struct WalkOptions {
    pub follow_symlinks: bool,
    pub one_file_system: bool,
    /// Threads reading directories (0: pick automatically).
    pub threads: usize,
    /// Gitignore-style globs, matched on the path relative to the root.
    pub excludes: Vec<String>,
    /// Files of hashsweep's own (its cache) that are reported as skipped and never read.
    pub skip: Vec<SkipRule>,
    /// Enter kernel pseudo file systems (`--pseudo-fs`), their files read with guards.
    pub pseudo_fs: bool,
}

/// What the walk learned besides its events.
#[derive(Debug, Clone, Default)]
pub struct WalkStats {
    /// Network mounts crossed, as `PATH (TYPE)`.
    pub network_mounts: Vec<String>,
}

/// The pseudo file system `root` is on, if any: the reason a root is not entered.
pub fn pseudo_root(root: &Path) -> Option<&'static str> {
    let dev = hashsweep_core::platform::device(&std::fs::metadata(root).ok()?);
    match FsTypes::default().class(root, dev) {
        FsClass::Pseudo { reason, .. } => Some(reason),
        _ => None,
    }
}

/// Whether a regular file the walk found is one to skip, and as what. Costs no system call
/// unless the name or the inode number (`ino`, where the listing gave one) matches a rule.
fn skipped(rules: &[SkipRule], path: &Path, ino: Option<u64>, follow: bool) -> Option<SpecialKind> {
    if rules.is_empty() {
        return None;
    }
    let name = path.file_name()?;
    let mut dir = None;
    for rule in rules {
        if let Some((_, kind)) = rule.names.iter().find(|(p, _)| p.matches(name)) {
            let parent = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let id = *dir.get_or_insert_with(|| file_id(parent).ok());
            if id == Some(rule.dir) {
                return Some(*kind);
            }
        }
    }
    let ino = ino?;
    let mut known = rules
        .iter()
        .flat_map(|r| &r.files)
        .filter(|((_, i), _)| *i == ino)
        .peekable();
    known.peek()?;
    let (_, m) = hashsweep_core::platform::stat_path(path, follow).ok()?;
    known.find(|(id, _)| *id == m.id()).map(|(_, kind)| *kind)
}

/// What the walk found at one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WalkEvent {
    /// A regular file (or, with `-L`, a symlink to one), to be hashed.
    File(PathBuf),
    /// A file on a pseudo file system (`--pseudo-fs`): its size cannot be trusted, so it is
    /// read with a deadline and a cap, never served from or written to the digest cache.
    Guarded(PathBuf),
    /// A running program's image, read through its `/proc` link (`--processes`; see
    /// [`super::process`]). Not produced by the walk.
    Process(PathBuf),
    /// Something that is not hashed and never opened, with the reason.
    Special { path: PathBuf, kind: SpecialKind },
    /// The walk could not list or inspect this path.
    Error { path: PathBuf, error: String },
}

/// What a directory entry that is neither a file nor a folder is.
fn special_kind(ft: FileType) -> SpecialKind {
    if let Some(kind) = hashsweep_core::platform::device_kind(ft) {
        kind
    } else if ft.is_symlink() {
        SpecialKind::Symlink
    } else {
        SpecialKind::Other
    }
}

/// Compile `--exclude` globs for one root. A bad glob is an error for the whole run.
pub fn exclude_matcher(root: &Path, globs: &[String]) -> Result<Gitignore, crate::ScanError> {
    let mut b = GitignoreBuilder::new(root);
    for g in globs {
        b.add_line(None, g)
            .map_err(|e| crate::ScanError::Usage(format!("bad --exclude glob '{g}': {e}")))?;
    }
    b.build()
        .map_err(|e| crate::ScanError::Usage(format!("bad --exclude globs: {e}")))
}

/// Directory readers for a root on a slow file system: its listings and `stat`s wait for the
/// device (on a share, the walk is a large part of the sweep), so many are under way at once.
pub const SLOW_WALK_THREADS: usize = 32;
/// Walker threads on a root that answers quickly, unless `-j`-style options say otherwise: the
/// listings come from the page cache, and more threads only contend for the job stack.
const FAST_WALK_THREADS: usize = 12;
/// A root whose `lstat` and first listing took longer than this together is on a slow file
/// system: from the page cache the pair takes microseconds.
const SLOW_PROBE: Duration = Duration::from_micros(300);

/// Walker threads for `root`: `threads` (0: the CPU count, at most [`FAST_WALK_THREADS`]), or
/// [`SLOW_WALK_THREADS`] if the root answers slowly.
fn walk_threads(root: &Path, threads: usize) -> usize {
    let t = Instant::now();
    let _ = std::fs::symlink_metadata(root);
    if let Ok(mut listing) = std::fs::read_dir(root) {
        let _ = listing.next();
    }
    let threads = match threads {
        0 => std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(FAST_WALK_THREADS),
        n => n,
    };
    if t.elapsed() > SLOW_PROBE {
        threads.max(SLOW_WALK_THREADS)
    } else {
        threads
    }
}

/// The file systems to walk below `dir`, a directory on a pseudo file system that is not
/// entered: each mount below it that is not pseudo itself (tmpfs at `/dev/shm`, a disk
/// mounted under `/sys`...), unless an ordinary mount already taken encloses it (walking that
/// one reaches it). One below a pseudo mount inside `dir` is taken too.
fn roots_below(dir: &Path, fs: &FsTypes) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for m in super::fstype::mounts_below(dir) {
        if out.iter().any(|o| m.starts_with(o)) {
            continue;
        }
        let Ok(md) = std::fs::symlink_metadata(&m) else {
            continue;
        };
        if md.is_dir()
            && !matches!(
                fs.class(&m, hashsweep_core::platform::device(&md)),
                FsClass::Pseudo { .. }
            )
        {
            out.push(m);
        }
    }
    out
}

/// Walk every root, handing one event per non-directory entry to `sink` (from several walker
/// threads at once). Blocks until done or `stop` is set.
///
/// A directory not entered because it is on a pseudo file system may hold ordinary mounts
/// (`/dev/shm` is tmpfs under devtmpfs's `/dev`): unless `-x` (which stays on the root's
/// device), each is walked after the root it was found under, with that root's excludes.
pub fn walk(
    roots: &[PathBuf],
    opts: &WalkOptions,
    sink: &(dyn Fn(WalkEvent) + Sync),
    stop: &Arc<AtomicBool>,
) -> Result<WalkStats, crate::ScanError> {
    walk_with(
        Arc::new(FsTypes::default()),
        roots,
        opts,
        sink,
        stop,
        &Probe::default(),
    )
}

/// [`walk`], with what is known of the devices' file systems so far.
fn walk_with(
    fs: Arc<FsTypes>,
    roots: &[PathBuf],
    opts: &WalkOptions,
    sink: &(dyn Fn(WalkEvent) + Sync),
    stop: &Arc<AtomicBool>,
    probe: &Probe,
) -> Result<WalkStats, crate::ScanError> {
    // Roots to walk, each with the excludes of the command-line root it is under.
    let mut queue: std::collections::VecDeque<(PathBuf, Option<Arc<Gitignore>>)> =
        roots.iter().map(|r| (r.clone(), None)).collect();
    // Every root walked, so a mount named on the command line is not walked again.
    let mut taken: std::collections::HashSet<PathBuf> = roots.iter().cloned().collect();
    while let Some((root, inherited)) = queue.pop_front() {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let root = &root;
        let excludes = match inherited {
            Some(ex) => ex,
            None => Arc::new(exclude_matcher(root, &opts.excludes)?),
        };
        let mut below = |dir: &Path| {
            if opts.one_file_system {
                return;
            }
            for extra in roots_below(dir, &fs) {
                if !excludes.matched(&extra, true).is_ignore() && taken.insert(extra.clone()) {
                    queue.push_back((extra, Some(Arc::clone(&excludes))));
                }
            }
        };
        if !opts.pseudo_fs
            && let Some(reason) = pseudo_root(root)
        {
            sink(WalkEvent::Special {
                path: root.clone(),
                kind: SpecialKind::PseudoFs(reason),
            });
            below(root);
            continue;
        }
        let mut walker = Walker {
            opts,
            excludes: &excludes,
            fs: &fs,
            sink,
            stop,
            probe,
            root_dev: None,
            pruned: Mutex::default(),
            jobs: Mutex::default(),
            ready: Condvar::new(),
        };
        walker.walk_root(root);
        for (path, reason) in walker
            .pruned
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)
        {
            below(&path);
            sink(WalkEvent::Special {
                path,
                kind: SpecialKind::PseudoFs(reason),
            });
        }
    }
    Ok(WalkStats {
        network_mounts: fs.network_mounts(),
    })
}

/// What an entry is, as far as the walk needs to know.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Dir,
    File,
    Symlink,
    Special(SpecialKind),
    /// The listing did not say: a `stat` will.
    Unknown,
}

impl Kind {
    fn of(ft: FileType) -> Kind {
        if ft.is_dir() {
            Kind::Dir
        } else if ft.is_file() {
            Kind::File
        } else if ft.is_symlink() {
            Kind::Symlink
        } else {
            Kind::Special(special_kind(ft))
        }
    }
}

/// One entry of a directory listing.
struct Listed {
    name: OsString,
    kind: Kind,
    /// The inode number the listing carries (Unix), for skip rules without a `stat`.
    ino: Option<u64>,
}

/// Directory listings that keep what the kernel said of each entry: on Unix `getdents` through
/// rustix, whose type is `Unknown` where the file system did not fill `d_type` (std's listing
/// would `lstat` such an entry on the spot, in the listing thread).
#[cfg(unix)]
mod listing {
    use super::{Kind, Listed, SpecialKind};
    use hashsweep_core::file::FileMeta;
    use rustix::fs::FileType;
    use std::ffi::OsStr;
    use std::fs::Metadata;
    use std::io;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::OpenOptionsExt;
    use std::path::Path;

    /// Open the directory `path` (not through a final symlink if `nofollow`): its identity and
    /// device, and its entries.
    pub(super) fn open(path: &Path, nofollow: bool) -> io::Result<(Metadata, FileMeta, Entries)> {
        let mut flags = libc::O_DIRECTORY;
        if nofollow {
            flags |= libc::O_NOFOLLOW;
        }
        let dir = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(flags)
            .open(path)?;
        let md = dir.metadata()?;
        let m = hashsweep_core::platform::meta_of_file(&dir, &md)?;
        Ok((md, m, Entries(rustix::fs::Dir::new(dir)?)))
    }

    pub(super) struct Entries(rustix::fs::Dir);

    impl Iterator for Entries {
        type Item = io::Result<Listed>;

        fn next(&mut self) -> Option<io::Result<Listed>> {
            loop {
                let ent = match self.0.read()? {
                    Ok(ent) => ent,
                    // The listing ends at its first error.
                    Err(e) => return Some(Err(e.into())),
                };
                let name = ent.file_name().to_bytes();
                if name == b"." || name == b".." {
                    continue;
                }
                let kind = match ent.file_type() {
                    FileType::RegularFile => Kind::File,
                    FileType::Directory => Kind::Dir,
                    FileType::Symlink => Kind::Symlink,
                    FileType::Fifo => Kind::Special(SpecialKind::Fifo),
                    FileType::Socket => Kind::Special(SpecialKind::Socket),
                    FileType::CharacterDevice => Kind::Special(SpecialKind::CharDevice),
                    FileType::BlockDevice => Kind::Special(SpecialKind::BlockDevice),
                    _ => Kind::Unknown,
                };
                return Some(Ok(Listed {
                    name: OsStr::from_bytes(name).to_os_string(),
                    kind,
                    ino: Some(ent.ino()),
                }));
            }
        }
    }
}

/// Directory listings on Windows: `FindNextFile` gives every entry's type.
#[cfg(windows)]
mod listing {
    use super::{Kind, Listed};
    use hashsweep_core::file::FileMeta;
    use std::fs::Metadata;
    use std::io;
    use std::path::Path;

    /// The directory `path` (followed: reparse points that are not followed never get here):
    /// its identity and volume, and its entries.
    pub(super) fn open(path: &Path, _nofollow: bool) -> io::Result<(Metadata, FileMeta, Entries)> {
        let (md, m) = hashsweep_core::platform::stat_path(path, true)?;
        Ok((md, m, Entries(std::fs::read_dir(path)?)))
    }

    pub(super) struct Entries(std::fs::ReadDir);

    impl Iterator for Entries {
        type Item = io::Result<Listed>;

        fn next(&mut self) -> Option<io::Result<Listed>> {
            let ent = self.0.next()?;
            Some(ent.and_then(|e| {
                Ok(Listed {
                    kind: Kind::of(e.file_type()?),
                    name: e.file_name(),
                    ino: None,
                })
            }))
        }
    }
}

/// A directory on the way from the root to a job, for the `-L` loop check.
struct Ancestor {
    path: PathBuf,
    id: FileId,
    up: Option<Arc<Ancestor>>,
}

/// One unit of the walk's work.
enum Job {
    /// List a directory.
    Dir {
        path: PathBuf,
        depth: usize,
        up: Option<Arc<Ancestor>>,
    },
    /// Find out what an entry is: its listing did not say, or it is a symlink to follow.
    Stat {
        path: PathBuf,
        depth: usize,
        guarded: bool,
        up: Option<Arc<Ancestor>>,
    },
}

/// The job stack the walker threads share.
#[derive(Default)]
struct Jobs {
    stack: Vec<Job>,
    /// Jobs on the stack or being worked on: the walk is done when none are.
    pending: usize,
}

/// The walk of one root: shared by its threads.
struct Walker<'a> {
    opts: &'a WalkOptions,
    excludes: &'a Gitignore,
    fs: &'a FsTypes,
    sink: &'a (dyn Fn(WalkEvent) + Sync),
    stop: &'a AtomicBool,
    probe: &'a Probe,
    /// The root's device, under one-file-system.
    root_dev: Option<u64>,
    /// Directories not entered because they are on pseudo file systems, with the reason.
    pruned: Mutex<Vec<(PathBuf, &'static str)>>,
    jobs: Mutex<Jobs>,
    ready: Condvar,
}

impl Walker<'_> {
    /// Walk `root` to the end (or until stopped).
    fn walk_root(&mut self, root: &Path) {
        let (md, m) = match hashsweep_core::platform::stat_path(root, true) {
            Ok(found) => found,
            Err(e) => {
                return (self.sink)(io_event(root.to_path_buf(), &e));
            }
        };
        // Classified here so that a root on a network mount is named as crossed.
        // The class by `platform::device`, as everywhere else; the identity's volume (`m.dev`,
        // the same on Unix) for one-file-system.
        let class = self.fs.class(root, hashsweep_core::platform::device(&md));
        if self.opts.one_file_system {
            self.root_dev = Some(m.dev);
        }
        if !md.is_dir() {
            let guarded = self.opts.pseudo_fs && matches!(class, FsClass::Pseudo { .. });
            self.entry(
                root.to_path_buf(),
                0,
                Kind::of(md.file_type()),
                Some(m.id().1),
                guarded,
                &None,
            );
            return;
        }
        self.push(Job::Dir {
            path: root.to_path_buf(),
            depth: 0,
            up: None,
        });
        let threads = walk_threads(root, self.opts.threads);
        std::thread::scope(|s| {
            for i in 1..threads {
                let spawned = std::thread::Builder::new()
                    .name(format!("hashsweep-walk-{i}"))
                    .spawn_scoped(s, || self.work());
                if spawned.is_err() {
                    // Fewer threads walk: slower, not wrong.
                    break;
                }
            }
            self.work();
        });
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn push(&self, job: Job) {
        let mut jobs = hashsweep_core::sync::lock(&self.jobs);
        jobs.stack.push(job);
        jobs.pending += 1;
        drop(jobs);
        self.ready.notify_one();
    }

    /// One walker thread: take jobs until none are left anywhere.
    fn work(&self) {
        loop {
            let job = {
                let mut jobs = hashsweep_core::sync::lock(&self.jobs);
                loop {
                    if let Some(job) = jobs.stack.pop() {
                        break job;
                    }
                    if jobs.pending == 0 {
                        return;
                    }
                    jobs = self
                        .ready
                        .wait(jobs)
                        .unwrap_or_else(PoisonError::into_inner);
                }
            };
            // Counted as done however it ends (a panic in the sink included), so the other
            // threads do not wait for it forever.
            let _done = Done(self);
            // Once stopped, the jobs left are dropped, not done.
            if !self.stopped() {
                match job {
                    Job::Dir { path, depth, up } => self.list(path, depth, up),
                    Job::Stat {
                        path,
                        depth,
                        guarded,
                        up,
                    } => self.stat(path, depth, guarded, up),
                }
            }
        }
    }

    fn excluded(&self, path: &Path, depth: usize, is_dir: bool) -> bool {
        depth > 0 && !self.excludes.is_empty() && self.excludes.matched(path, is_dir).is_ignore()
    }

    /// List the directory `path` and hand on each entry.
    fn list(&self, path: PathBuf, depth: usize, up: Option<Arc<Ancestor>>) {
        let follow = self.opts.follow_symlinks;
        let (md, m, entries) = match listing::open(&path, depth > 0 && !follow) {
            Ok(opened) => opened,
            Err(e) => return (self.sink)(io_event(path, &e)),
        };
        let class = self.fs.class(&path, hashsweep_core::platform::device(&md));
        if depth > 0 {
            if let FsClass::Pseudo { reason, .. } = class
                && !self.opts.pseudo_fs
            {
                hashsweep_core::sync::lock(&self.pruned).push((path, reason));
                return;
            }
            if self.root_dev.is_some_and(|dev| dev != m.dev) {
                return;
            }
        }
        let guarded = self.opts.pseudo_fs && matches!(class, FsClass::Pseudo { .. });
        let up = follow.then(|| {
            Arc::new(Ancestor {
                path: path.clone(),
                id: m.id(),
                up,
            })
        });
        for listed in entries {
            if self.stopped() {
                return;
            }
            match listed {
                Ok(l) => {
                    let kind = if self.probe.forget_types() {
                        Kind::Unknown
                    } else {
                        l.kind
                    };
                    self.entry(path.join(&l.name), depth + 1, kind, l.ino, guarded, &up);
                }
                Err(e) => {
                    return (self.sink)(WalkEvent::Error {
                        error: describe_io(&e),
                        path,
                    });
                }
            }
        }
    }

    /// Decide what to do with one entry: walk into it, `stat` it, or pass it on.
    fn entry(
        &self,
        path: PathBuf,
        depth: usize,
        kind: Kind,
        ino: Option<u64>,
        guarded: bool,
        up: &Option<Arc<Ancestor>>,
    ) {
        let follow = self.opts.follow_symlinks;
        let is_dir = matches!(kind, Kind::Dir);
        if matches!(kind, Kind::Unknown) || (follow && matches!(kind, Kind::Symlink)) {
            return self.push(Job::Stat {
                path,
                depth,
                guarded,
                up: up.clone(),
            });
        }
        if self.excluded(&path, depth, is_dir) {
            return;
        }
        let ev = match kind {
            Kind::Dir => {
                return self.push(Job::Dir {
                    path,
                    depth,
                    up: up.clone(),
                });
            }
            Kind::File => match skipped(&self.opts.skip, &path, ino, follow) {
                Some(kind) => WalkEvent::Special { path, kind },
                None if guarded => WalkEvent::Guarded(path),
                None => WalkEvent::File(path),
            },
            Kind::Symlink => WalkEvent::Special {
                path,
                kind: SpecialKind::Symlink,
            },
            Kind::Special(kind) => WalkEvent::Special { path, kind },
            Kind::Unknown => WalkEvent::Special {
                path,
                kind: SpecialKind::Other,
            },
        };
        (self.sink)(ev);
    }

    /// Find out what `path` is (following it with `-L`), then hand it on as [`Self::entry`].
    fn stat(&self, path: PathBuf, depth: usize, guarded: bool, up: Option<Arc<Ancestor>>) {
        let follow = self.opts.follow_symlinks;
        let _in_stat = self.probe.enter();
        let (md, m) = match hashsweep_core::platform::stat_path(&path, follow) {
            Ok(found) => found,
            Err(_) if self.excluded(&path, depth, false) => return,
            Err(e) => return (self.sink)(io_event(path, &e)),
        };
        if follow && md.is_dir() {
            let id = m.id();
            let mut at = up.as_deref();
            while let Some(a) = at {
                if a.id == id {
                    return (self.sink)(WalkEvent::Error {
                        error: format!("symlink loop: leads back to {}", a.path.display()),
                        path,
                    });
                }
                at = a.up.as_deref();
            }
        }
        self.entry(
            path,
            depth,
            Kind::of(md.file_type()),
            Some(m.id().1),
            guarded,
            &up,
        );
    }
}

/// Marks one job done when dropped: the walk ends when no job is left pending.
struct Done<'w, 'a>(&'w Walker<'a>);

impl Drop for Done<'_, '_> {
    fn drop(&mut self) {
        let mut jobs = hashsweep_core::sync::lock(&self.0.jobs);
        jobs.pending -= 1;
        if jobs.pending == 0 {
            self.0.ready.notify_all();
        }
    }
}

/// The event for a path the walk could not inspect or list: a dangling symlink (with `-L`) is
/// one to report as skipped, anything else an error naming the cause.
fn io_event(path: PathBuf, err: &io::Error) -> WalkEvent {
    if err.kind() == io::ErrorKind::NotFound
        && std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink())
    {
        return WalkEvent::Special {
            path,
            kind: SpecialKind::DanglingSymlink,
        };
    }
    WalkEvent::Error {
        error: describe_io(err),
        path,
    }
}

/// What a test can ask of the walk: to treat every listed type as unknown (as FUSE and some
/// network file systems give them), and to see how many `stat`s are under way at once.
#[cfg(test)]
#[derive(Default)]
struct Probe {
    forget_types: bool,
    stat_pause: Duration,
    in_stat: std::sync::atomic::AtomicUsize,
    most_in_stat: std::sync::atomic::AtomicUsize,
}

#[cfg(test)]
impl Probe {
    fn forget_types(&self) -> bool {
        self.forget_types
    }

    /// Count a `stat` under way until the guard is dropped, after the probe's pause.
    fn enter(&self) -> impl Drop + '_ {
        let now = self.in_stat.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_in_stat.fetch_max(now, Ordering::SeqCst);
        std::thread::sleep(self.stat_pause);
        struct Leave<'p>(&'p Probe);
        impl Drop for Leave<'_> {
            fn drop(&mut self) {
                self.0.in_stat.fetch_sub(1, Ordering::SeqCst);
            }
        }
        Leave(self)
    }
}

/// Outside tests the probe asks nothing and costs nothing.
#[cfg(not(test))]
#[derive(Default)]
struct Probe(());

#[cfg(not(test))]
impl Probe {
    fn forget_types(&self) -> bool {
        false
    }

    /// A guard with nothing to do.
    fn enter(&self) -> &Self {
        self
    }
}

#[cfg(test)]
mod tests;
