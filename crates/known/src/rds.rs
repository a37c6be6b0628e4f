//! NSRL RDSv3 databases (SQLite) as known-file sets. A database is recognised by its content
//! (the SQLite header, then a `FILE` table or view with `sha256`, `sha1`, `md5` and
//! `package_id` columns), never by its name; both the minimal layout (a real `FILE` table whose
//! primary key starts with `sha256`) and the full one (`FILE` a view over `METADATA`) are read.
//!
//! The database is opened read-only and immutable (`file:...?mode=ro&immutable=1`): it may sit
//! on write-protected evidence media, and SQLite writes nothing beside it. Its SHA-256 values
//! are read once (for the minimal layout in primary-key order: one scan of the key's index, no
//! `DISTINCT`, no sort) into the compact sorted index of [`super::hashset`], with one
//! "package class" combination per digest (the application types of the packages that hold
//! it), and kept in the index directory under a name drawn from the RDS build set and layout,
//! so a newer release of the same set replaces the older one's index. Later runs map it.
//!
//! "Known" is not "known good": a digest is good only when at least one package that holds it
//! has no application type in the exclusion list ([`DEFAULT_EXCLUDED_TYPES`] plus the user's);
//! the others are looked up as usual. Only SHA-256 is indexed: every RDSv3 row has one and
//! hashsweep computes SHA-256 for every file, so an MD5 or SHA-1 index could never change an
//! answer.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::ops::Range;
use std::path::Path;

use memmap2::Mmap;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::error::HashSetError;
use super::stamp::{INDEX_NAME, INDEX_TMP, Stamp};
use hashsweep_core::digest::{decode_hex, hex_lower};

/// Application types of the RDS whose packages are not taken as known good by default: tools
/// a responder wants to see (offensive or dual-use). Matched case-insensitively against
/// `PKG.application_type`; `--nsrl-exclude-type` adds to the list.
pub const DEFAULT_EXCLUDED_TYPES: &[&str] = &[
    "Hacker Tool",
    "Steganography",
    "Encryption",
    "Keyboard Logger",
];

/// The first 16 bytes of every SQLite 3 database file.
const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// Whether `file` starts with the SQLite header (read without moving the file's cursor).
pub fn is_sqlite(file: &File) -> io::Result<bool> {
    let mut head = [0u8; 16];
    let mut got = 0;
    while got < head.len() {
        match hashsweep_core::platform::read_at(file, &mut head[got..], got as u64) {
            Ok(0) => return Ok(false),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(&head == SQLITE_MAGIC)
}

/// Whether the file opened as `file` (with `meta`) is a regular file that starts with the
/// SQLite header: one [`load`] would read as an RDS database.
pub(super) fn is_sqlite_file(
    path: &Path,
    file: &File,
    meta: &fs::Metadata,
) -> Result<bool, HashSetError> {
    if !meta.is_file() {
        return Ok(false);
    }
    is_sqlite(file).map_err(|source| HashSetError::Read {
        path: path.to_path_buf(),
        line: 1,
        source,
    })
}

/// The layout of the NSRL RDS database at `path`, `None` when it is no SQLite file (a hash
/// list, say). Reads the schema only, so it is as quick on the full NSRL as on a test file
/// (for a caller that must refuse a database before [`load`] reads it); a damaged or foreign
/// SQLite file is the error loading it would give. Only a regular file is opened: a pipe
/// (`<(...)`) or FIFO is left for the one open that reads it.
pub fn identify(path: &Path) -> Result<Option<Layout>, HashSetError> {
    let open_err = |source| HashSetError::Open {
        path: path.to_path_buf(),
        source,
    };
    if !fs::metadata(path).map_err(open_err)?.is_file() {
        return Ok(None);
    }
    let file = File::open(path).map_err(open_err)?;
    let meta = file.metadata().map_err(open_err)?;
    if !is_sqlite_file(path, &file, &meta)? {
        return Ok(None);
    }
    let canonical = fs::canonicalize(path).map_err(open_err)?;
    let (_, layout) = open_rds(path, &canonical)?;
    Ok(Some(layout))
}

/// Open the RDS database at `canonical` (named `path` in errors) and find its layout.
fn open_rds(path: &Path, canonical: &Path) -> Result<(Connection, Layout), HashSetError> {
    let conn = open_immutable(canonical).map_err(|source| HashSetError::Rds {
        path: path.to_path_buf(),
        what: "cannot open",
        source,
    })?;
    let layout = inspect(&conn).map_err(|e| match e {
        Inspect::Sql(source) => HashSetError::Rds {
            path: path.to_path_buf(),
            what: "cannot read",
            source,
        },
        Inspect::NotRds(reason) => HashSetError::NotRds {
            path: path.to_path_buf(),
            reason,
        },
    })?;
    Ok((conn, layout))
}

/// Which of NIST's two database layouts a file has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// `FILE` is a table (primary key led by `sha256`).
    Minimal,
    /// `FILE` is a view (over `METADATA` and `PACKAGE_OBJECT` in NIST's full release).
    Full,
}

impl Layout {
    pub fn as_str(self) -> &'static str {
        match self {
            Layout::Minimal => "minimal",
            Layout::Full => "full",
        }
    }
}

