//! The gateway's HTTP face: `POST /v4/hash` with the vendor's contract and a bare `GET /healthz`
//! (status code only) on the public listener; `GET /metrics`, a detailed `GET /healthz` and,
//! with `--prevalence`, `GET /v1/prevalence/{hash}` and `POST /v1/prevalence` on the admin
//! listener ([`admin_router`]). With `--upload-unknown`, the file API for endpoints'
//! uploads (`GET /v4/apikey`, `POST /v1/upload/intent`, `POST /v4/file`, `GET
//! /v4/file/{data_id}`: see [`upload`] and [`super::uploads`]); without it those are refused.
//!
//! A request is checked in the vendor's order and with its codes: the endpoint token (401006,
//! before the body is read; the upstream is never asked; an empty `apikey` is always refused),
//! the per-token rate (429001), the body (a declared length over 1 MiB is refused before any of
//! it is read, 400063; it must arrive within `body_timeout`, else 408000; at most 1000 hashes;
//! 400060-400065). Its distinct digests are read from the store in one round trip; misses are
//! counted against the token's daily `--client-budget` (beyond it: 429000 for them, cached
//! answers still served; those that get no answer are given back) and go to the [`Coalescer`]. The answer has the vendor's shape, one
//! entry per hash asked, in order, upper-case, with `scan_result_i` 5 for strings that are not a
//! hash. A hash whose upstream lookup failed is left out (the client asks again, as it would of
//! the service); if none could be answered the request gets 503 (503000), or 429 (429000 with
//! `X-RateLimit-Reset-In`) when the gateway's daily quota is spent. A store that cannot be read
//! gives 503: never a made-up verdict.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroU64};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Deserialize;
use serde_json::Value;

use super::coalesce::{Coalescer, Got};
use super::store::Store;
use super::tokens::Tokens;
use super::uploads::Uploads;
use hashsweep_core::digest::{Digest, DigestHash};
use hashsweep_lookup::Answer;
use hashsweep_lookup::batch::MAX_BATCH;

pub use hashsweep_lookup::protocol::HOSTS_FIELD;
pub use upload::{parse_intent, url_decode};

/// The largest request body accepted.
pub const MAX_BODY: usize = 1 << 20;

/// A body over [`MAX_BODY`].
const TOO_LARGE: BadRequest = BadRequest {
    code: 400063,
    message: "Request body larger than 1 MiB (at most 1000 hashes per request)",
};

/// A body that broke off before its end (the vendor's code for a body it cannot read).
const BROKEN_BODY: BadRequest = BadRequest {
    code: 400060,
    message: "Request body incomplete (the connection broke or its chunks were malformed)",
};

/// The most of an upstream error text passed on to clients and `/healthz`.
pub const MAX_PASSED_ON: usize = 300;

/// Who may ask, and how much.
#[derive(Debug, Clone)]
pub struct Policy {
    pub tokens: Tokens,
    /// Requests per minute per endpoint token.
    pub client_rate: Option<NonZeroU32>,
    /// Hashes asked upstream per endpoint token and UTC day.
    pub client_budget: Option<NonZeroU64>,
    /// The longest a request body may take to arrive.
    pub body_timeout: Duration,
}

/// Everything a handler needs.
pub struct AppState {
    pub tokens: Tokens,
    pub store: Store,
    pub coalescer: Arc<Coalescer>,
    pub limiter: Option<ClientRate>,
    pub budget: Option<ClientBudget>,
    pub body_timeout: Duration,
    pub metrics: PrometheusHandle,
    /// `--upload-unknown`: the fleet's uploads (`None`: uploads are refused).
    pub uploads: Option<Arc<Uploads>>,
    /// `--client-upload-budget`: files sent upstream per token and UTC day.
    pub upload_budget: Option<ClientBudget>,
}

