//! The real client: MetaDefender's `POST {api-url}/v4/hash` over reqwest (blocking, rustls).
//!
//! It owns the run-wide lookup policy: retries with exponential backoff and jitter for 5xx,
//! timeouts, resets and malformed answers; waiting as told on 429 (one pause shared by every
//! request in flight, capped by `max_wait`); stopping for good after a 401/403 or a spent daily
//! quota; splitting a batch the service refuses with 400 so the good hashes still get answers.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reqwest::blocking::{Client, Response};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{StatusCode, Url};

use super::protocol::{self, parse_answer, parse_error};
use super::{ApiKey, ClientStats, HashOutcome, LookupError, Reason, ReputationClient};
use crate::digest::Digest;
use crate::lookup::batch::LookupBatch;
use crate::sync::lock;

/// The public service.
pub const DEFAULT_API_URL: &str = "https://api.metadefender.com";

/// Timeout for connecting, for every client.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How patient a client is: the defaults that differ between an endpoint (`scan`, `lookup`:
/// [`Patience::ENDPOINT`]) and a gateway's upstream (`crate::gateway::UPSTREAM`), whose
/// clients are waiting on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Patience {
    /// How long a partial batch waits for more digests before it is sent.
    pub batch_wait: Duration,
    /// Retries after the first attempt for transient failures.
    pub retries: u32,
    /// The longest a 429 may make us wait.
    pub max_wait: Duration,
    /// Whole-request timeout.
    pub timeout: Duration,
}

impl Patience {
    /// `scan` and `lookup`: nobody waits on the answer but the sweep itself.
    pub const ENDPOINT: Patience = Patience {
        batch_wait: Duration::from_secs(1),
        retries: 5,
        max_wait: Duration::from_secs(600),
        timeout: Duration::from_secs(60),
    };
}

/// Everything the client needs to know.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub api_url: String,
    pub key: ApiKey,
    /// Send `includescandetails: 1` and keep per-engine results.
    pub details: bool,
    /// Retries after the first attempt for transient failures.
    pub retries: u32,
    /// The longest a 429 may make us wait; longer waits fail the batch.
    pub max_wait: Duration,
    /// Whole-request timeout.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Allow plain http to hosts other than loopback.
    pub insecure_http: bool,
    /// At most this many requests per minute (`--rate`).
    pub rate: Option<u32>,
    /// Extra trusted root certificates, PEM (`--ca-cert`): an on-premises service or a
    /// gateway with a private CA.
    pub ca_cert: Option<Vec<u8>>,
}

impl ClientConfig {
    pub fn new(api_url: impl Into<String>, key: ApiKey) -> ClientConfig {
        ClientConfig {
            api_url: api_url.into(),
            key,
            details: false,
            retries: Patience::ENDPOINT.retries,
            max_wait: Patience::ENDPOINT.max_wait,
            timeout: Patience::ENDPOINT.timeout,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            insecure_http: false,
            rate: None,
            ca_cert: None,
        }
    }
}

/// Why the client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid --api-url '{0}': {1}")]
    BadUrl(String, String),
    #[error(
        "refusing plain http to {0}: the API key would cross the network unencrypted (use https, or --insecure-http)"
    )]
    PlainHttp(String),
    #[error("cannot build the HTTP client: {0}")]
    Build(String),
}

/// The blocking HTTP client. Share it between lookup threads by reference or `Arc`.
pub struct HttpClient {
    http: Client,
    endpoint: Url,
    key: ApiKey,
    headers: HeaderMap,
    cfg: ClientConfig,
    /// Nobody sends before this instant (set by 429 answers).
    pause_until: Mutex<Option<Instant>>,
    /// Once set, nothing more is sent; every batch gets this reason.
    stopped: Mutex<Option<LookupError>>,
    /// With `--rate`, the earliest start of the next request.
    next_slot: Mutex<Option<Instant>>,
    requests: AtomicU64,
    retries: AtomicU64,
    throttled: AtomicU64,
    /// The last `X-RateLimit-Remaining` seen (`u64::MAX` until one is).
    quota_remaining: AtomicU64,
    /// When lookups stopped because the daily quota is spent: when it resets, if known.
    quota_reset: Mutex<Option<Option<Instant>>>,
}

