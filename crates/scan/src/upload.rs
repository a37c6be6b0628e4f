//! `--upload-unknown`: files whose digest the service does not know (`scan_result_i` 5) are
//! uploaded to its multiscanning (`hashsweep_lookup::upload`), within their own budget, and the
//! final answer becomes the digest's answer: the record's verdict (`source: upload`), and the
//! cache's answer for the digest.
//!
//! The policy, in the order it is applied:
//! 1. Nothing leaves the host unless the run was given `--upload-accept-sharing` on the
//!    command line (it cannot be a config file setting), or the key enforces private scanning
//!    (`enforce_private_scan` in `GET /v4/apikey`, asked once a run).
//! 2. Only files whose digest came back unknown, in the lookups' order of risk (`Rank`), and
//!    of the kinds `--upload-kind` names (programs, scripts, macro documents by default).
//! 3. Never from a path matching `--upload-exclude` or the default list ([`DEFAULT_EXCLUDES`]:
//!    key stores, `.ssh`, browser profiles, password managers' databases).
//! 4. At most `--upload-max-size` bytes (default: the key's `max_upload_file_size`).
//! 5. At most `--upload-budget` files a run, within what the key's prevention budget has left
//!    (remembered in the cache like the hash budget).
//! 6. The file is read again, and sent only if its digest is unchanged.
//!
//! Behind a hashsweep gateway (its `GET /v4/apikey` says `hashsweep_gateway`), the consent in
//! step 1 is the gateway's, and each file that passes steps 2-5 is announced to it first: the
//! bytes are read again and sent (to the gateway) only if it asks for them; otherwise another
//! host's upload is polled, or the answer the gateway has is taken.
//!
//! A file still being scanned when `--upload-wait` runs out keeps its `data_id` in the cache;
//! the next run fetches the result without uploading it again. Every failure leaves the
//! record's verdict as the service gave it (`unknown`), with a note saying what happened.

use std::collections::HashMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use super::ScanOutput;
use super::hash::{FileStatus, Origin};
use super::plan::{BudgetOptions, Rank, Ranker};
use crate::progress::Progress;
use hashsweep_cache::{Cache, PendingUpload};
use hashsweep_core::digest::{Algo, Digest};
use hashsweep_core::file::FileKind;
use hashsweep_lookup::upload::{
    Intent, Poll, SendOptions, UploadClient, UploadError, poll_interval,
};
use hashsweep_lookup::{Answer, Budget, Verdict};
use hashsweep_report::Record;
pub use hashsweep_report::scanned::UploadCounts;

/// Paths never uploaded, whatever the flags say (matched case-insensitively on the whole path
/// as walked; `--upload-exclude` adds to them). Secrets and private data: SSH and GnuPG keys,
/// certificates' private keys and key stores, cloud and tool credentials, browser profiles
/// (cookies, saved passwords, history), mail profiles, password managers' databases, the
/// system's password hashes and OS credential stores.
pub const DEFAULT_EXCLUDES: &[&str] = &[
    // SSH, GnuPG, private keys and key stores
    "**/.ssh/**",
    "**/.gnupg/**",
    "**/id_rsa*",
    "**/id_dsa*",
    "**/id_ecdsa*",
    "**/id_ed25519*",
    "**/*.pem",
    "**/*.key",
    "**/*.p12",
    "**/*.pfx",
    "**/*.jks",
    "**/*.keystore",
    "**/*.ppk",
    "/etc/ssl/private/**",
    "/etc/shadow*",
    "/etc/gshadow*",
    // credentials of tools and clouds
    "**/.aws/**",
    "**/.azure/**",
    "**/.config/gcloud/**",
    "**/.kube/**",
    "**/.docker/config.json",
    "**/.netrc",
    "**/.git-credentials",
    "**/.pgpass",
    // browser and mail profiles
    "**/.mozilla/**",
    "**/.thunderbird/**",
    "**/.config/google-chrome/**",
    "**/.config/chromium/**",
    "**/.config/BraveSoftware/**",
    "**/.config/microsoft-edge/**",
    "**/Library/Application Support/Google/Chrome/**",
    "**/Library/Application Support/Firefox/**",
    "**/Library/Safari/**",
    "**/AppData/Local/Google/Chrome/User Data/**",
    "**/AppData/Local/Microsoft/Edge/User Data/**",
    "**/AppData/Local/BraveSoftware/**",
    "**/AppData/Roaming/Mozilla/**",
    "**/AppData/Roaming/Thunderbird/**",
    // password managers and OS credential stores
    "**/*.kdbx",
    "**/*.kdb",
    "**/*.psafe3",
    "**/*.1pif",
    "**/*.1pux",
    "**/*.opvault/**",
    "**/*.agilekeychain/**",
    "**/.password-store/**",
    "**/.local/share/keyrings/**",
    "**/Library/Keychains/**",
    "**/*.keychain",
    "**/*.keychain-db",
    "**/AppData/Roaming/Microsoft/Credentials/**",
    "**/AppData/Local/Microsoft/Credentials/**",
    "**/AppData/Roaming/Microsoft/Protect/**",
    "**/AppData/Roaming/Bitwarden/**",
    "**/AppData/Roaming/KeePass/**",
];

