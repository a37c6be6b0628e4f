//! `hashsweep serve --prevalence`: which hosts (endpoint token names) ask for each digest, on
//! the admin listener and in the `/v4/hash` answers (`hashsweep_hosts`).

use super::*;

/// A tokens file of `n` hosts, `host00`…; their tokens.
fn fleet_tokens(dir: &Path, n: usize) -> (PathBuf, Vec<(String, String)>) {
    let hosts: Vec<(String, String)> = (0..n)
        .map(|i| {
            (
                format!("host{i:02}"),
                format!("token-{i:02}-xxxxxxxxxxxxxxxx"),
            )
        })
        .collect();
    let text: String = hosts.iter().map(|(n, t)| format!("{n} {t}\n")).collect();
    let p = dir.join("fleet-tokens");
    std::fs::write(&p, text).unwrap();
    (p, hosts)
}

/// The `hashsweep_hosts` of the one entry of a `/v4/hash` answer.
fn hosts_in(r: &Reply) -> Value {
    assert_eq!(r.status, 200, "{}", r.raw);
    r.json()["data"][0]["hashsweep_hosts"].clone()
}

#[test]
fn three_hosts_are_named_twenty_only_counted_and_both_expire_after_the_ttl() {
    if !redis_available() {
        return;
    }
    let redis = Redis::start();
    let mock = MockServer::start(Some(KEY)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (tokens, hosts) = fleet_tokens(dir.path(), 20);
    let gw = Gateway::start(
        &mock,
        &redis.url(),
        &tokens,
        &["--prevalence", "--prevalence-ttl", "2h"],
    );
    let (a, b, never) = ("a1".repeat(32), "b2".repeat(32), "c3".repeat(32));
    for (i, (_, tok)) in hosts.iter().take(3).enumerate() {
        assert_eq!(
            hosts_in(&post_hashes(&gw, tok, std::slice::from_ref(&a))),
            i + 1
        );
    }
    // The same host again counts once.
    assert_eq!(
        hosts_in(&post_hashes(&gw, &hosts[1].1, std::slice::from_ref(&a))),
        3
    );
    for (i, (_, tok)) in hosts.iter().enumerate() {
        assert_eq!(
            hosts_in(&post_hashes(&gw, tok, std::slice::from_ref(&b))),
            i + 1
        );
    }

    // On the admin listener, without a token (as /metrics).
    let one = http(gw.admin(), "GET", &format!("/v1/prevalence/{a}"), &[], "");
    assert_eq!(one.status, 200, "{}", one.raw);
    assert_eq!(
        one.json(),
        json!({"hash": a.to_ascii_uppercase(), "hosts": 3, "names": ["host00", "host01", "host02"]})
    );
    let body = json!({ "hash": [&b, &a, &never] }).to_string();
    let many = http(gw.admin(), "POST", "/v1/prevalence", &[], &body);
    assert_eq!(many.status, 200, "{}", many.raw);
    let v = many.json();
    assert_eq!(v[0], json!({"hash": b.to_ascii_uppercase(), "hosts": 20}));
    assert_eq!(v[1]["hosts"], 3);
    assert_eq!(
        v[2],
        json!({"hash": never.to_ascii_uppercase(), "hosts": 0, "names": []})
    );

    // Kept for --prevalence-ttl: the names of `a`, the count of `b` (its names are gone).
    let ttl = |key: &str| -> i64 {
        let r = redis.command(&format!("TTL {key}")).expect("TTL");
        r.trim().trim_start_matches(':').parse().expect("TTL reply")
    };
    let names_a = format!("hashsweep:v1:hosts:sha256:{a}");
    let count_b = format!("hashsweep:v1:hostcount:sha256:{b}");
    for key in [&names_a, &count_b] {
        let t = ttl(key);
        assert!((7000..=7200).contains(&t), "{key}: TTL {t}");
    }
    assert_eq!(ttl(&format!("hashsweep:v1:hosts:sha256:{b}")), -2);
    assert_eq!(ttl(&format!("hashsweep:v1:hostcount:sha256:{a}")), -2);

    // Bad input gets the vendor's 400s.
    let bad = http(gw.admin(), "GET", "/v1/prevalence/not-a-hash", &[], "");
    assert_eq!(
        (bad.status, bad.json()["error"]["code"].clone()),
        (400, json!(400064))
    );
    let empty = http(gw.admin(), "POST", "/v1/prevalence", &[], r#"{"hash":[]}"#);
    assert_eq!(
        (empty.status, empty.json()["error"]["code"].clone()),
        (400, json!(400062))
    );

    // Not on the public listener, token or not.
    for token in [None, Some(hosts[0].1.as_str())] {
        let headers: Vec<(&str, &str)> = token.map(|t| ("apikey", t)).into_iter().collect();
        let p = http(&gw.url, "GET", &format!("/v1/prevalence/{a}"), &headers, "");
        assert_eq!(p.status, 404, "{}", p.raw);
        let p = http(&gw.url, "POST", "/v1/prevalence", &headers, &body);
        assert_eq!(p.status, 404, "{}", p.raw);
    }
}

#[test]
fn without_prevalence_no_host_count_is_sent_and_the_admin_endpoints_are_absent() {
    if !redis_available() {
        return;
    }
    let redis = Redis::start();
    let mock = MockServer::start(Some(KEY)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (tokens, hosts) = fleet_tokens(dir.path(), 1);
    let gw = Gateway::start(&mock, &redis.url(), &tokens, &[]);
    let a = "a1".repeat(32);
    assert_eq!(
        hosts_in(&post_hashes(&gw, &hosts[0].1, std::slice::from_ref(&a))),
        Value::Null
    );
    let one = http(gw.admin(), "GET", &format!("/v1/prevalence/{a}"), &[], "");
    assert_eq!(one.status, 404, "{}", one.raw);
}

#[test]
fn a_sqlite_store_refuses_prevalence_and_says_why() {
    let mock = MockServer::start(Some(KEY)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let tokens = tokens_file(dir.path());
    let out = run(cmd()
        .env("METADEFENDER_APIKEY", KEY)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--prevalence",
            "--api-url",
        ])
        .arg(mock.url())
        .arg("--tokens")
        .arg(&tokens)
        .arg("--store")
        .arg(sqlite_store(dir.path())));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--prevalence needs a Redis store"), "{err}");
}

#[test]
fn a_scan_reports_hosts_and_the_prevalence_subcommand_prints_them() {
    if !redis_available() {
        return;
    }
    let redis = Redis::start();
    let mock = MockServer::start(Some(KEY)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (tokens, hosts) = fleet_tokens(dir.path(), 3);
    let gw = Gateway::start(&mock, &redis.url(), &tokens, &["--prevalence"]);
    let root = dir.path().join("tree");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("shared.bin"), b"on two hosts").unwrap();
    let sha = sha256_hex(b"on two hosts");
    let scan = |token: &str| {
        let out = run(cmd()
            .env("METADEFENDER_APIKEY", token)
            .args(["scan", "--format", "ndjson", "--api-url", &gw.url])
            .arg(&root));
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let rec: Value = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["sha256"] == sha.as_str())
            .unwrap_or_else(|| panic!("no record of shared.bin: {text}"));
        rec["hosts"].clone()
    };
    assert_eq!(scan(&hosts[0].1), 1);
    assert_eq!(scan(&hosts[2].1), 2);

    let table = run(cmd().args(["prevalence", "--api-url", gw.admin(), &sha]));
    assert_eq!(
        table.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&table.stderr)
    );
    let text = String::from_utf8(table.stdout).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with(&sha.to_ascii_uppercase()))
        .unwrap_or_else(|| panic!("{text}"));
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(cols[1..], ["2", "host00,host02"], "{text}");
    let json = run(cmd().args([
        "prevalence",
        "--format",
        "json",
        "--api-url",
        gw.admin(),
        &sha,
    ]));
    let v: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(
        v,
        json!([{"hash": sha.to_ascii_uppercase(), "hosts": 2, "names": ["host00", "host02"]}])
    );
    // The public listener has no such endpoint: the subcommand says so, with the status.
    let wrong = run(cmd().args(["prevalence", "--api-url", &gw.url, &sha]));
    assert_ne!(wrong.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("404"),
        "{wrong:?}"
    );
}