/// How one attempt ended.
enum Attempt {
    Done(Vec<(Digest, HashOutcome)>),
    /// Worth trying again, after a backoff (a transport failure or an unusable answer).
    Retry(LookupError),
    /// The service told us to wait this long (throttled).
    Wait(Duration, Reason),
    /// 400: the batch itself was refused.
    BadRequest(Reason),
    /// Stop the whole run's lookups.
    Fatal(LookupError),
}

impl HttpClient {
    pub fn new(cfg: ClientConfig) -> Result<HttpClient, ClientError> {
        let base = cfg.api_url.trim_end_matches('/');
        let endpoint = Url::parse(&format!("{base}/v4/hash"))
            .map_err(|e| ClientError::BadUrl(cfg.api_url.clone(), e.to_string()))?;
        match endpoint.scheme() {
            "https" => {}
            "http" if cfg.insecure_http || is_loopback(&endpoint) => {}
            "http" => {
                return Err(ClientError::PlainHttp(
                    endpoint.host_str().unwrap_or_default().to_string(),
                ));
            }
            other => {
                return Err(ClientError::BadUrl(
                    cfg.api_url.clone(),
                    format!("unsupported scheme '{other}'"),
                ));
            }
        }
        let mut headers = HeaderMap::new();
        let mut key = HeaderValue::from_str(cfg.key.expose()).map_err(|_| {
            ClientError::Build("the API key contains characters not allowed in a header".into())
        })?;
        key.set_sensitive(true);
        headers.insert("apikey", key);
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if cfg.details {
            headers.insert("includescandetails", HeaderValue::from_static("1"));
        }
        let mut builder = Client::builder();
        if let Some(pem) = &cfg.ca_cert {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| ClientError::Build(format!("--ca-cert: {e}")))?;
            if certs.is_empty() {
                return Err(ClientError::Build(
                    "--ca-cert: no certificate in the file".into(),
                ));
            }
            for c in certs {
                builder = builder.add_root_certificate(c);
            }
        }
        let http = builder
            .user_agent(concat!("hashsweep/", env!("CARGO_PKG_VERSION")))
            .timeout(cfg.timeout)
            .connect_timeout(cfg.connect_timeout)
            // Never follow a redirect: the `apikey` header would go with it to another host
            // (reqwest strips only Authorization and cookies), and past the http check.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ClientError::Build(e.to_string()))?;
        Ok(HttpClient {
            http,
            endpoint,
            key: cfg.key.clone(),
            headers,
            cfg,
            pause_until: Mutex::new(None),
            stopped: Mutex::new(None),
            next_slot: Mutex::new(None),
            requests: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
            quota_remaining: AtomicU64::new(u64::MAX),
            quota_reset: Mutex::new(None),
        })
    }

    fn stopped_reason(&self) -> Option<LookupError> {
        lock(&self.stopped).clone()
    }

    /// The last `X-RateLimit-Remaining` the service sent, if any.
    pub fn quota_remaining(&self) -> Option<u64> {
        Some(self.quota_remaining.load(Ordering::Relaxed)).filter(|r| *r != u64::MAX)
    }

    /// If lookups stopped because the daily quota is spent: `Some(when it resets)`, the inner
    /// `None` when the service did not say. A long-running caller (the gateway) builds a new
    /// client once that time has passed.
    pub fn quota_spent(&self) -> Option<Option<Instant>> {
        *lock(&self.quota_reset)
    }

    fn stop_for_quota(&self, why: &LookupError, reset: Option<Duration>) {
        lock(&self.quota_reset).get_or_insert(reset.map(|r| Instant::now() + r));
        self.stop(why);
    }

    fn stop(&self, why: &LookupError) {
        lock(&self.stopped).get_or_insert_with(|| why.clone());
    }

    /// Sleep until the shared 429 pause is over.
    fn wait_for_pause(&self) {
        let until = *lock(&self.pause_until);
        if let Some(t) = until {
            let now = Instant::now();
            if t > now {
                std::thread::sleep(t - now);
            }
        }
    }

    fn pause_for(&self, d: Duration) {
        let mut g = lock(&self.pause_until);
        let t = Instant::now() + d;
        if g.is_none_or(|cur| cur < t) {
            *g = Some(t);
        }
    }

    /// Remove the key from any text that came back from the network.
    fn scrub(&self, s: &str) -> String {
        let k = self.key.expose();
        if k.len() >= 4 {
            s.replace(k, "[redacted]")
        } else {
            s.to_string()
        }
    }

    /// The same error with the key removed from its text; a missing entry stays one (its
    /// text is ours, and its kind means "ask again").
    fn scrub_error(&self, e: LookupError) -> LookupError {
        match e {
            LookupError::MissingEntry => e,
            e => e.map_message(|m| self.scrub(m)),
        }
    }

    fn attempt(&self, digests: &[Digest]) -> Attempt {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let sent = self
            .http
            .post(self.endpoint.clone())
            .headers(self.headers.clone())
            .body(protocol::request_body(digests))
            .send();
        let resp = match sent {
            Ok(r) => r,
            Err(e) => {
                return Attempt::Retry(LookupError::Transport(
                    self.scrub(&describe_reqwest(&e)).into(),
                ));
            }
        };
        let status = resp.status();
        if status.is_redirection() {
            let to = resp
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("?")
                .to_string();
            return Attempt::Fatal(LookupError::Transport(
                self.scrub(&format!(
                    "the service answered HTTP {} (redirect to {to}); redirects are not followed, since the API key \
                     would go with them. Use the final URL as --api-url",
                    status.as_u16()
                ))
                .into(),
            ));
        }
        let wait = wait_hint(resp.headers());
        let remaining = resp
            .headers()
            .get("x-ratelimit-remaining")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if let Some(r) = remaining {
            self.quota_remaining
                .store(r.min(u64::MAX - 1), Ordering::Relaxed);
        }
        let body = match read_body(resp) {
            Ok(b) => b,
            Err(e) => {
                return Attempt::Retry(LookupError::Transport(
                    self.scrub(&format!("HTTP {}: answer cut short: {e}", status.as_u16()))
                        .into(),
                ));
            }
        };
        if status == StatusCode::OK {
            return match parse_answer(&body, digests) {
                Ok(out) => {
                    self.note_quota(remaining, wait);
                    // Error reasons quote the server's values; the key must not ride along.
                    Attempt::Done(
                        out.into_iter()
                            .map(|(d, o)| (d, o.map_err(|e| self.scrub_error(e))))
                            .collect(),
                    )
                }
                Err(e) => Attempt::Retry(LookupError::BadAnswer(self.scrub(&e.0).into())),
            };
        }
        let err = parse_error(&body);
        let what = self.scrub(&format!(
            "HTTP {}{}{}",
            status.as_u16(),
            err.code.map(|c| format!(" (code {c})")).unwrap_or_default(),
            if err.message.is_empty() {
                String::new()
            } else {
                format!(": {}", err.message)
            }
        ));
        match status.as_u16() {
            401 | 403 => Attempt::Fatal(LookupError::KeyRefused(format!(
                "the API key was refused ({what}); no further lookups were sent. Check METADEFENDER_APIKEY or --apikey-file"
            ).into())),
            429 => {
                self.throttled.fetch_add(1, Ordering::Relaxed);
                let wait = wait.unwrap_or(Duration::from_secs(5));
                if err.code == Some(429000) && wait > self.cfg.max_wait {
                    let why = LookupError::QuotaSpent(
                        format!(
                            "the daily lookup quota is spent ({what}); it resets in {}s",
                            wait.as_secs()
                        )
                        .into(),
                    );
                    self.stop_for_quota(&why, Some(wait));
                    Attempt::Fatal(why)
                } else {
                    Attempt::Wait(wait, what.into())
                }
            }
            400 => Attempt::BadRequest(what.into()),
            _ => Attempt::Retry(LookupError::Transport(what.into())),
        }
    }

    /// Look up `digests`, retrying and splitting as needed. Always one outcome per digest.
    fn lookup_digests(&self, batch_id: u64, digests: &[Digest]) -> Vec<(Digest, HashOutcome)> {
        let mut done: Vec<(Digest, HashOutcome)> = Vec::with_capacity(digests.len());
        let mut pending: Vec<Digest> = digests.to_vec();
        let mut failures = 0u32;
        let mut throttles = 0u32;
        let fail_all =
            |pending: &[Digest], done: &mut Vec<(Digest, HashOutcome)>, why: LookupError| {
                done.extend(pending.iter().map(|d| (*d, Err(why.clone()))));
            };
        while !pending.is_empty() {
            if let Some(why) = self.stopped_reason() {
                let why = why.map_message(|m| format!("not looked up: {m}"));
                fail_all(&pending, &mut done, why);
                break;
            }
            self.wait_for_pause();
            self.wait_for_rate_slot();
            match self.attempt(&pending) {
                Attempt::Done(out) => {
                    // Hashes the answer left out are asked again (within the retry budget).
                    let (missing, answered): (Vec<_>, Vec<_>) = out
                        .into_iter()
                        .partition(|(_, o)| matches!(o, Err(LookupError::MissingEntry)));
                    done.extend(answered);
                    pending = missing.iter().map(|(d, _)| *d).collect();
                    if !pending.is_empty() {
                        failures += 1;
                        if failures > self.cfg.retries {
                            done.extend(missing);
                            break;
                        }
                        self.retries.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Attempt::Fatal(why) => {
                    self.stop(&why);
                    fail_all(&pending, &mut done, why);
                    break;
                }
                Attempt::BadRequest(why) => {
                    if pending.len() <= 1 {
                        fail_all(
                            &pending,
                            &mut done,
                            LookupError::Refused(
                                format!("service refused this hash (batch {batch_id}): {why}")
                                    .into(),
                            ),
                        );
                    } else {
                        let (a, b) = pending.split_at(pending.len() / 2);
                        done.extend(self.lookup_digests(batch_id, a));
                        done.extend(self.lookup_digests(batch_id, b));
                    }
                    break;
                }
                Attempt::Wait(d, why) => {
                    throttles += 1;
                    if d > self.cfg.max_wait {
                        fail_all(
                            &pending,
                            &mut done,
                            LookupError::Throttled(
                                format!(
                                    "lookup failed (batch {batch_id}): throttled and told to wait {}s, more than --max-wait ({}s): {why}",
                                    d.as_secs(),
                                    self.cfg.max_wait.as_secs()
                                )
                                .into(),
                            ),
                        );
                        break;
                    }
                    if throttles > self.cfg.retries.max(1) * 4 {
                        fail_all(
                            &pending,
                            &mut done,
                            LookupError::Throttled(
                                format!(
                                    "lookup failed (batch {batch_id}): still throttled after {throttles} tries: {why}"
                                )
                                .into(),
                            ),
                        );
                        break;
                    }
                    self.retries.fetch_add(1, Ordering::Relaxed);
                    self.pause_for(d);
                }
                Attempt::Retry(why) => {
                    failures += 1;
                    if failures > self.cfg.retries {
                        fail_all(
                            &pending,
                            &mut done,
                            why.map_message(|m| {
                                format!(
                                    "lookup failed (batch {batch_id}) after {failures} attempts: {m}"
                                )
                            }),
                        );
                        break;
                    }
                    self.retries.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(backoff(failures));
                }
            }
        }
        done
    }

    /// With `--rate N`, requests start at least 60/N seconds apart, across all threads.
    fn wait_for_rate_slot(&self) {
        let Some(rate) = self.cfg.rate.filter(|r| *r > 0) else {
            return;
        };
        let gap = Duration::from_secs(60) / rate;
        let slot = {
            let mut next = lock(&self.next_slot);
            let now = Instant::now();
            let slot = next.map_or(now, |n| n.max(now));
            *next = Some(slot + gap);
            slot
        };
        let now = Instant::now();
        if slot > now {
            std::thread::sleep(slot - now);
        }
    }

    /// After a good answer: if the service says the quota is used up, pause until it resets
    /// (when that is within `--max-wait`) or stop asking for the rest of the run.
    fn note_quota(&self, remaining: Option<u64>, reset: Option<Duration>) {
        if remaining != Some(0) {
            return;
        }
        match reset {
            Some(r) if r <= self.cfg.max_wait => self.pause_for(r),
            _ => self.stop_for_quota(
                &LookupError::QuotaSpent(
                    format!(
                        "the daily lookup quota is spent (X-RateLimit-Remaining: 0{})",
                        reset
                            .map(|r| format!(", resets in {}s", r.as_secs()))
                            .unwrap_or_default()
                    )
                    .into(),
                ),
                reset,
            ),
        }
    }
}

impl ReputationClient for HttpClient {
    fn lookup(&self, batch: &LookupBatch) -> Vec<(Digest, HashOutcome)> {
        if batch.digests.is_empty() {
            return Vec::new();
        }
        self.lookup_digests(batch.id, &batch.digests)
    }

    fn halted(&self) -> Option<LookupError> {
        self.stopped_reason()
    }

    fn budget(&self) -> Option<super::Budget> {
        self.quota_remaining().map(|remaining| super::Budget {
            limit: None,
            remaining,
            resets_at: None,
        })
    }

    fn stats(&self) -> ClientStats {
        ClientStats {
            requests: self.requests.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            throttled: self.throttled.load(Ordering::Relaxed),
        }
    }
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("endpoint", &self.endpoint.as_str())
            .field("key", &self.key)
            .finish()
    }
}

