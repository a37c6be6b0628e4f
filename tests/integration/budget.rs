//! The lookup budget: `--budget`, the key's daily budget, the order of risk, `deferred` and
//! exit 3, and a backlog that later runs finish without asking any digest twice.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::util::*;

/// Every hash the stand-in was asked, in order (upper-case hex).
fn asked(mock: &MockServer) -> Vec<String> {
    mock.requests()
        .iter()
        .filter(|r| r.status == 200)
        .flat_map(|r| r.hashes.clone())
        .collect()
}

/// `count` distinct data files in `dir`, last modified a year ago; `tag` is in the content (the
/// same tag in another folder makes copies).
fn old_data_tagged(t: &Tree, dir: &str, tag: &str, count: usize) {
    let old = SystemTime::now() - Duration::from_secs(365 * 24 * 3600);
    for i in 0..count {
        let p = t.file(
            format!("{dir}/f{i:05}.dat"),
            format!("data {tag} {i}").as_bytes(),
        );
        let f = std::fs::File::options().write(true).open(&p).unwrap();
        f.set_modified(old).unwrap();
    }
}

fn old_data(t: &Tree, dir: &str, count: usize) {
    old_data_tagged(t, dir, dir, count);
}

fn sha256_upper(p: &Path) -> String {
    coreutils("sha256sum", p).to_ascii_uppercase()
}

fn summary_budget(out: &std::process::Output) -> Value {
    let v: Value = serde_json::from_slice(&out.stdout).expect("json report");
    v["summary"]["budget"].clone()
}

#[test]
fn a_budget_of_n_asks_exactly_n_and_defers_the_rest_with_exit_3() {
    let mock = MockServer::start(Some(KEY)).unwrap();
    let t = Tree::new();
    old_data(&t, "d", 30);
    let out = run(scan_cmd(&mock, t.path()).args([
        "--budget",
        "10",
        "--batch-size",
        "4",
        "--format",
        "json",
    ]));
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert_eq!(asked(&mock).len(), 10, "{:?}", mock.requests());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let recs = v["records"].as_array().unwrap();
    let deferred: Vec<&Value> = recs.iter().filter(|r| r["verdict"] == "deferred").collect();
    assert_eq!(deferred.len(), 20);
    assert!(
        deferred
            .iter()
            .all(|r| r["error"].is_null() && r["note"].is_string())
    );
    assert_eq!(
        recs.iter().filter(|r| r["verdict"] == "unknown").count(),
        10
    );
    let b = summary_budget(&out);
    assert_eq!(
        (b["needed"].as_u64(), b["asked"].as_u64()),
        (Some(30), Some(10))
    );
    assert_eq!(
        (b["deferred"].as_u64(), b["cap"].as_u64()),
        (Some(20), Some(10))
    );
    assert_eq!(v["summary"]["deferred"], 20);
    let err = stderr(&out);
    assert!(
        err.contains(
            "needs 30 lookups; --budget allows 10; asking the 10 that matter most, deferring 20"
        ),
        "{err}"
    );
    assert!(err.contains("20 deferred"), "{err}");

    // `--budget 0`: the caches and local sets only, not one request.
    let mock = MockServer::start(Some(KEY)).unwrap();
    let out = run(scan_cmd(&mock, t.path()).args(["--budget", "0"]));
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(mock.requests().is_empty());
    assert!(ndjson(&out).iter().all(|r| r["verdict"] == "deferred"));
}

/// The key's own daily budget (the stand-in's, from its headers) is used to the last hash and
/// no request is refused for asking more than is left.
#[test]
fn the_keys_daily_budget_is_used_to_the_last_hash_without_a_refused_request() {
    let mock = MockServer::start(Some(KEY)).unwrap();
    mock.set_quota(10);
    let t = Tree::new();
    old_data(&t, "d", 30);
    let out = run(scan_cmd(&mock, t.path()).args(["--batch-size", "4"]));
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert_eq!(asked(&mock).len(), 10, "{:?}", mock.requests());
    let refused = mock.requests().iter().filter(|r| r.status == 429).count();
    assert!(refused <= 1, "{:?}", mock.requests());
    let recs = ndjson(&out);
    assert_eq!(
        recs.iter().filter(|r| r["verdict"] == "deferred").count(),
        20
    );
    assert_eq!(recs.iter().filter(|r| r["verdict"] == "error").count(), 0);
}

