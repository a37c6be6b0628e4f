//! The real client: MetaDefender's `POST {api-url}/v4/hash` over reqwest (blocking, rustls).
//!
//! It owns the run-wide lookup policy:
//! - retries with exponential backoff and jitter for 5xx, timeouts, resets and malformed answers;
//! - 429001 (throttled) and 429002 (too many connections), or a 429 without a quota code: back
//!   off 1 s doubling to 60 s with jitter (or as told by a `Retry-After`, which the service is
//!   not documented to send), one pause shared by every request in flight, for as long as the
//!   batch's total wait stays within `max_wait`; and fewer requests in flight ([`Flight`]:
//!   halved after a 429002, one fewer after a 429001, one more again after a few answers);
//! - `x-ratelimit-reset-in` is the daily window, never a time to wait before the next try: only
//!   429000, or `x-ratelimit-remaining: 0`, means the day's budget is spent, and then nothing
//!   more is sent ([`LookupError::QuotaSpent`]); but a window that ends within `max_wait` (the
//!   day's last minutes, or a short window: remaining 0 with `x-ratelimit-reset-in: 1s`) is
//!   waited for, not taken as the day's end, and a short window's figures never replace the
//!   day's budget ([`RateHeaders::merge`]);
//! - stopping for good after a 401, a 403 (each sub-code its own message) or a 404 (a wrong
//!   `--api-url`);
//! - splitting a batch the service refuses with 400 so the good hashes still get answers.
//!
//! Every answer's rate-limit headers update the [`Budget`] the client reports.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

use reqwest::blocking::{Client, Response};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{StatusCode, Url};

use super::protocol::{self, parse_answer, parse_error};
use super::{ApiKey, Budget, ClientStats, HashOutcome, LookupError, Reason, ReputationClient};
use crate::digest::Digest;
use crate::lookup::batch::LookupBatch;
use crate::sync::lock;

/// The public service.
pub const DEFAULT_API_URL: &str = "https://api.metadefender.com";

/// Timeout for connecting, for every client.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The first wait after a throttle (429001/429002); it doubles with each throttle of a batch.
pub const THROTTLE_BASE: Duration = Duration::from_secs(1);

/// The longest single wait after a throttle.
pub const THROTTLE_CAP: Duration = Duration::from_secs(60);

/// How patient a client is: the defaults that differ between an endpoint (`scan`, `lookup`:
/// [`Patience::ENDPOINT`]) and a gateway's upstream (`crate::gateway::UPSTREAM`), whose
/// clients are waiting on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Patience {
    /// How long a partial batch waits for more digests before it is sent.
    pub batch_wait: Duration,
    /// Retries after the first attempt for transient failures.
    pub retries: u32,
    /// The longest a batch may wait in all because of 429 throttling.
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

    /// `check`: one small request, and a person waiting for its answer.
    pub const CHECK: Patience = Patience {
        batch_wait: Duration::ZERO,
        retries: 1,
        max_wait: Duration::from_secs(10),
        timeout: Duration::from_secs(30),
    };
}

