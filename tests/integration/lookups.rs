//! Lookups under the service's documented answers and faults: a failed lookup is never clean.

use std::time::{Duration, Instant};

use crate::util::*;

fn tree_with(n: usize) -> Tree {
    let t = Tree::new();
    for i in 0..n {
        t.file(format!("f{i}"), format!("content {i}").as_bytes());
    }
    t
}

#[test]
fn wrong_key_stops_after_first_refusal_and_reports_errors() {
    let mock = MockServer::start(Some(KEY)).unwrap();
    let t = tree_with(30);
    let mut c = scan_cmd(&mock, t.path());
    c.env("METADEFENDER_APIKEY", "wrong-key").args([
        "--batch-size",
        "10",
        "--concurrency",
        "1",
        "--batch-wait",
        "60s",
    ]);
    let out = run(&mut c);
    assert_eq!(code(&out), 2);
    assert_eq!(mock.requests().len(), 1, "no request after the first 401");
    let recs = ndjson(&out);
    assert_eq!(recs.len(), 30);
    for r in &recs {
        assert_eq!(r["verdict"], "error", "{r}");
        assert!(r["error"].as_str().unwrap().contains("refused"), "{r}");
    }
    assert!(
        stderr(&out).contains("API key was refused"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn server_errors_are_retried_then_answered() {
    let mock = MockServer::start(Some(KEY)).unwrap();
    mock.push_fault(Fault::new(
        503,
        r#"{"error":{"code":503000,"messages":["down"]}}"#,
    ));
    mock.push_fault(Fault::new(500, "oops"));
    let t = Tree::new();
    t.file("e", EICAR);
    let out = run(&mut scan_cmd(&mock, t.path()));
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert_eq!(rec(&ndjson(&out), "/e")["verdict"], "infected");
    assert_eq!(mock.requests().len(), 3);
    assert!(stderr(&out).contains("2 retries"), "{}", stderr(&out));
}

#[test]
fn retries_exhausted_or_malformed_answers_give_error_never_clean() {
    let mock = MockServer::start(Some(KEY)).unwrap();
    // Three tries of the first request (one digest, to learn the budget), three of the rest.
    for _ in 0..6 {
        mock.push_fault(Fault::new(200, r#"{"data":[{"hash":"#));
    }
    let t = tree_with(3);
    let out = run(scan_cmd(&mock, t.path()).args(["--retries", "2"]));
    assert_eq!(code(&out), 2);
    assert_eq!(mock.requests().len(), 6);
    for r in ndjson(&out) {
        assert_eq!(r["verdict"], "error");
        assert!(
            r["error"].as_str().unwrap().contains("not valid JSON"),
            "{r}"
        );
    }
}

#[test]
fn wrong_types_in_an_answer_are_errors_for_that_hash_only() {
    let mock = MockServer::start(Some(KEY)).unwrap();
    let t = Tree::new();
    t.file("a", EICAR);
    t.file("b", b"other");
    let b_hex = hashsweep::digest::hex_lower(&<[u8; 32]>::from(
        <sha2::Sha256 as sha2::Digest>::digest(b"other"),
    ));
    mock.push_fault(Fault::new(
        200,
        format!(
            r#"{{"data":[{{"hash":"{}","scan_result_i":"1","total_detected_avs":3,"data_id":"x"}},
                       {{"hash":"{}","scan_result_i":0,"total_detected_avs":0,"data_id":"y"}}]}}"#,
            EICAR_SHA256.to_uppercase(),
            b_hex.to_uppercase()
        ),
    ));
    // A cap known from the start: no digest goes alone to learn the budget, both go in the
    // one request the fault answers.
    let out = run(scan_cmd(&mock, t.path()).args(ONE_REQUEST));
    let recs = ndjson(&out);
    assert_eq!(rec(&recs, "/a")["verdict"], "error");
    assert!(
        rec(&recs, "/a")["error"]
            .as_str()
            .unwrap()
            .contains("wrong type")
    );
    assert_eq!(rec(&recs, "/b")["verdict"], "clean");
    assert_eq!(code(&out), 2);
}

#[test]
fn throttling_waits_as_told_then_goes_on() {
    let mock = MockServer::start(Some(KEY)).unwrap();
    mock.push_fault(
        Fault::new(
            429,
            r#"{"error":{"name":"ClientError","code":429001,"status":429,"messages":"slow down"}}"#,
        )
        .header("Retry-After", "1"),
    );
    let t = Tree::new();
    t.file("e", EICAR);
    let start = Instant::now();
    let out = run(&mut scan_cmd(&mock, t.path()));
    assert!(start.elapsed() >= Duration::from_secs(1), "waited as told");
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert_eq!(rec(&ndjson(&out), "/e")["verdict"], "infected");
}

#[test]
fn spent_daily_quota_defers_the_rest_with_exit_3() {
    let mock = MockServer::start(Some(KEY)).unwrap();
    mock.push_fault(
        Fault::new(
            429,
            r#"{"error":{"code":429000,"messages":["API key limit exceeded"]}}"#,
        )
        .header("X-RateLimit-Reset-In", "86400s"),
    );
    let t = tree_with(20);
    let out = run(scan_cmd(&mock, t.path()).args([
        "--batch-size",
        "5",
        "--concurrency",
        "1",
        "--batch-wait",
        "60s",
    ]));
    // Not a failure: the day's budget is spent, so everything waits for a later run.
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert_eq!(mock.requests().len(), 1);
    let recs = ndjson(&out);
    assert_eq!(recs.len(), 20);
    assert!(
        recs.iter()
            .all(|r| r["verdict"] == "deferred" && r["error"].is_null())
    );
    assert!(
        recs[0]["note"].as_str().unwrap().contains("quota"),
        "{}",
        recs[0]
    );
    assert!(stderr(&out).contains("quota"), "{}", stderr(&out));
}

#[test]
fn bad_request_splits_the_batch_so_good_hashes_get_verdicts() {
    let mock = MockServer::start(Some(KEY)).unwrap();
    mock.push_fault(Fault::new(
        400,
        r#"{"error":{"code":400064,"messages":["invalid hash"]}}"#,
    ));
    let t = tree_with(3);
    t.file("e", EICAR);
    let out = run(scan_cmd(&mock, t.path()).args(ONE_REQUEST));
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let recs = ndjson(&out);
    assert_eq!(rec(&recs, "/e")["verdict"], "infected");
    assert!(recs.iter().filter(|r| r["verdict"] == "unknown").count() == 3);
    let sizes: Vec<usize> = mock.requests().iter().map(|r| r.hashes.len()).collect();
    assert_eq!(sizes, vec![4, 2, 2]);
}

#[test]
fn unreachable_server_is_a_clear_error_without_a_hang() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let t = tree_with(2);
    let out = run_with_timeout(
        cmd()
            .env("METADEFENDER_APIKEY", KEY)
            .args([
                "scan",
                "--format",
                "ndjson",
                "--retries",
                "1",
                "--connect-timeout",
                "2s",
            ])
            .args(["--api-url", &format!("http://127.0.0.1:{port}")])
            .arg(t.path()),
        Duration::from_secs(30),
    );
    // Exit status 2 is also clap's for a bad flag: the records show the sweep really ran.
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(!stderr(&out).contains("Usage:"), "{}", stderr(&out));
    let recs = ndjson(&out);
    assert_eq!(recs.len(), 2, "one record per file: {recs:#?}");
    for r in recs {
        assert_eq!(r["verdict"], "error");
        assert!(r["error"].as_str().unwrap().contains("connect"), "{r}");
    }
}

#[test]
fn plain_http_to_a_remote_host_is_refused() {
    let t = tree_with(1);
    let out = run(cmd()
        .env("METADEFENDER_APIKEY", KEY)
        .args(["scan", "--api-url", "http://gw.example:8737"])
        .arg(t.path()));
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("--insecure-http"), "{}", stderr(&out));
}

#[test]
fn forbidden_is_final_like_a_refused_key() {
    let mock = MockServer::start(Some(KEY)).unwrap();
    mock.push_fault(Fault::new(
        403,
        r#"{"error":{"code":403002,"messages":["IP blocked"]}}"#,
    ));
    let t = tree_with(12);
    let out = run(scan_cmd(&mock, t.path()).args([
        "--batch-size",
        "4",
        "--concurrency",
        "1",
        "--batch-wait",
        "60s",
    ]));
    assert_eq!(code(&out), 2);
    assert_eq!(mock.requests().len(), 1, "nothing sent after a 403");
    assert!(ndjson(&out).iter().all(|r| r["verdict"] == "error"));
    assert!(stderr(&out).contains("403"), "{}", stderr(&out));
}