/// `--client-budget`: hashes asked upstream per token and UTC day, counted in the store when it
/// is shared (every instance draws on one count), else in memory.
pub struct ClientBudget {
    per_day: u64,
    /// token → (day, hashes taken that day); a single instance only.
    local: std::sync::Mutex<HashMap<Arc<str>, (u64, u64)>>,
}

/// The UTC day number of `now` and the time left until the next one.
fn utc_day(now: std::time::SystemTime) -> (u64, Duration) {
    let secs = now
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    (secs / 86_400, Duration::from_secs(86_400 - secs % 86_400))
}

/// Hashes taken of a token's `--client-budget`.
struct Taken {
    granted: u64,
    /// The UTC day they count against (what a refund gives back to).
    day: u64,
    /// When the budget resets.
    reset_in: Duration,
}

impl ClientBudget {
    /// Take up to `n` hashes of `token`'s budget for today.
    async fn take(&self, store: &Store, token: &Arc<str>, n: u64) -> Result<Taken, ApiError> {
        let (day, reset_in) = utc_day(std::time::SystemTime::now());
        let granted = if store.is_shared() {
            store
                .take_budget(token, day, n, self.per_day, reset_in)
                .await
                .map_err(|e| store_down(&e))?
        } else {
            let mut g = hashsweep_core::sync::lock(&self.local);
            let e = g.entry(Arc::clone(token)).or_insert((day, 0));
            if e.0 != day {
                *e = (day, 0);
            }
            let take = n.min(self.per_day.saturating_sub(e.1));
            e.1 += take;
            take
        };
        Ok(Taken {
            granted,
            day,
            reset_in,
        })
    }

    /// Give back `n` hashes taken on `day` whose lookups got no answer (failed, refused as busy,
    /// the store down, deferred by the upstream budget): a token whose client retries through an
    /// outage is not shut out for the day after it. A refund that cannot be made is logged.
    async fn refund(&self, store: &Store, token: &Arc<str>, day: u64, n: u64) {
        if n == 0 {
            return;
        }
        if store.is_shared() {
            if let Err(e) = store.refund_budget(token, day, n).await {
                tracing::warn!(token = %token, "client budget not given back: {e}");
            }
        } else if let Some(e) = hashsweep_core::sync::lock(&self.local).get_mut(token)
            && e.0 == day
        {
            e.1 = e.1.saturating_sub(n);
        }
    }
}

/// `--client-rate`: per token and minute, shared through Redis by every instance, or kept in
/// memory (GCRA, smooth) by a single instance.
pub enum ClientRate {
    Local(DefaultKeyedRateLimiter<Arc<str>>),
    Shared(u32),
}

impl AppState {
    pub fn new(
        policy: Policy,
        store: Store,
        coalescer: Arc<Coalescer>,
        metrics: PrometheusHandle,
    ) -> AppState {
        AppState {
            tokens: policy.tokens,
            coalescer,
            budget: policy.client_budget.map(|n| ClientBudget {
                per_day: n.get(),
                local: std::sync::Mutex::new(HashMap::new()),
            }),
            body_timeout: policy.body_timeout,
            limiter: policy.client_rate.map(|n| {
                if store.is_shared() {
                    ClientRate::Shared(n.get())
                } else {
                    ClientRate::Local(RateLimiter::keyed(Quota::per_minute(n)))
                }
            }),
            store,
            metrics,
            uploads: None,
            upload_budget: None,
        }
    }

    /// Upload unknown files for the endpoints (`serve --upload-unknown`), at most `per_day`
    /// files sent a day per endpoint token.
    pub fn with_uploads(mut self, uploads: Arc<Uploads>, per_day: Option<NonZeroU64>) -> AppState {
        self.uploads = Some(uploads);
        self.upload_budget = per_day.map(|n| ClientBudget {
            per_day: n.get(),
            local: std::sync::Mutex::new(HashMap::new()),
        });
        self
    }
}

