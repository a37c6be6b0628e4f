//! What a client is set up with: the service's address and how to join the endpoint to it,
//! the patience of endpoints and gateways (timeouts, retries, throttle waits), the key, and the
//! reqwest client every client of the service starts from (key header, roots, no redirects).

use std::time::Duration;

use reqwest::Url;
use reqwest::blocking::Client;
use reqwest::header::{HeaderMap, HeaderValue};

use crate::ApiKey;

/// The public service.
pub const DEFAULT_API_URL: &str = "https://api.metadefender.com";

/// Timeout for connecting, for every client.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The first wait after a throttle (429001/429002); it doubles with each throttle of a batch.
pub const THROTTLE_BASE: Duration = Duration::from_secs(1);

/// The longest single wait after a throttle.
pub const THROTTLE_CAP: Duration = Duration::from_secs(60);

/// How patient a client is: the defaults that differ between an endpoint (`scan`, `lookup`:
/// [`Patience::ENDPOINT`]) and a gateway's upstream (the gateway's `UPSTREAM`), whose
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
pub(super) fn shown_url(u: &Url) -> String {
    let mut u = u.clone();
    let _ = u.set_password(None);
    let _ = u.set_username("");
    u.to_string()
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

pub(super) fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}
