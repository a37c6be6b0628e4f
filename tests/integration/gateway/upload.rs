//! `serve --upload-unknown`: endpoints' uploads through the gateway, one upload per digest for
//! the whole fleet (one instance, and two on one Redis), and the gateway's refusals: uploads
//! off, no token, a file not asked for, a body over the limit (413 before it is read), bytes
//! that are not the digest announced, the per-token budget; the key never reaches an endpoint.

use super::*;

/// An unknown program: the same bytes on every endpoint.
pub(super) const DROPPER: &[u8] = b"MZ\x90\x00 a dropper no service has seen";

/// `scan --upload-unknown` of `root` through the gateway at `url` as `token`.
fn scan_uploading(url: &str, token: &str, root: &Path) -> std::process::Output {
    run(cmd()
        .env("METADEFENDER_APIKEY", token)
        .env("HASHSWEEP_UPLOAD_POLL", "10ms")
        .args(["scan", "--api-url", url, "--retries", "2"])
        .args(["--upload-unknown", "--upload-wait", "40s"])
        .arg(root))
}

/// `n` trees, each holding the dropper.
pub(super) fn endpoints(n: usize) -> Vec<Tree> {
    (0..n)
        .map(|i| {
            let t = Tree::new();
            t.file(format!("host{i}/dropper.exe"), DROPPER);
            t
        })
        .collect()
}

/// Scan every tree at once, tree `i` through `urls[i % urls.len()]` with token `i`.
pub(super) fn scan_all(urls: &[String], trees: &[Tree]) -> Vec<std::process::Output> {
    std::thread::scope(|s| {
        let running: Vec<_> = trees
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let url = urls[i % urls.len()].clone();
                s.spawn(move || scan_uploading(&url, TOKENS[i].1, t.path()))
            })
            .collect();
        running.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// Every endpoint got the upload's verdict, from the upload, and saw nothing of the key.
pub(super) fn check_all_answered(outs: &[std::process::Output]) {
    for out in outs {
        let report = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            code(out),
            1,
            "a detection exits 1: {}\n{report}",
            stderr(out)
        );
        let recs = ndjson(out);
        let r = rec(&recs, "dropper.exe");
        assert_eq!(r["verdict"], "infected", "{r}\n{}", stderr(out));
        assert_eq!(r["source"], "upload", "{r}");
        for text in [
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        ] {
            assert!(!text.contains(KEY), "the gateway's key reached an endpoint");
        }
    }
}

pub(super) fn infected_when_scanned(mock: &MockServer) {
    mock.set_upload_result(&sha256_hex(DROPPER), 1, 2);
}

#[test]
fn four_endpoints_with_one_unknown_file_cause_one_upload_and_all_get_its_verdict() {
    let mock = MockServer::start(Some(KEY)).unwrap();
    infected_when_scanned(&mock);
    let f = sqlite_fixture(mock, &["--upload-unknown", "--upload-accept-sharing"]);
    let trees = endpoints(4);
    let outs = scan_all(std::slice::from_ref(&f.gw.url), &trees);
    let ups = f.mock.uploads();
    assert_eq!(ups.len(), 1, "one upload for the fleet: {ups:?}");
    check_all_answered(&outs);
    assert_eq!(ups[0].sha256, sha256_hex(DROPPER));
    assert_eq!(ups[0].filename.as_deref(), Some("dropper.exe"));
    assert_eq!(
        ups[0].content_type.as_deref(),
        Some("application/octet-stream")
    );
    // Only the one endpoint asked sent the bytes: the summary of the others says 0 uploaded.
    let uploaded: usize = outs
        .iter()
        .filter(|o| stderr(o).contains("1 uploaded"))
        .count();
    assert_eq!(
        uploaded,
        1,
        "{:?}",
        outs.iter().map(stderr).collect::<Vec<_>>()
    );

    // The final answer is the digest's answer: a fifth host's lookup is served from the store.
    let asked = upstream_hashes(&f.mock).len();
    let r = post_hashes(&f.gw, TOKENS[4].1, &[sha256_hex(DROPPER)]);
    assert_eq!(r.status, 200, "{}", r.raw);
    assert_eq!(r.json()["data"][0]["scan_result_i"], 1, "{}", r.body);
    assert_eq!(upstream_hashes(&f.mock).len(), asked);
    // And a later scan of it by another host is answered without any upload.
    let t = Tree::new();
    t.file("elsewhere/dropper.exe", DROPPER);
    let out = scan_uploading(&f.gw.url, TOKENS[5].1, t.path());
    assert_eq!(rec(&ndjson(&out), "dropper.exe")["verdict"], "infected");
    assert_eq!(f.mock.uploads().len(), 1);
    assert!(!f.gw.log().contains(KEY));
}