/// The kinds uploaded unless `--upload-kind` says otherwise.
pub const DEFAULT_KINDS: &[FileKind] =
    &[FileKind::Executable, FileKind::Script, FileKind::Document];

/// A pending upload older than this is given up (the service never finished it).
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(24 * 3600);

/// Polls of one `data_id` that fail in a row before this run stops polling it (its `data_id`
/// stays in the cache for the next run).
const POLL_FAILURES: u32 = 5;

/// `--upload-*`, resolved.
#[derive(Debug, Clone)]
pub struct UploadOptions {
    /// `--upload-accept-sharing`: the user accepts that the files are shared with the vendor
    /// and, unless the key scans privately, with its partners.
    pub accept_sharing: bool,
    /// `--upload-kind`.
    pub kinds: Vec<FileKind>,
    /// `--upload-max-size`; `None`: the key's `max_upload_file_size`.
    pub max_size: Option<u64>,
    /// `--upload-budget`: files uploaded at most in this run.
    pub budget: u64,
    /// `--upload-exclude`, added to [`DEFAULT_EXCLUDES`].
    pub exclude: Vec<String>,
    /// `--upload-wait`: how long the run waits for the scans.
    pub wait: Duration,
    /// The first wait between polls, and the longest (2 s and 10 s; `HASHSWEEP_UPLOAD_POLL`
    /// scales them for tests).
    pub poll_base: Duration,
    pub poll_cap: Duration,
    /// `--details`: keep the engines' results.
    pub details: bool,
    /// The `rule` header.
    pub rule: String,
}

impl Default for UploadOptions {
    fn default() -> UploadOptions {
        UploadOptions {
            accept_sharing: false,
            kinds: DEFAULT_KINDS.to_vec(),
            max_size: None,
            budget: 5,
            exclude: Vec::new(),
            wait: Duration::from_secs(300),
            poll_base: Duration::from_secs(2),
            poll_cap: Duration::from_secs(10),
            details: false,
            rule: "multiscan".into(),
        }
    }
}

/// What became of one digest.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Mark {
    /// The final answer came from an upload: `source: upload`.
    Answered,
    /// Still unknown, with why (the record's note).
    Note(String),
}

/// What `--upload-unknown` did, for the records and the summary.
#[derive(Debug, Default)]
pub struct UploadReport {
    marks: HashMap<Digest, Mark>,
    pub counts: UploadCounts,
    /// Said once on stderr (the policy refused, the key information failed).
    pub messages: Vec<String>,
}

