//! Persistent cache in one SQLite file. Owns the on-disk schema and its version, the digest
//! cache (`(dev, ino, size, mtime_ns, ctime_ns)` → digests, so an unchanged file is not read
//! again), the verdict cache (digest → the service's answer, with its engine details when it
//! was asked with them, kept for a TTL per verdict class; see [`DetailsUse`]), what a walk of a
//! tree holding the cache must leave unread ([`Cache::skip_rule`]),
//! the recovery of a corrupt cache file, and the hit/miss counters. Errors are never cached.
//!
//! Several hashsweep processes may share one file: it is in WAL mode, every connection waits up
//! to [`BUSY_TIMEOUT`] for a lock, and every write is one `BEGIN IMMEDIATE` transaction.
//!
//! A failed read or write never fails a sweep (it costs the next run a read or a lookup), but
//! it is counted and the first one kept ([`CacheStats::errors`], [`Cache::first_error`]) so the
//! caller can say so. [`maintain`] keeps the file from growing for ever.

mod maintain;
mod members;
mod uploads;

pub use maintain::{FORGET_AFTER, Maintenance, PRUNE_EVERY};
pub use members::{ArchiveRow, MemberRow, MemberState};
pub use uploads::PendingUpload;

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, TransactionBehavior, params};

// Poisoned locks are recovered (hashsweep_core::sync): a panic elsewhere cannot leave a connection
// mid-transaction, since rusqlite rolls back on drop.
use hashsweep_core::ErrorChain;
use hashsweep_core::digest::{Digest, Digests};
use hashsweep_core::file::{FileKind, FileMeta};
use hashsweep_core::file::{NamePattern, SkipRule, SpecialKind};
use hashsweep_core::platform::file_id;
use hashsweep_core::sync::lock;
use hashsweep_lookup::verdict::Verdict;
use hashsweep_lookup::{Answer, Budget, EngineResult};

/// `PRAGMA application_id` of a hashsweep cache ("hswp"): a SQLite file without it is not ours.
pub const APPLICATION_ID: i32 = 0x6873_7770;
/// `PRAGMA user_version` this code writes. Older versions are migrated on open.
pub const SCHEMA_VERSION: i32 = 7;
/// How long a connection waits for another process's lock before giving up.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// A file whose mtime or ctime is this recent when its digests are stored is not cached: a
/// write in the same timestamp tick would leave the key unchanged (the "racy clean" problem).
pub const RACY_WINDOW: Duration = Duration::from_secs(2);

/// Schema version 1. `dev`, `ino` and `size` are `u64` stored bit for bit in SQLite's `i64`.
const SCHEMA_V1: &str = "
CREATE TABLE IF NOT EXISTS file_digests (
    dev      INTEGER NOT NULL,
    ino      INTEGER NOT NULL,
    size     INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    ctime_ns INTEGER NOT NULL,
    sha256   BLOB NOT NULL,
    md5      BLOB,
    sha1     BLOB,
    PRIMARY KEY (dev, ino)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS verdicts (
    algo               TEXT NOT NULL,
    digest             BLOB NOT NULL,
    scan_result_i      INTEGER NOT NULL,
    total_detected_avs INTEGER NOT NULL,
    verdict            TEXT NOT NULL,
    data_id            TEXT,
    looked_up_at       INTEGER NOT NULL,
    PRIMARY KEY (algo, digest)
) WITHOUT ROWID;
";

/// Schema version 2: when each digest row was last stored or used (unix seconds; 0 until the
/// migration dates the old rows) and what the file is (`FileKind`, for the lookup budget's
/// order; NULL for rows from before), a small key/value table (`last_prune`), the engine
/// details of answers asked with them (JSON array of [`EngineResult`], empty when the service
/// had none; NULL for an answer asked without details), and the digests the lookup budget
/// deferred (`deferred`: their rank and since when), asked first by the next runs.
const MIGRATE_V2: &str = "
ALTER TABLE file_digests ADD COLUMN seen_at INTEGER NOT NULL DEFAULT 0;
ALTER TABLE file_digests ADD COLUMN kind INTEGER;
ALTER TABLE verdicts ADD COLUMN details TEXT;
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS deferred (
    algo   TEXT NOT NULL,
    digest BLOB NOT NULL,
    rank   INTEGER NOT NULL,
    since  INTEGER NOT NULL,
    PRIMARY KEY (algo, digest)
) WITHOUT ROWID;
";

/// Schema version 3: the high 64 bits of a Windows file id (ReFS ids are 128-bit; NTFS's and
/// every Unix inode number fit `ino`, so old rows and Unix rows hold 0). The key stays
/// `(dev, ino)`: two files that share the low half replace each other's row, and a lookup
/// checks the high half too, so neither is ever served the other's digests.
const MIGRATE_V3_FILE_ID_HIGH: &str = "
ALTER TABLE file_digests ADD COLUMN ino_hi INTEGER NOT NULL DEFAULT 0;
";

/// Schema version 4 (additive): what `--archives` found inside an archive file, so that an
/// unchanged one is not decompressed again. `archive_reads` has one row per archive file, under
/// the same key as its `file_digests` row (`ino_hi` as there) and the reading's settings (`options`: formats, depth,
/// limits; `md5`/`sha1`: digests the members have); `opened` is 0 for a file that proved not to
/// be an archive in those formats. `archive_members` has its members in the order they were
/// read (`seq`; one name may occur twice in an archive), each with its path inside (`member`,
/// escaped bytes as after the `!`) and what became of it: `state` 0 hashed (digests, kind,
/// note), 1 skipped, 2 error (`text` says why), so the `!*` and skipped records come back too.
const MIGRATE_V4_MEMBERS: &str = "
CREATE TABLE IF NOT EXISTS archive_reads (
    dev      INTEGER NOT NULL,
    ino      INTEGER NOT NULL,
    ino_hi   INTEGER NOT NULL DEFAULT 0,
    size     INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    ctime_ns INTEGER NOT NULL,
    options  TEXT NOT NULL,
    md5      INTEGER NOT NULL,
    sha1     INTEGER NOT NULL,
    opened   INTEGER NOT NULL,
    complete INTEGER NOT NULL,
    note     TEXT,
    PRIMARY KEY (dev, ino)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS archive_members (
    dev    INTEGER NOT NULL,
    ino    INTEGER NOT NULL,
    seq    INTEGER NOT NULL,
    member BLOB NOT NULL,
    size   INTEGER,
    state  INTEGER NOT NULL,
    text   TEXT,
    sha256 BLOB,
    md5    BLOB,
    sha1   BLOB,
    kind   INTEGER,
    note   TEXT,
    PRIMARY KEY (dev, ino, seq)
) WITHOUT ROWID;
";

/// Schema version 5: on how many hosts of the fleet a digest was when it was last answered
/// (`hashsweep_hosts` from a gateway with `--prevalence`; NULL when unknown), for the lookup
/// budget's rarity order when the answer is asked again.
const MIGRATE_V5_HOSTS: &str = "ALTER TABLE verdicts ADD COLUMN hosts INTEGER;";

/// Schema version 6: answers belong to the service that gave them (`service`, see
/// [`Cache::with_service`]; part of the key), and an answer's row is kept past its TTL as the
/// path's last answer: `first_answered_at` says since when the service has known the digest
/// and `used_at` when a sweep last needed the row, so pruning keeps every answer a sweep still
/// uses (see `maintain`). Rows from before are the default service's ([`LEGACY_SERVICE`]),
/// first answered and used when they were looked up.
const MIGRATE_V6_SERVICE: &str = "
CREATE TABLE verdicts_v6 (
    service            TEXT NOT NULL,
    algo               TEXT NOT NULL,
    digest             BLOB NOT NULL,
    scan_result_i      INTEGER NOT NULL,
    total_detected_avs INTEGER NOT NULL,
    verdict            TEXT NOT NULL,
    data_id            TEXT,
    looked_up_at       INTEGER NOT NULL,
    details            TEXT,
    hosts              INTEGER,
    first_answered_at  INTEGER NOT NULL,
    used_at            INTEGER NOT NULL,
    PRIMARY KEY (service, algo, digest)
) WITHOUT ROWID;
";
/// Schema 6, second step: the old rows, as the default service's (?1).
const MIGRATE_V6_COPY: &str = "INSERT INTO verdicts_v6 SELECT ?1, algo, digest, scan_result_i,
    total_detected_avs, verdict, data_id, looked_up_at, details, hosts, looked_up_at,
    looked_up_at FROM verdicts";
/// Schema 6, last step.
const MIGRATE_V6_SWAP: &str = "DROP TABLE verdicts; ALTER TABLE verdicts_v6 RENAME TO verdicts;";

/// Schema version 7: uploads of unknown files still being scanned, by service and digest
/// (`--upload-unknown`; see `uploads`).
const MIGRATE_V7_UPLOADS: &str = "
CREATE TABLE IF NOT EXISTS pending_uploads (
    service     TEXT NOT NULL,
    algo        TEXT NOT NULL,
    digest      BLOB NOT NULL,
    data_id     TEXT NOT NULL,
    uploaded_at INTEGER NOT NULL,
    PRIMARY KEY (service, algo, digest)
) WITHOUT ROWID;
";

/// The service whose answers rows written before schema 6 hold: the only real one, the
/// default `--api-url`'s endpoint. Also the service of a cache not told otherwise.
pub const LEGACY_SERVICE: &str = "https://api.metadefender.com/v4/hash";

const SELECT_DIGESTS: &str = "SELECT sha256, md5, sha1, seen_at, kind FROM file_digests
     WHERE dev = ?1 AND ino = ?2 AND size = ?3 AND mtime_ns = ?4 AND ctime_ns = ?5
       AND ino_hi = ?6";

/// One row per inode: a changed file replaces its old row. When the key is unchanged and the
/// sha256 agrees, digests the new row lacks are kept from the old one.
const UPSERT_DIGESTS: &str = "INSERT INTO file_digests
     (dev, ino, size, mtime_ns, ctime_ns, sha256, md5, sha1, seen_at, kind, ino_hi)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
     ON CONFLICT (dev, ino) DO UPDATE SET
       md5 = CASE WHEN size = excluded.size AND mtime_ns = excluded.mtime_ns
                   AND ctime_ns = excluded.ctime_ns AND sha256 = excluded.sha256
                   AND ino_hi = excluded.ino_hi
                  THEN coalesce(excluded.md5, md5) ELSE excluded.md5 END,
       sha1 = CASE WHEN size = excluded.size AND mtime_ns = excluded.mtime_ns
                   AND ctime_ns = excluded.ctime_ns AND sha256 = excluded.sha256
                   AND ino_hi = excluded.ino_hi
                  THEN coalesce(excluded.sha1, sha1) ELSE excluded.sha1 END,
       ino_hi = excluded.ino_hi,
       size = excluded.size,
       mtime_ns = excluded.mtime_ns,
       ctime_ns = excluded.ctime_ns,
       sha256 = excluded.sha256,
       seen_at = excluded.seen_at,
       kind = coalesce(excluded.kind, kind)";

const SELECT_VERDICT: &str = "SELECT scan_result_i, total_detected_avs, data_id, looked_up_at,
     details, hosts, first_answered_at, used_at FROM verdicts
     WHERE service = ?1 AND algo = ?2 AND digest = ?3";

/// A new answer replaces the last one; the date the digest was first answered stays.
const UPSERT_VERDICT: &str = "INSERT INTO verdicts
     (service, algo, digest, scan_result_i, total_detected_avs, verdict, data_id, looked_up_at,
      details, hosts, first_answered_at, used_at)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?8, ?8)
     ON CONFLICT (service, algo, digest) DO UPDATE SET
       scan_result_i = excluded.scan_result_i,
       total_detected_avs = excluded.total_detected_avs,
       verdict = excluded.verdict,
       data_id = excluded.data_id,
       looked_up_at = excluded.looked_up_at,
       details = excluded.details,
       hosts = excluded.hosts,
       used_at = excluded.used_at,
       first_answered_at = min(first_answered_at, excluded.first_answered_at)";

/// Why the cache could not be used. Every variant names the cache file.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cache {path}: cannot create its directory")]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("cache {path}: corrupt, and it could not be moved aside to {to}")]
    MoveAside {
        path: PathBuf,
        to: PathBuf,
        source: io::Error,
    },
    #[error("cache {path}: {what}")]
    Sqlite {
        path: PathBuf,
        what: &'static str,
        source: rusqlite::Error,
    },
    #[error(
        "cache {path}: a SQLite file that is not a hashsweep cache (application_id {found:#x}); \
         not touching it"
    )]
    Foreign { path: PathBuf, found: i32 },
    #[error(
        "cache {path}: schema version {found} was written by a newer hashsweep (this one knows \
         up to {supported})"
    )]
    NewerSchema {
        path: PathBuf,
        found: i32,
        supported: i32,
    },
}

