//! The stand-in for MetaDefender's file API, from the vendor's pages
//! (`shared/reference/metadefender-file-upload.md`):
//!
//! - `POST /v4/file`: the raw bytes (`application/octet-stream`) with the headers `apikey`,
//!   `filename` (URL-encoded), `rule`, `samplesharing`, `privateprocessing`; answered with a
//!   `data_id` (`status: inqueue`). Each upload spends one unit of the key's *prevention*
//!   budget (its own daily window, `x-ratelimit-for: prevention_api`); none left: 429 with
//!   code 429000. A key without upload rights gets 403 (403003); a body over the enforced
//!   size, 413.
//! - `GET /v4/file/{data_id}`: queued (`scan_results.progress_percentage` below 100,
//!   `scan_all_result_i` 255) for the first polls, then the final answer with `scan_results`
//!   (`scan_all_result_i`, `total_detected_avs`, `total_avs`, `progress_percentage: 100`,
//!   `scan_details`) and `file_info`. Once finished, the hash endpoint knows the file too (the
//!   vendor keeps hashed results). An unknown `data_id`: 404.
//! - `GET /v4/apikey`: `limit_prevention`, `limit_reputation`, `max_upload_file_size` (MB),
//!   `enforce_private_scan`, `paid_user`.
//!
//! Faults: scripted answers for the next uploads ([`crate::MockServer::push_upload_fault`]),
//! a file whose scan never finishes ([`crate::MockServer::never_finish`]).

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Instant;

use serde_json::json;
use sha2::Digest as _;

use crate::request::error_body;
use crate::{DAY, Fault, FaultKind, MockEntry, throttle_body};

/// What the key allows on the file API, as `GET /v4/apikey` says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadSettings {
    /// Uploads a day (`limit_prevention`).
    pub limit_prevention: u64,
    /// `max_upload_file_size`, in MB (what the key information says).
    pub max_upload_file_size_mb: u64,
    /// `enforce_private_scan`: the key scans privately whatever the request says.
    pub enforce_private_scan: bool,
    /// `paid_user`.
    pub paid_user: bool,
    /// Whether the key may upload at all (without: 403 with code 403003).
    pub upload_rights: bool,
    /// Polls of a `data_id` answered "in queue" before the final answer.
    pub polls_to_finish: u32,
    /// Bodies longer than this get 413, whatever the key information says (to show a
    /// service refusing a file its client thought small enough).
    pub enforce_bytes: Option<u64>,
}

impl Default for UploadSettings {
    fn default() -> UploadSettings {
        UploadSettings {
            limit_prevention: 100,
            max_upload_file_size_mb: 140,
            enforce_private_scan: false,
            paid_user: false,
            upload_rights: true,
            polls_to_finish: 2,
            enforce_bytes: None,
        }
    }
}

/// One upload as the mock saw it.
#[derive(Debug, Clone)]
pub struct SeenUpload {
    pub status: u16,
    /// The `filename` header as sent (URL-encoded).
    pub filename: Option<String>,
    pub rule: Option<String>,
    pub samplesharing: Option<String>,
    pub privateprocessing: Option<String>,
    pub content_type: Option<String>,
    /// Bytes received, and their SHA-256 (lower-case hex).
    pub size: usize,
    pub sha256: String,
    /// Every header line but `apikey`, for secrecy checks.
    pub other_headers: Vec<String>,
}

struct Scan {
    sha256: String,
    size: usize,
    polls: u32,
}

#[derive(Default)]
pub(crate) struct Uploads {
    pub(crate) settings: UploadSettings,
    used: u64,
    started: Option<Instant>,
    scans: HashMap<String, Scan>,
    next_id: u64,
    pub(crate) faults: VecDeque<Fault>,
    /// SHA-256 (upper case) of files whose scan never finishes.
    pub(crate) never_finish: HashSet<String>,
    /// What a scan of a file finds, by SHA-256 (upper case); others are clean, EICAR infected.
    pub(crate) results: HashMap<String, MockEntry>,
    pub(crate) seen: Vec<SeenUpload>,
    pub(crate) polls: u64,
}

impl Uploads {
    fn roll(&mut self) -> Instant {
        let started = *self.started.get_or_insert_with(Instant::now);
        if started.elapsed() >= DAY {
            self.started = Some(Instant::now());
            self.used = 0;
        }
        self.started.unwrap_or(started)
    }

    pub(crate) fn remaining(&mut self) -> u64 {
        self.roll();
        self.settings.limit_prevention.saturating_sub(self.used)
    }

