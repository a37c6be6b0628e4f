//! What reading and hashing a file takes and yields, shared by the file reader
//! ([`super::hash`]) and the archive reader ([`super::archive`]), which both hash: the options
//! ([`HashOptions`], [`ArchiveOptions`] with its ClamAV-derived limits), the result of one path
//! ([`FileResult`], [`FileStatus`], [`Origin`], [`Inside`]) and the digests of one read ([`Sum`]).
//! Plain data and no I/O, so neither reader needs the other's internals.

use std::ffi::OsStr;
use std::path::Path;
use std::time::Duration;

use md5::Md5;
use sha1::Sha1;
use sha2::{Digest as _, Sha256};

use hashsweep_core::archive_format::Formats;
use hashsweep_core::digest::Digests;
use hashsweep_core::file::{FileKind, FileMeta};

/// `--archive-depth`: archive levels opened (the file on disk is level 1).
pub const DEFAULT_DEPTH: u32 = 5;
/// `--archive-max-bytes`: bytes decompressed from one archive, all levels (ClamAV MaxScanSize).
pub const DEFAULT_MAX_BYTES: u64 = 400 << 20;
/// `--archive-max-member`: bytes of one member (ClamAV MaxFileSize).
pub const DEFAULT_MAX_MEMBER: u64 = 100 << 20;
/// `--archive-max-members`: members of one archive, all levels (ClamAV MaxFiles).
pub const DEFAULT_MAX_MEMBERS: u64 = 10_000;
/// `--archive-timeout`: time for one archive (ClamAV MaxScanTime).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
/// `--archive-max-ratio`: decompressed bytes per compressed byte before a stream is taken for
/// a bomb (deflate of zeros is about 1030:1; ordinary data rarely passes 50:1).
pub const DEFAULT_MAX_RATIO: u64 = 250;
/// With several digests, each is fed this much at a time so the bytes stay in cache.
pub const SUB_BLOCK: usize = 64 << 10;
/// What to compute and what to leave alone.
#[derive(Debug, Clone, Copy, Default)]
pub struct HashOptions {
    pub md5: bool,
    pub sha1: bool,
    /// Files larger than this are skipped, not read.
    pub max_size: Option<u64>,
    /// Follow a symlink at the final path component when opening (`-L`).
    pub follow_symlinks: bool,
    /// `--archives`: read the members of archives too.
    pub archives: Option<ArchiveOptions>,
    /// `--streams` (Windows): read each named data stream of a file as a record of its own;
    /// without it, each is a `skipped` record.
    pub streams: bool,
}

/// What `--archives` and its limits say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchiveOptions {
    pub formats: Formats,
    pub depth: u32,
    pub max_bytes: u64,
    pub max_member: u64,
    pub max_members: u64,
    pub timeout: Duration,
    pub max_ratio: u64,
}

impl Default for ArchiveOptions {
    fn default() -> Self {
        ArchiveOptions {
            formats: Formats::ALL,
            depth: DEFAULT_DEPTH,
            max_bytes: DEFAULT_MAX_BYTES,
            max_member: DEFAULT_MAX_MEMBER,
            max_members: DEFAULT_MAX_MEMBERS,
            timeout: DEFAULT_TIMEOUT,
            max_ratio: DEFAULT_MAX_RATIO,
        }
    }
}

/// What a result says about archives, besides its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inside {
    /// A member: the first `container_len` bytes of the path are the file on disk; after the
    /// `!` that follows comes the member's path inside (escaped, see [`escape`]).
    Member {
        container_len: usize,
        note: Option<Box<str>>,
    },
    /// A file on disk that was opened as an archive: whether all of it was read, and why not.
    /// `repeatable`: reading the same bytes with the same settings would find the same (no
    /// `--archive-timeout`, no interruption), so what was found may be kept in the cache.
    Container {
        complete: bool,
        note: Option<Box<str>>,
        repeatable: bool,
    },
}

impl FileResult {
    /// The file on disk and the path inside it, for a member of an archive.
    pub fn container_member(&self) -> Option<(&Path, &Path)> {
        match self.archive.as_deref() {
            Some(Inside::Member { container_len, .. }) => {
                let raw = self.path.as_os_str().as_encoded_bytes();
                let (c, m) = raw.split_at((*container_len).min(raw.len()));
                // The container's name is followed by the ASCII `!` (or nothing).
                let m = match m {
                    [] => m,
                    [b'!', rest @ ..] => rest,
                    _ => return None,
                };
                // SAFETY: both halves come from `as_encoded_bytes` of one `OsStr`, split just
                // before and just after an ASCII `!` (or at its end), as the contract allows.
                let (c, m) = unsafe {
                    (
                        OsStr::from_encoded_bytes_unchecked(c),
                        OsStr::from_encoded_bytes_unchecked(m),
                    )
                };
                Some((Path::new(c), Path::new(m)))
            }
            _ => None,
        }
    }

    /// The note an archive or a member carries (damage, a nested archive not read whole).
    pub fn archive_note(&self) -> Option<&str> {
        match self.archive.as_deref() {
            Some(Inside::Member { note, .. } | Inside::Container { note, .. }) => note.as_deref(),
            None => None,
        }
    }
}

/// Where a hashed file's digests came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Read from disk in this run.
    Read,
    /// The digest cache (file unchanged since it was last hashed).
    Cache,
    /// Another hard link to the same inode, already read in this run.
    Link,
    /// Decompressed from inside an archive (`--archives`).
    Archive,
    /// A member of an archive unchanged since an earlier sweep read it: from the digest
    /// cache, not decompressed again.
    ArchiveCache,
    /// A named data stream of a file (`--streams`): read in this run, but its digests are not
    /// the file's (whose identity it shares).
    Stream,
}