/// Planted programs and a detection in an upload folder among thousands of old data files:
/// a budget of three asks exactly those three. The sweep runs inside the tree (relative paths),
/// so where the test's temporary folder lies does not make every path a risky place.
#[test]
fn planted_executables_and_priority_paths_are_asked_first() {
    let mock = MockServer::start(Some(KEY)).unwrap();
    let t = Tree::new();
    old_data(&t, "data", 1500);
    let elf = t.file("home/u/Downloads/tool", b"\x7fELF\x02\x01\x01planted one");
    let pe = t.file("opt/x.dat", b"MZ\x90\x00planted two");
    let eicar = t.file("srv/uploads/readme.txt", EICAR);
    let mut c = scan_cmd(&mock, Path::new("."));
    c.current_dir(t.path())
        .args(["--budget", "3", "--priority-path", "**/uploads/**"]);
    let out = run(&mut c);
    // The detection is found although the budget covers 3 of 1 503 digests.
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let got: HashSet<String> = asked(&mock).into_iter().collect();
    let want: HashSet<String> = [&elf, &pe, &eicar]
        .iter()
        .map(|p| sha256_upper(p))
        .collect();
    assert_eq!(got, want);
    let recs = ndjson(&out);
    assert_eq!(rec(&recs, "srv/uploads/readme.txt")["verdict"], "infected");
    assert_eq!(rec(&recs, "home/u/Downloads/tool")["verdict"], "unknown");
    assert_eq!(
        recs.iter().filter(|r| r["verdict"] == "deferred").count(),
        1500
    );
    assert!(stderr(&out).contains("deferring 1 500"), "{}", stderr(&out));
}

/// Nightly runs with a budget finish the job: each run asks what the last deferred before new
/// digests of the same rank, no digest is asked twice, and the last run exits 0.
#[test]
fn deferred_digests_are_asked_first_by_the_next_runs_and_none_twice() {
    let mock = MockServer::start(Some(KEY)).unwrap();
    let t = Tree::new();
    old_data(&t, "a", 25);
    let cache = Tree::new();
    let db = cache.path().join("cache.sqlite");
    let night = |budget: &str| {
        let mut c = scan_cmd(&mock, t.path());
        c.env_remove("HASHSWEEP_NO_CACHE")
            .arg("--cache")
            .arg(&db)
            .args(["--budget", budget, "--batch-size", "4"]);
        run(&mut c)
    };
    let first = night("10");
    assert_eq!(code(&first), 3, "{}", stderr(&first));
    let deferred_first: HashSet<String> = ndjson(&first)
        .iter()
        .filter(|r| r["verdict"] == "deferred")
        .map(|r| r["sha256"].as_str().unwrap().to_ascii_uppercase())
        .collect();
    assert_eq!(deferred_first.len(), 15);
    // New files of the same kind and place arrive before the second night.
    old_data(&t, "b", 5);
    let before = asked(&mock).len();
    let second = night("10");
    assert_eq!(code(&second), 3, "{}", stderr(&second));
    let second_asked: Vec<String> = asked(&mock)[before..].to_vec();
    assert_eq!(second_asked.len(), 10);
    assert!(
        second_asked.iter().all(|h| deferred_first.contains(h)),
        "the backlog goes before new digests of the same rank"
    );
    let third = night("10");
    assert_eq!(code(&third), 0, "{}", stderr(&third));
    let all = asked(&mock);
    assert_eq!(all.len(), 30, "every digest once: {all:?}");
    let mut counts: HashMap<&String, u32> = HashMap::new();
    for h in &all {
        *counts.entry(h).or_default() += 1;
    }
    assert!(counts.values().all(|&n| n == 1), "asked twice: {counts:?}");
    assert!(ndjson(&third).iter().all(|r| r["verdict"] == "unknown"));
}

/// A run remembers what the service said of the key's budget (in the cache). The first run,
/// knowing nothing, learns it with one digest (never refused for asking more than is left)
/// and asks exactly what is left; the next run the same day knows the day is spent and sends
/// nothing.
#[test]
fn the_keys_budget_is_remembered_between_runs() {
    let mock = MockServer::start(Some(KEY)).unwrap();
    mock.set_daily_budget(10);
    let t = Tree::new();
    old_data(&t, "d", 30);
    let cache = Tree::new();
    let db = cache.path().join("cache.sqlite");
    let run_once = || {
        let mut c = scan_cmd(&mock, t.path());
        c.env_remove("HASHSWEEP_NO_CACHE").arg("--cache").arg(&db);
        run(&mut c)
    };
    let refused = || mock.requests().iter().filter(|r| r.status == 429).count();
    let first = run_once();
    assert_eq!(code(&first), 3, "{}", stderr(&first));
    assert_eq!(refused(), 0, "{:?}", mock.requests());
    assert_eq!(mock.requests()[0].hashes.len(), 1, "{:?}", mock.requests());
    assert_eq!(asked(&mock).len(), 10, "the 10 left are used");
    let recs = ndjson(&first);
    assert_eq!(
        recs.iter().filter(|r| r["verdict"] == "unknown").count(),
        10
    );
    assert_eq!(
        recs.iter().filter(|r| r["verdict"] == "deferred").count(),
        20
    );
    // Spent for the day, and the cache knows it: not one request.
    let before = mock.requests().len();
    let second = run_once();
    assert_eq!(code(&second), 3, "{}", stderr(&second));
    assert_eq!(mock.requests().len(), before, "{:?}", mock.requests());
    assert_eq!(
        ndjson(&second)
            .iter()
            .filter(|r| r["verdict"] == "deferred")
            .count(),
        20
    );
    assert!(
        stderr(&second).contains("the key allows 0 more"),
        "{}",
        stderr(&second)
    );
}