#[test]
fn two_gateways_on_one_redis_upload_a_file_held_by_six_endpoints_once() {
    if !redis_available() {
        return;
    }
    let redis = Redis::start();
    let mock = MockServer::start(Some(KEY)).unwrap();
    infected_when_scanned(&mock);
    let dir = tempfile::tempdir().unwrap();
    let tokens = tokens_file(dir.path());
    let flags = ["--upload-unknown", "--upload-accept-sharing"];
    let a = Gateway::start(&mock, &redis.url(), &tokens, &flags);
    let b = Gateway::start(&mock, &redis.url(), &tokens, &flags);
    let trees = endpoints(6);
    let outs = scan_all(&[a.url.clone(), b.url.clone()], &trees);
    assert_eq!(mock.uploads().len(), 1, "{:?}", mock.uploads());
    check_all_answered(&outs);
    // A restarted instance still knows: a new host is answered without an upload.
    drop(a);
    let c = Gateway::start(&mock, &redis.url(), &tokens, &flags);
    let t = Tree::new();
    t.file("late/dropper.exe", DROPPER);
    let out = scan_uploading(&c.url, TOKENS[7].1, t.path());
    assert_eq!(rec(&ndjson(&out), "dropper.exe")["verdict"], "infected");
    assert_eq!(mock.uploads().len(), 1);
}

#[test]
fn a_gateway_without_upload_unknown_refuses_uploads_and_says_why() {
    let f = sqlite_fixture(MockServer::start(Some(KEY)).unwrap(), &[]);
    let trees = endpoints(1);
    let out = run(cmd()
        .env("METADEFENDER_APIKEY", TOKENS[0].1)
        .env("HASHSWEEP_UPLOAD_POLL", "10ms")
        .args(["scan", "--api-url", &f.gw.url, "--upload-unknown"])
        .arg("--upload-accept-sharing")
        .arg(trees[0].path()));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let r = rec(&ndjson(&out), "dropper.exe").clone();
    assert_eq!(r["verdict"], "unknown");
    assert!(
        r["note"]
            .as_str()
            .is_some_and(|n| n.contains("the gateway does not upload files")),
        "{r}"
    );
    assert!(
        stderr(&out).contains("serve --upload-unknown"),
        "{}",
        stderr(&out)
    );
    let tok = [
        ("apikey", TOKENS[0].1),
        ("content-type", "application/json"),
    ];
    let body = json!({"hash": sha256_hex(DROPPER), "size": DROPPER.len()}).to_string();
    let r = http(&f.gw.url, "POST", "/v1/upload/intent", &tok, &body);
    assert_eq!(r.status, 403, "{}", r.raw);
    assert!(r.body.contains("serve --upload-unknown"), "{}", r.body);
    let r = http(
        &f.gw.url,
        "POST",
        "/v4/file",
        &[
            ("apikey", TOKENS[0].1),
            ("content-type", "application/octet-stream"),
            ("x-hashsweep-hash", &sha256_hex(DROPPER)),
        ],
        "MZ",
    );
    assert_eq!(r.status, 403, "{}", r.raw);
    assert!(f.mock.uploads().is_empty());
}

