//! Report stage: writes one record per path in the chosen format, then the summary.
//!
//! The record fields and verdict words are a contract scripts rely on. Records are streamed one
//! at a time from the joined results (no second copy of the whole report is built). Paths are
//! kept byte-exact: `path` is UTF-8 (lossy) and `path_bytes` (base64 of the raw bytes) appears
//! only when the name is not valid UTF-8.

mod change;
pub mod ecs;
pub mod fields;
mod html;
pub mod read;
mod table;

use std::io::{self, Write};
use std::path::Path;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::digest::{Algo, Digests, hex_lower};
use crate::known::hashset::{ListFormat, SourceInfo};
use crate::known::rds::RdsInfo;
use crate::lookup::verdict::Verdict;
use crate::lookup::{Answer, Plan};

pub use change::{Change, ChangeCounts, DiffChange};
use fields::{JsonRecord, Optional, View};
pub use table::{FULL_DIGEST_WIDTH, escape_for_line, escape_path};

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Ndjson,
    Csv,
    /// Elastic Common Schema, one document per line (`scan` only)
    Ecs,
    /// One self-contained page: detections first, then a table to filter and search
    Html,
}

impl Format {
    /// The format a report file's name asks for (`-o report.html`), `None` for an extension
    /// hashsweep does not know (ndjson is then written, as before).
    pub fn from_extension(path: &Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        Some(match ext.as_str() {
            "json" => Format::Json,
            "csv" => Format::Csv,
            "ndjson" | "jsonl" => Format::Ndjson,
            "html" | "htm" => Format::Html,
            _ => return None,
        })
    }
}

/// `--only`: which records a report keeps (the summary still counts every path), like
/// `clamscan -i`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Only {
    /// Verdict infected or suspicious
    Detections,
    /// Detections, errors (a record with an error: unreadable, lookup failed) and deferred
    Problems,
}

impl Only {
    /// Whether a record belongs in the report.
    pub fn keeps(self, r: &Record<'_>) -> bool {
        match self {
            Only::Detections => r.verdict.is_detection(),
            Only::Problems => {
                r.verdict.is_detection()
                    || matches!(r.verdict, Verdict::Error | Verdict::Deferred)
                    || r.error.is_some()
                    || r.is_modified_package_file()
            }
        }
    }
}

/// One path's joined result, borrowed from the pipeline's state.
#[derive(Debug, Clone)]
pub struct Record<'a> {
    /// `None` only for `lookup` of a bare hash.
    pub path: Option<&'a Path>,
    pub size: Option<u64>,
    /// Modification time `fstat` gave when the file was opened (hashed files only).
    pub mtime: Option<SystemTime>,
    /// Inode number (hashed files only).
    pub inode: Option<u64>,
    pub sha256: Option<String>,
    pub md5: Option<String>,
    pub sha1: Option<String>,
    pub verdict: Verdict,
    pub answer: Option<&'a Answer>,
    pub error: Option<&'a str>,
    pub note: Option<&'a str>,
    /// With `--baseline`: new, modified or unchanged since that report.
    pub change: Option<Change>,
    /// `local` when the verdict comes from a `--known-bad` hash set, `nsrl` when an NSRL RDS
    /// database given as `--known-good` lists the file.
    pub source: Option<&'static str>,
    /// With `source: nsrl`: the application type(s) of the RDS packages that list the file.
    pub application_type: Option<&'a str>,
    /// With `source: local`: the IOC list (MISP, STIX, MalwareBazaar, ClamAV) and the entry
    /// that name the file (`list`, `list_entry`; ECS `threat.indicator.*`).
    pub ioc: Option<crate::known::ioc::IocMatch<'a>>,
    /// With `source: circl` (`--circl`): CIRCL hashlookup's record of the file (`list_entry`
    /// describes it).
    pub circl: Option<&'a crate::lookup::circl::CirclRecord>,
    /// A symlink that was not followed (ECS `file.type: symlink`).
    pub symlink: bool,
    /// A running program's image (`--processes`): the process it belongs to.
    pub process: Option<&'a crate::scan::process::ProcessInfo>,
    /// A member of an archive (`--archives`): the file on disk, and the path inside it.
    pub container: Option<&'a Path>,
    pub member: Option<&'a Path>,
    /// When the service gave `answer` (for a sweep's records: the run's time for an answer
    /// asked in this run, the cache's date for one kept from an earlier run).
    pub answered_at: Option<SystemTime>,
    /// `answer` is kept from an earlier run past its TTL: due for a refresh the budget did
    /// not reach. It stands until the maximum age.
    pub stale: bool,
    /// With `--packages`: the package that owns the file, and what its digest says of it.
    pub package: Option<&'a crate::known::packages::Package>,
    pub package_check: Option<crate::known::packages::PackageCheck>,
}

impl<'a> Record<'a> {
    /// A record with only a path and a verdict; the other fields are set by whoever knows them.
    pub fn new(path: Option<&'a Path>, verdict: Verdict) -> Self {
        Record {
            path,
            size: None,
            mtime: None,
            inode: None,
            sha256: None,
            md5: None,
            sha1: None,
            verdict,
            answer: None,
            error: None,
            note: None,
            change: None,
            source: None,
            application_type: None,
            ioc: None,
            circl: None,
            symlink: false,
            process: None,
            container: None,
            member: None,
            answered_at: None,
            stale: false,
            package: None,
            package_check: None,
        }
    }

    /// A file that differs from what its package installed (`package_check: modified`).
    pub fn is_modified_package_file(&self) -> bool {
        self.package_check == Some(crate::known::packages::PackageCheck::Modified)
    }

    /// For the table and the page: `stale answer of 2026-11-30` when the answer is stale.
    pub fn stale_text(&self) -> Option<String> {
        if !self.stale {
            return None;
        }
        let day = self
            .answered_at
            .and_then(rfc3339)
            .map(|t| t.chars().take(10).collect::<String>())
            .unwrap_or_else(|| "an earlier run".into());
        Some(format!("stale answer of {day}"))
    }

    /// Hex fields from computed digests.
    pub fn with_digests(mut self, d: Option<&Digests>) -> Self {
        if let Some(d) = d {
            self.sha256 = Some(hex_lower(&d.sha256));
            self.md5 = d.md5.as_ref().map(|b| hex_lower(b));
            self.sha1 = d.sha1.as_ref().map(|b| hex_lower(b));
        }
        self
    }
}

