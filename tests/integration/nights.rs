//! Nightly sweeps as days pass: the clock is moved a day before each night
//! (`HASHSWEEP_CLOCK_OFFSET`) and the stand-in gives the key a fresh daily budget. Every path
//! gets an answer in ceil(N/B) nights and keeps one after that; answers age, are refreshed
//! oldest first and stand until `--max-age`; answers belong to the service that gave them;
//! `check` remembers the budget for the next scan.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::util::*;

const DAY: u64 = 86_400;

/// Every hash the stand-in answered, in order (upper-case hex).
fn answered(mock: &MockServer) -> Vec<String> {
    mock.requests()
        .iter()
        .filter(|r| r.status == 200)
        .flat_map(|r| r.hashes.clone())
        .collect()
}

fn sha256_upper(p: &Path) -> String {
    coreutils("sha256sum", p).to_ascii_uppercase()
}

/// A file last modified a year ago.
fn old_file(t: &Tree, rel: &str, data: &[u8]) -> PathBuf {
    let p = t.file(rel, data);
    let f = std::fs::File::options().write(true).open(&p).unwrap();
    f.set_modified(SystemTime::now() - Duration::from_secs(365 * DAY))
        .unwrap();
    p
}

/// `data` data files and two programs: `data + 2` distinct digests.
fn endpoint_tree(data: usize) -> (Tree, Vec<PathBuf>) {
    let t = Tree::new();
    for i in 0..data {
        old_file(
            &t,
            &format!("data/f{i:03}.dat"),
            format!("record {i}\n").as_bytes(),
        );
    }
    let programs = vec![
        old_file(&t, "opt/tool", b"\x7fELF\x02\x01\x01 a program\n"),
        old_file(&t, "opt/setup.exe", b"MZ\x90\x00 an installer\n"),
    ];
    (t, programs)
}

/// One night: the clock `day` days ahead, the report as ndjson.
fn night(mock: &MockServer, tree: &Path, cache: &Path, day: u64, extra: &[&str]) -> Output {
    let mut c = scan_cmd(mock, tree);
    c.env_remove("HASHSWEEP_NO_CACHE")
        .env("HASHSWEEP_CLOCK_OFFSET", (day * DAY).to_string())
        .arg("--cache")
        .arg(cache)
        .args(extra);
    run(&mut c)
}

fn verdicts(out: &Output) -> Vec<Value> {
    ndjson(out)
        .into_iter()
        .filter(|r| r["path"].is_string())
        .collect()
}

