//! The service's documented rate limits and final answers (`shared/reference/result-codes.md`):
//! throttles without `Retry-After` whose `x-ratelimit-reset-in` is the daily window, too many
//! connections, a spent daily budget, a wrong `--api-url` (404), 403 sub-codes, answers still
//! in queue and detailed answers without a total.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use hashsweep::digest::Digest;
use hashsweep::lookup::{
    ApiKey, ClientConfig, HttpClient, LookupBatch, LookupError, ReputationClient,
};

use crate::util::*;

fn sha256(data: &[u8]) -> String {
    hashsweep::digest::hex_lower(&<[u8; 32]>::from(<sha2::Sha256 as sha2::Digest>::digest(
        data,
    )))
}

fn tree_with(n: usize) -> Tree {
    let t = Tree::new();
    t.file("eicar", EICAR);
    for i in 0..n {
        t.file(format!("f{i}"), format!("content {i}").as_bytes());
    }
    t
}

/// A library client against `mock`, with short throttle backoff (tests must stay fast).
fn client(mock: &MockServer, tune: impl FnOnce(&mut ClientConfig)) -> HttpClient {
    let mut cfg = ClientConfig::new(mock.url(), ApiKey::new(KEY).unwrap());
    cfg.throttle_base = Duration::from_millis(20);
    cfg.throttle_cap = Duration::from_millis(200);
    tune(&mut cfg);
    HttpClient::new(cfg).unwrap()
}

fn batch(id: u64, n: usize) -> LookupBatch {
    LookupBatch {
        id,
        digests: (0..n)
            .map(|i| Digest::Sha256([(id * 64 + i as u64) as u8; 32]))
            .collect(),
    }
}

#[test]
fn throttles_without_retry_after_back_off_and_every_verdict_is_right() {
    let mock = MockServer::start(Some(KEY)).unwrap();
    // As documented: no Retry-After, and x-ratelimit-reset-in is the daily window (~86400s).
    mock.push_fault(Fault::throttled());
    mock.push_fault(Fault::throttled());
    let clean = "clean file";
    let t = tree_with(3);
    t.file("clean", clean.as_bytes());
    mock.set(&sha256(clean.as_bytes()), 0, 0);
    let start = Instant::now();
    let out = run(scan_cmd(&mock, t.path()).args(["--concurrency", "1"]));
    let took = start.elapsed();
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let recs = ndjson(&out);
    assert_eq!(rec(&recs, "/eicar")["verdict"], "infected");
    assert_eq!(rec(&recs, "/clean")["verdict"], "clean");
    assert_eq!(rec(&recs, "/f0")["verdict"], "unknown");
    // The first request (one digest, to learn the budget) is throttled twice, then answered;
    // the rest go in one more.
    let reqs = mock.requests();
    assert_eq!(
        reqs.len(),
        4,
        "two throttles, then the answer, then the rest"
    );
    assert_eq!(reqs[0].status, 429);
    // 1 s then 2 s, each with jitter in [0.5, 1]: at least 1.5 s, far below a day.
    assert!(took >= Duration::from_millis(1500), "backed off: {took:?}");
    assert!(took < Duration::from_secs(20), "{took:?}");
}

#[test]
fn throttling_beyond_max_wait_fails_the_batch_as_throttled_not_quota() {
    let mock = MockServer::start(Some(KEY)).unwrap();
    for _ in 0..50 {
        mock.push_fault(Fault::throttled());
    }
    let t = tree_with(2);
    let start = Instant::now();
    let out = run(scan_cmd(&mock, t.path()).args(["--max-wait", "2s"]));
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let n = mock.requests().len();
    assert!(
        (2..10).contains(&n),
        "backed off within --max-wait: {n} requests"
    );
    for r in ndjson(&out) {
        assert_eq!(r["verdict"], "error", "{r}");
        let e = r["error"].as_str().unwrap();
        assert!(e.contains("throttled") && e.contains("--max-wait"), "{e}");
        assert!(!e.contains("quota"), "{e}");
    }
}

#[test]
fn a_throttle_never_stops_the_run_and_later_batches_go_on() {
    let mock = MockServer::start(Some(KEY)).unwrap();
    for _ in 0..3 {
        mock.push_fault(Fault::throttled());
    }
    let c = client(&mock, |c| c.max_wait = Duration::from_secs(5));
    let out = c.lookup(&batch(1, 3));
    assert!(out.iter().all(|(_, o)| o.is_ok()), "{out:?}");
    assert!(c.halted().is_none());
    assert_eq!(mock.requests().len(), 4);
    assert_eq!(c.stats().throttled, 3);
}