/// Exponential backoff with jitter: about 0.5 s, 1 s, 2 s … capped at 30 s, each scaled by a
/// random factor in [0.5, 1).
pub fn backoff(attempt: u32) -> Duration {
    let base = Duration::from_millis(500).saturating_mul(1u32 << attempt.saturating_sub(1).min(6));
    base.min(Duration::from_secs(30))
        .mul_f64(0.5 + fastrand::f64() / 2.0)
}

/// How long the service asked us to wait: `Retry-After` (seconds) when present, it being the
/// instruction for this answer; else `X-RateLimit-Reset-In` (`"30"` or `"30s"`).
pub fn wait_hint(h: &HeaderMap) -> Option<Duration> {
    let secs = |name: &str| {
        h.get(name)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.trim().trim_end_matches(['s', 'S']).trim())
            .and_then(|s| s.parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64)
    };
    secs("retry-after").or_else(|| secs("x-ratelimit-reset-in"))
}

fn read_body(resp: Response) -> Result<Vec<u8>, String> {
    resp.bytes()
        .map(|b| b.to_vec())
        .map_err(|e| describe_reqwest(&e))
}

/// A reqwest error without the URL noise, with its cause chain.
fn describe_reqwest(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_body() || e.is_decode() {
        "answer cut short"
    } else {
        "request failed"
    };
    let mut msg = kind.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    msg
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn cfg(url: &str) -> ClientConfig {
        ClientConfig::new(url, ApiKey::new("k").unwrap())
    }

    #[test]
    fn plain_http_only_for_loopback_unless_insecure() {
        assert!(HttpClient::new(cfg("http://127.0.0.1:9")).is_ok());
        assert!(HttpClient::new(cfg("http://localhost:9/")).is_ok());
        assert!(HttpClient::new(cfg("https://api.metadefender.com")).is_ok());
        assert!(matches!(
            HttpClient::new(cfg("http://gw.example:8737")),
            Err(ClientError::PlainHttp(_))
        ));
        let mut c = cfg("http://gw.example:8737");
        c.insecure_http = true;
        assert!(HttpClient::new(c).is_ok());
        assert!(HttpClient::new(cfg("ftp://x")).is_err());
    }

    #[test]
    fn path_is_joined_to_base() {
        let c = HttpClient::new(cfg("http://127.0.0.1:9/metadefender/")).unwrap();
        assert_eq!(
            c.endpoint.as_str(),
            "http://127.0.0.1:9/metadefender/v4/hash"
        );
    }

    #[test]
    fn wait_hints_from_either_header() {
        let mut h = HeaderMap::new();
        h.insert("x-ratelimit-reset-in", HeaderValue::from_static("86400s"));
        assert_eq!(wait_hint(&h), Some(Duration::from_secs(86400)));
        h.insert("retry-after", HeaderValue::from_static("3"));
        assert_eq!(wait_hint(&h), Some(Duration::from_secs(3)));
        let mut h = HeaderMap::new();
        h.insert("Retry-After", HeaderValue::from_static("2"));
        assert_eq!(wait_hint(&h), Some(Duration::from_secs(2)));
        assert_eq!(wait_hint(&HeaderMap::new()), None);
    }

    /// A local server that answers every request `401` and counts them.
    fn refusing_server() -> (String, Arc<AtomicU64>) {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(AtomicU64::new(0));
        let count = Arc::clone(&seen);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut len = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
                let _ = reader.read_exact(&mut vec![0; len]);
                count.fetch_add(1, Ordering::SeqCst);
                let body = r#"{"error":{"code":401006,"messages":["Invalid apikey"]}}"#;
                let _ = write!(
                    stream,
                    "HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        (url, seen)
    }

    /// Poison `m` the way a real one gets poisoned: a thread panics while holding it.
    fn poison<T: Send>(m: &Mutex<T>) {
        std::thread::scope(|s| {
            let _ = s
                .spawn(|| {
                    let _held = m.lock();
                    panic!("poisoning the lock on purpose");
                })
                .join();
        });
        assert!(m.is_poisoned());
    }

    #[test]
    fn a_poisoned_lock_does_not_lose_the_stop_after_a_refused_key() {
        let (url, seen) = refusing_server();
        let mut c = cfg(&url);
        c.retries = 0;
        let client = HttpClient::new(c).unwrap();
        poison(&client.stopped);
        poison(&client.pause_until);
        poison(&client.next_slot);
        poison(&client.quota_reset);
        let batch = |id| LookupBatch {
            id,
            digests: vec![Digest::Sha256([id as u8; 32])],
        };

        let first = client.lookup(&batch(1));
        assert!(
            matches!(&first[0].1, Err(LookupError::KeyRefused(r)) if r.as_str().contains("401")),
            "{first:?}"
        );
        assert!(matches!(client.halted(), Some(LookupError::KeyRefused(_))));
        // Nothing more is sent: the next batch is failed from the halt, not asked.
        let second = client.lookup(&batch(2));
        assert!(
            matches!(&second[0].1, Err(LookupError::KeyRefused(r)) if r.as_str().starts_with("not looked up: the API key was refused")),
            "{second:?}"
        );
        assert_eq!(
            seen.load(Ordering::SeqCst),
            1,
            "a request was sent after the 401"
        );
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!(backoff(1) <= Duration::from_millis(500));
        assert!(backoff(4) >= Duration::from_secs(2));
        assert!(backoff(30) <= Duration::from_secs(30));
    }
}
