//! `scan --upload-unknown`: the command line's side of `hashsweep::scan::upload` (options,
//! the file API's client, the messages).

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use hashsweep::Error;
use hashsweep::cache::Cache;
use hashsweep::lookup::HttpClient;
use hashsweep::lookup::upload::UploadClient;
use hashsweep::progress::Progress;
use hashsweep::scan::ScanOutput;
use hashsweep::scan::plan::BudgetOptions;
use hashsweep::scan::upload::{DEFAULT_KINDS, UploadOptions, UploadReport, Uploader, kind_name};

use super::warn;
use crate::cli::UploadArgs;

/// `HASHSWEEP_UPLOAD_POLL`: the first wait between polls of an upload's scan (2 s unless
/// set; tests make it short). The longest wait is five times it (10 s by default).
pub const POLL_ENV: &str = "HASHSWEEP_UPLOAD_POLL";

/// The options of `--upload-*`, with `--details`.
pub fn options(u: &UploadArgs, details: bool) -> Result<UploadOptions, Error> {
    let mut o = UploadOptions {
        accept_sharing: u.upload_accept_sharing,
        kinds: if u.upload_kind.is_empty() {
            DEFAULT_KINDS.to_vec()
        } else {
            let mut k: Vec<_> = u.upload_kind.iter().flatten().copied().collect();
            k.sort();
            k.dedup();
            k
        },
        max_size: u.upload_max_size,
        budget: u.upload_budget,
        exclude: u.upload_exclude.clone(),
        wait: u.upload_wait,
        details,
        ..UploadOptions::default()
    };
    if let Ok(v) = std::env::var(POLL_ENV) {
        let base = humantime::parse_duration(v.trim())
            .map_err(|e| Error::Usage(format!("{POLL_ENV}={v}: {e}")))?;
        o.poll_base = base.max(Duration::from_millis(1));
        o.poll_cap = o.poll_base * 5;
    }
    Ok(o)
}

/// Upload what the policy allows of `out`'s unknown files (`None` without
/// `--upload-unknown`, offline, or without a client).
#[allow(clippy::too_many_arguments)]
pub fn run(
    u: &UploadArgs,
    details: bool,
    out: &mut ScanOutput,
    client: Option<&Arc<HttpClient>>,
    cache: Option<&Cache>,
    ranking: &BudgetOptions,
    stop: &AtomicBool,
    progress: &dyn Progress,
) -> Result<Option<UploadReport>, Error> {
    let Some(client) = client.filter(|_| u.upload_unknown) else {
        return Ok(None);
    };
    let opts = options(u, details)?;
    let files = UploadClient::new(client.config())?;
    let uploader = Uploader {
        client: &files,
        cache,
        budget_scope: Some(format!("upload-{}", client.budget_scope())),
        opts: &opts,
        ranking,
        stop,
        progress,
    };
    let report = uploader.run(out)?;
    for m in &report.messages {
        warn(m);
    }
    Ok(Some(report))
}

/// `run.options` of a JSON report: the upload flags, only with `--upload-unknown`.
pub fn report_options(u: &UploadArgs, m: &mut serde_json::Map<String, serde_json::Value>) {
    if !u.upload_unknown {
        return;
    }
    m.insert("upload-unknown".into(), true.into());
    m.insert(
        "upload-accept-sharing".into(),
        u.upload_accept_sharing.into(),
    );
    let kinds: Vec<String> = u
        .upload_kind
        .iter()
        .flatten()
        .map(|k| kind_name(*k).to_string())
        .collect();
    m.insert("upload-kind".into(), kinds.into());
    m.insert("upload-max-size".into(), u.upload_max_size.into());
    m.insert("upload-budget".into(), u.upload_budget.into());
    m.insert("upload-exclude".into(), u.upload_exclude.clone().into());
    m.insert(
        "upload-wait".into(),
        humantime::format_duration(u.upload_wait).to_string().into(),
    );
}