/// The public listener: lookups and a bare health check.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v4/hash", post(hash_lookup))
        .route("/v4/apikey", get(upload::key_info))
        .route("/v1/upload/intent", post(upload::intent))
        .route("/v4/file", post(upload::receive))
        .route("/v4/file/{data_id}", get(upload::poll))
        .route("/healthz", get(bare_healthz))
        .fallback(not_found)
        .with_state(state)
}

/// The admin listener (`--admin-listen`): metrics, the detailed health answer and, with
/// `--prevalence`, `GET /v1/prevalence/{hash}` and `POST /v1/prevalence`. Like `/metrics`, they
/// need no token: the admin listener is the operators' (keep it on a private address).
pub fn admin_router(state: Arc<AppState>) -> Router {
    let r = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(render_metrics));
    let r = if state.store.records_prevalence() {
        r.route("/v1/prevalence/{hash}", get(prevalence_one))
            .route("/v1/prevalence", post(prevalence_many))
    } else {
        r
    };
    r.fallback(not_found).with_state(state)
}

/// The digest of a hash asked of `/v1/prevalence`, or the vendor's 400064.
fn prevalence_digest(h: &str) -> Result<Digest, ApiError> {
    Digest::from_hex(h).ok_or_else(|| {
        BadRequest {
            code: 400064,
            message: "A hash value is not valid",
        }
        .into()
    })
}

/// A request's body, at most [`MAX_BODY`] bytes within `--body-timeout`. A declared length
/// over the limit is refused before any of it is read (the connection is closed after the
/// answer).
async fn read_body(st: &AppState, req: Request) -> Result<axum::body::Bytes, ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        metrics::counter!("hashsweep_gateway_client_refused_total", "reason" => "body_size")
            .increment(1);
        return Err(TOO_LARGE.into());
    }
    match tokio::time::timeout(st.body_timeout, body_within(req.into_body(), MAX_BODY)).await {
        Ok(Ok(b)) => Ok(b),
        Ok(Err(BodyFault::TooLarge)) => {
            metrics::counter!("hashsweep_gateway_client_refused_total", "reason" => "body_size")
                .increment(1);
            Err(TOO_LARGE.into())
        }
        Ok(Err(BodyFault::Broken)) => {
            metrics::counter!("hashsweep_gateway_client_refused_total", "reason" => "body_broken")
                .increment(1);
            Err(BROKEN_BODY.into())
        }
        Err(_) => {
            metrics::counter!("hashsweep_gateway_client_refused_total", "reason" => "body_timeout")
                .increment(1);
            Err(ApiError::BodyTimeout)
        }
    }
}

/// Why a request body was not read whole.
enum BodyFault {
    /// More than the limit arrived (a chunked body, or more than the declared length).
    TooLarge,
    /// The body broke off: the client went away, or sent malformed chunks.
    Broken,
}

/// `body` whole, if it is at most `limit` bytes; read frame by frame, so that a body over the
/// limit is told from one that broke off.
async fn body_within(mut body: Body, limit: usize) -> Result<axum::body::Bytes, BodyFault> {
    use axum::body::HttpBody as _;
    // The declared length (checked against the limit before), so the frames are gathered
    // without growing the buffer again and again.
    let declared = usize::try_from(body.size_hint().lower()).unwrap_or(limit);
    let mut out = Vec::with_capacity(declared.min(limit));
    while let Some(frame) =
        std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await
    {
        let Ok(data) = frame.map_err(|_| BodyFault::Broken)?.into_data() else {
            continue; // trailers
        };
        if out.len() + data.len() > limit {
            return Err(BodyFault::TooLarge);
        }
        if out.is_empty() && body.is_end_stream() {
            return Ok(data); // the whole body in one frame: no copy
        }
        out.extend_from_slice(&data);
    }
    Ok(out.into())
}

