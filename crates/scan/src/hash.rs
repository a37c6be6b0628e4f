//! Hash stage: reads each regular file once, in large blocks, through SHA-256 and, when asked,
//! MD5 and SHA-1 in the same pass. Owns how files are opened (never following a swapped-in
//! symlink unless asked, never blocking on a FIFO, `O_NOATIME` where allowed) and how a file
//! that changes while it is read is flagged. Every outcome, including errors, is a [`FileResult`].

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use md5::Md5;
use sha1::Sha1;
use sha2::{Digest as _, Sha256};

use super::hashed::{Capture, Inside, MatchBytes, SUB_BLOCK, Sum};
pub use super::hashed::{FileResult, FileStatus, HashOptions, Origin};
pub use super::io::BLOCK_SIZE;
use super::io::IoGate;
use super::walk::WalkEvent;
use hashsweep_core::digest::Digests;
use hashsweep_core::file::{FileKind, FileMeta};
use hashsweep_core::platform::describe_io;
use hashsweep_core::platform::open_for_hashing;
use hashsweep_core::sync::lock;
use hashsweep_known::packages::{Need, PackageDb};

/// A file on a pseudo file system (`--pseudo-fs`) is read for this long at most...
pub const GUARD_DEADLINE: std::time::Duration = std::time::Duration::from_secs(2);
/// ...and no further than the size `stat` gave, or this far when it gave 0 (proc's files).
pub const GUARD_ZERO_SIZE_CAP: u64 = 1 << 20;

/// Why a named data stream got no digest without `--streams`.
pub const STREAM_NOT_READ: &str = "alternate data stream: not read (--streams reads it)";

/// A file's named data streams as paths that open them, with their sizes; or why they could
/// not be listed.
type Listed = Result<Vec<(PathBuf, u64)>, String>;

/// The path of the error record for a file whose streams could not be listed: `PATH:*`.
fn unlisted_streams(file: &Path) -> PathBuf {
    let all = hashsweep_core::platform::NamedStream {
        name: "*".encode_utf16().collect(),
        size: 0,
    };
    hashsweep_core::platform::stream_path(file, &all)
}

/// Whether `res` is one of a file's named data streams (or the record saying they could not
/// be listed): results the walk did not produce, so not counted against its total. Windows
/// allows no `:` in a file's name, so one there names a stream (`f.txt:name`).
pub fn is_stream(res: &FileResult) -> bool {
    cfg!(windows)
        && res
            .path
            .file_name()
            .is_some_and(|n| n.as_encoded_bytes().contains(&b':'))
}

/// How a path is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadAs {
    Plain,
    /// With the guards of a pseudo file system.
    Guarded,
    /// A running program's image, through /proc.
    Image,
    /// A named data stream of a file, `path:name` (Windows, `--streams`).
    Stream,
}

/// A file read to the end: its digests, the bytes read, the `read` calls it took, and what its
/// first block says it is.
type WholeRead = (Digests, u64, u32, FileKind);

/// Reusable per-thread state: the read buffer, the run's stop flag, the hard links seen, and
/// with `--yara` the worker's rule matcher (borrowing the run's rules for `'r`).
pub struct Hasher<'r> {
    opts: HashOptions,
    buf: Vec<u8>,
    stop: Arc<AtomicBool>,
    /// The paths given on the command line.
    roots: Arc<std::collections::HashSet<PathBuf>>,
    /// Digests of multiply-linked files read in this run, by (dev, ino), shared by workers.
    links: Arc<LinkMap>,
    /// The run's reads in flight, CPU permits and rate cap, shared by workers.
    gate: Arc<IoGate>,
    /// How long a guarded read may take ([`GUARD_DEADLINE`]; shorter in tests).
    guard_deadline: std::time::Duration,
    /// The members of the archive just read, when they were read in the same pass as its
    /// digest (a tar or compressed stream), for [`Hasher::push_with_members`].
    expanded: Option<(PathBuf, Inside, Vec<FileResult>)>,
    /// The named data streams (their paths and sizes) of the file just opened, or why they
    /// could not be listed, for [`Hasher::push_with_members`].
    streams: Option<(PathBuf, Listed)>,
    /// The package databases (`--packages`): a file a package owns is read through the
    /// digest its manager records too (MD5 for dpkg, SHA-1 for apk), decided by its path.
    packages: Option<Arc<PackageDb>>,
    /// What the file being read needs beyond the run's digests.
    extra: Need,
    /// `--yara`: the worker's matcher, and the bytes of the file being read kept for it.
    rules: Option<Box<dyn MatchBytes + 'r>>,
    capture: Capture,
}