impl UploadReport {
    /// Add what the upload did to a record: `source: upload` for an answer it gave, the note
    /// for one it could not give (unless the record has a note already).
    pub fn amend<'a>(&'a self, r: &mut Record<'a>, d: Option<Digest>) {
        match d.and_then(|d| self.marks.get(&d)) {
            Some(Mark::Answered) if r.answer.is_some() => r.source = r.source.or(Some("upload")),
            Some(Mark::Note(n)) if r.note.is_none() && r.verdict == Verdict::Unknown => {
                r.note = Some(n)
            }
            _ => {}
        }
    }

    fn note(&mut self, d: Digest, text: impl Into<String>) {
        self.marks.insert(d, Mark::Note(text.into()));
    }
}

/// One unknown digest and the paths that hold it.
struct Candidate {
    digest: Digest,
    rank: Rank,
    kind: FileKind,
    size: u64,
    /// Paths on disk that hold it, in path order.
    paths: Vec<PathBuf>,
}

/// A scan being waited for.
struct Waiting {
    digest: Digest,
    data_id: String,
    uploaded_at: i64,
    next: Instant,
    attempt: u32,
    failures: u32,
}

/// Where uploads stand: the client, the cache, and what the run may still send.
pub struct Uploader<'a> {
    pub client: &'a UploadClient,
    pub cache: Option<&'a Cache>,
    /// Names the key's prevention budget in the cache (never the key itself).
    pub budget_scope: Option<String>,
    pub opts: &'a UploadOptions,
    pub ranking: &'a BudgetOptions,
    pub stop: &'a AtomicBool,
    pub progress: &'a dyn Progress,
}