/// `GET /v1/prevalence/{hash}`: `{"hash", "hosts", "names"}`.
async fn prevalence_one(
    State(st): State<Arc<AppState>>,
    axum::extract::Path(hash): axum::extract::Path<String>,
) -> Result<Response, ApiError> {
    let d = prevalence_digest(&hash)?;
    let mut found = st
        .store
        .prevalence(&[d])
        .await
        .map_err(|e| store_down(&e))?;
    let one = found.pop().ok_or(ApiError::StoreDown)?;
    Ok(json_answer(&one))
}

/// `POST /v1/prevalence` with `{"hash": [...]}` (up to 1000): an array of those objects.
async fn prevalence_many(
    State(st): State<Arc<AppState>>,
    req: Request,
) -> Result<Response, ApiError> {
    let body = read_body(&st, req).await?;
    let digests = parse_request(&body)?
        .iter()
        .map(|h| prevalence_digest(h))
        .collect::<Result<Vec<_>, _>>()?;
    let found = st
        .store
        .prevalence(&digests)
        .await
        .map_err(|e| store_down(&e))?;
    Ok(json_answer(&found))
}

fn json_answer(v: &impl serde::Serialize) -> Response {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        serde_json::to_string(v).unwrap_or_default(),
    )
        .into_response()
}

/// Every error answer the gateway gives, each with the vendor's status, code and headers. The
/// body is the vendor's `{"error":{"code":N,"messages":["..."]}}`; the text is the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// 404000: no such endpoint.
    #[error("Endpoint not found")]
    NotFound,
    /// 400060-400065: the request was refused as the vendor refuses it.
    #[error("{}", .0.message)]
    BadRequest(BadRequest),
    /// 401006: no known endpoint token.
    #[error("Invalid apikey")]
    InvalidToken,
    /// 429001: this token's `--client-rate` is used up; `Retry-After` says when to come back.
    #[error("Too many requests for this endpoint token (--client-rate)")]
    ClientRate { retry_after: Duration },
    /// 429000: the gateway's daily upstream quota is spent; `X-RateLimit-Reset-In` (and
    /// `Retry-After`) say when it resets.
    #[error("API key limit exceeded (the gateway's daily lookup quota is spent)")]
    QuotaSpent { reset_in: Duration },
    /// 429000: this token's daily `--client-budget` is spent; the headers as for `QuotaSpent`.
    #[error("API key limit exceeded (this endpoint token's daily lookup budget is spent)")]
    ClientBudget { reset_in: Duration },
    /// 408000: the request body did not arrive within `--body-timeout`.
    #[error("Request timed out (the body did not arrive in time)")]
    BodyTimeout,
    /// 503000: the verdict store cannot be used (never a made-up verdict instead).
    #[error("The gateway's verdict store is unreachable; retry later")]
    StoreDown,
    /// 503000: too many digests already wait for the upstream (`--max-pending`).
    #[error("The gateway has too many lookups waiting for the reputation service; retry later")]
    Busy,
    /// 503000: no hash of the request could be answered by the upstream.
    #[error("The gateway could not reach the reputation service: {0}")]
    Upstream(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::InvalidToken => StatusCode::UNAUTHORIZED,
            ApiError::ClientRate { .. }
            | ApiError::QuotaSpent { .. }
            | ApiError::ClientBudget { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::StoreDown | ApiError::Busy | ApiError::Upstream(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }

    /// The vendor's error code.
    pub fn code(&self) -> u32 {
        match self {
            ApiError::NotFound => 404000,
            ApiError::BadRequest(b) => b.code,
            ApiError::InvalidToken => 401006,
            ApiError::ClientRate { .. } => 429001,
            ApiError::QuotaSpent { .. } | ApiError::ClientBudget { .. } => 429000,
            ApiError::BodyTimeout => 408000,
            ApiError::StoreDown | ApiError::Busy | ApiError::Upstream(_) => 503000,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "error": {"code": self.code(), "messages": [self.to_string()]}
        })
        .to_string();
        let mut r = (
            self.status(),
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response();
        let h = r.headers_mut();
        match self {
            ApiError::ClientRate { retry_after } => {
                h.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(retry_after.as_secs().max(1)),
                );
            }
            ApiError::QuotaSpent { reset_in } | ApiError::ClientBudget { reset_in } => {
                let secs = reset_in.as_secs().max(1);
                if let Ok(v) = HeaderValue::from_str(&format!("{secs}s")) {
                    h.insert("x-ratelimit-reset-in", v);
                }
                h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            ApiError::StoreDown => {
                h.insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
            }
            ApiError::Busy | ApiError::Upstream(_) => {
                h.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            ApiError::NotFound
            | ApiError::BadRequest(_)
            | ApiError::InvalidToken
            | ApiError::BodyTimeout => {}
        }
        r
    }
}

impl From<BadRequest> for ApiError {
    fn from(b: BadRequest) -> ApiError {
        ApiError::BadRequest(b)
    }
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}

/// Why a request body is refused, with the vendor's code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRequest {
    pub code: u32,
    pub message: &'static str,
}

/// The `hash` strings of a request body, checked as the vendor checks them.
pub fn parse_request(body: &[u8]) -> Result<Vec<Cow<'_, str>>, BadRequest> {
    #[derive(Deserialize)]
    struct Fast<'a> {
        #[serde(borrow)]
        hash: Vec<&'a str>,
    }
    let bad = |code, message| Err(BadRequest { code, message });
    // The common case: an object whose `hash` is an array of plain strings.
    let list: Vec<Cow<'_, str>> = match serde_json::from_slice::<Fast<'_>>(body) {
        Ok(f) => f.hash.into_iter().map(Cow::Borrowed).collect(),
        Err(_) => {
            let Ok(v) = serde_json::from_slice::<Value>(body) else {
                return bad(400060, "The `hash` field is required");
            };
            let Some(field) = v.get("hash") else {
                return bad(400060, "The `hash` field is required");
            };
            let Some(arr) = field.as_array() else {
                return bad(400061, "The `hash` field must be an array");
            };
            let mut out = Vec::with_capacity(arr.len());
            for h in arr {
                match h.as_str() {
                    Some(s) => out.push(Cow::Owned(s.to_string())),
                    None => return bad(400064, "A hash value is not valid"),
                }
            }
            out
        }
    };
    if list.is_empty() {
        return bad(400062, "The `hash` field is empty");
    }
    if list.len() > MAX_BATCH {
        return bad(400063, "Exceeded maximum allowed hashes (1000)");
    }
    Ok(list)
}