/// The `VERSION` row of an RDS database (the newest, when a delta added rows).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RdsVersion {
    pub version: String,
    pub build_set: String,
    pub release_date: String,
}

/// What one RDS database is: its layout and, when it has one, its `VERSION` row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RdsInfo {
    pub layout: Layout,
    pub version: Option<RdsVersion>,
    /// `FILE` rows read when the index was built.
    pub rows: u64,
    /// Rows whose `sha256` was not 64 hex digits (counted, not loaded).
    pub skipped: u64,
    /// Whether the digests came in binary order (a minimal database in NIST's upper-case hex,
    /// read in key order): merged as they came, in one pass with no sort. Otherwise (mixed
    /// case, the full layout's view) they were collected and sorted in memory. `None` for an
    /// index built before this was recorded (still used: it is not rebuilt for this).
    #[serde(default)]
    pub read_in_order: Option<bool>,
}

/// How RDS databases are read: which application types are not known good.
#[derive(Debug, Clone)]
pub struct RdsOptions {
    pub excluded_types: Vec<String>,
}

impl Default for RdsOptions {
    fn default() -> Self {
        RdsOptions {
            excluded_types: DEFAULT_EXCLUDED_TYPES
                .iter()
                .map(|t| t.to_string())
                .collect(),
        }
    }
}

impl RdsOptions {
    /// The defaults plus `extra` (the user's `--nsrl-exclude-type` values).
    pub fn with_extra(extra: &[String]) -> Self {
        let mut o = RdsOptions::default();
        o.excluded_types.extend(extra.iter().cloned());
        o
    }

    fn excludes(&self, application_type: &str) -> bool {
        let t = application_type.trim();
        self.excluded_types
            .iter()
            .any(|x| x.trim().eq_ignore_ascii_case(t))
    }
}

/// The SHA-256 values of one RDS database, sorted, each with its package-class combination.
pub struct RdsTable {
    store: Store,
    /// Per combination: the application types to report when the digest is known good
    /// (sorted, `", "`-joined; empty when the packages name none), `None` when every package
    /// that holds it is of an excluded type.
    good: Vec<Option<Box<str>>>,
    pub info: RdsInfo,
    pub from_index: bool,
}

enum Store {
    Owned {
        sha256: Vec<[u8; 32]>,
        combos: Vec<u32>,
    },
    Mapped {
        map: Mmap,
        sha256: Range<usize>,
        combos: Range<usize>,
    },
}

impl RdsTable {
    /// Every SHA-256 value of the database (excluded ones too), sorted and distinct.
    pub fn sha256(&self) -> &[[u8; 32]] {
        match &self.store {
            Store::Owned { sha256, .. } => sha256,
            Store::Mapped { map, sha256, .. } => map[sha256.clone()].as_chunks().0,
        }
    }

    fn combo(&self, i: usize) -> u32 {
        match &self.store {
            Store::Owned { combos, .. } => combos[i],
            Store::Mapped { map, combos, .. } => {
                let at = combos.start + 4 * i;
                let mut w = [0u8; 4];
                w.copy_from_slice(&map[at..at + 4]);
                u32::from_le_bytes(w)
            }
        }
    }

    /// `Some(application types)` when `d` is listed by a package that is not excluded.
    pub fn lookup(&self, d: &[u8; 32]) -> Option<&str> {
        let i = self.sha256().binary_search(d).ok()?;
        self.good
            .get(self.combo(i) as usize)
            .and_then(|g| g.as_deref())
    }
}