impl CacheError {
    /// SQLite found the file damaged or not a database at all.
    pub fn is_corrupt(&self) -> bool {
        match self {
            CacheError::Sqlite { source, .. } => matches!(
                source.sqlite_error_code(),
                Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase)
            ),
            _ => false,
        }
    }
}

fn sql_err(path: &Path, what: &'static str) -> impl FnOnce(rusqlite::Error) -> CacheError {
    let path = path.to_path_buf();
    move |source| CacheError::Sqlite { path, what, source }
}

/// The digest cache's key: a file's identity and change stamps, as `fstat` saw them when it
/// was opened for hashing, and its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct FileKey {
    pub dev: u64,
    pub ino: u64,
    /// The high half of a 128-bit Windows file id; 0 on Unix.
    pub ino_hi: u64,
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
}

impl FileKey {
    pub fn new(meta: &FileMeta, size: u64) -> FileKey {
        FileKey {
            dev: meta.dev,
            ino: meta.ino,
            ino_hi: meta.ino_hi,
            size,
            mtime_ns: meta.mtime_ns,
            ctime_ns: meta.ctime_ns,
        }
    }
}

/// How long a cached answer stays good, per verdict class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ttls {
    pub clean: Duration,
    /// Infected and suspicious.
    pub detection: Duration,
    pub unknown: Duration,
    /// `other:*` verdicts.
    pub other: Duration,
}

impl Default for Ttls {
    fn default() -> Ttls {
        Ttls::DEFAULT
    }
}

impl Ttls {
    /// A day for clean and other verdicts, a week for detections, an hour for unknown files
    /// (they become known).
    pub const DEFAULT: Ttls = Ttls {
        clean: Duration::from_secs(24 * 3600),
        detection: Duration::from_secs(7 * 24 * 3600),
        unknown: Duration::from_secs(3600),
        other: Duration::from_secs(24 * 3600),
    };

    /// The TTL for a verdict; `None` for verdicts that are never cached (no answer behind them).
    pub fn for_verdict(&self, v: &Verdict) -> Option<Duration> {
        match v {
            Verdict::Clean => Some(self.clean),
            Verdict::Infected | Verdict::Suspicious => Some(self.detection),
            Verdict::Unknown => Some(self.unknown),
            // "In progress" is a passing state of the service: ask again next time.
            Verdict::Other(name) if name == "in_progress" => None,
            Verdict::Other(_) => Some(self.other),
            Verdict::Error
            | Verdict::Skipped
            | Verdict::NotLookedUp
            | Verdict::KnownGood
            | Verdict::Deferred => None,
        }
    }

    /// How long an answer about a file of this kind stays fresh: as [`Ttls::for_verdict`],
    /// but an `unknown` data file (not a program, script or macro document) waits as long as
    /// a clean one: an unknown program may be a fresh sample that the service learns within
    /// hours, an unknown data file rarely becomes known and matters less.
    pub fn for_answer(&self, v: &Verdict, kind: FileKind) -> Option<Duration> {
        match (v, kind) {
            (Verdict::Unknown, FileKind::Executable | FileKind::Script | FileKind::Document) => {
                Some(self.unknown)
            }
            (Verdict::Unknown, _) => Some(self.unknown.max(self.clean)),
            _ => self.for_verdict(v),
        }
    }

    fn longest(&self) -> Duration {
        self.clean
            .max(self.detection)
            .max(self.unknown)
            .max(self.other)
    }
}

/// What the user of a cache does with the engine details (`scan_details`) of answers. A row
/// asked with details keeps them (an empty list when the service had none); a row asked
/// without keeps none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DetailsUse {
    /// Answers come back as stored: `details` is `None` for an answer asked without details
    /// and `Some` (maybe empty) for one asked with them; answers are stored as given. The
    /// gateway's store, which decides per request whether an answer serves.
    #[default]
    AsStored,
    /// A sweep without `--details`: every answer serves, and comes back without details (so
    /// the report is the same whatever an earlier `--details` sweep stored).
    Ignored,
    /// A sweep with `--details`: only answers asked with details serve (a plain one is a miss,
    /// asked again), and come back as the client gives them (`None` when the service had
    /// none). Every answer stored is taken as asked with details.
    Required,
}

/// Counters since this [`Cache`] was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub digest_hits: u64,
    pub digest_misses: u64,
    pub verdict_hits: u64,
    pub verdict_misses: u64,
    pub digests_written: u64,
    pub verdicts_written: u64,
    /// Reads and writes that failed (the sweep went on without them).
    pub errors: u64,
}

#[derive(Default)]
struct Counters {
    digest_hits: AtomicU64,
    digest_misses: AtomicU64,
    verdict_hits: AtomicU64,
    verdict_misses: AtomicU64,
    digests_written: AtomicU64,
    verdicts_written: AtomicU64,
    errors: AtomicU64,
}

fn bump(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// What the cache knows of some digests for the lookup plan (see [`Cache::history`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    /// Deferred by an earlier run: rank and since when (unix seconds).
    pub deferred: HashMap<Digest, (u8, i64)>,
    /// Answered before (the answer may have expired).
    pub answered: std::collections::HashSet<Digest>,
    /// On how many hosts of the fleet each was when last answered, where a gateway said.
    pub hosts: HashMap<Digest, u32>,
}

/// A cached answer with its dates, as a sweep sees it (see [`Cache::get_answers`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedAnswer {
    pub answer: Answer,
    /// When the service gave this answer (unix seconds).
    pub looked_up_at: i64,
    /// When the service first answered this digest (unix seconds).
    pub first_answered_at: i64,
    /// False when the answer cannot stand for this run as it is (it was asked without the
    /// engine details this run needs): it is kept, but due for a refresh whatever its age.
    pub complete: bool,
}

/// One verdict row as read.
struct AnswerRow {
    answer: Answer,
    looked_up_at: i64,
    first_answered_at: i64,
    used_at: i64,
    /// Whether its details serve this cache's [`DetailsUse`].
    serves: bool,
}

impl AnswerRow {
    /// The answer's age at `now`; `None` for a row dated in the future (the clock went back),
    /// whose age is not known.
    fn age(&self, now: i64) -> Option<Duration> {
        u64::try_from(now.checked_sub(self.looked_up_at)?)
            .ok()
            .map(Duration::from_secs)
    }
}

impl From<AnswerRow> for CachedAnswer {
    fn from(r: AnswerRow) -> CachedAnswer {
        CachedAnswer {
            answer: r.answer,
            looked_up_at: r.looked_up_at,
            first_answered_at: r.first_answered_at,
            complete: r.serves,
        }
    }
}

/// A file's cached digests and what it is (when the row says).
pub type CachedFile = (Digests, Option<FileKind>);

/// The cache. `Sync`: share one per process; reads from many threads each use their own
/// pooled connection, writes go through one connection.
pub struct Cache {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    ttls: Ttls,
    details: DetailsUse,
    /// Whose answers are read and written (see [`Cache::with_service`]).
    service: String,
    counters: Counters,
    /// The first failure since the cache was opened, as text.
    first_error: Mutex<Option<String>>,
    /// Digest rows served from the cache whose `seen_at` is old: dated now by the next write.
    seen: Mutex<Vec<(i64, i64)>>,
}

/// A pooled read connection, handed back to the pool when dropped.
struct Reader<'a> {
    pool: &'a Mutex<Vec<Connection>>,
    conn: Option<Connection>,
}

impl Deref for Reader<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.conn
            .as_ref()
            .expect("reader holds its connection until dropped")
    }
}

impl DerefMut for Reader<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        self.conn
            .as_mut()
            .expect("reader holds its connection until dropped")
    }
}

impl Drop for Reader<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            lock(self.pool).push(conn);
        }
    }
}

impl Cache {
    /// `cache.sqlite` in the user's cache directory (`~/.cache/hashsweep/` on Linux), when the
    /// home directory is known.
    pub fn default_path() -> Option<PathBuf> {
        directories::ProjectDirs::from("", "", "hashsweep")
            .map(|d| d.cache_dir().join("cache.sqlite"))
    }