/// Files with more than one hard link (and running programs' images), by (dev, ino, ino_hi):
/// read already, or being read by one worker now. Another worker that meets the same inode
/// while it is being read waits for that read instead of reading it too.
#[derive(Default)]
pub struct LinkMap {
    map: Mutex<HashMap<LinkKey, LinkState>>,
    settled: Condvar,
}

type LinkKey = (u64, u64, u64);

/// (size, mtime, ctime) of the inode when it was read.
type LinkStamp = (u64, i64, i64);

enum LinkState {
    Reading,
    Read(LinkStamp, Digests, FileKind),
}

impl LinkMap {
    /// The digests of `key` if it was read with this `stamp`; otherwise `None` and a claim:
    /// this caller reads it and settles the claim (by [`LinkClaim::read`] or by dropping it).
    fn claim(&self, key: LinkKey, stamp: LinkStamp) -> Result<(Digests, FileKind), LinkClaim<'_>> {
        let mut map = lock(&self.map);
        loop {
            match map.get(&key) {
                Some(LinkState::Read(s, d, k)) if *s == stamp => return Ok((*d, *k)),
                Some(LinkState::Reading) => {
                    map = match self.settled.wait(map) {
                        Ok(g) => g,
                        Err(p) => p.into_inner(),
                    };
                }
                _ => {
                    map.insert(key, LinkState::Reading);
                    return Err(LinkClaim {
                        links: self,
                        key,
                        done: false,
                    });
                }
            }
        }
    }
}

/// One worker's claim to read an inode for [`LinkMap`]; dropped unsettled (the read failed or
/// was stopped), it lets the next one read it.
struct LinkClaim<'a> {
    links: &'a LinkMap,
    key: LinkKey,
    done: bool,
}

impl LinkClaim<'_> {
    fn read(mut self, stamp: LinkStamp, digests: Digests, kind: FileKind) {
        lock(&self.links.map).insert(self.key, LinkState::Read(stamp, digests, kind));
        self.done = true;
        self.links.settled.notify_all();
    }
}

impl Drop for LinkClaim<'_> {
    fn drop(&mut self) {
        if !self.done {
            lock(&self.links.map).remove(&self.key);
            self.links.settled.notify_all();
        }
    }
}

