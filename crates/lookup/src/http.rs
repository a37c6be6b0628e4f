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
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use reqwest::blocking::{Client, Response};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{StatusCode, Url};

mod config;
mod pacing;
mod words;

pub(crate) use config::client_base;
pub use config::{
    ClientConfig, ClientError, DEFAULT_API_URL, DEFAULT_CONNECT_TIMEOUT, Patience, THROTTLE_BASE,
    THROTTLE_CAP, join_endpoint,
};
use config::{is_loopback, shown_url};
use pacing::Flight;
pub use pacing::{RateHeaders, backoff, retry_after};
pub use words::{KEY_REFUSED, SCRUB_PIECE, scrub_key};
use words::{describe_reqwest, forbidden, forbidden_brief, innermost_cause, looks_like_html};

use super::protocol::{self, parse_answer, parse_error};
use super::{ApiKey, Budget, ClientStats, HashOutcome, LookupError, Reason, ReputationClient};
use crate::batch::LookupBatch;
use hashsweep_core::digest::Digest;
use hashsweep_core::sync::lock;

/// `1 hash`, `2 hashes`: how many a batch holds, for the messages.
fn hashes(n: usize) -> String {
    if n == 1 {
        "1 hash".into()
    } else {
        format!("{n} hashes")
    }
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
        format!("budget:{}", hashsweep_core::digest::hex_lower(&d[..8]))
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
        current(lock(&self.budget).0, hashsweep_core::clock::now()).map(|b| b.remaining)
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
        g.0 = seen.merge(g.0, hashsweep_core::clock::now());
        g.1 = g.1.saturating_sub(share.take());
    }

    /// Hold a share of the budget for a request of `n` hashes: as many as the budget the
    /// service last stated still covers, less what requests in flight hold (all of them
    /// while nothing is known). The request asks only that many, so the service never has
    /// to refuse one for asking more than is left.
    fn reserve(&self, n: usize) -> usize {
        let mut g = lock(&self.budget);
        let take = match current(g.0, hashsweep_core::clock::now()) {
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
        current(lock(&self.budget).0, hashsweep_core::clock::now())
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

#[cfg(test)]
mod tests;