/// Ten nights on a tree three times the key's daily budget: every path has an answer by
/// night 3 (asked once each, the programs on night 1), nights 4-10 exit 0 with no `deferred`
/// path while the answers are refreshed oldest first, a changed file is asked the next
/// night, and a night past `--max-age` defers what it cannot refresh.
#[test]
fn ten_nights_converge_and_stay_converged() {
    const BUDGET: u64 = 10;
    let mock = MockServer::start(Some(KEY)).unwrap();
    let (t, programs) = endpoint_tree(28);
    let cache = Tree::new();
    let db = cache.path().join("cache.sqlite");
    let mut once: HashSet<String> = HashSet::new();
    let mut all_asked_once_by = None;
    let mut last_answered: HashMap<String, u64> = HashMap::new();
    let mut changed: Option<String> = None;
    for n in 1..=10u64 {
        mock.set_quota(BUDGET);
        let before = answered(&mock).len();
        let out = night(&mock, t.path(), &db, n, &[]);
        let err = stderr(&out);
        let asked: Vec<String> = answered(&mock)[before..].to_vec();
        assert!(asked.len() as u64 <= BUDGET, "night {n}: {asked:?}");
        assert_eq!(
            mock.requests().iter().filter(|r| r.status == 429).count(),
            0,
            "night {n}: never refused"
        );
        let recs = verdicts(&out);
        assert_eq!(recs.len(), 30, "night {n}");
        if all_asked_once_by.is_none() {
            for h in &asked {
                assert!(
                    once.insert(h.clone()),
                    "night {n}: {h} asked twice before all once"
                );
            }
            if once.len() == 30 {
                all_asked_once_by = Some(n);
            }
        }
        if n == 1 {
            for p in &programs {
                assert!(
                    asked.contains(&sha256_upper(p)),
                    "programs first: {asked:?}"
                );
            }
            // Learning the budget cost one digest, not a batch in walk order.
            let first = &mock.requests()[0];
            assert_eq!(first.hashes.len(), 1, "{:?}", mock.requests());
        }
        if n <= 3 {
            assert_eq!(
                asked.len() as u64,
                BUDGET,
                "night {n}: the day's budget is used"
            );
        }
        let deferred = recs.iter().filter(|r| r["verdict"] == "deferred").count();
        if n >= 3 {
            assert_eq!(code(&out), 0, "night {n}: {err}");
            assert_eq!(deferred, 0, "night {n}: {err}");
            for r in &recs {
                assert_eq!(r["verdict"], "unknown", "night {n}: {r}");
                assert!(r["answered_at"].is_string(), "night {n}: {r}");
                assert!(r["stale"].is_boolean(), "night {n}: {r}");
            }
        } else {
            assert_eq!(code(&out), 3, "night {n}: {err}");
            assert_eq!(deferred as u64, 30 - n * BUDGET, "night {n}: {err}");
            assert!(err.contains("never asked") || n == 1, "night {n}: {err}");
        }
        if n >= 4 {
            // Every answer is a day old or more: refreshes, oldest first, each night's budget.
            assert_eq!(asked.len() as u64, BUDGET, "night {n}: {err}");
            assert!(err.contains("due for a refresh"), "night {n}: {err}");
            assert!(
                err.contains("refreshes wait (their paths keep their last answers)"),
                "night {n}: {err}"
            );
            let stale = recs.iter().filter(|r| r["stale"] == true).count();
            assert_eq!(stale as u64, 30 - BUDGET, "night {n}: {err}");
            // By risk, then oldest: the programs' unknown answers (due after an hour) are
            // refreshed every night, the data files' oldest first with the rest.
            let progs: Vec<String> = programs.iter().map(|p| sha256_upper(p)).collect();
            for h in &progs {
                assert!(asked.contains(h), "night {n}: programs are refreshed first");
            }
            // Oldest first: no data answer left waiting is older than one refreshed.
            let in_tree: HashSet<String> = recs
                .iter()
                .map(|r| r["sha256"].as_str().unwrap().to_ascii_uppercase())
                .collect();
            let data = |h: &&String| !progs.contains(h) && Some(*h) != changed.as_ref();
            let newest_asked = asked.iter().filter(data).map(|h| last_answered[h]).max();
            let oldest_waiting = last_answered
                .iter()
                .filter(|(h, _)| in_tree.contains(*h) && !asked.contains(h) && data(h))
                .map(|(_, &at)| at)
                .min();
            assert!(
                newest_asked <= oldest_waiting,
                "night {n}: refreshed answers of night {newest_asked:?} while one of night \
                 {oldest_waiting:?} waits"
            );
        }
        for h in &asked {
            last_answered.insert(h.clone(), n);
        }
        if let Some(h) = changed.take() {
            assert!(
                asked.contains(&h),
                "night {n}: the changed file is asked: {asked:?}"
            );
            let r = recs
                .iter()
                .find(|r| r["sha256"].as_str().unwrap().eq_ignore_ascii_case(&h))
                .unwrap();
            assert_eq!(r["stale"], false, "{r}");
            // The old content's digest is gone from the tree: no longer needed.
            last_answered.retain(|k, _| {
                asked.contains(k)
                    || recs
                        .iter()
                        .any(|r| r["sha256"].as_str().unwrap().eq_ignore_ascii_case(k))
            });
        }
        if n == 6 {
            let p = old_file(&t, "data/f005.dat", b"changed on day 6\n");
            changed = Some(sha256_upper(&p));
        }
    }
    assert_eq!(all_asked_once_by, Some(3));

    // Day 60, no sweep since day 10: every answer is past the 30-day maximum age. The budget
    // refreshes what it can; the rest is deferred, saying why, and the run exits 3.
    mock.set_quota(BUDGET);
    let out = night(&mock, t.path(), &db, 60, &[]);
    let err = stderr(&out);
    assert_eq!(code(&out), 3, "{err}");
    let recs = verdicts(&out);
    let deferred: Vec<&Value> = recs.iter().filter(|r| r["verdict"] == "deferred").collect();
    assert_eq!(deferred.len() as u64, 30 - BUDGET, "{err}");
    assert!(
        deferred[0]["note"]
            .as_str()
            .is_some_and(|n| n.contains("older than --max-age 30days")),
        "{}",
        deferred[0]
    );
    assert!(err.contains("30 past the maximum age"), "{err}");
    // With a longer maximum age they are stale answers, not deferred.
    mock.set_quota(BUDGET);
    let out = night(&mock, t.path(), &db, 61, &["--max-age", "90d"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
}

/// Answers belong to the service that gave them: a run against another URL asks again, and
/// one told that the other service's answers are its own (`--cache-service`) does not.
#[test]
fn another_services_answers_are_not_served_as_its_own() {
    let first = MockServer::start(Some(KEY)).unwrap();
    let second = MockServer::start(Some(KEY)).unwrap();
    let (t, programs) = endpoint_tree(8);
    first.set(&sha256_upper(&programs[0]), 1, 12);
    let cache = Tree::new();
    let db = cache.path().join("cache.sqlite");
    let out = night(&first, t.path(), &db, 0, &[]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert_eq!(answered(&first).len(), 10);

    let out = night(&second, t.path(), &db, 0, &[]);
    assert_eq!(
        answered(&second).len(),
        10,
        "asked again of the second service"
    );
    assert_eq!(
        code(&out),
        0,
        "the second service knows no detection: {}",
        stderr(&out)
    );

    // Named as the first service (a gateway in front of it, say): its answers serve.
    let name = format!("{}/v4/hash", first.url());
    let before = answered(&second).len();
    let out = night(&second, t.path(), &db, 0, &["--cache-service", &name]);
    assert_eq!(answered(&second).len(), before, "nothing asked");
    assert_eq!(
        code(&out),
        1,
        "the first service's detection: {}",
        stderr(&out)
    );
}

/// `check` remembers the key's budget: the next scan plans with it from its first digest (no
/// digest spent in walk order to learn it) and asks the programs first.
#[test]
fn check_remembers_the_budget_for_the_next_scan() {
    let mock = MockServer::start(Some(KEY)).unwrap();
    mock.set_quota(5);
    let (t, programs) = endpoint_tree(20);
    let cache = Tree::new();
    let db = cache.path().join("cache.sqlite");
    let mut c = cmd();
    c.env("METADEFENDER_APIKEY", KEY)
        .env_remove("HASHSWEEP_NO_CACHE")
        .args(["check", "--api-url", &mock.url(), "--cache"])
        .arg(&db);
    let out = run(&mut c);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let checked = mock.requests().len();
    let out = night(&mock, t.path(), &db, 0, &[]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let scan_requests = &mock.requests()[checked..];
    let asked: Vec<String> = scan_requests
        .iter()
        .flat_map(|r| r.hashes.clone())
        .collect();
    assert_eq!(
        asked.len(),
        4,
        "the 4 left after the check: {scan_requests:?}"
    );
    // One request, by the order of risk: none spent in walk order to learn the budget.
    assert_eq!(scan_requests.len(), 1, "{scan_requests:?}");
    for p in &programs {
        assert!(asked.contains(&sha256_upper(p)), "{asked:?}");
    }
    assert!(
        stderr(&out).contains("the key allows 4 more until") && stderr(&out).contains("(in 23h"),
        "{}",
        stderr(&out)
    );
}