impl<'r> Hasher<'r> {
    pub fn new(opts: HashOptions) -> Hasher<'r> {
        Hasher {
            opts,
            buf: vec![0; BLOCK_SIZE],
            stop: Arc::new(AtomicBool::new(false)),
            roots: Arc::default(),
            links: Arc::default(),
            gate: Arc::new(IoGate::single()),
            guard_deadline: GUARD_DEADLINE,
            expanded: None,
            streams: None,
            packages: None,
            extra: Need::default(),
            rules: None,
            capture: Capture::default(),
        }
    }

    /// Match every file read (and every archive member) against `rules` (`--yara`), on the
    /// same bytes the digests are computed from. A file another hard link already read is
    /// read again then: its name is a global the rules may test.
    pub fn with_rules(mut self, rules: Option<Box<dyn MatchBytes + 'r>>) -> Hasher<'r> {
        self.capture = Capture::new(rules.as_ref().map_or(0, |r| r.cap()));
        self.rules = rules;
        self
    }

    /// Read package-owned files through the digests their package records.
    pub fn with_packages(mut self, packages: Option<Arc<PackageDb>>) -> Hasher<'r> {
        self.packages = packages;
        self
    }

    /// The run's digest options with what the file being read needs added.
    fn read_opts(&self) -> HashOptions {
        HashOptions {
            md5: self.opts.md5 || self.extra.md5,
            sha1: self.opts.sha1 || self.extra.sha1,
            ..self.opts
        }
    }

    /// Share the run's I/O gate (hashing permits, adaptive depth, rate cap) with the others.
    pub fn with_gate(mut self, gate: Arc<IoGate>) -> Hasher<'r> {
        self.gate = gate;
        self
    }

    /// Share hard-link digests with the other workers of a run.
    pub fn with_links(mut self, links: Arc<LinkMap>) -> Hasher<'r> {
        self.links = links;
        self
    }

    /// The paths named on the command line (a symlink among them is followed).
    pub fn with_roots(mut self, roots: Arc<std::collections::HashSet<PathBuf>>) -> Hasher<'r> {
        self.roots = roots;
        self
    }

    /// Abandon reading (between blocks) once `stop` is set.
    pub fn with_stop(mut self, stop: Arc<AtomicBool>) -> Hasher<'r> {
        self.stop = stop;
        self
    }

    /// `res`, then, for an archive with `--archives`, one result per member: all into `out`.
    /// The members were read with the file's digest when the format allows (see
    /// [`super::archive::stream_format`]); a zip or 7z is opened again now, while the file
    /// is still in the page cache.
    pub fn push_with_members(&mut self, res: FileResult, out: &mut Vec<FileResult>) {
        let streams = self.streams.take().filter(|(p, _)| *p == *res.path);
        self.push_with_archive_members(res, out);
        // Then the file's named data streams: read with --streams (an archive in one is opened
        // like a file's), listed as skipped without.
        let streams = match streams {
            None => return,
            Some((_, Ok(s))) => s,
            Some((file, Err(why))) => {
                out.push(FileResult {
                    archive: None,
                    path: unlisted_streams(&file).into(),
                    size: None,
                    status: FileStatus::Error(why),
                });
                return;
            }
        };
        for (path, size) in streams {
            if self.opts.streams {
                let res = self.hash_path_with(path, ReadAs::Stream);
                self.push_with_archive_members(res, out);
            } else {
                out.push(FileResult {
                    archive: None,
                    path: path.into(),
                    size: Some(size),
                    status: FileStatus::Skipped(STREAM_NOT_READ.into()),
                });
            }
        }
    }

    /// `res`, then its archive members (see [`Hasher::push_with_members`]).
    fn push_with_archive_members(&mut self, mut res: FileResult, out: &mut Vec<FileResult>) {
        if let Some((path, inside, members)) = self.expanded.take()
            && *path == *res.path
            && matches!(res.status, FileStatus::Hashed { .. })
        {
            res.archive = Some(Box::new(inside));
            out.push(res);
            out.extend(members);
            return;
        }
        if let (Some(opts), FileStatus::Hashed { meta, kind, .. }) =
            (self.opts.archives.as_ref(), &res.status)
            // Macro-enabled Office files are zips too (and what is inside them matters).
            // And executables: a self-extractor is a zip behind a stub.
            && matches!(kind, FileKind::Archive | FileKind::Document | FileKind::Executable)
            && let Some((inside, members)) = super::archive::expand(
                &res.path,
                meta,
                &self.opts,
                opts,
                &self.stop,
                &self.gate,
                &mut self.buf,
                self.rules.as_deref_mut().map(|r| r as &mut dyn MatchBytes),
            )
        {
            res.archive = Some(Box::new(inside));
            out.push(res);
            out.extend(members);
            return;
        }
        out.push(res);
    }

    /// Turn a walk event into a result, reading the file when it is a regular file.
    pub fn process(&mut self, ev: WalkEvent) -> FileResult {
        match ev {
            WalkEvent::File(path) | WalkEvent::Guarded(path) | WalkEvent::Process(path)
                if self.stop.load(Ordering::Relaxed) =>
            {
                FileResult {
                    archive: None,
                    path: path.into(),
                    size: None,
                    status: FileStatus::Interrupted,
                }
            }
            WalkEvent::File(path) => self.hash_path(path),
            WalkEvent::Guarded(path) => self.hash_guarded(path),
            WalkEvent::Process(path) => self.hash_path_with(path, ReadAs::Image),
            WalkEvent::Special { path, kind } => FileResult {
                archive: None,
                path: path.into(),
                size: None,
                status: FileStatus::Skipped(kind.reason().to_string()),
            },
            WalkEvent::Error { path, error } => FileResult {
                archive: None,
                path: path.into(),
                size: None,
                status: FileStatus::Error(error),
            },
        }
    }

    /// Read and hash one path.
    pub fn hash_path(&mut self, path: PathBuf) -> FileResult {
        self.hash_path_with(path, ReadAs::Plain)
    }

    /// Read and hash a file whose size cannot be trusted (on a pseudo file system): the read
    /// stops at [`GUARD_DEADLINE`] or at the size `stat` gave ([`GUARD_ZERO_SIZE_CAP`] when it
    /// gave 0), and a file cut short, or one that would block, is skipped, not hashed.
    pub fn hash_guarded(&mut self, path: PathBuf) -> FileResult {
        self.hash_path_with(path, ReadAs::Guarded)
    }

    fn hash_path_with(&mut self, path: PathBuf, how: ReadAs) -> FileResult {
        let guarded = how == ReadAs::Guarded;
        // Decided by the path, before the read: a sweep without packages pays nothing.
        self.extra = match (&self.packages, how) {
            (Some(p), ReadAs::Plain) => p.needs(&path),
            _ => Need::default(),
        };
        // A symlink named on the command line is followed, as the walker does for a
        // directory root (like `find -H`); anywhere else a symlink is not. A running
        // program's image is reached through /proc's links, always followed.
        let opening = std::time::Instant::now();
        // A stream's file was opened, and found regular, just before.
        let follow = self.opts.follow_symlinks
            || matches!(how, ReadAs::Image | ReadAs::Stream)
            || self.roots.contains(&*path);
        let opened = open_for_hashing(&path, follow);
        let file = match opened {
            Ok(f) => f,
            Err(e) => {
                return FileResult {
                    archive: None,
                    path: path.into(),
                    size: None,
                    status: FileStatus::Error(if hashsweep_core::platform::is_locked(&e) {
                        hashsweep_core::platform::LOCKED.to_string()
                    } else {
                        format!("cannot open: {}", describe_io(&e))
                    }),
                };
            }
        };
        let before = match file.metadata() {
            Ok(m) => m,
            Err(e) => {
                return FileResult {
                    archive: None,
                    path: path.into(),
                    size: None,
                    status: FileStatus::Error(format!("cannot stat: {}", describe_io(&e))),
                };
            }
        };
        self.gate.opened(opening.elapsed());
        if !before.file_type().is_file() {
            return FileResult {
                archive: None,
                path: path.into(),
                size: None,
                status: FileStatus::Skipped(
                    "not a regular file when opened (replaced since the walk): not read".into(),
                ),
            };
        }
        if how == ReadAs::Plain {
            self.streams = self.list_streams(&file, &path);
        }
        let stat_size = before.len();
        if let Some(max) = self.opts.max_size
            && stat_size > max
        {
            return FileResult {
                archive: None,
                path: path.into(),
                size: Some(stat_size),
                status: FileStatus::Skipped(format!(
                    "larger than --max-size ({stat_size} bytes > {}): not read",
                    super::sizes::flag_size(max)
                )),
            };
        }
        // Another link to an inode already read (and unchanged since) is not read again.
        let (meta, links) = match hashsweep_core::platform::meta_of_file(&file, &before)
            .and_then(|m| Ok((m, hashsweep_core::platform::link_count(&file, &before)?)))
        {
            Ok(m) => m,
            Err(e) => {
                return FileResult {
                    archive: None,
                    path: path.into(),
                    size: Some(stat_size),
                    status: FileStatus::Error(format!("cannot stat: {}", describe_io(&e))),
                };
            }
        };
        // Running programs share images: each is read once too. A stream carries its file's
        // identity but not its content: never shared.
        let link_map = Arc::clone(&self.links);
        let mut link_claim = None;
        let link_key =
            ((links > 1 || how == ReadAs::Image) && how != ReadAs::Stream && self.rules.is_none())
                .then_some((meta.dev, meta.ino, meta.ino_hi));
        let claim =
            match link_key.map(|k| link_map.claim(k, (stat_size, meta.mtime_ns, meta.ctime_ns))) {
                Some(Ok(read)) if self.extra.met_by(&read.0) => Some(read),
                // Read without a digest this path's package records: read it again.
                Some(Ok(_)) => None,
                Some(Err(claim)) => {
                    link_claim = Some(claim);
                    None
                }
                None => None,
            };
        if let Some((digests, kind)) = claim {
            return FileResult {
                archive: None,
                path: path.into(),
                size: Some(stat_size),
                status: FileStatus::Hashed {
                    digests,
                    meta,
                    warning: None,
                    origin: Origin::Link,
                    kind,
                    rules: None,
                },
            };
        }
        let mut file = file;
        let guard = guarded.then(|| {
            let cap = if stat_size == 0 {
                GUARD_ZERO_SIZE_CAP
            } else {
                stat_size
            };
            (cap, std::time::Instant::now() + self.guard_deadline)
        });
        self.expanded = None;
        self.capture.reset();
        let once = match how {
            ReadAs::Plain => self.read_archive_once(&file, &path, &meta, stat_size),
            _ => None,
        };
        let read = match once {
            Some(r) => r,
            None => self.read_digests(&mut file, &path, stat_size, guard),
        };
        if read.is_err() {
            self.expanded = None;
        }
        let (digests, read, reads, kind) = match read {
            Ok(v) => v,
            Err((e, read)) if guarded && e.kind() == io::ErrorKind::WouldBlock => {
                return FileResult {
                    archive: None,
                    path: path.into(),
                    size: Some(read),
                    status: FileStatus::Skipped(
                        "pseudo file system: the read would block (a stream, not a file): not hashed"
                            .into(),
                    ),
                };
            }
            Err((e, read)) if guarded && e.kind() == io::ErrorKind::TimedOut => {
                return FileResult {
                    archive: None,
                    path: path.into(),
                    size: Some(read),
                    status: FileStatus::Skipped(format!(
                        "pseudo file system: {e} after {read} bytes: not hashed"
                    )),
                };
            }
            Err((e, _)) if e.kind() == io::ErrorKind::Interrupted => {
                return FileResult {
                    archive: None,
                    path: path.into(),
                    size: Some(stat_size),
                    status: FileStatus::Interrupted,
                };
            }
            Err((e, read)) => {
                return FileResult {
                    archive: None,
                    path: path.into(),
                    size: Some(stat_size),
                    status: FileStatus::Error(format!(
                        "read failed after {read} bytes: {}",
                        describe_io(&e)
                    )),
                };
            }
        };
        // A file read in one call cannot have changed between reads; only a longer read is
        // checked again for a size or mtime change.
        let after = if reads > 1 {
            file.metadata().ok()
        } else {
            None
        };
        let warning =
            change_warning(stat_size, read, &meta, after.as_ref()).map(String::into_boxed_str);
        let rules = self
            .rules
            .as_mut()
            .map(|m| Box::new(m.match_capture(&path, &self.capture)));
        if let Some(claim) = link_claim
            && warning.is_none()
        {
            claim.read((read, meta.mtime_ns, meta.ctime_ns), digests, kind);
        }
        FileResult {
            archive: None,
            path: path.into(),
            size: Some(read),
            status: FileStatus::Hashed {
                digests,
                meta,
                warning,
                origin: if how == ReadAs::Stream {
                    Origin::Stream
                } else {
                    Origin::Read
                },
                kind,
                rules,
            },
        }
    }

    /// The named data streams of `file` (at `path`), as paths that open them; `None` when it
    /// has none (always off Windows). A list that cannot be read becomes an error record
    /// (see [`unlisted_streams`]): what may hide there was not looked at.
    fn list_streams(&self, file: &File, path: &Path) -> Option<(PathBuf, Listed)> {
        let listed = match hashsweep_core::platform::named_streams(file) {
            Ok(s) if s.is_empty() => return None,
            Ok(s) => Ok(s
                .iter()
                .map(|s| (hashsweep_core::platform::stream_path(path, s), s.size))
                .collect()),
            Err(e) => Err(format!(
                "its alternate data streams could not be listed: {}",
                describe_io(&e)
            )),
        };
        Some((path.to_path_buf(), listed))
    }

    /// With `--archives`, a file that is a tar or a compressed stream is read once for both
    /// its digest and its members: the bytes the decompressor takes are hashed on the way, and
    /// what it leaves (past a limit, after damage) is read for the digest after it. The members
    /// wait in `self.expanded`. `None`: not such a file (read it as any other).
    fn read_archive_once(
        &mut self,
        file: &File,
        path: &Path,
        meta: &FileMeta,
        stat_size: u64,
    ) -> Option<Result<WholeRead, (io::Error, u64)>> {
        let opts = self.opts.archives.as_ref()?;
        let mut head = [0u8; 512];
        // One small read more per file with --archives (no position moved); readahead brings
        // in what follows, so the reads below start from the page cache.
        let n = hashsweep_core::platform::read_at(file, &mut head, 0).ok()?;
        let format = super::archive::stream_format(&head[..n], opts)?;
        let mut tee = TeeFile {
            file,
            gate: &self.gate,
            stop: &self.stop,
            nowait: true,
            sum: Sum::new(&self.read_opts()).with_capture(self.rules.as_deref()),
            stat_size,
            total: 0,
            reads: 0,
            failed: None,
        };
        let expanded = {
            // What the decompressor reads ahead and leaves is hashed already: the rest of the
            // file is read on from where the reads stopped.
            let cap = usize::try_from(stat_size)
                .unwrap_or(BLOCK_SIZE)
                .clamp(8 << 10, BLOCK_SIZE);
            let mut src = io::BufReader::with_capacity(cap, &mut tee);
            super::archive::expand_stream(
                path,
                meta,
                &self.opts,
                opts,
                &self.stop,
                &self.gate,
                &mut self.buf,
                format,
                &mut src,
                self.rules.as_deref_mut().map(|r| r as &mut dyn MatchBytes),
            )
        };
        let rest = loop {
            match io::Read::read(&mut tee, &mut self.buf) {
                Ok(0) => break Ok(()),
                Ok(_) => {}
                Err(e)
                    if e.kind() == io::ErrorKind::Interrupted
                        && !self.stop.load(Ordering::Relaxed) => {}
                Err(e) => break Err(e),
            }
        };
        // A read error met by the decompressor is the file's error, not damage inside.
        if let Some(e) = tee.failed.take() {
            return Some(Err((e, tee.total)));
        }
        if let Err(e) = rest {
            return Some(Err((e, tee.total)));
        }
        self.expanded = Some((path.to_path_buf(), expanded.0, expanded.1));
        if let Some(c) = tee.sum.capture.take() {
            self.capture = c;
        }
        let kind = FileKind::sniff(&head[..n], path);
        Some(Ok((tee.sum.finish(), tee.total, tee.reads, kind)))
    }

    /// Read to the end. Returns the digests, the bytes read, how many `read` calls it took, and
    /// what the first block says the file is.
    ///
    /// A short read that brings the total to exactly the size `fstat` gave is taken as the end
    /// of the file, saving the extra `read` that would return 0 (most small files are read in
    /// one call). Anything else (a full buffer, a size mismatch, a share returning short
    /// reads mid-file) reads on until `read` returns 0.
    fn read_digests(
        &mut self,
        file: &mut File,
        path: &Path,
        stat_size: u64,
        guard: Option<(u64, std::time::Instant)>,
    ) -> Result<WholeRead, (io::Error, u64)> {
        let mut sha256 = Sha256::new();
        let opts = self.read_opts();
        let mut md5 = opts.md5.then(Md5::new);
        let mut sha1 = opts.sha1.then(Sha1::new);
        let multi = md5.is_some() || sha1.is_some();
        let mut total = 0u64;
        let mut reads = 0u32;
        let mut kind = None;
        // Ask the page cache alone first (see `IoGate::read`), while the file system allows it.
        let mut nowait = true;
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return Err((
                    io::Error::new(io::ErrorKind::Interrupted, "interrupted"),
                    total,
                ));
            }
            let mut want = self.buf.len();
            if let Some((cap, deadline)) = guard {
                if std::time::Instant::now() >= deadline {
                    let msg = format!("read stopped at the {:?} deadline", self.guard_deadline);
                    return Err((io::Error::new(io::ErrorKind::TimedOut, msg), total));
                }
                if total >= cap {
                    if stat_size > 0 {
                        // As far as `stat` said: what lies beyond is not trusted.
                        break;
                    }
                    let msg = format!("read stopped at the {cap}-byte cap");
                    return Err((io::Error::new(io::ErrorKind::TimedOut, msg), total));
                }
                want = want.min(usize::try_from(cap - total).unwrap_or(usize::MAX));
            }
            let expected = stat_size.saturating_sub(total).clamp(1, want as u64);
            self.gate.throttle(expected);
            let n = match self.gate.read(file, &mut self.buf[..want], &mut nowait) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err((e, total)),
            };
            total += n as u64;
            reads += 1;
            let at_end = n < self.buf.len() && total == stat_size;
            let data = &self.buf[..n];
            let capture = self.rules.is_some().then_some(&mut self.capture);
            // Hashing holds one of the run's `-j` CPU permits, however many reads are waiting.
            self.gate.hash(|| {
                kind.get_or_insert_with(|| FileKind::sniff(data, path));
                if let Some(c) = capture {
                    c.feed(data);
                }
                if multi {
                    for chunk in data.chunks(SUB_BLOCK) {
                        sha256.update(chunk);
                        if let Some(h) = md5.as_mut() {
                            h.update(chunk);
                        }
                        if let Some(h) = sha1.as_mut() {
                            h.update(chunk);
                        }
                    }
                } else {
                    sha256.update(data);
                }
            });
            self.gate.tick();
            if at_end {
                break;
            }
        }
        let digests = Digests {
            sha256: sha256.finalize().into(),
            md5: md5.map(|h| h.finalize().into()),
            sha1: sha1.map(|h| h.finalize().into()),
        };
        let kind = kind.unwrap_or_else(|| FileKind::sniff(&[], path));
        Ok((digests, total, reads, kind))
    }
}

