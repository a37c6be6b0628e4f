//! The vendor's file API, for `--upload-unknown`: `GET /v4/apikey` (what the key allows),
//! `POST /v4/file` (the raw bytes, `application/octet-stream`, answered with a `data_id`) and
//! `GET /v4/file/{data_id}` (polled until `scan_results.progress_percentage` is 100).
//!
//! Uploads spend the key's *prevention* budget, not the reputation budget of `POST
//! /v4/hash`: its rate-limit headers are read into their own [`Budget`]. Every failure is an
//! [`UploadError`] of its own kind (throttled, budget spent, too big, no upload rights, the key
//! refused, transport, a bad answer), whose text is safe to show: the key is scrubbed from
//! whatever the service sends back. Nothing here decides *what* may be uploaded: that is the
//! policy of `hashsweep_scan::upload`.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use reqwest::StatusCode;
use reqwest::Url;
use reqwest::blocking::{Client, Response};
use reqwest::header::CONTENT_TYPE;
use serde_json::Value;

use super::http::{ClientConfig, ClientError, RateHeaders, client_base, join_endpoint, scrub_key};
use super::protocol::{MAX_ERROR_TEXT, cap_text, parse_error};
use super::{Answer, ApiKey, Budget, EngineResult};
use hashsweep_core::digest::Digest;
use hashsweep_core::sync::lock;

/// The longest an upload request may take (a file of the key's maximum size over a slow
/// link), whatever `--timeout` says for lookups.
pub const UPLOAD_TIMEOUT: Duration = Duration::from_secs(600);

/// What `GET /v4/apikey` says the key allows on the file API.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyInfo {
    /// Uploads a day (`limit_prevention`).
    pub limit_prevention: Option<u64>,
    /// `max_upload_file_size`, converted from MB to bytes.
    pub max_upload_bytes: Option<u64>,
    /// `enforce_private_scan`: the key's uploads are scanned privately, not shared.
    pub enforce_private_scan: bool,
    /// `paid_user`.
    pub paid_user: bool,
    /// `hashsweep_gateway`: the key is an endpoint token of a hashsweep gateway, which
    /// uploads for the fleet: files are announced ([`UploadClient::intent`]) and sent only
    /// when it asks for them.
    pub gateway: bool,
    /// `hashsweep_uploads`: the gateway uploads (`serve --upload-unknown`, its operator's
    /// consent to sharing or a key that scans privately).
    pub gateway_uploads: bool,
}

/// What a gateway answers a file's announcement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Intent {
    /// Send the bytes (`POST /v4/file` to the gateway).
    Send,
    /// Another host's upload of it is being scanned: poll this `data_id`.
    Wait(String),
    /// The final answer is known already.
    Answered(Answer),
}

/// The header naming the digest of the bytes sent to a gateway.
pub const GATEWAY_HASH_HEADER: &str = "x-hashsweep-hash";

/// How a file is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendOptions {
    /// The `rule` header (`multiscan`).
    pub rule: String,
    /// Ask for private scanning and processing (`samplesharing: 0`, `privateprocessing: 1`):
    /// only paid keys get it; a free key's files are shared whatever is asked.
    pub private: bool,
}

/// Why an upload or a poll failed. The text is complete and safe to show (no key).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UploadError {
    /// 429001 (or a 429 that is not the daily budget): the file API's short-term throttle
    /// (free keys: 9 requests an hour).
    #[error("{0}")]
    Throttled(String),
    /// 429000, or `x-ratelimit-remaining: 0`: the key's daily upload (prevention) budget.
    #[error("{0}")]
    BudgetSpent(String),
    /// 413: the service refused the file as too big.
    #[error("{0}")]
    TooBig(String),
    /// 403: the key may not upload.
    #[error("{0}")]
    Forbidden(String),
    /// 401: the key was refused.
    #[error("{0}")]
    KeyRefused(String),
    /// 404 for a `data_id`: the service does not know it (expired, or another key's).
    #[error("{0}")]
    UnknownDataId(String),
    /// The request did not get through, or got a 5xx or an unexpected status.
    #[error("{0}")]
    Transport(String),
    /// An answer that could not be used.
    #[error("{0}")]
    BadAnswer(String),
}

