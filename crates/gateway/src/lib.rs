//! `hashsweep serve`: a lookup gateway for a fleet.
//!
//! It answers `POST /v4/hash` exactly as the service does, so endpoints run the ordinary
//! `hashsweep scan --api-url http://gateway:8737` with their own token as the API key. The real
//! key stays here. Verdicts are shared in a [`store`] (SQLite for one instance, Redis for
//! several, a Redis Cluster through [`cluster`] past one machine's memory); cache misses from every client are [`coalesce`]d into upstream requests of up to
//! 1000 hashes, each digest asked once however many endpoints hold it. [`api`] is the HTTP
//! face, [`tokens`] the endpoint tokens, [`uploads`] the fleet's uploads of unknown files
//! (`--upload-unknown`: one upload per digest, the bytes asked of one endpoint).
//!
//! Built on tokio + axum (served by axum-server, for rustls), HTTP/1.1 only (HTTP/2 is not
//! served, with or without TLS). [`conn`] bounds connections and their deadlines. Metrics and
//! the detailed health answer are served only on `--admin-listen`. Shutdown on SIGTERM/SIGINT is
//! graceful: no new connections, in-flight requests (and their upstream lookups, whose answers
//! are stored first) finish within `shutdown_grace`.

pub mod api;
pub mod cluster;
pub mod coalesce;
pub mod conn;
pub mod prevalence;
pub mod store;
pub mod tokens;
pub mod uploads;

use std::net::{SocketAddr, TcpListener};
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

pub use coalesce::UpstreamConfig;
use hashsweep_cache::Ttls;
pub use store::{Store, StoreError};
pub use tokens::{Tokens, TokensError};

/// The default `--listen` address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8737";

/// The upstream client's defaults: endpoints are waiting on each answer, so batches leave
/// sooner and a failing upstream is given up on sooner than in a sweep (they ask again).
pub const UPSTREAM: hashsweep_lookup::Patience = hashsweep_lookup::Patience {
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
    /// `sqlite:PATH`, `redis://…`, `rediss://…`, `redis-cluster://…` or `rediss-cluster://…`.
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
    /// At most this many client connections at once (`None`: derived from the open-file
    /// limit, see [`conn::default_max_connections`]).
    pub max_connections: Option<usize>,
    pub deadlines: conn::Deadlines,
    /// The longest a request body may take to arrive.
    pub body_timeout: Duration,
    /// Where `/metrics` and the detailed `/healthz` are served (nowhere without it).
    pub admin_listen: Option<SocketAddr>,
    /// Sign stored values with this key (`--store-key-file`).
    pub store_key: Option<store::StoreKey>,
    /// At most N hashes a day asked upstream for one endpoint token.
    pub client_budget: Option<std::num::NonZeroU64>,
    /// `--prevalence`: record which hosts ask for each digest, kept this long after the last.
    pub prevalence: Option<Duration>,
    /// `--upload-unknown`: upload the endpoints' unknown files, under this policy.
    pub uploads: Option<UploadsConfig>,
}

/// `serve --upload-unknown` and its limits.
#[derive(Debug, Clone)]
pub struct UploadsConfig {
    pub policy: uploads::UploadPolicy,
    /// `--client-upload-budget`: files sent upstream per endpoint token and UTC day.
    pub client_budget: Option<std::num::NonZeroU64>,
}

/// The default `--body-timeout`.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// Connections at once on `--admin-listen`.
const ADMIN_CONNECTIONS: usize = 32;

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
    Client(#[from] hashsweep_lookup::http::ClientError),
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
    if let Some(admin) = cfg.admin_listen
        && cfg.tls.is_none()
        && !admin.ip().is_loopback()
        && !cfg.insecure_http
    {
        return Err(GatewayError::PlainHttp(admin));
    }
    // Every connection is a file descriptor: use all the process may have.
    let nofile = match conn::raise_nofile_limit() {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!("cannot read or raise the open-file limit: {e}");
            1024
        }
    };
    let (listener, local) = bind(cfg.listen)?;
    let admin = cfg.admin_listen.map(bind).transpose()?;
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    // The blocking HTTP client owns a runtime of its own: build it outside ours.
    let upstream = Arc::new(coalesce::Upstream::new(cfg.upstream.client.clone())?);
    let files = match &cfg.uploads {
        Some(_) => Some(Arc::new(hashsweep_lookup::upload::UploadClient::new(
            &cfg.upstream.client,
        )?)),
        None => None,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .map_err(GatewayError::Runtime)?;
    let max_connections = match cfg.max_connections {
        None => conn::default_max_connections(nofile),
        Some(asked) => conn::explicit_max_connections(asked, nofile).unwrap_or_else(|allowed| {
            tracing::warn!(
                "--max-connections {asked} is more than the open-file limit {nofile} allows: \
                 at most {allowed} connections (raise LimitNOFILE=)"
            );
            allowed
        }),
    };
    let served = rt.block_on(run(
        cfg,
        upstream,
        files.clone(),
        (listener, local),
        admin,
        max_connections,
        ready,
    ));
    // The blocking client is dropped here, outside the runtime.
    drop(rt);
    drop(files);
    served
}

fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), GatewayError> {
    let listen_error = |source| GatewayError::Listen { addr, source };
    let listener = TcpListener::bind(addr).map_err(listen_error)?;
    let local = listener.local_addr().map_err(listen_error)?;
    listener.set_nonblocking(true).map_err(listen_error)?;
    Ok((listener, local))
}