/// Paths per verdict word, in the table's order (detections first). JSON: an object
/// `{"infected": 1, "clean": 40, ...}` with the verdicts that occurred.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerdictCounts(Vec<(Verdict, u64)>);

impl VerdictCounts {
    pub fn add(&mut self, v: &Verdict) {
        match self.0.iter_mut().find(|(w, _)| w == v) {
            Some((_, n)) => *n += 1,
            None => {
                self.0.push((v.clone(), 1));
                self.0.sort_by(|a, b| {
                    (a.0.rank(), a.0.to_string()).cmp(&(b.0.rank(), b.0.to_string()))
                });
            }
        }
    }

    /// The count of one verdict (0 when none).
    pub fn get(&self, v: &Verdict) -> u64 {
        self.0.iter().find(|(w, _)| w == v).map_or(0, |(_, n)| *n)
    }

    /// Verdicts and counts, detections first.
    pub fn iter(&self) -> impl Iterator<Item = (&Verdict, u64)> {
        self.0.iter().map(|(v, n)| (v, *n))
    }

    /// `40 clean, 1 infected, 2 unknown` in rank order; `no paths` when empty.
    pub fn human(&self) -> String {
        if self.0.is_empty() {
            return "no paths".into();
        }
        let parts: Vec<String> = self.iter().map(|(v, n)| format!("{n} {v}")).collect();
        parts.join(", ")
    }
}

impl Serialize for VerdictCounts {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (v, n) in &self.0 {
            m.serialize_entry(&v.to_string(), n)?;
        }
        m.end()
    }
}

/// What ran, for the JSON summary and the HTML header: enough to tell two reports' runs apart
/// and to know what a verdict depended on. Never holds the key or a token.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunInfo {
    /// hashsweep's version (with the commit when the build knew it).
    pub version: String,
    pub host: Option<String>,
    /// RFC 3339, UTC.
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// The paths given on the command line.
    pub roots: Vec<String>,
    /// The options that change what the report says (walk rules, lists, lookups, budget,
    /// cache and its lifetimes, `--only`), by their long flag names.
    pub options: serde_json::Map<String, serde_json::Value>,
    /// What the service last said of the key's budget, `None` when it said nothing (offline,
    /// or every answer came from a cache).
    pub rate_limit: Option<RateLimitState>,
}

/// The service's rate-limit headers as last seen, and how often it throttled this run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RateLimitState {
    pub limit: Option<u64>,
    pub remaining: Option<u64>,
    /// Unix seconds.
    pub resets_at: Option<u64>,
    /// Answers 429 during this run.
    pub throttled: u64,
}

/// An instant as RFC 3339 UTC with milliseconds (`2026-12-01T22:18:54.123Z`).
pub fn rfc3339(t: SystemTime) -> Option<String> {
    ecs::Rfc3339::from_system_time(t).map(|t| t.to_string())
}

/// The most paths of detections the summary names.
pub const SUMMARY_PATHS: usize = 10;

/// The most errors the summary names, each with its reason.
pub const SUMMARY_ERRORS: usize = 5;

/// The longest reason the summary shows for one error (the report has it whole).
const SUMMARY_REASON: usize = 160;

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The run's totals, printed to stderr and added to JSON reports.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    /// Paths swept (all of them, whatever `--only` keeps in the report).
    pub paths: u64,
    /// Paths per verdict.
    pub verdicts: VerdictCounts,
    /// Regular files read to the end.
    pub files: u64,
    pub bytes: u64,
    pub distinct_digests: u64,
    pub requests: u64,
    pub retries: u64,
    pub detections: u64,
    pub errors: u64,
    pub skipped: u64,
    /// Paths whose digest the lookup budget deferred to a later run.
    pub deferred: u64,
    /// Paths that keep a stale answer (kept from an earlier run past its TTL, within
    /// `--max-age`): answered, due for a refresh.
    pub stale: u64,
    pub not_looked_up: u64,
    /// Files that changed while read (their digest may be stale).
    pub changed: u64,
    /// Bytes actually read from disk (hashed files not served by the digest cache).
    pub bytes_read: u64,
    /// Files whose digests came from the cache, unread.
    pub files_cached: u64,
    /// Hard links to a file already read in this run, not read again.
    pub files_linked: u64,
    /// Distinct digests answered from the verdict cache, without a request.
    pub verdicts_cached: u64,
    /// With `--archives`: archives opened, those not read to the end (a limit, damage, an
    /// encrypted member), and the members hashed from inside them.
    #[serde(skip_serializing_if = "is_zero")]
    pub archives: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub archives_incomplete: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub archive_members: u64,
    /// Of those, the members of unchanged archives taken from the digest cache (the archive
    /// was not decompressed again).
    #[serde(skip_serializing_if = "is_zero")]
    pub archive_members_cached: u64,
    /// Without `--archives`: files whose first bytes say archive, hashed as files and their
    /// contents not read (`--archives` would open them).
    #[serde(skip_serializing_if = "is_zero")]
    pub archives_not_opened: u64,
    /// With `--streams` (Windows): named data streams read as records of their own.
    #[serde(skip_serializing_if = "is_zero")]
    pub streams_read: u64,
    /// Cache reads and writes that failed: the sweep went on, the next run reads and asks
    /// again what was not stored.
    pub cache_errors: u64,
    /// Network mounts the walk crossed, as `PATH (TYPE)`: `-x` keeps a sweep off them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub network_mounts: Vec<String>,
    /// With `--processes`: the processes listed, and those that could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub processes: Option<crate::scan::process::ProcessCounts>,
    /// Running programs whose executable is gone from disk, as `PID NAME (PATH)`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub deleted_processes: Vec<String>,
    /// With lookups: what the run did with the lookup budget (needed, asked, deferred, what
    /// the key has left and when it resets, the backlog's estimate).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<Plan>,
    /// With `--baseline`: how many paths are new, modified, unchanged, removed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changes: Option<ChangeCounts>,
    /// With `--upload-unknown`: what was uploaded, answered, left pending or not uploaded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uploads: Option<crate::scan::upload::UploadCounts>,
    /// The `--known-good` / `--known-bad` sets the run used, with an RDS database's release.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub known_sets: Vec<KnownSet>,
    /// With `--packages`: the package databases read, and what the files said of them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub packages: Option<PackageSummary>,
    pub elapsed_secs: f64,
    /// What ran (scan and lookup reports).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<RunInfo>,
    /// The first [`SUMMARY_PATHS`] detected paths, escaped for one line (for the summary).
    #[serde(skip)]
    pub detected_paths: Vec<String>,
    /// The first [`SUMMARY_ERRORS`] paths whose verdict is `error`, escaped for one line, each
    /// with its reason (for the summary: a report written to a file does not show them).
    #[serde(skip)]
    pub error_paths: Vec<(String, String)>,
    /// Roots given on the command line that could not be swept (missing, unreadable), with
    /// the reason: each gets a line of its own in the summary.
    #[serde(skip)]
    pub root_errors: Vec<(String, String)>,
    /// Where the report was written (`-o`), named by the summary.
    #[serde(skip)]
    pub report_file: Option<std::path::PathBuf>,
}

