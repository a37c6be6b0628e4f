//! NSRL RDSv3 SQLite databases as `--known-good` sets: both of NIST's layouts built at run
//! time (from `tests/fixtures/nsrl/*.schema.sql`) with rows for files the tests write, upper-
//! and lower-case hex, read-only media, excluded application types, damaged and foreign SQLite
//! files, and a newer release replacing the old index.

#[cfg(unix)]
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use hashsweep::digest::{Digest, Digests};
use hashsweep::known::hashset::{HashSet, HashSetError, ListFormat};
use hashsweep::known::rds::{Layout, RdsOptions};
use hashsweep::known::{Local, LocalSets, Match};
use rusqlite::{Connection, params};

use crate::util::*;

const MINIMAL: &str = include_str!("../fixtures/nsrl/minimal.schema.sql");
const FULL: &str = include_str!("../fixtures/nsrl/full.schema.sql");

/// One `FILE` row: the file's digests (hex, in the case the test wants), name and package.
struct Row {
    sha256: String,
    sha1: String,
    md5: String,
    name: String,
    size: i64,
    package: i64,
}

impl Row {
    fn of(path: &Path, package: i64) -> Row {
        Row {
            sha256: coreutils("sha256sum", path).to_uppercase(),
            sha1: coreutils("sha1sum", path).to_uppercase(),
            md5: coreutils("md5sum", path).to_uppercase(),
            name: path.file_name().unwrap().to_string_lossy().into_owned(),
            size: std::fs::metadata(path).unwrap().len() as i64,
            package,
        }
    }

    fn lower(mut self) -> Row {
        self.sha256 = self.sha256.to_lowercase();
        self.sha1 = self.sha1.to_lowercase();
        self.md5 = self.md5.to_lowercase();
        self
    }

    /// A row for a file that is not in any test tree (bulk).
    fn synthetic(i: u64, package: i64) -> Row {
        let h = |n: usize| {
            let mut s = String::new();
            let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xDEAD_BEEF;
            while s.len() < n {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                s.push_str(&format!("{x:016X}"));
            }
            s.truncate(n);
            s
        };
        Row {
            sha256: h(64),
            sha1: h(40),
            md5: h(32),
            name: format!("f{i}.dll"),
            size: i as i64,
            package,
        }
    }
}

