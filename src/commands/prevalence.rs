//! `hashsweep prevalence --api-url ADMIN_URL HASH...`: on how many hosts each hash is, and
//! which, from a gateway's admin listener (`serve --prevalence`).

use hashsweep::digest::Digest;
use hashsweep::gateway::prevalence;

use super::*;
use crate::cli::{PrevalenceArgs, PrevalenceFormat};

/// `hashsweep prevalence`
pub fn run_prevalence(a: PrevalenceArgs) -> Result<u8, Error> {
    let digests = a
        .hashes
        .iter()
        .map(|h| {
            Digest::from_hex(h.trim())
                .ok_or_else(|| Error::Usage(format!("not a SHA-256, SHA-1 or MD5 hash: {h}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let found = prevalence::ask(&a.api_url, &digests)?;
    let mut out = io::stdout().lock();
    match a.format {
        PrevalenceFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &found)
                .map_err(|e| Error::Internal(e.to_string()))?;
            writeln!(out)?;
        }
        PrevalenceFormat::Table => {
            let width = found.iter().map(|p| p.hash.len()).max().unwrap_or(4);
            writeln!(out, "{:<width$}  {:>6}  NAMES", "HASH", "HOSTS")?;
            for p in &found {
                let names = match &p.names {
                    Some(n) if n.is_empty() => "-".to_string(),
                    Some(n) => n.join(","),
                    None => format!("(more than {})", prevalence::NAMES),
                };
                writeln!(out, "{:<width$}  {:>6}  {names}", p.hash, p.hosts)?;
            }
        }
    }
    Ok(0)
}
