//! A local stand-in for CIRCL hashlookup (`hashlookup.circl.lu`), following its published
//! contract (adulau/hashlookup-server `bin/server.py` 1.2, the service's OpenAPI 1.2; see
//! `shared/reference/circl-hashlookup.md`), not hashsweep's client:
//!
//! - `GET /lookup/{md5|sha1|sha256}/{hash}`: 400 `{"message": ...}` for a value of the wrong
//!   length or not hex; 404 `{"message": "Non existing MD5|SHA-1|SHA-256", "query": <as sent>}`
//!   for an unknown one; 200 and the record otherwise. Keys are compared upper-case.
//! - `POST /bulk/md5`, `POST /bulk/sha1`: a JSON body whose `hashes` is a list (the
//!   Content-Type is not checked, as `get_json(force=True)` does not); 404 `{"message": "JSON
//!   format incorrect. An array of hashes in the key 'hashes' is expected."}` without it; 400
//!   for a body that is not JSON; 500 for an element that is not a string (the server's
//!   `val.upper()` raises). The answer is a JSON array of the records found, in input order:
//!   invalid and unknown entries are dropped silently, no per-entry status.
//! - Every other path, `/bulk/sha256` included, is 404; a known path with another method 405.
//!
//! A record is any JSON object; it is found by its `MD5`, `SHA-1` and `SHA-256` fields (as
//! the server's `l:<md5>` and `l:<sha256>` keys map to the SHA-1's record). Faults (a status
//! and body for the next requests: 429, 503...) can be scripted. Loopback only.

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{Value, json};

use crate::{read_request, reason};

/// One request as the stand-in saw it.
#[derive(Debug, Clone)]
pub struct CirclRequest {
    pub method: String,
    pub path: String,
    /// The `hashes` of a bulk request's body, as sent.
    pub hashes: Vec<String>,
    pub user_agent: Option<String>,
    pub status: u16,
}

#[derive(Default)]
struct State {
    /// Upper-case MD5, SHA-1 or SHA-256 → index in `records`.
    keys: HashMap<String, usize>,
    records: Vec<Value>,
    faults: VecDeque<(u16, String)>,
    seen: Vec<CirclRequest>,
}

/// The CIRCL hashlookup stand-in.
pub struct CirclServer {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stopping: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl CirclServer {
    /// Start on `127.0.0.1:0` (a free port), knowing nothing.
    pub fn start() -> std::io::Result<CirclServer> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State::default()));
        let stopping = Arc::new(AtomicBool::new(false));
        let acceptor = crate::accept(listener, &state, &stopping, serve);
        Ok(CirclServer {
            addr,
            state,
            stopping,
            acceptor: Some(acceptor),
        })
    }

    /// The base URL (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Know a record, found by its `MD5`, `SHA-1` and `SHA-256` fields.
    pub fn add(&self, record: Value) {
        self.with(|s| {
            let i = s.records.len();
            for k in ["MD5", "SHA-1", "SHA-256"] {
                if let Some(h) = record.get(k).and_then(Value::as_str) {
                    s.keys.insert(h.to_ascii_uppercase(), i);
                }
            }
            s.records.push(record);
        });
    }

    /// A record as CIRCL's bulk answers give one (strings only), with `KnownMalicious` when
    /// `malicious` names sources.
    pub fn record(
        md5: &str,
        sha1: &str,
        sha256: &str,
        name: &str,
        malicious: Option<&str>,
    ) -> Value {
        let mut r = json!({
            "CRC32": "00000000",
            "FileName": name,
            "FileSize": "42",
            "MD5": md5.to_ascii_uppercase(),
            "SHA-1": sha1.to_ascii_uppercase(),
            "SHA-256": sha256.to_ascii_uppercase(),
            "OpSystemCode": "362",
            "ProductCode": "190742",
            "SpecialCode": "",
            "db": "nsrl_modern_rds",
            "insert-timestamp": "1650000000",
            "source": "RDS_2025.03.1_modern.db",
        });
        if let Some(m) = malicious {
            r["KnownMalicious"] = Value::from(m);
        }
        r
    }

    /// Answer the next request with `status` and `body` instead (in order, once each).
    pub fn push_fault(&self, status: u16, body: &str) {
        self.with(|s| s.faults.push_back((status, body.into())));
    }

    pub fn requests(&self) -> Vec<CirclRequest> {
        self.with(|s| s.seen.clone())
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut g = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }
}

impl Drop for CirclServer {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
    }
}

/// Which digest a path names, by its length (the server's `check_md5`/`check_sha1`/...).
fn valid(algo: &str, h: &str) -> bool {
    let len = match algo {
        "md5" => 32,
        "sha1" => 40,
        "sha256" => 64,
        _ => return false,
    };
    h.len() == len && h.bytes().all(|b| b.is_ascii_hexdigit())
}

fn message(m: &str) -> String {
    json!({ "message": m }).to_string()
}