/// A package: id, name, application types (one PKG row each).
struct Pkg(i64, &'static str, &'static [&'static str]);

const VERSION: (&str, &str, &str) = ("2025.03.1", "modern", "2025-03-01");

fn build(layout: Layout, db: &Path, version: (&str, &str, &str), pkgs: &[Pkg], rows: &[Row]) {
    let c = Connection::open(db).unwrap();
    // NIST's full schema has a foreign key to PACKAGE_OBJECT(package_id), which is not unique:
    // SQLite refuses inserts under it when foreign keys are enforced (the bundled build's
    // default), so the releases are evidently built without; so are these.
    c.execute_batch("PRAGMA foreign_keys = OFF;").unwrap();
    c.execute_batch(match layout {
        Layout::Minimal => MINIMAL,
        Layout::Full => FULL,
    })
    .unwrap();
    c.execute(
        "INSERT INTO VERSION (version, build_set, build_date, release_date, description) \
         VALUES (?1, ?2, ?3, ?3, 'test fixture: not the official RDS')",
        params![version.0, version.1, version.2],
    )
    .unwrap();
    match layout {
        Layout::Minimal => {
            c.execute("INSERT INTO MFG VALUES (1, 'Test Maker')", [])
                .unwrap();
            c.execute("INSERT INTO OS VALUES (1, 'TestOS', '1', 1)", [])
                .unwrap();
            for Pkg(id, name, types) in pkgs {
                for t in *types {
                    c.execute(
                        "INSERT INTO PKG VALUES (?1, ?2, '1.0', 1, 1, 'English', ?3)",
                        params![id, name, t],
                    )
                    .unwrap();
                }
            }
            for r in rows {
                c.execute(
                    "INSERT INTO FILE VALUES (?1, ?2, ?3, '00000000', ?4, ?5, ?6)",
                    params![r.sha256, r.sha1, r.md5, r.name, r.size, r.package],
                )
                .unwrap();
            }
        }
        Layout::Full => {
            c.execute_batch(
                "INSERT INTO LANGUAGE (language_id, name) VALUES (1, 'English');
                 INSERT INTO MANUFACTURER (manufacturer_id, name) VALUES (1, 'Test Maker');
                 INSERT INTO OPERATING_SYSTEM (operating_system_id, name, version) VALUES (1, 'TestOS', '1');
                 INSERT INTO MANUFACTURER_OPERATING_SYSTEM VALUES (1, 1, 1);",
            )
            .unwrap();
            let mut type_id = 0;
            let mut link = 0;
            for Pkg(id, name, types) in pkgs {
                c.execute(
                    "INSERT INTO APPLICATION (application_id, package_id, name, name_b64, name_coding) \
                     VALUES (?1, ?1, ?2, '', 'utf-8')",
                    params![id, name],
                )
                .unwrap();
                c.execute(
                    "INSERT INTO OPERATING_SYSTEM_APPLICATION VALUES (?1, 1, ?1)",
                    [id],
                )
                .unwrap();
                c.execute(
                    "INSERT INTO MANUFACTURER_APPLICATION VALUES (?1, 1, ?1)",
                    [id],
                )
                .unwrap();
                c.execute("INSERT INTO APPLICATION_LANGUAGE VALUES (?1, 1, ?1)", [id])
                    .unwrap();
                for t in *types {
                    type_id += 1;
                    link += 1;
                    c.execute(
                        "INSERT INTO APPLICATION_TYPE (application_type_id, description) VALUES (?1, ?2)",
                        params![type_id, t],
                    )
                    .unwrap();
                    c.execute(
                        "INSERT INTO APPLICATION_APPLICATION_TYPE VALUES (?1, ?2, ?3)",
                        params![link, id, type_id],
                    )
                    .unwrap();
                }
            }
            for (i, r) in rows.iter().enumerate() {
                let object = i as i64 + 1;
                c.execute(
                    "INSERT INTO PACKAGE_OBJECT VALUES (?1, ?2, ?1)",
                    params![object, r.package],
                )
                .unwrap();
                let (stem, ext) = r.name.rsplit_once('.').unwrap_or((&r.name, ""));
                c.execute(
                    "INSERT INTO METADATA (metadata_id, object_id, key_hash, path, file_name, \
                     extension, bytes, crc32, md5, sha1, sha256) \
                     VALUES (?1, ?1, ?2, '/', ?3, ?4, ?5, '00000000', ?6, ?7, ?8)",
                    params![object, r.sha256, stem, ext, r.size, r.md5, r.sha1, r.sha256],
                )
                .unwrap();
            }
        }
    }
}

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn digests(path: &Path) -> Digests {
    let Some(Digest::Sha256(sha256)) = Digest::from_hex(&coreutils("sha256sum", path)) else {
        panic!("sha256")
    };
    Digests {
        sha256,
        md5: None,
        sha1: None,
    }
}

fn nsrl_type<'a>(set: &'a HashSet, path: &Path) -> Option<&'a str> {
    match set.find(&digests(path)) {
        Some(Match::Nsrl { application_type }) => Some(application_type),
        Some(other) => panic!("an RDS match is not {other:?}"),
        None => None,
    }
}

/// The files of one test: an OS file (upper-case hex), an application file (lower-case hex),
/// a steganography tool's file, and a DLL both in an OS package and in a hacking tool.
struct Fixture {
    tree: Tree,
    os_file: PathBuf,
    app_file: PathBuf,
    stego: PathBuf,
    shared: PathBuf,
    other: PathBuf,
}

const PKGS: &[Pkg] = &[
    Pkg(10, "TestOS", &["Operating System"]),
    Pkg(20, "Editor", &["Text Editor", "Utility"]),
    Pkg(30, "HideIt", &["Steganography"]),
    Pkg(40, "PwnKit", &["Hacker Tool"]),
];

fn fixture() -> Fixture {
    let tree = Tree::new();
    Fixture {
        os_file: tree.file("scan/kernel32.dll", b"an operating system file"),
        app_file: tree.file("scan/editor.exe", b"a text editor"),
        stego: tree.file("scan/hideit.exe", b"hides data in pictures"),
        shared: tree.file("scan/msvcrt.dll", b"a runtime every package ships"),
        other: tree.file("scan/mine.txt", b"not in the RDS"),
        tree,
    }
}

fn rows(f: &Fixture) -> Vec<Row> {
    let mut rows = vec![
        Row::of(&f.os_file, 10),
        Row::of(&f.app_file, 20).lower(),
        Row::of(&f.stego, 30),
        Row::of(&f.shared, 40),
        Row::of(&f.shared, 10),
    ];
    // Half of them in lower case: a minimal database's key order is then not binary order.
    rows.extend((0..300).map(|i| {
        let r = Row::synthetic(i, 10 + 10 * (i as i64 % 4));
        if i % 2 == 0 { r.lower() } else { r }
    }));
    rows
}

/// Every synthetic row's digest, with whether its package (by `Row::synthetic`'s cycle) is
/// known good under the default exclusions (packages 30 and 40 are not).
fn synthetic_digests() -> Vec<(Digests, bool)> {
    (0..300u64)
        .map(|i| {
            let r = Row::synthetic(i, 0);
            let Some(Digest::Sha256(sha256)) = Digest::from_hex(&r.sha256) else {
                panic!("sha256")
            };
            let d = Digests {
                sha256,
                md5: None,
                sha1: None,
            };
            (d, i % 4 < 2)
        })
        .collect()
}

