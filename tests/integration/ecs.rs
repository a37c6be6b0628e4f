//! `scan --format ecs`: Elastic Common Schema documents, one per line, checked field by field
//! against the files on disk and the mock's answers.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use serde_json::Value;

use crate::util::*;

/// The machine's host name, read independently of hashsweep.
fn gethostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is writable for its whole length; gethostname writes at most that.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    assert_eq!(rc, 0, "gethostname");
    let len = buf.iter().position(|&b| b == 0).unwrap();
    String::from_utf8_lossy(&buf[..len]).into_owned()
}

/// A file's digest from coreutils, fed on stdin (so any file name works).
fn sum(tool: &str, path: &Path) -> String {
    let out = std::process::Command::new(tool)
        .stdin(std::fs::File::open(path).unwrap())
        .output()
        .expect("coreutils present");
    String::from_utf8(out.stdout).unwrap()[..]
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

fn rfc3339(v: &Value, what: &str) -> SystemTime {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {v}"));
    assert!(s.ends_with('Z'), "{what} is not UTC: {s}");
    humantime::parse_rfc3339(s).unwrap_or_else(|e| panic!("{what} {s:?}: {e}"))
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap_or_else(|| panic!("not a string: {s}")))
        .collect()
}

/// The document whose `file.path` ends with `suffix`.
fn doc<'a>(docs: &'a [Value], suffix: &str) -> &'a Value {
    docs.iter()
        .find(|d| {
            d["file"]["path"]
                .as_str()
                .is_some_and(|p| p.ends_with(suffix))
        })
        .unwrap_or_else(|| panic!("no document for {suffix} in {docs:#?}"))
}

fn has_null(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.iter().any(has_null),
        Value::Object(o) => o.values().any(has_null),
        _ => false,
    }
}

/// Fields every document has, whatever the file.
fn check_common(d: &Value, host: &str, started: SystemTime, ended: SystemTime) {
    let ts = rfc3339(&d["@timestamp"], "@timestamp");
    // Written with millisecond precision, so it may read up to 1 ms before the start.
    assert!(
        ts + Duration::from_millis(1) >= started && ts <= ended,
        "@timestamp {ts:?} outside the run: {d}"
    );
    assert_eq!(d["ecs"]["version"], "8.11.0", "{d}");
    assert_eq!(d["event"]["module"], "hashsweep", "{d}");
    assert_eq!(d["event"]["dataset"], "hashsweep.scan", "{d}");
    assert!(strings(&d["event"]["category"]).contains(&"file"), "{d}");
    assert_eq!(d["host"]["name"], host, "{d}");
    assert!(d["file"]["path"].is_string(), "{d}");
    assert!(d["hashsweep"].is_object(), "{d}");
    assert!(
        d.as_object()
            .unwrap()
            .keys()
            .all(|k| k == "@timestamp" || !k.contains('.')),
        "nested objects, not dotted keys: {d}"
    );
    assert!(!has_null(d), "absent, not null: {d}");
}

/// The `file.*` fields of a regular file, against the file itself.
fn check_file(d: &Value, path: &Path) {
    let meta = std::fs::symlink_metadata(path).unwrap();
    let f = &d["file"];
    assert_eq!(f["path"], path.to_string_lossy().as_ref(), "{d}");
    assert_eq!(
        f["name"],
        path.file_name().unwrap().to_string_lossy().as_ref(),
        "{d}"
    );
    assert_eq!(
        f["directory"],
        path.parent().unwrap().to_string_lossy().as_ref(),
        "{d}"
    );
    assert_eq!(f["size"].as_u64(), Some(meta.len()), "{d}");
    assert_eq!(f["type"], "file", "{d}");
    // ECS maps file.inode as a keyword: a string.
    assert_eq!(f["inode"], meta.ino().to_string(), "{d}");
    let mtime = rfc3339(&f["mtime"], "file.mtime");
    let real = meta.modified().unwrap();
    assert!(
        mtime <= real && real - Duration::from_millis(1) < mtime,
        "file.mtime {mtime:?} is not the file's {real:?} (to the millisecond): {d}"
    );
    assert_eq!(
        f["mtime"],
        humantime::format_rfc3339_millis(real).to_string(),
        "{d}"
    );
    assert_eq!(f["hash"]["sha256"], sum("sha256sum", path), "{d}");
    assert_eq!(f["hash"]["md5"], sum("md5sum", path), "{d}");
    assert_eq!(f["hash"]["sha1"], sum("sha1sum", path), "{d}");
}