impl UploadError {
    /// Whether no further upload should be tried in this run after this one.
    pub fn stops_uploads(&self) -> bool {
        matches!(
            self,
            UploadError::Throttled(_)
                | UploadError::BudgetSpent(_)
                | UploadError::Forbidden(_)
                | UploadError::KeyRefused(_)
        )
    }
}

/// What a poll found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Poll {
    /// Still queued or scanning (`progress_percentage`, when the answer gave one).
    Pending(Option<i64>),
    /// The final answer, as a hash lookup's answer (`scan_all_result_i` as the code).
    Done(Answer),
}

/// The file API's client. Blocking; one upload at a time is what free keys allow anyway.
pub struct UploadClient {
    http: Client,
    /// `{base}/v4/` (the lookups' endpoint's folder).
    base: Url,
    key: ApiKey,
    /// The prevention budget from the last answer's rate-limit headers.
    budget: Mutex<Option<Budget>>,
}

impl std::fmt::Debug for UploadClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UploadClient")
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

impl UploadClient {
    /// A client for the same service, key and TLS settings as the lookups' `cfg`.
    pub fn new(cfg: &ClientConfig) -> Result<UploadClient, ClientError> {
        let (endpoint, _) = join_endpoint(&cfg.api_url)?;
        let base = endpoint
            .join("./")
            .map_err(|e| ClientError::BadUrl(cfg.api_url.clone(), e.to_string()))?;
        let (builder, headers) = client_base(cfg)?;
        let http = builder
            .default_headers(headers)
            .timeout(cfg.timeout.max(UPLOAD_TIMEOUT))
            .build()
            .map_err(|e| ClientError::Build(e.to_string()))?;
        Ok(UploadClient {
            http,
            base,
            key: cfg.key.clone(),
            budget: Mutex::new(None),
        })
    }

    /// The prevention budget as the service last stated it.
    pub fn budget(&self) -> Option<Budget> {
        *lock(&self.budget)
    }

    fn url(&self, rel: &str) -> Result<Url, UploadError> {
        self.base
            .join(rel)
            .map_err(|e| UploadError::BadAnswer(format!("cannot build the URL {rel}: {e}")))
    }

    fn scrub(&self, s: &str) -> String {
        scrub_key(s, self.key.expose())
    }