fn check_layout(layout: Layout) {
    let f = fixture();
    let dbdir = Tree::new();
    let db = dbdir.path().join("RDS_2025.03.1_modern_minimal.db");
    build(layout, &db, VERSION, PKGS, &rows(&f));
    let before = listing(dbdir.path());
    let cache = Tree::new();
    let idx = cache.path().join("idx");

    let set = HashSet::load_with(
        std::slice::from_ref(&db),
        Some(&idx),
        &RdsOptions::default(),
    )
    .unwrap();
    let src = &set.sources()[0];
    assert_eq!(src.format, ListFormat::Rds);
    assert!(!src.from_index);
    assert_eq!(src.index_error, None);
    let info = src.rds.as_ref().unwrap();
    assert_eq!(info.layout, layout);
    let v = info.version.as_ref().unwrap();
    assert_eq!(
        (&*v.version, &*v.build_set, &*v.release_date),
        VERSION,
        "the VERSION row"
    );
    assert_eq!(info.rows, 305);
    assert_eq!(
        info.read_in_order,
        Some(false),
        "mixed-case hex is sorted in memory"
    );
    assert_eq!(set.counts(), (0, 0, 304), "one SHA-256 per distinct file");

    for (name, set) in [
        ("built", &set),
        (
            "mapped",
            &HashSet::load_with(
                std::slice::from_ref(&db),
                Some(&idx),
                &RdsOptions::default(),
            )
            .unwrap(),
        ),
    ] {
        assert_eq!(
            nsrl_type(set, &f.os_file),
            Some("Operating System"),
            "{name}"
        );
        assert_eq!(
            nsrl_type(set, &f.app_file),
            Some("Text Editor, Utility"),
            "{name}: lower-case hex, a package of two types"
        );
        assert_eq!(nsrl_type(set, &f.stego), None, "{name}: excluded type");
        assert_eq!(
            nsrl_type(set, &f.shared),
            Some("Operating System"),
            "{name}: an OS package lists it too"
        );
        assert_eq!(nsrl_type(set, &f.other), None, "{name}");
        for (i, (d, good)) in synthetic_digests().iter().enumerate() {
            assert_eq!(set.find(d).is_some(), *good, "{name}: synthetic row {i}");
        }
    }
    let again = HashSet::load_with(
        std::slice::from_ref(&db),
        Some(&idx),
        &RdsOptions::default(),
    )
    .unwrap();
    assert!(again.sources()[0].from_index, "later loads map the index");
    assert_eq!(again.counts(), (0, 0, 304));
    assert_eq!(listing(&idx).len(), 1, "{:?}", listing(&idx));
    assert_eq!(
        listing(dbdir.path()),
        before,
        "nothing written beside the database"
    );

    // The exclusion list is applied when the index is read: the same index, other answers.
    let strict = RdsOptions::with_extra(&["operating system".to_string()]);
    let s = HashSet::load_with(std::slice::from_ref(&db), Some(&idx), &strict).unwrap();
    assert!(s.sources()[0].from_index);
    assert_eq!(nsrl_type(&s, &f.os_file), None);
    assert_eq!(
        nsrl_type(&s, &f.shared),
        None,
        "only excluded packages list it now"
    );
    assert_eq!(nsrl_type(&s, &f.app_file), Some("Text Editor, Utility"));

    // LocalSets: known good by the RDS, and not sent.
    let local = LocalSets {
        good: again,
        bad: HashSet::default(),
        also_lookup: false,
    };
    let l = local.classify(&digests(&f.os_file));
    assert!(matches!(l, Some(Local::Good(Match::Nsrl { .. }))), "{l:?}");
    assert!(!local.wants_lookup(l));
    assert!(local.wants_lookup(local.classify(&digests(&f.stego))));
}

#[test]
fn minimal_layout_upper_and_lower_case() {
    check_layout(Layout::Minimal);
}

#[test]
fn full_layout_through_its_views() {
    check_layout(Layout::Full);
}

