//! Sweeps that remember: the digest cache (unchanged files are not read again), the verdict
//! cache (answered digests are not asked again within their TTL), and resume after a kill.

use std::path::{Path, PathBuf};
use std::process::Command;
#[cfg(unix)]
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use crate::util::*;

/// `scan` with its own cache file, JSON report (records + summary). Each stand-in listens on a
/// port of its own, so they are named as one service (`--cache-service`): the answers of
/// the first serve the next.
fn cached_scan(mock: &MockServer, root: &Path, cache: &Path) -> Command {
    let mut c = scan_cmd(mock, root);
    c.env_remove("HASHSWEEP_NO_CACHE")
        .args([
            "--format",
            "json",
            "--cache-service",
            "the-stand-in",
            "--cache",
        ])
        .arg(cache);
    c
}

fn report(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("bad json ({e}): {}", stderr(out)))
}

fn hashes_asked(mock: &MockServer) -> usize {
    mock.requests().iter().map(|r| r.hashes.len()).sum()
}

/// A tree old enough to be cached: the cache does not keep digests of files changed in the
/// last 2 s (a write in the same timestamp tick could otherwise hide behind an unchanged key).
fn tree(n: usize) -> (Tree, Vec<PathBuf>) {
    let t = Tree::new();
    let mut files = vec![t.file("eicar", EICAR)];
    for i in 0..n {
        files.push(t.file(
            format!("d{}/f{i}", i % 7),
            format!("cached content {i}").as_bytes(),
        ));
    }
    std::thread::sleep(hashsweep::cache::RACY_WINDOW + Duration::from_millis(200));
    (t, files)
}

#[test]
fn second_sweep_reads_nothing_and_asks_nothing_then_only_what_changed() {
    let (t, files) = tree(200);
    let cache_dir = Tree::new();
    let cache = cache_dir.path().join("c.sqlite");

    let mock = MockServer::start(Some(KEY)).unwrap();
    let first = run(&mut cached_scan(&mock, t.path(), &cache));
    assert_eq!(code(&first), 1, "{}", stderr(&first));
    let r1 = report(&first);
    assert!(r1["summary"]["bytes_read"].as_u64().unwrap() > 0);
    assert_eq!(hashes_asked(&mock), 201);

    let mock2 = MockServer::start(Some(KEY)).unwrap();
    let second = run(&mut cached_scan(&mock2, t.path(), &cache));
    assert_eq!(code(&second), 1, "{}", stderr(&second));
    let r2 = report(&second);
    assert_eq!(
        r2["summary"]["bytes_read"], 0,
        "nothing read: {}",
        r2["summary"]
    );
    assert_eq!(r2["summary"]["files_cached"], 201);
    assert_eq!(r2["summary"]["verdicts_cached"], 201);
    assert_eq!(mock2.requests().len(), 0, "nothing asked within the TTL");
    assert_eq!(r1["records"], r2["records"], "same report from the cache");
    assert!(
        stderr(&second).contains("from the cache"),
        "{}",
        stderr(&second)
    );

    // Change one file: only it is read and only its new digest is asked.
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(&files[5], b"changed content, longer than before").unwrap();
    let mock3 = MockServer::start(Some(KEY)).unwrap();
    let third = run(&mut cached_scan(&mock3, t.path(), &cache));
    let r3 = report(&third);
    assert_eq!(r3["summary"]["bytes_read"], 35, "{}", r3["summary"]);
    assert_eq!(r3["summary"]["files_cached"], 200);
    assert_eq!(hashes_asked(&mock3), 1);
}

#[test]
fn ttl_expiry_and_errors_are_never_cached() {
    let (t, _) = tree(5);
    let cache_dir = Tree::new();
    let cache = cache_dir.path().join("c.sqlite");

    // A refused key: every verdict is an error, and none may be reused.
    let mock = MockServer::start(Some(KEY)).unwrap();
    let bad = run(cached_scan(&mock, t.path(), &cache).env("METADEFENDER_APIKEY", "wrong"));
    assert_eq!(code(&bad), 2);
    let mock2 = MockServer::start(Some(KEY)).unwrap();
    let good = run(&mut cached_scan(&mock2, t.path(), &cache));
    assert_eq!(code(&good), 1, "{}", stderr(&good));
    assert_eq!(hashes_asked(&mock2), 6, "errors were not cached");

    // Unknown verdicts with a zero TTL are asked again; the infected one is reused. (An unknown
    // data file waits as long as a clean one: --verdict-ttl.)
    let mock3 = MockServer::start(Some(KEY)).unwrap();
    let again = run(cached_scan(&mock3, t.path(), &cache).args([
        "--unknown-ttl",
        "0s",
        "--verdict-ttl",
        "0s",
    ]));
    assert_eq!(code(&again), 1);
    assert_eq!(
        hashes_asked(&mock3),
        5,
        "5 unknown re-asked, the detection reused"
    );
}