fn details_wanted(h: &HeaderMap) -> Result<bool, BadRequest> {
    match h.get("includescandetails").map(|v| v.as_bytes()) {
        None | Some(b"0") => Ok(false),
        Some(b"1") => Ok(true),
        Some(_) => Err(BadRequest {
            code: 400065,
            message: "includescandetails must be 0 or 1",
        }),
    }
}

fn count_request(token: &str, status: StatusCode) {
    metrics::counter!(
        "hashsweep_gateway_client_requests_total",
        "token" => token.to_string(),
        "status" => status.as_str().to_string()
    )
    .increment(1);
}

async fn hash_lookup(
    State(st): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let started = Instant::now();
    let name = match token_of(&st, req.headers(), peer) {
        Ok(n) => n,
        Err(e) => return e.into_response(),
    };
    let resp = lookup_for(&st, &name, req)
        .await
        .unwrap_or_else(IntoResponse::into_response);
    count_request(&name, resp.status());
    tracing::debug!(
        token = %name,
        %peer,
        status = resp.status().as_u16(),
        ms = started.elapsed().as_millis() as u64,
        "POST /v4/hash"
    );
    resp
}

/// `--client-rate`: refuse `name`'s request if its token is over its rate.
async fn check_rate(st: &AppState, name: &Arc<str>) -> Result<(), ApiError> {
    let wait = match &st.limiter {
        None => None,
        Some(ClientRate::Local(limiter)) => limiter.check_key(name).err().map(|not_until| {
            not_until.wait_time_from(governor::clock::Clock::now(
                &governor::clock::DefaultClock::default(),
            ))
        }),
        Some(ClientRate::Shared(n)) => st
            .store
            .count_request(name, *n)
            .await
            .map_err(|e| store_down(&e))?,
    };
    match wait {
        Some(retry_after) => Err(ApiError::ClientRate { retry_after }),
        None => Ok(()),
    }
}