/// A clean or unknown answer is no indicator match: no `threat`, the service's answer under
/// `hashsweep.*` only.
fn check_no_enrichment(d: &Value) {
    assert!(d.get("threat").is_none(), "not a detection: {d}");
    assert!(d["hashsweep"]["scan_result_i"].is_i64(), "{d}");
    assert!(d["hashsweep"]["total_detected_avs"].is_i64(), "{d}");
}

/// `threat.enrichments` of a detection: one enrichment matching its SHA-256.
fn check_enrichment(d: &Value, scanner_stats: Option<i64>) {
    let e = d["threat"]["enrichments"]
        .as_array()
        .unwrap_or_else(|| panic!("no threat.enrichments: {d}"));
    assert_eq!(e.len(), 1, "{d}");
    let sha = d["file"]["hash"]["sha256"].as_str().unwrap();
    assert_eq!(e[0]["matched"]["atomic"], sha, "{d}");
    assert_eq!(e[0]["matched"]["field"], "file.hash.sha256", "{d}");
    assert_eq!(e[0]["matched"]["type"], "indicator_match_rule", "{d}");
    assert_eq!(e[0]["indicator"]["provider"], "metadefender", "{d}");
    assert_eq!(e[0]["indicator"]["type"], "file", "{d}");
    assert_eq!(e[0]["indicator"]["file"]["hash"]["sha256"], sha, "{d}");
    assert_eq!(
        e[0]["indicator"]["scanner_stats"].as_i64(),
        scanner_stats,
        "{d}"
    );
    assert!(d["hashsweep"]["scan_result_i"].is_i64(), "{d}");
    assert!(d["hashsweep"]["total_detected_avs"].is_i64(), "{d}");
}

