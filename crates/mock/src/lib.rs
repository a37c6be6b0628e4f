//! A local stand-in for MetaDefender's `POST /v4/hash`, following the vendor contract
//! (`shared/reference/`): upper-case echo of each hash, `scan_result_i` 5 with
//! `total_detected_avs` -1 and `data_id` null for unknown or invalid hashes, `400062` for an
//! empty `hash` field, `400063` over 1000 hashes, 401 (`401006`) for a wrong key, 404
//! (`404000`) for any path but `POST /v4/hash` (so `/v4/v4/hash` is not found). Faults can be
//! scripted for the next requests.
//!
//! Rate limits as the vendor documents them: every answer (errors and faults included) carries
//! the full lower-case set `x-ratelimit-for: reputation_api`, `x-ratelimit-limit`,
//! `x-ratelimit-used`, `x-ratelimit-remaining`, `x-ratelimit-reset-in: <N>s` (counting down the
//! daily window, also on a throttle) and `x-ratelimit-interval: 86400`, and never `Retry-After`.
//! The daily budget is counted in hashes: every hash of an answered request counts, and a
//! request asking for more hashes than remain (or any request with none left) gets 429 with
//! code 429000. See [`MockServer::set_daily_budget`] and [`MockServer::reset_day`].
//!
//! Faults cover what the real service and the network do: error statuses, resets, truncated and
//! malformed bodies, stalls, damaged answers, a spent quota, and a random mix of all of them
//! (or of those a retry heals). Detailed answers can leave out `total_detected_avs` as the
//! vendor's only sample of one does ([`MockServer::set_details_without_totals`]).
//! It is a small HTTP/1.1 server on raw sockets (one request per connection) so that resets
//! and truncation can be produced on purpose. Like a real server it answers what is not HTTP
//! (a TLS handshake sent to its plain port) with 400 at once.
//!
//! The file API (`POST /v4/file`, `GET /v4/file/{data_id}`, `GET /v4/apikey`) for
//! `--upload-unknown` is in [`upload`], with its own prevention budget and faults.
//!
//! Requests are checked by [`request`], written from the vendor's page and not shared with
//! hashsweep's gateway. This crate does not depend on `hashsweep`; it is used by hashsweep's
//! tests, and its `mock-api` binary by the benchmarks and demos. It binds to loopback only.

pub mod circl;
pub mod request;
pub mod upload;

use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use request::{check_body, check_details, error_body};

/// SHA-256, SHA-1 and MD5 of the 68-byte EICAR test string.
pub const EICAR_SHA256: &str = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f";
pub const EICAR_SHA1: &str = "3395856ce81f2b7382dee72602f798b642f14140";
pub const EICAR_MD5: &str = "44d88612fea8a8f36de82e1278abb02f";
/// The EICAR test string itself.
pub const EICAR: &[u8] = br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

/// What the mock knows about one hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MockEntry {
    pub scan_result_i: i64,
    pub total_detected_avs: i64,
    pub threat: String,
}

/// Ways to damage an otherwise correct answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mangle {
    /// Leave out the first entry.
    DropEntry,
    /// Add an entry for a hash nobody asked about.
    ForeignEntry,
    /// Repeat the first entry with a different result.
    ConflictingRepeat,
    /// `scan_result_i` of the first entry as a string.
    StringCode,
    /// `total_detected_avs` of the first entry as null.
    NullTotal,
}

/// What a scripted fault does to one request.
#[derive(Debug, Clone)]
pub enum FaultKind {
    /// Answer with this status and body instead of the normal answer.
    Answer { status: u16, body: String },
    /// Close the connection with a TCP reset, no answer.
    Reset,
    /// Promise more body than is sent, then close.
    Truncate,
    /// Wait this long before answering normally (beyond a client's timeout, say).
    Stall(Duration),
    /// Answer normally but damaged.
    Mangle(Mangle),
}

/// A scripted fault for one upcoming request.
#[derive(Debug, Clone)]
pub struct Fault {
    pub kind: FaultKind,
    pub headers: Vec<(String, String)>,
}