    /// The prevention API's rate-limit headers.
    pub(crate) fn headers(&mut self) -> Vec<(String, String)> {
        let started = self.roll();
        let reset_in = DAY.saturating_sub(started.elapsed()).as_secs().max(1);
        let remaining = self.remaining();
        [
            ("x-ratelimit-for", "prevention_api".to_string()),
            (
                "x-ratelimit-limit",
                self.settings.limit_prevention.to_string(),
            ),
            (
                "x-ratelimit-used",
                self.used.min(self.settings.limit_prevention).to_string(),
            ),
            ("x-ratelimit-remaining", remaining.to_string()),
            ("x-ratelimit-reset-in", format!("{reset_in}s")),
            ("x-ratelimit-interval", DAY.as_secs().to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// `GET /v4/apikey`.
    pub(crate) fn apikey(&self) -> (u16, String) {
        let s = &self.settings;
        (
            200,
            json!({
                "limit_prevention": s.limit_prevention,
                "limit_reputation": crate::DEFAULT_DAILY_BUDGET,
                "limit_sandbox": 0,
                "max_upload_file_size": s.max_upload_file_size_mb,
                "max_archive_file_size": s.max_upload_file_size_mb,
                "enforce_private_scan": u8::from(s.enforce_private_scan),
                "paid_user": u8::from(s.paid_user),
                "time_interval": "daily",
                "throttling_limit": 9,
            })
            .to_string(),
        )
    }

    /// `POST /v4/file`. `fault`: a scripted answer instead.
    pub(crate) fn upload(
        &mut self,
        headers: &[(String, String)],
        body: &[u8],
        fault: Option<Fault>,
    ) -> (u16, String) {
        let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        let sha256 = hex(&sha2::Sha256::digest(body));
        let (status, text) = match fault.map(|f| f.kind) {
            Some(FaultKind::Answer { status, body }) => (status, body),
            _ if !self.settings.upload_rights => (
                403,
                error_body(
                    403003,
                    "Access denied: the apikey lacks the privilege to upload",
                ),
            ),
            _ if self
                .settings
                .enforce_bytes
                .is_some_and(|max| body.len() as u64 > max) =>
            {
                (413, error_body(413000, "Request entity too large"))
            }
            _ if self.remaining() == 0 => (
                429,
                throttle_body(
                    429000,
                    "API key limit exceeded: the daily prevention limit is reached",
                ),
            ),
            _ => {
                self.used += 1;
                self.next_id += 1;
                let data_id = format!("mockdata{:06}{}", self.next_id, &sha256[..8]);
                self.scans.insert(
                    data_id.clone(),
                    Scan {
                        sha256: sha256.clone(),
                        size: body.len(),
                        polls: 0,
                    },
                );
                (
                    200,
                    json!({"data_id": data_id, "status": "inqueue", "in_queue": 1,
                           "queue_priority": "normal", "sha256": sha256.to_ascii_uppercase(),
                           "rest_version": "4"})
                    .to_string(),
                )
            }
        };
        self.seen.push(SeenUpload {
            status,
            filename: get("filename"),
            rule: get("rule"),
            samplesharing: get("samplesharing"),
            privateprocessing: get("privateprocessing"),
            content_type: get("content-type"),
            size: body.len(),
            sha256,
            other_headers: headers
                .iter()
                .filter(|(k, _)| k != "apikey")
                .map(|(k, v)| format!("{k}: {v}"))
                .collect(),
        });
        (status, text)
    }

    /// `GET /v4/file/{data_id}`; a finished scan is taught to the hash endpoint's `entries`.
    pub(crate) fn poll(
        &mut self,
        data_id: &str,
        entries: &mut HashMap<String, MockEntry>,
    ) -> (u16, String) {
        self.polls += 1;
        let to_finish = self.settings.polls_to_finish;
        let Some(scan) = self.scans.get_mut(data_id) else {
            return (404, error_body(404003, "The data_id was not found"));
        };
        scan.polls += 1;
        let up = scan.sha256.to_ascii_uppercase();
        if scan.polls <= to_finish || self.never_finish.contains(&up) {
            let progress = if self.never_finish.contains(&up) {
                50
            } else {
                (scan.polls * 100 / (to_finish + 1)).min(99)
            };
            return (
                200,
                json!({"data_id": data_id, "status": "inqueue", "in_queue": 1,
                       "last_updated": "2026-12-01T00:00:00Z",
                       "scan_results": {"scan_all_result_i": 255, "progress_percentage": progress,
                                        "scan_all_result_a": "In Progress"}})
                .to_string(),
            );
        }
        let entry = self.results.get(&up).cloned().unwrap_or_else(|| {
            if up == crate::EICAR_SHA256.to_ascii_uppercase() {
                MockEntry {
                    scan_result_i: 1,
                    total_detected_avs: 31,
                    threat: "EICAR-Test-File".into(),
                }
            } else {
                MockEntry {
                    scan_result_i: 0,
                    total_detected_avs: 0,
                    threat: String::new(),
                }
            }
        });
        entries.insert(up.clone(), entry.clone());
        let detected = entry.total_detected_avs.max(0);
        (
            200,
            json!({
                "data_id": data_id,
                "file_id": format!("file-{}", &scan.sha256[..12]),
                "share_file": 0,
                "private_processing": 0,
                "file_info": {"sha256": up, "file_size": scan.size,
                              "upload_timestamp": "2026-12-01T00:00:00.000Z"},
                "process_info": {"progress_percentage": 100,
                                 "result": if detected > 0 { "Blocked" } else { "Allowed" },
                                 "profile": "multiscan"},
                "scan_results": {
                    "scan_all_result_i": entry.scan_result_i,
                    "scan_all_result_a": if detected > 0 { "Infected" } else { "No Threat Detected" },
                    "total_avs": 2,
                    "total_detected_avs": detected,
                    "progress_percentage": 100,
                    "scan_details": {
                        "MockAV": {"threat_found": entry.threat, "scan_result_i": entry.scan_result_i,
                                   "def_time": "2026-11-01T00:00:00.000Z", "scan_time": 3},
                        "OtherAV": {"threat_found": "", "scan_result_i": 0,
                                    "def_time": "2026-11-02T00:00:00.000Z", "scan_time": 1}
                    }
                }
            })
            .to_string(),
        )
    }
}

pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The `data_id` of a `GET /v4/file/{data_id}` path.
pub(crate) fn data_id(path: &str) -> Option<&str> {
    path.strip_prefix("/v4/file/")
        .filter(|id| !id.is_empty() && !id.contains('/'))
}

/// Whether a JSON answer body is the final one (for the mock's own tests).
#[cfg(test)]
pub(crate) fn finished(body: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["scan_results"]["progress_percentage"].as_i64())
        == Some(100)
}
