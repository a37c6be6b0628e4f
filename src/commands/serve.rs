//! `hashsweep serve`: run the fleet lookup gateway until SIGTERM/SIGINT.

use super::*;

/// `hashsweep serve`: run the fleet gateway until SIGTERM/SIGINT.
pub fn run_serve(a: ServeArgs) -> Result<u8, Error> {
    use hashsweep::gateway::{ServeConfig, Tokens, UpstreamConfig};
    let filter = tracing_subscriber::EnvFilter::try_new(&a.log)
        .map_err(|e| Error::Usage(format!("invalid --log '{}': {e}", a.log)))?;
    // Log lines go to stderr (the journal under systemd); never the keys or tokens.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .with_target(false)
        .try_init();
    let tokens = Tokens::load(&a.tokens)?;
    let ttls = Ttls {
        clean: a.verdict_ttl,
        detection: a.detection_ttl,
        unknown: a.unknown_ttl,
        other: a.verdict_ttl,
    };
    let store = match &a.store {
        Some(s) => s.clone(),
        None => {
            let path = Cache::default_path().ok_or_else(|| {
                Error::Usage("no cache directory for the default store: use --store".into())
            })?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|source| Error::Output {
                    path: dir.to_path_buf(),
                    source,
                })?;
            }
            format!("sqlite:{}", path.display())
        }
    };
    let mut client = ClientConfig::new(a.api_url.clone(), load_key(a.apikey_file.as_deref())?);
    client.retries = a.retries;
    client.max_wait = a.max_wait;
    client.timeout = a.timeout;
    client.connect_timeout = a.connect_timeout;
    client.insecure_http = a.insecure_http;
    client.rate = a.rate;
    client.ca_cert = read_ca_cert(a.ca_cert.as_deref())?;
    let cfg = ServeConfig {
        listen: a.listen,
        tokens,
        store,
        ttls,
        upstream: UpstreamConfig {
            client,
            batch_size: usize::from(a.batch_size),
            batch_wait: a.batch_wait,
            concurrency: usize::from(a.concurrency),
            max_pending: a.max_pending,
            // Long enough for one whole lookup: every attempt, the backoffs and a 429 wait,
            // so a claim does not lapse while its lookup still runs.
            claim_ttl: a.timeout.saturating_mul(a.retries.saturating_add(1))
                + a.max_wait
                + std::time::Duration::from_secs(30),
        },
        client_rate: a.client_rate,
        insecure_http: a.insecure_http,
        tls: a.tls_cert.clone().zip(a.tls_key.clone()),
        shutdown_grace: a.shutdown_grace,
    };
    hashsweep::gateway::serve(cfg, |_, what| {
        eprintln!("hashsweep serve: listening on {what}");
    })?;
    eprintln!("hashsweep serve: stopped");
    Ok(0)
}