    /// Send one request; the body of a 200, or the error its status means.
    fn send(
        &self,
        what: &str,
        req: reqwest::blocking::RequestBuilder,
    ) -> Result<Vec<u8>, UploadError> {
        let resp = req.send().map_err(|e| {
            UploadError::Transport(self.scrub(&format!("{what}: the request failed: {e}")))
        })?;
        let status = resp.status();
        let budget_headers = RateHeaders::read(resp.headers());
        // The prevention budget: headers that say so, or an upload's answer that names none.
        let window = resp
            .headers()
            .get("x-ratelimit-for")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_ascii_lowercase());
        let prevention = match window.as_deref() {
            Some(w) => w == "prevention_api",
            None => what.starts_with("upload"),
        };
        if budget_headers.remaining.is_some() && prevention {
            let mut b = lock(&self.budget);
            *b = budget_headers.merge(*b, hashsweep_core::clock::now());
        }
        let body = read(resp).map_err(|e| {
            UploadError::Transport(self.scrub(&format!("{what}: reading the answer: {e}")))
        })?;
        if status == StatusCode::OK {
            return Ok(body);
        }
        let err = parse_error(&body);
        let code = err.code.map(|c| format!(", code {c}")).unwrap_or_default();
        let said = if err.message.is_empty() {
            String::new()
        } else {
            format!(": {}", err.message)
        };
        let text = self.scrub(&format!("{what}: HTTP {}{code}{said}", status.as_u16()));
        Err(match (status.as_u16(), err.code) {
            (429, Some(429000)) => UploadError::BudgetSpent(text),
            (429, _) => UploadError::Throttled(text),
            (413, _) => UploadError::TooBig(text),
            (403, _) => UploadError::Forbidden(text),
            (401, _) => UploadError::KeyRefused(text),
            (404, _) if what.starts_with("poll") => UploadError::UnknownDataId(text),
            _ => UploadError::Transport(text),
        })
    }

    /// `GET /v4/apikey`: what the key allows.
    pub fn key_info(&self) -> Result<KeyInfo, UploadError> {
        let body = self.send(
            "key information (GET /v4/apikey)",
            self.http.get(self.url("apikey")?),
        )?;
        parse_key_info(&body)
    }

    /// A gateway's `POST /v1/upload/intent`: announce a file of `size` bytes whose digest is
    /// `digest`; whether to send it, poll another host's upload, or take the answer.
    pub fn intent(&self, digest: &Digest, size: u64) -> Result<Intent, UploadError> {
        let body = serde_json::json!({"hash": digest.to_hex(), "size": size}).to_string();
        let answer = self.send(
            "announcing the upload to the gateway (POST /v1/upload/intent)",
            self.http
                .post(self.url("../v1/upload/intent")?)
                .header(CONTENT_TYPE, "application/json")
                .body(body),
        )?;
        parse_intent(&answer)
    }

    /// `POST /v4/file` with `bytes`; the `data_id`.
    pub fn upload(
        &self,
        name: &str,
        bytes: Vec<u8>,
        opts: &SendOptions,
    ) -> Result<String, UploadError> {
        self.upload_as(name, bytes, opts, None)
    }

    /// `POST /v4/file` with `bytes`, naming their digest for a gateway that asked for them.
    pub fn upload_as(
        &self,
        name: &str,
        bytes: Vec<u8>,
        opts: &SendOptions,
        digest: Option<&Digest>,
    ) -> Result<String, UploadError> {
        let mut req = self
            .http
            .post(self.url("file")?)
            .header(CONTENT_TYPE, "application/octet-stream")
            .header("filename", url_encode(name))
            .header("rule", opts.rule.as_str());
        if let Some(d) = digest {
            req = req.header(GATEWAY_HASH_HEADER, d.to_hex());
        }
        if opts.private {
            req = req
                .header("samplesharing", "0")
                .header("privateprocessing", "1");
        }
        let body = self.send("upload (POST /v4/file)", req.body(bytes))?;
        parse_upload(&body)
    }

    /// `GET /v4/file/{data_id}`.
    pub fn poll(&self, data_id: &str) -> Result<Poll, UploadError> {
        let url = self.url(&format!("file/{}", url_encode(data_id)))?;
        let body = self.send(
            &format!("poll of data_id {data_id} (GET /v4/file)"),
            self.http.get(url),
        )?;
        parse_poll(&body, data_id)
    }
}

/// Read an answer's body, at most a few MB (a detailed answer's engines).
fn read(resp: Response) -> Result<Vec<u8>, String> {
    use std::io::Read as _;
    let mut out = Vec::new();
    resp.take(super::protocol::MAX_ANSWER as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| e.to_string())?;
    if out.len() > super::protocol::MAX_ANSWER {
        return Err("the answer is too long".into());
    }
    Ok(out)
}

/// Percent-encoding of everything but unreserved characters (RFC 3986), as the vendor's own
/// clients encode the `filename` header.
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A flag the service may send as a number, a boolean or a string.
fn flag(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_i64().is_some_and(|n| n != 0),
        Some(Value::String(s)) => matches!(s.trim(), "1" | "true" | "yes"),
        _ => false,
    }
}