impl Fault {
    pub fn new(status: u16, body: impl Into<String>) -> Fault {
        Fault::of(FaultKind::Answer {
            status,
            body: body.into(),
        })
    }
    pub fn of(kind: FaultKind) -> Fault {
        Fault {
            kind,
            headers: Vec::new(),
        }
    }
    /// The documented throttle: 429 with code 429001 (`messages` a plain string). It carries
    /// the usual rate-limit headers, whose `x-ratelimit-reset-in` is the daily window.
    pub fn throttled() -> Fault {
        Fault::new(429, throttle_body(429001, "Too many requests, slow down"))
    }
    /// 429 with code 429002: too many concurrent connections.
    pub fn too_many_connections() -> Fault {
        Fault::new(
            429,
            throttle_body(429002, "Too many concurrent connections"),
        )
    }
    pub fn header(mut self, name: &str, value: &str) -> Fault {
        self.headers.push((name.into(), value.into()));
        self
    }
    fn label(&self) -> String {
        match &self.kind {
            FaultKind::Answer { status, .. } => format!("http_{status}"),
            FaultKind::Reset => "reset".into(),
            FaultKind::Truncate => "truncated".into(),
            FaultKind::Stall(_) => "stall".into(),
            FaultKind::Mangle(m) => format!("{m:?}"),
        }
    }
}

/// One request as the mock saw it.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    /// Hashes in the body, as sent.
    pub hashes: Vec<String>,
    pub status: u16,
    pub details: bool,
    /// Every header line but `apikey`, for secrecy checks.
    pub other_headers: Vec<String>,
    /// The fault applied, if any.
    pub fault: Option<String>,
    /// Requests being served when this one arrived, itself included.
    pub in_flight: usize,
}

/// What the mock starts with as the daily budget, in hashes: enough for any test that does not
/// set its own.
pub const DEFAULT_DAILY_BUDGET: u64 = 1_000_000;

/// The length of the reputation API's budget window.
pub const DAY: Duration = Duration::from_secs(86_400);

/// The 429 body shape the vendor documents for throttling: `messages` a string.
fn throttle_body(code: i64, message: &str) -> String {
    json!({"error": {"name": "ClientError", "code": code, "status": 429, "messages": message}})
        .to_string()
}

/// The daily budget in hashes and its window.
struct Day {
    budget: u64,
    used: u64,
    started: Instant,
}

impl Day {
    /// Start a new window if the current one is over.
    fn roll(&mut self) {
        let over = self.started.elapsed().as_secs() / DAY.as_secs();
        if over > 0 {
            self.started += DAY * over as u32;
            self.used = 0;
        }
    }

    fn remaining(&self) -> u64 {
        self.budget.saturating_sub(self.used)
    }