    /// Open (or create) the cache at `path`, creating its directory. A corrupt file is moved
    /// aside to `path.corrupt-<unix time>` and a fresh cache started; the warning says so.
    /// A SQLite file that is not a hashsweep cache, or one from a newer hashsweep, is an error
    /// and is left as it is.
    pub fn open(path: impl AsRef<Path>) -> Result<(Cache, Option<String>), CacheError> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(|source| CacheError::CreateDir {
                path: path.clone(),
                source,
            })?;
        }
        let (conn, warning) = match open_writer(&path) {
            Ok(conn) => (conn, None),
            Err(e) if e.is_corrupt() => {
                let moved = move_aside(&path)?;
                let conn = open_writer(&path)?;
                let warning = format!(
                    "{}; moved it aside to {} and started an empty cache",
                    ErrorChain(&e),
                    moved.display()
                );
                (conn, Some(warning))
            }
            Err(e) => Err(e)?,
        };
        let cache = Cache {
            path,
            writer: Mutex::new(conn),
            readers: Mutex::new(Vec::new()),
            ttls: Ttls::default(),
            details: DetailsUse::default(),
            service: LEGACY_SERVICE.to_string(),
            counters: Counters::default(),
            first_error: Mutex::new(None),
            seen: Mutex::new(Vec::new()),
        };
        Ok((cache, warning))
    }

    /// Use these TTLs for verdict lookups (the defaults are [`Ttls::default`]).
    pub fn with_ttls(mut self, ttls: Ttls) -> Cache {
        self.ttls = ttls;
        self
    }

    pub fn ttls(&self) -> Ttls {
        self.ttls
    }

    /// Serve and store answers' engine details this way (the default is
    /// [`DetailsUse::AsStored`]).
    pub fn with_details(mut self, details: DetailsUse) -> Cache {
        self.details = details;
        self
    }

    pub fn details(&self) -> DetailsUse {
        self.details
    }

    /// Read and write the answers of this service (a name: the endpoint's URL unless the user
    /// names it): another service's answers, kept in the same file, are neither served nor
    /// replaced. The default is [`LEGACY_SERVICE`].
    pub fn with_service(mut self, service: impl Into<String>) -> Cache {
        self.service = service.into();
        self
    }

    pub fn service(&self) -> &str {
        &self.service
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What a walk must leave unread so that a sweep of a tree holding this cache uses it
    /// (and never reads the files SQLite holds locks on: closing any descriptor of a file
    /// drops the process's locks on it). The database, its `-wal`, `-shm` and `-journal`
    /// (which come and go, so they are matched by name in the cache's directory, known by
    /// identity) and copies set aside as corrupt; the database and the journals there now
    /// also by identity, wherever the walk reaches them.
    /// A cache path that is a symlink names the file it leads to (SQLite puts the journals
    /// beside that file).
    pub fn skip_rule(&self) -> io::Result<SkipRule> {
        let real = fs::canonicalize(&self.path)?;
        let (Some(real_dir), Some(name)) = (real.parent(), real.file_name()) else {
            return Err(io::Error::other("the cache has no file name"));
        };
        let dir = file_id(real_dir)?;
        let mut names = Vec::new();
        let mut files = Vec::new();
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let file = with_suffix(Path::new(name), suffix).into_os_string();
            if let Ok(id) = file_id(&real_dir.join(&file)) {
                files.push((id, SpecialKind::OwnCache));
            }
            names.push((NamePattern::Is(file), SpecialKind::OwnCache));
        }
        let aside = with_suffix(Path::new(name), ".corrupt-").into_os_string();
        names.push((
            NamePattern::Around(aside, OsString::new()),
            SpecialKind::OwnCache,
        ));
        Ok(SkipRule { dir, names, files })
    }

    pub fn stats(&self) -> CacheStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CacheStats {
            digest_hits: get(&c.digest_hits),
            digest_misses: get(&c.digest_misses),
            verdict_hits: get(&c.verdict_hits),
            verdict_misses: get(&c.verdict_misses),
            digests_written: get(&c.digests_written),
            verdicts_written: get(&c.verdicts_written),
            errors: get(&c.errors),
        }
    }

    /// Make every later write fail (as on a full or read-only disk), for tests of the callers
    /// (this crate's, and other crates' with the `test-hooks` feature).
    #[cfg(any(test, feature = "test-hooks"))]
    pub fn fail_writes(&self) {
        let conn = lock(&self.writer);
        conn.pragma_update(None, "query_only", true)
            .expect("query_only");
    }

    /// The first read or write that failed since the cache was opened.
    pub fn first_error(&self) -> Option<String> {
        lock(&self.first_error).clone()
    }

    /// Count a failure (keeping the first one's text) and pass the result on.
    fn noted<T>(&self, r: Result<T, CacheError>) -> Result<T, CacheError> {
        if let Err(e) = &r {
            bump(&self.counters.errors, 1);
            lock(&self.first_error).get_or_insert_with(|| ErrorChain(e).to_string());
        }
        r
    }

    fn reader(&self) -> Result<Reader<'_>, CacheError> {
        let pooled = lock(&self.readers).pop();
        let conn = match pooled {
            Some(c) => c,
            None => open_reader(&self.path)?,
        };
        Ok(Reader {
            pool: &self.readers,
            conn: Some(conn),
        })
    }

    /// The cached digests of the file with this key, when all five key fields match and the
    /// cached row has every digest asked for (sha256 always; md5, sha1 when `need_*`).
    /// To look up many files at once, [`Cache::get_digests_many`] is several times faster.
    pub fn get_digests(
        &self,
        key: &FileKey,
        need_md5: bool,
        need_sha1: bool,
    ) -> Result<Option<Digests>, CacheError> {
        let found = self.get_digests_many(std::slice::from_ref(key), need_md5, need_sha1);
        found.map(|mut v| v.pop().flatten())
    }

    /// [`Cache::get_digests`] for many keys in one read transaction; one answer per key, in
    /// order. A hit whose row was last dated more than [`maintain::TOUCH_AFTER`] ago is dated
    /// again by the next write, so rows of files still on disk are never forgotten.
    pub fn get_digests_many(
        &self,
        keys: &[FileKey],
        need_md5: bool,
        need_sha1: bool,
    ) -> Result<Vec<Option<Digests>>, CacheError> {
        let found = self.get_files_many(keys, need_md5, need_sha1)?;
        Ok(found.into_iter().map(|f| f.map(|(d, _)| d)).collect())
    }

    /// [`Cache::get_digests_many`] with what each file is, when the row says (rows written
    /// before schema 2, or by [`Cache::put_digests`], do not).
    pub fn get_files_many(
        &self,
        keys: &[FileKey],
        need_md5: bool,
        need_sha1: bool,
    ) -> Result<Vec<Option<CachedFile>>, CacheError> {
        let r = self.try_get_files_many(keys, need_md5, need_sha1);
        self.noted(r)
    }

    fn try_get_files_many(
        &self,
        keys: &[FileKey],
        need_md5: bool,
        need_sha1: bool,
    ) -> Result<Vec<Option<CachedFile>>, CacheError> {
        let stale_before =
            unix_secs(hashsweep_core::clock::now()) - maintain::TOUCH_AFTER.as_secs() as i64;
        let mut conn = self.reader()?;
        let tx = conn
            .transaction()
            .map_err(sql_err(&self.path, "starting a read"))?;
        let mut out = Vec::with_capacity(keys.len());
        let mut stale = Vec::new();
        {
            let mut stmt = tx
                .prepare_cached(SELECT_DIGESTS)
                .map_err(sql_err(&self.path, "preparing a digest lookup"))?;
            for key in keys {
                let found = select_digests(&mut stmt, key, need_md5, need_sha1)
                    .map_err(sql_err(&self.path, "looking up digests"))?;
                self.count_digest_lookup(found.is_some());
                if let Some((_, seen_at, _)) = found
                    && seen_at < stale_before
                {
                    stale.push((key.dev as i64, key.ino as i64));
                }
                out.push(found.map(|(d, _, kind)| (d, kind)));
            }
        }
        // Read only: dropping the transaction ends it.
        drop(tx);
        if !stale.is_empty() {
            lock(&self.seen).extend(stale);
        }
        Ok(out)
    }

    /// Remember digests the lookup budget deferred, with their rank: a later run asks them
    /// before new digests of the same rank. A digest deferred before keeps its first date and
    /// its best rank.
    pub fn put_deferred(&self, rows: &[(Digest, u8)], now: SystemTime) -> Result<(), CacheError> {
        let r = self.try_put_deferred(rows, now);
        self.noted(r)
    }

    fn try_put_deferred(&self, rows: &[(Digest, u8)], now: SystemTime) -> Result<(), CacheError> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut conn = lock(&self.writer);
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql_err(&self.path, "starting a write"))?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO deferred (algo, digest, rank, since) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (algo, digest) DO UPDATE SET rank = min(rank, excluded.rank)",
                )
                .map_err(sql_err(&self.path, "preparing a backlog write"))?;
            for (d, rank) in rows {
                stmt.execute(params![d.algo().name(), d.as_bytes(), rank, unix_secs(now)])
                    .map_err(sql_err(&self.path, "writing the backlog"))?;
            }
        }
        tx.commit()
            .map_err(sql_err(&self.path, "committing the backlog"))
    }

    /// What the cache knows of these digests for the lookup plan, in one read: which an
    /// earlier run deferred (their rank and since when, unix seconds), and which have an
    /// answer on file at all, expired or not (asking one again only refreshes what is known,
    /// so a tight budget asks it after every digest never asked).
    pub fn history(&self, digests: &[Digest]) -> Result<History, CacheError> {
        let r = self.try_history(digests);
        self.noted(r)
    }

    fn try_history(&self, digests: &[Digest]) -> Result<History, CacheError> {
        let mut conn = self.reader()?;
        let tx = conn
            .transaction()
            .map_err(sql_err(&self.path, "starting a read"))?;
        let mut out = History::default();
        {
            let mut deferred = tx
                .prepare_cached("SELECT rank, since FROM deferred WHERE algo = ?1 AND digest = ?2")
                .map_err(sql_err(&self.path, "preparing a backlog lookup"))?;
            let mut answered = tx
                .prepare_cached(
                    "SELECT hosts FROM verdicts WHERE service = ?1 AND algo = ?2 AND digest = ?3",
                )
                .map_err(sql_err(&self.path, "preparing a verdict lookup"))?;
            for d in digests {
                let key = params![d.algo().name(), d.as_bytes()];
                let row = deferred
                    .query_row(key, |r| Ok((r.get::<_, u8>(0)?, r.get::<_, i64>(1)?)))
                    .optional()
                    .map_err(sql_err(&self.path, "reading the backlog"))?;
                if let Some(row) = row {
                    out.deferred.insert(*d, row);
                }
                let row = answered
                    .query_row(params![self.service, d.algo().name(), d.as_bytes()], |r| {
                        r.get::<_, Option<u32>>(0)
                    })
                    .optional()
                    .map_err(sql_err(&self.path, "looking up a verdict"))?;
                if let Some(hosts) = row {
                    out.answered.insert(*d);
                    if let Some(n) = hosts {
                        out.hosts.insert(*d, n);
                    }
                }
            }
        }
        drop(tx);
        Ok(out)
    }

    /// Remember what the service last said about a key's budget (`scope` names the key; see
    /// `HttpClient::budget_scope`).
    pub fn put_budget(&self, scope: &str, b: &Budget) -> Result<(), CacheError> {
        let r = self.try_put_budget(scope, b);
        self.noted(r)
    }

    fn try_put_budget(&self, scope: &str, b: &Budget) -> Result<(), CacheError> {
        let rows = [
            (
                "remaining",
                Some(i64::try_from(b.remaining).unwrap_or(i64::MAX)),
            ),
            (
                "limit",
                b.limit.map(|l| i64::try_from(l).unwrap_or(i64::MAX)),
            ),
            ("resets_at", b.resets_at.map(unix_secs)),
        ];
        let mut conn = lock(&self.writer);
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql_err(&self.path, "starting a write"))?;
        for (field, value) in rows {
            let key = format!("{scope}:{field}");
            match value {
                Some(v) => tx.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
                    params![key, v],
                ),
                None => tx.execute("DELETE FROM meta WHERE key = ?1", params![key]),
            }
            .map_err(sql_err(&self.path, "writing the budget"))?;
        }
        tx.commit()
            .map_err(sql_err(&self.path, "committing the budget"))
    }

    /// The budget a key had when a run last heard from the service; after its reset time, a
    /// fresh day's (the limit).
    pub fn get_budget(&self, scope: &str, now: SystemTime) -> Result<Option<Budget>, CacheError> {
        let r = self.try_get_budget(scope, now);
        self.noted(r)
    }

    fn try_get_budget(&self, scope: &str, now: SystemTime) -> Result<Option<Budget>, CacheError> {
        let conn = self.reader()?;
        let get = |field: &str| -> Result<Option<i64>, CacheError> {
            conn.query_row(
                "SELECT value FROM meta WHERE key = ?1",
                params![format!("{scope}:{field}")],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql_err(&self.path, "reading the budget"))
        };
        let Some(remaining) = get("remaining")? else {
            return Ok(None);
        };
        let limit = get("limit")?.map(|l| l.max(0) as u64);
        let resets_at =
            get("resets_at")?.map(|t| UNIX_EPOCH + Duration::from_secs(t.max(0) as u64));
        let fresh_day = resets_at.is_some_and(|t| t <= now);
        Ok(Some(Budget {
            limit,
            remaining: match (fresh_day, limit) {
                (true, Some(l)) => l,
                _ => remaining.max(0) as u64,
            },
            resets_at: if fresh_day { None } else { resets_at },
        }))
    }

    fn count_digest_lookup(&self, hit: bool) {
        let c = &self.counters;
        bump(
            if hit {
                &c.digest_hits
            } else {
                &c.digest_misses
            },
            1,
        );
    }

    /// Store digests, all rows in one transaction. Rows of files changed within
    /// [`RACY_WINDOW`] of now are left out. Returns the number of rows written.
    /// Rows served from the cache whose date was old are dated now in the same transaction.
    pub fn put_digests(&self, rows: &[(FileKey, Digests)]) -> Result<usize, CacheError> {
        let rows: Vec<_> = rows.iter().map(|&(k, d)| (k, d, None)).collect();
        let r = self.try_put_digests(&rows);
        self.noted(r)
    }

    /// [`Cache::put_digests`] with what each file is.
    pub fn put_files(&self, rows: &[(FileKey, Digests, FileKind)]) -> Result<usize, CacheError> {
        let rows: Vec<_> = rows
            .iter()
            .map(|&(k, d, kind)| (k, d, Some(kind)))
            .collect();
        let r = self.try_put_digests(&rows);
        self.noted(r)
    }

    fn try_put_digests(
        &self,
        rows: &[(FileKey, Digests, Option<FileKind>)],
    ) -> Result<usize, CacheError> {
        // Files' stamps are the file system's: the racy window is judged on the real clock;
        // the rows' dates (for pruning) on the run's.
        let cutoff = unix_nanos(SystemTime::now()).saturating_sub(RACY_WINDOW.as_nanos() as i64);
        let now = hashsweep_core::clock::now();
        let seen: Vec<(i64, i64)> = std::mem::take(&mut *lock(&self.seen));
        let mut conn = lock(&self.writer);
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql_err(&self.path, "starting a write"))?;
        let mut written = 0;
        {
            let mut stmt = tx
                .prepare_cached("UPDATE file_digests SET seen_at = ?3 WHERE dev = ?1 AND ino = ?2")
                .map_err(sql_err(&self.path, "preparing a date update"))?;
            for (dev, ino) in &seen {
                stmt.execute(params![dev, ino, unix_secs(now)])
                    .map_err(sql_err(&self.path, "dating digests"))?;
            }
        }
        {
            let mut stmt = tx
                .prepare_cached(UPSERT_DIGESTS)
                .map_err(sql_err(&self.path, "preparing a digest write"))?;
            for (key, d, kind) in rows {
                if key.mtime_ns > cutoff || key.ctime_ns > cutoff {
                    continue;
                }
                stmt.execute(params![
                    key.dev as i64,
                    key.ino as i64,
                    key.size as i64,
                    key.mtime_ns,
                    key.ctime_ns,
                    d.sha256,
                    d.md5,
                    d.sha1,
                    unix_secs(now),
                    kind.map(FileKind::code),
                    key.ino_hi as i64
                ])
                .map_err(sql_err(&self.path, "writing digests"))?;
                written += 1;
            }
        }
        tx.commit()
            .map_err(sql_err(&self.path, "committing digests"))?;
        bump(&self.counters.digests_written, written as u64);
        Ok(written)
    }

    /// The cached answers for these digests that have not expired at `now` under this cache's
    /// [`Ttls`], with their engine details as this cache's [`DetailsUse`] says.
    pub fn get_verdicts(
        &self,
        digests: &[Digest],
        now: SystemTime,
    ) -> Result<HashMap<Digest, Answer>, CacheError> {
        let r = self.try_get_verdicts(digests, now);
        self.noted(r)
    }

    fn try_get_verdicts(
        &self,
        digests: &[Digest],
        now: SystemTime,
    ) -> Result<HashMap<Digest, Answer>, CacheError> {
        let now = unix_secs(now);
        let mut out = HashMap::with_capacity(digests.len());
        for (d, row) in self.read_answers(digests)? {
            let fresh = row.age(now).is_some_and(|age| {
                self.ttls
                    .for_verdict(&row.answer.verdict())
                    .is_some_and(|ttl| age < ttl)
            });
            if fresh && row.serves {
                out.insert(d, row.answer);
            }
        }
        bump(&self.counters.verdict_hits, out.len() as u64);
        bump(
            &self.counters.verdict_misses,
            (digests.len() as u64).saturating_sub(out.len() as u64),
        );
        Ok(out)
    }

    /// Every answer this cache's service gave for these digests, whatever its age: a sweep
    /// keeps a path's last answer until it is refreshed (see [`CachedAnswer`]). Rows a sweep
    /// has not used for [`maintain::TOUCH_AFTER`] are dated now, so pruning keeps them.
    pub fn get_answers(
        &self,
        digests: &[Digest],
        now: SystemTime,
    ) -> Result<HashMap<Digest, CachedAnswer>, CacheError> {
        let r = self.try_get_answers(digests, now);
        self.noted(r)
    }

    fn try_get_answers(
        &self,
        digests: &[Digest],
        now: SystemTime,
    ) -> Result<HashMap<Digest, CachedAnswer>, CacheError> {
        let now = unix_secs(now);
        let rows = self.read_answers(digests)?;
        let touch_before = now.saturating_sub(maintain::TOUCH_AFTER.as_secs() as i64);
        let touch: Vec<Digest> = rows
            .iter()
            .filter(|(_, r)| r.used_at < touch_before)
            .map(|(d, _)| *d)
            .collect();
        // Dating is for pruning only: a cache that cannot be written still serves its answers
        // (the failure is counted and told once, like any other).
        if !touch.is_empty() {
            let r = self.try_touch_answers(&touch, now);
            let _ = self.noted(r);
        }
        let hits = rows.len() as u64;
        bump(&self.counters.verdict_hits, hits);
        bump(
            &self.counters.verdict_misses,
            (digests.len() as u64).saturating_sub(hits),
        );
        Ok(rows.into_iter().map(|(d, r)| (d, r.into())).collect())
    }

    /// Date these answers as used by a sweep at `now` (unix seconds).
    fn try_touch_answers(&self, digests: &[Digest], now: i64) -> Result<(), CacheError> {
        let mut conn = lock(&self.writer);
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql_err(&self.path, "starting a write"))?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "UPDATE verdicts SET used_at = ?1
                     WHERE service = ?2 AND algo = ?3 AND digest = ?4",
                )
                .map_err(sql_err(&self.path, "preparing an answer's date"))?;
            for d in digests {
                stmt.execute(params![now, self.service, d.algo().name(), d.as_bytes()])
                    .map_err(sql_err(&self.path, "dating an answer"))?;
            }
        }
        tx.commit()
            .map_err(sql_err(&self.path, "committing the answers' dates"))
    }

    /// The rows of this cache's service for these digests, in one read transaction.
    fn read_answers(&self, digests: &[Digest]) -> Result<Vec<(Digest, AnswerRow)>, CacheError> {
        let mut conn = self.reader()?;
        // One read transaction: one snapshot and one lock for the whole batch.
        let tx = conn
            .transaction()
            .map_err(sql_err(&self.path, "starting a read"))?;
        let mut out = Vec::with_capacity(digests.len());
        {
            let mut stmt = tx
                .prepare_cached(SELECT_VERDICT)
                .map_err(sql_err(&self.path, "preparing a verdict lookup"))?;
            for d in digests {
                let row = stmt
                    .query_row(params![self.service, d.algo().name(), d.as_bytes()], |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, i64>(1)?,
                            r.get::<_, Option<String>>(2)?,
                            r.get::<_, i64>(3)?,
                            r.get::<_, Option<String>>(4)?,
                            r.get::<_, Option<u32>>(5)?,
                            r.get::<_, i64>(6)?,
                            r.get::<_, i64>(7)?,
                        ))
                    })
                    .optional()
                    .map_err(sql_err(&self.path, "looking up a verdict"))?;
                let Some((code, total, data_id, at, details, hosts, first, used)) = row else {
                    continue;
                };
                // A verdict that is never cached (a row from a bug or another tool) is no
                // answer at all.
                let verdict = Verdict::from_code(code, Some(total));
                if self.ttls.for_verdict(&verdict).is_none() {
                    continue;
                }
                let served = self.served_details(details.as_deref());
                out.push((
                    *d,
                    AnswerRow {
                        serves: served.is_some(),
                        answer: Answer {
                            scan_result_i: code,
                            total_detected_avs: total,
                            data_id: data_id.map(String::into_boxed_str),
                            details: served.flatten(),
                            hosts,
                        },
                        looked_up_at: at,
                        first_answered_at: first,
                        used_at: used,
                    },
                ));
            }
        }
        // Read only: dropping the transaction ends it.
        drop(tx);
        Ok(out)
    }

    /// Store answers looked up at `now`, all in one transaction. Verdicts that are not an
    /// answer (error, skipped, not looked up) are refused. Returns the number written.
    pub fn put_verdicts(
        &self,
        answers: &[(Digest, Answer)],
        now: SystemTime,
    ) -> Result<usize, CacheError> {
        let r = self.try_put_verdicts(answers, now);
        self.noted(r)
    }

    fn try_put_verdicts(
        &self,
        answers: &[(Digest, Answer)],
        now: SystemTime,
    ) -> Result<usize, CacheError> {
        let now = unix_secs(now);
        let mut conn = lock(&self.writer);
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql_err(&self.path, "starting a write"))?;
        let mut written = 0;
        {
            let mut stmt = tx
                .prepare_cached(UPSERT_VERDICT)
                .map_err(sql_err(&self.path, "preparing a verdict write"))?;
            for (d, a) in answers {
                if self.ttls.for_verdict(&a.verdict()).is_none() {
                    continue;
                }
                stmt.execute(params![
                    self.service,
                    d.algo().name(),
                    d.as_bytes(),
                    a.scan_result_i,
                    a.total_detected_avs,
                    a.verdict().to_string(),
                    a.data_id,
                    now,
                    self.stored_details(a),
                    a.hosts
                ])
                .map_err(sql_err(&self.path, "writing a verdict"))?;
                written += 1;
            }
        }
        // An answered digest is no longer owed to a later run.
        {
            let mut stmt = tx
                .prepare_cached("DELETE FROM deferred WHERE algo = ?1 AND digest = ?2")
                .map_err(sql_err(&self.path, "preparing a backlog update"))?;
            for (d, _) in answers {
                stmt.execute(params![d.algo().name(), d.as_bytes()])
                    .map_err(sql_err(&self.path, "updating the backlog"))?;
            }
        }
        tx.commit()
            .map_err(sql_err(&self.path, "committing verdicts"))?;
        bump(&self.counters.verdicts_written, written as u64);
        Ok(written)
    }
}

