//! Walk stage: turns the roots given on the command line into a stream of [`WalkEvent`]s.
//!
//! It owns the traversal rules: parallel directory reading (the `ignore` crate's walker with all
//! its ignore-file filters off), symlinks (not followed unless asked; loops detected when they
//! are), one-file-system, and `--exclude` globs matched on the path relative to each root.
//! It never opens a file: regular files are passed on by path, anything else is passed on as
//! [`WalkEvent::Special`] so it can be reported as skipped, and errors carry their path.

use std::fs::FileType;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ignore::gitignore::{Gitignore, GitignoreBuilder};
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
}

/// What the walk found at one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WalkEvent {
    /// A regular file (or, with `-L`, a symlink to one), to be hashed.
    File(PathBuf),
    /// Something that is not hashed and never opened, with the reason.
    Special { path: PathBuf, kind: SpecialKind },
    /// The walk could not list or inspect this path.
    Error { path: PathBuf, error: String },
}

/// Kinds of directory entries that are listed as `skipped`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecialKind {
    Fifo,
    Socket,
    BlockDevice,
    CharDevice,
    /// A symlink while symlinks are not followed.
    Symlink,
    /// A symlink whose target does not exist (with `-L`).
    DanglingSymlink,
    Other,
}

impl SpecialKind {
    pub fn reason(self) -> &'static str {
        match self {
            SpecialKind::Fifo => "FIFO (named pipe): not opened",
            SpecialKind::Socket => "socket: not opened",
            SpecialKind::BlockDevice => "block device: not opened",
            SpecialKind::CharDevice => "character device: not opened",
            SpecialKind::Symlink => "symlink: not followed (use -L to follow)",
            SpecialKind::DanglingSymlink => "dangling symlink: target does not exist",
            SpecialKind::Other => "not a regular file",
        }
    }

    fn of(ft: FileType) -> SpecialKind {
        if ft.is_fifo() {
            SpecialKind::Fifo
        } else if ft.is_socket() {
            SpecialKind::Socket
        } else if ft.is_block_device() {
            SpecialKind::BlockDevice
        } else if ft.is_char_device() {
            SpecialKind::CharDevice
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

/// Walk every root, handing one event per non-directory entry to `sink` (from several walker
/// threads at once). Blocks until done or `stop` is set.
pub fn walk(
    roots: &[PathBuf],
    opts: &WalkOptions,
    sink: &(dyn Fn(WalkEvent) + Sync),
    stop: &Arc<AtomicBool>,
) -> Result<(), crate::Error> {
    for root in roots {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let excludes = Arc::new(exclude_matcher(root, &opts.excludes)?);
        let mut builder = WalkBuilder::new(root);
        builder
            .standard_filters(false)
            .follow_links(opts.follow_symlinks)
            .same_file_system(opts.one_file_system)
            .threads(opts.threads);
        if !excludes.is_empty() {
            let ex = Arc::clone(&excludes);
            builder.filter_entry(move |ent| {
                ent.depth() == 0
                    || !ex
                        .matched(ent.path(), ent.file_type().is_some_and(|t| t.is_dir()))
                        .is_ignore()
            });
        }
        builder
            .build_parallel()
            .visit(&mut VisitorBuilder { root, sink, stop });
    }
    Ok(())
}

struct VisitorBuilder<'a> {
    root: &'a Path,
    sink: &'a (dyn Fn(WalkEvent) + Sync),
    stop: &'a Arc<AtomicBool>,
}

impl<'s> ignore::ParallelVisitorBuilder<'s> for VisitorBuilder<'s> {
    fn build(&mut self) -> Box<dyn ignore::ParallelVisitor + 's> {
        Box::new(Visitor {
            root: self.root,
            sink: self.sink,
            stop: Arc::clone(self.stop),
        })
    }
}

/// One walker thread's state.
struct Visitor<'a> {
    root: &'a Path,
    sink: &'a (dyn Fn(WalkEvent) + Sync),
    stop: Arc<AtomicBool>,
}

impl ignore::ParallelVisitor for Visitor<'_> {
    fn visit(&mut self, res: Result<ignore::DirEntry, ignore::Error>) -> WalkState {
        if self.stop.load(Ordering::Relaxed) {
            return WalkState::Quit;
        }
        let ev = match res {
            Ok(ent) => match ent.file_type() {
                Some(ft) if ft.is_dir() => return WalkState::Continue,
                Some(ft) if ft.is_file() => WalkEvent::File(ent.into_path()),
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
}