#[test]
fn upload_requests_need_a_token_and_the_gateways_turn_and_never_show_the_key() {
    let mock = MockServer::start(Some(KEY)).unwrap();
    let f = sqlite_fixture(mock, &["--upload-unknown", "--upload-accept-sharing"]);
    let bytes = "#!/bin/sh\necho a script no service has seen\n";
    let sha = sha256_hex(bytes.as_bytes());
    let body = json!({"hash": sha, "size": bytes.len()}).to_string();
    let octets = |tok: &'static str| {
        vec![
            ("apikey", tok),
            ("content-type", "application/octet-stream"),
            ("x-hashsweep-hash", sha.as_str()),
        ]
    };
    for (method, path, body) in [
        ("GET", "/v4/apikey", ""),
        ("POST", "/v1/upload/intent", body.as_str()),
        ("POST", "/v4/file", bytes),
        ("GET", "/v4/file/mockdata000001", ""),
    ] {
        let r = http(&f.gw.url, method, path, &[], body);
        assert_eq!(r.status, 401, "{method} {path}: {}", r.raw);
        let r = http(&f.gw.url, method, path, &[("apikey", "not-a-token")], body);
        assert_eq!(r.status, 401, "{method} {path}: {}", r.raw);
    }
    // The key information says "gateway", and has nothing of the key.
    let r = http(
        &f.gw.url,
        "GET",
        "/v4/apikey",
        &[("apikey", TOKENS[0].1)],
        "",
    );
    assert_eq!(r.status, 200, "{}", r.raw);
    assert_eq!(r.json()["hashsweep_gateway"], true);
    assert_eq!(r.json()["hashsweep_uploads"], true);
    assert!(!r.raw.contains(KEY));
    // Bytes nobody asked for are refused, unread, and never sent on.
    let r = http(&f.gw.url, "POST", "/v4/file", &octets(TOKENS[0].1), bytes);
    assert_eq!(r.status, 409, "{}", r.raw);
    // Announced by endpoint0: endpoint1 may not send them, and only as octets.
    let json_tok = [
        ("apikey", TOKENS[0].1),
        ("content-type", "application/json"),
    ];
    let r = http(&f.gw.url, "POST", "/v1/upload/intent", &json_tok, &body);
    assert_eq!(
        (r.status, r.json()["action"].clone()),
        (200, json!("send")),
        "{}",
        r.raw
    );
    let r = http(&f.gw.url, "POST", "/v4/file", &octets(TOKENS[1].1), bytes);
    assert_eq!(r.status, 409, "{}", r.raw);
    let mut wrong_type = octets(TOKENS[0].1);
    wrong_type[1].1 = "multipart/form-data";
    let r = http(&f.gw.url, "POST", "/v4/file", &wrong_type, bytes);
    assert_eq!(r.status, 415, "{}", r.raw);
    // Bytes that are not the digest announced: refused, never sent on.
    let r = http(
        &f.gw.url,
        "POST",
        "/v4/file",
        &octets(TOKENS[0].1),
        "#!/bin/sh\necho other\n",
    );
    assert_eq!(r.status, 400, "{}", r.raw);
    assert!(r.body.contains("not the one announced"), "{}", r.body);
    assert!(f.mock.uploads().is_empty(), "{:?}", f.mock.uploads());
    // Announced again, then the right bytes: uploaded with the gateway's key, polled through it.
    let r = http(&f.gw.url, "POST", "/v1/upload/intent", &json_tok, &body);
    assert_eq!(r.json()["action"], "send", "{}", r.raw);
    let r = http(&f.gw.url, "POST", "/v4/file", &octets(TOKENS[0].1), bytes);
    assert_eq!(r.status, 200, "{}", r.raw);
    let id = r.json()["data_id"].as_str().unwrap().to_string();
    assert_eq!(f.mock.uploads().len(), 1);
    // Another host announcing it is told to poll that data_id; polls pass only for it.
    let other = [
        ("apikey", TOKENS[2].1),
        ("content-type", "application/json"),
    ];
    let r = http(&f.gw.url, "POST", "/v1/upload/intent", &other, &body);
    assert_eq!(
        r.json(),
        json!({"action": "wait", "data_id": id}),
        "{}",
        r.raw
    );
    let r = http(
        &f.gw.url,
        "GET",
        "/v4/file/not-ours",
        &[("apikey", TOKENS[2].1)],
        "",
    );
    assert_eq!(r.status, 404, "{}", r.raw);
    let polls = f.mock.upload_polls();
    let path = format!("/v4/file/{id}");
    let done = (0..50).find_map(|_| {
        std::thread::sleep(Duration::from_millis(1100));
        let r = http(&f.gw.url, "GET", &path, &[("apikey", TOKENS[2].1)], "");
        assert_eq!(r.status, 200, "{}", r.raw);
        assert!(!r.raw.contains(KEY));
        (r.json()["scan_results"]["progress_percentage"] == 100).then(|| r.json())
    });
    let done = done.expect("the scan finished");
    assert_eq!(done["scan_results"]["scan_all_result_i"], 0, "{done}");
    // Nothing of the vendor's answer but the scan results: not the first host's file name.
    assert!(done.get("file_info").is_none(), "{done}");
    assert!(f.mock.upload_polls() > polls);
    assert!(!f.gw.log().contains(KEY));
}