impl Cache {
    /// A row's `details` column as this cache serves it: `None` when the row does not serve
    /// at all (a plain answer where details are required), else the answer's `details`.
    /// A column that does not decode (a damaged row) reads as an answer without details.
    fn served_details(&self, column: Option<&str>) -> Option<Option<Box<[EngineResult]>>> {
        let stored: Option<Box<[EngineResult]>> =
            column.and_then(|text| serde_json::from_str(text).ok());
        match self.details {
            DetailsUse::AsStored => Some(stored),
            DetailsUse::Ignored => Some(None),
            DetailsUse::Required => stored.map(|list| (!list.is_empty()).then_some(list)),
        }
    }

    /// The `details` column for an answer: its engine results as JSON, `[]` for an answer
    /// asked with details that had none, NULL for one asked without.
    fn stored_details(&self, a: &Answer) -> Option<String> {
        match (&a.details, self.details) {
            (Some(list), _) => serde_json::to_string(list).ok(),
            (None, DetailsUse::Required) => Some("[]".to_string()),
            (None, _) => None,
        }
    }
}

/// The row's digests, its `seen_at` and its kind.
fn select_digests(
    stmt: &mut rusqlite::Statement<'_>,
    key: &FileKey,
    need_md5: bool,
    need_sha1: bool,
) -> rusqlite::Result<Option<(Digests, i64, Option<FileKind>)>> {
    let found = stmt
        .query_row(
            params![
                key.dev as i64,
                key.ino as i64,
                key.size as i64,
                key.mtime_ns,
                key.ctime_ns,
                key.ino_hi as i64
            ],
            |r| {
                // A blob of the wrong length (a damaged row) reads as a miss.
                let sha256 = r.get::<_, [u8; 32]>(0).ok();
                let md5 = r.get::<_, Option<[u8; 16]>>(1).unwrap_or(None);
                let sha1 = r.get::<_, Option<[u8; 20]>>(2).unwrap_or(None);
                let seen_at = r.get::<_, i64>(3)?;
                let kind = r.get::<_, Option<u8>>(4).ok().flatten();
                let kind = kind.and_then(FileKind::from_code);
                Ok(sha256.map(|sha256| (Digests { sha256, md5, sha1 }, seen_at, kind)))
            },
        )
        .optional()?
        .flatten();
    Ok(
        found
            .filter(|(d, _, _)| (!need_md5 || d.md5.is_some()) && (!need_sha1 || d.sha1.is_some())),
    )
}