impl Uploader<'_> {
    /// Upload what the policy allows of `out`'s unknown files, wait for the answers, and put
    /// them in `out` (and the cache).
    pub fn run(&self, out: &mut ScanOutput) -> Result<UploadReport, crate::ScanError> {
        let mut report = UploadReport::default();
        let Some(algo) = out.lookup_algo else {
            return Ok(report);
        };
        let excludes = exclude_set(&self.opts.exclude)
            .map_err(|e| crate::ScanError::Usage(format!("invalid --upload-exclude: {e}")))?;
        let ranker = Ranker::new(self.ranking)
            .map_err(|e| crate::ScanError::Usage(format!("invalid --priority-path: {e}")))?;
        let mut candidates = candidates(out, algo, &ranker);
        report.counts.unknown = candidates.len() as u64;
        if candidates.is_empty() {
            return Ok(report);
        }
        candidates.sort_by_key(|c| (c.rank, c.digest));

        // Earlier runs' uploads still being scanned: fetched, not uploaded again.
        let mut waiting = Vec::new();
        let now = hashsweep_lookup::upload::unix_now();
        candidates.retain(|c| {
            let Some(p) = self
                .cache
                .and_then(|cache| cache.get_pending_upload(&c.digest).ok().flatten())
            else {
                return true;
            };
            if now.saturating_sub(p.uploaded_at) > GIVE_UP_AFTER.as_secs() as i64 {
                if let Some(cache) = self.cache {
                    let _ = cache.drop_pending_upload(&c.digest);
                }
                report.counts.failed += 1;
                report.note(
                    c.digest,
                    format!(
                        "upload: the service had not finished scanning data_id {} a day after \
                         the upload; given up (a later run may upload the file again)",
                        p.data_id
                    ),
                );
                return false;
            }
            waiting.push(Waiting {
                digest: c.digest,
                data_id: p.data_id,
                uploaded_at: p.uploaded_at,
                next: Instant::now(),
                attempt: 0,
                failures: 0,
            });
            false
        });
        let fetched: Vec<Digest> = waiting.iter().map(|w| w.digest).collect();

        if !candidates.is_empty() {
            let known = self.upload(&candidates, algo, &excludes, &mut waiting, &mut report);
            for (d, mut answer) in known {
                if !self.opts.details {
                    answer.details = None;
                }
                self.answered(out, d, answer, false, &mut report);
            }
        }
        self.wait(waiting, out, &fetched, &mut report);
        Ok(report)
    }

    /// Apply the policy to `candidates` (most important first) and upload what it allows.
    /// Behind a gateway, each file is announced first and sent only if the gateway asks for
    /// it; the answers it already knows are returned.
    fn upload(
        &self,
        candidates: &[Candidate],
        algo: Algo,
        excludes: &GlobSet,
        waiting: &mut Vec<Waiting>,
        report: &mut UploadReport,
    ) -> Vec<(Digest, Answer)> {
        let mut known = Vec::new();
        let info = match self.client.key_info() {
            Ok(i) => i,
            Err(e) => {
                let why = format!("upload: not uploaded: {e}");
                report
                    .messages
                    .push(format!("--upload-unknown: nothing uploaded: {e}"));
                for c in candidates {
                    report.note(c.digest, why.clone());
                    report.counts.failed += 1;
                }
                return known;
            }
        };
        if info.gateway && !info.gateway_uploads {
            // Behind a gateway the consent is its operator's (serve --upload-accept-sharing).
            report.messages.push(format!(
                "--upload-unknown: {} unknown files not uploaded: the gateway does not upload \
                 files (its operator starts it with serve --upload-unknown, and either \
                 --upload-accept-sharing or a key that enforces private scanning)",
                candidates.len()
            ));
            for c in candidates {
                report.note(
                    c.digest,
                    "upload: not uploaded: the gateway does not upload files \
                     (serve --upload-unknown, with --upload-accept-sharing or a private key)",
                );
                report.counts.not_accepted += 1;
            }
            return known;
        }
        if !(info.gateway || self.opts.accept_sharing || info.enforce_private_scan) {
            report.messages.push(format!(
                "--upload-unknown: {} unknown files not uploaded: uploading a file shares it \
                 with the vendor and its partners, and this key does not enforce private \
                 scanning; give --upload-accept-sharing on the command line to allow it",
                candidates.len()
            ));
            for c in candidates {
                report.note(
                    c.digest,
                    "upload: not uploaded: sharing with the vendor not accepted \
                     (--upload-accept-sharing)",
                );
                report.counts.not_accepted += 1;
            }
            return known;
        }
        let (max_size, size_from) = match (self.opts.max_size, info.max_upload_bytes) {
            (Some(m), _) => (Some(m), "--upload-max-size"),
            (None, Some(m)) => (Some(m), "the key's max_upload_file_size"),
            (None, None) => (None, ""),
        };
        // What the key's prevention budget has left: what the last answer (of this run or,
        // remembered, of an earlier one) said, else the key's daily limit.
        let remembered = match (self.cache, &self.budget_scope) {
            (Some(c), Some(scope)) => c
                .get_budget(scope, hashsweep_core::clock::now())
                .ok()
                .flatten(),
            _ => None,
        };
        let key_left = self
            .client
            .budget()
            .or(remembered)
            .map(|b| b.remaining)
            .or(info.limit_prevention)
            .unwrap_or(u64::MAX);
        let allowed = self.opts.budget.min(key_left);
        let budget_why = if self.opts.budget <= key_left {
            format!("--upload-budget {}", self.opts.budget)
        } else {
            format!("the key's upload budget ({key_left} left today)")
        };
        let send = SendOptions {
            rule: self.opts.rule.clone(),
            private: info.paid_user || info.enforce_private_scan,
        };
        let mut sent = 0u64;
        let mut stopped: Option<UploadError> = None;
        for c in candidates {
            if self.stop.load(Ordering::Relaxed) {
                report.note(c.digest, "upload: not uploaded: the run was interrupted");
                continue;
            }
            if !self.opts.kinds.contains(&c.kind) {
                report.counts.other_kind += 1;
                report.note(
                    c.digest,
                    format!(
                        "upload: not uploaded: a file of kind {} (--upload-kind)",
                        kind_name(c.kind)
                    ),
                );
                continue;
            }
            let Some(path) = c.paths.iter().find(|p| !excludes.is_match(p)) else {
                report.counts.excluded += 1;
                report.note(
                    c.digest,
                    "upload: not uploaded: its path is excluded (--upload-exclude, or the \
                     default list of key stores, browser profiles and password databases)",
                );
                continue;
            };
            if let Some(max) = max_size
                && c.size > max
            {
                report.counts.too_big += 1;
                report.note(
                    c.digest,
                    format!(
                        "upload: not uploaded: {} bytes is over {size_from} ({})",
                        c.size,
                        super::sizes::flag_size(max)
                    ),
                );
                continue;
            }
            if let Some(e) = &stopped {
                report.counts.failed += 1;
                report.note(c.digest, format!("upload: not uploaded: {e}"));
                continue;
            }
            if sent >= allowed {
                report.counts.over_budget += 1;
                report.note(
                    c.digest,
                    format!(
                        "upload: not uploaded in this run: {budget_why} went to files that \
                         matter more"
                    ),
                );
                continue;
            }
            if info.gateway {
                match self.client.intent(&c.digest, c.size) {
                    Ok(Intent::Send) => {}
                    Ok(Intent::Wait(data_id)) => {
                        // Another host's upload: polled, not sent again.
                        let uploaded_at = hashsweep_lookup::upload::unix_now();
                        self.remember(c.digest, &data_id, uploaded_at);
                        waiting.push(Waiting {
                            digest: c.digest,
                            data_id,
                            uploaded_at,
                            next: Instant::now(),
                            attempt: 0,
                            failures: 0,
                        });
                        continue;
                    }
                    Ok(Intent::Answered(a)) => {
                        known.push((c.digest, a));
                        continue;
                    }
                    Err(e) => {
                        self.failed(c.digest, e, &mut stopped, report);
                        continue;
                    }
                }
            }
            let bytes = match read_again(path, c.size, c.digest, algo) {
                Ok(b) => b,
                Err(ReadAgain::Changed) => {
                    report.counts.changed += 1;
                    report.note(
                        c.digest,
                        "upload: not uploaded: the file changed since it was hashed",
                    );
                    continue;
                }
                Err(ReadAgain::Io(e)) => {
                    report.counts.failed += 1;
                    report.note(
                        c.digest,
                        format!(
                            "upload: not uploaded: cannot read the file again: {}",
                            hashsweep_core::platform::describe_io(&e)
                        ),
                    );
                    continue;
                }
            };
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "file".into());
            sent += 1;
            let announced = info.gateway.then_some(&c.digest);
            match self.client.upload_as(&name, bytes, &send, announced) {
                Ok(data_id) => {
                    report.counts.uploaded += 1;
                    let uploaded_at = hashsweep_lookup::upload::unix_now();
                    self.remember(c.digest, &data_id, uploaded_at);
                    waiting.push(Waiting {
                        digest: c.digest,
                        data_id,
                        uploaded_at,
                        next: Instant::now() + self.opts.poll_base,
                        attempt: 0,
                        failures: 0,
                    });
                }
                Err(e) => self.failed(c.digest, e, &mut stopped, report),
            }
        }
        // What the service said of the prevention budget, for the next run.
        if let (Some(cache), Some(scope), Some(b)) =
            (self.cache, &self.budget_scope, self.client.budget())
        {
            let _ = cache.put_budget(scope, &b);
        } else if let (Some(cache), Some(scope), Some(limit)) =
            (self.cache, &self.budget_scope, info.limit_prevention)
            && sent > 0
        {
            let left = remembered.map_or(limit, |b| b.remaining);
            let _ = cache.put_budget(
                scope,
                &Budget {
                    limit: Some(limit),
                    remaining: left.saturating_sub(sent),
                    resets_at: remembered.and_then(|b| b.resets_at),
                },
            );
        }
        known
    }

    /// Keep `d`'s `data_id` in the cache, so that a run that ends before its scan does
    /// fetches the result next time.
    fn remember(&self, d: Digest, data_id: &str, uploaded_at: i64) {
        if let Some(cache) = self.cache {
            let _ = cache.put_pending_upload(
                &d,
                &PendingUpload {
                    data_id: data_id.to_string(),
                    uploaded_at,
                },
            );
        }
    }

    /// An upload (or its announcement) failed: the note, and no more uploads after one that
    /// stops them.
    fn failed(
        &self,
        d: Digest,
        e: UploadError,
        stopped: &mut Option<UploadError>,
        report: &mut UploadReport,
    ) {
        report.counts.failed += 1;
        report.note(d, format!("upload failed: {}", describe(&e)));
        if e.stops_uploads() {
            self.progress.warn(&format!(
                "--upload-unknown: no more uploads in this run: {e}"
            ));
            *stopped = Some(e);
        }
    }

    /// Poll every waiting scan, backing off per scan, until all are answered, `--upload-wait`
    /// runs out, or the run is interrupted.
    fn wait(
        &self,
        mut waiting: Vec<Waiting>,
        out: &mut ScanOutput,
        fetched: &[Digest],
        report: &mut UploadReport,
    ) {
        let deadline = Instant::now() + self.opts.wait;
        if !waiting.is_empty() {
            self.progress.note(&format!(
                "--upload-unknown: waiting up to {} for {} scan(s) of the vendor's engines",
                humantime::format_duration(self.opts.wait),
                waiting.len()
            ));
        }
        while !waiting.is_empty() && !self.stop.load(Ordering::Relaxed) {
            let Some(i) = (0..waiting.len()).min_by_key(|&i| waiting[i].next) else {
                break;
            };
            let next = waiting[i].next;
            if next > deadline {
                break;
            }
            // Sleep in short steps, so an interrupt is heard.
            while Instant::now() < next && !self.stop.load(Ordering::Relaxed) {
                std::thread::sleep((next - Instant::now()).min(Duration::from_millis(100)));
            }
            if self.stop.load(Ordering::Relaxed) {
                break;
            }
            let w = &mut waiting[i];
            match self.client.poll(&w.data_id) {
                Ok(Poll::Done(mut answer)) => {
                    let w = waiting.swap_remove(i);
                    if !self.opts.details {
                        answer.details = None;
                    }
                    self.answered(out, w.digest, answer, fetched.contains(&w.digest), report);
                }
                Ok(Poll::Pending(_)) => {
                    w.failures = 0;
                    w.attempt += 1;
                    w.next = Instant::now()
                        + poll_interval(self.opts.poll_base, self.opts.poll_cap, w.attempt);
                }
                Err(e @ UploadError::UnknownDataId(_)) => {
                    let w = waiting.swap_remove(i);
                    if let Some(cache) = self.cache {
                        let _ = cache.drop_pending_upload(&w.digest);
                    }
                    report.counts.failed += 1;
                    report.note(
                        w.digest,
                        format!(
                            "upload: the service no longer knows the scan: {e} (a later run may \
                             upload the file again)"
                        ),
                    );
                }
                Err(e) if matches!(e, UploadError::KeyRefused(_) | UploadError::Forbidden(_)) => {
                    // Nothing more will be answered: every scan keeps its data_id for later.
                    let note = format!(
                        "upload: the result could not be fetched: {e} (data_id kept for the \
                         next run)"
                    );
                    for w in waiting.drain(..) {
                        report.counts.failed += 1;
                        report.note(w.digest, note.clone());
                    }
                }
                Err(e) => {
                    w.failures += 1;
                    if w.failures >= POLL_FAILURES {
                        let w = waiting.swap_remove(i);
                        report.counts.failed += 1;
                        report.note(
                            w.digest,
                            format!(
                                "upload: polling data_id {} failed {POLL_FAILURES} times, last: \
                                 {e} (the next run asks again)",
                                w.data_id
                            ),
                        );
                    } else {
                        w.attempt += 1;
                        w.next = Instant::now()
                            + poll_interval(self.opts.poll_base, self.opts.poll_cap, w.attempt);
                    }
                }
            }
        }
        let wait = humantime::format_duration(self.opts.wait);
        for w in waiting {
            report.counts.pending += 1;
            let since = hashsweep_lookup::upload::unix_now().saturating_sub(w.uploaded_at);
            report.note(
                w.digest,
                format!(
                    "upload: still being scanned (data_id {}, uploaded {since} s ago) when \
                     --upload-wait ({wait}) ran out: the next run fetches the result without \
                     uploading again",
                    w.data_id
                ),
            );
        }
    }

    /// A scan's final answer: the digest's answer in this run and in the cache.
    fn answered(
        &self,
        out: &mut ScanOutput,
        d: Digest,
        answer: Answer,
        fetched: bool,
        report: &mut UploadReport,
    ) {
        if let Some(cache) = self.cache {
            let _ = cache.put_verdicts(&[(d, answer.clone())], hashsweep_core::clock::now());
            let _ = cache.drop_pending_upload(&d);
        }
        report.counts.answered += 1;
        report.counts.fetched += u64::from(fetched);
        report.counts.detections += u64::from(answer.verdict().is_detection());
        out.dedup.answer_looked_up(d, Ok(answer));
        report.marks.insert(d, Mark::Answered);
    }
}