#[test]
fn a_corrupt_cache_is_set_aside_with_a_warning() {
    let (t, files) = tree(3);
    let cache_dir = Tree::new();
    let cache = cache_dir.path().join("c.sqlite");
    std::fs::write(&cache, vec![0xA5u8; 8192]).unwrap();
    let mock = MockServer::start(Some(KEY)).unwrap();
    let out = run(&mut cached_scan(&mock, t.path(), &cache));
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("warning"), "{}", stderr(&out));
    let names: Vec<String> = std::fs::read_dir(cache_dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().any(|n| n.contains("corrupt")), "{names:?}");
    // The fresh cache works: the second sweep succeeds from it alone (a sweep that failed
    // before any lookup would ask nothing either).
    let mock2 = MockServer::start(Some(KEY)).unwrap();
    let again = run(&mut cached_scan(&mock2, t.path(), &cache));
    assert_eq!(code(&again), 1, "{}", stderr(&again));
    assert!(!stderr(&again).contains("warning"), "{}", stderr(&again));
    assert_eq!(
        mock2.requests().len(),
        0,
        "nothing asked: {}",
        stderr(&again)
    );
    let (r1, r2) = (report(&out), report(&again));
    assert_eq!(
        r2["summary"]["files_cached"],
        files.len(),
        "{}",
        r2["summary"]
    );
    assert_eq!(
        r2["summary"]["verdicts_cached"],
        files.len(),
        "{}",
        r2["summary"]
    );
    assert_eq!(r1["records"], r2["records"], "same report from the cache");
}

// Unix only.
#[cfg(unix)]
#[test]
fn a_killed_sweep_resumes_without_rehashing_or_reasking() {
    let (t, _) = tree(1999);
    let cache_dir = Tree::new();
    let cache = cache_dir.path().join("c.sqlite");
    let slow = MockServer::start_on("127.0.0.1:0", Some(KEY), Duration::from_millis(400)).unwrap();
    let mut c = cached_scan(&slow, t.path(), &cache);
    c.args([
        "--batch-size",
        "100",
        "--concurrency",
        "1",
        "--batch-wait",
        "60s",
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let mut child = c.spawn().unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    let _ = child.wait();
    let answered: usize = slow
        .requests()
        .iter()
        .filter(|r| r.status == 200)
        .map(|r| r.hashes.len())
        .sum();
    assert!(
        (100..2000).contains(&answered),
        "killed halfway: {answered} answered"
    );

    let mock = MockServer::start(Some(KEY)).unwrap();
    let out = run(&mut cached_scan(&mock, t.path(), &cache));
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let r = report(&out);
    assert_eq!(
        r["summary"]["bytes_read"], 0,
        "nothing re-hashed: {}",
        r["summary"]
    );
    let asked = hashes_asked(&mock);
    assert!(
        asked + answered >= 2000,
        "everything answered once: {asked} + {answered}"
    );
    assert!(
        asked <= 2000 - answered + 100,
        "at most the batch in flight is asked again: {asked}"
    );
}

// Unix only.
#[cfg(unix)]
/// The records under `dir` (a path prefix), by path.
fn records_under<'a>(r: &'a Value, dir: &Path) -> Vec<&'a Value> {
    let dir = dir.to_str().unwrap();
    r["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["path"].as_str().unwrap().starts_with(dir))
        .collect()
}

// Unix only.
#[cfg(unix)]
/// Sweeping `$HOME` (or `/`) with the cache in the tree: the cache is used (a second sweep
/// reads nothing and asks nothing, even with the tree and the cache spelled differently), and
/// its own files (database, journals, the hash-set index beside it) are listed as skipped,
/// never hashed.
#[test]
fn a_sweep_of_the_tree_that_holds_the_cache_uses_it_and_reads_none_of_it() {
    let (t, files) = tree(20);
    let cache = t.path().join(".cache/hashsweep/cache.sqlite");
    let lists = Tree::new();
    let good = lists.file(
        "good.txt",
        format!("{}\n", coreutils("sha256sum", &files[1])).as_bytes(),
    );
    let sweep = |mock: &MockServer, root: &Path, cache: &Path| {
        let out = run(cached_scan(mock, root, cache)
            .arg("--known-good")
            .arg(&good));
        assert_eq!(code(&out), 1, "{}", stderr(&out));
        report(&out)
    };

    let mock = MockServer::start(Some(KEY)).unwrap();
    let r1 = sweep(&mock, t.path(), &cache);
    assert_eq!(hashes_asked(&mock), 20, "all but the known-good file");
    let own = records_under(&r1, &t.path().join(".cache"));
    let names: Vec<&str> = own
        .iter()
        .map(|x| x["path"].as_str().unwrap().rsplit('/').next().unwrap())
        .collect();
    assert!(names.contains(&"cache.sqlite"), "{names:?}");
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("hashset-") && n.ends_with(".idx")),
        "the index is written beside the cache: {names:?}"
    );
    for x in &own {
        assert_eq!(x["verdict"], "skipped", "{x}");
        assert!(x["sha256"].is_null(), "never hashed: {x}");
        assert!(
            x["note"].as_str().unwrap().starts_with("hashsweep's own"),
            "{x}"
        );
    }
    assert_eq!(r1["summary"]["files"], 21, "{}", r1["summary"]);

    // The same tree through a symlink, the same cache through `..`.
    let alias = lists.path().join("alias");
    std::os::unix::fs::symlink(t.path(), &alias).unwrap();
    let cache2 = alias.join("d0/../.cache/hashsweep/cache.sqlite");
    let mock2 = MockServer::start(Some(KEY)).unwrap();
    let r2 = sweep(&mock2, &alias, &cache2);
    assert_eq!(
        mock2.requests().len(),
        0,
        "nothing asked: {}",
        r2["summary"]
    );
    assert_eq!(
        r2["summary"]["bytes_read"], 0,
        "nothing read: {}",
        r2["summary"]
    );
    assert_eq!(r2["summary"]["files_cached"], 21, "{}", r2["summary"]);
    assert_eq!(r2["summary"]["verdicts_cached"], 20, "{}", r2["summary"]);
    let own2 = records_under(&r2, &alias.join(".cache"));
    assert!(own2.len() >= own.len(), "{own2:?}");
    assert!(own2.iter().all(|x| x["verdict"] == "skipped"), "{own2:?}");
}