/// The path (or digest) a record is named by in the summary.
fn summary_name(r: &Record<'_>) -> String {
    match (r.path, &r.sha256, &r.md5, &r.sha1) {
        (Some(p), ..) => escape_path(p),
        (None, Some(h), ..) | (None, None, Some(h), _) | (None, None, None, Some(h)) => h.clone(),
        _ => "-".into(),
    }
}

/// An error's reason as the summary shows it: on one line, cut short if long.
pub fn summary_reason(reason: Option<&str>) -> String {
    let reason = reason
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .unwrap_or("error");
    let mut shown = escape_for_line(reason.as_bytes());
    if let Some((cut, _)) = shown.char_indices().nth(SUMMARY_REASON) {
        shown.truncate(cut);
        shown.push('…');
    }
    shown
}

/// One known-file set a run used, as the summary names it.
#[derive(Debug, Clone, Serialize)]
pub struct KnownSet {
    /// `known_good` or `known_bad`.
    pub role: &'static str,
    pub path: String,
    /// `list`, `hashdeep`, `csv` or `nsrl_rds`.
    pub format: &'static str,
    /// Distinct digests it holds (all algorithms).
    pub digests: u64,
    /// For an NSRL RDS database: its layout and `VERSION` row (version, build set, release
    /// date).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rds: Option<RdsInfo>,
    /// Whole days since the file was last modified, where known (Bloom filters and IOC
    /// lists); past [`LIST_MAX_AGE_DAYS`] the summary warns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub age_days: Option<u64>,
    /// For a DCSO Bloom filter: the parameters its header gives.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bloom: Option<BloomSummary>,
}

/// A list older than this many days gets a warning in the summary.
pub const LIST_MAX_AGE_DAYS: u64 = 30;

/// A Bloom filter's header, as the summary gives it.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct BloomSummary {
    /// Capacity and false-positive rate it was sized for.
    pub capacity: u64,
    pub fp_rate: f64,
    pub k: u64,
    pub bits: u64,
}

/// Whole days from `modified` to `now` (0 for a file dated in the future).
pub fn age_days(modified: Option<SystemTime>, now: SystemTime) -> Option<u64> {
    modified.map(|m| now.duration_since(m).map_or(0, |d| d.as_secs() / 86_400))
}

/// With `--packages`: the package databases a run read (the run's identity: a different
/// database makes different verdicts) and what the files said of them.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PackageSummary {
    /// The system whose databases were read (`/`, or `--packages-root`).
    pub root: String,
    /// `known-good` (a match is known good) or `verify-only`.
    pub mode: &'static str,
    pub databases: Vec<PackageDatabase>,
    /// Seconds to read them all.
    pub load_secs: f64,
    /// Files whose digest is their package's.
    pub matched: u64,
    /// Files that differ from their package (not conffiles): `package_check: modified`.
    pub modified: u64,
    /// Conffiles (`%config`, `%BACKUP%`, protected paths) that differ.
    pub config_changed: u64,
    /// Files a package owns with nothing to compare (`%ghost`, `newconffile`, a digest in
    /// an algorithm not computed, verification turned off).
    pub unchecked: u64,
    /// Files a package installed under the roots, gone from disk.
    pub missing: u64,
    /// The first [`SUMMARY_PATHS`] modified files, each with its package.
    pub modified_paths: Vec<String>,
    /// The first [`SUMMARY_PATHS`] missing files, each with its package.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing_paths: Vec<String>,
    /// Every modified file, each with its package (the HTML page lists them all).
    #[serde(skip)]
    pub all_modified: Vec<String>,
}

/// One package database read.
#[derive(Debug, Clone, Serialize)]
pub struct PackageDatabase {
    /// `dpkg`, `rpm`, `apk` or `pacman`.
    pub manager: &'static str,
    pub database: String,
    pub packages: u64,
    /// Paths its packages claim.
    pub files: u64,
    pub load_secs: f64,
}

/// `/usr/bin/ls (dpkg coreutils 9.1-1)`.
fn with_package(path: &str, p: &crate::known::packages::Package) -> String {
    format!("{path} ({} {} {})", p.manager, p.name, p.version)
}

impl PackageSummary {
    pub fn new(db: &crate::known::packages::PackageDb) -> PackageSummary {
        let databases: Vec<PackageDatabase> = db
            .loaded()
            .iter()
            .map(|l| PackageDatabase {
                manager: l.manager.name(),
                database: escape_path(&l.database),
                packages: l.packages,
                files: l.files,
                load_secs: l.elapsed.as_secs_f64(),
            })
            .collect();
        PackageSummary {
            root: escape_path(db.root()),
            mode: match db.mode() {
                crate::known::packages::PackageMode::Trust => "known-good",
                crate::known::packages::PackageMode::VerifyOnly => "verify-only",
            },
            load_secs: databases.iter().map(|d| d.load_secs).sum(),
            databases,
            ..PackageSummary::default()
        }
    }

    /// Files under the roots that their package installed and that are gone.
    pub fn set_missing(
        &mut self,
        missing: &[(std::path::PathBuf, &crate::known::packages::Package)],
    ) {
        self.missing = missing.len() as u64;
        self.missing_paths = missing
            .iter()
            .take(SUMMARY_PATHS)
            .map(|(p, pkg)| with_package(&escape_path(p), pkg))
            .collect();
    }