/// What a failed upload's record says: the error, with what it means for the file.
fn describe(e: &UploadError) -> String {
    match e {
        UploadError::Throttled(_) => format!("throttled by the service's file API: {e}"),
        UploadError::BudgetSpent(_) => format!("the key's daily upload budget is spent: {e}"),
        UploadError::TooBig(_) => format!("the service refused the file as too big: {e}"),
        UploadError::Forbidden(_) => format!("the key may not upload files: {e}"),
        UploadError::KeyRefused(_) => format!("the key was refused: {e}"),
        _ => e.to_string(),
    }
}

/// The word `--upload-kind` uses for a kind.
pub fn kind_name(k: FileKind) -> &'static str {
    match k {
        FileKind::Executable => "program",
        FileKind::Script => "script",
        FileKind::Document => "document",
        FileKind::Archive => "archive",
        FileKind::Other => "other",
    }
}

/// `--upload-kind`'s words.
pub fn parse_kind(s: &str) -> Result<Vec<FileKind>, String> {
    Ok(match s.trim().to_ascii_lowercase().as_str() {
        "program" | "programs" | "executable" => vec![FileKind::Executable],
        "script" | "scripts" => vec![FileKind::Script],
        "document" | "documents" => vec![FileKind::Document],
        "archive" | "archives" => vec![FileKind::Archive],
        "other" => vec![FileKind::Other],
        "all" => vec![
            FileKind::Executable,
            FileKind::Script,
            FileKind::Document,
            FileKind::Archive,
            FileKind::Other,
        ],
        other => {
            return Err(format!(
                "unknown kind '{other}' (program, script, document, archive, other, all)"
            ));
        }
    })
}