/// The endpoint token's name of a request, or its refusal (401006).
fn token_of(st: &AppState, headers: &HeaderMap, peer: SocketAddr) -> Result<Arc<str>, ApiError> {
    headers
        .get("apikey")
        .filter(|t| !t.is_empty())
        .and_then(|t| st.tokens.name_of(t.as_bytes()))
        .ok_or_else(|| {
            metrics::counter!("hashsweep_gateway_client_refused_total", "reason" => "token")
                .increment(1);
            tracing::warn!(%peer, "refused a request without a known endpoint token");
            ApiError::InvalidToken
        })
}

async fn lookup_for(st: &AppState, name: &Arc<str>, req: Request) -> Result<Response, ApiError> {
    check_rate(st, name).await?;
    let details = details_wanted(req.headers())?;
    let body = read_body(st, req).await?;
    let hashes = parse_request(&body)?;
    metrics::counter!("hashsweep_gateway_client_hashes_total", "token" => name.to_string())
        .increment(hashes.len() as u64);

    // Each hash's slot among the request's distinct digests (`None`: not a hash).
    let mut distinct: Vec<Digest> = Vec::with_capacity(hashes.len());
    let slots: Vec<Option<u32>> = {
        let mut seen: HashMap<Digest, u32, DigestHash> =
            HashMap::with_capacity_and_hasher(hashes.len(), DigestHash);
        hashes
            .iter()
            .map(|h| {
                let d = Digest::from_hex(h)?;
                Some(*seen.entry(d).or_insert_with(|| {
                    distinct.push(d);
                    (distinct.len() - 1) as u32
                }))
            })
            .collect()
    };

    // One outcome per distinct digest, in `distinct`'s order.
    let mut found: Vec<Option<Got>> = Vec::with_capacity(distinct.len());
    let mut over_budget = None;
    // With --prevalence, this token is recorded as holding each digest in the same round trip.
    let hosts: super::store::HostCounts;
    match st.store.get_asked(&distinct, Some(name)).await {
        Ok((cached, counted)) => {
            hosts = counted;
            let mut misses = Vec::new();
            let mut miss_at = Vec::new();
            for (i, (d, a)) in distinct.iter().zip(cached).enumerate() {
                match a {
                    Some(a) if !details || a.details.is_some() => found.push(Some(Got::Answer(a))),
                    _ => {
                        found.push(None);
                        misses.push(*d);
                        miss_at.push(i);
                    }
                }
            }
            metrics::counter!("hashsweep_gateway_cache_hits_total")
                .increment((distinct.len() - misses.len()) as u64);
            metrics::counter!("hashsweep_gateway_cache_misses_total")
                .increment(misses.len() as u64);
            let mut budget_day = None;
            if let Some(b) = &st.budget
                && !misses.is_empty()
            {
                let taken = b.take(&st.store, name, misses.len() as u64).await?;
                budget_day = Some(taken.day);
                let granted = usize::try_from(taken.granted).unwrap_or(usize::MAX);
                if granted < misses.len() {
                    // Beyond the token's budget: not asked, left out of the answer.
                    let over = misses.len() - granted;
                    misses.truncate(granted);
                    miss_at.truncate(granted);
                    over_budget = Some(taken.reset_in);
                    metrics::counter!("hashsweep_gateway_client_over_budget_total", "token" => name.to_string())
                        .increment(over as u64);
                }
            }
            if !misses.is_empty() {
                let got = st.coalescer.ask(&misses, details).await;
                let unanswered = got.iter().filter(|g| !matches!(g, Got::Answer(_))).count();
                if let (Some(b), Some(day)) = (&st.budget, budget_day) {
                    b.refund(&st.store, name, day, unanswered as u64).await;
                }
                for (i, g) in miss_at.into_iter().zip(got) {
                    found[i] = Some(g);
                }
            }
        }
        Err(e) => return Err(store_down(&e)),
    }

    if let Some(Got::StoreDown(why)) = found
        .iter()
        .flatten()
        .find(|g| matches!(g, Got::StoreDown(_)))
    {
        return Err(store_down(why));
    }
    let any_answer = found.iter().flatten().any(|g| matches!(g, Got::Answer(_)));
    if let Some(reset_in) = over_budget
        && !any_answer
    {
        return Err(ApiError::ClientBudget { reset_in });
    }
    if !any_answer && !distinct.is_empty() {
        return Err(upstream_failed(st, &found));
    }
    let mut out: Vec<u8> = Vec::with_capacity(hashes.len() * 120 + 16);
    out.extend_from_slice(b"{\"data\":[");
    let mut first = true;
    for (h, slot) in hashes.iter().zip(&slots) {
        let entry = match slot {
            Some(i) => match &found[*i as usize] {
                Some(Got::Answer(a)) => Some(a),
                _ => continue,
            },
            None => None,
        };
        if !first {
            out.push(b',');
        }
        first = false;
        let on_hosts = slot.and_then(|i| *hosts.as_ref()?.get(i as usize)?);
        write_entry(&mut out, h, entry, details, on_hosts);
    }
    out.extend_from_slice(b"]}");
    Ok((
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        Body::from(out),
    )
        .into_response())
}