/// Index file (little-endian): the sorted SHA-256 values, one u32 combination id per value,
/// the [`Meta`] as JSON, its length (u64), then [`MAGIC`]. Written to a temp file and renamed.
const MAGIC: &[u8; 8] = b"HSWRDS\x00\x01";

#[derive(Serialize, Deserialize, PartialEq)]
struct Meta {
    /// Canonical path of the database (raw bytes) and the stamp of the version read.
    path: Vec<u8>,
    stamp: [u64; 6],
    info: RdsInfo,
    digests: u64,
    /// Package classes: the sorted application types of one package.
    classes: Vec<Vec<String>>,
    /// Combinations: the sorted class ids of the packages that hold one digest.
    combos: Vec<Vec<u32>>,
}

/// Load one RDS database (already opened as `file` and known to be SQLite). The second value
/// says why the index could not be written, when it could not (the set is then held in memory).
pub(super) fn load(
    path: &Path,
    file: &File,
    index_dir: Option<&Path>,
    opts: &RdsOptions,
) -> Result<(RdsTable, Option<String>), HashSetError> {
    let rds_err = |what: &'static str| {
        let path = path.to_path_buf();
        move |source| HashSetError::Rds { path, what, source }
    };
    let meta = file.metadata().map_err(|source| HashSetError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    let canonical = fs::canonicalize(path).map_err(|source| HashSetError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    let (conn, layout) = open_rds(path, &canonical)?;
    let version = read_version(&conn).map_err(rds_err("cannot read the VERSION table of"))?;
    let stamp = Stamp::of(file, &meta);
    let slot = index_dir.map(|dir| {
        let key = match &version {
            Some(v) => format!("rds\0{}\0{}", v.build_set, layout.as_str()),
            None => format!("rds-path\0{}", canonical.display()),
        };
        let h = Sha256::digest(key.as_bytes());
        let (start, end) = INDEX_NAME;
        (
            dir.to_path_buf(),
            dir.join(format!("{start}rds-{}{end}", &hex_lower(&h)[..16])),
        )
    });
    let want = |info: &RdsInfo| info.layout == layout && info.version == version;
    if let Some((_, file)) = &slot
        && let Some(mut t) = open_index(file, canonical.as_os_str().as_encoded_bytes(), stamp, opts)
        && want(&t.info)
    {
        t.from_index = true;
        return Ok((t, None));
    }

    let built = build(&conn, layout, version).map_err(rds_err("cannot read"))?;
    drop(conn);
    let mut table = RdsTable {
        good: good_per_combo(&built.classes, &built.combos, opts),
        info: built.info.clone(),
        store: Store::Owned {
            sha256: Vec::new(),
            combos: Vec::new(),
        },
        from_index: false,
    };
    let index_error = match &slot {
        // Cache only what was read from one unchanged version of the file.
        Some((dir, index)) if file.metadata().is_ok_and(|m| Stamp::of(file, &m) == stamp) => {
            let m = Meta {
                path: canonical.as_os_str().as_encoded_bytes().to_vec(),
                stamp: stamp.0,
                info: built.info.clone(),
                digests: built.sha256.len() as u64,
                classes: built.classes.clone(),
                combos: built.combos.clone(),
            };
            match write_index(dir, index, &m, &built.sha256, &built.combo_of) {
                Ok(()) => match open_index(index, &m.path, stamp, opts) {
                    Some(t) => return Ok((t, None)),
                    None => Some(format!(
                        "index {} unreadable after writing",
                        index.display()
                    )),
                },
                Err(e) => Some(format!(
                    "cannot write hash-set index {}: {e}",
                    index.display()
                )),
            }
        }
        _ => None,
    };
    table.store = Store::Owned {
        sha256: built.sha256,
        combos: built.combo_of,
    };
    Ok((table, index_error))
}

/// Open `path` read-only and immutable, through a `file:` URI (the path percent-encoded).
fn open_immutable(path: &Path) -> rusqlite::Result<Connection> {
    let mut uri = url::Url::from_file_path(path)
        .map_err(|()| rusqlite::Error::InvalidPath(path.to_path_buf()))?;
    uri.set_query(Some("mode=ro&immutable=1"));
    Connection::open_with_flags(
        uri.as_str(),
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
}

enum Inspect {
    Sql(rusqlite::Error),
    NotRds(String),
}

impl From<rusqlite::Error> for Inspect {
    fn from(e: rusqlite::Error) -> Self {
        Inspect::Sql(e)
    }
}

/// The layout, or why this SQLite database is not an RDSv3 one.
fn inspect(conn: &Connection) -> Result<Layout, Inspect> {
    let kind: Option<String> = conn
        .query_row(
            "SELECT type FROM sqlite_master WHERE name = 'FILE' COLLATE NOCASE \
             AND type IN ('table', 'view')",
            [],
            |r| r.get(0),
        )
        .map(Some)
        .or_else(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Ok(None),
            e => Err(e),
        })?;
    let Some(kind) = kind else {
        return Err(Inspect::NotRds(
            "an SQLite database, but not an NSRL RDSv3 one: it has no FILE table or view".into(),
        ));
    };
    let mut stmt = conn.prepare("SELECT lower(name) FROM pragma_table_info('FILE')")?;
    let cols: Vec<String> = stmt
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let missing: Vec<&str> = ["sha256", "sha1", "md5", "package_id"]
        .into_iter()
        .filter(|c| !cols.iter().any(|x| x == c))
        .collect();
    if !missing.is_empty() {
        return Err(Inspect::NotRds(format!(
            "an SQLite database, but not an NSRL RDSv3 one: its FILE {kind} has no {} column",
            missing.join(", ")
        )));
    }
    Ok(if kind == "table" {
        Layout::Minimal
    } else {
        Layout::Full
    })
}

fn exists(conn: &Connection, name: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE name = ?1 COLLATE NOCASE \
         AND type IN ('table', 'view')",
        [name],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n > 0)
}