/// The status and body for one request.
fn answer(s: &State, method: &str, path: &str, body: &[u8]) -> (u16, String, Vec<String>) {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match parts.as_slice() {
        ["lookup", algo @ ("md5" | "sha1" | "sha256"), h] => {
            if method != "GET" {
                return (405, message("The method is not allowed"), Vec::new());
            }
            let name = match *algo {
                "md5" => "MD5",
                "sha1" => "SHA-1",
                _ => "SHA-256",
            };
            if !valid(algo, h) {
                let m = format!("{name} value incorrect, expecting a {name} value in hex format");
                return (400, message(&m), Vec::new());
            }
            match s.keys.get(&h.to_ascii_uppercase()) {
                Some(&i) => (200, s.records[i].to_string(), Vec::new()),
                None => (
                    404,
                    json!({"message": format!("Non existing {name}"), "query": h}).to_string(),
                    Vec::new(),
                ),
            }
        }
        ["bulk", algo @ ("md5" | "sha1")] => {
            if method != "POST" {
                return (405, message("The method is not allowed"), Vec::new());
            }
            let Ok(v) = serde_json::from_slice::<Value>(body) else {
                return (400, message("Failed to decode JSON object"), Vec::new());
            };
            let Some(list) = v.get("hashes").and_then(Value::as_array) else {
                return (
                    404,
                    message(
                        "JSON format incorrect. An array of hashes in the key 'hashes' is expected.",
                    ),
                    Vec::new(),
                );
            };
            let mut sent = Vec::new();
            let mut found = Vec::new();
            for h in list {
                let Some(h) = h.as_str() else {
                    return (500, message("Internal Server Error"), sent);
                };
                sent.push(h.to_string());
                let k = h.to_ascii_uppercase();
                if !valid(algo, &k) {
                    continue;
                }
                if let Some(&i) = s.keys.get(&k) {
                    found.push(s.records[i].clone());
                }
            }
            (200, Value::Array(found).to_string(), sent)
        }
        _ => (404, message("Not Found"), Vec::new()),
    }
}

fn serve(mut stream: TcpStream, state: &Mutex<State>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(req) = read_request(&mut stream) else {
        return;
    };
    let (status, body) = {
        let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
        let (status, body, hashes) = match s.faults.pop_front() {
            Some((st, b)) => (st, b, Vec::new()),
            None => answer(&s, &req.method, &req.path, &req.body),
        };
        s.seen.push(CirclRequest {
            method: req.method.clone(),
            path: req.path.clone(),
            hashes,
            user_agent: req.header("user-agent").map(str::to_string),
            status,
        });
        (status, body)
    };
    let head = format!(
        "HTTP/1.1 {status} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        reason(status),
        body.len()
    );
    let _ = stream
        .write_all(head.as_bytes())
        .and_then(|_| stream.write_all(body.as_bytes()))
        .and_then(|_| stream.flush());
    let _ = stream.shutdown(std::net::Shutdown::Write);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn exchange(s: &CirclServer, method: &str, path: &str, body: &str) -> (u16, Value) {
        let mut c = TcpStream::connect(s.addr).unwrap();
        write!(
            c,
            "{method} {path} HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut raw = String::new();
        c.read_to_string(&mut raw).unwrap();
        let status = raw[9..12].parse().unwrap();
        let body = raw.split_once("\r\n\r\n").unwrap().1;
        (status, serde_json::from_str(body).unwrap())
    }

    /// The fixture values of the reference (PyHashlookup's tests).
    #[test]
    fn follows_the_published_contract() {
        let s = CirclServer::start().unwrap();
        let md5 = "8ED4B4ED952526D89899E723F3488DE4";
        let sha1 = "FFFFFDAC1B1B4C513896C805C2C698D9688BE69F";
        s.add(CirclServer::record(
            md5,
            "A".repeat(40).as_str(),
            &"B".repeat(64),
            "a.dll",
            None,
        ));
        s.add(CirclServer::record(
            &"C".repeat(32),
            sha1,
            &"D".repeat(64),
            "b.exe",
            Some("malshare.com"),
        ));

        let (st, v) = exchange(
            &s,
            "GET",
            &format!("/lookup/md5/{}", md5.to_lowercase()),
            "",
        );
        assert_eq!((st, v["FileName"].as_str()), (200, Some("a.dll")));
        let (st, v) = exchange(&s, "GET", &format!("/lookup/sha1/{}", "e".repeat(40)), "");
        assert_eq!(st, 404);
        assert_eq!(v["message"], "Non existing SHA-1");
        assert_eq!(v["query"], "e".repeat(40));
        let (st, v) = exchange(&s, "GET", "/lookup/sha256/xyz", "");
        assert_eq!(st, 400);
        assert!(v["message"].as_str().unwrap().contains("incorrect"));

        // Found records only, in input order; invalid and unknown entries dropped silently.
        let body =
            json!({"hashes": [sha1.to_lowercase(), "not hex", "F".repeat(40), "A".repeat(40)]});
        let (st, v) = exchange(&s, "POST", "/bulk/sha1", &body.to_string());
        assert_eq!(st, 200);
        let names: Vec<&str> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["FileName"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["b.exe", "a.dll"]);
        assert_eq!(v[0]["KnownMalicious"], "malshare.com");
        let (st, v) = exchange(&s, "POST", "/bulk/md5", r#"{"hash": []}"#);
        assert_eq!(st, 404);
        assert!(v["message"].as_str().unwrap().contains("'hashes'"));
        assert_eq!(
            exchange(&s, "POST", "/bulk/md5", r#"{"hashes": [1]}"#).0,
            500
        );
        assert_eq!(
            exchange(&s, "POST", "/bulk/sha256", r#"{"hashes": []}"#).0,
            404
        );
        assert_eq!(exchange(&s, "GET", "/bulk/sha1", "").0, 405);
        assert_eq!(exchange(&s, "GET", "/nothing", "").0, 404);

        s.push_fault(429, r#"{"message": "slow down"}"#);
        assert_eq!(exchange(&s, "POST", "/bulk/sha1", &body.to_string()).0, 429);
        assert_eq!(exchange(&s, "POST", "/bulk/sha1", &body.to_string()).0, 200);
        assert_eq!(s.requests().len(), 11);
    }
}
