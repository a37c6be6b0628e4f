//! `--circl` night after night: CIRCL's answers (found and not found) are kept in the cache
//! and not asked again while they stand (the clock is moved with `HASHSWEEP_CLOCK_OFFSET`),
//! the summary counts what CIRCL was asked and what the cache answered for it (JSON and HTML),
//! and a flagged digest the budget defers keeps its place for the next run.

use std::path::{Path, PathBuf};
use std::process::Output;

use hashsweep_mock::circl::CirclServer;
use serde_json::Value;
use sha1::{Digest as _, Sha1};

use crate::util::*;

const DAY: u64 = 86_400;

fn sha1_upper(p: &Path) -> String {
    Sha1::digest(std::fs::read(p).unwrap())
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect()
}

/// A file CIRCL knows, one its sources flag, one it does not know.
fn tree(circl: &CirclServer) -> (Tree, Vec<PathBuf>) {
    let t = Tree::new();
    let known = t.file(
        "lib/libknown.so",
        b"\x7fELF\x02\x01\x01 a library CIRCL knows",
    );
    let flagged = t.file("bin/flagged", b"\x7fELF\x02\x01\x01 one its sources flag");
    let fresh = t.file("bin/fresh", b"\x7fELF\x02\x01\x01 nobody knows this one");
    circl.add(CirclServer::record(
        &"0".repeat(32),
        &sha1_upper(&known),
        &"1".repeat(64),
        "libknown.so",
        None,
    ));
    circl.add(CirclServer::record(
        &"2".repeat(32),
        &sha1_upper(&flagged),
        &"3".repeat(64),
        "flagged",
        Some("malshare.com"),
    ));
    (t, vec![known, flagged, fresh])
}

/// One night `day` days ahead: no MetaDefender budget at all (`--budget 0`), so the digests
/// CIRCL does not settle are deferred and come back to CIRCL every night.
fn night(
    mock: &MockServer,
    circl: &CirclServer,
    tree: &Path,
    cache: &Path,
    day: u64,
    format: &str,
) -> Output {
    night_with_budget(mock, circl, tree, cache, day, format, "0")
}

fn night_with_budget(
    mock: &MockServer,
    circl: &CirclServer,
    tree: &Path,
    cache: &Path,
    day: u64,
    format: &str,
    budget: &str,
) -> Output {
    let mut c = scan_cmd(mock, tree);
    c.env_remove("HASHSWEEP_NO_CACHE")
        .env("HASHSWEEP_CLOCK_OFFSET", (day * DAY).to_string())
        .arg("--cache")
        .arg(cache)
        .args([
            "--budget",
            budget,
            "--batch-wait",
            "60s",
            "--format",
            format,
        ])
        .args(["--circl", "--circl-url", &circl.url()]);
    run(&mut c)
}