#[test]
fn ecs_documents_carry_every_field_for_each_kind_of_file() {
    let mock = MockServer::start(Some(KEY)).unwrap();
    let t = Tree::new();
    let eicar = t.file("docs/eicar.com", EICAR);
    let clean = t.file("docs/readme.txt", b"hello\n");
    let unknown = t.file("bin/tool", &random_bytes(7, 5000));
    let good = t.file("lib/libc.so", b"known good library");
    let odd = t.file_bytes(b"odd/caf\xe9.txt", b"odd name");
    let fifo = t.fifo("pipe");
    mock.set(&sum("sha256sum", &clean), 0, 0);
    mock.set(&sum("sha256sum", &unknown), 5, -1);
    mock.set(&sum("sha256sum", &odd), 0, 0);
    let lists = Tree::new();
    let good_list = lists.file(
        "good.sha256",
        format!("{}  libc.so\n", sum("sha256sum", &good)).as_bytes(),
    );

    let started = SystemTime::now();
    let out = run(scan_cmd(&mock, t.path())
        .args([
            "--format",
            "ecs",
            "--md5",
            "--sha1",
            "--host-name",
            "testhost",
        ])
        .arg("--known-good")
        .arg(&good_list));
    let ended = SystemTime::now();
    assert_eq!(code(&out), 1, "one detection: {}", stderr(&out));
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    assert!(
        !text.contains("\"summary\""),
        "no summary on stdout: {text}"
    );
    let docs = ndjson(&out);
    assert_eq!(docs.len(), 6, "one document per path: {docs:#?}");
    for d in &docs {
        check_common(d, "testhost", started, ended);
    }

    for p in [&eicar, &clean, &unknown, &good, &odd] {
        check_file(doc(&docs, &p.to_string_lossy()), p);
    }

    let e = doc(&docs, "eicar.com");
    assert_eq!(e["event"]["kind"], "alert");
    assert_eq!(strings(&e["event"]["category"]), ["malware", "file"]);
    assert_eq!(strings(&e["event"]["type"]), ["info"]);
    assert_eq!(e["file"]["hash"]["sha256"], EICAR_SHA256);
    assert_eq!(e["hashsweep"]["verdict"], "infected");
    assert_eq!(e["hashsweep"]["scan_result_i"], 1);
    assert!(e["hashsweep"]["data_id"].is_string(), "{e}");
    check_enrichment(e, Some(31));

    let c = doc(&docs, "readme.txt");
    assert_eq!(c["hashsweep"]["verdict"], "clean");
    check_no_enrichment(c);
    let u = doc(&docs, "bin/tool");
    assert_eq!(u["hashsweep"]["verdict"], "unknown");
    assert_eq!(u["hashsweep"]["total_detected_avs"], -1);
    check_no_enrichment(u);

    let o = doc(&docs, "caf\u{fffd}.txt");
    assert_eq!(o["file"]["name"], "caf\u{fffd}.txt");
    let raw = base64::engine::general_purpose::STANDARD
        .decode(o["hashsweep"]["path_bytes"].as_str().expect("path_bytes"))
        .unwrap();
    assert_eq!(raw, std::os::unix::ffi::OsStrExt::as_bytes(odd.as_os_str()));
    check_no_enrichment(o);

    let g = doc(&docs, "libc.so");
    assert_eq!(g["hashsweep"]["verdict"], "known_good");
    assert!(g.get("threat").is_none(), "not looked up: {g}");

    let f = doc(&docs, &fifo.to_string_lossy());
    assert_eq!(f["hashsweep"]["verdict"], "skipped");
    assert!(f["hashsweep"]["note"].is_string(), "{f}");
    assert!(f.get("threat").is_none(), "{f}");
    assert!(f["file"].get("hash").is_none(), "{f}");

    // Exactly the detection is an alert, and the only document with a threat.
    for d in &docs {
        let infected = d["hashsweep"]["verdict"] == "infected";
        assert_eq!(d["event"]["kind"] == "alert", infected, "{d}");
        assert_eq!(
            strings(&d["event"]["category"]).contains(&"malware"),
            infected,
            "{d}"
        );
        assert_eq!(d.get("threat").is_some(), infected, "{d}");
    }
    let asked: Vec<String> = mock.requests().into_iter().flat_map(|r| r.hashes).collect();
    assert_eq!(asked.len(), 4, "known-good not sent: {asked:?}");
}

#[test]
fn ecs_host_name_defaults_to_the_machines() {
    let t = Tree::new();
    let a = t.file("a.txt", b"a");
    let started = SystemTime::now();
    let out = run(cmd()
        .args(["scan", "--offline", "--format", "ecs"])
        .arg(t.path()));
    let ended = SystemTime::now();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let docs = ndjson(&out);
    assert_eq!(docs.len(), 1);
    let host = gethostname();
    assert!(!host.is_empty());
    check_common(&docs[0], &host, started, ended);
    let d = &docs[0];
    assert_eq!(d["hashsweep"]["verdict"], "not_looked_up");
    assert!(d.get("threat").is_none(), "offline: {d}");
    assert_eq!(d["event"]["kind"], "event");
    assert_eq!(d["file"]["hash"]["sha256"], sum("sha256sum", &a));
    assert!(d["file"]["hash"].get("md5").is_none(), "not computed: {d}");
}