fn unix_secs(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn unix_nanos(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Per-connection settings (not stored in the file).
fn configure(conn: &Connection, path: &Path) -> Result<(), CacheError> {
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(sql_err(path, "setting the busy timeout"))?;
    // Safe in WAL mode: a crash keeps the file consistent, at most the last commits are lost.
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(sql_err(path, "setting synchronous"))?;
    Ok(())
}

fn open_reader(path: &Path) -> Result<Connection, CacheError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)
        .map_err(sql_err(path, "opening a read connection"))?;
    configure(&conn, path)?;
    Ok(conn)
}

/// Open the write connection: check the file is ours, create or migrate the schema, switch to
/// WAL. Any step may find the file corrupt ([`CacheError::is_corrupt`]).
fn open_writer(path: &Path) -> Result<Connection, CacheError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut conn = Connection::open_with_flags(path, flags).map_err(sql_err(path, "opening"))?;
    configure(&conn, path)?;
    // Identity check and migration in one write transaction, so that two processes creating
    // the cache at once see either nothing or the whole schema.
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql_err(path, "starting the schema check"))?;
    let read_i32 = |pragma: &str| tx.pragma_query_value(None, pragma, |r| r.get::<_, i32>(0));
    let app_id = read_i32("application_id").map_err(sql_err(path, "reading the file header"))?;
    let version = read_i32("user_version").map_err(sql_err(path, "reading the schema version"))?;
    let objects: i64 = tx
        .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
        .map_err(sql_err(path, "reading the schema"))?;
    let fresh = app_id == 0 && version == 0 && objects == 0;
    if !fresh && app_id != APPLICATION_ID {
        return Err(CacheError::Foreign {
            path: path.to_path_buf(),
            found: app_id,
        });
    }
    if version > SCHEMA_VERSION {
        return Err(CacheError::NewerSchema {
            path: path.to_path_buf(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    if version < 1 {
        tx.execute_batch(SCHEMA_V1)
            .map_err(sql_err(path, "creating the schema"))?;
    }
    if version < 2 {
        tx.execute_batch(MIGRATE_V2)
            .map_err(sql_err(path, "adding the row dates (schema 2)"))?;
        // Rows from before are dated now: they get the full FORGET_AFTER from the upgrade.
        tx.execute(
            "UPDATE file_digests SET seen_at = ?1 WHERE seen_at = 0",
            params![unix_secs(hashsweep_core::clock::now())],
        )
        .map_err(sql_err(path, "dating the old rows (schema 2)"))?;
    }
    if version < 3 {
        tx.execute_batch(MIGRATE_V3_FILE_ID_HIGH)
            .map_err(sql_err(path, "adding the file id's high half (schema 3)"))?;
    }
    if version < 4 {
        tx.execute_batch(MIGRATE_V4_MEMBERS)
            .map_err(sql_err(path, "adding the archive members (schema 4)"))?;
    }
    if version < 5 {
        tx.execute_batch(MIGRATE_V5_HOSTS)
            .map_err(sql_err(path, "adding the host counts (schema 5)"))?;
    }
    if version < 6 {
        tx.execute_batch(MIGRATE_V6_SERVICE)
            .map_err(sql_err(path, "adding the answers' services (schema 6)"))?;
        tx.execute(MIGRATE_V6_COPY, params![LEGACY_SERVICE])
            .map_err(sql_err(path, "moving the answers (schema 6)"))?;
        tx.execute_batch(MIGRATE_V6_SWAP)
            .map_err(sql_err(path, "adding the answers' services (schema 6)"))?;
    }
    if version < 7 {
        tx.execute_batch(MIGRATE_V7_UPLOADS)
            .map_err(sql_err(path, "adding the pending uploads (schema 7)"))?;
    }
    // A future schema adds `if version < 8 { ... }` here.
    if version != SCHEMA_VERSION {
        tx.pragma_update(None, "application_id", APPLICATION_ID)
            .map_err(sql_err(path, "writing the application id"))?;
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(sql_err(path, "writing the schema version"))?;
    }
    tx.commit()
        .map_err(sql_err(path, "committing the schema"))?;
    // Persistent; a no-op when the file is in WAL mode already. A file system without shared
    // memory leaves the mode as it was, which still works, with less concurrency.
    conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0))
        .map_err(sql_err(path, "switching to WAL"))?;
    Ok(conn)
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s: OsString = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Rename a corrupt cache (and its WAL) to `path.corrupt-<unix time>[-n]`, drop its shared
/// memory file. Returns where it went.
fn move_aside(path: &Path) -> Result<PathBuf, CacheError> {
    let base = format!(".corrupt-{}", unix_secs(SystemTime::now()));
    let mut to = with_suffix(path, &base);
    let mut n = 1;
    while to.exists() {
        to = with_suffix(path, &format!("{base}-{n}"));
        n += 1;
    }
    let rename = |from: &Path, to: &Path| match fs::rename(from, to) {
        // Another process recovering the same file got there first.
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    };
    let fail = |to: &Path| {
        let to = to.to_path_buf();
        move |source| CacheError::MoveAside {
            path: path.to_path_buf(),
            to,
            source,
        }
    };
    rename(path, &to).map_err(fail(&to))?;
    // A stale WAL would be replayed into the fresh file: it goes with the corrupt one.
    for suffix in ["-wal", "-journal"] {
        let (from, dest) = (with_suffix(path, suffix), with_suffix(&to, suffix));
        rename(&from, &dest).map_err(fail(&dest))?;
    }
    let shm = with_suffix(path, "-shm");
    match fs::remove_file(&shm) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(fail(&shm)(e)),
        _ => Ok(to),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Barrier};
    use std::time::Instant;

    const T0: i64 = 1_700_000_000;

    fn at(secs: i64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs as u64)
    }

    fn key(i: u64) -> FileKey {
        FileKey {
            dev: 2049,
            ino: 1000 + i,
            ino_hi: 0,
            size: 4096 + i,
            mtime_ns: T0 * 1_000_000_000 + 123,
            ctime_ns: T0 * 1_000_000_000 + 456,
        }
    }

    fn digests(i: u64, md5: bool, sha1: bool) -> Digests {
        let b = (i % 251) as u8;
        Digests {
            sha256: [b; 32],
            md5: md5.then_some([b ^ 0x55; 16]),
            sha1: sha1.then_some([b ^ 0xaa; 20]),
        }
    }

    fn answer(code: i64, total: i64) -> Answer {
        Answer {
            scan_result_i: code,
            total_detected_avs: total,
            data_id: Some(format!("data-{code}").into()),
            details: None,
            hosts: None,
        }
    }

    fn fresh() -> (tempfile::TempDir, Cache) {
        let dir = tempfile::tempdir().expect("temp dir");
        let (cache, warning) = Cache::open(dir.path().join("c.sqlite")).expect("open");
        assert_eq!(warning, None);
        (dir, cache)
    }

    /// A gateway's host count is kept with the answer and read back for the lookup plan,
    /// even once the answer has expired (schema 5).
    #[test]
    fn host_counts_are_kept_with_answers_for_the_plan() {
        let (_dir, cache) = fresh();
        let (on_many, unknown) = (Digest::Sha256([1; 32]), Digest::Sha256([2; 32]));
        let mut a = answer(0, 0);
        a.hosts = Some(4000);
        let long_ago = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        cache
            .put_verdicts(&[(on_many, a.clone()), (unknown, answer(0, 0))], long_ago)
            .unwrap();
        let h = cache.history(&[on_many, unknown]).unwrap();
        assert_eq!(h.hosts, HashMap::from([(on_many, 4000)]));
        assert_eq!(h.answered.len(), 2);
        cache
            .put_verdicts(&[(on_many, a.clone())], SystemTime::now())
            .unwrap();
        let got = cache.get_verdicts(&[on_many], SystemTime::now()).unwrap();
        assert_eq!(got.get(&on_many), Some(&a));
    }

    #[test]
    fn digest_hit_returns_what_was_stored() {
        let (_dir, cache) = fresh();
        let d = digests(7, true, true);
        assert_eq!(cache.put_digests(&[(key(7), d)]).unwrap(), 1);
        assert_eq!(cache.get_digests(&key(7), true, true).unwrap(), Some(d));
        assert_eq!(cache.get_digests(&key(7), false, false).unwrap(), Some(d));
        assert_eq!(cache.get_digests(&key(8), false, false).unwrap(), None);
    }

    #[test]
    fn digest_batch_lookup_answers_each_key_in_order() {
        let (_dir, cache) = fresh();
        cache
            .put_digests(&[
                (key(1), digests(1, true, false)),
                (key(3), digests(3, false, false)),
            ])
            .unwrap();
        let got = cache
            .get_digests_many(&[key(3), key(2), key(1)], false, false)
            .unwrap();
        assert_eq!(
            got,
            vec![
                Some(digests(3, false, false)),
                None,
                Some(digests(1, true, false))
            ]
        );
        let need_md5 = cache
            .get_digests_many(&[key(3), key(1)], true, false)
            .unwrap();
        assert_eq!(need_md5, vec![None, Some(digests(1, true, false))]);
        let s = cache.stats();
        assert_eq!((s.digest_hits, s.digest_misses), (3, 2));
    }

    fn assert_miss_after(change: impl Fn(&mut FileKey), field: &str) {
        let (_dir, cache) = fresh();
        cache
            .put_digests(&[(key(1), digests(1, true, true))])
            .unwrap();
        assert!(cache.get_digests(&key(1), false, false).unwrap().is_some());
        let mut k = key(1);
        change(&mut k);
        assert_ne!(k, key(1));
        assert_eq!(
            cache.get_digests(&k, false, false).unwrap(),
            None,
            "{field} changed: must miss"
        );
    }

    #[test]
    fn digest_miss_when_dev_changes() {
        assert_miss_after(|k| k.dev += 1, "dev");
    }

    #[test]
    fn digest_miss_when_ino_changes() {
        assert_miss_after(|k| k.ino += 1, "ino");
    }

    /// A schema-2 cache (no `ino_hi`, no archive tables, no host counts) opens as the current
    /// schema and still serves its rows.
    #[test]
    fn a_schema_2_cache_is_migrated_and_keeps_its_rows() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("c.sqlite");
        let (cache, _) = Cache::open(&path).expect("open");
        cache
            .put_digests(&[(key(1), digests(1, true, true))])
            .unwrap();
        drop(cache);
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "ALTER TABLE file_digests DROP COLUMN ino_hi;
             DROP TABLE archive_reads; DROP TABLE archive_members;
             ALTER TABLE verdicts DROP COLUMN hosts;",
        )
        .unwrap();
        conn.pragma_update(None, "user_version", 2).unwrap();
        drop(conn);
        let (cache, warning) = Cache::open(&path).expect("open the old cache");
        assert_eq!(warning, None);
        let version: i32 = Connection::open(&path)
            .unwrap()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        assert!(cache.get_digests(&key(1), true, true).unwrap().is_some());
    }

    /// A schema 5 cache's answers become the default service's, first answered and last used
    /// when they were looked up.
    #[test]
    fn a_schema_5_cache_keeps_its_answers_as_the_default_services() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("c.sqlite");
        drop(Cache::open(&path).expect("open"));
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "DROP TABLE verdicts;
             CREATE TABLE verdicts (algo TEXT NOT NULL, digest BLOB NOT NULL,
                 scan_result_i INTEGER NOT NULL, total_detected_avs INTEGER NOT NULL,
                 verdict TEXT NOT NULL, data_id TEXT, looked_up_at INTEGER NOT NULL,
                 details TEXT, hosts INTEGER, PRIMARY KEY (algo, digest)) WITHOUT ROWID;",
        )
        .unwrap();
        let d = Digest::Sha256([4; 32]);
        conn.execute(
            "INSERT INTO verdicts VALUES ('sha256', ?1, 1, 9, 'infected', 'id', ?2, NULL, 3)",
            params![d.as_bytes(), T0],
        )
        .unwrap();
        conn.pragma_update(None, "user_version", 5).unwrap();
        drop(conn);
        let (cache, warning) = Cache::open(&path).expect("open the old cache");
        assert_eq!(warning, None);
        let got = cache.get_answers(&[d], at(T0 + 10)).unwrap();
        let a = &got[&d];
        assert_eq!(
            (a.answer.scan_result_i, a.answer.total_detected_avs),
            (1, 9)
        );
        assert_eq!((a.looked_up_at, a.first_answered_at), (T0, T0));
        assert_eq!(a.answer.hosts, Some(3));
        let other = cache.with_service("http://127.0.0.1:1/v4/hash");
        assert!(other.get_answers(&[d], at(T0 + 10)).unwrap().is_empty());
    }

    /// The default service's name is what the client calls the default endpoint.
    #[test]
    fn the_legacy_service_is_the_default_endpoint() {
        assert_eq!(
            LEGACY_SERVICE,
            format!("{}/v4/hash", hashsweep_lookup::http::DEFAULT_API_URL)
        );
    }

    /// Two ReFS files whose 128-bit ids share the low half are not each other's.
    #[test]
    fn digest_miss_when_the_high_half_of_the_file_id_changes() {
        assert_miss_after(|k| k.ino_hi += 1, "ino_hi");
    }

    #[test]
    fn digest_miss_when_size_changes() {
        assert_miss_after(|k| k.size += 1, "size");
    }

    #[test]
    fn digest_miss_when_mtime_changes() {
        assert_miss_after(|k| k.mtime_ns += 1, "mtime_ns");
    }

    #[test]
    fn digest_miss_when_ctime_changes() {
        assert_miss_after(|k| k.ctime_ns += 1, "ctime_ns");
    }

    #[test]
    fn digest_miss_when_md5_or_sha1_needed_but_not_cached() {
        let (_dir, cache) = fresh();
        cache
            .put_digests(&[(key(1), digests(1, false, false))])
            .unwrap();
        assert_eq!(cache.get_digests(&key(1), true, false).unwrap(), None);
        assert_eq!(cache.get_digests(&key(1), false, true).unwrap(), None);
        assert!(cache.get_digests(&key(1), false, false).unwrap().is_some());
    }

    #[test]
    fn digest_rows_merge_for_the_same_file_and_replace_for_a_changed_one() {
        let (_dir, cache) = fresh();
        cache
            .put_digests(&[(key(1), digests(1, true, false))])
            .unwrap();
        cache
            .put_digests(&[(key(1), digests(1, false, true))])
            .unwrap();
        assert_eq!(
            cache.get_digests(&key(1), true, true).unwrap(),
            Some(digests(1, true, true)),
            "same key and sha256: md5 kept, sha1 added"
        );
        let mut changed = key(1);
        changed.mtime_ns += 1_000;
        cache
            .put_digests(&[(changed, digests(2, false, false))])
            .unwrap();
        assert_eq!(cache.get_digests(&key(1), false, false).unwrap(), None);
        assert_eq!(
            cache.get_digests(&changed, false, false).unwrap(),
            Some(digests(2, false, false)),
            "a changed file's old md5/sha1 must not survive"
        );
    }

    #[test]
    fn recently_changed_files_are_not_cached() {
        let (_dir, cache) = fresh();
        let now = unix_nanos(SystemTime::now());
        let mut recent_m = key(1);
        recent_m.mtime_ns = now;
        let mut recent_c = key(2);
        recent_c.ctime_ns = now - 500_000_000;
        let rows = [
            (recent_m, digests(1, false, false)),
            (recent_c, digests(2, false, false)),
            (key(3), digests(3, false, false)),
        ];
        assert_eq!(cache.put_digests(&rows).unwrap(), 1);
        assert_eq!(cache.get_digests(&recent_m, false, false).unwrap(), None);
        assert_eq!(cache.get_digests(&recent_c, false, false).unwrap(), None);
        assert!(cache.get_digests(&key(3), false, false).unwrap().is_some());
    }

    #[test]
    fn verdict_round_trip_for_each_algorithm() {
        let (_dir, cache) = fresh();
        let ds = [
            Digest::Md5([1; 16]),
            Digest::Sha1([1; 20]),
            Digest::Sha256([1; 32]),
        ];
        let rows: Vec<_> = ds.iter().map(|d| (*d, answer(1, 12))).collect();
        assert_eq!(cache.put_verdicts(&rows, at(T0)).unwrap(), 3);
        let got = cache.get_verdicts(&ds, at(T0 + 10)).unwrap();
        assert_eq!(got.len(), 3);
        for d in ds {
            assert_eq!(got.get(&d), Some(&answer(1, 12)), "{d:?}");
        }
        let other = Digest::Sha256([2; 32]);
        assert!(cache.get_verdicts(&[other], at(T0)).unwrap().is_empty());
    }

    fn engines() -> Box<[EngineResult]> {
        Box::new([EngineResult {
            engine: "AV".into(),
            threat_found: "EICAR".into(),
            scan_result_i: Some(1),
            def_time: Some("2026-11-01T00:00:00.000Z".into()),
        }])
    }

    /// Engine details were paid for: they are kept with the answer and served to whoever
    /// wants them; a sweep that wants them does not take a plain answer as enough, and a
    /// sweep that does not want them gets none (the same report either way).
    #[test]
    fn engine_details_are_kept_and_served_per_use() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.sqlite");
        let (with, plain, empty) = (
            Digest::Sha256([1; 32]),
            Digest::Sha256([2; 32]),
            Digest::Sha256([3; 32]),
        );
        let detailed = Answer {
            details: Some(engines()),
            ..answer(1, 12)
        };
        // As a --details sweep stores them: an unknown hash has no details from the service.
        let (cache, _) = Cache::open(&path).unwrap();
        let cache = cache.with_details(DetailsUse::Required);
        cache
            .put_verdicts(&[(with, detailed.clone()), (empty, answer(5, -1))], at(T0))
            .unwrap();
        drop(cache);
        let (cache, _) = Cache::open(&path).unwrap();
        cache
            .put_verdicts(&[(plain, answer(0, 0))], at(T0))
            .unwrap();
        let all = [with, plain, empty];

        let got = cache.get_verdicts(&all, at(T0 + 1)).unwrap();
        assert_eq!(got[&with], detailed, "as stored");
        assert_eq!(got[&plain], answer(0, 0));
        assert_eq!(
            got[&empty].details.as_deref(),
            Some(&[][..]),
            "asked with details, none given: serves a details request"
        );

        let cache = cache.with_details(DetailsUse::Required);
        let got = cache.get_verdicts(&all, at(T0 + 1)).unwrap();
        assert_eq!(got.get(&with), Some(&detailed));
        assert_eq!(got.get(&plain), None, "a plain answer is not enough");
        assert_eq!(
            got.get(&empty),
            Some(&answer(5, -1)),
            "as the client gives it"
        );

        let cache = cache.with_details(DetailsUse::Ignored);
        let got = cache.get_verdicts(&all, at(T0 + 1)).unwrap();
        assert_eq!(got.len(), 3);
        assert!(got.values().all(|a| a.details.is_none()), "{got:?}");
    }

    // Unix only: the test makes a symlink (Windows needs a privilege for one).
    #[cfg(unix)]
    /// The walk's rule names the files SQLite really uses: through a symlinked cache path,
    /// the database it leads to and the journals beside that.
    #[test]
    fn skip_rule_names_the_real_files_and_their_directory() {
        let dir = tempfile::tempdir().unwrap();
        let real_dir = dir.path().join("real");
        fs::create_dir(&real_dir).unwrap();
        std::os::unix::fs::symlink(real_dir.join("c.sqlite"), dir.path().join("link.sqlite"))
            .unwrap();
        let (cache, _) = Cache::open(dir.path().join("link.sqlite")).unwrap();
        cache
            .put_verdicts(&[(Digest::Md5([1; 16]), answer(0, 0))], at(T0))
            .unwrap();
        let rule = cache.skip_rule().unwrap();
        assert_eq!(rule.dir, file_id(&real_dir).unwrap());
        let is = |n: &str| rule.names.iter().any(|(p, _)| p.matches(n.as_ref()));
        for n in [
            "c.sqlite",
            "c.sqlite-wal",
            "c.sqlite-shm",
            "c.sqlite.corrupt-1700000000",
        ] {
            assert!(is(n), "{n}: {rule:?}");
        }
        assert!(!is("link.sqlite") && !is("c.sqlite2"), "{rule:?}");
        let db = file_id(&real_dir.join("c.sqlite")).unwrap();
        assert!(rule.files.iter().any(|(id, _)| *id == db), "{rule:?}");
    }

    #[test]
    fn verdicts_expire_per_class() {
        let ttls = Ttls {
            clean: Duration::from_secs(100),
            detection: Duration::from_secs(200),
            unknown: Duration::from_secs(50),
            other: Duration::from_secs(150),
        };
        let (_dir, cache) = fresh();
        let cache = cache.with_ttls(ttls);
        let cases = [
            ("clean", Digest::Md5([1; 16]), answer(0, 0), 100),
            ("infected", Digest::Md5([2; 16]), answer(1, 9), 200),
            ("suspicious", Digest::Md5([3; 16]), answer(0, 2), 200),
            ("unknown", Digest::Md5([4; 16]), answer(5, 0), 50),
            ("other", Digest::Md5([5; 16]), answer(12, 0), 150),
        ];
        let rows: Vec<_> = cases.iter().map(|c| (c.1, c.2.clone())).collect();
        cache.put_verdicts(&rows, at(T0)).unwrap();
        for (class, d, a, ttl) in &cases {
            let before = cache.get_verdicts(&[*d], at(T0 + ttl - 1)).unwrap();
            assert_eq!(
                before.get(d),
                Some(a),
                "{class}: fresh one second before its TTL"
            );
            let after = cache.get_verdicts(&[*d], at(T0 + ttl)).unwrap();
            assert!(after.is_empty(), "{class}: expired at its TTL");
        }
        let past = cache.get_verdicts(&[cases[0].1], at(T0 - 1)).unwrap();
        assert!(past.is_empty(), "an entry dated in the future is stale");
    }

    #[test]
    fn default_ttls() {
        let t = Ttls::default();
        assert_eq!(t.clean, Duration::from_secs(86_400));
        assert_eq!(t.detection, Duration::from_secs(7 * 86_400));
        assert_eq!(t.unknown, Duration::from_secs(3_600));
        assert_eq!(t.other, Duration::from_secs(86_400));
    }

    #[test]
    fn errors_and_non_answers_are_refused() {
        // An `Answer` derives its verdict from the service's code, so it can never carry
        // `error`; what is left to check is that no such verdict has a TTL.
        let t = Ttls::default();
        for v in [
            Verdict::Error,
            Verdict::Skipped,
            Verdict::NotLookedUp,
            Verdict::KnownGood,
        ] {
            assert_eq!(t.for_verdict(&v), None, "{v}");
        }
        for code in [0, 1, 2, 5, 3, 23] {
            assert!(
                t.for_verdict(&Verdict::from_code(code, Some(0))).is_some(),
                "code {code}"
            );
        }
    }

    /// An answer stays as long as sweeps use it, whatever its age: pruning takes only the ones
    /// no sweep has needed for FORGET_AFTER. Each use dates it (once a TOUCH_AFTER), so a
    /// digest answered long ago and still on disk is never taken for one never asked.
    #[test]
    fn answers_in_use_survive_pruning_whatever_their_age() {
        let (_dir, cache) = fresh();
        let used = Digest::Sha1([1; 20]);
        let unused = Digest::Sha1([2; 20]);
        cache
            .put_verdicts(&[(used, answer(1, 3)), (unused, answer(0, 0))], at(T0))
            .unwrap();
        let day = 86_400;
        // A sweep needs `used` every 30 days for 200 days; prunes run in between.
        for n in 1..=6 {
            let t = T0 + n * 30 * day + 1;
            let got = cache.get_answers(&[used], at(t)).unwrap();
            assert_eq!(got[&used].looked_up_at, T0, "night {n}");
            assert_eq!(got[&used].first_answered_at, T0);
            cache.maintain(at(t + 1), Duration::from_secs(10)).unwrap();
        }
        let t = T0 + 200 * day;
        let got = cache.get_answers(&[used, unused], at(t)).unwrap();
        assert!(got.contains_key(&used));
        assert!(!got.contains_key(&unused), "unused for 200 days: pruned");
        // Expired long ago, so never served as fresh.
        assert!(cache.get_verdicts(&[used], at(t)).unwrap().is_empty());
        // A refresh keeps the first date.
        cache.put_verdicts(&[(used, answer(0, 0))], at(t)).unwrap();
        let got = cache.get_answers(&[used], at(t)).unwrap();
        assert_eq!(
            (got[&used].looked_up_at, got[&used].first_answered_at),
            (t, T0)
        );
    }

    /// Answers belong to their service: another service's answer for the same digest is
    /// neither served nor replaced.
    #[test]
    fn answers_are_kept_per_service() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.sqlite");
        let a = Cache::open(&path)
            .unwrap()
            .0
            .with_service("http://a/v4/hash");
        let b = Cache::open(&path)
            .unwrap()
            .0
            .with_service("http://b/v4/hash");
        let d = Digest::Sha256([3; 32]);
        a.put_verdicts(&[(d, answer(1, 5))], at(T0)).unwrap();
        assert!(b.get_answers(&[d], at(T0)).unwrap().is_empty());
        assert!(b.get_verdicts(&[d], at(T0)).unwrap().is_empty());
        assert!(!b.history(&[d]).unwrap().answered.contains(&d));
        b.put_verdicts(&[(d, answer(0, 0))], at(T0)).unwrap();
        assert_eq!(a.get_verdicts(&[d], at(T0)).unwrap()[&d].scan_result_i, 1);
        assert_eq!(b.get_verdicts(&[d], at(T0)).unwrap()[&d].scan_result_i, 0);
    }

    /// A cache that cannot be written still serves its old answers (dating them fails,
    /// counted as an error, and the answers come back all the same).
    #[test]
    fn old_answers_serve_from_a_cache_that_cannot_be_written() {
        let (_dir, cache) = fresh();
        let d = Digest::Sha256([5; 32]);
        cache.put_verdicts(&[(d, answer(0, 0))], at(T0)).unwrap();
        cache.fail_writes();
        let later = at(T0 + 30 * 86_400);
        let got = cache.get_answers(&[d], later).unwrap();
        assert_eq!(got[&d].looked_up_at, T0);
        assert_eq!(cache.stats().errors, 1);
    }

    /// An unknown program's answer is due sooner than an unknown data file's.
    #[test]
    fn unknown_programs_are_due_before_unknown_data() {
        let t = Ttls::DEFAULT;
        let unknown = Verdict::Unknown;
        assert_eq!(
            t.for_answer(&unknown, FileKind::Executable),
            Some(t.unknown)
        );
        assert_eq!(t.for_answer(&unknown, FileKind::Script), Some(t.unknown));
        assert_eq!(t.for_answer(&unknown, FileKind::Other), Some(t.clean));
        assert_eq!(
            t.for_answer(&Verdict::Clean, FileKind::Executable),
            Some(t.clean)
        );
    }

    #[test]
    fn stats_count_hits_and_misses() {
        let (_dir, cache) = fresh();
        cache
            .put_digests(&[(key(1), digests(1, false, false))])
            .unwrap();
        cache.get_digests(&key(1), false, false).unwrap();
        cache.get_digests(&key(2), false, false).unwrap();
        cache.get_digests(&key(1), true, false).unwrap();
        let d = Digest::Md5([9; 16]);
        cache.put_verdicts(&[(d, answer(0, 0))], at(T0)).unwrap();
        cache
            .get_verdicts(&[d, Digest::Md5([8; 16])], at(T0))
            .unwrap();
        assert_eq!(
            cache.stats(),
            CacheStats {
                digest_hits: 1,
                digest_misses: 2,
                verdict_hits: 1,
                verdict_misses: 1,
                digests_written: 1,
                verdicts_written: 1,
                errors: 0,
            }
        );
    }

    #[test]
    fn data_survives_close_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/dir/c.sqlite");
        let d = Digest::Sha256([3; 32]);
        {
            let (cache, _) = Cache::open(&path).unwrap();
            cache
                .put_digests(&[(key(1), digests(1, true, false))])
                .unwrap();
            cache.put_verdicts(&[(d, answer(1, 5))], at(T0)).unwrap();
        }
        let (cache, warning) = Cache::open(&path).unwrap();
        assert_eq!(warning, None);
        assert_eq!(
            cache.get_digests(&key(1), true, false).unwrap(),
            Some(digests(1, true, false))
        );
        assert_eq!(
            cache.get_verdicts(&[d], at(T0 + 1)).unwrap().get(&d),
            Some(&answer(1, 5))
        );
    }

    fn assert_recovers(path: &Path) {
        let (cache, warning) = Cache::open(path).expect("a corrupt cache is recovered");
        let warning = warning.expect("recovery is reported");
        assert!(warning.contains("moved it aside"), "{warning}");
        let aside: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".corrupt-"))
            .collect();
        assert_eq!(aside.len(), 1, "the bad file is kept aside");
        cache
            .put_digests(&[(key(1), digests(1, false, false))])
            .unwrap();
        assert!(cache.get_digests(&key(1), false, false).unwrap().is_some());
        drop(cache);
        let (_, again) = Cache::open(path).unwrap();
        assert_eq!(again, None, "the fresh cache is sound");
    }

    #[test]
    fn garbage_file_is_moved_aside_and_cache_usable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.sqlite");
        fs::write(
            &path,
            b"this is not a database, just some garbage bytes\n".repeat(100),
        )
        .unwrap();
        assert_recovers(&path);
    }

    #[test]
    fn truncated_file_is_moved_aside_and_cache_usable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.sqlite");
        {
            let (cache, _) = Cache::open(&path).unwrap();
            let rows: Vec<_> = (0..5_000)
                .map(|i| (key(i), digests(i, true, true)))
                .collect();
            cache.put_digests(&rows).unwrap();
        }
        let len = fs::metadata(&path).unwrap().len();
        assert!(len > 100_000, "checkpointed on close: {len}");
        fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len / 2)
            .unwrap();
        assert_recovers(&path);
    }

    #[test]
    fn foreign_sqlite_file_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("theirs.sqlite");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch("CREATE TABLE precious (x); INSERT INTO precious VALUES (1);")
                .unwrap();
        }
        let err = Cache::open(&path).err().expect("refused");
        assert!(matches!(err, CacheError::Foreign { .. }), "{err}");
        assert!(err.to_string().contains("theirs.sqlite"), "{err}");
        let conn = Connection::open(&path).unwrap();
        let n: i64 = conn
            .query_row("SELECT count(*) FROM precious", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.sqlite");
        drop(Cache::open(&path).unwrap());
        {
            let conn = Connection::open(&path).unwrap();
            conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
                .unwrap();
        }
        let err = Cache::open(&path).err().expect("refused");
        assert!(matches!(err, CacheError::NewerSchema { .. }), "{err}");
    }

    #[test]
    fn schema_version_and_wal_are_set() {
        let (_dir, cache) = fresh();
        let conn = lock(&cache.writer);
        let v: i32 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        let id: i32 = conn
            .pragma_query_value(None, "application_id", |r| r.get(0))
            .unwrap();
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(
            (v, id, mode.as_str()),
            (SCHEMA_VERSION, APPLICATION_ID, "wal")
        );
    }

    #[test]
    fn two_instances_on_one_file_work_concurrently() {
        let dir = tempfile::tempdir().unwrap();
        let path = Arc::new(dir.path().join("shared.sqlite"));
        let start = Arc::new(Barrier::new(2));
        let workers: Vec<_> = (0..2u64)
            .map(|w| {
                let (path, start) = (Arc::clone(&path), Arc::clone(&start));
                std::thread::spawn(move || -> Result<(), CacheError> {
                    start.wait();
                    // Both create the file at once, as two processes would.
                    let (cache, _) = Cache::open(path.as_path())?;
                    for round in 0..30u64 {
                        let base = w * 1_000_000 + round * 200;
                        let rows: Vec<_> = (base..base + 200)
                            .map(|i| (key(i), digests(i, true, false)))
                            .collect();
                        cache.put_digests(&rows)?;
                        let d = Digest::Sha256([(w * 100 + round) as u8; 32]);
                        cache.put_verdicts(&[(d, answer(0, 0))], at(T0))?;
                        for (k, want) in &rows {
                            assert_eq!(cache.get_digests(k, true, false)?, Some(*want));
                        }
                        let theirs = (1 - w) * 1_000_000 + round * 200;
                        cache.get_digests(&key(theirs), false, false)?;
                        cache.get_verdicts(&[d], at(T0))?;
                    }
                    Ok(())
                })
            })
            .collect();
        for w in workers {
            w.join().expect("no panic").expect("no cache error");
        }
        let (cache, _) = Cache::open(path.as_path()).unwrap();
        for w in 0..2 {
            let k = key(w * 1_000_000 + 29 * 200 + 199);
            assert!(cache.get_digests(&k, true, false).unwrap().is_some());
        }
    }

    #[test]
    fn file_key_from_meta() {
        let meta = FileMeta {
            dev: 1,
            ino: 2,
            ino_hi: 6,
            mtime_ns: 3,
            ctime_ns: 4,
        };
        let k = FileKey::new(&meta, 5);
        assert_eq!(
            (k.dev, k.ino, k.size, k.mtime_ns, k.ctime_ns, k.ino_hi),
            (1, 2, 5, 3, 4, 6)
        );
    }

    #[test]
    fn default_path_is_cache_sqlite() {
        if let Some(p) = Cache::default_path() {
            // Linux: ~/.cache/hashsweep/; Windows: %LOCALAPPDATA%\hashsweep\cache\.
            assert!(p.ends_with("cache.sqlite"), "{}", p.display());
            assert!(
                p.components().any(|c| c.as_os_str() == "hashsweep"),
                "{}",
                p.display()
            );
        }
    }

    /// Timing, not an assertion:
    /// `cargo test --release --lib cache::tests::timing -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn timing_100k_digest_lookups() {
        let (_dir, cache) = fresh();
        let n = 100_000u64;
        let rows: Vec<_> = (0..n).map(|i| (key(i), digests(i, true, false))).collect();
        let t = Instant::now();
        for chunk in rows.chunks(1000) {
            cache.put_digests(chunk).unwrap();
        }
        eprintln!("put {n} rows in batches of 1000: {:?}", t.elapsed());
        let t = Instant::now();
        let hits = rows
            .iter()
            .filter(|(k, _)| cache.get_digests(k, true, false).unwrap().is_some())
            .count();
        eprintln!("{n} lookups, one thread: {:?} ({hits} hits)", t.elapsed());
        let keys: Vec<_> = rows.iter().map(|r| r.0).collect();
        let t = Instant::now();
        let hits: usize = keys
            .chunks(1000)
            .map(|c| {
                let got = cache.get_digests_many(c, true, false).unwrap();
                got.iter().flatten().count()
            })
            .sum();
        eprintln!(
            "{n} lookups, get_digests_many by 1000: {:?} ({hits} hits)",
            t.elapsed()
        );
        let cache = Arc::new(cache);
        let rows = Arc::new(rows);
        let t = Instant::now();
        let threads: Vec<_> = (0..4)
            .map(|j| {
                let (cache, rows) = (Arc::clone(&cache), Arc::clone(&rows));
                std::thread::spawn(move || {
                    rows.iter()
                        .skip(j)
                        .step_by(4)
                        .filter(|(k, _)| cache.get_digests(k, true, false).unwrap().is_some())
                        .count()
                })
            })
            .collect();
        let hits: usize = threads.into_iter().map(|h| h.join().unwrap()).sum();
        eprintln!("{n} lookups, four threads: {:?} ({hits} hits)", t.elapsed());
        let t = Instant::now();
        let conn = lock(&cache.writer);
        let ok: String = conn
            .pragma_query_value(None, "quick_check", |r| r.get(0))
            .unwrap();
        eprintln!("quick_check of {n} rows: {:?} ({ok})", t.elapsed());
    }
}