/// Any SQL value as text (dates may be stored as numbers).
fn text(v: ValueRef<'_>) -> String {
    match v {
        ValueRef::Null => String::new(),
        ValueRef::Integer(i) => i.to_string(),
        ValueRef::Real(f) => f.to_string(),
        ValueRef::Text(t) | ValueRef::Blob(t) => String::from_utf8_lossy(t).into_owned(),
    }
}

fn read_version(conn: &Connection) -> rusqlite::Result<Option<RdsVersion>> {
    if !exists(conn, "VERSION")? {
        return Ok(None);
    }
    let mut stmt = conn.prepare(
        "SELECT version, build_set, release_date FROM VERSION ORDER BY version DESC LIMIT 1",
    )?;
    let mut rows = stmt.query([])?;
    Ok(match rows.next()? {
        Some(r) => Some(RdsVersion {
            version: text(r.get_ref(0)?),
            build_set: text(r.get_ref(1)?),
            release_date: text(r.get_ref(2)?),
        }),
        None => None,
    })
}

/// What one read of the database yields.
struct Built {
    info: RdsInfo,
    sha256: Vec<[u8; 32]>,
    combo_of: Vec<u32>,
    classes: Vec<Vec<String>>,
    combos: Vec<Vec<u32>>,
}

/// Interned package classes and their combinations.
#[derive(Default)]
struct Interner {
    classes: Vec<Vec<String>>,
    combos: Vec<Vec<u32>>,
    combo_ids: HashMap<Vec<u32>, u32>,
    /// The combination made of one class alone, by class id (the common case, no hashing).
    single: Vec<Option<u32>>,
}

impl Interner {
    fn combo(&mut self, classes: &[u32]) -> u32 {
        if let [c] = classes
            && let Some(Some(id)) = self.single.get(*c as usize)
        {
            return *id;
        }
        if let Some(&id) = self.combo_ids.get(classes) {
            return id;
        }
        let id = self.combos.len() as u32;
        self.combos.push(classes.to_vec());
        self.combo_ids.insert(classes.to_vec(), id);
        if let [c] = classes {
            let c = *c as usize;
            if self.single.len() <= c {
                self.single.resize(c + 1, None);
            }
            self.single[c] = Some(id);
        }
        id
    }
}