/// NIST's own form: every digit upper case, rows stored in no particular order. The minimal
/// layout's key order is then binary order, so the digests are merged as they come, with no
/// sort: a digest held by an OS package and a hacking tool alike is known good (one package
/// that is not excluded is enough, and only its type is reported), one held by the tool alone
/// is looked up. The same answers from the build and from the mapped index.
#[test]
fn nist_form_upper_case_is_read_in_key_order_without_a_sort() {
    let f = fixture();
    let tool = f
        .tree
        .file("scan/pwnkit.exe", b"a hacking tool and nothing else");
    let mut rows = vec![
        Row::of(&f.os_file, 10),
        Row::of(&f.app_file, 20),
        Row::of(&f.stego, 30),
        Row::of(&f.shared, 40),
        Row::of(&tool, 40),
        Row::of(&f.shared, 10),
    ];
    rows.extend((0..300).map(|i| Row::synthetic(i, 10 + 10 * (i as i64 % 4))));
    // Inserted in SHA-1 order: the table's own order is not the key's.
    rows.sort_by(|a, b| a.sha1.cmp(&b.sha1));
    assert!(rows.iter().all(|r| r.sha256 == r.sha256.to_uppercase()));
    assert!(!rows.is_sorted_by(|a, b| a.sha256 <= b.sha256), "shuffled");
    let dbdir = Tree::new();
    let db = dbdir.path().join("RDS_2025.03.1_modern_minimal.db");
    build(Layout::Minimal, &db, VERSION, PKGS, &rows);
    let cache = Tree::new();
    let index = || -> Vec<String> {
        listing(cache.path())
            .into_iter()
            .filter(|n| n.starts_with("hashset-rds-"))
            .collect()
    };
    let mut built = None;
    for round in ["build", "mapped"] {
        let mock = MockServer::start(Some(KEY)).unwrap();
        let out = run(scan_cmd(&mock, &f.tree.path().join("scan"))
            // Unknown answers are not kept: the second round asks again.
            .args(["--format", "json", "--unknown-ttl", "0s", "--cache"])
            .arg(cache.path().join("cache.sqlite"))
            .env_remove("HASHSWEEP_NO_CACHE")
            .arg("--known-good")
            .arg(&db));
        assert_eq!(code(&out), 0, "{round}: {}", stderr(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let recs = v["records"].as_array().unwrap();
        for (name, application_type) in [
            ("kernel32.dll", "Operating System"),
            ("editor.exe", "Text Editor, Utility"),
            ("msvcrt.dll", "Operating System"),
        ] {
            let r = rec(recs, name);
            assert_eq!(r["verdict"], "known_good", "{round}: {r}");
            assert_eq!(r["source"], "nsrl", "{round}: {r}");
            assert_eq!(r["application_type"], application_type, "{round}: {r}");
        }
        for name in ["pwnkit.exe", "hideit.exe", "mine.txt"] {
            let r = rec(recs, name);
            assert_eq!(r["verdict"], "unknown", "{round}: looked up: {r}");
            assert!(r.get("source").is_none(), "{round}: {r}");
        }
        let mut asked: Vec<String> = mock.requests().into_iter().flat_map(|r| r.hashes).collect();
        asked.sort();
        let mut want: Vec<String> = [&tool, &f.stego, &f.other]
            .iter()
            .map(|p| coreutils("sha256sum", p).to_uppercase())
            .collect();
        want.sort();
        assert_eq!(asked, want, "{round}: the tool-only file is asked about");
        let rds = &v["summary"]["known_sets"][0]["rds"];
        assert_eq!(rds["rows"], 306, "{round}");
        assert_eq!(rds["read_in_order"], true, "{round}: no sort: {rds}");
        assert_eq!(v["summary"]["known_sets"][0]["digests"], 305, "{round}");

        // The second round maps the index the first one wrote (the same file, not rewritten).
        // Not under Wine, where the database's stamp moves once read (see the README).
        if cfg!(unix) {
            let idx = index();
            assert_eq!(idx.len(), 1, "{round}: {idx:?}");
            let written = std::fs::metadata(cache.path().join(&idx[0]))
                .and_then(|m| m.modified())
                .unwrap();
            match round {
                "build" => built = Some(written),
                _ => assert_eq!(Some(written), built, "the index was not rebuilt"),
            }
        }
    }
    let set = HashSet::load(std::slice::from_ref(&db), Some(cache.path())).unwrap();
    assert!(set.sources()[0].from_index || !cfg!(unix));
    assert_eq!(
        set.sources()[0].rds.as_ref().unwrap().read_in_order,
        Some(true)
    );
    for (d, good) in synthetic_digests() {
        assert_eq!(set.find(&d).is_some(), good);
    }
}

/// Rows whose `sha256` is not 64 hex digits are counted and said, like a hash list's bad
/// lines, on the run that builds the index and on those that map it.
#[test]
fn rows_without_a_valid_sha256_are_counted_and_said() {
    let f = fixture();
    let mut rows = rows(&f);
    let mut bad = Row::synthetic(1000, 10);
    bad.sha256 = "NOT-A-DIGEST".to_string();
    rows.push(bad);
    let mut short = Row::synthetic(1001, 10);
    short.sha256.truncate(63);
    rows.push(short);
    let dbdir = Tree::new();
    let db = dbdir.path().join("rds.db");
    build(Layout::Minimal, &db, VERSION, PKGS, &rows);
    let cache = Tree::new();
    for round in ["build", "mapped"] {
        let out = run(cmd()
            .args(["scan", "--offline", "--format", "ndjson", "--cache"])
            .arg(cache.path().join("cache.sqlite"))
            .env_remove("HASHSWEEP_NO_CACHE")
            .arg("--known-good")
            .arg(&db)
            .arg(f.tree.path().join("scan")));
        assert_eq!(code(&out), 0, "{round}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains(&format!(
                "{}: skipped 2 row(s) with no valid SHA-256",
                db.display()
            )),
            "{round}: {err}"
        );
        assert_eq!(rec(&ndjson(&out), "kernel32.dll")["verdict"], "known_good");
    }
    let set = HashSet::load(std::slice::from_ref(&db), Some(cache.path())).unwrap();
    // Not under Wine, where the database's stamp moves once read (see the README).
    assert!(set.sources()[0].from_index || !cfg!(unix));
    assert_eq!(set.skipped_lines(), 2);
    assert_eq!(set.sources()[0].rds.as_ref().unwrap().skipped, 2);
}