/// What happened to one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileStatus {
    /// Digests known: read to the end, or taken without reading (see [`Origin`]).
    /// `warning` is set when the file changed while it was read.
    Hashed {
        digests: Digests,
        meta: FileMeta,
        warning: Option<Box<str>>,
        origin: Origin,
        /// What the file is, from its first bytes (for the lookup budget's order).
        kind: FileKind,
        /// With `--yara`: what the rules said of the bytes read (`None`: not matched, e.g.
        /// no rules, or the digests came from a cache without a read).
        rules: Option<Box<RulesResult>>,
    },
    /// Not read, on purpose.
    Skipped(String),
    /// Could not be read; the reason.
    Error(String),
    /// The run was interrupted (Ctrl-C, SIGTERM) before this file was read to the end.
    Interrupted,
}

/// The hash stage's output for one path: what the report needs about the file itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileResult {
    /// Boxed: kept for every file of the run, so no spare capacity and no capacity field.
    pub path: Box<Path>,
    /// Bytes read (for hashed files) or the size `fstat` gave (for skipped ones), when known.
    pub size: Option<u64>,
    pub status: FileStatus,
    /// A member of an archive, or an archive that was opened (`--archives`); boxed, since
    /// most results are neither.
    pub archive: Option<Box<Inside>>,
}

impl FileResult {
    pub fn digests(&self) -> Option<&Digests> {
        match &self.status {
            FileStatus::Hashed { digests, .. } => Some(digests),
            _ => None,
        }
    }
}

/// What `--yara` rules said of one file's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RulesResult {
    /// These rules matched (never empty).
    Matched(Vec<hashsweep_report::rules::RuleHit>),
    /// Matched, and no rule did.
    NoMatch,
    /// Not matched: why (too big, timed out, an error), for the record's note.
    NotMatched(String),
}

impl RulesResult {
    /// The matching rules, when any matched.
    pub fn hits(&self) -> Option<&[hashsweep_report::rules::RuleHit]> {
        match self {
            RulesResult::Matched(h) => Some(h),
            _ => None,
        }
    }

    /// Why the file was not matched, when it was not.
    pub fn note(&self) -> Option<&str> {
        match self {
            RulesResult::NotMatched(n) => Some(n),
            _ => None,
        }
    }
}

/// The bytes of one file kept for the rules as they are read (at most `cap`; past it only
/// counted), so the file is matched whole without a second read.
#[derive(Debug, Default)]
pub struct Capture {
    pub buf: Vec<u8>,
    pub cap: usize,
    /// Bytes fed.
    pub seen: u64,
}

impl Capture {
    pub fn new(cap: usize) -> Capture {
        Capture {
            buf: Vec::new(),
            cap,
            seen: 0,
        }
    }

    /// Forget the previous file's bytes (the buffer keeps its capacity).
    pub fn reset(&mut self) {
        self.buf.clear();
        self.seen = 0;
    }

    pub fn feed(&mut self, data: &[u8]) {
        self.seen += data.len() as u64;
        if self.seen > self.cap as u64 {
            self.buf.clear();
        } else {
            self.buf.extend_from_slice(data);
        }
    }

    /// The whole file, `None` when it was larger than the cap.
    pub fn bytes(&self) -> Option<&[u8]> {
        (self.seen <= self.cap as u64).then_some(&self.buf[..])
    }
}

/// The worker's rule matcher (`--yara`), as the readers see it: one per worker thread, asked
/// once per file with the bytes its reads kept ([`Capture`]).
pub trait MatchBytes {
    /// The size cap (`--yara-max-size`): a [`Capture`] for a file is made with it.
    fn cap(&self) -> usize;
    /// Match the file at `path` (its name and folder are the rules' globals) on the bytes
    /// `capture` kept.
    fn match_capture(&mut self, path: &Path, capture: &Capture) -> RulesResult;
}

/// SHA-256 and, when asked, MD5 and SHA-1 of one byte stream, fed in pieces; with `--yara`,
/// the bytes too ([`Capture`]).
pub struct Sum {
    sha256: Sha256,
    md5: Option<Md5>,
    sha1: Option<Sha1>,
    pub capture: Option<Capture>,
}

impl Sum {
    pub fn new(opts: &HashOptions) -> Sum {
        Sum {
            sha256: Sha256::new(),
            md5: opts.md5.then(Md5::new),
            sha1: opts.sha1.then(Sha1::new),
            capture: None,
        }
    }

    /// Keep the bytes for `rules` too.
    pub fn with_capture(mut self, rules: Option<&dyn MatchBytes>) -> Sum {
        self.capture = rules.map(|r| Capture::new(r.cap()));
        self
    }

    pub fn update(&mut self, data: &[u8]) {
        if let Some(c) = self.capture.as_mut() {
            c.feed(data);
        }
        for chunk in data.chunks(SUB_BLOCK) {
            self.sha256.update(chunk);
            if let Some(h) = self.md5.as_mut() {
                h.update(chunk);
            }
            if let Some(h) = self.sha1.as_mut() {
                h.update(chunk);
            }
        }
    }

    /// The digests (take [`Sum::capture`] first to keep the bytes).
    pub fn finish(self) -> Digests {
        let this = self;
        Digests {
            sha256: this.sha256.finalize().into(),
            md5: this.md5.map(|h| h.finalize().into()),
            sha1: this.sha1.map(|h| h.finalize().into()),
        }
    }
}