    /// The rate-limit headers of every answer, as the vendor sends them over HTTP/2.
    fn headers(&mut self) -> Vec<(String, String)> {
        self.roll();
        let reset_in = DAY.saturating_sub(self.started.elapsed()).as_secs().max(1);
        [
            ("x-ratelimit-for", "reputation_api".to_string()),
            ("x-ratelimit-limit", self.budget.to_string()),
            ("x-ratelimit-used", self.used.min(self.budget).to_string()),
            ("x-ratelimit-remaining", self.remaining().to_string()),
            ("x-ratelimit-reset-in", format!("{reset_in}s")),
            ("x-ratelimit-interval", DAY.as_secs().to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

impl Default for Day {
    fn default() -> Day {
        Day {
            budget: DEFAULT_DAILY_BUDGET,
            used: 0,
            started: Instant::now(),
        }
    }
}

#[derive(Default)]
struct State {
    key: Option<String>,
    latency: Duration,
    entries: HashMap<String, MockEntry>,
    faults: VecDeque<Fault>,
    seen: Vec<SeenRequest>,
    /// Random faults: (rng, probability, stall duration, only the kinds a retry heals).
    chaos: Option<(fastrand::Rng, f64, Duration, bool)>,
    /// Detailed answers leave out `total_detected_avs`, as the vendor's sample does.
    details_without_totals: bool,
    day: Day,
    /// Requests being served now, and the most at once so far.
    in_flight: usize,
    max_in_flight: usize,
    /// The file API (`POST /v4/file`, `GET /v4/file/{id}`, `GET /v4/apikey`).
    uploads: upload::Uploads,
}

/// A running mock server. Stops accepting when dropped.
pub struct MockServer {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stopping: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl MockServer {
    /// Start on `127.0.0.1:0` (a free port). With `key`, other keys get 401.
    pub fn start(key: Option<&str>) -> std::io::Result<MockServer> {
        Self::start_on("127.0.0.1:0", key, Duration::ZERO)
    }

    /// Start on a given loopback address, adding `latency` to every answer.
    pub fn start_on(
        addr: &str,
        key: Option<&str>,
        latency: Duration,
    ) -> std::io::Result<MockServer> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        if !addr.ip().is_loopback() {
            return Err(std::io::Error::other("the mock only listens on loopback"));
        }
        let mut entries = HashMap::new();
        for h in [EICAR_SHA256, EICAR_SHA1, EICAR_MD5] {
            entries.insert(
                h.to_ascii_uppercase(),
                MockEntry {
                    scan_result_i: 1,
                    total_detected_avs: 31,
                    threat: "EICAR-Test-File".into(),
                },
            );
        }
        let state = Arc::new(Mutex::new(State {
            key: key.map(str::to_string),
            latency,
            entries,
            ..State::default()
        }));
        let stopping = Arc::new(AtomicBool::new(false));
        let acceptor = accept(listener, &state, &stopping, serve_connection);
        Ok(MockServer {
            addr,
            state,
            stopping,
            acceptor: Some(acceptor),
        })
    }

    /// Base URL to pass as `--api-url`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Teach the mock a verdict for a hash (any case).
    pub fn set(&self, hash: &str, scan_result_i: i64, total_detected_avs: i64) {
        self.with(|s| {
            s.entries.insert(
                hash.to_ascii_uppercase(),
                MockEntry {
                    scan_result_i,
                    total_detected_avs,
                    threat: String::new(),
                },
            );
        });
    }

    /// Answer the next request with `fault` instead of the normal answer (queued in order).
    pub fn push_fault(&self, fault: Fault) {
        self.with(|s| s.faults.push_back(fault));
    }

    /// Drop the scripted faults not yet used: the next requests are answered normally.
    pub fn clear_faults(&self) {
        self.with(|s| s.faults.clear());
    }

    /// From now on, damage each request with probability `p`, picking among every fault kind
    /// (stalls last `stall`). Deterministic for a given seed.
    pub fn set_chaos(&self, seed: u64, p: f64, stall: Duration) {
        self.with(|s| s.chaos = Some((fastrand::Rng::with_seed(seed), p, stall, false)));
    }

    /// Like [`set_chaos`](Self::set_chaos), but only faults that asking again heals: 5xx,
    /// throttles (among them a short window's `x-ratelimit-remaining: 0` with
    /// `x-ratelimit-reset-in: 1s`), resets, truncated and garbage bodies, stalls, left-out and
    /// foreign entries. Not damaged entries (a wrong type, a null total, a conflicting
    /// repeat), which a client reports as errors rather than spend budget asking again.
    pub fn set_transient_chaos(&self, seed: u64, p: f64, stall: Duration) {
        self.with(|s| s.chaos = Some((fastrand::Rng::with_seed(seed), p, stall, true)));
    }

    /// With `true`, detailed answers (`includescandetails: 1`) carry no `total_detected_avs`,
    /// as in the vendor's only sample of one: a known hash's entry has `scan_details` to count,
    /// an unknown hash's entry has `scan_result_i` 5 and neither.
    pub fn set_details_without_totals(&self, on: bool) {
        self.with(|s| s.details_without_totals = on);
    }

    /// Make the daily budget `hashes` (what is used of it today stays used). A request for
    /// more hashes than remain, or any request once none remain, gets 429 with code 429000.
    pub fn set_daily_budget(&self, hashes: u64) {
        self.with(|s| s.day.budget = hashes);
    }

    /// Start a new day: nothing used, and `x-ratelimit-reset-in` counts down a full window.
    pub fn reset_day(&self) {
        self.with(|s| {
            s.day.used = 0;
            s.day.started = Instant::now();
        });
    }

    /// A fresh daily budget of `limit` hashes ([`set_daily_budget`](Self::set_daily_budget)
    /// and [`reset_day`](Self::reset_day)).
    pub fn set_quota(&self, limit: u64) {
        self.set_daily_budget(limit);
        self.reset_day();
    }

    /// Hashes left of today's budget.
    pub fn budget_remaining(&self) -> u64 {
        self.with(|s| {
            s.day.roll();
            s.day.remaining()
        })
    }

    /// The most requests served at once so far.
    pub fn max_in_flight(&self) -> usize {
        self.with(|s| s.max_in_flight)
    }

    /// Requests seen so far.
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.with(|s| s.seen.clone())
    }

    /// Change what the key allows on the file API (see [`upload::UploadSettings`]).
    pub fn set_upload_settings(&self, f: impl FnOnce(&mut upload::UploadSettings)) {
        self.with(|s| f(&mut s.uploads.settings));
    }

    /// Answer the next `POST /v4/file` with `fault` (queued in order; other endpoints do not
    /// take it).
    pub fn push_upload_fault(&self, fault: Fault) {
        self.with(|s| s.uploads.faults.push_back(fault));
    }

    /// The scan of the file with this SHA-256 never finishes (polls stay below 100%).
    pub fn never_finish(&self, sha256: &str) {
        self.with(|s| s.uploads.never_finish.insert(sha256.to_ascii_uppercase()));
    }

    /// What a scan of an uploaded file with this SHA-256 finds (others: clean; EICAR: infected).
    pub fn set_upload_result(&self, sha256: &str, scan_result_i: i64, total_detected_avs: i64) {
        self.with(|s| {
            s.uploads.results.insert(
                sha256.to_ascii_uppercase(),
                MockEntry {
                    scan_result_i,
                    total_detected_avs,
                    threat: if total_detected_avs > 0 {
                        "Mock.Threat".into()
                    } else {
                        String::new()
                    },
                },
            )
        });
    }

    /// Uploads seen so far (`POST /v4/file`).
    pub fn uploads(&self) -> Vec<upload::SeenUpload> {
        self.with(|s| s.uploads.seen.clone())
    }

    /// Polls of `GET /v4/file/{data_id}` so far.
    pub fn upload_polls(&self) -> u64 {
        self.with(|s| s.uploads.polls)
    }

    /// Uploads left of today's prevention budget.
    pub fn prevention_remaining(&self) -> u64 {
        self.with(|s| s.uploads.remaining())
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut g = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        // Wake the acceptor; connections in progress finish on their own threads.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
    }
}

/// A parsed HTTP/1.1 request: just what the mock needs.
pub(crate) struct HttpRequest {
    pub(crate) method: String,
    pub(crate) path: String,
    /// Lower-case names.
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl HttpRequest {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Read one request (headers up to 64 KiB, body up to 32 MiB by Content-Length).
pub(crate) fn read_request(stream: &mut TcpStream) -> std::io::Result<HttpRequest> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if buf.len() > 64 << 10 {
            return Err(bad("headers too large"));
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(bad("connection closed before the headers ended"));
        }
        buf.extend_from_slice(&chunk[..n]);
        // Not HTTP (a TLS ClientHello, say): a real server answers 400 at once.
        if !buf[0].is_ascii_uppercase() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "not an HTTP request",
            ));
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split_whitespace();
    let method = first.next().unwrap_or_default().to_string();
    let path = first.next().unwrap_or_default().to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    if len > 32 << 20 {
        return Err(bad("body too large"));
    }
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(bad("connection closed in the body"));
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(len);
    Ok(HttpRequest {
        method,
        path,
        headers,
        body,
    })
}

/// Close with RST instead of FIN (SO_LINGER with a zero timeout). If the option cannot be set
/// the connection still closes, with a FIN: the client sees an empty answer instead of a reset.
fn reset(stream: TcpStream) {
    let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    drop(stream);
}

/// A throttle of a short window that ends in a second: `x-ratelimit-remaining: 0` with
/// `x-ratelimit-reset-in: 1s`, the daily budget untouched.
pub fn short_window_throttle() -> Fault {
    Fault::throttled()
        .header("x-ratelimit-remaining", "0")
        .header("x-ratelimit-reset-in", "1s")
}

/// A fault that asking again heals (see [`MockServer::set_transient_chaos`]).
fn pick_transient_chaos(rng: &mut fastrand::Rng, stall: Duration) -> Fault {
    match rng.u32(0..10) {
        0 => Fault::new(503, error_body(503000, "service unavailable")),
        1 => Fault::new(500, "Internal Server Error"),
        2 => Fault::throttled(),
        3 => short_window_throttle(),
        4 => Fault::of(FaultKind::Reset),
        5 => Fault::of(FaultKind::Truncate),
        6 => Fault::new(200, r#"{"data":[{"hash":"#),
        7 => Fault::of(FaultKind::Stall(stall)),
        8 => Fault::of(FaultKind::Mangle(Mangle::DropEntry)),
        _ => Fault::of(FaultKind::Mangle(Mangle::ForeignEntry)),
    }
}

fn pick_chaos(rng: &mut fastrand::Rng, stall: Duration) -> Fault {
    match rng.u32(0..11) {
        0 => Fault::new(503, error_body(503000, "service unavailable")),
        1 => Fault::new(500, "Internal Server Error"),
        2 => Fault::throttled(),
        3 => Fault::of(FaultKind::Reset),
        4 => Fault::of(FaultKind::Truncate),
        5 => Fault::new(200, r#"{"data":[{"hash":"#),
        6 => Fault::of(FaultKind::Stall(stall)),
        7 => Fault::of(FaultKind::Mangle(Mangle::DropEntry)),
        8 => Fault::of(FaultKind::Mangle(Mangle::ForeignEntry)),
        9 => Fault::of(FaultKind::Mangle(Mangle::StringCode)),
        _ => Fault::of(FaultKind::Mangle(Mangle::NullTotal)),
    }
}

/// Counts a request as being served (received, not yet answered) until it is dropped.
struct InFlight<'a>(&'a Mutex<State>);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        s.in_flight = s.in_flight.saturating_sub(1);
    }
}

/// The accept loop of a stand-in: each connection served on a thread of its own by `serve`,
/// until `stopping` is set (the next connection, the stand-in's own wake-up, ends it).
pub(crate) fn accept<S: Send + 'static>(
    listener: TcpListener,
    state: &Arc<Mutex<S>>,
    stopping: &Arc<AtomicBool>,
    serve: fn(TcpStream, &Mutex<S>),
) -> JoinHandle<()> {
    let state = Arc::clone(state);
    let stopping = Arc::clone(stopping);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            if stopping.load(Ordering::SeqCst) {
                break;
            }
            if let Ok(stream) = conn {
                let state = Arc::clone(&state);
                std::thread::spawn(move || serve(stream, &state));
            }
        }
    })
}