/// The store failed: log why (the client is told only that it is unreachable).
fn store_down(why: &dyn std::fmt::Display) -> ApiError {
    tracing::error!("answering 503: {why}");
    ApiError::StoreDown
}

fn upstream_failed(st: &AppState, found: &[Option<Got>]) -> ApiError {
    let upstream = st.coalescer.upstream();
    if found.iter().flatten().any(|g| matches!(g, Got::Busy)) {
        tracing::warn!("answering 503: too many lookups already wait for the upstream");
        return ApiError::Busy;
    }
    if let Some(reset_in) = upstream.quota_reset_in() {
        return ApiError::QuotaSpent { reset_in };
    }
    // Left out of an upstream batch because the key's budget did not cover it: the day is
    // spent for these, as the service would say.
    let cut = found
        .iter()
        .flatten()
        .any(|g| matches!(g, Got::Failed(hashsweep_lookup::LookupError::QuotaSpent(_))));
    if cut {
        let reset_in = upstream
            .budget_reset_in()
            .unwrap_or(Duration::from_secs(15 * 60));
        return ApiError::QuotaSpent { reset_in };
    }
    let why = found
        .iter()
        .flatten()
        .find_map(|g| match g {
            Got::Failed(w) => Some(w.message()),
            _ => None,
        })
        .unwrap_or("no answer");
    let why = passed_on(why);
    tracing::warn!("answering 503: upstream lookups failed: {why}");
    ApiError::Upstream(why)
}

/// Text from the upstream as it may be passed on: at most [`MAX_PASSED_ON`] bytes (cut on a
/// character boundary). The key was scrubbed by the client already.
pub fn passed_on(text: &str) -> String {
    hashsweep_lookup::protocol::cap_text(text, MAX_PASSED_ON)
}