#[test]
fn a_body_over_the_limit_is_refused_413_before_it_is_read_and_budgets_count_per_token() {
    let mock = MockServer::start(Some(KEY)).unwrap();
    let f = sqlite_fixture(
        mock,
        &[
            "--upload-unknown",
            "--upload-accept-sharing",
            "--upload-max-size",
            "1K",
            "--client-upload-budget",
            "1",
        ],
    );
    let json_tok = [
        ("apikey", TOKENS[0].1),
        ("content-type", "application/json"),
    ];
    let intent = |hash: &str, size: u64| {
        let body = json!({"hash": hash, "size": size}).to_string();
        http(&f.gw.url, "POST", "/v1/upload/intent", &json_tok, &body)
    };
    // Announced too big: refused before any bytes.
    let big = "ab".repeat(32);
    let r = intent(&big, 5000);
    assert_eq!(r.status, 413, "{}", r.raw);
    assert!(r.body.contains("serve --upload-max-size"), "{}", r.body);
    // Announced small, then a body declared over the limit: 413 at once, the body unread.
    let r = intent(&big, 100);
    assert_eq!(r.json()["action"], "send", "{}", r.raw);
    let addr: SocketAddr = f.gw.url.trim_start_matches("http://").parse().unwrap();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "POST /v4/file HTTP/1.1\r\nHost: {addr}\r\napikey: {}\r\ncontent-type: application/octet-stream\r\n\
         x-hashsweep-hash: {big}\r\nContent-Length: 100000000\r\n\r\nMZ",
        TOKENS[0].1
    )
    .unwrap();
    let mut head = [0u8; 512];
    let n = s
        .read(&mut head)
        .expect("answered before the body was sent");
    let first = String::from_utf8_lossy(&head[..n]).into_owned();
    assert!(first.starts_with("HTTP/1.1 413"), "{first}");
    // A chunked body that grows past the limit is cut off with 413 too.
    let r = intent(&big, 100);
    assert_eq!(r.json()["action"], "send", "{}", r.raw);
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let chunk = "x".repeat(600);
    write!(
        s,
        "POST /v4/file HTTP/1.1\r\nHost: {addr}\r\napikey: {}\r\ncontent-type: application/octet-stream\r\n\
         x-hashsweep-hash: {big}\r\nTransfer-Encoding: chunked\r\n\r\n258\r\n{chunk}\r\n258\r\n{chunk}\r\n",
        TOKENS[0].1
    )
    .unwrap();
    let n = s.read(&mut head).expect("answered");
    let text = String::from_utf8_lossy(&head[..n]);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(f.mock.uploads().is_empty());
    // The refused sends gave their budget back: endpoint0 may still send one file today...
    let r = intent(&"cd".repeat(32), 10);
    assert_eq!(r.json()["action"], "send", "{}", r.raw);
    // ...and no second one; another token has its own budget.
    let r = intent(&"ef".repeat(32), 10);
    assert_eq!(r.status, 429, "{}", r.raw);
    assert!(r.body.contains("429000"), "{}", r.body);
    let other = [
        ("apikey", TOKENS[1].1),
        ("content-type", "application/json"),
    ];
    let body = json!({"hash": "ef".repeat(32), "size": 10}).to_string();
    let r = http(&f.gw.url, "POST", "/v1/upload/intent", &other, &body);
    assert_eq!(r.json()["action"], "send", "{}", r.raw);
}

