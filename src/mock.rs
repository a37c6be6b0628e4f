//! A local stand-in for MetaDefender's `POST /v4/hash`, following the vendor contract
//! (`shared/reference/`): upper-case echo of each hash, `scan_result_i` 5 with
//! `total_detected_avs` -1 and `data_id` null for unknown or invalid hashes, `400062` for an
//! empty `hash` field, `400063` over 1000 hashes, 401 (`401006`) for a wrong key, rate-limit
//! headers on every answer. Faults can be scripted for the next requests.
//!
//! Used by the tests, the benchmarks and `hashsweep mock-api`; it binds to loopback only.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{Value, json};

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

/// A scripted answer for one upcoming request.
#[derive(Debug, Clone)]
pub struct Fault {
    pub status: u16,
    pub body: String,
    pub headers: Vec<(String, String)>,
}

impl Fault {
    pub fn new(status: u16, body: impl Into<String>) -> Fault {
        Fault {
            status,
            body: body.into(),
            headers: Vec::new(),
        }
    }
    pub fn header(mut self, name: &str, value: &str) -> Fault {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// One request as the mock saw it.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    /// Hashes in the body, as sent.
    pub hashes: Vec<String>,
    pub status: u16,
    pub details: bool,
    /// Every header value, for secrecy checks (the `apikey` header is left out).
    pub other_headers: Vec<String>,
}

#[derive(Default)]
struct State {
    key: Option<String>,
    latency: Duration,
    entries: HashMap<String, MockEntry>,
    faults: VecDeque<Fault>,
    seen: Vec<SeenRequest>,
}

/// A running mock server. Stops when dropped.
pub struct MockServer {
    addr: SocketAddr,
    server: Arc<tiny_http::Server>,
    state: Arc<Mutex<State>>,
    workers: Vec<JoinHandle<()>>,
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
        let server = Arc::new(tiny_http::Server::http(addr).map_err(std::io::Error::other)?);
        let addr = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| std::io::Error::other("mock is not on an IP socket"))?;
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
        let workers = (0..16)
            .map(|_| {
                let server = Arc::clone(&server);
                let state = Arc::clone(&state);
                std::thread::spawn(move || {
                    while let Ok(req) = server.recv() {
                        handle(req, &state);
                    }
                })
            })
            .collect();
        Ok(MockServer {
            addr,
            server,
            state,
            workers,
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

    /// Requests seen so far.
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.with(|s| s.seen.clone())
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut g = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        for _ in 0..self.workers.len() {
            self.server.unblock();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

fn error_body(code: i64, msg: &str) -> String {
    json!({"error": {"code": code, "messages": [msg]}}).to_string()
}

fn header(req: &tiny_http::Request, name: &'static str) -> Option<String> {
    req.headers()
        .iter()
        .find(|h| h.field.equiv(name))
        .map(|h| h.value.as_str().to_string())
}

fn handle(mut req: tiny_http::Request, state: &Mutex<State>) {
    let mut body = Vec::new();
    let _ = req.as_reader().read_to_end(&mut body);
    let apikey = header(&req, "apikey");
    let details_hdr = header(&req, "includescandetails");
    let other_headers = req
        .headers()
        .iter()
        .filter(|h| !h.field.equiv("apikey"))
        .map(|h| format!("{}: {}", h.field, h.value))
        .collect();

    let (latency, fault, key) = {
        let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
        (s.latency, s.faults.pop_front(), s.key.clone())
    };
    if !latency.is_zero() {
        std::thread::sleep(latency);
    }

    let hashes: Vec<String> = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("hash").and_then(Value::as_array).cloned())
        .map(|a| {
            a.iter()
                .map(|h| h.as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default();
    let details = details_hdr.as_deref() == Some("1");

    let (status, text, extra): (u16, String, Vec<(String, String)>) = if let Some(f) = fault {
        (f.status, f.body, f.headers)
    } else if req.method() != &tiny_http::Method::Post || !req.url().ends_with("/v4/hash") {
        (404, error_body(404000, "Endpoint not found"), vec![])
    } else if key.is_some() && apikey != key {
        (401, error_body(401006, "Invalid apikey"), vec![])
    } else {
        let s = state.lock().unwrap_or_else(|p| p.into_inner());
        let (st, txt) = answer(&body, details_hdr.as_deref(), &s.entries);
        (st, txt, vec![])
    };

    {
        let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
        s.seen.push(SeenRequest {
            hashes: hashes.clone(),
            status,
            details,
            other_headers,
        });
    }
    let mut resp = tiny_http::Response::from_string(text).with_status_code(status);
    let mut headers: Vec<(String, String)> = [
        ("Content-Type", "application/json"),
        ("X-RateLimit-Limit", "4000"),
        ("X-RateLimit-Remaining", "3999"),
        ("X-RateLimit-Reset-In", "86400s"),
    ]
    .into_iter()
    .filter(|(k, _)| !extra.iter().any(|(e, _)| e.eq_ignore_ascii_case(k)))
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    headers.extend(extra);
    for (k, v) in headers {
        if let Ok(h) = tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()) {
            resp.add_header(h);
        }
    }
    let _ = req.respond(resp);
}

/// The normal answer for a request body.
fn answer(
    body: &[u8],
    details: Option<&str>,
    entries: &HashMap<String, MockEntry>,
) -> (u16, String) {
    if !matches!(details, None | Some("0") | Some("1")) {
        return (400, error_body(400065, "includescandetails must be 0 or 1"));
    }
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return (400, error_body(400060, "The `hash` field is required"));
    };
    let Some(field) = v.get("hash") else {
        return (400, error_body(400060, "The `hash` field is required"));
    };
    let Some(list) = field.as_array() else {
        return (400, error_body(400061, "The `hash` field must be an array"));
    };
    if list.is_empty() {
        return (400, error_body(400062, "The `hash` field is empty"));
    }
    if list.len() > 1000 {
        return (
            400,
            error_body(400063, "Exceeded maximum allowed hashes (1000)"),
        );
    }
    let data: Vec<Value> = list
        .iter()
        .map(|h| {
            let up = h.as_str().unwrap_or_default().to_ascii_uppercase();
            match entries.get(&up) {
                Some(e) => {
                    let mut entry = json!({
                        "data_id": format!("mock-{}", &up[..up.len().min(12)]),
                        "scan_result_i": e.scan_result_i,
                        "hash": up,
                        "total_detected_avs": e.total_detected_avs,
                    });
                    if details == Some("1") {
                        entry["scan_details"] = json!({
                            "MockAV": {"wait_time": 1, "threat_found": e.threat, "scan_time": 2,
                                       "scan_result_i": e.scan_result_i, "def_time": "2026-11-01T00:00:00.000Z"},
                            "OtherAV": {"threat_found": "", "scan_result_i": 0, "def_time": "2026-11-02T00:00:00.000Z"}
                        });
                    }
                    entry
                }
                None => json!({"data_id": null, "hash": up, "scan_result_i": 5, "total_detected_avs": -1}),
            }
        })
        .collect();
    (200, json!({ "data": data }).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_errors() {
        let e = HashMap::new();
        assert!(answer(br#"{"hash":[]}"#, None, &e).1.contains("400062"));
        assert!(answer(br#"{}"#, None, &e).1.contains("400060"));
        assert!(answer(br#"{"hash":"x"}"#, None, &e).1.contains("400061"));
        let many = json!({"hash": vec!["A"; 1001]}).to_string();
        assert!(answer(many.as_bytes(), None, &e).1.contains("400063"));
        assert!(
            answer(br#"{"hash":["a"]}"#, Some("2"), &e)
                .1
                .contains("400065")
        );
        let (st, body) = answer(br#"{"hash":["abc"]}"#, None, &e);
        assert_eq!(st, 200);
        assert!(
            body.contains(r#""hash":"ABC""#)
                && body.contains(r#""scan_result_i":5"#)
                && body.contains("-1")
        );
    }
}