/// `s` upper-cased (as the service echoes hashes) as a JSON string.
fn write_upper_json(out: &mut Vec<u8>, s: &str) {
    // A hash is 32, 40 or 64 hex digits: upper-case them through a table, 8 at a time.
    if matches!(s.len(), 32 | 40 | 64) {
        out.reserve(s.len() + 2);
        out.push(b'"');
        let mut ok = true;
        for chunk in s.as_bytes().chunks_exact(8) {
            let mut up = [0u8; 8];
            for (u, &b) in up.iter_mut().zip(chunk) {
                *u = b & !(u8::from(b.is_ascii_lowercase()) << 5);
                ok &= b.is_ascii_alphanumeric();
            }
            out.extend_from_slice(&up);
        }
        if ok {
            out.push(b'"');
            return;
        }
        // Not plain: undo and escape properly.
        out.truncate(out.len() - s.len() - 1);
    }
    if s.bytes().all(|b| b.is_ascii_alphanumeric()) {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend(s.bytes().map(|b| b.to_ascii_uppercase()));
        out.push(b'"');
    } else {
        let _ = serde_json::to_writer(&mut *out, &s.to_ascii_uppercase());
    }
}

/// One answer entry in the vendor's shape; `None` is the vendor's "not a valid hash" entry.
/// `hosts` (with `--prevalence`) is added as `hashsweep_hosts`, a field the vendor's clients
/// ignore.
fn write_entry(
    out: &mut Vec<u8>,
    hash: &str,
    a: Option<&Answer>,
    details: bool,
    hosts: Option<u64>,
) {
    let Some(a) = a else {
        out.extend_from_slice(b"{\"data_id\":null,\"hash\":");
        write_upper_json(out, hash);
        out.extend_from_slice(b",\"scan_result_i\":5,\"total_detected_avs\":-1}");
        return;
    };
    out.extend_from_slice(b"{\"data_id\":");
    match &a.data_id {
        Some(id)
            if id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_=+/.".contains(&b)) =>
        {
            out.push(b'"');
            out.extend_from_slice(id.as_bytes());
            out.push(b'"');
        }
        Some(id) => {
            let _ = serde_json::to_writer(&mut *out, id);
        }
        None => out.extend_from_slice(b"null"),
    }
    let _ = write!(out, ",\"scan_result_i\":{},\"hash\":", a.scan_result_i);
    write_upper_json(out, hash);
    let _ = write!(out, ",\"total_detected_avs\":{}", a.total_detected_avs);
    if let Some(n) = hosts {
        let _ = write!(out, ",\"{HOSTS_FIELD}\":{n}");
    }
    if details && let Some(engines) = a.details.as_deref().filter(|e| !e.is_empty()) {
        let map: serde_json::Map<String, Value> = engines
            .iter()
            .map(|e| {
                (
                    e.engine.clone(),
                    serde_json::json!({
                        "threat_found": e.threat_found,
                        "scan_result_i": e.scan_result_i,
                        "def_time": e.def_time,
                    }),
                )
            })
            .collect();
        let _ = write!(out, ",\"scan_details\":{}", Value::Object(map));
    }
    out.push(b'}');
}

/// The public health check: 200 or 503, no body.
async fn bare_healthz(State(st): State<Arc<AppState>>) -> StatusCode {
    let store = tokio::time::timeout(Duration::from_secs(2), st.store.ping()).await;
    if matches!(store, Ok(Ok(()))) {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

/// The admin health answer: the store, the upstream and its quota, in words.
async fn healthz(State(st): State<Arc<AppState>>) -> Response {
    let store = tokio::time::timeout(Duration::from_secs(2), st.store.ping()).await;
    let store_ok = matches!(store, Ok(Ok(())));
    let upstream = st.coalescer.upstream();
    let body = serde_json::json!({
        "status": if store_ok { "ok" } else { "degraded" },
        "store": if store_ok { "ok".to_string() } else {
            match store { Ok(Err(e)) => e.to_string(), _ => "timed out".into() }
        },
        "upstream": upstream.halted().map_or_else(|| "ok".into(), |e| passed_on(&e.to_string())),
        "upstream_quota_remaining": upstream.quota_remaining(),
    });
    let status = if store_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body.to_string(),
    )
        .into_response()
}

async fn render_metrics(State(st): State<Arc<AppState>>) -> Response {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        Body::from(st.metrics.render()),
    )
        .into_response()
}

#[cfg(test)]
mod tests;
mod upload;
