//! Report stage: writes one record per path in the chosen format, then the summary.
//!
//! The record fields and verdict words are a contract scripts rely on. Records are streamed one
//! at a time from the joined results (no second copy of the whole report is built). Paths are
//! kept byte-exact: `path` is UTF-8 (lossy) and `path_bytes` (base64 of the raw bytes) appears
//! only when the name is not valid UTF-8.

pub mod audit;
mod change;
pub mod ecs;
pub mod fields;
mod html;
pub mod read;
pub mod rules;
pub mod scanned;
mod summary;
mod table;

use std::io::{self, Write};
use std::path::Path;
use std::time::SystemTime;

use serde::Serialize;

use hashsweep_core::digest::{Algo, Digests, hex_lower};
use hashsweep_lookup::Answer;
use hashsweep_lookup::verdict::Verdict;

pub use change::{Change, ChangeCounts, DiffChange};
use fields::{JsonRecord, Optional, View};
pub use summary::{
    BloomSummary, KnownSet, LIST_MAX_AGE_DAYS, PackageDatabase, PackageSummary, SUMMARY_ERRORS,
    SUMMARY_PATHS, Summary, YaraSummary, age_days, summary_reason,
};
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
    pub ioc: Option<hashsweep_known::ioc::IocMatch<'a>>,
    /// With `source: circl` (`--circl`): CIRCL hashlookup's record of the file (`list_entry`
    /// describes it).
    pub circl: Option<&'a hashsweep_lookup::circl::CirclRecord>,
    /// A symlink that was not followed (ECS `file.type: symlink`).
    pub symlink: bool,
    /// A running program's image (`--processes`): the process it belongs to.
    pub process: Option<&'a scanned::ProcessInfo>,
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
    pub package: Option<&'a hashsweep_known::packages::Package>,
    pub package_check: Option<hashsweep_known::packages::PackageCheck>,
    /// With `--yara`: the rules that matched the file's bytes (never empty when set).
    pub yara: Option<&'a [rules::RuleHit]>,
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
            yara: None,
        }
    }

    /// A file that differs from what its package installed (`package_check: modified`).
    pub fn is_modified_package_file(&self) -> bool {
        self.package_check == Some(hashsweep_known::packages::PackageCheck::Modified)
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
    /// `--yara`: the `yara` column (the matching rules' names).
    pub yara: bool,
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
                Optional::Yara => cols.yara,
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
mod tests;
