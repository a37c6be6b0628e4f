//! `hashsweep serve`: a lookup gateway for a fleet.
//!
//! It answers `POST /v4/hash` exactly as the service does, so endpoints run the ordinary
//! `hashsweep scan --api-url http://gateway:8737` with their own token as the API key. The real
//! key stays here. Verdicts are shared in a [`store`] (SQLite for one instance, Redis for
//! several); cache misses from every client are [`coalesce`]d into upstream requests of up to
//! 1000 hashes, each digest asked once however many endpoints hold it. [`api`] is the HTTP
//! face, [`tokens`] the endpoint tokens.
//!
//! Built on tokio + axum (served by axum-server, for rustls). Shutdown on SIGTERM/SIGINT is
//! graceful: no new connections, in-flight requests (and their upstream lookups, whose answers
//! are stored first) finish within `shutdown_grace`.

pub mod api;
pub mod coalesce;
pub mod store;
pub mod tokens;

use std::net::{SocketAddr, TcpListener};
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::cache::Ttls;
pub use coalesce::UpstreamConfig;
pub use store::{Store, StoreError};
pub use tokens::{Tokens, TokensError};

/// The default `--listen` address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8737";

/// The upstream client's defaults: endpoints are waiting on each answer, so batches leave
/// sooner and a failing upstream is given up on sooner than in a sweep (they ask again).
pub const UPSTREAM: crate::lookup::Patience = crate::lookup::Patience {
    batch_wait: Duration::from_millis(50),
    retries: 3,
    max_wait: Duration::from_secs(30),
    timeout: Duration::from_secs(30),
};

/// At most this many digests wait for the upstream (`--max-pending`), unless told otherwise.
pub const DEFAULT_MAX_PENDING: usize = 200_000;

/// Everything `serve` needs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub tokens: Tokens,
    /// `sqlite:PATH`, `redis://…` or `rediss://…`.
    pub store: String,
    pub ttls: Ttls,
    pub upstream: UpstreamConfig,
    /// Requests per minute per endpoint token.
    pub client_rate: Option<NonZeroU32>,
    /// Allow plain http on an address that is not loopback.
    pub insecure_http: bool,
    /// PEM certificate chain and private key: serve https.
    pub tls: Option<(PathBuf, PathBuf)>,
    pub shutdown_grace: Duration,
}

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(
        "refusing plain http on {0}: endpoint tokens would cross the network in clear (use --tls-cert/--tls-key, or --insecure-http)"
    )]
    PlainHttp(SocketAddr),
    #[error("cannot listen on {addr}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot load the TLS certificate or key")]
    Tls(#[source] std::io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Client(#[from] crate::lookup::http::ClientError),
    #[error("gateway runtime")]
    Runtime(#[source] std::io::Error),
}

fn metrics_handle() -> PrometheusHandle {
    static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Full(
                        "hashsweep_gateway_store_seconds".into(),
                    ),
                    &[0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 2.0],
                )
                .map(PrometheusBuilder::build_recorder)
                .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
            let handle = recorder.handle();
            // Another recorder may already be installed (a library user's): then ours only
            // renders what was recorded through it, which is nothing; still a valid page.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// Run the gateway until SIGTERM or SIGINT. `ready` is called with the bound address.
pub fn serve(cfg: ServeConfig, ready: impl FnOnce(&SocketAddr, &str)) -> Result<(), GatewayError> {
    if cfg.tls.is_none() && !cfg.listen.ip().is_loopback() && !cfg.insecure_http {
        return Err(GatewayError::PlainHttp(cfg.listen));
    }
    let listener = TcpListener::bind(cfg.listen).map_err(|source| GatewayError::Listen {
        addr: cfg.listen,
        source,
    })?;
    let local = listener
        .local_addr()
        .map_err(|source| GatewayError::Listen {
            addr: cfg.listen,
            source,
        })?;
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    // The blocking HTTP client owns a runtime of its own: build it outside ours.
    let upstream = Arc::new(coalesce::Upstream::new(cfg.upstream.client.clone())?);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .map_err(GatewayError::Runtime)?;
    rt.block_on(run(cfg, upstream, listener, local, ready))
}

async fn run(
    cfg: ServeConfig,
    upstream: Arc<coalesce::Upstream>,
    listener: TcpListener,
    local: SocketAddr,
    ready: impl FnOnce(&SocketAddr, &str),
) -> Result<(), GatewayError> {
    let store = Store::open(&cfg.store, cfg.ttls, cfg.upstream.claim_ttl)?;
    let coalescer = coalesce::Coalescer::start(store.clone(), upstream, &cfg.upstream);
    let state = Arc::new(api::AppState::new(
        cfg.tokens.clone(),
        store.clone(),
        Arc::clone(&coalescer),
        cfg.client_rate,
        metrics_handle(),
    ));
    let app = api::router(state).into_make_service_with_connect_info::<SocketAddr>();
    let handle = axum_server::Handle::new();
    tokio::spawn(shutdown_on_signal(handle.clone(), cfg.shutdown_grace));
    tokio::spawn(store.clone().maintain_forever());
    if let Err(e) = store.ping().await {
        tracing::warn!(
            "the verdict store is not reachable yet (requests get 503 until it is): {e}"
        );
    }
    let scheme = if cfg.tls.is_some() { "https" } else { "http" };
    let description = format!(
        "{scheme}://{local} (store {}, upstream {}, {} endpoint tokens)",
        store.describe(),
        cfg.upstream.client.api_url,
        cfg.tokens.len()
    );
    listener
        .set_nonblocking(true)
        .map_err(GatewayError::Runtime)?;
    let served = match &cfg.tls {
        Some((cert, key)) => {
            let _ = rustls::crypto::ring::default_provider().install_default();
            let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
                .await
                .map_err(GatewayError::Tls)?;
            let server = axum_server::from_tcp_rustls(listener, tls)
                .map_err(GatewayError::Runtime)?
                .handle(handle);
            ready(&local, &description);
            server.serve(app).await
        }
        None => {
            let server = axum_server::from_tcp(listener)
                .map_err(GatewayError::Runtime)?
                .handle(handle);
            ready(&local, &description);
            server.serve(app).await
        }
    };
    // Connections are closed; lookups whose clients went away may still be running: their
    // answers are paid for, so store them before exiting.
    if !coalescer.drain(cfg.shutdown_grace).await {
        tracing::warn!("exiting with upstream lookups still in flight (--shutdown-grace)");
    }
    served.map_err(GatewayError::Runtime)
}

async fn shutdown_on_signal(handle: axum_server::Handle<SocketAddr>, grace: Duration) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!(
        "shutting down: finishing requests in flight (up to {}s)",
        grace.as_secs()
    );
    handle.graceful_shutdown(Some(grace));
}