/// The hashes CIRCL was asked in requests `from..`, sorted.
fn asked_since(circl: &CirclServer, from: usize) -> Vec<String> {
    let mut v: Vec<String> = circl.requests()[from..]
        .iter()
        .flat_map(|r| r.hashes.clone())
        .collect();
    v.sort();
    v
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// (asked, requests, cached, found, known, flagged, not_found, unanswered) of the summary.
fn counts(v: &Value) -> [u64; 8] {
    let c = &v["summary"]["circl"];
    [
        "asked",
        "requests",
        "cached",
        "found",
        "known",
        "flagged",
        "not_found",
        "unanswered",
    ]
    .map(|k| {
        c[k].as_u64()
            .unwrap_or_else(|| panic!("summary.circl.{k} in {c}"))
    })
}

/// Night 1 asks CIRCL about all three; night 2 asks nothing (the cache answers all three,
/// found and not found, with the same records); night 4 asks again only the digest CIRCL did
/// not know (a "not found" stands three days); night 8 asks all three again (a record stands
/// a week); night 9 asks nothing. The summary counts each night (JSON), the HTML page says the same, and the
/// flagged digest, deferred, is stored with its own rank.
#[test]
fn circl_answers_are_cached_and_asked_again_once_due() {
    let circl = CirclServer::start().unwrap();
    let mock = MockServer::start(Some(KEY)).unwrap();
    let (t, files) = tree(&circl);
    let [known, flagged, fresh] = [0, 1, 2].map(|i| sha1_upper(&files[i]));
    let cache_dir = Tree::new();
    let db = cache_dir.path().join("cache.sqlite");

    // Night 1: everything asked, in one request.
    let out = night(&mock, &circl, t.path(), &db, 1, "json");
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert_eq!(circl.requests().len(), 1);
    assert_eq!(
        asked_since(&circl, 0),
        sorted(vec![known.clone(), flagged.clone(), fresh.clone()])
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(counts(&v), [3, 1, 0, 2, 1, 1, 1, 0], "{}", v["summary"]);
    assert!(v["summary"]["circl"].get("error").is_none());
    let recs = v["records"].as_array().unwrap().clone();
    let lib = rec(&recs, "lib/libknown.so");
    assert_eq!(
        (&lib["verdict"], &lib["source"]),
        (&"known_good".into(), &"circl".into())
    );
    assert_eq!(rec(&recs, "bin/flagged")["verdict"], "deferred");
    assert!(mock.requests().is_empty(), "no budget: nothing asked");
    assert!(
        stderr(&out).contains("CIRCL hashlookup: 3 digests asked in 1 request: 1 known"),
        "{}",
        stderr(&out)
    );
    // The flagged digest, deferred, keeps its own rank (62) for the next run.
    let conn = rusqlite::Connection::open(&db).unwrap();
    let mut ranks: Vec<u8> = conn
        .prepare("SELECT rank FROM deferred ORDER BY rank")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    ranks.sort();
    assert_eq!(ranks.len(), 2, "{ranks:?}");
    assert_eq!(
        ranks[0],
        hashsweep::scan::plan::Rank::FLAGGED_ELSEWHERE.code()
    );
    assert!(ranks[1] > ranks[0], "{ranks:?}");
    drop(conn);

    // Night 2: nothing asked; the cache answers all three, the records are the same.
    let out = night(&mock, &circl, t.path(), &db, 2, "json");
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert_eq!(circl.requests().len(), 1, "CIRCL asked again on night 2");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(counts(&v), [0, 0, 3, 2, 1, 1, 1, 0], "{}", v["summary"]);
    let recs = v["records"].as_array().unwrap().clone();
    let lib = rec(&recs, "lib/libknown.so");
    assert_eq!(
        (&lib["verdict"], &lib["source"]),
        (&"known_good".into(), &"circl".into())
    );
    assert_eq!(
        lib["list_entry"],
        "CIRCL hashlookup: libknown.so (product 190742)"
    );
    let bad = rec(&recs, "bin/flagged");
    assert_eq!(bad["source"], "circl", "{bad}");
    assert!(
        bad["list_entry"]
            .as_str()
            .is_some_and(|e| e.ends_with("; KnownMalicious: malshare.com")),
        "{bad}"
    );

    // Night 4 (three days after night 1): the "not found" is due, the records are not.
    let before = circl.requests().len();
    let out = night(&mock, &circl, t.path(), &db, 4, "json");
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert_eq!(asked_since(&circl, before), std::slice::from_ref(&fresh));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(counts(&v), [1, 1, 2, 2, 1, 1, 1, 0], "{}", v["summary"]);

    // Night 8 (a week after night 1): the records are due too (and the "not found" of night
    // 4, four days old).
    let before = circl.requests().len();
    let out = night(&mock, &circl, t.path(), &db, 8, "json");
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert_eq!(
        asked_since(&circl, before),
        sorted(vec![known, flagged, fresh])
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(counts(&v), [3, 1, 0, 2, 1, 1, 1, 0], "{}", v["summary"]);

    // Night 9, as an HTML page: all from the cache, and the page says so.
    let before = circl.requests().len();
    let out = night(&mock, &circl, t.path(), &db, 9, "html");
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert_eq!(circl.requests().len(), before);
    let page = String::from_utf8(out.stdout).unwrap();
    assert!(
        page.contains(
            "<dt>CIRCL hashlookup</dt><dd id=\"circl\">0 digests asked in 0 requests, 3 \
             answered from the cache: 1 known (known_good), 1 flagged by its sources (asked \
             first), 1 not known</dd>"
        ),
        "{page}"
    );
}

/// CIRCL down: the cache's answers still stand, the rest goes on unanswered (counted, with
/// why) and is not stored, so the next night asks it.
#[test]
fn an_outage_keeps_the_cached_answers_and_stores_nothing() {
    let circl = CirclServer::start().unwrap();
    let mock = MockServer::start(Some(KEY)).unwrap();
    let (t, files) = tree(&circl);
    let cache_dir = Tree::new();
    let db = cache_dir.path().join("cache.sqlite");
    let out = night(&mock, &circl, t.path(), &db, 1, "json");
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    // A new file, then CIRCL down.
    let extra = t.file("bin/extra", b"\x7fELF\x02\x01\x01 new tonight");
    circl.push_fault(503, r#"{"message": "maintenance"}"#);
    let out = night(&mock, &circl, t.path(), &db, 2, "json");
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(counts(&v), [1, 1, 3, 2, 1, 1, 1, 1], "{}", v["summary"]);
    let e = v["summary"]["circl"]["error"].as_str().unwrap_or_default();
    assert!(e.contains("HTTP 503"), "{}", v["summary"]);
    let recs = v["records"].as_array().unwrap().clone();
    assert_eq!(rec(&recs, "lib/libknown.so")["source"], "circl");
    assert!(rec(&recs, "bin/extra")["source"].is_null());
    // Night 3: only the digest CIRCL did not answer is asked.
    let before = circl.requests().len();
    let out = night(&mock, &circl, t.path(), &db, 3, "json");
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert_eq!(asked_since(&circl, before), [sha1_upper(&extra)]);
    let _ = files;
}

/// A flagged file MetaDefender answered: the next night its answer comes from the verdict
/// cache and CIRCL is not asked about it, yet its record still says who flags it (from
/// CIRCL's cached answer), in JSON and ECS alike.
#[test]
fn a_flagged_file_answered_from_the_verdict_cache_still_says_who_flags_it() {
    let circl = CirclServer::start().unwrap();
    let mock = MockServer::start(Some(KEY)).unwrap();
    let (t, files) = tree(&circl);
    mock.set(
        &coreutils("sha256sum", &files[1]).to_ascii_uppercase(),
        1,
        12,
    );
    let cache_dir = Tree::new();
    let db = cache_dir.path().join("cache.sqlite");
    let out = night_with_budget(&mock, &circl, t.path(), &db, 1, "json", "100000");
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let asked = mock.requests().len();
    assert!(asked > 0);
    for format in ["json", "ecs"] {
        let out = night_with_budget(&mock, &circl, t.path(), &db, 2, format, "100000");
        assert_eq!(code(&out), 1, "{}", stderr(&out));
        assert_eq!(circl.requests().len(), 1, "CIRCL asked again");
        if format == "json" {
            let v: Value = serde_json::from_slice(&out.stdout).unwrap();
            let recs = v["records"].as_array().unwrap().clone();
            let bad = rec(&recs, "bin/flagged");
            assert_eq!(bad["verdict"], "infected", "{bad}");
            assert_eq!(bad["source"], "circl", "{bad}");
            assert!(
                bad["list_entry"]
                    .as_str()
                    .is_some_and(|e| e.ends_with("; KnownMalicious: malshare.com")),
                "{bad}"
            );
            // The fresh file MetaDefender answered keeps its answer; nothing CIRCL knows
            // overrides it.
            assert!(rec(&recs, "bin/fresh")["source"].is_null());
            assert_eq!(counts(&v), [0, 0, 2, 2, 1, 1, 0, 0], "{}", v["summary"]);
        } else {
            let docs = ndjson(&out);
            let d = docs
                .iter()
                .find(|d| {
                    d["file"]["path"]
                        .as_str()
                        .is_some_and(|p| p.ends_with("bin/flagged"))
                })
                .expect("the flagged file's document");
            assert_eq!(
                d["threat"]["indicator"]["provider"], "CIRCL hashlookup",
                "{d}"
            );
        }
    }
}