    fn count(&mut self, r: &Record<'_>) {
        use crate::known::packages::PackageCheck;
        match r.package_check {
            Some(PackageCheck::Match) => self.matched += 1,
            Some(PackageCheck::Modified) => {
                self.modified += 1;
                if let Some(p) = r.package {
                    let line = with_package(&summary_name(r), p);
                    if self.modified_paths.len() < SUMMARY_PATHS {
                        self.modified_paths.push(line.clone());
                    }
                    self.all_modified.push(line);
                }
            }
            Some(PackageCheck::ConfigChanged) => self.config_changed += 1,
            None => self.unchecked += u64::from(r.package.is_some()),
        }
    }

    /// The summary's lines about the packages.
    fn human(&self) -> String {
        let mut s = String::new();
        if self.databases.is_empty() {
            s.push_str(&format!(
                "\nhashsweep: packages: no package database found under {}",
                self.root
            ));
            return s;
        }
        let dbs: Vec<String> = self
            .databases
            .iter()
            .map(|d| {
                format!(
                    "{} {} ({}, {})",
                    d.manager,
                    d.database,
                    counted(d.packages, "package", "packages"),
                    counted(d.files, "file", "files")
                )
            })
            .collect();
        s.push_str(&format!(
            "\nhashsweep: packages: {} read in {:.2} s{}; {} match their package, {} differ \
             (conffiles: {}), {} missing",
            dbs.join(", "),
            self.load_secs,
            if self.mode == "verify-only" {
                " (verify-only: matches are looked up)"
            } else {
                ""
            },
            counted(self.matched, "file", "files"),
            self.modified + self.config_changed,
            self.config_changed,
            self.missing,
        ));
        let list = |n: u64, shown: &[String]| {
            let mut l = format!("{n}: {}", shown.join(", "));
            let more = n.saturating_sub(shown.len() as u64);
            if more > 0 {
                l.push_str(&format!(" and {more} more"));
            }
            l
        };
        if self.modified > 0 {
            s.push_str(&format!(
                "\nhashsweep: modified package files: {}",
                list(self.modified, &self.modified_paths)
            ));
        }
        if self.missing > 0 {
            s.push_str(&format!(
                "\nhashsweep: package files missing from disk: {}",
                list(self.missing, &self.missing_paths)
            ));
        }
        s
    }
}

impl KnownSet {
    pub fn new(role: &'static str, s: &SourceInfo) -> KnownSet {
        KnownSet {
            role,
            path: s.path.display().to_string(),
            format: match s.format {
                ListFormat::Sums => "list",
                ListFormat::Hashdeep => "hashdeep",
                ListFormat::Csv => "csv",
                ListFormat::Rds => "nsrl_rds",
            },
            digests: (s.counts.0 + s.counts.1 + s.counts.2) as u64,
            rds: s.rds.clone(),
            age_days: None,
            bloom: None,
        }
    }

    /// A DCSO Bloom filter (format `circl_bloom`): its values inserted as digests.
    pub fn bloom(
        role: &'static str,
        f: &crate::known::bloom::BloomFilter,
        now: SystemTime,
    ) -> Self {
        let p = f.params();
        KnownSet {
            role,
            path: f.path().display().to_string(),
            format: "circl_bloom",
            digests: p.inserted,
            rds: None,
            age_days: age_days(f.modified(), now),
            bloom: Some(BloomSummary {
                capacity: p.n,
                fp_rate: p.p,
                k: p.k,
                bits: p.m,
            }),
        }
    }

    /// An IOC list (MISP, STIX, MalwareBazaar, ClamAV): its kind as the format, its digests.
    pub fn ioc(role: &'static str, l: &crate::known::ioc::IocList, now: SystemTime) -> Self {
        KnownSet {
            role,
            path: l.path.display().to_string(),
            format: l.kind.as_str(),
            digests: l.entries,
            rds: None,
            age_days: age_days(l.modified, now),
            bloom: None,
        }
    }

    /// The summary's warning for a list older than [`LIST_MAX_AGE_DAYS`], if it is.
    pub fn age_warning(&self) -> Option<String> {
        let days = self.age_days.filter(|&d| d > LIST_MAX_AGE_DAYS)?;
        Some(format!(
            "warning: {} is {days} days old (more than {LIST_MAX_AGE_DAYS}): update it",
            self.path
        ))
    }

    /// One line for the human summary.
    pub fn human(&self) -> String {
        let role = self.role.replace('_', "-");
        match &self.rds {
            Some(r) => {
                let release = match &r.version {
                    Some(v) => format!(
                        "NSRL RDS {} {}, released {}",
                        v.version, v.build_set, v.release_date
                    ),
                    None => "NSRL RDS without a VERSION row".to_string(),
                };
                format!(
                    "{role}: {} ({release}, {} layout, {} SHA-256)",
                    self.path,
                    r.layout.as_str(),
                    self.digests
                )
            }
            None => {
                let age = self
                    .age_days
                    .map(|d| format!(", {} old", counted(d, "day", "days")))
                    .unwrap_or_default();
                match &self.bloom {
                    Some(b) => format!(
                        "{role}: {} (circl_bloom: Bloom filter of {} SHA-1, sized for {} at \
                         p={}, k={}{age}; a hit is probably known, not good)",
                        self.path, self.digests, b.capacity, b.fp_rate, b.k
                    ),
                    None => format!(
                        "{role}: {} ({}, {}{age})",
                        self.path,
                        self.format,
                        counted(self.digests, "digest", "digests")
                    ),
                }
            }
        }
    }
}

impl Summary {
    pub fn set_elapsed(&mut self, d: Duration) {
        self.elapsed_secs = d.as_secs_f64();
    }

    /// Add one record to the per-verdict counts.
    pub fn count(&mut self, r: &Record<'_>) {
        self.paths += 1;
        self.verdicts.add(&r.verdict);
        if r.verdict.is_detection() && self.detected_paths.len() < SUMMARY_PATHS {
            self.detected_paths.push(summary_name(r));
        }
        if r.verdict == Verdict::Error && self.error_paths.len() < SUMMARY_ERRORS {
            self.error_paths
                .push((summary_name(r), summary_reason(r.error.or(r.note))));
        }
        if r.sha256.is_some() && r.path.is_some() {
            self.files += 1;
            self.bytes += r.size.unwrap_or(0);
        }
        match &r.verdict {
            v if v.is_detection() => self.detections += 1,
            Verdict::Error => self.errors += 1,
            Verdict::Skipped => self.skipped += 1,
            Verdict::Deferred => self.deferred += 1,
            Verdict::NotLookedUp if r.error.is_some() => self.not_looked_up += 1,
            _ => {}
        }
        self.stale += u64::from(r.stale);
        if let Some(p) = self.packages.as_mut() {
            p.count(r);
        }
    }