/// The application types of every package, as interned classes.
fn package_classes(conn: &Connection, int: &mut Interner) -> rusqlite::Result<HashMap<i64, u32>> {
    let mut types: HashMap<i64, Vec<String>> = HashMap::new();
    if exists(conn, "PKG")? {
        let mut stmt = conn.prepare("SELECT package_id, application_type FROM PKG")?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let Ok(id) = r.get::<_, i64>(0) else { continue };
            let t = text(r.get_ref(1)?).trim().to_string();
            let v = types.entry(id).or_default();
            if !t.is_empty() && !v.contains(&t) {
                v.push(t);
            }
        }
    }
    let mut class_ids: HashMap<Vec<String>, u32> = HashMap::new();
    let mut out = HashMap::with_capacity(types.len());
    for (pkg, mut t) in types {
        t.sort();
        let id = *class_ids.entry(t.clone()).or_insert_with(|| {
            int.classes.push(t);
            (int.classes.len() - 1) as u32
        });
        out.insert(pkg, id);
    }
    // Sorted class ids make a combination's id independent of the packages' order.
    let mut order: Vec<u32> = (0..int.classes.len() as u32).collect();
    order.sort_by(|a, b| int.classes[*a as usize].cmp(&int.classes[*b as usize]));
    let mut rank = vec![0u32; order.len()];
    for (new, old) in order.iter().enumerate() {
        rank[*old as usize] = new as u32;
    }
    int.classes = order
        .iter()
        .map(|&o| int.classes[o as usize].clone())
        .collect();
    for v in out.values_mut() {
        *v = rank[*v as usize];
    }
    Ok(out)
}

/// The query that yields `(sha256, package_id)`: in primary-key order for a minimal database
/// when SQLite can walk the key's index for it (no sort), else in table order.
fn digest_query(conn: &Connection, layout: Layout) -> rusqlite::Result<&'static str> {
    const ORDERED: &str = "SELECT sha256, package_id FROM FILE ORDER BY sha256";
    const PLAIN: &str = "SELECT sha256, package_id FROM FILE";
    if layout == Layout::Full {
        return Ok(PLAIN);
    }
    let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {ORDERED}"))?;
    let plan: Vec<String> = stmt
        .query_map([], |r| r.get::<_, String>(3))?
        .collect::<Result<_, _>>()?;
    Ok(if plan.iter().any(|p| p.contains("TEMP B-TREE")) {
        PLAIN
    } else {
        ORDERED
    })
}

fn build(
    conn: &Connection,
    layout: Layout,
    version: Option<RdsVersion>,
) -> rusqlite::Result<Built> {
    let mut int = Interner::default();
    let pkg_class = package_classes(conn, &mut int)?;
    // Packages without a PKG row: a class of their own with no application type.
    let unknown = match int.classes.iter().position(Vec::is_empty) {
        Some(i) => i as u32,
        None => {
            int.classes.push(Vec::new());
            (int.classes.len() - 1) as u32
        }
    };
    let mut stmt = conn.prepare(digest_query(conn, layout)?)?;
    let mut rows = stmt.query([])?;
    let (mut n_rows, mut skipped) = (0u64, 0u64);
    let mut sha256: Vec<[u8; 32]> = Vec::new();
    let mut combo_of: Vec<u32> = Vec::new();
    let mut cur: Option<[u8; 32]> = None;
    let mut cur_classes: Vec<u32> = Vec::new();
    let mut sorted = true;
    let mut last_pkg: Option<(i64, u32)> = None;
    while let Some(r) = rows.next()? {
        n_rows += 1;
        let d = match r.get_ref(0)? {
            ValueRef::Text(t) => decode_hex::<32>(t),
            _ => None,
        };
        let Some(d) = d else {
            skipped += 1;
            continue;
        };
        let pkg = match r.get_ref(1)? {
            ValueRef::Integer(i) => Some(i),
            _ => None,
        };
        let class = match (pkg, last_pkg) {
            (Some(p), Some((lp, c))) if p == lp => c,
            (Some(p), _) => {
                let c = pkg_class.get(&p).copied().unwrap_or(unknown);
                last_pkg = Some((p, c));
                c
            }
            (None, _) => unknown,
        };
        if !sorted {
            sha256.push(d);
            combo_of.push(int.combo(&[class]));
            continue;
        }
        match cur.as_ref().map(|c| c.cmp(&d)) {
            Some(std::cmp::Ordering::Equal) => {
                if let Err(at) = cur_classes.binary_search(&class) {
                    cur_classes.insert(at, class);
                }
            }
            Some(std::cmp::Ordering::Greater) => {
                // Not in binary order (mixed-case hex, or a view): collect, sort at the end.
                sorted = false;
                if let Some(c) = cur.take() {
                    sha256.push(c);
                    combo_of.push(int.combo(&cur_classes));
                }
                sha256.push(d);
                combo_of.push(int.combo(&[class]));
            }
            _ => {
                if let Some(c) = cur.replace(d) {
                    sha256.push(c);
                    combo_of.push(int.combo(&cur_classes));
                }
                cur_classes.clear();
                cur_classes.push(class);
            }
        }
    }
    if let Some(c) = cur {
        sha256.push(c);
        combo_of.push(int.combo(&cur_classes));
    }
    if !sorted {
        (sha256, combo_of) = sort_merge(sha256, combo_of, &mut int);
    }
    sha256.shrink_to_fit();
    combo_of.shrink_to_fit();
    Ok(Built {
        info: RdsInfo {
            layout,
            version,
            rows: n_rows,
            skipped,
            read_in_order: Some(sorted),
        },
        sha256,
        combo_of,
        classes: int.classes,
        combos: int.combos,
    })
}