/// A file read through the gate (rate cap, adaptive depth) whose bytes are hashed as they
/// pass, under a CPU permit: an archive's digest, while its members are decompressed from the
/// same bytes. The first read error is kept (the decompressor may wrap it).
struct TeeFile<'a> {
    file: &'a File,
    gate: &'a IoGate,
    stop: &'a AtomicBool,
    nowait: bool,
    sum: Sum,
    stat_size: u64,
    total: u64,
    reads: u32,
    failed: Option<io::Error>,
}

impl io::Read for TeeFile<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // The decompressor never sees `Interrupted`: flate2's header parsing and `Read::bytes`
        // retry on that kind, so a stop would spin forever. The kept error says what it was.
        let for_decoder = |e: &io::Error| match e.kind() {
            io::ErrorKind::Interrupted => io::Error::other(e.to_string()),
            kind => io::Error::new(kind, e.to_string()),
        };
        if let Some(e) = &self.failed {
            return Err(for_decoder(e));
        }
        if self.stop.load(Ordering::Relaxed) {
            let e = io::Error::new(io::ErrorKind::Interrupted, "interrupted");
            let told = for_decoder(&e);
            self.failed = Some(e);
            return Err(told);
        }
        let want = buf.len().min(BLOCK_SIZE);
        let expected = self
            .stat_size
            .saturating_sub(self.total)
            .clamp(1, want as u64);
        self.gate.throttle(expected);
        let n = loop {
            match self
                .gate
                .read(self.file, &mut buf[..want], &mut self.nowait)
            {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let copy = io::Error::new(e.kind(), e.to_string());
                    self.failed = Some(e);
                    return Err(copy);
                }
            }
        };
        self.total += n as u64;
        self.reads += 1;
        let sum = &mut self.sum;
        self.gate.hash(|| sum.update(&buf[..n]));
        self.gate.tick();
        Ok(n)
    }
}

fn change_warning(
    stat_size: u64,
    read: u64,
    meta: &FileMeta,
    after: Option<&std::fs::Metadata>,
) -> Option<String> {
    if read != stat_size {
        return Some(format!(
            "size changed while reading: stat said {stat_size} bytes, {read} were read; the digest is of the bytes read"
        ));
    }
    let after = after?;
    let mtime_after = hashsweep_core::platform::mtime_ns(after);
    if after.len() != stat_size || mtime_after != meta.mtime_ns {
        return Some(
            "file was modified while it was read; the digest may not match its current content"
                .into(),
        );
    }
    None
}

#[cfg(test)]
mod tests;