/// `1 hash`, `2 hashes`: how many a batch holds, for the messages.
fn hashes(n: usize) -> String {
    if n == 1 {
        "1 hash".into()
    } else {
        format!("{n} hashes")
    }
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
    /// The longest a batch may wait in all because of throttling (429001/429002); past it
    /// the batch fails as [`LookupError::Throttled`].
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
    /// The first wait after a throttle, doubling per throttle of a batch ([`THROTTLE_BASE`];
    /// tests make it short).
    pub throttle_base: Duration,
    /// The longest single wait after a throttle ([`THROTTLE_CAP`]).
    pub throttle_cap: Duration,
    /// Stop at the first request when it shows the endpoint is wrong (nothing listening, no
    /// TLS there, a web page), before the service has answered anything: right for a run
    /// someone waits on; a long-running gateway retries instead, as its upstream may come up
    /// later.
    pub stop_on_wrong_endpoint: bool,
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
            throttle_base: THROTTLE_BASE,
            throttle_cap: THROTTLE_CAP,
            stop_on_wrong_endpoint: true,
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

/// The endpoint for `--api-url`: `{base}/v4/hash`. A base that already ends in `/v4` (the
/// vendor's own URL for the endpoint, `https://api.metadefender.com/v4`) would give
/// `/v4/v4/hash`, which the service answers 404: the `/v4` is dropped, and the second value is
/// a notice saying so, for the caller to show.
pub fn join_endpoint(api_url: &str) -> Result<(Url, Option<String>), ClientError> {
    let trimmed = api_url.trim().trim_end_matches('/');
    let (base, notice) = match trimmed.len().checked_sub(3) {
        Some(cut)
            if trimmed.is_char_boundary(cut)
                && trimmed[cut..].eq_ignore_ascii_case("/v4")
                && !trimmed[..cut].ends_with(':')
                && !trimmed[..cut].ends_with('/') =>
        {
            let base = &trimmed[..cut];
            let shown = Url::parse(base).map_or_else(|_| "?".into(), |u| shown_url(&u));
            let notice = format!(
                "--api-url ends in /v4; using {} as the base (--api-url is the base URL without /v4; /v4/hash is added)",
                shown.trim_end_matches('/')
            );
            (base, Some(notice))
        }
        _ => (trimmed, None),
    };
    let endpoint = Url::parse(&format!("{base}/v4/hash"))
        .map_err(|e| ClientError::BadUrl(api_url.to_string(), e.to_string()))?;
    Ok((endpoint, notice))
}

/// A URL as it may be shown: without a user name or password.
fn shown_url(u: &Url) -> String {
    let mut u = u.clone();
    let _ = u.set_password(None);
    let _ = u.set_username("");
    u.to_string()
}

/// The blocking HTTP client. Share it between lookup threads by reference or `Arc`.
pub struct HttpClient {
    http: Client,
    endpoint: Url,
    /// Said about `--api-url` when the client was built (a trailing `/v4` dropped).
    notice: Option<String>,
    key: ApiKey,
    headers: HeaderMap,
    cfg: ClientConfig,
    /// Nobody sends before this instant (set by throttles).
    pause_until: Mutex<Option<Instant>>,
    /// Once set, nothing more is sent: why (whole), and what every later batch's records
    /// say (short).
    stopped: Mutex<Option<(LookupError, LookupError)>>,
    /// Whether the service has answered any request in its API's terms: until then a
    /// failure that shows the endpoint is wrong (nothing listening, no TLS, a web page)
    /// stops the run at once instead of being retried.
    reached: std::sync::atomic::AtomicBool,
    /// With `--rate`, the earliest start of the next request.
    next_slot: Mutex<Option<Instant>>,
    /// How many requests may be in flight at once, lowered by throttles.
    flight: Flight,
    requests: AtomicU64,
    retries: AtomicU64,
    throttled: AtomicU64,
    /// The key's budget from the rate-limit headers, once an answer carried them, and the
    /// hashes in requests in flight that it must still cover (one lock: an answer's new
    /// budget and the release of its request's share are one step).
    budget: Mutex<(Option<Budget>, u64)>,
    /// When lookups stopped because the daily quota is spent: when it resets, if known.
    quota_reset: Mutex<Option<Option<Instant>>>,
}

/// How one attempt ended.
enum Attempt {
    Done(Vec<(Digest, HashOutcome)>),
    /// Worth trying again, after a backoff (a transport failure or an unusable answer).
    Retry(LookupError),
    /// 429 that is not a spent budget: back off and try again, within `max_wait`.
    Throttle {
        /// What the answer said to wait (`Retry-After`, or the end of a window that is over
        /// within `max_wait`), if anything.
        told: Option<Duration>,
        /// 429002: too many connections.
        connections: bool,
        /// Waiting for the daily budget to reset: if the wait cannot be had, the quota is
        /// spent, not throttled.
        quota: bool,
        why: Reason,
    },
    /// 429000 for a request that asked more than the `remaining` its answer states: ask
    /// again for what is left (the budget is not spent).
    TooMany,
    /// 400: the batch itself was refused.
    BadRequest(Reason),
    /// Stop the whole run's lookups: the whole reason (said once, by the caller that shows
    /// [`ReputationClient::halted`]) and, if it is long, the few words each digest's record
    /// gets instead.
    Fatal(LookupError, Option<&'static str>),
}

impl HttpClient {
    pub fn new(cfg: ClientConfig) -> Result<HttpClient, ClientError> {
        let (endpoint, notice) = join_endpoint(&cfg.api_url)?;
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
        let (mut builder, mut headers) = client_base(&cfg)?;
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if cfg.details {
            headers.insert("includescandetails", HeaderValue::from_static("1"));
        }
        builder = builder.timeout(cfg.timeout);
        let http = builder
            .build()
            .map_err(|e| ClientError::Build(e.to_string()))?;
        Ok(HttpClient {
            http,
            endpoint,
            notice,
            key: cfg.key.clone(),
            headers,
            cfg,
            pause_until: Mutex::new(None),
            stopped: Mutex::new(None),
            reached: std::sync::atomic::AtomicBool::new(false),
            next_slot: Mutex::new(None),
            flight: Flight::default(),
            requests: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
            budget: Mutex::new((None, 0)),
            quota_reset: Mutex::new(None),
        })
    }

    /// What to tell the user about `--api-url` (a trailing `/v4` that was dropped), if anything.
    pub fn notice(&self) -> Option<&str> {
        self.notice.as_deref()
    }

    /// Names this client's budget in the cache (the endpoint and a digest of the key, never
    /// the key), so a later run knows it before its first answer.
    pub fn budget_scope(&self) -> String {
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        h.update(self.endpoint.as_str().as_bytes());
        h.update([0]);
        h.update(self.key.expose().as_bytes());
        let d: [u8; 32] = h.finalize().into();
        format!("budget:{}", crate::digest::hex_lower(&d[..8]))
    }

    /// What the client was built with (the URL, the key, TLS: the file API's client uses the
    /// same).
    pub fn config(&self) -> &ClientConfig {
        &self.cfg
    }

    /// The endpoint asked, `{base}/v4/hash`.
    pub fn endpoint(&self) -> &str {
        self.endpoint.as_str()
    }

    /// How many requests may be in flight now: `None` when throttling has not lowered it (or
    /// it has been raised back to what the callers ask for).
    pub fn in_flight_limit(&self) -> Option<usize> {
        lock(&self.flight.state).limit
    }

    fn stopped_reason(&self) -> Option<LookupError> {
        lock(&self.stopped).as_ref().map(|(whole, _)| whole.clone())
    }

    /// What the records of digests not asked after a stop say.
    fn stopped_brief(&self) -> Option<LookupError> {
        lock(&self.stopped).as_ref().map(|(_, brief)| brief.clone())
    }

    /// The lowest `x-ratelimit-remaining` of the current window, if the service sent one.
    pub fn quota_remaining(&self) -> Option<u64> {
        current(lock(&self.budget).0, crate::clock::now()).map(|b| b.remaining)
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
        self.stop_briefly(why, why);
    }

    fn stop_briefly(&self, why: &LookupError, brief: &LookupError) {
        lock(&self.stopped).get_or_insert_with(|| (why.clone(), brief.clone()));
    }

    /// Sleep until the shared throttle pause is over; how long that was.
    fn wait_for_pause(&self) -> Duration {
        let start = Instant::now();
        let until = *lock(&self.pause_until);
        match until {
            Some(t) if t > start => {
                std::thread::sleep(t - start);
                start.elapsed()
            }
            _ => Duration::ZERO,
        }
    }

    fn paused(&self) -> bool {
        lock(&self.pause_until).is_some_and(|t| t > Instant::now())
    }

    fn pause_for(&self, d: Duration) {
        let mut g = lock(&self.pause_until);
        let t = Instant::now() + d;
        if g.is_none_or(|cur| cur < t) {
            *g = Some(t);
        }
    }

    /// Exponential backoff for the `n`th throttle of a batch: `throttle_base` doubling up to
    /// `throttle_cap`, each scaled by a random factor in [0.5, 1] so that threads throttled
    /// together do not come back together.
    fn throttle_backoff(&self, n: u32) -> Duration {
        let d = self
            .cfg
            .throttle_base
            .saturating_mul(1u32 << n.saturating_sub(1).min(16))
            .min(self.cfg.throttle_cap);
        d.mul_f64(0.5 + fastrand::f64() / 2.0)
    }

    /// Remove the key from any text that came back from the network: in any letter case,
    /// and any piece of it of [`SCRUB_PIECE`] characters or more.
    fn scrub(&self, s: &str) -> String {
        scrub_key(s, self.key.expose())
    }

    /// The same error with the key removed from its text; a missing entry stays one (its
    /// text is ours, and its kind means "ask again").
    fn scrub_error(&self, e: LookupError) -> LookupError {
        match e {
            LookupError::MissingEntry => e,
            e => e.map_message(|m| self.scrub(m)),
        }
    }

    /// Fold the rate-limit headers of an answer into the budget, and release the share of the
    /// budget its request held.
    fn note_budget(&self, h: &HeaderMap, share: &Cell<u64>) {
        let seen = RateHeaders::read(h);
        let mut g = lock(&self.budget);
        g.0 = seen.merge(g.0, crate::clock::now());
        g.1 = g.1.saturating_sub(share.take());
    }

    /// Hold a share of the budget for a request of `n` hashes: as many as the budget the
    /// service last stated still covers, less what requests in flight hold (all of them
    /// while nothing is known). The request asks only that many, so the service never has
    /// to refuse one for asking more than is left.
    fn reserve(&self, n: usize) -> usize {
        let mut g = lock(&self.budget);
        let take = match current(g.0, crate::clock::now()) {
            None => n,
            Some(b) => n.min(usize::try_from(b.remaining.saturating_sub(g.1)).unwrap_or(n)),
        };
        g.1 += take as u64;
        take
    }

    /// How long until the budget's window ends, if it ends within `left` (a short window, or
    /// the day's last minutes): what it does not cover is then waited for, not deferred.
    fn window_ends_within(&self, left: Duration) -> Option<Duration> {
        let now = SystemTime::now();
        let end = current(lock(&self.budget).0, now)?.resets_at?;
        end.duration_since(now).ok().filter(|d| *d <= left)
    }

    /// Give back a share no answer released (the request failed before any headers).
    fn release(&self, share: &Cell<u64>) {
        let mut g = lock(&self.budget);
        g.1 = g.1.saturating_sub(share.take());
    }

    fn attempt(&self, digests: &[Digest], share: &Cell<u64>) -> Attempt {
        let sent = self
            .http
            .post(self.endpoint.clone())
            .headers(self.headers.clone())
            .body(protocol::request_body(digests))
            .send();
        // A request that never got a connection was not sent.
        if !sent.as_ref().is_err_and(|e| e.is_connect()) {
            self.requests.fetch_add(1, Ordering::Relaxed);
        }
        let resp = match sent {
            Ok(r) => r,
            Err(e) => {
                let why = self.scrub(&describe_reqwest(&e));
                if let Some(fatal) = self.wrong_endpoint(&e, &why) {
                    return fatal;
                }
                return Attempt::Retry(LookupError::Transport(why.into()));
            }
        };
        let status = resp.status();
        self.note_budget(resp.headers(), share);
        let rate = RateHeaders::read(resp.headers());
        let told = retry_after(resp.headers());
        if status.is_redirection() {
            let to = resp
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("?")
                .to_string();
            return Attempt::Fatal(
                LookupError::Transport(
                    self.scrub(&format!(
                        "the service answered HTTP {} (redirect to {to}); redirects are not followed, since the API key \
                         would go with them. Use the final URL as --api-url",
                        status.as_u16()
                    ))
                    .into(),
                ),
                Some("redirected by the service (not followed)"),
            );
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
        // A 5xx page may be a proxy's passing trouble in front of the right service: retried.
        // Not 501: a web server that does not take POST at all (`python3 -m http.server`).
        if self.cfg.stop_on_wrong_endpoint
            && !self.reached.load(Ordering::Relaxed)
            && (!status.is_server_error() || status == StatusCode::NOT_IMPLEMENTED)
            && looks_like_html(&body)
        {
            return Attempt::Fatal(
                LookupError::Transport(
                    self.scrub(&format!(
                        "{} answered HTTP {} with an HTML page, not the MetaDefender API, so no further \
                         lookups were sent. --api-url names a web server or a proxy, not the service: it \
                         is the service's base URL without /v4 (for example {DEFAULT_API_URL})",
                        shown_url(&self.endpoint),
                        status.as_u16()
                    ))
                    .into(),
                ),
                Some("the --api-url answered with an HTML page, not the API"),
            );
        }
        if status == StatusCode::OK {
            return match parse_answer(&body, digests) {
                Ok(out) => {
                    self.reached.store(true, Ordering::Relaxed);
                    self.note_quota(rate.remaining, rate.reset_in);
                    // Error reasons quote the server's values; the key must not ride along.
                    Attempt::Done(
                        out.into_iter()
                            .map(|(d, o)| (d, o.map_err(|e| self.scrub_error(e))))
                            .collect(),
                    )
                }
                Err(e) => {
                    self.note_quota(rate.remaining, rate.reset_in);
                    Attempt::Retry(LookupError::BadAnswer(self.scrub(&e.0).into()))
                }
            };
        }
        let mut err = parse_error(&body);
        if err.code.is_some() {
            self.reached.store(true, Ordering::Relaxed);
        } else if looks_like_html(&body) {
            // A proxy's page: its markup says nothing a record should carry.
            err.message = "an HTML page, not the API's JSON".into();
        }
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
            401 => Attempt::Fatal(LookupError::KeyRefused(format!(
                "the API key was refused ({what}); no further lookups were sent. Check METADEFENDER_APIKEY or --apikey-file"
            ).into()), Some(KEY_REFUSED)),
            403 => Attempt::Fatal(
                LookupError::KeyRefused(forbidden(err.code, &what).into()),
                Some(forbidden_brief(err.code)),
            ),
            404 => Attempt::Fatal(
                LookupError::Transport(
                    self.scrub(&format!(
                        "{} answered {what}: there is no such endpoint, so no further lookups were sent. \
                         --api-url is the service's base URL without /v4 (for example {DEFAULT_API_URL}); \
                         hashsweep adds /v4/hash",
                        shown_url(&self.endpoint)
                    ))
                    .into(),
                ),
                Some("no such endpoint at --api-url (HTTP 404)"),
            ),
            429 => {
                self.throttled.fetch_add(1, Ordering::Relaxed);
                let left = rate.remaining.and_then(|r| usize::try_from(r).ok());
                if err.code == Some(429000) && left.is_some_and(|r| r > 0 && r < digests.len()) {
                    return Attempt::TooMany;
                }
                if err.code == Some(429000) || rate.remaining == Some(0) {
                    // The day's budget is spent. Wait for the window's end only if it comes
                    // within --max-wait; else stop asking for the rest of the run.
                    match rate.reset_in {
                        Some(r) if r <= self.cfg.max_wait => Attempt::Throttle {
                            told: Some(r),
                            connections: false,
                            quota: true,
                            why: what.into(),
                        },
                        reset => {
                            let why = LookupError::QuotaSpent(
                                format!(
                                    "the daily lookup quota is spent ({what}){}",
                                    reset
                                        .map(|r| format!("; it resets in {}", super::budget::until(r)))
                                        .unwrap_or_default()
                                )
                                .into(),
                            );
                            self.stop_for_quota(&why, reset);
                            Attempt::Fatal(why, None)
                        }
                    }
                } else {
                    // 429001, 429002, or a 429 without a code: short-term. Its
                    // x-ratelimit-reset-in is the daily window, not a time to wait.
                    Attempt::Throttle {
                        told,
                        connections: err.code == Some(429002),
                        quota: false,
                        why: what.into(),
                    }
                }
            }
            400 => Attempt::BadRequest(what.into()),
            _ => {
                self.note_quota(rate.remaining, rate.reset_in);
                Attempt::Retry(LookupError::Transport(what.into()))
            }
        }
    }

    /// Before the service has answered anything, a failure to connect that shows the endpoint
    /// is wrong (nothing listening, no such host, no TLS there, nothing answering within
    /// `--connect-timeout`) stops the run at once with what to check, instead of five retries
    /// behind a spinner. Once the service has answered, the same failures are retried.
    fn wrong_endpoint(&self, e: &reqwest::Error, why: &str) -> Option<Attempt> {
        if !self.cfg.stop_on_wrong_endpoint
            || self.reached.load(Ordering::Relaxed)
            || !e.is_connect()
        {
            return None;
        }
        let url = shown_url(&self.endpoint);
        let full = why;
        // The innermost cause says it ("Connection refused (os error 111)"); the layers above
        // it ("could not connect: client error (Connect): tcp connect error") repeat this
        // message's own words.
        let why = self.scrub(&innermost_cause(e).unwrap_or_else(|| full.to_string()));
        if e.is_timeout() {
            return Some(Attempt::Fatal(
                LookupError::Transport(
                    format!(
                        "could not connect to {url} within --connect-timeout {}s ({why}); no \
                         lookups were sent. Check the host and port of --api-url, and that a \
                         firewall or proxy lets the connection through",
                        self.cfg.connect_timeout.as_secs()
                    )
                    .into(),
                ),
                Some("could not connect to the --api-url (timed out)"),
            ));
        }
        let tls = [
            "InvalidContentType",
            "corrupt message",
            "tls",
            "TLS",
            "certificate",
        ]
        .iter()
        .any(|w| full.contains(w));
        let (whole, brief) = if tls {
            let (fix, brief) =
                if full.contains("InvalidContentType") || full.contains("corrupt message") {
                    (
                        "The server there does not speak TLS: if it is a plain-http service (a \
                     stand-in or a gateway on loopback), use http:// in --api-url",
                        "the --api-url does not speak TLS (use http://)",
                    )
                } else {
                    (
                        "Check the server's certificate (--ca-cert PEM for a private CA) and the \
                     host name in --api-url",
                        "TLS: the --api-url's certificate is not trusted (see --ca-cert)",
                    )
                };
            (
                format!(
                    "could not make a TLS connection to {url} ({why}); no lookups were sent. {fix}"
                ),
                brief,
            )
        } else {
            (
                format!(
                    "could not connect to {url} ({why}); no lookups were sent. Is the service \
                     running there, and are the host and port of --api-url right? (--api-url is \
                     the service's base URL, for example {DEFAULT_API_URL})"
                ),
                "could not connect to the --api-url",
            )
        };
        Some(Attempt::Fatal(
            LookupError::Transport(whole.into()),
            Some(brief),
        ))
    }

    /// Look up `digests`, retrying and splitting as needed. Always one outcome per digest.
    fn lookup_digests(&self, batch_id: u64, digests: &[Digest]) -> Vec<(Digest, HashOutcome)> {
        let mut done: Vec<(Digest, HashOutcome)> = Vec::with_capacity(digests.len());
        let mut pending: Vec<Digest> = digests.to_vec();
        let mut failures = 0u32;
        let mut throttles = 0u32;
        // Whether the service already refused this batch for asking more than was left.
        let mut oversize = false;
        // Time this batch has spent paused by throttling, against --max-wait.
        let mut waited = Duration::ZERO;
        let fail_all =
            |pending: &[Digest], done: &mut Vec<(Digest, HashOutcome)>, why: LookupError| {
                done.extend(pending.iter().map(|d| (*d, Err(why.clone()))));
            };
        while !pending.is_empty() {
            if let Some(why) = self.stopped_brief() {
                let why = why.map_message(|m| format!("not looked up: {m}"));
                fail_all(&pending, &mut done, why);
                break;
            }
            waited += self.wait_for_pause();
            let permit = self.flight.acquire();
            // A stop, or a new pause, may have come while this waited for its turn.
            if self.paused() || self.stopped_reason().is_some() {
                continue;
            }
            self.wait_for_rate_slot();
            // Cut to what the budget still covers; the rest waits for a later run, unless the
            // window ends within what is left of --max-wait: then it is waited for.
            let take = self.reserve(pending.len());
            if take < pending.len()
                && let Some(end) = self.window_ends_within(self.cfg.max_wait.saturating_sub(waited))
            {
                self.release(&Cell::new(take as u64));
                tracing::info!(
                    "batch {batch_id} waits {:.1}s for the budget's window to end",
                    end.as_secs_f64()
                );
                self.pause_for(end);
                continue;
            }
            if take < pending.len() {
                let over = pending.split_off(take);
                let why = LookupError::QuotaSpent(
                    "not asked: the key's budget for today does not cover it (what is left \
                     went to other hashes); a later run asks it first"
                        .into(),
                );
                fail_all(&over, &mut done, why);
                if pending.is_empty() {
                    break;
                }
            }
            let share = Cell::new(take as u64);
            let attempt = self.attempt(&pending, &share);
            self.release(&share);
            if matches!(attempt, Attempt::Done(_)) {
                self.flight.answered();
            }
            match attempt {
                Attempt::Done(out) => {
                    drop(permit);
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
                        tracing::info!(
                            "retrying batch {batch_id} ({}): the answer left them out",
                            hashes(pending.len())
                        );
                    }
                }
                Attempt::Fatal(why, brief) => {
                    let brief = brief.map_or_else(
                        || why.clone(),
                        |b| why.clone().map_message(|_| b.to_string()),
                    );
                    self.stop_briefly(&why, &brief);
                    fail_all(&pending, &mut done, brief);
                    break;
                }
                // Once: the next round asks only what the refusal said is left.
                Attempt::TooMany if !oversize => {
                    drop(permit);
                    oversize = true;
                }
                Attempt::TooMany => {
                    let why = LookupError::QuotaSpent(
                        "the daily lookup quota is spent (refused twice for asking more than \
                         is left)"
                            .into(),
                    );
                    self.stop_for_quota(&why, None);
                    fail_all(&pending, &mut done, why);
                    break;
                }
                Attempt::BadRequest(why) => {
                    drop(permit);
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
                Attempt::Throttle {
                    told,
                    connections,
                    quota,
                    why,
                } => {
                    throttles += 1;
                    self.flight.throttled(&permit, connections);
                    drop(permit);
                    let left = self.cfg.max_wait.saturating_sub(waited);
                    let delay = match told {
                        Some(d) if d > left => Err(format!(
                            "told to wait {}s, more than is left of --max-wait ({}s of {}s)",
                            d.as_secs(),
                            left.as_secs(),
                            self.cfg.max_wait.as_secs()
                        )),
                        Some(d) => Ok(d),
                        // Not even the shortest backoff fits in what is left: give up.
                        None if left < self.cfg.throttle_base / 2 => Err(format!(
                            "still throttled after {throttles} tries and {}s of waiting (--max-wait {}s)",
                            waited.as_secs(),
                            self.cfg.max_wait.as_secs()
                        )),
                        None => Ok(self.throttle_backoff(throttles).min(left)),
                    };
                    let delay = match delay {
                        Ok(d) => d,
                        Err(what) => {
                            fail_all(
                                &pending,
                                &mut done,
                                self.gave_up(batch_id, quota, &what, &why),
                            );
                            break;
                        }
                    };
                    self.retries.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(
                        "retrying batch {batch_id} ({}) in {:.1}s: throttled: {why}",
                        hashes(pending.len()),
                        delay.as_secs_f64()
                    );
                    self.pause_for(delay);
                }
                Attempt::Retry(why) => {
                    drop(permit);
                    failures += 1;
                    if failures > self.cfg.retries {
                        fail_all(
                            &pending,
                            &mut done,
                            why.map_message(|m| {
                                format!(
                                    "lookup failed (batch {batch_id}) after {}: {m}",
                                    if failures == 1 {
                                        "1 attempt".to_string()
                                    } else {
                                        format!("{failures} attempts")
                                    }
                                )
                            }),
                        );
                        break;
                    }
                    self.retries.fetch_add(1, Ordering::Relaxed);
                    let wait = backoff(failures);
                    tracing::info!(
                        "retrying batch {batch_id} ({}) in {:.1}s, attempt {} of {}: {why}",
                        hashes(pending.len()),
                        wait.as_secs_f64(),
                        failures + 1,
                        self.cfg.retries + 1
                    );
                    std::thread::sleep(wait);
                }
            }
        }
        done
    }

    /// The error for a batch whose throttling outlasted `--max-wait`: throttled, or, when it
    /// was waiting for the daily budget to reset, the quota spent (and nothing more is sent).
    fn gave_up(&self, batch_id: u64, quota: bool, what: &str, why: &Reason) -> LookupError {
        if quota {
            let e = LookupError::QuotaSpent(
                format!("the daily lookup quota is spent ({why}); {what}").into(),
            );
            self.stop_for_quota(&e, None);
            e
        } else {
            LookupError::Throttled(
                format!("lookup failed (batch {batch_id}): throttled ({why}); {what}").into(),
            )
        }
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

    /// After an answer that is not a refusal: if the service says the budget is used up
    /// (`x-ratelimit-remaining: 0`), pause until the window ends (when that is within
    /// `--max-wait`) or stop asking for the rest of the run, before the service refuses.
    fn note_quota(&self, remaining: Option<u64>, reset: Option<Duration>) {
        if remaining != Some(0) {
            return;
        }
        match reset {
            Some(r) if r <= self.cfg.max_wait => self.pause_for(r),
            _ => self.stop_for_quota(
                &LookupError::QuotaSpent(
                    format!(
                        "the daily lookup quota is spent (x-ratelimit-remaining: 0{})",
                        reset
                            .map(|r| format!(", resets in {}", super::budget::until(r)))
                            .unwrap_or_default()
                    )
                    .into(),
                ),
                reset,
            ),
        }
    }
}

/// What every client of the service starts from: the `apikey` header (marked sensitive, so it
/// is never logged), the `--ca-cert` roots, the User-Agent, the connect timeout, and no
/// redirects (the `apikey` header would go with one to another host: reqwest strips only
/// Authorization and cookies, and the http check would be passed by). The caller adds its own
/// headers and timeout.
pub(crate) fn client_base(
    cfg: &ClientConfig,
) -> Result<(reqwest::blocking::ClientBuilder, HeaderMap), ClientError> {
    let mut headers = HeaderMap::new();
    let mut key = HeaderValue::from_str(cfg.key.expose()).map_err(|_| {
        ClientError::Build("the API key contains characters not allowed in a header".into())
    })?;
    key.set_sensitive(true);
    headers.insert("apikey", key);
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
    let builder = builder
        .user_agent(concat!("hashsweep/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(cfg.connect_timeout)
        .redirect(reqwest::redirect::Policy::none());
    Ok((builder, headers))
}

/// What each record says after a 401 (the whole reason is said once, in the summary).
pub const KEY_REFUSED: &str = "API key refused";

/// What each record says after a 403, by sub-code: the few words of [`forbidden`].
fn forbidden_brief(code: Option<i64>) -> &'static str {
    match code {
        Some(403001) => "API key refused: it does not match the resource",
        Some(403002) => "this IP address is blocked by the service for abuse",
        Some(403003) => "API key refused: no privilege for the bulk hash lookup",
        Some(403004) => "this IP address is not on the API key's allow list",
        _ => "lookup forbidden by the service (HTTP 403)",
    }
}

/// The message for a 403, by sub-code (see `shared/reference/result-codes.md`). Each is final
/// for the run, but only some are about the key itself.
fn forbidden(code: Option<i64>, what: &str) -> String {
    let stop = "no further lookups were sent";
    match code {
        Some(403001) => format!(
            "the API key does not match the resource ({what}); {stop}. Check that the key is the one for this service"
        ),
        Some(403002) => format!(
            "this IP address is blocked by the service for abuse ({what}): repeated requests with bad keys block it \
             for about an hour; {stop}. Wait, then try again with the right key"
        ),
        Some(403003) => format!(
            "the API key lacks the privilege for the bulk hash lookup ({what}); {stop}. The key's licence must \
             include this endpoint"
        ),
        Some(403004) => format!(
            "this IP address is not on the API key's allow list ({what}); {stop}. Add it to the key's allowed \
             addresses, or run from one of them"
        ),
        _ => format!(
            "the service forbade the lookup ({what}); {stop}. Check the API key's rights to the bulk hash lookup"
        ),
    }
}

/// Requests in flight, and how many may be: an AIMD limit lowered by throttles (halved after
/// 429002, one fewer after 429001) and raised by one after [`RAISE_AFTER`] answers, until it is
/// no lower than the most requests callers have wanted at once (then it is lifted).
#[derive(Default)]
struct Flight {
    state: Mutex<FlightState>,
    freed: Condvar,
}

/// Answers without a throttle before the in-flight limit is raised by one.
const RAISE_AFTER: u32 = 4;

#[derive(Debug, Default)]
struct FlightState {
    in_flight: usize,
    waiting: usize,
    /// The most requests wanted at once (in flight and waiting).
    peak: usize,
    limit: Option<usize>,
    /// Bumped whenever the limit is lowered: a throttle of a request sent before that lowers
    /// it no further (requests in flight together are throttled together).
    epoch: u64,
    answered: u32,
}

/// A request's place in flight, given back when dropped.
struct Permit<'a> {
    flight: &'a Flight,
    epoch: u64,
}

impl Flight {
    fn acquire(&self) -> Permit<'_> {
        let mut g = lock(&self.state);
        g.waiting += 1;
        g.peak = g.peak.max(g.in_flight + g.waiting);
        while g.limit.is_some_and(|l| g.in_flight >= l) {
            g = self
                .freed
                .wait(g)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        g.waiting -= 1;
        g.in_flight += 1;
        Permit {
            flight: self,
            epoch: g.epoch,
        }
    }

    /// A request was answered without a throttle.
    fn answered(&self) {
        let mut g = lock(&self.state);
        let Some(l) = g.limit else { return };
        g.answered += 1;
        if g.answered >= RAISE_AFTER {
            g.answered = 0;
            g.limit = (l + 1 < g.peak).then_some(l + 1);
            self.freed.notify_all();
        }
    }

    /// The request holding `permit` was throttled (`connections`: 429002).
    fn throttled(&self, permit: &Permit<'_>, connections: bool) {
        let mut g = lock(&self.state);
        if permit.epoch != g.epoch {
            return;
        }
        let now = g.limit.unwrap_or(g.in_flight).max(1);
        let lower = if connections { now / 2 } else { now - 1 }.max(1);
        if g.limit.is_none() || lower < now {
            g.limit = Some(lower);
            g.epoch += 1;
        }
        g.answered = 0;
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let mut g = lock(&self.flight.state);
        g.in_flight = g.in_flight.saturating_sub(1);
        self.flight.freed.notify_all();
    }
}

/// The rate-limit headers of one answer (names case-insensitive, as HTTP has them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateHeaders {
    pub limit: Option<u64>,
    pub remaining: Option<u64>,
    /// `x-ratelimit-reset-in`, `86400s` or `86400`: the end of the current window.
    pub reset_in: Option<Duration>,
}

/// Two answers of one window may disagree on its end by this much (whole seconds, transit).
const WINDOW_SLACK: Duration = Duration::from_secs(3);

impl RateHeaders {
    pub fn read(h: &HeaderMap) -> RateHeaders {
        let int = |name: &str| {
            h.get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|s| s.trim().parse::<u64>().ok())
        };
        RateHeaders {
            limit: int("x-ratelimit-limit"),
            remaining: int("x-ratelimit-remaining"),
            reset_in: seconds(h, "x-ratelimit-reset-in"),
        }
    }

    /// The budget after an answer with these headers at `now`: the lowest `remaining` of the
    /// window (answers of requests in flight together come back in any order), or this
    /// answer's once a new window has begun (the old one is over, or this one ends later).
    ///
    /// An answer whose window ends well before the one known (a throttle saying
    /// `x-ratelimit-remaining: 0`, `x-ratelimit-reset-in: 1s` while the day has hours to go)
    /// speaks of a shorter window: what it says is left is left of that window, not of the
    /// day, so the day's budget stands. (The client waits for the short window's end, when it
    /// comes within `--max-wait`.) Taking its 0 as the day's, with the day's end, left the
    /// budget spent until tomorrow and deferred the rest of the run.
    pub fn merge(self, old: Option<Budget>, now: SystemTime) -> Option<Budget> {
        let Some(remaining) = self.remaining else {
            return old;
        };
        let resets_at = self.reset_in.map(|r| now + r);
        let fresh = Budget {
            limit: self.limit,
            remaining,
            resets_at,
        };
        let Some(old) = old else {
            return Some(fresh);
        };
        let new_window = match (old.resets_at, resets_at) {
            (Some(end), _) if now >= end => true,
            (Some(end), Some(new_end)) => new_end > end + WINDOW_SLACK,
            _ => false,
        };
        if new_window {
            return Some(fresh);
        }
        if let (Some(end), Some(new_end)) = (old.resets_at, resets_at)
            && new_end + WINDOW_SLACK < end
        {
            return Some(old);
        }
        Some(Budget {
            limit: self.limit.or(old.limit),
            remaining: remaining.min(old.remaining),
            resets_at: match (old.resets_at, resets_at) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            },
        })
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

    fn stats(&self) -> ClientStats {
        ClientStats {
            requests: self.requests.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            throttled: self.throttled.load(Ordering::Relaxed),
        }
    }

    fn budget(&self) -> Option<Budget> {
        current(lock(&self.budget).0, crate::clock::now())
    }
}

/// A budget as it stands at `now`: once its window has ended, a new day's (the whole limit),
/// or nothing known when the service never stated the limit.
fn current(b: Option<Budget>, now: SystemTime) -> Option<Budget> {
    let b = b?;
    match b.resets_at {
        Some(t) if t <= now => b.limit.map(|limit| Budget {
            limit: Some(limit),
            remaining: limit,
            resets_at: None,
        }),
        _ => Some(b),
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

/// `Retry-After` in seconds, if the answer has one. The service is not documented to send it
/// (a gateway or a proxy may); when present it is the instruction for this answer.
pub fn retry_after(h: &HeaderMap) -> Option<Duration> {
    seconds(h, "retry-after")
}

/// Seconds past this in a header (some 31 years) are no answer's: such a header is ignored,
/// as if absent (a time that far would overflow a `SystemTime`, and `u64` seconds end sooner
/// than an `f64` does: `Duration::from_secs_f64` panicked on what a fuzzer sent).
const MAX_HEADER_SECONDS: f64 = 1e9;

/// A header holding seconds, `"30"` or `"30s"`.
fn seconds(h: &HeaderMap, name: &str) -> Option<Duration> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().trim_end_matches(['s', 'S']).trim())
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| s.is_finite() && (0.0..=MAX_HEADER_SECONDS).contains(s))
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
}

