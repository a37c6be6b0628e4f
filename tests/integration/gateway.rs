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

/// Start `redis-server` on `port` (no persistence, loopback only) in `dir`, with `extra`
/// arguments, and wait until it answers PING. Shared by the single-node and cluster tests.
fn spawn_redis(port: u16, dir: &Path, extra: &[&str]) -> Child {
    let mut child = Command::new("redis-server")
        .args(["--port", &port.to_string()])
        .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .args(extra)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect(
            "redis-server must be on PATH for the gateway tests (apt-get install redis-server)",
        );
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if redis_command(port, "PING").is_some_and(|r| r.starts_with("+PONG")) {
            return child;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("redis-server did not start on port {port}");
}

/// One inline command to the Redis on `port`; the raw reply (one read, up to 64 KiB).
fn redis_command(port: u16, line: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(format!("{line}\r\n").as_bytes()).ok()?;
    let mut buf = vec![0u8; 64 * 1024];
    let n = s.read(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
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
        self.child = Some(spawn_redis(self.port, self.dir.path(), &[]));
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// One inline command; the raw reply.
    fn command(&self, line: &str) -> Option<String> {
        redis_command(self.port, line)
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
    /// The admin listener (`/metrics`, detailed `/healthz`), when it has one.
    admin: Option<String>,
    log: Arc<Mutex<Vec<String>>>,
}

impl Gateway {
    /// With an admin listener on a free loopback port.
    fn start(mock: &MockServer, store: &str, tokens: &Path, extra: &[&str]) -> Gateway {
        Gateway::spawn(mock, store, tokens, extra, true, |_| {})
    }

    /// `admin`: also `--admin-listen 127.0.0.1:0`; `configure` may change the command (limits).
    fn spawn(
        mock: &MockServer,
        store: &str,
        tokens: &Path,
        extra: &[&str],
        admin: bool,
        configure: impl FnOnce(&mut Command),
    ) -> Gateway {
        let mut command = cmd();
        configure(&mut command);
        command.args(["serve", "--listen", "127.0.0.1:0", "--log", "debug"]);
        if admin {
            command.args(["--admin-listen", "127.0.0.1:0"]);
        }
        let mut child = command
            .env("METADEFENDER_APIKEY", KEY)
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
                let started = line.split("listening on ").nth(1).map(|rest| {
                    let first =
                        |s: &str| s.split_whitespace().next().unwrap_or_default().to_string();
                    (first(rest), rest.split("; admin on ").nth(1).map(first))
                });
                // Logged before the start is told, so `log()` has the line once started.
                sink.lock().unwrap().push(line);
                if let Some(urls) = started {
                    let _ = tx.send(urls);
                }
            }
        });
        let (url, admin) = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("gateway did not start: {:?}", log.lock().unwrap()));
        Gateway {
            child,
            url,
            admin,
            log,
        }
    }

    /// The admin listener's URL.
    fn admin(&self) -> &str {
        self.admin.as_deref().expect("started with --admin-listen")
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
        // A failed test shows the gateway's side (its last lines) next to the test's.
        if std::thread::panicking() {
            let log = self.log.lock().map(|l| l.clone()).unwrap_or_default();
            let tail = &log[log.len().saturating_sub(80)..];
            eprintln!(
                "--- gateway {} log, last {} lines ---",
                self.url,
                tail.len()
            );
            for line in tail {
                eprintln!("{line}");
            }
        }
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
    // The gateway may answer and close before the whole body is sent (a declared length over
    // the limit is refused at once): the write then fails, and the answer is what counts.
    let _ = s.write_all(req.as_bytes());
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
        let m = http(gw.admin(), "GET", "/metrics", &[], "").body;
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
    let m = http(gw.admin(), "GET", "/metrics", &[], "").body;
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
    // Written to a pipe: plain text, no terminal colours.
    assert!(
        !log.contains('\u{1b}'),
        "ANSI escapes in a piped log: {log:?}"
    );
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
    let h = http(gw.admin(), "GET", "/healthz", &[], "");
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
    let metrics = http(gw.admin(), "GET", "/metrics", &[], "").body;
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
        seen += &http(gw.admin(), m, p, &[], "").raw;
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
            admin: None,
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
    let m = http(gw.admin(), "GET", "/metrics", &[], "").body;
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

// ---- Hardening (issue 18): slow clients, a stuck store, forged verdicts, budgets, internals.

/// Every piece of `key` of 8 characters, lower-cased: none may appear in what clients see.
fn key_pieces(key: &str) -> Vec<String> {
    let k = key.to_ascii_lowercase();
    k.as_bytes()
        .windows(8)
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .collect()
}

/// Read until the peer closes (`true`) or `limit` passes (`false`).
fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
}