    /// Files that differ from what their package installed.
    pub fn modified_package_files(&self) -> u64 {
        self.packages.as_ref().map_or(0, |p| p.modified)
    }

    /// `1` for any detection, else `4` for a file that differs from what its package
    /// installed (`--packages`), else `2` if anything is incomplete, else `3` if the budget
    /// deferred something, else `0`.
    pub fn exit_status(&self) -> u8 {
        if self.detections > 0 {
            1
        } else if self.modified_package_files() > 0 {
            4
        } else if self.errors > 0
            || self.not_looked_up > 0
            || self.changed > 0
            || self.archives_incomplete > 0
        {
            2
        } else if self.deferred > 0 {
            3
        } else {
            0
        }
    }

    /// One human paragraph for stderr.
    pub fn human(&self) -> String {
        let mbps = if self.elapsed_secs > 0.0 {
            self.bytes_read as f64 / 1e6 / self.elapsed_secs
        } else {
            0.0
        };
        let mut s = format!(
            "hashsweep: {}, {} hashed",
            counted(self.files, "file", "files"),
            human_bytes(self.bytes)
        );
        if self.files_cached + self.files_linked > 0 {
            s.push_str(&format!(" ({} read", human_bytes(self.bytes_read)));
            if self.files_cached > 0 {
                s.push_str(&format!(
                    ", {} from the cache",
                    counted(self.files_cached, "file", "files")
                ));
            }
            if self.files_linked > 0 {
                s.push_str(&format!(
                    ", {} read once",
                    counted(self.files_linked, "hard link", "hard links")
                ));
            }
            s.push(')');
        }
        if self.archives > 0 {
            s.push_str(&format!(
                ", {} inside {} (",
                counted(self.archive_members, "member", "members"),
                counted(self.archives, "archive", "archives"),
            ));
            if self.archive_members_cached > 0 {
                s.push_str(&format!("{} from the cache, ", self.archive_members_cached));
            }
            s.push_str(&format!(
                "{} not read to the end)",
                self.archives_incomplete
            ));
        }
        if self.streams_read > 0 {
            s.push_str(&format!(
                ", {} read",
                counted(self.streams_read, "data stream", "data streams")
            ));
        }
        s.push_str(&format!(
            ", {}",
            counted(self.distinct_digests, "distinct digest", "distinct digests")
        ));
        if self.verdicts_cached > 0 {
            s.push_str(&format!(
                " ({} answered from the cache)",
                self.verdicts_cached
            ));
        }
        s.push_str(&format!(
            ", {} sent",
            counted(self.requests, "request", "requests")
        ));
        if self.retries > 0 {
            s.push_str(&format!(" ({})", counted(self.retries, "retry", "retries")));
        }
        s.push_str(&format!(
            "\nhashsweep: {}, {}, {} skipped",
            counted(self.detections, "detection", "detections"),
            counted(self.errors, "error", "errors"),
            self.skipped
        ));
        if self.deferred > 0 {
            s.push_str(&format!(", {} deferred", self.deferred));
        }
        if self.stale > 0 {
            s.push_str(&format!(
                ", {} with a stale answer (due for a refresh)",
                self.stale
            ));
        }
        if self.not_looked_up > 0 {
            s.push_str(&format!(", {} not looked up", self.not_looked_up));
        }
        if self.changed > 0 {
            s.push_str(&format!(", {} changed while read", self.changed));
        }
        if self.cache_errors > 0 {
            s.push_str(&format!(
                ", {}",
                counted(self.cache_errors, "cache error", "cache errors")
            ));
        }
        s.push_str(&format!("; {:.2} s, {:.1} MB/s", self.elapsed_secs, mbps));
        s.push_str(&format!("\nhashsweep: verdicts: {}", self.verdicts.human()));
        if self.detections > 0 {
            s.push_str(&format!(
                "\nhashsweep: detected: {}",
                self.detected_paths.join(", ")
            ));
            let more = self
                .detections
                .saturating_sub(self.detected_paths.len() as u64);
            if more > 0 {
                s.push_str(&format!(" and {more} more"));
            }
        }
        if let Some(p) = &self.packages {
            s.push_str(&p.human());
        }
        for (root, reason) in &self.root_errors {
            s.push_str(&format!(
                "\nhashsweep: root {root} could not be swept: {reason}"
            ));
        }
        // The roots have their own lines: the other errors, the first few named.
        let others: Vec<String> = self
            .error_paths
            .iter()
            .filter(|(p, _)| !self.root_errors.iter().any(|(r, _)| r == p))
            .map(|(p, reason)| format!("{p} ({reason})"))
            .collect();
        let more = self
            .errors
            .saturating_sub(self.root_errors.len() as u64)
            .saturating_sub(others.len() as u64);
        if !others.is_empty() {
            s.push_str(&format!("\nhashsweep: errors: {}", others.join(", ")));
            if more > 0 {
                s.push_str(&format!(" and {more} more"));
            }
        } else if more > 0 {
            s.push_str(&format!(
                "\nhashsweep: {} more in the report",
                counted(more, "error", "errors")
            ));
        }
        if self.archives_not_opened > 0 {
            let formats: Vec<&str> = crate::scan::archive::Format::ALL
                .iter()
                .map(|f| f.name())
                .collect();
            let (were, files, its) = if self.archives_not_opened == 1 {
                ("was", "a file", "its")
            } else {
                ("were", "files", "their")
            };
            s.push_str(&format!(
                "\nhashsweep: {} {were} hashed as {files}, {its} contents not read: --archives \
                 opens {}",
                counted(self.archives_not_opened, "archive", "archives"),
                formats.join(", ")
            ));
        }
        if let Some(f) = &self.report_file {
            s.push_str(&format!("\nhashsweep: report: {}", escape_path(f)));
        }
        if let Some(c) = &self.changes {
            s.push_str(&format!("\nhashsweep: {}", c.human()));
        }
        if let Some(u) = &self.uploads {
            s.push_str(&format!("\nhashsweep: {}", u.human()));
        }
        for k in &self.known_sets {
            s.push_str(&format!("\nhashsweep: {}", k.human()));
            if let Some(w) = k.age_warning() {
                s.push_str(&format!("\nhashsweep: {w}"));
            }
        }
        if let Some(p) = &self.processes {
            s.push_str(&format!(
                "\nhashsweep: processes: {} checked ({}), {}, {} exited before read",
                p.processes,
                counted(p.images, "image", "images"),
                counted(p.kernel_threads, "kernel thread", "kernel threads"),
                p.vanished
            ));
            if p.denied > 0 {
                s.push_str(&format!(", {} could not be inspected", p.denied));
            }
        }
        if !self.deleted_processes.is_empty() {
            let shown = &self.deleted_processes[..self.deleted_processes.len().min(SUMMARY_PATHS)];
            s.push_str(&format!(
                "\nhashsweep: running, deleted from disk: {}",
                shown.join(", ")
            ));
            let more = self.deleted_processes.len() - shown.len();
            if more > 0 {
                s.push_str(&format!(" and {more} more"));
            }
        }
        if !self.network_mounts.is_empty() {
            s.push_str(&format!(
                "\nhashsweep: crossed network mounts: {} (-x keeps a sweep on its roots' file systems)",
                self.network_mounts.join(", ")
            ));
        }
        if let Some(p) = self.budget.as_ref().filter(|p| p.deferred > 0) {
            s.push_str(&format!(
                "\nhashsweep: backlog: {} deferred to later runs",
                counted(p.deferred, "digest", "digests")
            ));
            if let Some(d) = p.backlog_days {
                let unit = match (p.cap.is_some(), d == 1) {
                    (false, true) => "day",
                    (false, false) => "days",
                    (true, true) => "run",
                    (true, false) => "runs",
                };
                s.push_str(&format!(", about {d} more {unit}"));
            }
        }
        s
    }
}