#[test]
fn without_an_index_dir_the_set_is_read_each_time() {
    let f = fixture();
    let db = f.tree.path().join("rds.db");
    build(Layout::Minimal, &db, VERSION, PKGS, &rows(&f));
    let set = HashSet::load(std::slice::from_ref(&db), None).unwrap();
    assert!(!set.sources()[0].from_index);
    assert_eq!(nsrl_type(&set, &f.os_file), Some("Operating System"));
    assert_eq!(nsrl_type(&set, &f.stego), None);
}

// Unix only: file modes and users.
#[cfg(unix)]
/// The database on read-only media: mode 0444 in a directory nobody may write. As root the
/// kernel would let us write there anyway, so the scan runs as `nobody`, and the directory's
/// listing is compared before and after (no journal, WAL, shm or index file beside it).
#[test]
fn read_only_media_nothing_written_beside_the_database() {
    let f = fixture();
    for dir in [f.tree.path(), &f.tree.path().join("scan")] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    for p in [&f.os_file, &f.app_file, &f.stego, &f.shared, &f.other] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let media = Tree::new();
    let db = media.path().join("RDS_2025.03.1_modern_minimal.db");
    build(Layout::Minimal, &db, VERSION, PKGS, &rows(&f));
    // In WAL mode a reader that is not immutable needs -shm and -wal files beside the database
    // and fails where it cannot create them: the case `immutable=1` is there for.
    Connection::open(&db)
        .unwrap()
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0))
        .unwrap();
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o444)).unwrap();
    std::fs::set_permissions(media.path(), std::fs::Permissions::from_mode(0o555)).unwrap();
    let before = listing(media.path());
    let cache = Tree::new();
    std::fs::set_permissions(cache.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let cache_db = cache.path().join("cache.sqlite");

    for round in ["first", "second"] {
        let out = run(cmd_unprivileged()
            .args(["scan", "--offline", "--format", "ndjson", "--cache"])
            .arg(&cache_db)
            .env_remove("HASHSWEEP_NO_CACHE")
            .arg("--known-good")
            .arg(&db)
            .arg(f.tree.path().join("scan")));
        assert_eq!(code(&out), 0, "{round}: {}", stderr(&out));
        let recs = ndjson(&out);
        let os = rec(&recs, "kernel32.dll");
        assert_eq!(os["verdict"], "known_good", "{round}");
        assert_eq!(os["source"], "nsrl", "{round}");
        assert_eq!(os["application_type"], "Operating System", "{round}");
        assert_eq!(
            listing(media.path()),
            before,
            "{round}: nothing beside the database"
        );
    }
    let idx: Vec<String> = listing(cache.path())
        .into_iter()
        .filter(|n| n.starts_with("hashset-rds-"))
        .collect();
    assert_eq!(idx.len(), 1, "the index is in the cache directory: {idx:?}");
    std::fs::set_permissions(media.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn excluded_types_are_looked_up_with_source_and_type_in_the_report() {
    let f = fixture();
    let db = Tree::new();
    let db = db.path().join("rds.db");
    build(Layout::Minimal, &db, VERSION, PKGS, &rows(&f));
    let root = f.tree.path().join("scan");

    let mock = MockServer::start(Some(KEY)).unwrap();
    let out = run(scan_cmd(&mock, &root)
        .args(["--format", "json", "--known-good"])
        .arg(&db));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let recs = v["records"].as_array().unwrap();
    let os = rec(recs, "kernel32.dll");
    assert_eq!(os["verdict"], "known_good");
    assert_eq!(os["source"], "nsrl");
    assert_eq!(os["application_type"], "Operating System");
    assert_eq!(
        rec(recs, "editor.exe")["application_type"],
        "Text Editor, Utility"
    );
    let stego = rec(recs, "hideit.exe");
    assert_eq!(stego["verdict"], "unknown", "looked up as usual: {stego}");
    assert!(stego.get("source").is_none() && stego.get("application_type").is_none());
    let mut asked: Vec<String> = mock.requests().into_iter().flat_map(|r| r.hashes).collect();
    asked.sort();
    let mut want = vec![
        coreutils("sha256sum", &f.stego).to_uppercase(),
        coreutils("sha256sum", &f.other).to_uppercase(),
    ];
    want.sort();
    assert_eq!(asked, want, "the excluded tool and the unlisted file only");

    // The summary names the set with its VERSION row.
    let sets = &v["summary"]["known_sets"];
    assert_eq!(sets[0]["role"], "known_good");
    assert_eq!(sets[0]["format"], "nsrl_rds");
    assert_eq!(sets[0]["rds"]["layout"], "minimal");
    assert_eq!(sets[0]["rds"]["version"]["version"], VERSION.0);
    assert_eq!(sets[0]["rds"]["version"]["build_set"], VERSION.1);
    assert_eq!(sets[0]["rds"]["version"]["release_date"], VERSION.2);
    let err = stderr(&out);
    assert!(
        err.contains("known-good: ")
            && err.contains("NSRL RDS 2025.03.1 modern, released 2025-03-01"),
        "{err}"
    );
    // The exclusion list in effect is recorded with the options that change the results.
    let defaults = serde_json::json!(hashsweep::known::rds::DEFAULT_EXCLUDED_TYPES);
    assert_eq!(
        v["summary"]["run"]["options"]["nsrl-exclude-type"], defaults,
        "{}",
        v["summary"]["run"]
    );
    assert_eq!(
        defaults,
        serde_json::json!([
            "Hacker Tool",
            "Steganography",
            "Encryption",
            "Keyboard Logger"
        ]),
        "the README's default list"
    );

    // --nsrl-exclude-type adds to the list: the OS packages are asked about too.
    let mock = MockServer::start(Some(KEY)).unwrap();
    let out = run(scan_cmd(&mock, &root)
        .args(["--format", "json", "--known-good"])
        .arg(&db)
        .args(["--nsrl-exclude-type", "Operating System"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["summary"]["run"]["options"]["nsrl-exclude-type"],
        serde_json::json!([
            "Hacker Tool",
            "Steganography",
            "Encryption",
            "Keyboard Logger",
            "Operating System"
        ])
    );
    let recs = v["records"].as_array().unwrap();
    assert_eq!(rec(recs, "kernel32.dll")["verdict"], "unknown");
    assert_eq!(
        rec(recs, "msvcrt.dll")["verdict"],
        "unknown",
        "OS and hacker tool only"
    );
    assert_eq!(rec(recs, "editor.exe")["verdict"], "known_good");
    assert_eq!(rec(recs, "hideit.exe")["verdict"], "unknown");
    let asked: usize = mock.requests().iter().map(|r| r.hashes.len()).sum();
    assert_eq!(asked, 4);

    // CSV has the column when an RDS set is loaded.
    let out = run(cmd()
        .args(["scan", "--offline", "--format", "csv", "--known-good"])
        .arg(&db)
        .arg(&root));
    let csv = String::from_utf8(out.stdout).unwrap();
    assert!(
        csv.lines()
            .next()
            .unwrap()
            .ends_with(",source,application_type,hosts,answered_at,stale,list,list_entry"),
        "{csv}"
    );
}

// Unix only: FIFOs.
#[cfg(unix)]
/// A list given through a FIFO (`mkfifo l; grep ... > l & hashsweep scan --known-bad l`) is
/// opened once: the check that refuses an RDS database as --known-bad only stats it. An open
/// closed unread lets an eager writer write and go, its line lost with the pipe, and the
/// load's own open then waits for a writer for ever.
#[test]
fn a_known_bad_list_through_a_fifo_is_opened_once() {
    use std::io::Write;
    let t = Tree::new();
    let bad = t.file("scan/bad.bin", b"a known-bad file");
    std::fs::create_dir_all(t.path().join("lists")).unwrap();
    let fifo = t.fifo("lists/bad.fifo");
    let line = format!("{}\n", coreutils("sha256sum", &bad));
    let writer = std::thread::spawn({
        let fifo = fifo.clone();
        move || {
            let mut w = std::fs::OpenOptions::new().write(true).open(&fifo)?;
            w.write_all(line.as_bytes())
        }
    });
    let out = run_with_timeout(
        cmd()
            .args(["scan", "--offline", "--format", "ndjson", "--known-bad"])
            .arg(&fifo)
            .arg(t.path().join("scan")),
        std::time::Duration::from_secs(20),
    );
    writer
        .join()
        .unwrap()
        .expect("the list was written to a reader");
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let r = rec(&ndjson(&out), "bad.bin").clone();
    assert_eq!(r["verdict"], "infected", "{r}");
    assert_eq!(r["source"], "local", "{r}");
}

/// The HTML report's header names the known sets as the summary does, the RDS with its
/// `VERSION` row, escaped like every other name on the page.
#[test]
fn the_html_report_names_the_rds_release() {
    let f = fixture();
    let lists = Tree::new();
    let db = lists.path().join("nsrl & more").join("rds.db");
    std::fs::create_dir_all(db.parent().unwrap()).unwrap();
    build(Layout::Minimal, &db, VERSION, PKGS, &rows(&f));
    let list = lists.file(
        "good.sha256",
        format!("{}\n", coreutils("sha256sum", &f.other)).as_bytes(),
    );
    let out = run(cmd()
        .args(["scan", "--offline", "--format", "html", "--known-good"])
        .arg(&db)
        .arg("--known-good")
        .arg(&list)
        .arg(f.tree.path().join("scan")));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let page = String::from_utf8(out.stdout).unwrap();
    let header = &page[..page.find("</header>").expect("a header")];
    let db_name = db.display().to_string().replace('&', "&amp;");
    assert!(
        header.contains(&format!(
            "<dt>known sets</dt><dd id=\"known-sets\">known-good: {db_name} (NSRL RDS 2025.03.1 \
             modern, released 2025-03-01, minimal layout, 304 SHA-256, 0 days old)<br>known-good: \
             {} (list, 1 digest, 0 days old)</dd>",
            list.display()
        )),
        "{header}"
    );
}

#[test]
fn damaged_or_foreign_sqlite_is_a_clear_error_naming_it() {
    let t = Tree::new();
    t.file("scan/a.txt", b"a");
    // The header and then garbage: SQLite cannot read it.
    let mut bytes = b"SQLite format 3\0".to_vec();
    bytes.extend(std::iter::repeat_n(0xA5u8, 4096));
    let damaged = t.file("lists/damaged.db", &bytes);
    // A real SQLite database of another program.
    let foreign = t.path().join("lists/notes.sqlite");
    Connection::open(&foreign)
        .unwrap()
        .execute_batch(
            "CREATE TABLE notes (id INTEGER, body TEXT); INSERT INTO notes VALUES (1, 'x');",
        )
        .unwrap();
    // A FILE table without the hash columns.
    let files = t.path().join("lists/files.db");
    Connection::open(&files)
        .unwrap()
        .execute_batch("CREATE TABLE FILE (name TEXT, size INTEGER);")
        .unwrap();

    for (db, words) in [
        (&damaged, "NSRL RDS database"),
        (
            &foreign,
            "not an NSRL RDSv3 one: it has no FILE table or view",
        ),
        (
            &files,
            "its FILE table has no sha256, sha1, md5, package_id column",
        ),
    ] {
        let out = run(cmd()
            .args(["scan", "--offline", "--known-good"])
            .arg(db)
            .arg(t.path().join("scan")));
        assert_eq!(code(&out), 2, "{}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains(&db.display().to_string()),
            "names the file: {err}"
        );
        assert!(err.contains(words), "{err}");
        assert!(out.stdout.is_empty(), "no report");
    }
    // An RDS database is not a list of bad files, and is refused before it is read: no index
    // is written beside the cache (at NSRL scale minutes and gigabytes for nothing).
    let rds = t.path().join("lists/rds.db");
    build(
        Layout::Minimal,
        &rds,
        VERSION,
        PKGS,
        &[Row::synthetic(1, 10)],
    );
    let cache = Tree::new();
    let out = run(cmd()
        .args(["scan", "--offline", "--cache"])
        .arg(cache.path().join("cache.sqlite"))
        .env_remove("HASHSWEEP_NO_CACHE")
        .arg("--known-bad")
        .arg(&rds)
        .arg(t.path().join("scan")));
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "{} is an NSRL RDS database: it lists known software",
            rds.display()
        )) && err.contains("give it as --known-good"),
        "{err}"
    );
    let written: Vec<String> = listing(cache.path())
        .into_iter()
        .filter(|n| n.starts_with("hashset-rds-"))
        .collect();
    assert!(written.is_empty(), "refused before loading: {written:?}");
    // As --known-good the same database does get its index there (the check above can fail).
    let out = run(cmd()
        .args(["scan", "--offline", "--cache"])
        .arg(cache.path().join("cache.sqlite"))
        .env_remove("HASHSWEEP_NO_CACHE")
        .arg("--known-good")
        .arg(&rds)
        .arg(t.path().join("scan")));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        listing(cache.path())
            .iter()
            .any(|n| n.starts_with("hashset-rds-")),
        "{:?}",
        listing(cache.path())
    );

    let err = HashSet::load(std::slice::from_ref(&damaged), None).unwrap_err();
    assert!(matches!(err, HashSetError::Rds { .. }), "{err:?}");
    assert!(
        std::error::Error::source(&err).is_some(),
        "keeps SQLite's cause"
    );
}