fn number(v: Option<&Value>) -> Option<u64> {
    match v {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Read `POST /v4/file`'s answer: its `data_id`, never empty.
pub fn parse_upload(body: &[u8]) -> Result<String, UploadError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| UploadError::BadAnswer(format!("upload: the answer is not JSON: {e}")))?;
    match v.get("data_id").and_then(Value::as_str) {
        Some(id) if !id.is_empty() => Ok(id.to_string()),
        _ => Err(UploadError::BadAnswer(
            "upload: the answer has no data_id".into(),
        )),
    }
}

/// Read a gateway's answer to `POST /v1/upload/intent`.
pub fn parse_intent(answer: &[u8]) -> Result<Intent, UploadError> {
    let bad =
        || UploadError::BadAnswer("the gateway's answer to the announcement is not one".into());
    let v: Value = serde_json::from_slice(answer).map_err(|_| bad())?;
    let data_id = || {
        v.get("data_id")
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty())
            .map(str::to_string)
    };
    match v.get("action").and_then(Value::as_str) {
        Some("send") => Ok(Intent::Send),
        Some("wait") => data_id().map(Intent::Wait).ok_or_else(bad),
        Some("answered") => Ok(Intent::Answered(Answer {
            scan_result_i: v
                .get("scan_result_i")
                .and_then(Value::as_i64)
                .ok_or_else(bad)?,
            total_detected_avs: v
                .get("total_detected_avs")
                .and_then(Value::as_i64)
                .unwrap_or(0),
            data_id: data_id().map(Into::into),
            details: None,
            hosts: None,
        })),
        _ => Err(bad()),
    }
}

/// Read `GET /v4/apikey`'s answer.
pub fn parse_key_info(body: &[u8]) -> Result<KeyInfo, UploadError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        UploadError::BadAnswer(format!("key information: the answer is not JSON: {e}"))
    })?;
    if !v.is_object() {
        return Err(UploadError::BadAnswer(
            "key information: the answer is not an object".into(),
        ));
    }
    Ok(KeyInfo {
        limit_prevention: number(v.get("limit_prevention")),
        // A gateway states its limit in bytes too (its --upload-max-size need not be in MB).
        max_upload_bytes: number(v.get("hashsweep_max_upload_bytes"))
            .or_else(|| number(v.get("max_upload_file_size")).map(|mb| mb.saturating_mul(1 << 20))),
        enforce_private_scan: flag(v.get("enforce_private_scan")),
        paid_user: flag(v.get("paid_user")),
        gateway: flag(v.get("hashsweep_gateway")),
        gateway_uploads: flag(v.get("hashsweep_uploads")),
    })
}

/// Read a poll's answer: pending until `progress_percentage` is 100 and the code is final
/// (not 254/255 "in queue"/"in progress").
pub fn parse_poll(body: &[u8], data_id: &str) -> Result<Poll, UploadError> {
    let bad = |why: &str| {
        UploadError::BadAnswer(cap_text(
            &format!("poll of data_id {data_id}: {why}"),
            MAX_ERROR_TEXT,
        ))
    };
    let v: Value = serde_json::from_slice(body).map_err(|_| bad("the answer is not JSON"))?;
    let results = v.get("scan_results");
    let progress = results
        .and_then(|r| r.get("progress_percentage"))
        .or_else(|| v.pointer("/process_info/progress_percentage"))
        .and_then(Value::as_i64);
    let code = results
        .and_then(|r| r.get("scan_all_result_i"))
        .and_then(Value::as_i64);
    let Some(code) = code.filter(|c| progress == Some(100) && !matches!(c, 254 | 255)) else {
        return Ok(Poll::Pending(progress));
    };
    let results = results.ok_or_else(|| bad("no scan_results"))?;
    let details: Vec<EngineResult> = results
        .get("scan_details")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(engine, e)| EngineResult {
                    engine: engine.clone(),
                    threat_found: e
                        .get("threat_found")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    scan_result_i: e.get("scan_result_i").and_then(Value::as_i64),
                    def_time: e
                        .get("def_time")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                })
                .collect()
        })
        .unwrap_or_default();
    let total = results
        .get("total_detected_avs")
        .and_then(Value::as_i64)
        .unwrap_or_else(|| {
            details
                .iter()
                .filter(|e| !e.threat_found.is_empty() || matches!(e.scan_result_i, Some(1 | 2)))
                .count() as i64
        });
    Ok(Poll::Done(Answer {
        scan_result_i: code,
        total_detected_avs: total,
        data_id: Some(data_id.into()),
        details: (!details.is_empty()).then(|| details.into_boxed_slice()),
        hosts: None,
    }))
}

