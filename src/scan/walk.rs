//! Walk stage: turns the roots given on the command line into a stream of [`WalkEvent`]s.
//!
//! It owns the traversal rules: parallel directory reading (the `ignore` crate's walker with all
//! its ignore-file filters off), symlinks (not followed unless asked; loops detected when they
//! are), one-file-system, `--exclude` globs matched on the path relative to each root, and
//! hashsweep's own files in the tree ([`SkipRule`]: its cache, reported as skipped, never read).
//! A root on a slow file system (a share, a cold disk: its first `lstat` and listing take longer
//! than cached ones can) is walked by [`SLOW_WALK_THREADS`] directory readers, so listings and
//! `stat`s that wait for the device overlap.
//! Kernel pseudo file systems (proc, sysfs, ...; see [`super::fstype`]) are not entered: the
//! mount point is one skipped entry, unless `--pseudo-fs`, which passes their files on as
//! [`WalkEvent::Guarded`] (read with a deadline and a size cap); ordinary mounts below one
//! (`/dev/shm`) are walked as roots of their own, except under one-file-system. Network mounts
//! crossed are kept for the summary ([`WalkStats`]).
//! It never opens a file: regular files are passed on by path, anything else is passed on as
//! [`WalkEvent::Special`] so it can be reported as skipped, and errors carry their path.

use std::fs::FileType;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ignore::gitignore::{Gitignore, GitignoreBuilder};

use super::fstype::{FsClass, FsTypes};
pub use crate::file::{FileId, NamePattern, SkipRule, SpecialKind, file_id};
use ignore::{WalkBuilder, WalkState};

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
    let dev = crate::platform::device(&std::fs::metadata(root).ok()?);
    match FsTypes::default().class(root, dev) {
        FsClass::Pseudo { reason, .. } => Some(reason),
        _ => None,
    }
}