#[test]
fn ecs_lookup_by_md5_matches_the_md5_field() {
    let mock = MockServer::start(Some(KEY)).unwrap();
    let t = Tree::new();
    t.file("eicar", EICAR);
    let out = run(scan_cmd(&mock, t.path()).args(["--format", "ecs", "--lookup-hash", "md5"]));
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let d = &ndjson(&out)[0];
    let e = &d["threat"]["enrichments"][0];
    assert_eq!(e["matched"]["atomic"], hashsweep_mock::EICAR_MD5, "{d}");
    assert_eq!(e["matched"]["field"], "file.hash.md5", "{d}");
    assert_eq!(
        e["indicator"]["file"]["hash"]["md5"],
        hashsweep_mock::EICAR_MD5
    );
    assert_eq!(d["file"]["hash"]["md5"], hashsweep_mock::EICAR_MD5);
}

#[test]
fn ecs_with_baseline_writes_changes_and_deletions() {
    let t = Tree::new();
    t.file("same.txt", b"same");
    let gone = t.file("gone.txt", b"bye");
    let reports = Tree::new();
    let old = reports.path().join("old.ndjson");
    let out = run(cmd()
        .args(["scan", "--offline", "-o"])
        .arg(&old)
        .arg(t.path()));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let gone_sha = sum("sha256sum", &gone);
    std::fs::remove_file(&gone).unwrap();
    t.file("new.txt", b"new");
    let out = run(cmd()
        .args([
            "scan",
            "--offline",
            "--format",
            "ecs",
            "--host-name",
            "h1",
            "--baseline",
        ])
        .arg(&old)
        .arg(t.path()));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let docs = ndjson(&out);
    assert_eq!(docs.len(), 3, "{docs:#?}");
    assert_eq!(doc(&docs, "same.txt")["hashsweep"]["change"], "unchanged");
    assert_eq!(doc(&docs, "new.txt")["hashsweep"]["change"], "new");
    let r = doc(&docs, "gone.txt");
    assert_eq!(r["event"]["kind"], "event", "{r}");
    assert_eq!(strings(&r["event"]["type"]), ["deletion"], "{r}");
    assert_eq!(r["hashsweep"]["change"], "removed", "{r}");
    assert!(r["hashsweep"].get("verdict").is_none(), "{r}");
    assert_eq!(r["file"]["size"], 3, "{r}");
    assert_eq!(r["file"]["hash"]["sha256"], gone_sha, "{r}");
    assert_eq!(r["file"]["type"], "file", "{r}");
    assert_eq!(r["host"]["name"], "h1");
}

#[test]
fn ecs_is_refused_by_lookup_and_diff() {
    let out = run(cmd().env("METADEFENDER_APIKEY", KEY).args([
        "lookup",
        "--format",
        "ecs",
        EICAR_SHA256,
    ]));
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--format ecs is only for scan"),
        "{}",
        stderr(&out)
    );
    assert!(out.stdout.is_empty());
    let t = Tree::new();
    let a = t.file("a.ndjson", b"");
    let out = run(cmd().args(["diff", "--format", "ecs"]).arg(&a).arg(&a));
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--format ecs is only for scan"),
        "{}",
        stderr(&out)
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn ecs_paths_are_absolute_even_for_a_relative_root() {
    let t = Tree::new();
    t.file("sub/a.txt", b"a");
    let out =
        run(cmd()
            .current_dir(t.path())
            .args(["scan", "--offline", "--format", "ecs", "sub"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let d = &ndjson(&out)[0];
    let want = t.path().join("sub/a.txt");
    assert_eq!(d["file"]["path"], want.to_str().unwrap(), "{d}");
    assert_eq!(
        d["file"]["directory"],
        t.path().join("sub").to_str().unwrap()
    );
    // Other formats keep the path as given.
    let out =
        run(cmd()
            .current_dir(t.path())
            .args(["scan", "--offline", "--format", "ndjson", "sub"]));
    assert_eq!(ndjson(&out)[0]["path"], "sub/a.txt");
}