/// Backoff between polls: `base`, growing by half each time, at most `cap` (2 s to 10 s).
pub fn poll_interval(base: Duration, cap: Duration, attempt: u32) -> Duration {
    let mut d = base;
    for _ in 0..attempt {
        d = d.mul_f64(1.5);
        if d >= cap {
            return cap;
        }
    }
    d.min(cap)
}

/// Seconds since the epoch (for dating pending uploads).
pub fn unix_now() -> i64 {
    hashsweep_core::clock::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queued_answer_is_pending_and_a_finished_one_is_the_answer() {
        let q = br#"{"data_id":"x","status":"inqueue","in_queue":1}"#;
        assert_eq!(parse_poll(q, "x").unwrap(), Poll::Pending(None));
        let p = br#"{"scan_results":{"scan_all_result_i":255,"progress_percentage":40}}"#;
        assert_eq!(parse_poll(p, "x").unwrap(), Poll::Pending(Some(40)));
        // 100% but still "in progress": not final.
        let p = br#"{"scan_results":{"scan_all_result_i":255,"progress_percentage":100}}"#;
        assert_eq!(parse_poll(p, "x").unwrap(), Poll::Pending(Some(100)));
        let done = br#"{"scan_results":{"scan_all_result_i":1,"progress_percentage":100,
            "total_detected_avs":3,"scan_details":{"A":{"threat_found":"T","scan_result_i":1}}}}"#;
        let Poll::Done(a) = parse_poll(done, "x").unwrap() else {
            panic!("final")
        };
        assert_eq!((a.scan_result_i, a.total_detected_avs), (1, 3));
        assert_eq!(a.data_id.as_deref(), Some("x"));
        assert_eq!(a.details.as_deref().map(<[_]>::len), Some(1));
        assert!(parse_poll(b"<html>", "x").is_err());
    }

    #[test]
    fn key_information_flags_in_any_form() {
        let k = parse_key_info(
            br#"{"limit_prevention":"40","max_upload_file_size":2,"enforce_private_scan":true,"paid_user":1}"#,
        )
        .unwrap();
        assert_eq!(k.limit_prevention, Some(40));
        assert_eq!(k.max_upload_bytes, Some(2 << 20));
        assert!(k.enforce_private_scan && k.paid_user);
        let k = parse_key_info(br#"{"enforce_private_scan":0}"#).unwrap();
        assert!(!k.enforce_private_scan && k.max_upload_bytes.is_none());
        assert!(!k.gateway && !k.gateway_uploads);
        let k = parse_key_info(
            br#"{"hashsweep_gateway":true,"hashsweep_uploads":true,"max_upload_file_size":0,"hashsweep_max_upload_bytes":1000}"#,
        )
        .unwrap();
        assert!(k.gateway && k.gateway_uploads);
        assert_eq!(k.max_upload_bytes, Some(1000));
    }

    #[test]
    fn polls_back_off_from_2s_to_10s() {
        let (b, c) = (Duration::from_secs(2), Duration::from_secs(10));
        let waits: Vec<u64> = (0..6)
            .map(|i| poll_interval(b, c, i).as_millis() as u64)
            .collect();
        assert_eq!(waits, [2000, 3000, 4500, 6750, 10000, 10000]);
    }

    #[test]
    fn file_names_are_url_encoded() {
        assert_eq!(url_encode("a b/ü<>.exe"), "a%20b%2F%C3%BC%3C%3E.exe");
    }
}