/// Whether a regular file the walk found is one to skip, and as what. Costs no system call
/// unless the name or the inode number matches a rule.
fn skipped(rules: &[SkipRule], ent: &ignore::DirEntry) -> Option<SpecialKind> {
    if rules.is_empty() {
        return None;
    }
    let name = ent.file_name();
    let mut dir = None;
    for rule in rules {
        if let Some((_, kind)) = rule.names.iter().find(|(p, _)| p.matches(name)) {
            let parent = ent
                .path()
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let id = *dir.get_or_insert_with(|| file_id(parent).ok());
            if id == Some(rule.dir) {
                return Some(*kind);
            }
        }
    }
    let ino = crate::platform::entry_ino(ent)?;
    let mut known = rules
        .iter()
        .flat_map(|r| &r.files)
        .filter(|((_, i), _)| *i == ino)
        .peekable();
    known.peek()?;
    let (_, m) = crate::platform::stat_path(ent.path(), ent.path_is_symlink()).ok()?;
    known
        .find(|(id, _)| *id == (m.dev, m.ino ^ m.ino_hi))
        .map(|(_, kind)| *kind)
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

impl SpecialKind {
    fn of(ft: FileType) -> SpecialKind {
        if let Some(kind) = crate::platform::device_kind(ft) {
            kind
        } else if ft.is_symlink() {
            SpecialKind::Symlink
        } else {
            SpecialKind::Other
        }
    }
}

/// Compile `--exclude` globs for one root. A bad glob is an error for the whole run.
pub fn exclude_matcher(root: &Path, globs: &[String]) -> Result<Gitignore, crate::Error> {
    let mut b = GitignoreBuilder::new(root);
    for g in globs {
        b.add_line(None, g)
            .map_err(|e| crate::Error::Usage(format!("bad --exclude glob '{g}': {e}")))?;
    }
    b.build()
        .map_err(|e| crate::Error::Usage(format!("bad --exclude globs: {e}")))
}

/// Directory readers for a root on a slow file system: its listings and `stat`s wait for the
/// device (on a share, the walk is a large part of the sweep), so many are under way at once.
pub const SLOW_WALK_THREADS: usize = 32;
/// A root whose `lstat` and first listing took longer than this together is on a slow file
/// system: from the page cache the pair takes microseconds.
const SLOW_PROBE: Duration = Duration::from_micros(300);

/// Walker threads for `root`: `threads` (0: the walker's choice), or [`SLOW_WALK_THREADS`] if
/// the root answers slowly.
fn walk_threads(root: &Path, threads: usize) -> usize {
    let t = Instant::now();
    let _ = std::fs::symlink_metadata(root);
    if let Ok(mut listing) = std::fs::read_dir(root) {
        let _ = listing.next();
    }
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
                fs.class(&m, crate::platform::device(&md)),
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
) -> Result<WalkStats, crate::Error> {
    walk_with(Arc::new(FsTypes::default()), roots, opts, sink, stop)
}

/// [`walk`], with what is known of the devices' file systems so far.
fn walk_with(
    fs: Arc<FsTypes>,
    roots: &[PathBuf],
    opts: &WalkOptions,
    sink: &(dyn Fn(WalkEvent) + Sync),
    stop: &Arc<AtomicBool>,
) -> Result<WalkStats, crate::Error> {
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
        // The walk classifies what it enters below the root; the root itself is classified
        // here, so a root on a network mount is named as crossed.
        if let Ok(md) = std::fs::metadata(root) {
            fs.class(root, crate::platform::device(&md));
        }
        let mut builder = WalkBuilder::new(root);
        builder
            .standard_filters(false)
            .follow_links(opts.follow_symlinks)
            .same_file_system(opts.one_file_system)
            .threads(walk_threads(root, opts.threads));
        // Pruned before their listing is read: excluded paths, and pseudo file systems (kept
        // to be reported once the walk of this root is done).
        let pruned: Arc<std::sync::Mutex<Vec<(PathBuf, &'static str)>>> = Arc::default();
        {
            let ex = Arc::clone(&excludes);
            let fs = Arc::clone(&fs);
            let pruned = Arc::clone(&pruned);
            let pseudo_fs = opts.pseudo_fs;
            builder.filter_entry(move |ent| {
                if ent.depth() == 0 {
                    return true;
                }
                let dir = ent.file_type().is_some_and(|t| t.is_dir());
                if !ex.is_empty() && ex.matched(ent.path(), dir).is_ignore() {
                    return false;
                }
                // One `lstat` per directory; `statfs` once per device.
                if dir
                    && let Ok(md) = ent.metadata()
                    && let FsClass::Pseudo { reason, .. } =
                        fs.class(ent.path(), crate::platform::device(&md))
                    && !pseudo_fs
                {
                    crate::sync::lock(&pruned).push((ent.path().to_path_buf(), reason));
                    return false;
                }
                true
            });
        }
        builder.build_parallel().visit(&mut VisitorBuilder {
            root,
            skip: &opts.skip,
            sink,
            stop,
            fs: &fs,
            pseudo_fs: opts.pseudo_fs,
        });
        for (path, reason) in std::mem::take(&mut *crate::sync::lock(&pruned)) {
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

struct VisitorBuilder<'a> {
    root: &'a Path,
    skip: &'a [SkipRule],
    sink: &'a (dyn Fn(WalkEvent) + Sync),
    stop: &'a Arc<AtomicBool>,
    fs: &'a FsTypes,
    pseudo_fs: bool,
}

impl<'s> ignore::ParallelVisitorBuilder<'s> for VisitorBuilder<'s> {
    fn build(&mut self) -> Box<dyn ignore::ParallelVisitor + 's> {
        Box::new(Visitor {
            root: self.root,
            skip: self.skip,
            sink: self.sink,
            stop: Arc::clone(self.stop),
            fs: self.fs,
            pseudo_fs: self.pseudo_fs,
        })
    }
}

/// One walker thread's state.
struct Visitor<'a> {
    root: &'a Path,
    skip: &'a [SkipRule],
    sink: &'a (dyn Fn(WalkEvent) + Sync),
    stop: Arc<AtomicBool>,
    fs: &'a FsTypes,
    pseudo_fs: bool,
}

impl Visitor<'_> {
    /// The class of the file system `ent` is on (one `lstat`; `statfs` once per device).
    fn class(&self, ent: &ignore::DirEntry) -> FsClass {
        match ent.metadata() {
            Ok(md) => self.fs.class(ent.path(), crate::platform::device(&md)),
            Err(_) => FsClass::Ordinary,
        }
    }
}