/// The distinct threat names the engines reported for an answer (`--details`), in engine order.
pub fn threat_names(a: &Answer) -> Vec<&str> {
    let mut names: Vec<&str> = Vec::new();
    for e in a.details.iter().flatten() {
        let t = e.threat_found.trim();
        if !t.is_empty() && !names.contains(&t) {
            names.push(t);
        }
    }
    names
}

/// `1 request`, `2 requests`: a count with its noun agreeing.
fn counted(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Bytes in binary units, one decimal.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// `path` (lossy UTF-8) and, only when the name is not valid UTF-8, `path_bytes` (base64).
pub fn split_path(p: Option<&Path>) -> (Option<String>, Option<String>) {
    let Some(p) = p else { return (None, None) };
    let lossy = String::from_utf8_lossy(p.as_os_str().as_encoded_bytes()).into_owned();
    (Some(lossy), fields::path_bytes(p))
}

/// A path in the baseline that is gone. Written as a record with `change: "removed"`, the old
/// size and digest, and no verdict (nothing was looked at in this run).
#[derive(Debug, Clone)]
pub struct Removed<'a> {
    pub path: &'a Path,
    pub size: Option<u64>,
    pub sha256: Option<String>,
}

/// Which optional columns a CSV report has, and what the ECS format says about the run.
#[derive(Debug, Clone, Default)]
pub struct Columns {
    pub md5: bool,
    pub sha1: bool,
    pub change: bool,
    /// An NSRL RDS database is among the known sets: the `application_type` column.
    pub application_type: bool,
    /// `--processes`: the `pid`, `process_name`, `cmdline`, `deleted`, `uid` columns.
    pub process: bool,
    /// `--archives`: the `container` and `member` columns.
    pub archives: bool,
    /// `--packages`: the `package` and `package_check` columns.
    pub packages: bool,
    /// Which digest was sent to the service (ECS: the field an answer matched).
    pub lookup_algo: Option<Algo>,
    /// ECS `host.name` (default: this machine's host name).
    pub host_name: Option<String>,
    /// `--details` was asked: the table has a threat column.
    pub details: bool,
    /// The table's digest column header when it is not SHA256 (`lookup` of MD5 or SHA-1
    /// hashes, or `DIGEST` for a mix).
    pub digest_header: Option<&'static str>,
    /// Full digests in the table (a wide terminal or `--wide`).
    pub wide: bool,
    /// Colour in the table (a terminal, and no `NO_COLOR`).
    pub color: bool,
}

/// Writes records in one format.
pub trait Reporter {
    /// Before the first record, with the run's totals (the HTML page's header).
    fn begin(&mut self, _summary: &Summary) -> io::Result<()> {
        Ok(())
    }
    fn record(&mut self, r: &Record<'_>) -> io::Result<()>;
    /// With `--baseline`: a path of the old report that this run did not find.
    fn removed(&mut self, r: &Removed<'_>) -> io::Result<()>;
    fn finish(&mut self, summary: &Summary) -> io::Result<()>;
}

/// Build the reporter for `format`. `csv_extra` adds the md5/sha1 columns.
pub fn reporter<'w>(
    format: Format,
    out: Box<dyn Write + 'w>,
    cols: Columns,
) -> Box<dyn Reporter + 'w> {
    match format {
        Format::Json => Box::new(JsonReporter { out, first: true }),
        Format::Ndjson => Box::new(NdjsonReporter { out }),
        Format::Csv => Box::new(CsvReporter::new(out, cols)),
        Format::Table => Box::new(table::TableReporter::new(out, cols)),
        Format::Ecs => Box::new(ecs::EcsReporter::new(out, cols)),
        Format::Html => Box::new(html::HtmlReporter::new(out, cols)),
    }
}

/// Keeps only the records `--only` asks for.
pub struct OnlyReporter<'r> {
    pub inner: Box<dyn Reporter + 'r>,
    pub only: Only,
}

impl Reporter for OnlyReporter<'_> {
    fn begin(&mut self, summary: &Summary) -> io::Result<()> {
        self.inner.begin(summary)
    }
    fn record(&mut self, r: &Record<'_>) -> io::Result<()> {
        if self.only.keeps(r) {
            self.inner.record(r)?;
        }
        Ok(())
    }
    /// A removed path is a change, not a detection or a problem.
    fn removed(&mut self, _: &Removed<'_>) -> io::Result<()> {
        Ok(())
    }
    fn finish(&mut self, summary: &Summary) -> io::Result<()> {
        self.inner.finish(summary)
    }
}

struct NdjsonReporter<'w> {
    out: Box<dyn Write + 'w>,
}