// Unix only for now: under Wine the database's stamp moves once SQLite has read it, so the index is rebuilt (not yet understood).
#[cfg(unix)]
/// A newer release of the same set replaces the old index (its name comes from the build set
/// and layout); a delta applied to the same file (new VERSION row) rebuilds it.
#[test]
fn a_newer_release_replaces_the_old_index() {
    let f = fixture();
    let dbs = Tree::new();
    let cache = Tree::new();
    let idx = cache.path().join("idx");
    let old = dbs.path().join("RDS_2025.03.1_modern_minimal.db");
    build(Layout::Minimal, &old, VERSION, PKGS, &rows(&f)[..1]);
    let s = HashSet::load(std::slice::from_ref(&old), Some(&idx)).unwrap();
    assert_eq!(nsrl_type(&s, &f.os_file), Some("Operating System"));
    assert_eq!(nsrl_type(&s, &f.app_file), None);
    let first = listing(&idx);
    assert_eq!(first.len(), 1);

    let new = dbs.path().join("RDS_2025.06.1_modern_minimal.db");
    build(
        Layout::Minimal,
        &new,
        ("2025.06.1", "modern", "2025-06-01"),
        PKGS,
        &rows(&f)[..2],
    );
    let s = HashSet::load(std::slice::from_ref(&new), Some(&idx)).unwrap();
    assert!(!s.sources()[0].from_index);
    assert_eq!(nsrl_type(&s, &f.app_file), Some("Text Editor, Utility"));
    assert_eq!(listing(&idx), first, "the same slot, replaced");
    let s = HashSet::load(std::slice::from_ref(&new), Some(&idx)).unwrap();
    assert!(s.sources()[0].from_index);

    // A delta applied in place: a row and a VERSION row added.
    let c = Connection::open(&new).unwrap();
    let r = Row::of(&f.other, 20);
    c.execute(
        "INSERT INTO FILE VALUES (?1, ?2, ?3, '00000000', ?4, ?5, ?6)",
        params![r.sha256, r.sha1, r.md5, r.name, r.size, r.package],
    )
    .unwrap();
    c.execute(
        "INSERT INTO VERSION VALUES ('2025.09.1', 'modern', '2025-09-01', '2025-09-01', 'delta')",
        [],
    )
    .unwrap();
    drop(c);
    let s = HashSet::load(std::slice::from_ref(&new), Some(&idx)).unwrap();
    assert!(!s.sources()[0].from_index);
    assert_eq!(nsrl_type(&s, &f.other), Some("Text Editor, Utility"));
    let v = s.sources()[0].rds.clone().unwrap().version.unwrap();
    assert_eq!(v.version, "2025.09.1");
    assert_eq!(listing(&idx), first);
}

