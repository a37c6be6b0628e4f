//! CIRCL hashlookup's bulk API (`POST /bulk/sha1`, `POST /bulk/md5` with `{"hashes": [...]}`;
//! there is no SHA-256 bulk endpoint): a free third-party service that knows about NSRL and
//! distribution files. Its answer lists the records found, nothing for the rest, so records are
//! matched back to the digests asked by their `SHA-1` or `MD5` field.
//!
//! A record says "known to CIRCL"; with `KnownMalicious` it names sources that flag the file
//! (its `hashlookup:trust` score says nothing about that, and is not read). An outage or a
//! throttle is an error for the digests of that request and the ones not yet asked, never an
//! answer: a digest CIRCL did not answer is not known, and not clean.
//!
//! `scan --circl` asks it through `scan::circl`, before the MetaDefender budget.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;

use hashsweep_core::digest::{Algo, Digest};

/// The public service.
pub const DEFAULT_URL: &str = "https://hashlookup.circl.lu";
/// Digests per request: the server sets no limit, the proxy in front of it an unknown one.
pub const CHUNK: usize = 300;

/// Why some digests got no answer from CIRCL. Each names the request's URL.
#[derive(Debug, thiserror::Error)]
pub enum CirclError {
    #[error("cannot build the HTTP client for CIRCL hashlookup: {0}")]
    Build(String),
    #[error("CIRCL hashlookup {url}: {source}")]
    Transport { url: String, source: reqwest::Error },
    /// 429: CIRCL asks to slow down; nothing more is asked in this run.
    #[error("CIRCL hashlookup {url}: throttled (HTTP 429)")]
    Throttled { url: String },
    #[error("CIRCL hashlookup {url}: HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("CIRCL hashlookup {url}: unexpected answer: {reason}")]
    BadAnswer { url: String, reason: String },
}

/// What CIRCL knows about one file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CirclRecord {
    pub file_name: Option<String>,
    /// NSRL's product code (a number as a string in bulk answers, an object in single ones:
    /// its `ProductName` and `ProductVersion` then).
    pub product: Option<String>,
    /// Sources that flag the file as malicious (`KnownMalicious`).
    pub known_malicious: Option<String>,
}

impl CirclRecord {
    /// One line for reports: `CIRCL hashlookup: <FileName> (product <ProductCode>)`, and the
    /// sources that flag it.
    pub fn describe(&self) -> String {
        let mut s = String::from("CIRCL hashlookup");
        if let Some(n) = &self.file_name {
            s.push_str(&format!(": {n}"));
        }
        if let Some(p) = &self.product {
            s.push_str(&format!(" (product {p})"));
        }
        if let Some(m) = &self.known_malicious {
            s.push_str(&format!("; KnownMalicious: {m}"));
        }
        s
    }

    fn from_json(v: &Value) -> CirclRecord {
        let text = |k: &str| match v.get(k) {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        let product = match v.get("ProductCode") {
            Some(Value::Object(o)) => {
                let s = |k: &str| o.get(k).and_then(Value::as_str).unwrap_or("");
                let p = format!("{} {}", s("ProductName"), s("ProductVersion"));
                Some(p.trim().to_string()).filter(|p| !p.is_empty())
            }
            _ => text("ProductCode"),
        };
        CirclRecord {
            file_name: text("FileName"),
            product,
            known_malicious: text("KnownMalicious"),
        }
    }
}

/// What one [`CirclClient::lookup`] learned.
#[derive(Debug, Default)]
pub struct CirclAnswers {
    /// The digests CIRCL knows (SHA-1 or MD5, as asked).
    pub found: HashMap<Digest, CirclRecord>,
    /// Digests asked and not found: not known to CIRCL (which says nothing of their safety).
    pub not_found: Vec<Digest>,
    /// Digests that got no answer (an outage, a throttle), and why.
    pub failed: Vec<Digest>,
    pub error: Option<CirclError>,
    pub requests: u64,
}

/// What `--circl` did in a run, for the summary (JSON, ECS, HTML and stderr).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct CirclCounts {
    /// Digests sent to CIRCL in this run.
    pub asked: u64,
    pub requests: u64,
    /// Digests answered by CIRCL's answers of earlier runs (the cache), not asked again.
    pub cached: u64,
    /// Of the digests answered (asked or cached): the ones CIRCL knows (`known` + `flagged`).
    pub found: u64,
    /// Found and flagged by none of its sources: `known_good`, no lookup spent.
    pub known: u64,
    /// Found and flagged by its sources (`KnownMalicious`): asked of the service first.
    pub flagged: u64,
    /// Answered "not known to CIRCL" (which says nothing of their safety).
    pub not_found: u64,
    /// Digests CIRCL did not answer (an outage, a throttle): they went to the service as if
    /// `--circl` were not given.
    pub unanswered: u64,
    /// Why CIRCL stopped answering, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The bulk client: one User-Agent, a timeout, no redirects.
pub struct CirclClient {
    http: reqwest::blocking::Client,
    base: String,
}

impl std::fmt::Debug for CirclClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CirclClient")
            .field("base", &self.base)
            .finish()
    }
}

