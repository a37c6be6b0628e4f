//! `hashsweep serve`: run the fleet lookup gateway until SIGTERM/SIGINT.

use super::*;

/// `hashsweep serve`: run the fleet gateway until SIGTERM/SIGINT.
pub fn run_serve(a: ServeArgs) -> Result<u8, Error> {
    use hashsweep::gateway::{ServeConfig, Tokens, conn};
    let filter = tracing_subscriber::EnvFilter::try_new(&a.log)
        .map_err(|e| Error::Usage(format!("invalid --log '{}': {e}", a.log)))?;
    // Log lines go to stderr (the journal under systemd); never the keys or tokens. Colours
    // only on a terminal, by anstream's rules like the table's (NO_COLOR, CLICOLOR_FORCE,
    // TERM=dumb): a journal or a file gets plain text.
    let colour = anstream::AutoStream::choice(&io::stderr()) != anstream::ColorChoice::Never;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .with_ansi(colour)
        .with_target(false)
        .try_init();
    let tokens = Tokens::load(&a.tokens)?;
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
    let store_key = a
        .store_key_file
        .as_deref()
        .map(hashsweep::gateway::store::StoreKey::load)
        .transpose()
        .map_err(hashsweep::gateway::GatewayError::from)?;
    let key = load_key(a.upstream.apikey_file.as_deref(), false)?;
    let ca_cert = read_ca_cert(a.upstream.ca_cert.as_deref())?;
    let client = config::client_config(&a.upstream, a.batch.rate, key, ca_cert);
    if let Ok((_, Some(notice))) = hashsweep::lookup::http::join_endpoint(&client.api_url) {
        eprintln!("hashsweep serve: warning: {notice}");
    }
    let cfg = ServeConfig {
        listen: a.listen,
        tokens,
        store,
        ttls: config::ttls(&a.ttl),
        upstream: config::upstream_config(&a, client),
        client_rate: a.client_rate,
        insecure_http: a.upstream.insecure_http,
        tls: a.tls_cert.clone().zip(a.tls_key.clone()),
        shutdown_grace: a.shutdown_grace,
        max_connections: a.max_connections.map(|n| n as usize),
        deadlines: conn::Deadlines {
            first_request: a
                .first_request_timeout
                .unwrap_or(conn::DEADLINES.first_request),
            header: a.header_timeout.unwrap_or(conn::DEADLINES.header),
            idle: a.idle_timeout.unwrap_or(conn::DEADLINES.idle),
        },
        body_timeout: a.body_timeout.unwrap_or(hashsweep::gateway::BODY_TIMEOUT),
        admin_listen: a.admin_listen,
        store_key,
        client_budget: a.client_budget,
        prevalence: a.prevalence.then(|| {
            a.prevalence_ttl
                .unwrap_or(hashsweep::gateway::prevalence::DEFAULT_TTL)
        }),
        uploads: a.upload_unknown.then(|| hashsweep::gateway::UploadsConfig {
            policy: hashsweep::gateway::uploads::UploadPolicy {
                accept_sharing: a.upload_accept_sharing,
                max_size: a.upload_max_size,
                rule: "multiscan".into(),
            },
            client_budget: Some(a.client_upload_budget),
        }),
    };
    hashsweep::gateway::serve(cfg, |_, what| {
        eprintln!("hashsweep serve: listening on {what}");
    })?;
    eprintln!("hashsweep serve: stopped");
    Ok(0)
}
