//! `hashsweep serve`: the fleet gateway, with a real `redis-server` (from PATH, on a free
//! loopback port, no persistence) as the shared store and the mock as the upstream.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::util::*;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A `redis-server` of our own: loopback only, no RDB, no AOF, killed on drop.
struct Redis {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

/// Is `redis-server` on PATH? Without it the Redis tests are skipped (loudly), unless
/// `HASHSWEEP_REQUIRE_REDIS` is set, as `.ci/run` does: then its absence is a failure.
fn redis_available() -> bool {
    let found = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var_os("HASHSWEEP_REQUIRE_REDIS").is_none(),
            "redis-server is not on PATH and HASHSWEEP_REQUIRE_REDIS is set (apt-get install redis-server)"
        );
        // Where `cargo test` shows it, not in the captured output of a passing test.
        skip("redis-server is not on PATH (apt-get install redis-server)");
    }
    found
}

/// What most tests that are not about Redis start with. Fields drop in order: the gateway
/// first, the mock last.
struct Fixture {
    gw: Gateway,
    tokens: PathBuf,
    dir: tempfile::TempDir,
    mock: MockServer,
}

/// The mock as upstream, a temp dir with the tokens file, and a gateway on a SQLite store there.
fn sqlite_fixture(mock: MockServer, extra: &[&str]) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let tokens = tokens_file(dir.path());
    let gw = Gateway::start(&mock, &sqlite_store(dir.path()), &tokens, extra);
    Fixture {
        gw,
        tokens,
        dir,
        mock,
    }
}

/// The SQLite store in `dir`: for the tests that are not about Redis.
fn sqlite_store(dir: &Path) -> String {
    format!("sqlite:{}", dir.join("verdicts.sqlite").display())
}