impl Reporter for NdjsonReporter<'_> {
    fn record(&mut self, r: &Record<'_>) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, &JsonRecord(View::Record(r)))?;
        self.out.write_all(b"\n")
    }
    fn removed(&mut self, r: &Removed<'_>) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, &JsonRecord(View::Removed(r)))?;
        self.out.write_all(b"\n")
    }
    fn finish(&mut self, _: &Summary) -> io::Result<()> {
        self.out.flush()
    }
}

/// `{"records":[...],"summary":{...}}`, streamed.
struct JsonReporter<'w> {
    out: Box<dyn Write + 'w>,
    first: bool,
}

impl JsonReporter<'_> {
    fn element(&mut self, v: &impl Serialize) -> io::Result<()> {
        self.out.write_all(if self.first {
            b"{\"records\":[\n"
        } else {
            b",\n"
        })?;
        self.first = false;
        serde_json::to_writer(&mut self.out, v)?;
        Ok(())
    }
}

impl Reporter for JsonReporter<'_> {
    fn record(&mut self, r: &Record<'_>) -> io::Result<()> {
        self.element(&JsonRecord(View::Record(r)))
    }
    fn removed(&mut self, r: &Removed<'_>) -> io::Result<()> {
        self.element(&JsonRecord(View::Removed(r)))
    }
    fn finish(&mut self, summary: &Summary) -> io::Result<()> {
        self.out
            .write_all(if self.first { b"{\"records\":[" } else { b"\n" })?;
        self.out.write_all(b"],\n\"summary\":")?;
        serde_json::to_writer(&mut self.out, summary)?;
        self.out.write_all(b"}\n")?;
        self.out.flush()
    }
}

struct CsvReporter<'w> {
    w: csv::Writer<Box<dyn Write + 'w>>,
    columns: Vec<&'static fields::Spec>,
    header_done: bool,
}

impl<'w> CsvReporter<'w> {
    fn new(out: Box<dyn Write + 'w>, cols: Columns) -> Self {
        CsvReporter {
            w: csv::Writer::from_writer(out),
            columns: fields::csv_columns(|o| match o {
                Optional::Md5 => cols.md5,
                Optional::Sha1 => cols.sha1,
                Optional::Change => cols.change,
                Optional::ApplicationType => cols.application_type,
                Optional::Process => cols.process,
                Optional::Archives => cols.archives,
                Optional::Packages => cols.packages,
            }),
            header_done: false,
        }
    }

    fn row(&mut self, view: View<'_>) -> io::Result<()> {
        if !self.header_done {
            self.w.write_record(self.columns.iter().map(|f| f.name))?;
            self.header_done = true;
        }
        self.w.write_record(fields::csv_row(&view, &self.columns))?;
        Ok(())
    }
}

