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

mod answers;
pub mod circl;
mod maintain;
mod members;
mod schema;
mod uploads;

pub use answers::CachedAnswer;
pub use maintain::{FORGET_AFTER, Maintenance, PRUNE_EVERY};
pub use members::{ArchiveRow, MemberRow, MemberState};
pub use schema::{APPLICATION_ID, SCHEMA_VERSION};
use schema::{move_aside, open_reader, open_writer, with_suffix};
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

use rusqlite::{Connection, ErrorCode, OptionalExtension, TransactionBehavior, params};

// Poisoned locks are recovered (hashsweep_core::sync): a panic elsewhere cannot leave a connection
// mid-transaction, since rusqlite rolls back on drop.
use hashsweep_core::ErrorChain;
use hashsweep_core::digest::{Digest, Digests};
use hashsweep_core::file::{FileKind, FileMeta};
use hashsweep_core::file::{NamePattern, SkipRule, SpecialKind};
use hashsweep_core::platform::file_id;
use hashsweep_core::sync::lock;
use hashsweep_lookup::Budget;
use hashsweep_lookup::verdict::Verdict;

/// How long a connection waits for another process's lock before giving up.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// A file whose mtime or ctime is this recent when its digests are stored is not cached: a
/// write in the same timestamp tick would leave the key unchanged (the "racy clean" problem).
pub const RACY_WINDOW: Duration = Duration::from_secs(2);

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

#[cfg(test)]
mod tests;