impl Redis {
    fn start() -> Redis {
        let mut r = Redis {
            port: free_port(),
            dir: tempfile::tempdir().expect("tempdir"),
            child: None,
        };
        r.resume();
        r
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn resume(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .current_dir(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "redis-server must be on PATH for the gateway tests (apt-get install redis-server)",
            );
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.command("PING").is_some_and(|r| r.starts_with("+PONG")) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server did not start on port {}", self.port);
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// One inline command; the raw reply.
    fn command(&self, line: &str) -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        s.write_all(format!("{line}\r\n").as_bytes()).ok()?;
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    fn dbsize(&self) -> u64 {
        let r = self.command("DBSIZE").expect("DBSIZE");
        r.trim()
            .trim_start_matches(':')
            .parse()
            .expect("DBSIZE reply")
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

const TOKENS: [(&str, &str); 8] = [
    ("endpoint0", "tok0-aaaaaaaaaaaaaaaaaaaa"),
    ("endpoint1", "tok1-bbbbbbbbbbbbbbbbbbbb"),
    ("endpoint2", "tok2-cccccccccccccccccccc"),
    ("endpoint3", "tok3-dddddddddddddddddddd"),
    ("endpoint4", "tok4-eeeeeeeeeeeeeeeeeeee"),
    ("endpoint5", "tok5-ffffffffffffffffffff"),
    ("endpoint6", "tok6-gggggggggggggggggggg"),
    ("endpoint7", "tok7-hhhhhhhhhhhhhhhhhhhh"),
];

/// A tokens file: endpoint0 in the clear, the rest as `sha256:HEX` (both forms in use).
fn tokens_file(dir: &Path) -> PathBuf {
    use sha2::Digest as _;
    let mut text = String::from("# test fleet\n");
    for (i, (name, tok)) in TOKENS.iter().enumerate() {
        if i == 0 {
            text.push_str(&format!("{name} {tok}\n"));
        } else {
            let d = sha2::Sha256::digest(tok.as_bytes());
            let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
            text.push_str(&format!("{name} sha256:{hex}\n"));
        }
    }
    let p = dir.join("tokens");
    std::fs::write(&p, text).unwrap();
    p
}

/// A running `hashsweep serve`; its stderr is collected for the log checks.
struct Gateway {
    child: Child,
    url: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Gateway {
    fn start(mock: &MockServer, store: &str, tokens: &Path, extra: &[&str]) -> Gateway {
        let mut child = cmd()
            .env("METADEFENDER_APIKEY", KEY)
            .args(["serve", "--listen", "127.0.0.1:0", "--log", "debug"])
            .arg("--tokens")
            .arg(tokens)
            .args([
                "--store",
                store,
                "--api-url",
                &mock.url(),
                "--batch-wait",
                "20ms",
            ])
            .args(["--retries", "1", "--shutdown-grace", "10s"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn hashsweep serve");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let err = child.stderr.take().unwrap();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let url = rest
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_string();
                    let _ = tx.send(url);
                }
                sink.lock().unwrap().push(line);
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("gateway did not start: {:?}", log.lock().unwrap()));
        Gateway { child, url, log }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// SIGTERM and wait; the exit status.
    fn stop(mut self) -> (std::process::ExitStatus, String) {
        // SAFETY: kill has no memory preconditions; the pid is our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "gateway did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        };
        std::thread::sleep(Duration::from_millis(50));
        (status, self.log())
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A raw HTTP exchange: (status, headers lower-cased, body).
struct Reply {
    status: u16,
    headers: HashMap<String, String>,
    body: String,
    /// Every byte the client saw.
    raw: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

fn http(base: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    let addr: SocketAddr = base.trim_start_matches("http://").parse().unwrap();
    let mut s = TcpStream::connect(addr).expect("connect to gateway");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_string(),
        raw: raw.clone(),
    }
}

fn post_hashes(gw: &Gateway, token: &str, hashes: &[String]) -> Reply {
    let body = json!({ "hash": hashes }).to_string();
    http(
        &gw.url,
        "POST",
        "/v4/hash",
        &[("apikey", token), ("content-type", "application/json")],
        &body,
    )
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Every hash the upstream was asked about, upper-case, with repeats.
fn upstream_hashes(mock: &MockServer) -> Vec<String> {
    mock.requests()
        .into_iter()
        .flat_map(|r| r.hashes)
        .map(|h| h.to_ascii_uppercase())
        .collect()
}

/// `scan` through a gateway with an endpoint token as its key.
fn scan_via(gw_url: &str, token: &str, root: &Path) -> std::process::Output {
    run(cmd()
        .env("METADEFENDER_APIKEY", token)
        .args([
            "scan",
            "--api-url",
            gw_url,
            "--batch-size",
            "100",
            "--retries",
            "8",
        ])
        .arg(root))
}

#[test]
fn eight_scans_through_two_gateways_ask_the_upstream_once_per_digest() {
    if !redis_available() {
        return;
    }
    let mock = MockServer::start(Some(KEY)).unwrap();
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let tokens = tokens_file(dir.path());
    let a = Gateway::start(&mock, &redis.url(), &tokens, &[]);
    let b = Gateway::start(&mock, &redis.url(), &tokens, &[]);

    // Eight endpoints: 400 files they all share (system files), 60 of their own, and the
    // EICAR file on every one.
    let mut expected: HashMap<String, &str> = HashMap::new();
    let trees: Vec<Tree> = (0..8u64)
        .map(|t| {
            let tree = Tree::new();
            for i in 0..400u64 {
                let data = random_bytes(i, 64 + i as usize);
                tree.file(format!("usr/lib/f{i}"), &data);
            }
            for i in 0..60u64 {
                let data = random_bytes(1000 + t * 100 + i, 100);
                tree.file(format!("home/own{i}"), &data);
            }
            tree.file("home/eicar.com", EICAR);
            tree
        })
        .collect();
    for i in 0..400u64 {
        let h = sha256_hex(&random_bytes(i, 64 + i as usize));
        // A third of the shared files are known clean, the rest unknown.
        if i % 3 == 0 {
            mock.set(&h, 0, 0);
            expected.insert(h, "clean");
        } else {
            expected.insert(h, "unknown");
        }
    }
    expected.insert(EICAR_SHA256.to_string(), "infected");

    let outs: Vec<std::process::Output> = std::thread::scope(|s| {
        let handles: Vec<_> = trees
            .iter()
            .enumerate()
            .map(|(i, tree)| {
                let url = if i % 2 == 0 {
                    a.url.clone()
                } else {
                    b.url.clone()
                };
                s.spawn(move || scan_via(&url, TOKENS[i].1, tree.path()))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });

    for (i, out) in outs.iter().enumerate() {
        assert_eq!(code(out), 1, "scan {i} (EICAR everywhere): {}", stderr(out));
        let recs = ndjson(out);
        assert_eq!(recs.len(), 461, "scan {i}");
        for r in &recs {
            let sha = r["sha256"].as_str().unwrap();
            let want = expected.get(sha).copied().unwrap_or("unknown");
            assert_eq!(r["verdict"], want, "scan {i}: {r}");
        }
    }
    let asked = upstream_hashes(&mock);
    let distinct: HashSet<&String> = asked.iter().collect();
    assert_eq!(
        asked.len(),
        distinct.len(),
        "a digest was asked upstream twice ({} hashes, {} distinct)",
        asked.len(),
        distinct.len()
    );
    // 400 shared + 8 × 60 own + EICAR.
    assert_eq!(distinct.len(), 400 + 480 + 1);
    assert!(mock.requests().iter().all(|r| r.hashes.len() <= 1000));
    // Both instances served, and both stored into the one Redis.
    assert!(redis.dbsize() >= 881, "dbsize {}", redis.dbsize());
    for (name, gw) in [("a", &a), ("b", &b)] {
        let m = http(&gw.url, "GET", "/metrics", &[], "").body;
        assert!(
            m.contains("hashsweep_gateway_client_requests_total"),
            "{name}: {m}"
        );
    }
}

#[test]
fn a_restarted_gateway_answers_from_redis_without_asking_upstream() {
    if !redis_available() {
        return;
    }
    let mock = MockServer::start(Some(KEY)).unwrap();
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let tokens = tokens_file(dir.path());
    let tree = Tree::new();
    for i in 0..150u64 {
        tree.file(format!("f{i}"), &random_bytes(7000 + i, 80));
    }
    tree.file("eicar", EICAR);
    let clean = sha256_hex(&random_bytes(7000, 80));
    mock.set(&clean, 0, 0);

    let gw = Gateway::start(&mock, &redis.url(), &tokens, &[]);
    let first = scan_via(&gw.url, TOKENS[0].1, tree.path());
    assert_eq!(code(&first), 1, "{}", stderr(&first));
    let asked_before = mock.requests().len();
    assert!(asked_before >= 1);
    let (status, _) = gw.stop();
    assert!(status.success(), "gateway exit {status:?}");

    let gw = Gateway::start(&mock, &redis.url(), &tokens, &[]);
    let second = scan_via(&gw.url, TOKENS[3].1, tree.path());
    assert_eq!(code(&second), 1, "{}", stderr(&second));
    assert_eq!(
        mock.requests().len(),
        asked_before,
        "the restarted gateway asked upstream"
    );
    let recs = ndjson(&second);
    assert_eq!(rec(&recs, "/eicar")["verdict"], "infected");
    assert_eq!(rec(&recs, "/f0")["verdict"], "clean");
    assert_eq!(rec(&recs, "/f1")["verdict"], "unknown");
    let m = http(&gw.url, "GET", "/metrics", &[], "").body;
    assert!(m.contains("hashsweep_gateway_cache_hits_total 151"), "{m}");

    // Per-engine details: asked upstream once (the stored answer has none), then shared too.
    let body = json!({"hash": [EICAR_SHA256]}).to_string();
    let hdrs = [("apikey", TOKENS[2].1), ("includescandetails", "1")];
    for _ in 0..2 {
        let r = http(&gw.url, "POST", "/v4/hash", &hdrs, &body);
        assert_eq!(
            r.json()["data"][0]["scan_details"]["MockAV"]["scan_result_i"],
            1
        );
    }
    assert_eq!(mock.requests().len(), asked_before + 1);
    assert!(mock.requests().last().unwrap().details);
    // Review finding: an unknown hash has no details upstream either; that answer serves
    // details requests too instead of being asked every time.
    let unknown = json!({"hash": ["77".repeat(32)]}).to_string();
    for _ in 0..3 {
        let r = http(&gw.url, "POST", "/v4/hash", &hdrs, &unknown);
        assert_eq!(r.json()["data"][0]["scan_result_i"], 5, "{}", r.raw);
        assert!(
            r.json()["data"][0].get("scan_details").is_none(),
            "{}",
            r.raw
        );
    }
    assert_eq!(mock.requests().len(), asked_before + 2);
}

#[test]
fn an_unknown_token_gets_401006_and_never_reaches_upstream() {
    let f = sqlite_fixture(MockServer::start(Some(KEY)).unwrap(), &[]);
    let (mock, gw) = (&f.mock, &f.gw);
    let h = vec![EICAR_SHA256.to_string()];
    for bad in ["wrong-token-0000000000", "", "endpoint0", KEY] {
        let r = post_hashes(gw, bad, &h);
        assert_eq!(r.status, 401, "token {bad:?}: {}", r.raw);
        assert_eq!(r.json()["error"]["code"], 401006);
    }
    // No apikey header at all.
    let r = http(
        &gw.url,
        "POST",
        "/v4/hash",
        &[],
        &json!({"hash": h}).to_string(),
    );
    assert_eq!(r.status, 401);
    // The ordinary client reports it as a refused key.
    let tree = Tree::new();
    tree.file("a", b"hello");
    let out = scan_via(&gw.url, "wrong-token-0000000000", tree.path());
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("refused"), "{}", stderr(&out));
    assert!(mock.requests().is_empty(), "upstream was asked");
    // The log says a request was refused, and never quotes the token.
    let log = gw.log();
    assert!(log.contains("refused"), "{log}");
    assert!(!log.contains("wrong-token-0000000000"), "{log}");
}

#[test]
fn with_redis_down_clients_get_503_never_a_verdict_and_the_gateway_recovers() {
    if !redis_available() {
        return;
    }
    let mock = MockServer::start(Some(KEY)).unwrap();
    let mut redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let tokens = tokens_file(dir.path());
    let gw = Gateway::start(&mock, &redis.url(), &tokens, &[]);
    mock.set(EICAR_SHA256, 1, 30);
    let hashes = vec![EICAR_SHA256.to_string(), "ab".repeat(32)];
    let r = post_hashes(&gw, TOKENS[1].1, &hashes);
    assert_eq!(r.status, 200, "{}", r.raw);
    assert_eq!(mock.requests().len(), 1);

    redis.stop();
    let fresh = vec!["cd".repeat(32)];
    for h in [&hashes, &fresh] {
        let r = post_hashes(&gw, TOKENS[1].1, h);
        assert_eq!(r.status, 503, "{}", r.raw);
        assert_eq!(r.json()["error"]["code"], 503000);
        assert!(!r.body.contains("scan_result_i"));
    }
    assert_eq!(
        mock.requests().len(),
        1,
        "asked upstream while the store was down"
    );
    let health = http(&gw.url, "GET", "/healthz", &[], "");
    assert_eq!(health.status, 503, "{}", health.raw);

    // A scan in the meantime: every verdict is `error`, none clean; exit 2.
    let tree = Tree::new();
    tree.file("x", b"made while redis was down");
    let out = run(cmd()
        .env("METADEFENDER_APIKEY", TOKENS[2].1)
        .args(["scan", "--api-url", &gw.url, "--retries", "1"])
        .arg(tree.path()));
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert_eq!(ndjson(&out)[0]["verdict"], "error");

    redis.resume();
    let deadline = Instant::now() + Duration::from_secs(20);
    let r = loop {
        let r = post_hashes(&gw, TOKENS[1].1, &hashes);
        if r.status == 200 || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(r.status, 200, "the gateway did not recover: {}", r.raw);
    let data = r.json()["data"].as_array().unwrap().clone();
    assert_eq!(data[0]["hash"], EICAR_SHA256.to_ascii_uppercase());
    assert_eq!(data[0]["scan_result_i"], 1);
    assert_eq!(data[1]["scan_result_i"], 5);
    assert_eq!(http(&gw.url, "GET", "/healthz", &[], "").status, 200);
}

#[test]
fn the_gateway_keeps_the_vendors_contract() {
    let f = sqlite_fixture(MockServer::start(Some(KEY)).unwrap(), &[]);
    let (mock, gw) = (&f.mock, &f.gw);
    let tok = TOKENS[4].1;
    let post = |body: &str, extra: &[(&str, &str)]| {
        let mut h = vec![("apikey", tok)];
        h.extend_from_slice(extra);
        http(&gw.url, "POST", "/v4/hash", &h, body)
    };
    let codes = [
        ("{}", 400060),
        ("not json", 400060),
        (r#"{"hash":"x"}"#, 400061),
        (r#"{"hash":[]}"#, 400062),
        (r#"{"hash":[42]}"#, 400064),
    ];
    for (body, want) in codes {
        let r = post(body, &[]);
        assert_eq!(
            (r.status, r.json()["error"]["code"].clone()),
            (400, json!(want)),
            "{body}"
        );
    }
    let many: Vec<String> = (0..1001).map(|i| format!("{i:064x}")).collect();
    let r = post_hashes(gw, tok, &many);
    assert_eq!(
        (r.status, r.json()["error"]["code"].clone()),
        (400, json!(400063))
    );
    let huge = format!(r#"{{"hash":["{}"]}}"#, "a".repeat(1 << 21));
    let r = post(&huge, &[]);
    assert_eq!(r.status, 400, "{}", &r.raw[..200.min(r.raw.len())]);
    let r = post(r#"{"hash":["ab"]}"#, &[("includescandetails", "2")]);
    assert_eq!(r.json()["error"]["code"], 400065);
    assert!(
        mock.requests().is_empty(),
        "a refused body reached upstream"
    );

    // Order kept, upper-case echo, invalid strings answered 5 without asking upstream,
    // repeats answered each time.
    mock.set(EICAR_SHA256, 1, 12);
    let md5 = "44d88612fea8a8f36de82e1278abb02f".to_string();
    mock.set(&md5, 1, 11);
    let asked = vec![
        "not-a-hash".to_string(),
        EICAR_SHA256.to_string(),
        md5.clone(),
        EICAR_SHA256.to_ascii_uppercase(),
    ];
    let r = post_hashes(gw, tok, &asked);
    assert_eq!(r.status, 200, "{}", r.raw);
    assert!(r.headers["content-type"].starts_with("application/json"));
    let data = r.json()["data"].as_array().unwrap().clone();
    assert_eq!(data.len(), 4);
    assert_eq!(data[0]["hash"], "NOT-A-HASH");
    assert_eq!(data[0]["scan_result_i"], 5);
    assert_eq!(data[0]["total_detected_avs"], -1);
    assert!(data[0]["data_id"].is_null());
    for i in [1, 3] {
        assert_eq!(data[i]["hash"], EICAR_SHA256.to_ascii_uppercase());
        assert_eq!(data[i]["total_detected_avs"], 12);
        assert!(data[i]["data_id"].is_string());
    }
    assert_eq!(data[2]["hash"], md5.to_ascii_uppercase());
    assert_eq!(data[2]["total_detected_avs"], 11);
    let upstream = upstream_hashes(mock);
    assert_eq!(upstream.len(), 2, "{upstream:?}");

    // Per-engine details are asked for when a client wants them (the stored answer has
    // none), and the SQLite store keeps them, as Redis does: the next details request, and
    // one for a hash the service knows nothing of (it has no details), are not asked again.
    let details_req = || {
        post(
            &json!({"hash": [EICAR_SHA256, "00".repeat(32)]}).to_string(),
            &[("includescandetails", "1")],
        )
    };
    let first = details_req();
    assert_eq!(first.status, 200, "{}", first.raw);
    assert_eq!(
        first.json()["data"][0]["scan_details"]["MockAV"]["scan_result_i"],
        1
    );
    assert!(mock.requests().last().unwrap().details);
    let asked = mock.requests().len();
    let r = details_req();
    assert_eq!(r.status, 200, "{}", r.raw);
    assert_eq!(r.json()["data"], first.json()["data"]);
    assert!(
        r.json()["data"][1].get("scan_details").is_none(),
        "{}",
        r.raw
    );
    assert_eq!(
        mock.requests().len(),
        asked,
        "details answers served from the SQLite store"
    );

    let r = http(&gw.url, "GET", "/v4/nothing", &[("apikey", tok)], "");
    assert_eq!(r.status, 404);
    let h = http(&gw.url, "GET", "/healthz", &[], "");
    assert_eq!(h.status, 200);
    assert_eq!(h.json()["status"], "ok");
}

/// The gateway spends the fleet's budget as an endpoint would: a batch is cut to what the key
/// has left, so the service never has to refuse one, and what is left out is deferred (429000)
/// for the clients to ask after the reset.
#[test]
fn the_gateway_cuts_upstream_batches_to_the_budget_left() {
    let f = sqlite_fixture(MockServer::start(Some(KEY)).unwrap(), &[]);
    let (mock, gw) = (&f.mock, &f.gw);
    mock.set_quota(5);
    let first: Vec<String> = (0..3).map(|i| format!("{i:064x}")).collect();
    assert_eq!(post_hashes(gw, TOKENS[0].1, &first).status, 200);
    // 2 left: of these 4 only 2 are asked.
    let more: Vec<String> = (10..14).map(|i| format!("{i:064x}")).collect();
    let r = post_hashes(gw, TOKENS[0].1, &more);
    assert_eq!(r.status, 200, "{}", r.raw);
    assert_eq!(r.json()["data"].as_array().unwrap().len(), 2, "{}", r.raw);
    let asked: usize = mock.requests().iter().map(|q| q.hashes.len()).sum();
    assert_eq!(asked, 5, "{:?}", mock.requests());
    assert!(
        mock.requests().iter().all(|q| q.status == 200),
        "no refused request"
    );
    // Nothing left: the rest waits for the reset.
    let r = post_hashes(gw, TOKENS[0].1, &more[2..]);
    assert_eq!(r.status, 429, "{}", r.raw);
    assert_eq!(r.json()["error"]["code"], 429000);
    assert!(mock.requests().iter().all(|q| q.status == 200));
    let metrics = http(&gw.url, "GET", "/metrics", &[], "").body;
    // Two left out of the second request, two more of the third.
    assert!(
        metrics.contains("hashsweep_gateway_upstream_deferred_total 4"),
        "{metrics}"
    );
}

#[test]
fn a_spent_upstream_quota_reaches_clients_as_429000_with_the_reset() {
    let f = sqlite_fixture(MockServer::start(Some(KEY)).unwrap(), &[]);
    let (mock, gw) = (&f.mock, &f.gw);
    mock.set_quota(3);
    let first: Vec<String> = (0..3).map(|i| format!("{i:064x}")).collect();
    let r = post_hashes(gw, TOKENS[0].1, &first);
    assert_eq!(r.status, 200, "{}", r.raw);
    let more: Vec<String> = (10..15).map(|i| format!("{i:064x}")).collect();
    let r = post_hashes(gw, TOKENS[0].1, &more);
    assert_eq!(r.status, 429, "{}", r.raw);
    assert_eq!(r.json()["error"]["code"], 429000);
    let reset = r
        .headers
        .get("x-ratelimit-reset-in")
        .expect("X-RateLimit-Reset-In");
    let secs: u64 = reset.trim_end_matches('s').parse().unwrap();
    assert!(secs > 80_000 && secs <= 86_400, "{reset}");
    let upstream_calls = mock.requests().len();
    // Still answered from the store; the spent quota is not asked again.
    let r = post_hashes(gw, TOKENS[0].1, &first);
    assert_eq!(r.status, 200);
    let r = post_hashes(gw, TOKENS[0].1, &more);
    assert_eq!(r.status, 429);
    assert_eq!(mock.requests().len(), upstream_calls);
    // A scanning endpoint stops on it as it would on the service's own 429000: what it
    // could not ask is deferred to its next run (exit 3), not failed.
    let tree = Tree::new();
    tree.file("new", b"never seen before");
    let out = scan_via(&gw.url, TOKENS[5].1, tree.path());
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(stderr(&out).contains("quota"), "{}", stderr(&out));
    assert_eq!(ndjson(&out)[0]["verdict"], "deferred");
}

#[test]
fn client_rate_caps_each_token_on_its_own() {
    let f = sqlite_fixture(
        MockServer::start(Some(KEY)).unwrap(),
        &["--client-rate", "2"],
    );
    let gw = &f.gw;
    let h = vec!["ab".repeat(32)];
    let statuses: Vec<u16> = (0..3)
        .map(|_| post_hashes(gw, TOKENS[6].1, &h).status)
        .collect();
    assert_eq!(statuses, [200, 200, 429]);
    let r = post_hashes(gw, TOKENS[6].1, &h);
    assert_eq!(r.json()["error"]["code"], 429001);
    let wait: u64 = r.headers["retry-after"].parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert_eq!(
        post_hashes(gw, TOKENS[7].1, &h).status,
        200,
        "another token is not limited"
    );
}

#[test]
fn the_upstream_key_reaches_no_client_and_no_log_line() {
    let f = sqlite_fixture(MockServer::start(Some(KEY)).unwrap(), &[]);
    let (mock, gw) = (&f.mock, f.gw);
    let mut seen = String::new();
    let tree = Tree::new();
    tree.file("a", b"aaa");
    tree.file("eicar", EICAR);
    let out = scan_via(&gw.url, TOKENS[1].1, tree.path());
    seen += &String::from_utf8_lossy(&out.stdout);
    seen += &stderr(&out);
    // An upstream error that echoes the key back.
    mock.push_fault(Fault::new(
        500,
        format!(r#"{{"error":{{"code":500000,"messages":["bad key {KEY}"]}}}}"#),
    ));
    mock.push_fault(Fault::new(
        500,
        format!(r#"{{"error":{{"code":500000,"messages":["bad key {KEY}"]}}}}"#),
    ));
    let r = post_hashes(&gw, TOKENS[1].1, &["ef".repeat(32)]);
    assert_eq!(r.status, 503, "{}", r.raw);
    seen += &r.raw;
    for (m, p) in [("GET", "/healthz"), ("GET", "/metrics"), ("GET", "/x")] {
        seen += &http(&gw.url, m, p, &[], "").raw;
    }
    seen += &post_hashes(&gw, "bad-token-xxxxxxxxxxxxx", &["ab".repeat(32)]).raw;
    let (_, log) = gw.stop();
    assert!(
        log.contains("endpoint1"),
        "the log names the token holder: {log}"
    );
    for (what, text) in [("client-visible bytes", &seen), ("gateway log", &log)] {
        assert!(!text.contains(KEY), "the upstream key is in the {what}");
        assert!(
            !text.contains(&KEY[..12]),
            "part of the upstream key is in the {what}"
        );
        assert!(
            !text.contains(TOKENS[1].1),
            "an endpoint token is in the {what}"
        );
    }
    assert!(!log.contains("bad-token-xxxxxxxxxxxxx"));
}

#[test]
fn sqlite_store_shares_verdicts_across_restarts() {
    let mock = MockServer::start(Some(KEY)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let tokens = tokens_file(dir.path());
    let store = format!("sqlite:{}", dir.path().join("verdicts.sqlite").display());
    mock.set(EICAR_SHA256, 1, 9);
    let h = vec![EICAR_SHA256.to_string(), "12".repeat(32)];
    let gw = Gateway::start(&mock, &store, &tokens, &[]);
    assert_eq!(post_hashes(&gw, TOKENS[0].1, &h).status, 200);
    let _ = gw.stop();
    let gw = Gateway::start(&mock, &store, &tokens, &[]);
    let r = post_hashes(&gw, TOKENS[0].1, &h);
    assert_eq!(r.json()["data"][0]["total_detected_avs"], 9);
    assert_eq!(r.json()["data"][1]["scan_result_i"], 5);
    assert_eq!(mock.requests().len(), 1);
}

#[test]
fn sigterm_lets_an_upstream_lookup_in_flight_finish_and_stores_its_answers() {
    let Fixture {
        mock,
        dir,
        tokens,
        gw,
    } = sqlite_fixture(MockServer::start(Some(KEY)).unwrap(), &[]);
    mock.set(EICAR_SHA256, 1, 4);
    mock.push_fault(Fault::of(hashsweep_mock::FaultKind::Stall(
        Duration::from_millis(1500),
    )));
    let url = gw.url.clone();
    let client = std::thread::spawn(move || {
        let fake = Gateway {
            child: Command::new("true").spawn().unwrap(),
            url,
            log: Arc::default(),
        };
        post_hashes(&fake, TOKENS[0].1, &[EICAR_SHA256.to_string()])
    });
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    let (status, log) = gw.stop();
    assert!(status.success(), "{status:?}: {log}");
    let r = client.join().unwrap();
    assert_eq!(r.status, 200, "{}", r.raw);
    assert_eq!(r.json()["data"][0]["scan_result_i"], 1);
    assert!(started.elapsed() < Duration::from_secs(8));
    // The answer was stored before the exit: a new instance does not ask again.
    let asked = mock.requests().len();
    let gw = Gateway::start(&mock, &sqlite_store(dir.path()), &tokens, &[]);
    let r = post_hashes(&gw, TOKENS[0].1, &[EICAR_SHA256.to_string()]);
    assert_eq!(r.json()["data"][0]["total_detected_avs"], 4);
    assert_eq!(
        mock.requests().len(),
        asked,
        "the answer was not stored before exit"
    );
}

#[test]
fn plain_http_off_loopback_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = tokens_file(dir.path());
    let out = run(cmd()
        .env("METADEFENDER_APIKEY", KEY)
        .args([
            "serve",
            "--listen",
            "0.0.0.0:0",
            "--store",
            "redis://127.0.0.1:1/0",
        ])
        .arg("--tokens")
        .arg(&tokens));
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("--insecure-http"), "{}", stderr(&out));
    let bad = dir.path().join("bad-tokens");
    std::fs::write(&bad, "web01 short\n").unwrap();
    let out = run(cmd()
        .env("METADEFENDER_APIKEY", KEY)
        .args(["serve", "--store", "redis://127.0.0.1:1/0", "--tokens"])
        .arg(&bad));
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains(":1:"), "{}", stderr(&out));
}

#[test]
fn a_port_already_taken_is_a_listen_error_with_its_cause_said_once() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let tokens = tokens_file(dir.path());
    let out = run(cmd()
        .env("METADEFENDER_APIKEY", KEY)
        .args(["serve", "--listen", &addr.to_string()])
        .args(["--store", "redis://127.0.0.1:1/0", "--tokens"])
        .arg(&tokens));
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let err = stderr(&out);
    // Not flattened into a usage message: the listen failure, then its cause, each once.
    assert!(
        err.contains(&format!("hashsweep: error: cannot listen on {addr}: ")),
        "{err}"
    );
    assert!(err.contains("in use"), "{err}");
    assert_eq!(
        err.matches("in use").count(),
        1,
        "the cause is repeated: {err}"
    );
}

#[test]
fn https_with_tls_cert_and_key_and_a_client_that_trusts_its_ca() {
    let mock = MockServer::start(Some(KEY)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let tokens = tokens_file(dir.path());
    let cert =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let (crt, key) = (dir.path().join("gw.crt"), dir.path().join("gw.key"));
    std::fs::write(&crt, cert.cert.pem()).unwrap();
    std::fs::write(&key, cert.signing_key.serialize_pem()).unwrap();
    let (c, k) = (crt.to_str().unwrap(), key.to_str().unwrap());
    let gw = Gateway::start(
        &mock,
        &sqlite_store(dir.path()),
        &tokens,
        &["--tls-cert", c, "--tls-key", k],
    );
    assert!(gw.url.starts_with("https://127.0.0.1:"), "{}", gw.url);
    mock.set(EICAR_SHA256, 1, 8);
    let tree = Tree::new();
    tree.file("eicar", EICAR);
    let scan = |extra: &[&str]| {
        run(cmd()
            .env("METADEFENDER_APIKEY", TOKENS[3].1)
            .args(["scan", "--retries", "0", "--api-url", &gw.url])
            .args(extra)
            .arg(tree.path()))
    };
    // Not trusted: the lookup fails (never clean), and says why.
    let out = scan(&[]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert_eq!(ndjson(&out)[0]["verdict"], "error");
    assert!(
        ndjson(&out)[0]["error"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("certificate"),
        "{}",
        ndjson(&out)[0]
    );
    // Trusted with --ca-cert: the verdict comes through the TLS gateway.
    let out = scan(&["--ca-cert", c]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert_eq!(ndjson(&out)[0]["verdict"], "infected");
    assert_eq!(mock.requests().len(), 1);
}

#[test]
fn one_instance_asks_once_per_digest_under_concurrent_overlapping_requests() {
    // Review finding: with SQLite, a lookup landing between a request's read and its entry in
    // the in-flight table was asked again.
    let f = sqlite_fixture(
        MockServer::start_on("127.0.0.1:0", Some(KEY), Duration::from_millis(5)).unwrap(),
        &[],
    );
    let (mock, gw) = (&f.mock, &f.gw);
    // Each round: fresh digests, requests overlapping them arriving a few ms apart, so some
    // read the store just before another's lookup lands.
    for round in 0..15u64 {
        let pool: Vec<String> = (0..300u64)
            .map(|i| format!("{:064x}", round * 1_000_000 + i * 7919 + 1))
            .collect();
        std::thread::scope(|s| {
            for t in 0..16u64 {
                let pool = &pool;
                let gw = &gw;
                s.spawn(move || {
                    std::thread::sleep(Duration::from_millis(t * 4));
                    let start = (t * 37 % 300) as usize;
                    let hashes: Vec<String> = (0..150)
                        .map(|k| pool[(start + k * 2) % 300].clone())
                        .collect();
                    let r = post_hashes(gw, TOKENS[(t % 8) as usize].1, &hashes);
                    assert_eq!(r.status, 200, "{}", r.raw);
                    assert_eq!(r.json()["data"].as_array().unwrap().len(), 150);
                });
            }
        });
    }
    let asked = upstream_hashes(mock);
    let distinct: HashSet<&String> = asked.iter().collect();
    assert_eq!(asked.len(), distinct.len(), "a digest was asked twice");
}

#[test]
fn sigterm_stores_answers_whose_client_went_away() {
    // Review finding: a lookup whose client disconnected was dropped at shutdown, its answer
    // (already paid for) never stored.
    let Fixture {
        mock,
        dir,
        tokens,
        gw,
    } = sqlite_fixture(MockServer::start(Some(KEY)).unwrap(), &[]);
    mock.set(EICAR_SHA256, 1, 6);
    mock.push_fault(Fault::of(hashsweep_mock::FaultKind::Stall(
        Duration::from_millis(1500),
    )));
    {
        let addr: SocketAddr = gw.url.trim_start_matches("http://").parse().unwrap();
        let mut s = TcpStream::connect(addr).unwrap();
        let body = json!({"hash": [EICAR_SHA256]}).to_string();
        let req = format!(
            "POST /v4/hash HTTP/1.1\r\nHost: x\r\napikey: {}\r\nContent-Length: {}\r\n\r\n{body}",
            TOKENS[0].1,
            body.len()
        );
        s.write_all(req.as_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis(300));
    } // the client hangs up while the upstream lookup runs
    std::thread::sleep(Duration::from_millis(200));
    let (status, log) = gw.stop();
    assert!(status.success(), "{log}");
    assert_eq!(mock.requests().len(), 1);
    let gw = Gateway::start(&mock, &sqlite_store(dir.path()), &tokens, &[]);
    let r = post_hashes(&gw, TOKENS[0].1, &[EICAR_SHA256.to_string()]);
    assert_eq!(r.json()["data"][0]["total_detected_avs"], 6);
    assert_eq!(mock.requests().len(), 1, "the answer was lost at shutdown");
}

#[test]
fn beyond_max_pending_new_misses_get_503_and_joining_ones_still_wait() {
    let f = sqlite_fixture(
        MockServer::start(Some(KEY)).unwrap(),
        &["--max-pending", "5"],
    );
    let (mock, gw) = (&f.mock, &f.gw);
    mock.push_fault(Fault::of(hashsweep_mock::FaultKind::Stall(
        Duration::from_millis(1500),
    )));
    let first: Vec<String> = (0..5).map(|i| format!("{i:064x}")).collect();
    std::thread::scope(|s| {
        let slow = s.spawn(|| post_hashes(gw, TOKENS[0].1, &first));
        std::thread::sleep(Duration::from_millis(400));
        // Five digests wait for the upstream: a new one is refused, at once.
        let started = Instant::now();
        let r = post_hashes(gw, TOKENS[1].1, &[format!("{:064x}", 99)]);
        assert_eq!(r.status, 503, "{}", r.raw);
        assert_eq!(r.json()["error"]["code"], 503000);
        assert!(r.headers.contains_key("retry-after"));
        assert!(started.elapsed() < Duration::from_millis(800));
        // One already on its way is joined, not refused.
        let r = post_hashes(gw, TOKENS[2].1, &first[..1]);
        assert_eq!(r.status, 200, "{}", r.raw);
        assert_eq!(slow.join().unwrap().status, 200);
    });
    // Once they landed there is room again.
    let r = post_hashes(gw, TOKENS[1].1, &[format!("{:064x}", 99)]);
    assert_eq!(r.status, 200, "{}", r.raw);
    assert_eq!(upstream_hashes(mock).len(), 6);
    let m = http(&gw.url, "GET", "/metrics", &[], "").body;
    assert!(m.contains("hashsweep_gateway_refused_busy_total 1"), "{m}");
}

#[test]
fn client_rate_is_shared_by_the_instances_on_one_redis() {
    if !redis_available() {
        return;
    }
    // The limit counts per calendar minute: keep clear of a minute boundary.
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    if secs % 60 > 50 {
        std::thread::sleep(Duration::from_secs(61 - secs % 60));
    }
    let mock = MockServer::start(Some(KEY)).unwrap();
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let tokens = tokens_file(dir.path());
    let rate = ["--client-rate", "3"];
    let a = Gateway::start(&mock, &redis.url(), &tokens, &rate);
    let b = Gateway::start(&mock, &redis.url(), &tokens, &rate);
    let h = vec!["ab".repeat(32)];
    let statuses: Vec<u16> = [&a, &b, &a, &b]
        .iter()
        .map(|gw| post_hashes(gw, TOKENS[6].1, &h).status)
        .collect();
    assert_eq!(
        statuses,
        [200, 200, 200, 429],
        "3 a minute across both instances"
    );
    let r = post_hashes(&a, TOKENS[6].1, &h);
    assert_eq!(r.json()["error"]["code"], 429001);
    let wait: u64 = r.headers["retry-after"].parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert_eq!(
        post_hashes(&b, TOKENS[7].1, &h).status,
        200,
        "another token is not limited"
    );
}