impl ignore::ParallelVisitor for Visitor<'_> {
    fn visit(&mut self, res: Result<ignore::DirEntry, ignore::Error>) -> WalkState {
        if self.stop.load(Ordering::Relaxed) {
            return WalkState::Quit;
        }
        let ev = match res {
            Ok(ent) => match ent.file_type() {
                Some(ft) if ft.is_dir() => return WalkState::Continue,
                Some(ft) if ft.is_file() => match skipped(self.skip, &ent) {
                    Some(kind) => WalkEvent::Special {
                        path: ent.into_path(),
                        kind,
                    },
                    None if self.pseudo_fs
                        && matches!(self.class(&ent), FsClass::Pseudo { .. }) =>
                    {
                        WalkEvent::Guarded(ent.into_path())
                    }
                    None => WalkEvent::File(ent.into_path()),
                },
                Some(ft) => WalkEvent::Special {
                    path: ent.into_path(),
                    kind: SpecialKind::of(ft),
                },
                None => WalkEvent::Special {
                    path: ent.into_path(),
                    kind: SpecialKind::Other,
                },
            },
            Err(err) => event_for_error(self.root, &err),
        };
        (self.sink)(ev);
        WalkState::Continue
    }
}

/// Turn a walker error into an event that names the path it concerns.
fn event_for_error(root: &Path, err: &ignore::Error) -> WalkEvent {
    let path = error_path(err).unwrap_or(root).to_path_buf();
    if let ignore::Error::Loop { ancestor, .. } = innermost(err) {
        return WalkEvent::Error {
            error: format!("symlink loop: leads back to {}", ancestor.display()),
            path,
        };
    }
    if let Some(io) = err.io_error()
        && io.kind() == std::io::ErrorKind::NotFound
        && std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink())
    {
        return WalkEvent::Special {
            path,
            kind: SpecialKind::DanglingSymlink,
        };
    }
    WalkEvent::Error {
        path,
        error: describe(innermost(err)),
    }
}

fn innermost(err: &ignore::Error) -> &ignore::Error {
    match err {
        ignore::Error::WithPath { err, .. }
        | ignore::Error::WithDepth { err, .. }
        | ignore::Error::WithLineNumber { err, .. } => innermost(err),
        ignore::Error::Partial(errs) if errs.len() == 1 => innermost(&errs[0]),
        other => other,
    }
}

fn error_path(err: &ignore::Error) -> Option<&Path> {
    match err {
        ignore::Error::WithPath { path, .. } => Some(path),
        ignore::Error::WithDepth { err, .. } | ignore::Error::WithLineNumber { err, .. } => {
            error_path(err)
        }
        ignore::Error::Loop { child, .. } => Some(child),
        ignore::Error::Partial(errs) => errs.iter().find_map(error_path),
        _ => None,
    }
}