/// Sort digests with their combinations and merge the repeats (the union of their classes).
fn sort_merge(
    sha256: Vec<[u8; 32]>,
    combo_of: Vec<u32>,
    int: &mut Interner,
) -> (Vec<[u8; 32]>, Vec<u32>) {
    let mut pairs: Vec<([u8; 32], u32)> = sha256.into_iter().zip(combo_of).collect();
    let prefix = |a: &[u8; 32]| {
        let mut p = [0u8; 8];
        p.copy_from_slice(&a[..8]);
        u64::from_be_bytes(p)
    };
    pairs.sort_unstable_by(|a, b| {
        prefix(&a.0)
            .cmp(&prefix(&b.0))
            .then_with(|| a.0.cmp(&b.0))
            .then(a.1.cmp(&b.1))
    });
    let mut out_d = Vec::with_capacity(pairs.len());
    let mut out_c = Vec::with_capacity(pairs.len());
    let mut i = 0;
    while i < pairs.len() {
        let mut j = i + 1;
        while j < pairs.len() && pairs[j].0 == pairs[i].0 {
            j += 1;
        }
        let combo = if pairs[i..j].iter().all(|p| p.1 == pairs[i].1) {
            pairs[i].1
        } else {
            let mut classes: Vec<u32> = pairs[i..j]
                .iter()
                .flat_map(|p| int.combos[p.1 as usize].clone())
                .collect();
            classes.sort_unstable();
            classes.dedup();
            int.combo(&classes)
        };
        out_d.push(pairs[i].0);
        out_c.push(combo);
        i = j;
    }
    (out_d, out_c)
}

/// Per combination, what a match reports (see [`RdsTable::good`]).
fn good_per_combo(
    classes: &[Vec<String>],
    combos: &[Vec<u32>],
    opts: &RdsOptions,
) -> Vec<Option<Box<str>>> {
    let excluded: Vec<bool> = classes
        .iter()
        .map(|types| types.iter().any(|t| opts.excludes(t)))
        .collect();
    combos
        .iter()
        .map(|combo| {
            let mut types: Vec<&str> = Vec::new();
            let mut any = false;
            for &c in combo {
                let c = c as usize;
                if excluded.get(c).copied().unwrap_or(true) {
                    continue;
                }
                any = true;
                for t in &classes[c] {
                    if !types.contains(&t.as_str()) {
                        types.push(t);
                    }
                }
            }
            types.sort_unstable();
            any.then(|| types.join(", ").into_boxed_str())
        })
        .collect()
}

fn write_index(
    dir: &Path,
    index: &Path,
    meta: &Meta,
    sha256: &[[u8; 32]],
    combos: &[u32],
) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    let json = serde_json::to_vec(meta).map_err(io::Error::other)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(INDEX_TMP.0)
        .suffix(INDEX_TMP.1)
        .tempfile_in(dir)?;
    {
        let mut w = BufWriter::with_capacity(1 << 20, tmp.as_file_mut());
        w.write_all(sha256.as_flattened())?;
        for c in combos {
            w.write_all(&c.to_le_bytes())?;
        }
        w.write_all(&json)?;
        w.write_all(&(json.len() as u64).to_le_bytes())?;
        w.write_all(MAGIC)?;
        w.flush()?;
    }
    // Renamed over the older release's index (same build set and layout).
    tmp.persist(index).map_err(|e| e.error)?;
    Ok(())
}