/// `--details` answers keep their engine results in the cache: a `--details` sweep does not
/// take a plain cached answer as enough (it asks again, with details), the next `--details`
/// sweep gets the details from the cache without asking, and a plain sweep after it gets the
/// plain report it always got.
#[test]
fn details_answers_keep_their_engine_results_in_the_cache() {
    let (t, _) = tree(2);
    let cache_dir = Tree::new();
    let cache = cache_dir.path().join("c.sqlite");
    let sweep = |details: bool| {
        let mock = MockServer::start(Some(KEY)).unwrap();
        let mut c = cached_scan(&mock, t.path(), &cache);
        if details {
            c.arg("--details");
        }
        let out = run(&mut c);
        assert_eq!(code(&out), 1, "{}", stderr(&out));
        (report(&out), mock)
    };
    let eicar = |r: &Value| -> Value {
        r["records"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["path"].as_str().unwrap().ends_with("eicar"))
            .cloned()
            .unwrap()
    };

    let (plain, _) = sweep(false);
    assert!(eicar(&plain).get("scan_details").is_none());

    let (first, mock) = sweep(true);
    assert_eq!(
        hashes_asked(&mock),
        3,
        "plain answers are not enough for --details"
    );
    assert!(mock.requests().iter().all(|r| r.details));
    let engines = eicar(&first)["scan_details"].clone();
    assert!(
        engines
            .as_array()
            .is_some_and(|e| e.iter().any(|x| x["engine"] == "MockAV")),
        "{engines}"
    );

    let (second, mock) = sweep(true);
    assert_eq!(mock.requests().len(), 0, "answered from the cache");
    assert_eq!(second["summary"]["verdicts_cached"], 3);
    assert_eq!(second["records"], first["records"], "details and all");

    let (plain2, mock) = sweep(false);
    assert_eq!(mock.requests().len(), 0);
    // The answers are the --details sweep's (asked again with details), dated as those.
    let dated = |r: &Value, at: &Value| -> Value {
        let mut r = r["records"].clone();
        for x in r.as_array_mut().unwrap() {
            assert_eq!(&x["answered_at"], &at["answered_at"], "{x}");
            x.as_object_mut().unwrap().remove("answered_at");
        }
        r
    };
    assert_eq!(
        dated(&plain2, &eicar(&first)),
        dated(&plain, &eicar(&plain)),
        "no details without --details"
    );
}

/// A cache that cannot be created or written is one warning that says what to do; the sweep
/// goes on without it.
#[test]
fn a_cache_that_cannot_be_written_says_what_to_do_and_the_sweep_goes_on() {
    let (t, _) = tree(2);
    let blocker = Tree::new();
    let not_a_dir = blocker.file("file", b"a file where the cache's directory would be");
    let mock = MockServer::start(Some(KEY)).unwrap();
    let out = run(&mut cached_scan(
        &mock,
        t.path(),
        &not_a_dir.join("c.sqlite"),
    ));
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("running without the cache"), "{err}");
    assert!(
        err.contains("--cache PATH") && err.contains("--no-cache"),
        "{err}"
    );
    assert_eq!(report(&out)["records"].as_array().unwrap().len(), 3);
}