fn describe(err: &ignore::Error) -> String {
    match err.io_error() {
        Some(io) => crate::file::describe_io(io),
        None => err.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;
    #[cfg(unix)]
    use std::os::unix::fs::symlink;

    fn collect(root: &Path, opts: &WalkOptions) -> Vec<WalkEvent> {
        let got = std::sync::Mutex::new(Vec::new());
        let sink = |ev| got.lock().unwrap().push(ev);
        walk(
            &[root.to_path_buf()],
            opts,
            &sink,
            &Arc::new(AtomicBool::new(false)),
        )
        .unwrap();
        let mut v = got.into_inner().unwrap();
        v.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
        v
    }

    #[test]
    fn excludes_match_relative_paths_and_prune_directories() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("a/skip")).unwrap();
        std::fs::write(d.path().join("a/keep.txt"), b"x").unwrap();
        std::fs::write(d.path().join("a/skip/no.txt"), b"x").unwrap();
        std::fs::write(d.path().join("a/x.log"), b"x").unwrap();
        let opts = WalkOptions {
            excludes: vec!["a/skip".into(), "*.log".into()],
            ..Default::default()
        };
        let ev = collect(d.path(), &opts);
        assert_eq!(ev, vec![WalkEvent::File(d.path().join("a/keep.txt"))]);
    }

    // Unix only: the test makes symlinks (Windows needs a privilege for one).
    #[cfg(unix)]
    #[test]
    fn symlinks_are_listed_not_followed_by_default_and_loops_detected_with_follow() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("sub")).unwrap();
        std::fs::write(d.path().join("sub/f"), b"x").unwrap();
        symlink(d.path(), d.path().join("sub/loop")).unwrap();
        symlink(d.path().join("nowhere"), d.path().join("dangling")).unwrap();

        let ev = collect(d.path(), &WalkOptions::default());
        assert!(ev.contains(&WalkEvent::Special {
            path: d.path().join("sub/loop"),
            kind: SpecialKind::Symlink
        }));
        assert!(ev.contains(&WalkEvent::Special {
            path: d.path().join("dangling"),
            kind: SpecialKind::Symlink
        }));

        let ev = collect(
            d.path(),
            &WalkOptions {
                follow_symlinks: true,
                ..Default::default()
            },
        );
        assert!(
            ev.contains(&WalkEvent::Special {
                path: d.path().join("dangling"),
                kind: SpecialKind::DanglingSymlink
            }),
            "{ev:?}"
        );
        assert!(
            ev.iter().any(|e| matches!(e, WalkEvent::Error { path, error } if path.ends_with("sub/loop") && error.contains("loop"))),
            "{ev:?}"
        );
        assert!(ev.contains(&WalkEvent::File(d.path().join("sub/f"))));
    }

    /// A root on a network mount is named as crossed, with its own path (not that of the
    /// first directory below it).
    #[test]
    fn a_root_on_a_network_mount_is_named_as_crossed() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("sub")).unwrap();
        std::fs::write(d.path().join("sub/f"), b"x").unwrap();
        let dev = crate::platform::device(&std::fs::metadata(d.path()).unwrap());
        let fs = Arc::new(FsTypes::known(dev, FsClass::Network("nfs")));
        let stats = walk_with(
            fs,
            &[d.path().to_path_buf()],
            &WalkOptions::default(),
            &|_| {},
            &Arc::new(AtomicBool::new(false)),
        )
        .unwrap();
        assert_eq!(
            stats.network_mounts,
            vec![format!("{} (nfs)", d.path().display())]
        );
    }

    #[test]
    fn name_patterns_match_whole_names_or_both_ends() {
        let is = NamePattern::Is("c.sqlite-wal".into());
        assert!(is.matches(OsStr::new("c.sqlite-wal")));
        assert!(!is.matches(OsStr::new("c.sqlite-wal2")));
        let around = NamePattern::Around("hashset-".into(), ".idx".into());
        assert!(around.matches(OsStr::new("hashset-0123456789abcdef.idx")));
        assert!(around.matches(OsStr::new("hashset-.idx")));
        assert!(!around.matches(OsStr::new("hashset-.id")));
        assert!(!around.matches(OsStr::new("hashset.idx")));
        let short = NamePattern::Around("ab".into(), "bc".into());
        assert!(
            !short.matches(OsStr::new("abc")),
            "the ends may not overlap"
        );
        assert!(!around.matches(OsStr::new("my-hashset-1.idx")));
    }

    // Unix only: the test makes symlinks (Windows needs a privilege for one).
    #[cfg(unix)]
    /// hashsweep's own files are listed as skipped, never passed on to be read: by name in
    /// their directory however that directory is spelled (here through a symlinked root), and
    /// by identity wherever else they are reached (a hard link). Same names elsewhere, and
    /// other names beside them, are walked as usual.
    #[test]
    fn own_files_are_skipped_by_directory_identity_and_name_or_by_file_identity() {
        let d = tempfile::tempdir().unwrap();
        let cache_dir = d.path().join("home/.cache/hs");
        std::fs::create_dir_all(&cache_dir).unwrap();
        for name in ["c.db", "c.db-wal", "mine.txt"] {
            std::fs::write(cache_dir.join(name), b"x").unwrap();
        }
        std::fs::create_dir(d.path().join("home/other")).unwrap();
        std::fs::write(d.path().join("home/other/c.db-wal"), b"x").unwrap();
        std::fs::hard_link(cache_dir.join("c.db"), d.path().join("home/other/link")).unwrap();
        symlink(d.path().join("home"), d.path().join("alias")).unwrap();
        let rule = SkipRule {
            dir: file_id(&cache_dir).unwrap(),
            names: vec![
                (NamePattern::Is("c.db".into()), SpecialKind::OwnCache),
                (NamePattern::Is("c.db-wal".into()), SpecialKind::OwnCache),
            ],
            files: vec![(
                file_id(&cache_dir.join("c.db")).unwrap(),
                SpecialKind::OwnCache,
            )],
        };
        let opts = WalkOptions {
            skip: vec![rule],
            ..Default::default()
        };
        let root = d.path().join("alias");
        let ev = collect(&root, &opts);
        let own = |rel: &str| WalkEvent::Special {
            path: root.join(rel),
            kind: SpecialKind::OwnCache,
        };
        let file = |rel: &str| WalkEvent::File(root.join(rel));
        let mut want = vec![
            own(".cache/hs/c.db"),
            own(".cache/hs/c.db-wal"),
            file(".cache/hs/mine.txt"),
            file("other/c.db-wal"),
            own("other/link"),
        ];
        want.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
        assert_eq!(ev, want);
        assert!(
            SpecialKind::OwnCache
                .reason()
                .contains("hashsweep's own cache")
        );
    }
}