#[test]
fn without_the_operators_consent_nothing_is_uploaded_unless_the_key_scans_privately() {
    let mock = MockServer::start(Some(KEY)).unwrap();
    let f = sqlite_fixture(mock, &["--upload-unknown"]);
    let r = http(
        &f.gw.url,
        "GET",
        "/v4/apikey",
        &[("apikey", TOKENS[0].1)],
        "",
    );
    assert_eq!(r.json()["hashsweep_uploads"], false, "{}", r.body);
    let trees = endpoints(1);
    let out = scan_uploading(&f.gw.url, TOKENS[0].1, trees[0].path());
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let r = rec(&ndjson(&out), "dropper.exe").clone();
    assert_eq!(r["verdict"], "unknown", "{r}");
    assert!(
        r["note"]
            .as_str()
            .is_some_and(|n| n.contains("--upload-accept-sharing or a private key")),
        "{r}"
    );
    let json_tok = [
        ("apikey", TOKENS[0].1),
        ("content-type", "application/json"),
    ];
    let body = json!({"hash": sha256_hex(DROPPER), "size": DROPPER.len()}).to_string();
    let r = http(&f.gw.url, "POST", "/v1/upload/intent", &json_tok, &body);
    assert_eq!(r.status, 403, "{}", r.raw);
    assert!(
        r.body.contains("serve --upload-accept-sharing"),
        "{}",
        r.body
    );
    assert!(f.mock.uploads().is_empty());
    // The operator's consent is never a config file's.
    let config = f.dir.path().join("serve.toml");
    std::fs::write(
        &config,
        "[serve]\nupload-unknown = true\nupload-accept-sharing = true\n",
    )
    .unwrap();
    let out = run(cmd()
        .env("HASHSWEEP_CONFIG", &config)
        .env("METADEFENDER_APIKEY", KEY)
        .args(["serve", "--listen", "127.0.0.1:0", "--store"])
        .arg(sqlite_store(f.dir.path()))
        .arg("--tokens")
        .arg(&f.tokens));
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("upload-accept-sharing is accepted only on the command line"),
        "{}",
        stderr(&out)
    );
    // A gateway key that enforces private scanning needs no consent: nothing is shared.
    f.mock
        .set_upload_settings(|s| s.enforce_private_scan = true);
    let gw = Gateway::start(
        &f.mock,
        &sqlite_store(f.dir.path()),
        &f.tokens,
        &["--upload-unknown"],
    );
    let out = scan_uploading(&gw.url, TOKENS[0].1, trees[0].path());
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(rec(&ndjson(&out), "dropper.exe")["source"], "upload");
    let ups = f.mock.uploads();
    assert_eq!(ups.len(), 1, "{ups:?}");
    assert_eq!(ups[0].samplesharing.as_deref(), Some("0"));
}

#[test]
fn the_vendors_throttle_reaches_the_endpoint_and_frees_the_turn_for_another() {
    let mock = MockServer::start(Some(KEY)).unwrap();
    mock.push_upload_fault(Fault::throttled());
    let f = sqlite_fixture(mock, &["--upload-unknown", "--upload-accept-sharing"]);
    let trees = endpoints(2);
    let out = scan_uploading(&f.gw.url, TOKENS[0].1, trees[0].path());
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let r = rec(&ndjson(&out), "dropper.exe").clone();
    assert_eq!(
        r["verdict"], "unknown",
        "never clean without an answer: {r}"
    );
    let note = r["note"].as_str().unwrap_or_default();
    assert!(note.contains("throttled") && note.contains("429001"), "{r}");
    // The failed sender's turn was given up: the next host is asked for the file at once.
    let out = scan_uploading(&f.gw.url, TOKENS[1].1, trees[1].path());
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(rec(&ndjson(&out), "dropper.exe")["source"], "upload");
    assert_eq!(
        f.mock.uploads().len(),
        2,
        "the throttled try and the second host's"
    );
}