impl Reporter for CsvReporter<'_> {
    fn record(&mut self, r: &Record<'_>) -> io::Result<()> {
        self.row(View::Record(r))
    }
    fn removed(&mut self, r: &Removed<'_>) -> io::Result<()> {
        self.row(View::Removed(r))
    }
    fn finish(&mut self, _: &Summary) -> io::Result<()> {
        self.w.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(unix)]
    use base64::Engine as _;
    #[cfg(unix)]
    use std::ffi::OsStr;

    fn render(format: Format, recs: &[Record<'_>]) -> String {
        let mut buf = Vec::new();
        {
            let mut r = reporter(format, Box::new(&mut buf), Columns::default());
            for rec in recs {
                r.record(rec).unwrap();
            }
            r.finish(&Summary::default()).unwrap();
        }
        String::from_utf8(buf).unwrap()
    }

    /// A live system's summary names the network mounts crossed (so `-x` is an informed
    /// choice), the processes counted, and the first deleted running programs.
    #[test]
    fn summary_names_network_mounts_processes_and_deleted_programs() {
        let s = Summary {
            network_mounts: vec!["/mnt/share (nfs)".into(), "/mnt/ssh (sshfs)".into()],
            processes: Some(crate::scan::process::ProcessCounts {
                images: 40,
                processes: 30,
                kernel_threads: 60,
                vanished: 2,
                denied: 3,
            }),
            deleted_processes: (1..=12).map(|i| format!("{i} x (/tmp/x)")).collect(),
            ..Summary::default()
        };
        let h = s.human();
        assert!(
            h.contains(
                "crossed network mounts: /mnt/share (nfs), /mnt/ssh (sshfs) (-x keeps a sweep"
            ),
            "{h}"
        );
        assert!(
            h.contains(
                "processes: 30 checked (40 images), 60 kernel threads, 2 exited before read, \
                 3 could not be inspected"
            ),
            "{h}"
        );
        assert!(
            h.contains("running, deleted from disk: 1 x (/tmp/x), ") && h.contains(" and 2 more"),
            "{h}"
        );
        assert!(!h.contains("11 x"), "{h}");
        let quiet = Summary::default().human();
        assert!(
            !quiet.contains("network") && !quiet.contains("processes"),
            "{quiet}"
        );
    }

    /// Errors are named with their reasons, on one line each; the roots have lines of their
    /// own and are not counted again among the "more".
    #[test]
    fn summary_names_root_errors_and_the_first_errors() {
        let mut s = Summary::default();
        let names = ["/a", "/b\nc", "/gone", "/d", "/e", "/f"];
        for (i, p) in names.iter().enumerate() {
            let mut r = Record::new(Some(Path::new(p)), Verdict::Error);
            let long = "x".repeat(500);
            r.error = Some(match i {
                1 => "cannot open: Permission denied",
                2 => "No such file or directory",
                3 => &long,
                _ => "bad\x1b[31m",
            });
            s.count(&r);
            // Not counted among the errors (skipped), nor named.
            s.count(&Record::new(Some(Path::new("/fifo")), Verdict::Skipped));
        }
        s.root_errors = vec![("/gone".into(), "No such file or directory".into())];
        let h = s.human();
        assert!(
            h.contains("\nhashsweep: root /gone could not be swept: No such file or directory\n"),
            "{h}"
        );
        let list = h
            .lines()
            .find(|l| l.starts_with("hashsweep: errors: "))
            .unwrap();
        // The first five by order (the root among them, left out), escaped, cut short.
        assert!(
            list.starts_with(
                "hashsweep: errors: /a (bad\\u{1b}[31m), /b\\nc (cannot open: Permission \
                 denied), /d (xxx"
            ),
            "{list}"
        );
        assert!(list.contains("x…), /e (bad"), "{list}");
        assert!(!list.contains("/gone") && !list.contains("/fifo"), "{list}");
        // Six errors: one root, four named, one more.
        assert!(list.ends_with(" and 1 more"), "{list}");
        // Only roots: no list.
        let mut only_root = Summary::default();
        only_root.count(&{
            let mut r = Record::new(Some(Path::new("/gone")), Verdict::Error);
            r.error = Some("No such file or directory");
            r
        });
        only_root.root_errors = vec![("/gone".into(), "No such file or directory".into())];
        assert!(
            !only_root.human().contains("errors:"),
            "{}",
            only_root.human()
        );
        assert!(!Summary::default().human().contains("root "));
    }

    fn rec(path: &Path) -> Record<'_> {
        Record {
            size: Some(3),
            sha256: Some("ab".into()),
            ..Record::new(Some(path), Verdict::Clean)
        }
    }

    // Unix only: a name of raw non-UTF-8 bytes exists only there (Windows: platform::tests).
    #[cfg(unix)]
    #[test]
    fn non_utf8_paths_carry_base64_bytes_and_utf8_paths_do_not() {
        let bad = Path::new(<OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(
            b"dir/caf\xe9",
        ));
        let good = Path::new("dir/café");
        let out = render(Format::Ndjson, &[rec(bad), rec(good)]);
        let lines: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let b64 = lines[0]["path_bytes"].as_str().unwrap();
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap(),
            b"dir/caf\xe9"
        );
        assert_eq!(lines[0]["path"], "dir/caf\u{fffd}");
        assert!(lines[1].get("path_bytes").is_none());
        assert_eq!(lines[1]["verdict"], "clean");
    }

    #[test]
    fn the_extension_names_the_format_and_an_unknown_one_none() {
        let f = |n: &str| Format::from_extension(Path::new(n));
        assert_eq!(f("/r/a.json"), Some(Format::Json));
        assert_eq!(f("a.JSONL"), Some(Format::Ndjson));
        assert_eq!(f("a.ndjson"), Some(Format::Ndjson));
        assert_eq!(f("a.csv"), Some(Format::Csv));
        assert_eq!(f("a.html"), Some(Format::Html));
        assert_eq!(f("a.log"), None);
        assert_eq!(f("json"), None);
        assert_eq!(f("dir.json/report"), None);
    }

    #[test]
    fn only_keeps_detections_or_problems() {
        let p = Path::new("x");
        let with_error = Record {
            error: Some("lookup failed"),
            ..Record::new(Some(p), Verdict::NotLookedUp)
        };
        let cases = [
            (Record::new(Some(p), Verdict::Infected), true, true),
            (Record::new(Some(p), Verdict::Suspicious), true, true),
            (Record::new(Some(p), Verdict::Error), false, true),
            (Record::new(Some(p), Verdict::Deferred), false, true),
            (with_error, false, true),
            (Record::new(Some(p), Verdict::Clean), false, false),
            (Record::new(Some(p), Verdict::Unknown), false, false),
            (Record::new(Some(p), Verdict::Skipped), false, false),
            (Record::new(Some(p), Verdict::KnownGood), false, false),
        ];
        for (r, detections, problems) in cases {
            assert_eq!(Only::Detections.keeps(&r), detections, "{}", r.verdict);
            assert_eq!(Only::Problems.keeps(&r), problems, "{}", r.verdict);
        }
    }

    #[test]
    fn verdict_counts_are_in_table_order() {
        let mut c = VerdictCounts::default();
        for v in [
            Verdict::Clean,
            Verdict::Unknown,
            Verdict::Clean,
            Verdict::Infected,
        ] {
            c.add(&v);
        }
        assert_eq!(c.human(), "1 infected, 1 unknown, 2 clean");
        assert_eq!(c.get(&Verdict::Clean), 2);
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            r#"{"infected":1,"unknown":1,"clean":2}"#
        );
    }

    #[test]
    fn json_is_one_document_even_when_empty() {
        let v: serde_json::Value = serde_json::from_str(&render(Format::Json, &[])).unwrap();
        assert_eq!(v["records"].as_array().unwrap().len(), 0);
        let p = Path::new("a");
        let v: serde_json::Value =
            serde_json::from_str(&render(Format::Json, &[rec(p), rec(p)])).unwrap();
        assert_eq!(v["records"].as_array().unwrap().len(), 2);
        assert!(v["summary"]["files"].is_number());
    }

    #[test]
    fn csv_keeps_one_record_per_row_with_commas_quotes_and_newlines() {
        let p = Path::new("we,ird \"name\"\nline2");
        let out = render(Format::Csv, &[rec(p)]);
        let mut rdr = csv::Reader::from_reader(out.as_bytes());
        let rows: Vec<csv::StringRecord> = rdr.records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), 1);
        assert_eq!(&rows[0][0], "we,ird \"name\"\nline2");
    }

    #[test]
    fn the_backlog_line_counts_days_or_runs_in_the_right_number() {
        let line = |deferred, days, cap| {
            let s = Summary {
                deferred,
                budget: Some(Plan {
                    deferred,
                    backlog_days: Some(days),
                    cap,
                    ..Plan::default()
                }),
                ..Summary::default()
            };
            s.human().lines().last().unwrap_or_default().to_string()
        };
        assert!(
            line(5, 1, None).ends_with("about 1 more day"),
            "{}",
            line(5, 1, None)
        );
        assert!(line(9, 2, None).ends_with("about 2 more days"));
        assert!(line(5, 1, Some(5)).ends_with("about 1 more run"));
        assert!(line(9, 2, Some(5)).ends_with("about 2 more runs"));
    }

    #[test]
    fn the_summary_counts_agree_with_their_nouns() {
        let human = |n| {
            Summary {
                requests: n,
                retries: n,
                detections: n,
                errors: n,
                ..Summary::default()
            }
            .human()
        };
        let one = human(1);
        assert!(one.contains("1 request sent (1 retry)"), "{one}");
        assert!(one.contains("1 detection, 1 error,"), "{one}");
        let two = human(2);
        assert!(two.contains("2 requests sent (2 retries)"), "{two}");
        assert!(two.contains("2 detections, 2 errors,"), "{two}");
    }
}