/// The index at `index` when it is whole and was built from this version of the database;
/// anything else means "rebuild", never an error.
fn open_index(index: &Path, path: &[u8], stamp: Stamp, opts: &RdsOptions) -> Option<RdsTable> {
    let file = File::open(index).ok()?;
    // SAFETY: index files are only ever replaced by rename (see `write_index`), never written in
    // place, so the mapped inode does not change under us.
    let map = unsafe { Mmap::map(&file) }.ok()?;
    let len = map.len();
    let tail = len.checked_sub(16)?;
    if &map[tail + 8..] != MAGIC {
        return None;
    }
    let json_len =
        usize::try_from(u64::from_le_bytes(map[tail..tail + 8].try_into().ok()?)).ok()?;
    let json_at = tail.checked_sub(json_len)?;
    let meta: Meta = serde_json::from_slice(&map[json_at..tail]).ok()?;
    if meta.path != path || meta.stamp != stamp.0 {
        return None;
    }
    let n = usize::try_from(meta.digests).ok()?;
    let sha256 = 0..n.checked_mul(32)?;
    let combos = sha256.end..sha256.end.checked_add(n.checked_mul(4)?)?;
    if combos.end != json_at {
        return None;
    }
    let good = good_per_combo(&meta.classes, &meta.combos, opts);
    let table = RdsTable {
        store: Store::Mapped {
            map,
            sha256,
            combos,
        },
        good,
        info: meta.info,
        from_index: false,
    };
    // Not every combination id is checked here (that would page the whole index in): one
    // that names no combination is "not known good" at lookup (see `RdsTable::lookup`).
    Some(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = include_str!("../../../tests/fixtures/nsrl/minimal.schema.sql");
    const FULL: &str = include_str!("../../../tests/fixtures/nsrl/full.schema.sql");

    fn db(ddl: &str) -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = Connection::open(dir.path().join("rds.db")).expect("open");
        c.execute_batch(ddl).expect("schema");
        (dir, c)
    }

    /// An index written before `read_in_order` was recorded still loads (a rebuild at NSRL
    /// scale is minutes and gigabytes): its order is unknown, not a guess.
    #[test]
    fn an_index_from_before_read_in_order_still_loads() {
        let old = r#"{"path":[47,100],"stamp":[1,2,3,4,5,6],"info":{"layout":"minimal",
            "version":null,"rows":10,"skipped":0},"digests":3,"classes":[],"combos":[]}"#;
        let meta: Meta = serde_json::from_str(old).expect("an older index's metadata");
        assert_eq!(meta.info.read_in_order, None);
        assert_eq!(meta.info.rows, 10);
    }

    /// The minimal layout is read in primary-key order without a sort (SQLite walks the key's
    /// index); a view, or a FILE table without that key, is read as it comes and sorted here.
    #[test]
    fn minimal_layout_reads_in_key_order_without_a_sort() {
        let (_d, c) = db(MINIMAL);
        assert_eq!(inspect(&c).ok(), Some(Layout::Minimal));
        let q = digest_query(&c, Layout::Minimal).expect("plan");
        assert!(q.ends_with("ORDER BY sha256"), "{q}");
        let plan: String = c
            .query_row(&format!("EXPLAIN QUERY PLAN {q}"), [], |r| r.get(3))
            .expect("plan");
        assert!(plan.contains("INDEX"), "{plan}");

        let (_d, c) = db(FULL);
        assert_eq!(inspect(&c).ok(), Some(Layout::Full));
        assert!(!digest_query(&c, Layout::Full).expect("q").contains("ORDER"));

        let (_d, c) = db("CREATE TABLE FILE (sha256, sha1, md5, package_id);");
        assert!(
            !digest_query(&c, Layout::Minimal)
                .expect("q")
                .contains("ORDER")
        );
    }

    #[test]
    fn a_digest_is_good_when_one_of_its_packages_is_not_excluded() {
        let classes = vec![
            vec![],
            vec!["Hacker Tool".to_string()],
            vec!["Operating System".to_string()],
            vec!["Encryption".to_string(), "Utility".to_string()],
        ];
        let combos = vec![vec![0], vec![1], vec![1, 2], vec![3], vec![2, 3]];
        let good = good_per_combo(&classes, &combos, &RdsOptions::default());
        let good: Vec<Option<&str>> = good.iter().map(|g| g.as_deref()).collect();
        assert_eq!(
            good,
            vec![
                Some(""),
                None,
                Some("Operating System"),
                None,
                Some("Operating System")
            ]
        );
        let none = RdsOptions {
            excluded_types: Vec::new(),
        };
        let good = good_per_combo(&classes, &combos, &none);
        assert_eq!(
            good[4].as_deref(),
            Some("Encryption, Operating System, Utility")
        );
    }
}