/// A `hashsweep serve` started with its open-file limit at `soft` and `hard`.
fn gateway_with_nofile(
    mock: &MockServer,
    store: &str,
    tokens: &Path,
    extra: &[&str],
    (soft, hard): (u64, u64),
) -> Gateway {
    use std::os::unix::process::CommandExt as _;
    Gateway::spawn(mock, store, tokens, extra, true, |c| {
        // SAFETY: between fork and exec the closure only makes the setrlimit system call
        // (async-signal-safe; no allocation, no locks).
        unsafe {
            c.pre_exec(move || rlimit::setrlimit(rlimit::Resource::NOFILE, soft, hard));
        }
    })
}

/// Raise this test process's open-file limit to at least 4096 (the hard one too, when it is
/// low and we may: root on a CI machine); the soft limit then.
fn raise_own_nofile() -> u64 {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
    if soft < 4096 {
        let _ = rlimit::setrlimit(rlimit::Resource::NOFILE, 4096, hard.max(4096));
    }
    rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap().0
}

#[test]
fn the_soft_open_file_limit_is_raised_to_the_hard_one_and_caps_connections() {
    let own = raise_own_nofile();
    assert!(
        own >= 4096,
        "the test needs 4096 open files, it may have {own}"
    );
    let f = sqlite_fixture(MockServer::start(Some(KEY)).unwrap(), &[]);
    let gw = gateway_with_nofile(
        &f.mock,
        &sqlite_store(f.dir.path()),
        &f.tokens,
        &[],
        (1024, 4096),
    );
    // 4096 less an eighth: the soft limit of 1024 was raised.
    assert!(
        gw.log().contains("at most 3584 connections"),
        "{}",
        gw.log()
    );
}