/// `threads` workers each looking up `per_thread` one-hash batches through `client`.
fn look_up_in_parallel(client: &Arc<HttpClient>, threads: u64, per_thread: u64) {
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let c = Arc::clone(client);
            std::thread::spawn(move || {
                for i in 0..per_thread {
                    let out = c.lookup(&batch(t * per_thread + i + 1, 1));
                    assert!(out.iter().all(|(_, o)| o.is_ok()), "{out:?}");
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
}

#[test]
fn too_many_connections_lowers_requests_in_flight_then_raises_them_slowly() {
    // Without throttles, eight workers have eight requests in flight.
    let latency = Duration::from_millis(150);
    let mock = MockServer::start_on("127.0.0.1:0", Some(KEY), latency).unwrap();
    let c = Arc::new(client(&mock, |_| {}));
    look_up_in_parallel(&c, 8, 1);
    assert!(mock.max_in_flight() >= 6, "{}", mock.max_in_flight());
    assert_eq!(c.in_flight_limit(), None);

    let mock = MockServer::start_on("127.0.0.1:0", Some(KEY), latency).unwrap();
    for _ in 0..8 {
        mock.push_fault(Fault::too_many_connections());
    }
    let c = Arc::new(client(&mock, |_| {}));
    look_up_in_parallel(&c, 8, 4);
    let reqs = mock.requests();
    // The first answers after the throttles: the limit is raised to five only once four of
    // them have come back.
    let after: Vec<usize> = reqs
        .iter()
        .filter(|r| r.status == 200)
        .take(4)
        .map(|r| r.in_flight)
        .collect();
    // The eight requests in flight together were throttled together: halved once, to four.
    assert!(
        after.iter().all(|n| *n <= 4),
        "in flight after the 429002s: {after:?}"
    );
    // ...and raised again, one at a time, as answers came back.
    let later = reqs
        .iter()
        .rev()
        .take(4)
        .map(|r| r.in_flight)
        .max()
        .unwrap();
    assert!(
        later > 4 || c.in_flight_limit().is_none_or(|l| l > 4),
        "{later}"
    );
    assert_eq!(reqs.iter().filter(|r| r.status == 200).count(), 32);
}

#[test]
fn a_spent_daily_budget_defers_the_rest_without_another_request() {
    let mock = MockServer::start(Some(KEY)).unwrap();
    mock.set_daily_budget(7);
    let c = client(&mock, |c| c.max_wait = Duration::from_secs(2));
    assert!(c.lookup(&batch(1, 5)).iter().all(|(_, o)| o.is_ok()));
    let b = c.budget().expect("a budget from the headers");
    assert_eq!((b.limit, b.remaining), (Some(7), 2));
    let resets_in = b
        .resets_at
        .unwrap()
        .duration_since(SystemTime::now())
        .unwrap();
    assert!(resets_in > Duration::from_secs(86_000), "{resets_in:?}");
    // Five more than the two left: the day's last request asks the two it covers (the
    // service is never made to refuse one), the other three wait for a later run.
    let out = c.lookup(&batch(2, 5));
    assert_eq!(out.len(), 5);
    assert_eq!(out.iter().filter(|(_, o)| o.is_ok()).count(), 2, "{out:?}");
    let spent =
        |o: &&(Digest, Result<_, LookupError>)| matches!(o.1, Err(LookupError::QuotaSpent(_)));
    assert_eq!(out.iter().filter(spent).count(), 3, "{out:?}");
    assert_eq!(mock.requests()[1].hashes.len(), 2);
    assert!(
        mock.requests().iter().all(|r| r.status == 200),
        "no refused request"
    );
    // Nothing left: every later digest is QuotaSpent without a request.
    let out = c.lookup(&batch(3, 5));
    assert!(out.iter().all(|o| spent(&o)), "{out:?}");
    assert_eq!(
        mock.requests().len(),
        2,
        "nothing sent once the budget is spent"
    );
    assert!(matches!(c.halted(), Some(LookupError::QuotaSpent(_))));
    assert!(c.quota_spent().is_some());
}

#[test]
fn remaining_zero_on_an_answer_stops_before_the_next_batch() {
    let mock = MockServer::start(Some(KEY)).unwrap();
    mock.set_daily_budget(5);
    let c = client(&mock, |c| c.max_wait = Duration::from_secs(2));
    assert!(c.lookup(&batch(1, 5)).iter().all(|(_, o)| o.is_ok()));
    assert_eq!(c.budget().map(|b| b.remaining), Some(0));
    let out = c.lookup(&batch(2, 3));
    assert!(
        out.iter()
            .all(|(_, o)| matches!(o, Err(LookupError::QuotaSpent(_)))),
        "{out:?}"
    );
    assert_eq!(mock.requests().len(), 1, "the next request was not sent");
}

#[test]
fn a_404_stops_at_once_and_says_what_api_url_is() {
    let mock = MockServer::start(Some(KEY)).unwrap();
    let t = tree_with(11);
    let base = format!("{}/metadefender", mock.url());
    let mut c = cmd();
    c.env("METADEFENDER_APIKEY", KEY)
        .args(["scan", "--api-url", &base])
        .args([
            "--batch-size",
            "4",
            "--concurrency",
            "1",
            "--batch-wait",
            "60s",
        ])
        .arg(t.path());
    let out = run(&mut c);
    assert_eq!(code(&out), 2);
    assert_eq!(mock.requests().len(), 1, "nothing sent after the 404");
    let err = stderr(&out);
    assert!(err.contains(&format!("{base}/v4/hash")), "{err}");
    assert!(err.contains("404") && err.contains("without /v4"), "{err}");
    let recs = ndjson(&out);
    assert_eq!(recs.len(), 12);
    assert!(recs.iter().all(|r| r["verdict"] == "error"));
    assert!(!String::from_utf8_lossy(&out.stdout).contains(KEY) && !err.contains(KEY));
}

#[test]
fn a_trailing_v4_in_api_url_is_dropped_with_a_notice() {
    let mock = MockServer::start(Some(KEY)).unwrap();
    let t = tree_with(1);
    for suffix in ["/v4", "/v4/"] {
        let mut c = cmd();
        c.env("METADEFENDER_APIKEY", KEY)
            .args(["scan", "--api-url", &format!("{}{suffix}", mock.url())])
            .arg(t.path());
        let out = run(&mut c);
        assert_eq!(code(&out), 1, "{}", stderr(&out));
        assert_eq!(rec(&ndjson(&out), "/eicar")["verdict"], "infected");
        let err = stderr(&out);
        assert!(
            err.contains("warning: --api-url ends in /v4") && err.contains(&mock.url()),
            "{err}"
        );
    }
}

#[test]
fn a_detailed_answer_without_the_total_counts_the_engines() {
    let mock = MockServer::start(Some(KEY)).unwrap();
    let t = Tree::new();
    t.file("a", b"detected by one engine");
    t.file("b", b"clean everywhere");
    let (a, b) = (
        sha256(b"detected by one engine").to_uppercase(),
        sha256(b"clean everywhere").to_uppercase(),
    );
    // The vendor's sample shape: no total_detected_avs, engines with differing fields.
    mock.push_fault(Fault::new(
        200,
        format!(
            r#"{{"data":[
            {{"data_id":"x","scan_result_i":0,"hash":"{a}","scan_details":{{
                "Zoner":{{"wait_time":1336,"threat_found":"Trojan.X","scan_time":392,"scan_result_i":1,"def_time":"2017-11-28T00:00:00.000Z"}},
                "Avira":{{"scan_result_i":0,"threat_found":"","def_time":"2015-11-11T08:00:00.000Z","scan_time":172,"scan_result":"Clean"}}}}}},
            {{"data_id":"y","scan_result_i":0,"hash":"{b}","scan_details":{{
                "Avira":{{"scan_result_i":0,"threat_found":"","scan_result":"Clean"}}}}}}]}}"#
        ),
    ));
    // Both digests in the one request the fault answers.
    let out = run(scan_cmd(&mock, t.path()).arg("--details").args(ONE_REQUEST));
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let recs = ndjson(&out);
    assert_eq!(rec(&recs, "/a")["verdict"], "suspicious", "{recs:?}");
    assert_eq!(rec(&recs, "/b")["verdict"], "clean", "{recs:?}");
}