#[test]
fn a_redis_at_maxmemory_still_serves_verdicts_and_leaves_host_counts_unknown() {
    if !redis_available() {
        return;
    }
    let redis = Redis::start();
    let mock = MockServer::start(Some(KEY)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (tokens, hosts) = fleet_tokens(dir.path(), 2);
    let gw = Gateway::start(&mock, &redis.url(), &tokens, &["--prevalence"]);
    let cached = "a1".repeat(32);
    let first = post_hashes(&gw, &hosts[0].1, std::slice::from_ref(&cached));
    assert_eq!(hosts_in(&first), 1);

    // Full, and nothing may be evicted: Redis refuses every write (and the recording script)
    // with OOM, while reads still work.
    for line in [
        "CONFIG SET maxmemory-policy noeviction",
        "CONFIG SET maxmemory 1",
    ] {
        assert!(redis.command(line).is_some(), "{line}");
    }
    let again = post_hashes(&gw, &hosts[1].1, std::slice::from_ref(&cached));
    assert_eq!(again.status, 200, "{}", again.raw);
    let mut entry = again.json()["data"][0].clone();
    assert!(
        entry.get("hashsweep_hosts").is_none(),
        "a count that could not be recorded is not sent: {entry}"
    );
    // The cached verdict, the same as before, and upstream was not asked again.
    let mut before = first.json()["data"][0].clone();
    before.as_object_mut().unwrap().remove("hashsweep_hosts");
    entry.as_object_mut().unwrap().remove("hashsweep_hosts");
    assert_eq!(entry, before);
    assert_eq!(mock.requests().len(), 1, "{:?}", mock.requests());

    // A digest the store has not seen cannot be claimed (a write): 503 as for any store that
    // cannot coordinate the fleet's lookups, and upstream is not asked uncoordinated.
    let fresh = "b2".repeat(32);
    let r = post_hashes(&gw, &hosts[1].1, std::slice::from_ref(&fresh));
    assert_eq!(r.status, 503, "{}", r.raw);
    assert_eq!(mock.requests().len(), 1, "{:?}", mock.requests());

    let m = http(gw.admin(), "GET", "/metrics", &[], "").body;
    assert!(
        m.lines().any(
            |l| l.starts_with("hashsweep_gateway_prevalence_unrecorded_total ")
                && !l.ends_with(" 0")
        ),
        "{m}"
    );
}