impl CirclClient {
    pub fn new(base: &str, timeout: Duration) -> Result<CirclClient, CirclError> {
        let http = reqwest::blocking::Client::builder()
            .user_agent(concat!("hashsweep/", env!("CARGO_PKG_VERSION")))
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| CirclError::Build(e.to_string()))?;
        Ok(CirclClient {
            http,
            base: base.trim_end_matches('/').to_string(),
        })
    }

    /// The service's URL (no trailing `/`): whose answers the cache keeps them as.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Ask about `digests` (SHA-1 and MD5 ones; others are not asked: CIRCL has no SHA-256
    /// bulk endpoint), [`CHUNK`] at a time. The first failure stops the rest: they are
    /// `failed`, with the error.
    pub fn lookup(&self, digests: &[Digest]) -> CirclAnswers {
        let mut a = CirclAnswers::default();
        for algo in [Algo::Sha1, Algo::Md5] {
            let mine: Vec<Digest> = digests
                .iter()
                .copied()
                .filter(|d| d.algo() == algo)
                .collect();
            for chunk in mine.chunks(CHUNK) {
                if a.error.is_some() {
                    a.failed.extend_from_slice(chunk);
                    continue;
                }
                a.requests += 1;
                match self.bulk(algo, chunk) {
                    Ok(found) => {
                        for d in chunk {
                            match found.get(d) {
                                Some(r) => {
                                    a.found.insert(*d, r.clone());
                                }
                                None => a.not_found.push(*d),
                            }
                        }
                    }
                    Err(e) => {
                        a.failed.extend_from_slice(chunk);
                        a.error = Some(e);
                    }
                }
            }
        }
        a
    }

    /// One bulk request; the records matched back to the digests asked by their own field.
    fn bulk(
        &self,
        algo: Algo,
        chunk: &[Digest],
    ) -> Result<HashMap<Digest, CirclRecord>, CirclError> {
        let url = format!("{}/bulk/{}", self.base, algo.name());
        let body = serde_json::json!({
            "hashes": chunk.iter().map(Digest::to_hex_upper).collect::<Vec<_>>()
        });
        let resp = self
            .http
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .send()
            .map_err(|source| CirclError::Transport {
                url: url.clone(),
                source,
            })?;
        let status = resp.status().as_u16();
        if status == 429 {
            return Err(CirclError::Throttled { url });
        }
        if status != 200 {
            return Err(CirclError::Status { url, status });
        }
        let text = resp.text().map_err(|source| CirclError::Transport {
            url: url.clone(),
            source,
        })?;
        parse_bulk(algo, &text).map_err(|reason| CirclError::BadAnswer { url, reason })
    }
}

/// A bulk answer: a JSON array of found records, each matched by its `SHA-1` (or `MD5`)
/// field. A record without that field, or with a value that is not such a digest, is an
/// error (the answer cannot be trusted to say which file it is about).
pub fn parse_bulk(algo: Algo, text: &str) -> Result<HashMap<Digest, CirclRecord>, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let list = v
        .as_array()
        .ok_or_else(|| "not a JSON array of records".to_string())?;
    let key = match algo {
        Algo::Sha1 => "SHA-1",
        Algo::Md5 => "MD5",
        Algo::Sha256 => "SHA-256",
    };
    let mut out = HashMap::new();
    for (i, r) in list.iter().enumerate() {
        let d = r
            .get(key)
            .and_then(Value::as_str)
            .and_then(Digest::from_hex)
            .filter(|d| d.algo() == algo)
            .ok_or_else(|| format!("record {i} has no valid {key}"))?;
        out.insert(d, CirclRecord::from_json(r));
    }
    Ok(out)
}