/// The answer's body, at most [`protocol::MAX_ANSWER`] bytes of it (more is an error).
fn read_body(resp: Response) -> Result<Vec<u8>, String> {
    use std::io::Read as _;
    let max = protocol::MAX_ANSWER as u64;
    let too_long = || format!("the answer is longer than {} MiB", max >> 20);
    if resp.content_length().is_some_and(|n| n > max) {
        return Err(too_long());
    }
    let mut out = Vec::new();
    resp.take(max + 1)
        .read_to_end(&mut out)
        .map_err(|e| e.to_string())?;
    if out.len() as u64 > max {
        return Err(too_long());
    }
    Ok(out)
}

/// Pieces of the key this long (and longer) are scrubbed from texts.
pub const SCRUB_PIECE: usize = 8;

/// `s` with `key` removed, case-insensitively, and with every run of [`SCRUB_PIECE`] or more
/// characters that also occurs in the key (in any case) replaced by `[redacted]`.
pub fn scrub_key(s: &str, key: &str) -> String {
    let k = key.as_bytes().to_ascii_lowercase();
    if k.len() < 4 {
        return s.to_string();
    }
    let piece = SCRUB_PIECE.min(k.len());
    let pieces: std::collections::HashSet<&[u8]> = k.windows(piece).collect();
    let low = s.as_bytes().to_ascii_lowercase();
    // Mark every byte covered by a window that is a piece of the key.
    let mut hidden = vec![false; low.len()];
    for (i, w) in low.windows(piece).enumerate() {
        if pieces.contains(w) {
            hidden[i..i + piece].iter_mut().for_each(|h| *h = true);
        }
    }
    if !hidden.contains(&true) {
        return s.to_string();
    }
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < low.len() {
        if hidden[i] {
            out.extend_from_slice(b"[redacted]");
            while i < low.len() && hidden[i] {
                i += 1;
            }
        } else {
            out.push(s.as_bytes()[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The last error in `e`'s cause chain, when it has one.
fn innermost_cause(e: &reqwest::Error) -> Option<String> {
    let mut last = None;
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        last = Some(s.to_string());
        src = s.source();
    }
    last
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

/// An HTML page (a web server's index, a proxy's or a portal's error page) where the API's
/// JSON was expected.
fn looks_like_html(body: &[u8]) -> bool {
    let head = body.trim_ascii_start();
    let head = &head[..head.len().min(64)];
    head.first() == Some(&b'<')
        && [
            &b"<!doctype html"[..],
            b"<html",
            b"<head",
            b"<body",
            b"<title",
            b"<h1",
            b"<?xml",
        ]
        .iter()
        .any(|tag| head.len() >= tag.len() && head[..tag.len()].eq_ignore_ascii_case(tag))
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

    #[test]
    fn the_key_is_scrubbed_in_any_case_and_in_pieces() {
        let key = "0123456789abcdefABCDEF0123456789";
        let clean = |s: &str| {
            let out = scrub_key(s, key);
            let low = out.to_ascii_lowercase();
            let k = key.to_ascii_lowercase();
            for w in k.as_bytes().windows(SCRUB_PIECE) {
                assert!(!low.contains(std::str::from_utf8(w).unwrap()), "{out}");
            }
            out
        };
        assert_eq!(clean(&format!("bad key {key}!")), "bad key [redacted]!");
        assert_eq!(
            clean(&format!("bad key {}!", key.to_ascii_lowercase())),
            "bad key [redacted]!"
        );
        assert_eq!(
            clean("key starts 01234567, ends"),
            "key starts [redacted], ends"
        );
        assert_eq!(clean("EF012345x"), "[redacted]x");
        // Shorter pieces are not the key; other text passes unchanged.
        assert_eq!(clean("0123456 is fine, é too"), "0123456 is fine, é too");
    }
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
    fn a_trailing_v4_is_dropped_with_a_notice() {
        for url in [
            "https://api.metadefender.com/v4",
            "https://api.metadefender.com/v4/",
            "https://api.metadefender.com/V4",
        ] {
            let (endpoint, notice) = join_endpoint(url).unwrap();
            assert_eq!(endpoint.as_str(), "https://api.metadefender.com/v4/hash");
            let notice = notice.expect("a notice");
            assert!(
                notice.contains("using https://api.metadefender.com as the base")
                    && notice.contains("without /v4"),
                "{notice}"
            );
        }
        for (url, want) in [
            (
                "https://api.metadefender.com",
                "https://api.metadefender.com/v4/hash",
            ),
            (
                "http://127.0.0.1:9/metadefender/",
                "http://127.0.0.1:9/metadefender/v4/hash",
            ),
            ("https://gw.example/v4x", "https://gw.example/v4x/v4/hash"),
            ("https://v4", "https://v4/v4/hash"),
        ] {
            let (endpoint, notice) = join_endpoint(url).unwrap();
            assert_eq!((endpoint.as_str(), notice), (want, None), "{url}");
        }
        // A password in the URL is not repeated in the notice.
        let (_, notice) = join_endpoint("https://u:hunter2@proxy.example/v4").unwrap();
        assert!(!notice.unwrap().contains("hunter2"));
        let c = HttpClient::new(cfg("http://127.0.0.1:9/v4/")).unwrap();
        assert_eq!(c.endpoint(), "http://127.0.0.1:9/v4/hash");
        assert!(c.notice().is_some());
    }

    #[test]
    fn rate_headers_in_either_casing_and_form() {
        let mut h = HeaderMap::new();
        h.insert("x-ratelimit-reset-in", HeaderValue::from_static("86400s"));
        h.insert("x-ratelimit-limit", HeaderValue::from_static("4000"));
        h.insert("x-ratelimit-remaining", HeaderValue::from_static("3999"));
        let r = RateHeaders::read(&h);
        assert_eq!(
            r,
            RateHeaders {
                limit: Some(4000),
                remaining: Some(3999),
                reset_in: Some(Duration::from_secs(86400))
            }
        );
        assert_eq!(retry_after(&h), None, "reset-in is not a time to wait");
        let mut h = HeaderMap::new();
        h.insert("X-RateLimit-Reset-In", HeaderValue::from_static("3294"));
        h.insert("X-RateLimit-Remaining", HeaderValue::from_static(" 0 "));
        h.insert("Retry-After", HeaderValue::from_static("2"));
        let r = RateHeaders::read(&h);
        assert_eq!(
            (r.remaining, r.reset_in),
            (Some(0), Some(Duration::from_secs(3294)))
        );
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        assert_eq!(RateHeaders::read(&HeaderMap::new()), RateHeaders::default());
    }

    /// Found by the `vendor_answer` fuzz target: seconds past `u64` panicked, and seconds
    /// within it but past `SystemTime` would have panicked in `merge`. Such a header is ignored.
    #[test]
    fn absurd_seconds_in_rate_headers_are_ignored_not_a_panic() {
        for absurd in [
            "8640055555555555555555555",
            "1e300",
            "18446744073709551616",
            "1e10s",
        ] {
            let mut h = HeaderMap::new();
            h.insert(
                "x-ratelimit-reset-in",
                HeaderValue::from_str(absurd).unwrap(),
            );
            h.insert("x-ratelimit-remaining", HeaderValue::from_static("5"));
            h.insert("retry-after", HeaderValue::from_str(absurd).unwrap());
            let r = RateHeaders::read(&h);
            assert_eq!(r.reset_in, None, "{absurd}");
            assert_eq!(retry_after(&h), None, "{absurd}");
            let b = r.merge(None, SystemTime::now()).unwrap();
            assert_eq!(b.remaining, 5);
        }
    }

    #[test]
    fn the_budget_keeps_the_lowest_remaining_of_a_window() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let seen = |remaining, reset_in| RateHeaders {
            limit: Some(100),
            remaining: Some(remaining),
            reset_in: Some(Duration::from_secs(reset_in)),
        };
        let b = seen(90, 500).merge(None, t0);
        assert_eq!(
            b,
            Some(Budget {
                limit: Some(100),
                remaining: 90,
                resets_at: Some(t0 + Duration::from_secs(500))
            })
        );
        // An answer of an earlier request, arriving late, does not raise it.
        let t1 = t0 + Duration::from_secs(10);
        let b = seen(95, 490).merge(b, t1);
        assert_eq!(b.unwrap().remaining, 90);
        let b = seen(80, 489).merge(b, t1);
        assert_eq!(b.unwrap().remaining, 80);
        // Headers without a remaining count change nothing.
        assert_eq!(RateHeaders::default().merge(b, t1), b);
        // A window that ends later than this one is a new window.
        let b2 = seen(100, 86_400).merge(b, t1);
        assert_eq!(b2.unwrap().remaining, 100);
        // So is any answer after the window's end.
        let t2 = t0 + Duration::from_secs(501);
        let b3 = RateHeaders {
            remaining: Some(99),
            ..RateHeaders::default()
        }
        .merge(b, t2);
        assert_eq!((b3.unwrap().remaining, b3.unwrap().resets_at), (99, None));
    }

    #[test]
    fn a_short_window_spent_does_not_spend_the_day() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let day = Duration::from_secs(86_000);
        let daily = RateHeaders {
            limit: Some(100_000),
            remaining: Some(99_900),
            reset_in: Some(day),
        };
        let b = daily.merge(None, t0);
        // A throttle of a window that ends in a second, with nothing left in it.
        let short = RateHeaders {
            limit: Some(100_000),
            remaining: Some(0),
            reset_in: Some(Duration::from_secs(1)),
        };
        let t1 = t0 + Duration::from_secs(5);
        assert_eq!(short.merge(b, t1), b, "the day's budget stands");
        // The next answer of the day still lowers it as usual.
        let later = RateHeaders {
            remaining: Some(99_850),
            reset_in: Some(day - Duration::from_secs(6)),
            ..daily
        };
        assert_eq!(later.merge(b, t1).unwrap().remaining, 99_850);
        // The short window first, then the day's: the day's replaces it (a later end).
        let first = short.merge(None, t0).unwrap();
        assert_eq!(first.remaining, 0);
        assert_eq!(daily.merge(Some(first), t0).unwrap().remaining, 99_900);
    }

    #[test]
    fn fewer_requests_in_flight_after_throttles_then_more_again() {
        let f = Flight::default();
        let permits: Vec<Permit<'_>> = (0..8).map(|_| f.acquire()).collect();
        assert_eq!(lock(&f.state).peak, 8);
        // Eight in flight, all told "too many connections": halved once, not eight times.
        for p in &permits {
            f.throttled(p, true);
        }
        assert_eq!(lock(&f.state).limit, Some(4));
        drop(permits);
        let p = f.acquire();
        f.throttled(&p, false);
        assert_eq!(lock(&f.state).limit, Some(3), "429001: one fewer");
        f.throttled(&p, true);
        assert_eq!(
            lock(&f.state).limit,
            Some(3),
            "already lowered since it was sent"
        );
        drop(p);
        let p = f.acquire();
        f.throttled(&p, true);
        assert_eq!(lock(&f.state).limit, Some(1));
        drop(p);
        f.throttled(&f.acquire(), true);
        assert_eq!(lock(&f.state).limit, Some(1), "never below one");
        // Raised by one after RAISE_AFTER answers, and lifted once no lower than the peak.
        let mut limits = Vec::new();
        for _ in 0..(RAISE_AFTER * 8) {
            f.answered();
            limits.push(lock(&f.state).limit);
        }
        assert_eq!(limits[RAISE_AFTER as usize - 1], Some(2));
        assert_eq!(limits[RAISE_AFTER as usize * 2 - 1], Some(3));
        assert_eq!(limits.last(), Some(&None));
    }

    #[test]
    fn a_waiting_request_goes_when_another_is_done() {
        let f = Arc::new(Flight::default());
        let p = f.acquire();
        f.throttled(&p, true);
        assert_eq!(lock(&f.state).limit, Some(1));
        let started = Arc::new(AtomicU64::new(0));
        let t = {
            let (f, started) = (Arc::clone(&f), Arc::clone(&started));
            std::thread::spawn(move || {
                let _p = f.acquire();
                started.store(1, Ordering::SeqCst);
            })
        };
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(started.load(Ordering::SeqCst), 0, "one at a time");
        drop(p);
        t.join().unwrap();
        assert_eq!(started.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn forbidden_sub_codes_say_what_happened() {
        let m = forbidden(Some(403002), "HTTP 403 (code 403002): blocked");
        assert!(
            m.contains("IP address is blocked") && m.contains("about an hour"),
            "{m}"
        );
        assert!(!m.contains("rights"), "{m}");
        let m = forbidden(Some(403004), "HTTP 403 (code 403004)");
        assert!(m.contains("not on the API key's allow list"), "{m}");
        assert!(forbidden(Some(403003), "x").contains("privilege"));
        assert!(forbidden(Some(403001), "x").contains("does not match"));
        assert!(forbidden(Some(403000), "x").contains("forbade"));
        assert!(forbidden(None, "x").contains("forbade"));
        for code in 403000..=403004 {
            assert!(forbidden(Some(code), "x").contains("no further lookups"));
        }
    }

    /// Nothing listening: a run stops at the first request and says so once; a gateway's
    /// upstream (`stop_on_wrong_endpoint: false`) only fails that batch and tries again.
    #[test]
    fn a_refused_connection_halts_a_run_but_not_a_gateway_upstream() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let batch = LookupBatch {
            id: 1,
            digests: vec![Digest::Sha256([7; 32])],
        };
        for stop in [true, false] {
            let mut c = cfg(&format!("http://127.0.0.1:{port}"));
            c.retries = 0;
            c.stop_on_wrong_endpoint = stop;
            let client = HttpClient::new(c).unwrap();
            let out = client.lookup(&batch);
            assert!(
                matches!(&out[0].1, Err(LookupError::Transport(_))),
                "{out:?}"
            );
            assert_eq!(client.halted().is_some(), stop, "{:?}", client.halted());
            assert_eq!(client.stats().requests, 0, "nothing was sent");
        }
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
        // The record says it briefly; the halt (said once) has the whole reason.
        assert!(
            matches!(&first[0].1, Err(LookupError::KeyRefused(r)) if r.as_str() == KEY_REFUSED),
            "{first:?}"
        );
        assert!(
            matches!(client.halted(), Some(LookupError::KeyRefused(r)) if r.as_str().contains("401")),
            "{:?}",
            client.halted()
        );
        // Nothing more is sent: the next batch is failed from the halt, not asked.
        let second = client.lookup(&batch(2));
        assert!(
            matches!(&second[0].1, Err(LookupError::KeyRefused(r)) if r.as_str() == "not looked up: API key refused"),
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

    #[test]
    fn throttle_backoff_is_1s_doubling_to_60s_with_jitter() {
        let c = HttpClient::new(cfg("http://127.0.0.1:9")).unwrap();
        for (n, full) in [(1, 1), (2, 2), (3, 4), (6, 32), (7, 60), (40, 60)] {
            let d = c.throttle_backoff(n);
            let full = Duration::from_secs(full);
            assert!(d >= full / 2 && d <= full, "throttle {n}: {d:?}");
        }
    }
}