fn serve_connection(mut stream: TcpStream, state: &Mutex<State>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let req = match read_request(&mut stream) {
        Ok(req) => req,
        Err(e) if e.kind() == std::io::ErrorKind::Unsupported => {
            let _ = stream.write_all(
                b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            );
            return;
        }
        Err(_) => return,
    };
    let lock = || state.lock().unwrap_or_else(|p| p.into_inner());
    let in_flight = {
        let mut s = lock();
        s.in_flight += 1;
        s.max_in_flight = s.max_in_flight.max(s.in_flight);
        s.in_flight
    };
    let serving = InFlight(state);

    let apikey = req.header("apikey").map(str::to_string);
    let details_hdr = req.header("includescandetails").map(str::to_string);
    let other_headers: Vec<String> = req
        .headers
        .iter()
        .filter(|(k, _)| k != "apikey")
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    let hashes: Vec<String> = serde_json::from_slice::<Value>(&req.body)
        .ok()
        .and_then(|v| v.get("hash").and_then(Value::as_array).cloned())
        .map(|a| {
            a.iter()
                .map(|h| h.as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default();

    let (latency, fault, key) = {
        let mut s = lock();
        let mut fault = s.faults.pop_front();
        if fault.is_none()
            && let Some((rng, p, stall, transient)) = s.chaos.as_mut()
            && rng.f64() < *p
        {
            let stall = *stall;
            fault = Some(if *transient {
                pick_transient_chaos(rng, stall)
            } else {
                pick_chaos(rng, stall)
            });
        }
        (s.latency, fault, s.key.clone())
    };
    if !latency.is_zero() {
        std::thread::sleep(latency);
    }
    let label = fault.as_ref().map(Fault::label);
    let record = |status: u16| {
        lock().seen.push(SeenRequest {
            hashes: hashes.clone(),
            status,
            details: details_hdr.as_deref() == Some("1"),
            other_headers: other_headers.clone(),
            fault: label.clone(),
            in_flight,
        });
    };

    let (mut extra, mut mangle, mut truncate) = (Vec::new(), None, false);
    let mut scripted = None;
    if let Some(f) = fault {
        extra = f.headers;
        match f.kind {
            FaultKind::Reset => {
                record(0);
                return reset(stream);
            }
            FaultKind::Stall(d) => std::thread::sleep(d),
            FaultKind::Truncate => truncate = true,
            FaultKind::Mangle(m) => mangle = Some(m),
            FaultKind::Answer { status, body } => scripted = Some((status, body)),
        }
    }

    let path = req.path.split('?').next().unwrap_or_default();
    // The file API: its own faults, budget and rate-limit headers.
    let file_api = path == "/v4/apikey" || path == "/v4/file" || path.starts_with("/v4/file/");
    if file_api && scripted.is_none() {
        let (status, text, headers) = {
            let mut s = lock();
            let s = &mut *s;
            let (status, text) = if key.is_some() && apikey != key {
                (401, error_body(401006, "Invalid apikey"))
            } else if req.method == "GET" && path == "/v4/apikey" {
                s.uploads.apikey()
            } else if req.method == "POST" && path == "/v4/file" {
                let fault = s.uploads.faults.pop_front();
                s.uploads.upload(&req.headers, &req.body, fault)
            } else if let (true, Some(id)) = (req.method == "GET", upload::data_id(path)) {
                s.uploads.poll(id, &mut s.entries)
            } else {
                (404, error_body(404000, "Endpoint not found"))
            };
            (status, text, s.uploads.headers())
        };
        record(status);
        drop(serving);
        let mut all: Vec<(String, String)> =
            vec![("content-type".into(), "application/json".into())];
        all.extend(headers);
        return write_answer(stream, status, all, text.into_bytes(), false);
    }
    let (status, text) = if let Some(s) = scripted {
        s
    } else if req.method != "POST" || path != "/v4/hash" {
        (404, error_body(404000, "Endpoint not found"))
    } else if key.is_some() && apikey != key {
        (401, error_body(401006, "Invalid apikey"))
    } else {
        let mut s = lock();
        s.day.roll();
        let left = s.day.remaining();
        if left == 0 || hashes.len() as u64 > left {
            (
                429,
                throttle_body(
                    429000,
                    "API key limit exceeded: the daily limit is reached, retry after the reset",
                ),
            )
        } else {
            let (st, txt) = answer(
                &req.body,
                details_hdr.as_deref(),
                &s.entries,
                s.details_without_totals,
            );
            if st == 200 {
                // Every hash of an answered request counts against the budget.
                s.day.used += hashes.len() as u64;
            }
            (st, mangle.map(|m| damage(&txt, m)).unwrap_or(txt))
        }
    };
    record(status);
    // Answered from here on: a client that has read the answer never sees itself counted.
    drop(serving);

    let mut headers: Vec<(String, String)> =
        vec![("content-type".into(), "application/json".into())];
    headers.extend(lock().day.headers());
    headers.retain(|(k, _)| !extra.iter().any(|(e, _)| e.eq_ignore_ascii_case(k)));
    headers.extend(extra);
    write_answer(stream, status, headers, text.into_bytes(), truncate);
}

/// Write one answer and close (`truncate`: promise more body than is sent).
fn write_answer(
    mut stream: TcpStream,
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    truncate: bool,
) {
    let promised = if truncate {
        body.len() + 100
    } else {
        body.len()
    };
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\ncontent-length: {promised}\r\nconnection: close\r\n",
        reason(status)
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream
        .write_all(head.as_bytes())
        .and_then(|_| stream.write_all(&body))
        .and_then(|_| stream.flush());
    let _ = stream.shutdown(std::net::Shutdown::Write);
}

pub(crate) fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// Damage a correct answer in the way `m` says.
fn damage(text: &str, m: Mangle) -> String {
    let Ok(mut v) = serde_json::from_str::<Value>(text) else {
        return text.to_string();
    };
    let Some(data) = v.get_mut("data").and_then(Value::as_array_mut) else {
        return text.to_string();
    };
    if data.is_empty() {
        return text.to_string();
    }
    match m {
        Mangle::DropEntry => {
            data.remove(0);
        }
        Mangle::ForeignEntry => data.push(json!({"hash": "F".repeat(64), "scan_result_i": 0, "total_detected_avs": 0, "data_id": "x"})),
        Mangle::ConflictingRepeat => {
            let mut e = data[0].clone();
            e["scan_result_i"] = json!(if e["scan_result_i"] == json!(0) { 1 } else { 0 });
            e["total_detected_avs"] = json!(7);
            data.push(e);
        }
        Mangle::StringCode => {
            let code = data[0]["scan_result_i"].to_string();
            data[0]["scan_result_i"] = json!(code);
        }
        Mangle::NullTotal => data[0]["total_detected_avs"] = Value::Null,
    }
    v.to_string()
}

/// The normal answer for a request body.
fn answer(
    body: &[u8],
    details: Option<&str>,
    entries: &HashMap<String, MockEntry>,
    details_without_totals: bool,
) -> (u16, String) {
    let details = match check_details(details) {
        Ok(d) => d,
        Err(r) => return (400, r.body()),
    };
    let list = match check_body(body) {
        Ok(l) => l,
        Err(r) => return (400, r.body()),
    };
    let data: Vec<Value> = list
        .iter()
        .map(|h| {
            let up = h.to_ascii_uppercase();
            let mut entry = match entries.get(&up) {
                Some(e) => {
                    let mut entry = json!({
                        "data_id": format!("mock-{}", &up[..up.len().min(12)]),
                        "scan_result_i": e.scan_result_i,
                        "hash": up,
                        "total_detected_avs": e.total_detected_avs,
                    });
                    if details {
                        entry["scan_details"] = json!({
                            "MockAV": {"wait_time": 1, "threat_found": e.threat, "scan_time": 2,
                                       "scan_result_i": e.scan_result_i, "def_time": "2026-11-01T00:00:00.000Z"},
                            "OtherAV": {"threat_found": "", "scan_result_i": 0, "def_time": "2026-11-02T00:00:00.000Z"}
                        });
                    }
                    entry
                }
                None => json!({"data_id": null, "hash": up, "scan_result_i": 5, "total_detected_avs": -1}),
            };
            if details && details_without_totals
                && let Some(e) = entry.as_object_mut()
            {
                e.remove("total_detected_avs");
            }
            entry
        })
        .collect();
    (200, json!({ "data": data }).to_string())
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod upload_tests;
