//! The cache file itself: its identity and schema version, the schema and every migration from
//! an older version, the reader and writer connections, and a corrupt file moved aside.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use rusqlite::{Connection, OpenFlags, TransactionBehavior, params};

use super::{BUSY_TIMEOUT, CacheError, LEGACY_SERVICE, sql_err, unix_secs};

/// `PRAGMA application_id` of a hashsweep cache ("hswp"): a SQLite file without it is not ours.
pub const APPLICATION_ID: i32 = 0x6873_7770;
/// `PRAGMA user_version` this code writes. Older versions are migrated on open.
pub const SCHEMA_VERSION: i32 = 8;

/// Schema version 1. `dev`, `ino` and `size` are `u64` stored bit for bit in SQLite's `i64`.
pub(super) const SCHEMA_V1: &str = "
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
pub(super) const MIGRATE_V2: &str = "
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

/// Schema version 8 (additive): CIRCL hashlookup's answers (`--circl`; see `circl`), by the
/// CIRCL URL asked and digest: `found` 1 with the record's fields, or 0 for "not found" (an
/// answer too), dated so that each stands for its own TTL.
const MIGRATE_V8_CIRCL: &str = "
CREATE TABLE IF NOT EXISTS circl_answers (
    service         TEXT NOT NULL,
    algo            TEXT NOT NULL,
    digest          BLOB NOT NULL,
    found           INTEGER NOT NULL,
    file_name       TEXT,
    product         TEXT,
    known_malicious TEXT,
    looked_up_at    INTEGER NOT NULL,
    PRIMARY KEY (service, algo, digest)
) WITHOUT ROWID;
";

/// Per-connection settings (not stored in the file).
pub(crate) fn configure(conn: &Connection, path: &Path) -> Result<(), CacheError> {
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(sql_err(path, "setting the busy timeout"))?;
    // Safe in WAL mode: a crash keeps the file consistent, at most the last commits are lost.
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(sql_err(path, "setting synchronous"))?;
    Ok(())
}

pub(crate) fn open_reader(path: &Path) -> Result<Connection, CacheError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)
        .map_err(sql_err(path, "opening a read connection"))?;
    configure(&conn, path)?;
    Ok(conn)
}

/// Open the write connection: check the file is ours, create or migrate the schema, switch to
/// WAL. Any step may find the file corrupt ([`CacheError::is_corrupt`]).
pub(crate) fn open_writer(path: &Path) -> Result<Connection, CacheError> {
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
    if version < 8 {
        tx.execute_batch(MIGRATE_V8_CIRCL)
            .map_err(sql_err(path, "adding CIRCL's answers (schema 8)"))?;
    }
    // A future schema adds `if version < 9 { ... }` here.
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

pub(super) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s: OsString = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Rename a corrupt cache (and its WAL) to `path.corrupt-<unix time>[-n]`, drop its shared
/// memory file. Returns where it went.
pub(crate) fn move_aside(path: &Path) -> Result<PathBuf, CacheError> {
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