#[test]
fn an_explicit_max_connections_over_the_open_file_limit_is_cut_to_it() {
    let f = sqlite_fixture(MockServer::start(Some(KEY)).unwrap(), &[]);
    let gw = gateway_with_nofile(
        &f.mock,
        &sqlite_store(f.dir.path()),
        &f.tokens,
        &["--max-connections", "5000"],
        (1024, 1024),
    );
    let log = gw.log();
    let most: usize = log
        .split("at most ")
        .nth(1)
        .and_then(|rest| rest.split(" connections").next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no connection cap in the start line: {log}"));
    assert!(most <= 960, "{log}");
    assert!(
        log.contains("--max-connections 5000 is more than the open-file limit 1024 allows"),
        "{log}"
    );
}

#[test]
fn under_a_1024_file_limit_950_silent_connections_are_closed_and_an_endpoint_is_served() {
    // This test holds some 950 sockets itself.
    let soft = raise_own_nofile();
    assert!(
        soft >= 2048,
        "the test needs 2048 open files, it may have {soft}"
    );
    let mock = MockServer::start(Some(KEY)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let tokens = tokens_file(dir.path());
    let extra = [
        "--first-request-timeout",
        "3s",
        "--header-timeout",
        "2s",
        "--idle-timeout",
        "3s",
    ];
    let gw = gateway_with_nofile(
        &mock,
        &sqlite_store(dir.path()),
        &tokens,
        &extra,
        (1024, 1024),
    );
    let started = gw.log();
    assert!(started.contains("at most 896 connections"), "{started}");
    let addr: SocketAddr = gw.url.trim_start_matches("http://").parse().unwrap();
    let mut silent: Vec<TcpStream> = (0..950)
        .map(|i| {
            TcpStream::connect_timeout(&addr, Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("silent connection {i}: {e}"))
        })
        .collect();
    let t0 = Instant::now();
    mock.set(EICAR_SHA256, 1, 30);
    let r = post_hashes(&gw, TOKENS[1].1, &[EICAR_SHA256.to_string()]);
    assert_eq!(r.status, 200, "{}", r.raw);
    assert_eq!(r.json()["data"][0]["scan_result_i"], 1);
    assert!(
        t0.elapsed() < Duration::from_secs(40),
        "served after {:?}",
        t0.elapsed()
    );
    // Every silent connection was closed by the gateway (not by us).
    let mut open = 0;
    for s in &mut silent {
        open += usize::from(!closed_within(s, Duration::from_secs(15)));
    }
    assert_eq!(open, 0, "silent connections still open");
    let m = http(gw.admin(), "GET", "/metrics", &[], "").body;
    assert!(
        m.contains("hashsweep_gateway_connections_timed_out_total{phase=\"first_request\"}"),
        "{m}"
    );
}

#[test]
fn slow_headers_and_idle_keep_alive_connections_are_closed_on_their_deadlines() {
    let extra = [
        "--first-request-timeout",
        "5s",
        "--header-timeout",
        "1s",
        "--idle-timeout",
        "2s",
    ];
    let f = sqlite_fixture(MockServer::start(Some(KEY)).unwrap(), &extra);
    let addr: SocketAddr = f.gw.url.trim_start_matches("http://").parse().unwrap();
    // Slowloris: a header line, then a byte now and then; the header deadline (1 s from the
    // first byte) closes it, although bytes keep coming.
    let mut slow = TcpStream::connect(addr).unwrap();
    let t0 = Instant::now();
    slow.write_all(b"POST /v4/hash HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let mut closed = false;
    while t0.elapsed() < Duration::from_secs(6) {
        if slow.write_all(b"X").is_err() || closed_within(&mut slow, Duration::from_millis(300)) {
            closed = true;
            break;
        }
    }
    assert!(closed, "a slowloris connection stayed open");
    assert!(
        t0.elapsed() < Duration::from_secs(4),
        "closed after {:?}",
        t0.elapsed()
    );
    // Keep-alive: one request answered, then the connection idles and is closed after 2 s.
    let mut ka = TcpStream::connect(addr).unwrap();
    ka.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = ka.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let t1 = Instant::now();
    assert!(
        closed_within(&mut ka, Duration::from_secs(6)),
        "an idle connection stayed open"
    );
    let idle = t1.elapsed();
    assert!(
        idle >= Duration::from_millis(1500) && idle < Duration::from_secs(5),
        "{idle:?}"
    );
}

#[test]
fn a_declared_body_over_1_mib_is_refused_at_once_and_a_stalled_body_times_out() {
    let f = sqlite_fixture(
        MockServer::start(Some(KEY)).unwrap(),
        &["--body-timeout", "2s"],
    );
    let addr: SocketAddr = f.gw.url.trim_start_matches("http://").parse().unwrap();
    let exchange = |head: String, body: &[u8]| {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(body).unwrap();
        let t0 = Instant::now();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut buf = vec![0u8; 4096];
        let n = s.read(&mut buf).unwrap_or(0);
        (
            String::from_utf8_lossy(&buf[..n]).into_owned(),
            t0.elapsed(),
        )
    };
    let head = |len: u64| {
        format!(
            "POST /v4/hash HTTP/1.1\r\nHost: x\r\napikey: {}\r\ncontent-type: application/json\r\nContent-Length: {len}\r\n\r\n",
            TOKENS[1].1
        )
    };
    let (reply, took) = exchange(head(2 << 30), b"");
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    assert!(reply.contains("400063"), "{reply}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    let (reply, took) = exchange(head(1000), br#"{"hash":["#);
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert!(reply.contains("408000"), "{reply}");
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(10),
        "{took:?}"
    );
    assert!(f.mock.requests().is_empty());
}

#[test]
fn a_chunked_body_over_1_mib_is_counted_as_its_size_and_a_broken_one_is_not_called_large() {
    let f = sqlite_fixture(MockServer::start(Some(KEY)).unwrap(), &[]);
    let addr: SocketAddr = f.gw.url.trim_start_matches("http://").parse().unwrap();
    let head = format!(
        "POST /v4/hash HTTP/1.1\r\nHost: x\r\napikey: {}\r\ncontent-type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        TOKENS[1].1
    );
    let exchange = |body: &[u8]| {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(head.as_bytes()).unwrap();
        // The gateway may answer and close before all of a large body is written.
        let _ = s.write_all(body);
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut reply = Vec::new();
        let _ = s.read_to_end(&mut reply);
        String::from_utf8_lossy(&reply).into_owned()
    };
    // 17 chunks of 64 KiB: over 1 MiB with no Content-Length to refuse it by.
    let chunk = format!("10000\r\n{}\r\n", " ".repeat(1 << 16));
    let reply = exchange(format!("{}0\r\n\r\n", chunk.repeat(17)).as_bytes());
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    assert!(reply.contains("400063"), "{reply}");
    // A chunk size that is not hex: the body breaks off.
    let reply = exchange(b"5\r\n{\"has\r\nzz\r\n");
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    assert!(reply.contains("400060"), "{reply}");
    assert!(!reply.contains("larger than 1 MiB"), "{reply}");
    let counted = |reason: &str| {
        let m = http(f.gw.admin(), "GET", "/metrics", &[], "").body;
        let line = format!("hashsweep_gateway_client_refused_total{{reason=\"{reason}\"}} ");
        m.lines()
            .find_map(|l| l.strip_prefix(line.as_str()))
            .map(|n| n.trim().to_string())
            .unwrap_or_default()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while counted("body_broken").is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(counted("body_size"), "1");
    assert_eq!(counted("body_broken"), "1");
    assert!(f.mock.requests().is_empty());
}

/// A TCP server that answers every read with bytes that are not RESP, until dropped.
struct GarbageServer {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl GarbageServer {
    fn start(port: u16) -> GarbageServer {
        let l = TcpListener::bind(("127.0.0.1", port)).unwrap();
        l.set_nonblocking(true).unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut conns: Vec<TcpStream> = Vec::new();
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok((s, _)) = l.accept() {
                    s.set_nonblocking(true).unwrap();
                    conns.push(s);
                }
                let mut buf = [0u8; 4096];
                for c in &mut conns {
                    if matches!(c.read(&mut buf), Ok(n) if n > 0) {
                        let _ = c.write_all(b"%%garbage \x01\x02\r\n");
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        GarbageServer {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for GarbageServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Post until a 200 (or `limit`): the reply and how long it took.
fn post_until_ok(gw: &Gateway, hashes: &[String], limit: Duration) -> (Reply, Duration) {
    let t0 = Instant::now();
    loop {
        let r = post_hashes(gw, TOKENS[1].1, hashes);
        if r.status == 200 || t0.elapsed() > limit {
            return (r, t0.elapsed());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn after_garbage_answers_or_a_refused_auth_the_store_is_used_again_within_seconds() {
    if !redis_available() {
        return;
    }
    let mock = MockServer::start(Some(KEY)).unwrap();
    mock.set(EICAR_SHA256, 1, 30);
    let dir = tempfile::tempdir().unwrap();
    let tokens = tokens_file(dir.path());
    let hashes = vec![EICAR_SHA256.to_string()];

    // Garbage, then a healthy Redis on the same address.
    let port = free_port();
    let garbage = GarbageServer::start(port);
    let mut redis = Redis {
        port,
        dir: tempfile::tempdir().unwrap(),
        child: None,
    };
    let gw = Gateway::start(&mock, &redis.url(), &tokens, &[]);
    for _ in 0..3 {
        let r = post_hashes(&gw, TOKENS[1].1, &hashes);
        assert_eq!(r.status, 503, "{}", r.raw);
    }
    drop(garbage);
    redis.resume();
    let (r, took) = post_until_ok(&gw, &hashes, Duration::from_secs(30));
    assert_eq!(
        r.status, 200,
        "still {} after {took:?}: {}",
        r.status, r.raw
    );
    assert!(took < Duration::from_secs(10), "recovered after {took:?}");
    assert_eq!(r.json()["data"][0]["scan_result_i"], 1);
    drop(gw);

    // AUTH refused (wrong password), then the password is set right.
    let (right, wrong) = ("store-pass-0123456789", "some-other-pass-987654");
    assert!(
        redis
            .command(&format!("CONFIG SET requirepass {wrong}"))
            .is_some()
    );
    let url = format!("redis://:{right}@127.0.0.1:{port}/0");
    let gw = Gateway::start(&mock, &url, &tokens, &[]);
    for _ in 0..3 {
        let r = post_hashes(&gw, TOKENS[1].1, &hashes);
        assert_eq!(r.status, 503, "{}", r.raw);
    }
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(format!("AUTH {wrong}\r\nCONFIG SET requirepass {right}\r\n").as_bytes())
        .unwrap();
    let mut buf = [0u8; 64];
    let _ = s.read(&mut buf);
    let (r, took) = post_until_ok(&gw, &hashes, Duration::from_secs(30));
    assert_eq!(
        r.status, 200,
        "still {} after {took:?}: {}",
        r.status, r.raw
    );
    assert!(took < Duration::from_secs(10), "recovered after {took:?}");
    let (_, log) = gw.stop();
    assert!(!log.contains(right), "the store password is in the log");
}

/// One command to Redis in RESP (binary-safe arguments); the raw reply.
fn redis_resp(port: u16, args: &[&[u8]]) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut req = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        req.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        req.extend_from_slice(a);
        req.extend_from_slice(b"\r\n");
    }
    s.write_all(&req).unwrap();
    let mut buf = vec![0u8; 65536];
    let n = s.read(&mut buf).unwrap_or(0);
    buf.truncate(n);
    buf
}

#[test]
fn with_a_store_key_a_forged_verdict_is_a_miss_asked_again_and_counted() {
    if !redis_available() {
        return;
    }
    let mock = MockServer::start(Some(KEY)).unwrap();
    mock.set(EICAR_SHA256, 1, 30);
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let tokens = tokens_file(dir.path());
    let key_file = dir.path().join("store.key");
    std::fs::write(&key_file, format!("{}\n", "5a".repeat(32))).unwrap();
    let key_arg = key_file.to_str().unwrap();
    let gw = Gateway::start(&mock, &redis.url(), &tokens, &["--store-key-file", key_arg]);
    let hashes = vec![EICAR_SHA256.to_string()];
    let r = post_hashes(&gw, TOKENS[1].1, &hashes);
    assert_eq!(r.json()["data"][0]["scan_result_i"], 1, "{}", r.raw);
    let key = format!("hashsweep:v1:sha256:{}", EICAR_SHA256.to_ascii_lowercase());
    let stored = redis_resp(redis.port, &[b"GET", key.as_bytes()]);
    assert!(
        stored.starts_with(b"$"),
        "{}",
        String::from_utf8_lossy(&stored)
    );
    // Whatever answers on the Redis address writes a clean verdict.
    let forged = redis_resp(redis.port, &[b"SET", key.as_bytes(), br#"{"c":0,"t":0}"#]);
    assert!(forged.starts_with(b"+OK"));
    let r = post_hashes(&gw, TOKENS[1].1, &hashes);
    assert_eq!(r.status, 200, "{}", r.raw);
    assert_eq!(
        r.json()["data"][0]["scan_result_i"],
        1,
        "a forged verdict was served"
    );
    assert_eq!(
        mock.requests().len(),
        2,
        "the forged value was not asked again"
    );
    let m = http(gw.admin(), "GET", "/metrics", &[], "").body;
    assert!(m.contains("hashsweep_gateway_store_forged_total"), "{m}");
    // A second instance with the same key file reads the re-signed answer without asking.
    let gw2 = Gateway::start(&mock, &redis.url(), &tokens, &["--store-key-file", key_arg]);
    assert_eq!(
        post_hashes(&gw2, TOKENS[2].1, &hashes).json()["data"][0]["scan_result_i"],
        1
    );
    assert_eq!(mock.requests().len(), 2);
    // A key file that is too short is refused at start.
    std::fs::write(&key_file, "short").unwrap();
    let out = run_with_timeout(
        cmd()
            .env("METADEFENDER_APIKEY", KEY)
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--store",
                &redis.url(),
                "--store-key-file",
                key_arg,
            ])
            .arg("--tokens")
            .arg(&tokens),
        Duration::from_secs(15),
    );
    assert_ne!(code(&out), 0);
    assert!(
        stderr(&out).contains("at least 32 bytes"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn with_a_store_key_a_signed_verdict_replayed_after_its_expiry_is_asked_again() {
    if !redis_available() {
        return;
    }
    let mock = MockServer::start(Some(KEY)).unwrap();
    mock.set(EICAR_SHA256, 1, 30);
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let tokens = tokens_file(dir.path());
    let key_file = dir.path().join("store.key");
    std::fs::write(&key_file, "6b".repeat(32)).unwrap();
    let extra = [
        "--store-key-file",
        key_file.to_str().unwrap(),
        "--detection-ttl",
        "1s",
    ];
    let gw = Gateway::start(&mock, &redis.url(), &tokens, &extra);
    let hashes = vec![EICAR_SHA256.to_string()];
    let r = post_hashes(&gw, TOKENS[1].1, &hashes);
    assert_eq!(r.json()["data"][0]["scan_result_i"], 1, "{}", r.raw);
    assert_eq!(mock.requests().len(), 1);
    // What the gateway signed, as something on the Redis address could keep a copy of it.
    let key = format!("hashsweep:v1:sha256:{}", EICAR_SHA256.to_ascii_lowercase());
    let reply = redis_resp(redis.port, &[b"GET", key.as_bytes()]);
    let header_end = reply.windows(2).position(|w| w == b"\r\n").unwrap();
    let len: usize = std::str::from_utf8(&reply[1..header_end])
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{}", String::from_utf8_lossy(&reply)));
    let sealed = reply[header_end + 2..header_end + 2 + len].to_vec();
    // Past its expiry (1 s), the copy is written back, with no EX: a replay.
    std::thread::sleep(Duration::from_millis(2100));
    let replayed = redis_resp(redis.port, &[b"SET", key.as_bytes(), &sealed]);
    assert!(replayed.starts_with(b"+OK"));
    let r = post_hashes(&gw, TOKENS[1].1, &hashes);
    assert_eq!(r.status, 200, "{}", r.raw);
    assert_eq!(
        mock.requests().len(),
        2,
        "a replayed verdict past its signed expiry was served"
    );
}

#[test]
fn client_budget_caps_each_token_across_instances_and_cached_answers_still_come() {
    if !redis_available() {
        return;
    }
    let mock = MockServer::start(Some(KEY)).unwrap();
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let tokens = tokens_file(dir.path());
    let extra = ["--client-budget", "3"];
    let gw1 = Gateway::start(&mock, &redis.url(), &tokens, &extra);
    let gw2 = Gateway::start(&mock, &redis.url(), &tokens, &extra);
    let h = |c: &str| c.repeat(64);
    let r = post_hashes(&gw1, TOKENS[1].1, &[h("a"), h("b")]);
    assert_eq!(r.json()["data"].as_array().unwrap().len(), 2, "{}", r.raw);
    // One left of three: the first miss is asked, the other left out.
    let r = post_hashes(&gw2, TOKENS[1].1, &[h("c"), h("d")]);
    assert_eq!(r.status, 200, "{}", r.raw);
    let data = r.json()["data"].as_array().unwrap().clone();
    assert_eq!(data.len(), 1, "{}", r.raw);
    assert_eq!(data[0]["hash"], h("C"));
    let r = post_hashes(&gw1, TOKENS[1].1, &[h("e")]);
    assert_eq!(r.status, 429, "{}", r.raw);
    assert_eq!(r.json()["error"]["code"], 429000);
    let reset: u64 = r.headers["x-ratelimit-reset-in"]
        .trim_end_matches('s')
        .parse()
        .unwrap();
    assert!((1..=86_400).contains(&reset), "{reset}");
    // Cached answers are still served to that token; other tokens have their own budget.
    let r = post_hashes(&gw2, TOKENS[1].1, &[h("a"), h("c")]);
    assert_eq!(r.status, 200, "{}", r.raw);
    assert_eq!(r.json()["data"].as_array().unwrap().len(), 2);
    let r = post_hashes(&gw1, TOKENS[2].1, &[h("e"), h("d")]);
    assert_eq!(r.json()["data"].as_array().unwrap().len(), 2, "{}", r.raw);
    let mut asked = upstream_hashes(&mock);
    asked.sort();
    assert_eq!(asked, vec![h("A"), h("B"), h("C"), h("D"), h("E")]);
}

/// With `--client-budget 3` on `store`: misses whose lookups fail (the upstream answers 503)
/// spend none of the budget, so the same misses are answered once the upstream is back.
fn failed_lookups_give_their_client_budget_back(store: &str) {
    let mock = MockServer::start(Some(KEY)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let tokens = tokens_file(dir.path());
    let gw = Gateway::start(&mock, store, &tokens, &["--client-budget", "3"]);
    let hashes: Vec<String> = ["1", "2", "3"].iter().map(|c| c.repeat(64)).collect();
    for _ in 0..40 {
        mock.push_fault(Fault::new(503, "upstream down"));
    }
    // An endpoint retrying through the outage: each attempt takes, then gives back, 3.
    for attempt in 0..3 {
        let r = post_hashes(&gw, TOKENS[1].1, &hashes);
        assert_eq!(r.status, 503, "attempt {attempt}: {}", r.raw);
        assert_eq!(r.json()["error"]["code"], 503000, "{}", r.raw);
    }
    mock.clear_faults();
    let r = post_hashes(&gw, TOKENS[1].1, &hashes);
    assert_eq!(
        r.status, 200,
        "the budget was spent by failed lookups: {}",
        r.raw
    );
    assert_eq!(r.json()["data"].as_array().unwrap().len(), 3, "{}", r.raw);
    // Answered lookups do spend it.
    let r = post_hashes(&gw, TOKENS[1].1, &["4".repeat(64)]);
    assert_eq!(r.status, 429, "{}", r.raw);
    assert_eq!(r.json()["error"]["code"], 429000, "{}", r.raw);
}

#[test]
fn failed_lookups_give_their_client_budget_back_in_redis() {
    if !redis_available() {
        return;
    }
    let redis = Redis::start();
    failed_lookups_give_their_client_budget_back(&redis.url());
}

#[test]
fn failed_lookups_give_their_client_budget_back_on_one_instance() {
    let dir = tempfile::tempdir().unwrap();
    failed_lookups_give_their_client_budget_back(&sqlite_store(dir.path()));
}

#[test]
fn metrics_and_health_details_are_only_on_the_admin_listener() {
    let mock = MockServer::start(Some(KEY)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let tokens = tokens_file(dir.path());
    let store = sqlite_store(dir.path());
    let public_only = Gateway::spawn(&mock, &store, &tokens, &[], false, |_| {});
    assert!(public_only.admin.is_none());
    let _ = post_hashes(&public_only, TOKENS[3].1, &["ab".repeat(32)]);
    let m = http(&public_only.url, "GET", "/metrics", &[], "");
    assert_eq!(m.status, 404, "{}", m.raw);
    assert!(!m.raw.contains("endpoint3"));
    let h = http(&public_only.url, "GET", "/healthz", &[], "");
    assert_eq!(h.status, 200);
    assert_eq!(h.body, "", "the public /healthz has details: {}", h.raw);
    drop(public_only);
    let gw = Gateway::start(&mock, &store, &tokens, &[]);
    let _ = post_hashes(&gw, TOKENS[3].1, &["ab".repeat(32)]);
    assert_eq!(http(&gw.url, "GET", "/metrics", &[], "").status, 404);
    let m = http(gw.admin(), "GET", "/metrics", &[], "");
    assert_eq!(m.status, 200);
    assert!(m.body.contains("token=\"endpoint3\""), "{}", m.body);
    let h = http(gw.admin(), "GET", "/healthz", &[], "");
    assert_eq!(h.json()["store"], "ok", "{}", h.raw);
    assert_eq!(
        http(
            gw.admin(),
            "POST",
            "/v4/hash",
            &[("apikey", TOKENS[3].1)],
            "{}"
        )
        .status,
        404
    );
}

#[test]
fn upstream_error_text_is_capped_and_no_piece_of_the_key_in_any_case_passes() {
    let f = sqlite_fixture(MockServer::start(Some(KEY)).unwrap(), &[]);
    let lower = KEY.to_ascii_lowercase();
    let msg = format!(
        "refused {lower} and {} {}",
        &KEY[3..13],
        "y".repeat(1 << 20)
    );
    let body = serde_json::json!({"error": {"code": 401006, "messages": [msg]}}).to_string();
    f.mock.push_fault(Fault::new(401, body));
    let r = post_hashes(&f.gw, TOKENS[1].1, &["ef".repeat(32)]);
    assert_eq!(r.status, 503, "{}", r.raw);
    let h = http(f.gw.admin(), "GET", "/healthz", &[], "");
    assert!(h.body.contains("refused"), "{}", h.body);
    for (what, text) in [
        ("503 answer", &r.raw),
        ("/healthz", &h.raw),
        ("log", &f.gw.log()),
    ] {
        assert!(
            text.len() < 64 << 10 || what == "log",
            "{what}: {} bytes",
            text.len()
        );
        let low = text.to_ascii_lowercase();
        for p in key_pieces(KEY) {
            assert!(!low.contains(&p), "{what} holds '{p}' of the key");
        }
    }
    assert!(r.body.len() < 1024, "{} bytes", r.body.len());
    assert!(h.body.len() < 1024, "{} bytes", h.body.len());
}

/// An upstream stand-in that answers every request with a valid answer for the hash asked,
/// padded by an ignored field to `size` bytes.
fn padded_upstream(size: usize) -> (String, std::thread::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let t = std::thread::spawn(move || {
        for s in l.incoming().take(4) {
            let Ok(mut s) = s else { return };
            let mut req = Vec::new();
            let mut buf = [0u8; 65536];
            // Read the head and the body (its Content-Length).
            let hash = loop {
                let Ok(n) = s.read(&mut buf) else { return };
                if n == 0 {
                    return;
                }
                req.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&req).into_owned();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len: usize = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    if body.len() >= len {
                        let v: Value = serde_json::from_str(body).unwrap();
                        break v["hash"][0].as_str().unwrap().to_ascii_uppercase();
                    }
                }
            };
            let entry = format!(
                r#"{{"data":[{{"hash":"{hash}","scan_result_i":0,"total_detected_avs":0,"data_id":"x"}}],"pad":""#
            );
            let pad = size.saturating_sub(entry.len() + 2);
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n{entry}"
            );
            let chunk = vec![b'p'; 1 << 16];
            let mut left = pad;
            while left > 0 {
                let n = left.min(chunk.len());
                if s.write_all(&chunk[..n]).is_err() {
                    break;
                }
                left -= n;
            }
            let _ = s.write_all(b"\"}");
        }
    });
    (url, t)
}

#[test]
fn an_upstream_answer_over_the_size_cap_is_a_failed_lookup() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = tokens_file(dir.path());
    let (url, _t) = padded_upstream(20 << 20);
    let mut child = cmd()
        .env("METADEFENDER_APIKEY", KEY)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--api-url",
            &url,
            "--retries",
            "0",
        ])
        .args(["--store", &sqlite_store(dir.path()), "--batch-wait", "10ms"])
        .arg("--tokens")
        .arg(&tokens)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    // The start line, past any log line written before it (under load the store's first
    // prune can log first).
    let mut line = String::new();
    let gw_url = loop {
        line.clear();
        assert!(err.read_line(&mut line).unwrap() > 0, "gateway exited");
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    let gw = Gateway {
        child,
        url: gw_url,
        admin: None,
        log: Arc::new(Mutex::new(Vec::new())),
    };
    let r = post_hashes(&gw, TOKENS[1].1, &["ab".repeat(32)]);
    assert_eq!(r.status, 503, "an oversized answer was used: {}", r.raw);
    assert!(r.body.contains("longer than 16 MiB"), "{}", r.body);
}

#[test]
fn a_token_file_with_the_empty_strings_digest_is_refused_and_an_empty_apikey_gets_401() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(
        &tokens,
        format!(
            "# fleet\nweb01 web01-token-abcdef123456\nghost sha256:{}\n",
            sha256_hex(b"")
        ),
    )
    .unwrap();
    let out = run_with_timeout(
        cmd()
            .env("METADEFENDER_APIKEY", KEY)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .arg("--store")
            .arg(sqlite_store(dir.path()))
            .arg("--tokens")
            .arg(&tokens),
        Duration::from_secs(15),
    );
    assert_ne!(code(&out), 0);
    let e = stderr(&out);
    assert!(e.contains("tokens:3:") && e.contains("empty string"), "{e}");
    let f = sqlite_fixture(MockServer::start(Some(KEY)).unwrap(), &[]);
    let r = http(
        &f.gw.url,
        "POST",
        "/v4/hash",
        &[("apikey", "")],
        r#"{"hash":["ab"]}"#,
    );
    assert_eq!(r.status, 401, "{}", r.raw);
    assert_eq!(r.json()["error"]["code"], 401006);
}

#[test]
fn http2_without_tls_is_not_served() {
    let f = sqlite_fixture(MockServer::start(Some(KEY)).unwrap(), &[]);
    let addr: SocketAddr = f.gw.url.trim_start_matches("http://").parse().unwrap();
    let mut s = TcpStream::connect(addr).unwrap();
    // The HTTP/2 connection preface with prior knowledge, then an empty SETTINGS frame.
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    // An HTTP/2 server answers with its own SETTINGS frame (type 4 in the fourth byte).
    assert!(
        got.is_empty() || got.starts_with(b"HTTP/1.1 "),
        "answered HTTP/2: {:?}",
        &got[..got.len().min(32)]
    );
}

mod cluster;
mod prevalence;
mod upload;