/// The exclusions in force: the defaults and the user's.
pub fn exclude_set(user: &[String]) -> Result<GlobSet, globset::Error> {
    let mut b = GlobSetBuilder::new();
    for g in DEFAULT_EXCLUDES
        .iter()
        .copied()
        .chain(user.iter().map(String::as_str))
    {
        b.add(
            GlobBuilder::new(g)
                .case_insensitive(true)
                .literal_separator(true)
                .build()?,
        );
    }
    b.build()
}

/// The unknown digests of `out` whose files are on disk (not members of archives, not data
/// streams), not decided by a local set, each with its best rank and the paths that hold it.
fn candidates(out: &ScanOutput, algo: Algo, ranker: &Ranker) -> Vec<Candidate> {
    let mut by_digest: HashMap<Digest, Candidate> = HashMap::new();
    for f in &out.files {
        let FileStatus::Hashed {
            digests,
            meta,
            warning: None,
            origin: Origin::Read | Origin::Cache | Origin::Link,
            kind,
            ..
        } = &f.status
        else {
            continue;
        };
        if out.processes.contains_key(&f.path) {
            // A running program's image is read through /proc: its file on disk (if any)
            // is a record of its own.
            continue;
        }
        if out
            .local
            .as_ref()
            .is_some_and(|l| l.classify(digests).is_some())
        {
            continue;
        }
        let Some(d) = digests.get(algo) else { continue };
        let Some(Ok(answer)) = out.dedup.outcome(&d) else {
            continue;
        };
        if answer.verdict() != Verdict::Unknown {
            continue;
        }
        let rank = ranker.rank(&f.path, *kind, meta.mtime_ns, meta.ctime_ns);
        let c = by_digest.entry(d).or_insert_with(|| Candidate {
            digest: d,
            rank,
            kind: *kind,
            size: f.size.unwrap_or(0),
            paths: Vec::new(),
        });
        c.rank = c.rank.min(rank);
        c.kind = c.kind.min(*kind);
        c.paths.push(f.path.to_path_buf());
    }
    by_digest.into_values().collect()
}