/// Every known set says its age, an RDS database and a plain hash list as a Bloom filter or an
/// IOC list does, and one older than 30 days gets the same warning.
#[test]
fn an_old_rds_or_hash_list_is_named_with_its_age_and_warned_about() {
    let f = fixture();
    let lists = Tree::new();
    let db = lists.path().join("rds.db");
    build(Layout::Minimal, &db, VERSION, PKGS, &rows(&f));
    let line = format!("{}\n", coreutils("sha256sum", &f.other));
    let list = lists.file("good.sha256", line.as_bytes());
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(45 * 86_400 + 600);
    for p in [&db, &list] {
        let file = std::fs::File::options().write(true).open(p).unwrap();
        file.set_modified(old).unwrap();
    }
    let out = run(cmd()
        .args(["scan", "--offline", "--format", "json", "--known-good"])
        .arg(&db)
        .arg("--known-good")
        .arg(&list)
        .arg(f.tree.path().join("scan")));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let sets = v["summary"]["known_sets"].as_array().unwrap();
    assert!(sets.iter().all(|s| s["age_days"] == 45), "{sets:?}");
    let err = stderr(&out);
    for p in [&db, &list] {
        let warning = format!(
            "warning: {} is 45 days old (more than 30): update it",
            p.display()
        );
        assert!(err.contains(&warning), "{err}");
    }
    assert!(err.contains("304 SHA-256, 45 days old)"), "{err}");
    assert!(err.contains("(list, 1 digest, 45 days old)"), "{err}");
}