/// Serve `app` on `listener` until `handle` stops it: HTTP/1.1 only, at most `max` connections,
/// each under `deadlines`, over TLS when `tls` is set.
async fn serve_on(
    listener: TcpListener,
    tls: Option<axum_server::tls_rustls::RustlsConfig>,
    app: axum::Router,
    handle: axum_server::Handle<SocketAddr>,
    max: usize,
    deadlines: conn::Deadlines,
) -> std::io::Result<()> {
    let make = conn::Permits::new(app.into_make_service_with_connect_info::<SocketAddr>(), max);
    let limits = conn::Limits { deadlines };
    match tls {
        Some(tls) => {
            axum_server::from_tcp_rustls(listener, tls)?
                .handle(handle)
                .http1_only()
                .map(|a| a.acceptor(limits))
                .serve(make)
                .await
        }
        None => {
            axum_server::from_tcp(listener)?
                .handle(handle)
                .http1_only()
                .acceptor(limits)
                .serve(make)
                .await
        }
    }
}

/// The TLS configuration from PEM files, offering only HTTP/1.1 in ALPN.
async fn tls_config(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<axum_server::tls_rustls::RustlsConfig, GatewayError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
        .await
        .map_err(GatewayError::Tls)?;
    let mut inner = (*tls.get_inner()).clone();
    inner.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(axum_server::tls_rustls::RustlsConfig::from_config(
        Arc::new(inner),
    ))
}

#[allow(clippy::too_many_arguments)]
async fn run(
    cfg: ServeConfig,
    upstream: Arc<coalesce::Upstream>,
    files: Option<Arc<hashsweep_lookup::upload::UploadClient>>,
    (listener, local): (TcpListener, SocketAddr),
    admin: Option<(TcpListener, SocketAddr)>,
    max_connections: usize,
    ready: impl FnOnce(&SocketAddr, &str),
) -> Result<(), GatewayError> {
    let store = Store::open(
        &cfg.store,
        cfg.ttls,
        cfg.upstream.claim_ttl,
        &upstream.endpoint(),
    )?;
    let store = match &cfg.store_key {
        Some(k) => store.signed(k.clone())?,
        None => store,
    };
    let store = match cfg.prevalence {
        Some(ttl) => store.with_prevalence(ttl)?,
        None => store,
    };
    let coalescer = coalesce::Coalescer::start(store.clone(), upstream, &cfg.upstream);
    let state = api::AppState::new(
        api::Policy {
            tokens: cfg.tokens.clone(),
            client_rate: cfg.client_rate,
            client_budget: cfg.client_budget,
            body_timeout: cfg.body_timeout,
        },
        store.clone(),
        Arc::clone(&coalescer),
        metrics_handle(),
    );
    let state = match (&cfg.uploads, files) {
        (Some(u), Some(files)) => state.with_uploads(
            Arc::new(uploads::Uploads::new(
                files,
                u.policy.clone(),
                store.clone(),
            )),
            u.client_budget,
        ),
        _ => state,
    };
    let state = Arc::new(state);
    let handle = axum_server::Handle::new();
    tokio::spawn(shutdown_on_signal(handle.clone(), cfg.shutdown_grace));
    tokio::spawn(store.clone().maintain_forever());
    if let Err(e) = store.ping().await {
        tracing::warn!(
            "the verdict store is not reachable yet (requests get 503 until it is): {e}"
        );
    }
    let scheme = if cfg.tls.is_some() { "https" } else { "http" };
    let admin_shown = admin.as_ref().map_or_else(
        || "; no admin listener (--admin-listen)".to_string(),
        |(_, a)| format!("; admin on {scheme}://{a}"),
    );
    let description = format!(
        "{scheme}://{local} (store {}, upstream {}, {} endpoint {}, at most {max_connections} connections{}){admin_shown}",
        store.describe(),
        cfg.upstream.client.api_url,
        cfg.tokens.len(),
        if cfg.tokens.len() == 1 {
            "token"
        } else {
            "tokens"
        },
        match &cfg.uploads {
            Some(u) if u.policy.accept_sharing => ", uploads of unknown files for the fleet",
            Some(_) => {
                ", uploads of unknown files for the fleet if the key enforces private scanning"
            }
            None => "",
        }
    );
    let tls = match &cfg.tls {
        Some((cert, key)) => Some(tls_config(cert, key).await?),
        None => None,
    };
    let public = serve_on(
        listener,
        tls.clone(),
        api::router(Arc::clone(&state)),
        handle.clone(),
        max_connections,
        cfg.deadlines,
    );
    let admin_served = async {
        match admin {
            Some((l, _)) => {
                serve_on(
                    l,
                    tls,
                    api::admin_router(Arc::clone(&state)),
                    handle.clone(),
                    ADMIN_CONNECTIONS,
                    cfg.deadlines,
                )
                .await
            }
            None => Ok(()),
        }
    };
    ready(&local, &description);
    let (served, admin_served) = tokio::join!(public, admin_served);
    let served = served.and(admin_served);
    // Connections are closed; lookups whose clients went away may still be running: their
    // answers are paid for, so store them before exiting.
    if !coalescer.drain(cfg.shutdown_grace).await {
        tracing::warn!("exiting with upstream lookups still in flight (--shutdown-grace)");
    }
    served.map_err(GatewayError::Runtime)
}

async fn shutdown_on_signal(handle: axum_server::Handle<SocketAddr>, grace: Duration) {
    stop_requested().await;
    tracing::info!(
        "shutting down: finishing requests in flight (up to {}s)",
        grace.as_secs()
    );
    handle.graceful_shutdown(Some(grace));
}

/// Resolves when the process is asked to stop: SIGTERM or SIGINT on Unix, Ctrl-C, Ctrl-Break
/// or a console close on Windows. Never resolves if the handlers cannot be installed.
#[cfg(unix)]
async fn stop_requested() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

#[cfg(windows)]
async fn stop_requested() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}
