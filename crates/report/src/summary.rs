//! The run's totals ([`Summary`]): paths per verdict, what the service, the budget, the cache,
//! the known sets, package databases, processes and uploads did, and the closing text a person
//! reads on stderr; the summaries of the known sets and package databases it carries.

use super::change::ChangeCounts;
use super::table::{escape_for_line, escape_path};
use super::{Record, RunInfo, VerdictCounts, counted, human_bytes};
use hashsweep_known::hashset::{ListFormat, SourceInfo};
use hashsweep_known::rds::RdsInfo;
use hashsweep_lookup::Plan;
use hashsweep_lookup::verdict::Verdict;
use serde::Serialize;
use std::time::{Duration, SystemTime};

/// The most paths of detections the summary names.
pub const SUMMARY_PATHS: usize = 10;

/// The most errors the summary names, each with its reason.
pub const SUMMARY_ERRORS: usize = 5;

/// The longest reason the summary shows for one error (the report has it whole).
const SUMMARY_REASON: usize = 160;

pub(super) fn is_zero(n: &u64) -> bool {
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
    pub processes: Option<crate::scanned::ProcessCounts>,
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
    pub uploads: Option<crate::scanned::UploadCounts>,
    /// The `--known-good` / `--known-bad` sets the run used, with an RDS database's release.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub known_sets: Vec<KnownSet>,
    /// With `--packages`: the package databases read, and what the files said of them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub packages: Option<PackageSummary>,
    /// With `--circl`: what CIRCL hashlookup was asked, what the cache answered for it, what
    /// it knew and flagged, and what it left unanswered (with why).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub circl: Option<hashsweep_lookup::circl::CirclCounts>,
    /// With `--yara`: the rules loaded, and the files they matched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub yara: Option<YaraSummary>,
    /// Paths a `--yara` rule matched (`yara.matched` in the JSON summary).
    #[serde(skip)]
    pub yara_matched: u64,
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

/// `--yara`: the rules a run loaded and what they matched.
#[derive(Debug, Clone, Default, Serialize)]
pub struct YaraSummary {
    /// Rules in the set.
    pub rules: u64,
    /// Rule files read.
    pub files: u64,
    /// Seconds to compile them, or to load them from the compiled-rules cache.
    pub load_secs: f64,
    /// `off` (`--no-cache`), `hit` (loaded from the cache), `miss` (compiled and stored),
    /// `rejected` (the cached file was unusable: compiled and stored again).
    pub cache: &'static str,
    /// Why the compiled rules could not be stored (the next run compiles again).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_error: Option<String>,
    /// Paths (files and archive members) at least one rule matched.
    pub matched: u64,
}

impl YaraSummary {
    /// One line for stderr and the page.
    pub fn human(&self) -> String {
        let how = match self.cache {
            "hit" => "loaded from the compiled-rules cache",
            _ => "compiled",
        };
        let mut s = format!(
            "YARA: {} from {} ({how} in {:.2} s), {} matched",
            counted(self.rules, "rule", "rules"),
            counted(self.files, "file", "files"),
            self.load_secs,
            counted(self.matched, "path", "paths")
        );
        if let Some(e) = &self.cache_error {
            s.push_str(&format!("; the compiled rules were not cached: {e}"));
        }
        s
    }
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
    /// Whole days since the file was last modified, where known (every kind of set: hash
    /// lists, NSRL RDS, Bloom filters, IOC lists); past [`LIST_MAX_AGE_DAYS`] the summary
    /// warns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub age_days: Option<u64>,
    /// For a DCSO Bloom filter: the parameters its header gives.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bloom: Option<BloomSummary>,
}

/// `--circl`'s line: `CIRCL hashlookup: 3 digests asked in 1 request: 1 known (known_good), 1
/// flagged by its sources (asked first), 1 not known`, with the cache's share and what was
/// left unanswered when there are any.
pub fn circl_human(c: &hashsweep_lookup::circl::CirclCounts) -> String {
    let mut s = format!(
        "CIRCL hashlookup: {} asked in {}",
        counted(c.asked, "digest", "digests"),
        counted(c.requests, "request", "requests")
    );
    if c.cached > 0 {
        s.push_str(&format!(", {} answered from the cache", c.cached));
    }
    s.push_str(&format!(
        ": {} known (known_good), {} flagged by its sources (asked first), {} not known",
        c.known, c.flagged, c.not_found
    ));
    if c.unanswered > 0 {
        s.push_str(&format!(
            ", {} not answered (asked of the service as usual)",
            c.unanswered
        ));
    }
    s
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
fn with_package(path: &str, p: &hashsweep_known::packages::Package) -> String {
    format!("{path} ({} {} {})", p.manager, p.name, p.version)
}

impl PackageSummary {
    pub fn new(db: &hashsweep_known::packages::PackageDb) -> PackageSummary {
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
                hashsweep_known::packages::PackageMode::Trust => "known-good",
                hashsweep_known::packages::PackageMode::VerifyOnly => "verify-only",
            },
            load_secs: databases.iter().map(|d| d.load_secs).sum(),
            databases,
            ..PackageSummary::default()
        }
    }

    /// Files under the roots that their package installed and that are gone.
    pub fn set_missing(
        &mut self,
        missing: &[(std::path::PathBuf, &hashsweep_known::packages::Package)],
    ) {
        self.missing = missing.len() as u64;
        self.missing_paths = missing
            .iter()
            .take(SUMMARY_PATHS)
            .map(|(p, pkg)| with_package(&escape_path(p), pkg))
            .collect();
    }

    pub(super) fn count(&mut self, r: &Record<'_>) {
        use hashsweep_known::packages::PackageCheck;
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
    pub(super) fn human(&self) -> String {
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
    pub fn new(role: &'static str, s: &SourceInfo, now: SystemTime) -> KnownSet {
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
            age_days: age_days(s.modified, now),
            bloom: None,
        }
    }

    /// A DCSO Bloom filter (format `circl_bloom`): its values inserted as digests.
    pub fn bloom(
        role: &'static str,
        f: &hashsweep_known::bloom::BloomFilter,
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
    pub fn ioc(role: &'static str, l: &hashsweep_known::ioc::IocList, now: SystemTime) -> Self {
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
        let age = self
            .age_days
            .map(|d| format!(", {} old", counted(d, "day", "days")))
            .unwrap_or_default();
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
                    "{role}: {} ({release}, {} layout, {} SHA-256{age})",
                    self.path,
                    r.layout.as_str(),
                    self.digests
                )
            }
            None => match &self.bloom {
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
            },
        }
    }
}

impl Summary {
    /// With `--circl`: its line (see [`circl_human`]).
    pub fn circl_line(&self) -> Option<String> {
        self.circl.as_ref().map(circl_human)
    }

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
        if r.yara.is_some() {
            self.yara_matched += 1;
            // A known_good file a rule matched is named among the detections too.
            if !r.verdict.is_detection() && self.detected_paths.len() < SUMMARY_PATHS {
                self.detected_paths.push(summary_name(r));
            }
        }
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
        // A --yara match is a detection whatever the verdict (known_good included).
        if self.detections > 0 || self.yara_matched > 0 {
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
        if let Some(y) = &self.yara {
            s.push_str(&format!("\nhashsweep: {}", y.human()));
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
            let formats: Vec<&str> = hashsweep_core::archive_format::Format::ALL
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
        if let Some(line) = self.circl_line() {
            s.push_str(&format!("\nhashsweep: {line}"));
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