/// Not found, in a detailed answer: `scan_result_i` 5 with neither a total nor `scan_details`
/// (as the vendor's detailed sample has no total). The verdict comes from the code: `unknown`,
/// and the exit status an unknown file gives (0), not `error`.
#[test]
fn not_found_in_a_detailed_answer_is_unknown_not_an_error() {
    let mock = MockServer::start(Some(KEY)).unwrap();
    mock.set_details_without_totals(true);
    let t = Tree::new();
    t.file("never-seen", b"a file the service does not know");
    t.file("known-clean", b"a file the service knows as clean");
    mock.set(&sha256(b"a file the service knows as clean"), 0, 0);
    let out = run(scan_cmd(&mock, t.path()).arg("--details"));
    let recs = ndjson(&out);
    let unknown = rec(&recs, "/never-seen");
    assert_eq!(unknown["verdict"], "unknown", "{recs:?}");
    assert!(unknown["error"].is_null(), "{unknown}");
    assert_eq!(rec(&recs, "/known-clean")["verdict"], "clean", "{recs:?}");
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    // It was a detailed answer without totals that said so.
    let reqs = mock.requests();
    assert!(reqs.iter().all(|r| r.details), "{reqs:?}");
}

#[test]
fn forbidden_sub_codes_have_their_own_messages_and_stop_the_run() {
    for (sub, says) in [
        (403002, "blocked by the service for abuse"),
        (403004, "not on the API key's allow list"),
    ] {
        let mock = MockServer::start(Some(KEY)).unwrap();
        mock.push_fault(Fault::new(
            403,
            format!(r#"{{"error":{{"code":{sub},"messages":["Forbidden"]}}}}"#),
        ));
        let t = tree_with(7);
        let out = run(scan_cmd(&mock, t.path()).args([
            "--batch-size",
            "4",
            "--concurrency",
            "1",
            "--batch-wait",
            "60s",
        ]));
        assert_eq!(code(&out), 2);
        assert_eq!(mock.requests().len(), 1, "{sub}: nothing sent after it");
        let err = stderr(&out);
        assert!(
            err.contains(says) && err.contains(&sub.to_string()),
            "{err}"
        );
        assert!(!err.contains("Check METADEFENDER_APIKEY"), "{err}");
        if sub == 403002 {
            assert!(err.contains("about an hour"), "{err}");
        }
        assert!(!err.contains(KEY));
        for r in ndjson(&out) {
            assert!(r["error"].as_str().unwrap().contains(says), "{r}");
        }
    }
}

#[test]
fn in_queue_is_in_progress_and_asked_again_next_time() {
    let mock = MockServer::start(Some(KEY)).unwrap();
    let t = Tree::new();
    t.file("queued", b"still being scanned");
    t.file("running", b"scan in progress");
    mock.set(&sha256(b"still being scanned"), 254, 0);
    mock.set(&sha256(b"scan in progress"), 255, 0);
    let cache = t.dir.path().with_extension("cache.sqlite");
    let scan = || {
        let mut c = scan_cmd(&mock, t.path());
        c.env_remove("HASHSWEEP_NO_CACHE")
            .arg("--cache")
            .arg(&cache);
        run(&mut c)
    };
    let out = scan();
    let recs = ndjson(&out);
    assert_eq!(
        rec(&recs, "/queued")["verdict"],
        "other:in_progress",
        "{recs:?}"
    );
    assert_eq!(rec(&recs, "/running")["verdict"], "other:in_progress");
    let asked = |m: &MockServer| -> usize { m.requests().iter().map(|r| r.hashes.len()).sum() };
    assert_eq!(asked(&mock), 2);
    // Not cached: the next sweep asks about both again.
    let out = scan();
    assert_eq!(ndjson(&out).len(), 2, "{}", stderr(&out));
    assert_eq!(asked(&mock), 4, "{}", stderr(&out));
    let _ = std::fs::remove_file(&cache);
}

/// A spent budget whose window ends within --max-wait is waited for, and then asked: the
/// budget the old window stated is not taken as today's.
#[test]
fn a_budget_that_resets_within_max_wait_is_waited_for_then_used() {
    let mock = MockServer::start(Some(KEY)).unwrap();
    mock.push_fault(
        Fault::new(
            429,
            r#"{"error":{"code":429000,"messages":"API key limit exceeded"}}"#,
        )
        .header("x-ratelimit-remaining", "0")
        .header("x-ratelimit-reset-in", "1s"),
    );
    let c = client(&mock, |c| c.max_wait = Duration::from_secs(10));
    let started = Instant::now();
    let out = c.lookup(&batch(1, 3));
    assert!(out.iter().all(|(_, o)| o.is_ok()), "{out:?}");
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert_eq!(mock.requests().len(), 2, "{:?}", mock.requests());
}

/// A budget that does not cover a batch but whose window ends within --max-wait: the batch
/// waits for the window's end and is asked whole; nothing is deferred to a later run.
#[test]
fn a_short_budget_whose_window_ends_within_max_wait_is_waited_for_not_deferred() {
    let mock = MockServer::start(Some(KEY)).unwrap();
    // An answer that says two are left of a window that ends in a second.
    mock.push_fault(
        Fault::of(hashsweep_mock::FaultKind::Stall(Duration::ZERO))
            .header("x-ratelimit-remaining", "2")
            .header("x-ratelimit-reset-in", "1s"),
    );
    let c = client(&mock, |c| c.max_wait = Duration::from_secs(10));
    assert!(c.lookup(&batch(1, 3)).iter().all(|(_, o)| o.is_ok()));
    assert_eq!(c.budget().map(|b| b.remaining), Some(2));
    let started = Instant::now();
    let out = c.lookup(&batch(2, 5));
    assert!(out.iter().all(|(_, o)| o.is_ok()), "{out:?}");
    assert!(started.elapsed() >= Duration::from_millis(900), "waited");
    let reqs = mock.requests();
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert_eq!(reqs[1].hashes.len(), 5, "asked whole after the window");
    assert!(c.halted().is_none());
}