enum ReadAgain {
    Changed,
    Io(std::io::Error),
}

/// The file's bytes, read again, if its digest is still `want` (and its size `size`).
fn read_again(path: &Path, size: u64, want: Digest, algo: Algo) -> Result<Vec<u8>, ReadAgain> {
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        // A FIFO put in the file's place must not block the run.
        opts.custom_flags(libc::O_NONBLOCK);
    }
    let file = opts.open(path).map_err(ReadAgain::Io)?;
    let meta = file.metadata().map_err(ReadAgain::Io)?;
    if !meta.is_file() || meta.len() != size {
        return Err(ReadAgain::Changed);
    }
    let mut bytes = Vec::with_capacity(size as usize);
    file.take(size + 1)
        .read_to_end(&mut bytes)
        .map_err(ReadAgain::Io)?;
    if bytes.len() as u64 != size || digest_of(&bytes, algo) != want {
        return Err(ReadAgain::Changed);
    }
    Ok(bytes)
}

fn digest_of(bytes: &[u8], algo: Algo) -> Digest {
    use sha2::Digest as _;
    match algo {
        Algo::Sha256 => Digest::Sha256(sha2::Sha256::digest(bytes).into()),
        Algo::Sha1 => Digest::Sha1(sha1::Sha1::digest(bytes).into()),
        Algo::Md5 => Digest::Md5(md5::Md5::digest(bytes).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_exclusions_cover_keys_profiles_and_password_databases() {
        let set = exclude_set(&["/data/private/**".into()]).unwrap();
        for p in [
            "/home/a/.ssh/id_ed25519",
            "/home/a/.ssh/authorized_keys",
            "/root/.gnupg/private-keys-v1.d/x.key",
            "/home/a/.mozilla/firefox/p.default/logins.json",
            "/home/a/.config/google-chrome/Default/Cookies",
            "C:/Users/a/AppData/Local/Google/Chrome/User Data/Default/Login Data",
            "/home/a/Vault.KDBX",
            "/etc/ssl/private/site.key",
            "/data/private/x.exe",
        ] {
            assert!(set.is_match(p), "{p}");
        }
        for p in [
            "/home/a/Downloads/setup.exe",
            "/tmp/x.sh",
            "/home/a/sshd.exe",
        ] {
            assert!(!set.is_match(p), "{p}");
        }
    }

    #[test]
    fn kinds_parse() {
        assert_eq!(parse_kind("Programs").unwrap(), [FileKind::Executable]);
        assert_eq!(parse_kind("all").unwrap().len(), 5);
        assert!(parse_kind("pictures").is_err());
    }

    #[test]
    fn a_file_changed_since_hashed_is_not_read_for_upload() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"first").unwrap();
        let d = digest_of(b"first", Algo::Sha256);
        assert_eq!(
            read_again(&p, 5, d, Algo::Sha256).ok(),
            Some(b"first".to_vec())
        );
        std::fs::write(&p, b"other").unwrap();
        assert!(matches!(
            read_again(&p, 5, d, Algo::Sha256),
            Err(ReadAgain::Changed)
        ));
        std::fs::write(&p, b"longer").unwrap();
        assert!(matches!(
            read_again(&p, 5, d, Algo::Sha256),
            Err(ReadAgain::Changed)
        ));
    }
}
