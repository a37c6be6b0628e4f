//! Baselines: compare a run with a previous report, the way hashdeep's audit mode does.
//!
//! [`Baseline::load`] reads an old ndjson or json report; [`Baseline::change`] then says, for
//! each path of the new run, whether it is `new`, `modified` or `unchanged`, and
//! [`Baseline::removed`] lists the old paths the new run never mentioned. [`diff`] does the same
//! for two reports on disk (`hashsweep diff OLD NEW`).
//!
//! * **Format** is detected from the first non-blank bytes: `{"records"` (whitespace allowed
//!   after the brace) is a json report, any other `{` starts an ndjson report, anything else is
//!   not a report and is an error (a CSV or table report, a text file, binary data). An empty or
//!   blank file is an empty ndjson report.
//! * **Streaming**: ndjson is read line by line (a line over 4 MiB is skipped, not buffered), json
//!   through serde_json's streaming deserializer over a `BufReader`. Per old path only the raw
//!   path bytes, the binary sha256, the size and an index into a small table of verdict words are
//!   kept.
//! * **Paths** are keyed by their raw bytes: `path_bytes` (base64) when present, else `path`.
//!   Lists are sorted in [`Path`] order (component-wise), ties broken by the raw bytes.
//! * **Comparison** (`unchanged` is a claim that the content is the same):
//!   both records have a sha256 → `unchanged` if equal, else `modified`;
//!   exactly one has a sha256 (the file became unreadable, skipped, or readable again) →
//!   `modified`, since nothing vouches that the content is the same;
//!   neither has one (skipped or unreadable both times) → `modified` if the verdict word or the
//!   size differs, else `unchanged`.
//!   A verdict change with the same sha256 (a new signature) is still `unchanged`; [`diff`]
//!   carries both verdicts so callers can report it.
//! * **Bad records** (a line that is not JSON, no path, bad base64 or hex, a field of the wrong
//!   type) are skipped and counted in [`BadRecords`], the first few kept with file and line. A
//!   file where bad records outnumber good ones is rejected ([`BaselineError::TooManyBad`]), and
//!   a json report that is not well-formed JSON (truncated, say) fails with its line and column,
//!   since a json document cannot be resynchronised. If a path appears twice in the old report,
//!   the later record wins.

use std::cell::Cell;
use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Cursor, Read};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::digest::{Digest, hex_lower};
use crate::report::{Record, split_path};
use crate::verdict::Verdict;

/// Longest ndjson line read; longer lines are skipped (and counted) without being buffered.
const MAX_LINE: usize = 4 << 20;
/// How many bad records are kept as examples.
const MAX_EXAMPLES: usize = 10;
/// How much whitespace after the opening brace is examined when detecting the format.
const MAX_SNIFF: usize = 4096;

/// What happened to one path of the new run relative to the baseline. The words are a contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    /// Not in the old report.
    New,
    /// In the old report with different content (see the module docs for records without digest).
    Modified,
    /// In the old report with the same content.
    Unchanged,
}

impl Change {
    pub fn as_str(self) -> &'static str {
        match self {
            Change::New => "new",
            Change::Modified => "modified",
            Change::Unchanged => "unchanged",
        }
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A [`Change`], or a path of the old report that the new one does not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiffChange {
    New,
    Modified,
    Unchanged,
    Removed,
}

impl DiffChange {
    pub fn as_str(self) -> &'static str {
        match self {
            DiffChange::New => "new",
            DiffChange::Modified => "modified",
            DiffChange::Unchanged => "unchanged",
            DiffChange::Removed => "removed",
        }
    }
}

impl From<Change> for DiffChange {
    fn from(c: Change) -> Self {
        match c {
            Change::New => DiffChange::New,
            Change::Modified => DiffChange::Modified,
            Change::Unchanged => DiffChange::Unchanged,
        }
    }
}

impl fmt::Display for DiffChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a report could not be used at all.
#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    #[error("cannot open report {}: {source}", path.display())]
    Open { path: PathBuf, source: io::Error },
    #[error("cannot read report {} near line {line}: {source}", path.display())]
    Read {
        path: PathBuf,
        line: u64,
        source: io::Error,
    },
    #[error("{} is not a hashsweep ndjson or json report: {reason}", path.display())]
    NotAReport { path: PathBuf, reason: String },
    /// A json report that is not well-formed JSON; the message carries line and column.
    #[error("{}: malformed json report: {source}", path.display())]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error(
        "{} is not a usable report: {bad} of {total} records are unreadable (first at {first})",
        path.display()
    )]
    TooManyBad {
        path: PathBuf,
        bad: u64,
        total: u64,
        first: BadRecord,
    },
}

/// One record that was skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRecord {
    pub file: PathBuf,
    /// 1-based; for json, the line where the record starts.
    pub line: u64,
    pub reason: String,
}

impl fmt::Display for BadRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.reason)
    }
}

/// The records of one report that were skipped: how many, and the first few.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BadRecords {
    pub count: u64,
    pub first: Vec<BadRecord>,
}

impl BadRecords {
    fn push(&mut self, file: &Path, line: u64, reason: String) {
        self.count += 1;
        if self.first.len() < MAX_EXAMPLES {
            self.first.push(BadRecord {
                file: file.to_path_buf(),
                line,
                reason,
            });
        }
    }
}

/// What the old report said about one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OldRecord<'a> {
    pub sha256: Option<[u8; 32]>,
    pub size: Option<u64>,
    pub verdict: Option<&'a str>,
}

/// Per old path: only what the comparison needs.
#[derive(Debug, Clone)]
struct Entry {
    sha256: Option<[u8; 32]>,
    size: Option<u64>,
    /// Index into `Baseline::verdicts`.
    verdict: Option<u32>,
    /// Passed to `change` (or met in the new report).
    seen: bool,
}

/// A previous report, loaded for comparison.
#[derive(Debug)]
pub struct Baseline {
    source: PathBuf,
    entries: HashMap<Box<[u8]>, Entry>,
    /// Distinct verdict words of the old report.
    verdicts: Vec<Box<str>>,
    verdict_index: HashMap<Box<str>, u32>,
    bad: BadRecords,
}

impl Baseline {
    /// Read an ndjson or json report. Bad records are skipped and counted (see [`Self::bad`]).
    pub fn load(path: &Path) -> Result<Baseline, BaselineError> {
        let mut b = Baseline {
            source: path.to_path_buf(),
            entries: HashMap::new(),
            verdicts: Vec::new(),
            verdict_index: HashMap::new(),
            bad: BadRecords::default(),
        };
        b.bad = read_report(path, |rec| b.insert(rec))?;
        Ok(b)
    }

    fn insert(&mut self, rec: Rec) {
        let verdict = rec.verdict.and_then(|w| self.intern(w));
        self.entries.insert(
            rec.path.into_boxed_slice(),
            Entry {
                sha256: rec.sha256,
                size: rec.size,
                verdict,
                seen: false,
            },
        );
    }

    fn intern(&mut self, word: String) -> Option<u32> {
        if let Some(&i) = self.verdict_index.get(word.as_str()) {
            return Some(i);
        }
        let i = u32::try_from(self.verdicts.len()).ok()?;
        let word = word.into_boxed_str();
        self.verdicts.push(word.clone());
        self.verdict_index.insert(word, i);
        Some(i)
    }

    /// The report this baseline was read from.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// Paths in the old report.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Records of the old report that were skipped.
    pub fn bad(&self) -> &BadRecords {
        &self.bad
    }

    /// What the old report said about `path`, if it had it.
    pub fn get(&self, path: &Path) -> Option<OldRecord<'_>> {
        let e = self.entries.get(path.as_os_str().as_bytes())?;
        Some(OldRecord {
            sha256: e.sha256,
            size: e.size,
            verdict: e.verdict.map(|i| &*self.verdicts[i as usize]),
        })
    }

    /// Classify one path of the new run and mark it as seen (so it is not [`Self::removed`]).
    pub fn change(
        &mut self,
        path: &Path,
        sha256: Option<&[u8; 32]>,
        size: Option<u64>,
        verdict: &Verdict,
    ) -> Change {
        let word = verdict.to_string();
        self.mark(path.as_os_str().as_bytes(), sha256, size, Some(&word))
            .0
    }

    /// [`Self::change`] for a report record; `None` for a record without a path (`lookup`).
    pub fn change_record(&mut self, r: &Record<'_>) -> Option<Change> {
        let path = r.path?;
        let sha256 = r.sha256.as_deref().and_then(parse_sha256);
        Some(self.change(path, sha256.as_ref(), r.size, &r.verdict))
    }

    /// Old paths never passed to [`Self::change`], sorted.
    pub fn removed(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = self
            .entries
            .iter()
            .filter(|(_, e)| !e.seen)
            .map(|(k, _)| path_from_bytes(k.to_vec()))
            .collect();
        v.sort_by(|a, b| path_order(a, b));
        v
    }

    /// Look `key` up, mark it seen and classify; also returns the old entry.
    fn mark(
        &mut self,
        key: &[u8],
        sha256: Option<&[u8; 32]>,
        size: Option<u64>,
        verdict: Option<&str>,
    ) -> (Change, Option<(Entry, Option<&str>)>) {
        let Some(old) = self.entries.get_mut(key) else {
            return (Change::New, None);
        };
        old.seen = true;
        let old = old.clone();
        let old_verdict = old.verdict.map(|i| &*self.verdicts[i as usize]);
        let change = classify(&old, old_verdict, sha256, size, verdict);
        (change, Some((old, old_verdict)))
    }

    fn diff_entry(&mut self, rec: Rec) -> DiffEntry {
        let (change, old) = self.mark(
            &rec.path,
            rec.sha256.as_ref(),
            rec.size,
            rec.verdict.as_deref(),
        );
        let (old_sha256, old_size, old_verdict) = match old {
            Some((e, v)) => (
                e.sha256.map(|d| hex_lower(&d)),
                e.size,
                v.map(str::to_string),
            ),
            None => (None, None, None),
        };
        DiffEntry {
            path: path_from_bytes(rec.path),
            change: change.into(),
            old_sha256,
            new_sha256: rec.sha256.map(|d| hex_lower(&d)),
            old_size,
            new_size: rec.size,
            old_verdict,
            new_verdict: rec.verdict,
        }
    }

    /// Entries for the old paths never seen, unsorted.
    fn removed_entries(&self) -> impl Iterator<Item = DiffEntry> + '_ {
        self.entries
            .iter()
            .filter(|(_, e)| !e.seen)
            .map(|(k, e)| DiffEntry {
                path: path_from_bytes(k.to_vec()),
                change: DiffChange::Removed,
                old_sha256: e.sha256.map(|d| hex_lower(&d)),
                new_sha256: None,
                old_size: e.size,
                new_size: None,
                old_verdict: e.verdict.map(|i| self.verdicts[i as usize].to_string()),
                new_verdict: None,
            })
    }
}

/// The comparison rule (see the module docs).
fn classify(
    old: &Entry,
    old_verdict: Option<&str>,
    sha256: Option<&[u8; 32]>,
    size: Option<u64>,
    verdict: Option<&str>,
) -> Change {
    match (old.sha256.as_ref(), sha256) {
        (Some(a), Some(b)) if a == b => Change::Unchanged,
        (Some(_), Some(_)) => Change::Modified,
        (None, None) if old.size == size && old_verdict == verdict => Change::Unchanged,
        _ => Change::Modified,
    }
}

/// One line of `hashsweep diff`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffEntry {
    pub path: PathBuf,
    pub change: DiffChange,
    /// Lower-case hex.
    pub old_sha256: Option<String>,
    pub new_sha256: Option<String>,
    pub old_size: Option<u64>,
    pub new_size: Option<u64>,
    pub old_verdict: Option<String>,
    pub new_verdict: Option<String>,
}

/// The JSON shape of a [`DiffEntry`]: `path` (lossy) and, for non-UTF-8 names, `path_bytes`,
/// as in reports.
#[derive(Serialize)]
struct DiffOut<'a> {
    path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    path_bytes: Option<String>,
    change: DiffChange,
    old_sha256: Option<&'a str>,
    new_sha256: Option<&'a str>,
    old_size: Option<u64>,
    new_size: Option<u64>,
    old_verdict: Option<&'a str>,
    new_verdict: Option<&'a str>,
}

impl Serialize for DiffEntry {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (path, path_bytes) = split_path(Some(&self.path));
        DiffOut {
            path,
            path_bytes,
            change: self.change,
            old_sha256: self.old_sha256.as_deref(),
            new_sha256: self.new_sha256.as_deref(),
            old_size: self.old_size,
            new_size: self.new_size,
            old_verdict: self.old_verdict.as_deref(),
            new_verdict: self.new_verdict.as_deref(),
        }
        .serialize(s)
    }
}

/// The result of [`diff`].
#[derive(Debug, Clone, Default)]
pub struct Diff {
    /// Every path of either report, sorted by path.
    pub entries: Vec<DiffEntry>,
    /// Records skipped in each report.
    pub old_bad: BadRecords,
    pub new_bad: BadRecords,
}

/// Compare two reports: every path of the new one (new, modified, unchanged) and every old path
/// it lacks (removed), sorted by path.
pub fn diff(old: &Path, new: &Path) -> Result<Diff, BaselineError> {
    let mut base = Baseline::load(old)?;
    let mut entries = Vec::new();
    let new_bad = read_report(new, |rec| entries.push(base.diff_entry(rec)))?;
    entries.extend(base.removed_entries());
    entries.sort_by(|a, b| path_order(&a.path, &b.path));
    Ok(Diff {
        entries,
        old_bad: base.bad,
        new_bad,
    })
}

fn path_from_bytes(bytes: Vec<u8>) -> PathBuf {
    PathBuf::from(OsString::from_vec(bytes))
}

/// `Path` order, then raw bytes (paths equal as `Path` but spelled differently).
fn path_order(a: &Path, b: &Path) -> std::cmp::Ordering {
    a.cmp(b)
        .then_with(|| a.as_os_str().as_bytes().cmp(b.as_os_str().as_bytes()))
}

fn parse_sha256(hex: &str) -> Option<[u8; 32]> {
    match Digest::from_hex(hex)? {
        Digest::Sha256(d) => Some(d),
        _ => None,
    }
}

// ---- reading reports ------------------------------------------------------------------------

/// One usable record.
struct Rec {
    path: Vec<u8>,
    sha256: Option<[u8; 32]>,
    size: Option<u64>,
    verdict: Option<String>,
}

/// One record as parsed: only the fields the comparison needs, each as whatever JSON it held, so
/// a wrong type skips the record instead of failing the file. Other fields are skipped unread.
#[derive(Default)]
struct RawRecord {
    /// 1-based start line, when known (json).
    line: Option<u64>,
    /// Not an object: what it was.
    not_object: Option<&'static str>,
    duplicate: Option<&'static str>,
    path: Option<Value>,
    path_bytes: Option<Value>,
    size: Option<Value>,
    sha256: Option<Value>,
    verdict: Option<Value>,
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum Field {
    Path,
    PathBytes,
    Size,
    Sha256,
    Verdict,
    #[serde(other)]
    Other,
}

/// Visits one record; `lines` counts the newlines read so far (json only).
struct RawVisitor<'a> {
    lines: Option<&'a Cell<u64>>,
}

impl RawVisitor<'_> {
    fn not_object(what: &'static str) -> RawRecord {
        RawRecord {
            not_object: Some(what),
            ..RawRecord::default()
        }
    }
}

impl<'de> Visitor<'de> for RawVisitor<'_> {
    type Value = RawRecord;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a report record")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawRecord, A::Error> {
        let mut r = RawRecord {
            line: self.lines.map(|l| l.get() + 1),
            ..RawRecord::default()
        };
        while let Some(key) = map.next_key::<Field>()? {
            let (slot, name) = match key {
                Field::Path => (&mut r.path, "path"),
                Field::PathBytes => (&mut r.path_bytes, "path_bytes"),
                Field::Size => (&mut r.size, "size"),
                Field::Sha256 => (&mut r.sha256, "sha256"),
                Field::Verdict => (&mut r.verdict, "verdict"),
                Field::Other => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            if slot.is_some() {
                r.duplicate = Some(name);
            }
            *slot = Some(map.next_value::<Value>()?);
        }
        Ok(r)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawRecord, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Self::not_object("an array"))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<RawRecord, E> {
        Ok(Self::not_object("a boolean"))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<RawRecord, E> {
        Ok(Self::not_object("a number"))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<RawRecord, E> {
        Ok(Self::not_object("a number"))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<RawRecord, E> {
        Ok(Self::not_object("a number"))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<RawRecord, E> {
        Ok(Self::not_object("a string"))
    }

    fn visit_unit<E: de::Error>(self) -> Result<RawRecord, E> {
        Ok(Self::not_object("null"))
    }
}

impl<'de> Deserialize<'de> for RawRecord {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RawVisitor { lines: None })
    }
}

/// The top-level json object: `records` streamed into `sink`, everything else skipped.
struct TopVisitor<'a, F> {
    lines: &'a Cell<u64>,
    sink: &'a mut F,
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum TopField {
    Records,
    #[serde(other)]
    Other,
}

impl<'de, F: FnMut(RawRecord)> Visitor<'de> for TopVisitor<'_, F> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(r#"a report object {"records":[...],"summary":{...}}"#)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<TopField>()? {
            match key {
                TopField::Records => map.next_value_seed(RecordsSeed {
                    lines: self.lines,
                    sink: &mut *self.sink,
                })?,
                TopField::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// The `records` array, one element at a time.
struct RecordsSeed<'a, F> {
    lines: &'a Cell<u64>,
    sink: &'a mut F,
}

impl<'de, F: FnMut(RawRecord)> DeserializeSeed<'de> for RecordsSeed<'_, F> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, F: FnMut(RawRecord)> Visitor<'de> for RecordsSeed<'_, F> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of records")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(mut raw) = seq.next_element_seed(RecordSeed { lines: self.lines })? {
            raw.line.get_or_insert(self.lines.get() + 1);
            (self.sink)(raw);
        }
        Ok(())
    }
}

struct RecordSeed<'a> {
    lines: &'a Cell<u64>,
}

impl<'de> DeserializeSeed<'de> for RecordSeed<'_> {
    type Value = RawRecord;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<RawRecord, D::Error> {
        d.deserialize_any(RawVisitor {
            lines: Some(self.lines),
        })
    }
}

/// Counts the newlines that pass through (serde_json reads one byte at a time, so this is the
/// parser's position).
struct LineCounter<'a, R> {
    inner: R,
    lines: &'a Cell<u64>,
}

impl<R: Read> Read for LineCounter<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let nl = buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        self.lines.set(self.lines.get() + nl);
        Ok(n)
    }
}

/// Check a parsed record and keep what the comparison needs; `Err` is the reason to skip it.
fn validate(raw: RawRecord) -> Result<Rec, String> {
    if let Some(what) = raw.not_object {
        return Err(format!("a record must be a JSON object, not {what}"));
    }
    if let Some(name) = raw.duplicate {
        return Err(format!("field `{name}` appears twice"));
    }
    let path = match (raw.path_bytes, raw.path) {
        (Some(Value::String(b64)), _) => base64::engine::general_purpose::STANDARD
            .decode(b64.as_bytes())
            .map_err(|e| format!("`path_bytes` is not valid base64: {e}"))?,
        (Some(Value::Null) | None, Some(Value::String(p))) => p.into_bytes(),
        (Some(Value::Null) | None, Some(Value::Null) | None) => {
            return Err("no path (a record of `hashsweep lookup`?)".into());
        }
        (Some(v), _) => return Err(format!("`path_bytes` is not a string: {}", brief(&v))),
        (_, Some(v)) => return Err(format!("`path` is not a string: {}", brief(&v))),
    };
    if path.is_empty() {
        return Err("empty path".into());
    }
    let sha256 = match raw.sha256 {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(
            parse_sha256(&s)
                .ok_or_else(|| format!("`sha256` is not 64 hex digits: {}", brief_str(&s)))?,
        ),
        Some(v) => return Err(format!("`sha256` is not a string: {}", brief(&v))),
    };
    let size = match raw.size {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) if n.as_u64().is_some() => n.as_u64(),
        Some(v) => return Err(format!("`size` is not a byte count: {}", brief(&v))),
    };
    let verdict = match raw.verdict {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(v) => return Err(format!("`verdict` is not a string: {}", brief(&v))),
    };
    Ok(Rec {
        path,
        sha256,
        size,
        verdict,
    })
}

/// A JSON value for a message, cut short.
fn brief(v: &Value) -> String {
    brief_str(&v.to_string())
}

fn brief_str(s: &str) -> String {
    const MAX: usize = 80;
    match s.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

enum Kind {
    Ndjson,
    Json,
}

/// The first bytes of a report, read to tell the format, to be put back in front of the rest.
struct Sniffed {
    kind: Kind,
    /// Leading blank lines, and the whitespace before the first byte on its line (not kept).
    newlines: u64,
    spaces: u64,
    /// From the first non-blank byte on.
    head: Vec<u8>,
}

fn is_json_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

fn peek_byte<R: BufRead>(r: &mut R) -> io::Result<Option<u8>> {
    Ok(r.fill_buf()?.first().copied())
}

fn sniff<R: BufRead>(r: &mut R, path: &Path) -> Result<Sniffed, BaselineError> {
    let (mut newlines, mut spaces) = (0u64, 0u64);
    let io_err = |line: u64| {
        move |source| BaselineError::Read {
            path: path.to_path_buf(),
            line,
            source,
        }
    };
    loop {
        let buf = r.fill_buf().map_err(io_err(newlines + 1))?;
        if buf.is_empty() {
            return Ok(Sniffed {
                kind: Kind::Ndjson,
                newlines,
                spaces,
                head: Vec::new(),
            });
        }
        let ws = buf.iter().take_while(|&&b| is_json_ws(b)).count();
        for &b in &buf[..ws] {
            if b == b'\n' {
                newlines += 1;
                spaces = 0;
            } else {
                spaces += 1;
            }
        }
        let done = ws < buf.len();
        r.consume(ws);
        if done {
            break;
        }
    }
    let line = newlines + 1;
    let buf = r.fill_buf().map_err(io_err(line))?;
    if buf.first() != Some(&b'{') {
        return Err(BaselineError::NotAReport {
            path: path.to_path_buf(),
            reason: describe_start(buf, line),
        });
    }
    let mut head = vec![b'{'];
    r.consume(1);
    while let Some(b) = peek_byte(r).map_err(io_err(line))? {
        if !is_json_ws(b) || head.len() > MAX_SNIFF {
            break;
        }
        head.push(b);
        r.consume(1);
    }
    let key_start = head.len();
    const KEY: &[u8] = br#""records""#;
    while head.len() - key_start < KEY.len() {
        match peek_byte(r).map_err(io_err(line))? {
            Some(b) => {
                head.push(b);
                r.consume(1);
            }
            None => break,
        }
    }
    let kind = if &head[key_start..] == KEY {
        Kind::Json
    } else {
        Kind::Ndjson
    };
    Ok(Sniffed {
        kind,
        newlines,
        spaces,
        head,
    })
}

/// Why a file whose first non-blank byte is not `{` is not a report.
fn describe_start(buf: &[u8], line: u64) -> String {
    let start = &buf[..buf.len().min(64)];
    if start.starts_with(b"path,") {
        return "it looks like a CSV report; use a report written with --format ndjson or json"
            .into();
    }
    if start.starts_with(b"VERDICT ") {
        return "it looks like a table report; use a report written with --format ndjson or json"
            .into();
    }
    match std::str::from_utf8(start) {
        Ok(s) if !s.contains('\0') => {
            let first = s.lines().next().unwrap_or_default();
            format!(
                "line {line} starts with {:?}, not a JSON object",
                brief_str(first)
            )
        }
        _ => format!("line {line} starts with binary data, not a JSON object"),
    }
}

/// Stream the usable records of an ndjson or json report into `on_record`; returns the skipped
/// ones. Fails when the file is not a report, or when bad records outnumber good ones.
fn read_report(path: &Path, mut on_record: impl FnMut(Rec)) -> Result<BadRecords, BaselineError> {
    let file = File::open(path).map_err(|source| BaselineError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    let mut r = BufReader::with_capacity(1 << 16, file);
    let sniffed = sniff(&mut r, path)?;
    let mut bad = BadRecords::default();
    let mut good = 0u64;
    let mut take = |line: u64, raw: Result<RawRecord, String>| match raw.and_then(validate) {
        Ok(rec) => {
            good += 1;
            on_record(rec);
        }
        Err(reason) => bad.push(path, line, reason),
    };
    let rest = Cursor::new(sniffed.head).chain(r);
    match sniffed.kind {
        Kind::Ndjson => read_ndjson(rest, path, sniffed.newlines, &mut take)?,
        Kind::Json => {
            // Put the skipped whitespace back so serde_json's line and column are the file's.
            let lead = io::repeat(b'\n')
                .take(sniffed.newlines)
                .chain(io::repeat(b' ').take(sniffed.spaces));
            let lines = Cell::new(0);
            read_json(lead.chain(rest), path, &lines, &mut take)?;
        }
    }
    if bad.count > good {
        let first = bad.first.first().cloned().unwrap_or_else(|| BadRecord {
            file: path.to_path_buf(),
            line: 0,
            reason: "unknown".into(),
        });
        return Err(BaselineError::TooManyBad {
            path: path.to_path_buf(),
            bad: bad.count,
            total: bad.count + good,
            first,
        });
    }
    Ok(bad)
}

/// One JSON object per line; blank lines are ignored, `line_offset` blank lines were skipped.
fn read_ndjson<R: BufRead>(
    mut r: R,
    path: &Path,
    line_offset: u64,
    take: &mut impl FnMut(u64, Result<RawRecord, String>),
) -> Result<(), BaselineError> {
    let mut line = line_offset;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let read =
            read_line_capped(&mut r, &mut buf, MAX_LINE).map_err(|source| BaselineError::Read {
                path: path.to_path_buf(),
                line: line + 1,
                source,
            })?;
        line += 1;
        let text = match read {
            LineRead::Eof => return Ok(()),
            LineRead::TooLong => {
                take(line, Err(format!("line longer than {MAX_LINE} bytes")));
                continue;
            }
            LineRead::Line => buf.trim_ascii(),
        };
        if text.is_empty() {
            continue;
        }
        let raw = serde_json::from_slice::<RawRecord>(text)
            .map_err(|e| format!("not a JSON record: {e}"));
        take(line, raw);
    }
}

enum LineRead {
    Eof,
    Line,
    /// Longer than the cap: skipped up to and including its newline.
    TooLong,
}

/// `read_until` a newline, but never buffer more than `cap` bytes of one line.
fn read_line_capped<R: BufRead>(r: &mut R, buf: &mut Vec<u8>, cap: usize) -> io::Result<LineRead> {
    let n = r.by_ref().take(cap as u64 + 1).read_until(b'\n', buf)?;
    if n == 0 {
        return Ok(LineRead::Eof);
    }
    if n <= cap || buf.last() == Some(&b'\n') {
        return Ok(LineRead::Line);
    }
    loop {
        let avail = r.fill_buf()?;
        if avail.is_empty() {
            break;
        }
        match avail.iter().position(|&b| b == b'\n') {
            Some(i) => {
                r.consume(i + 1);
                break;
            }
            None => {
                let len = avail.len();
                r.consume(len);
            }
        }
    }
    Ok(LineRead::TooLong)
}

/// A `{"records":[...],...}` document, streamed; `lines` counts the newlines read.
fn read_json<R: Read>(
    r: R,
    path: &Path,
    lines: &Cell<u64>,
    take: &mut impl FnMut(u64, Result<RawRecord, String>),
) -> Result<(), BaselineError> {
    let counted = LineCounter { inner: r, lines };
    let mut de = serde_json::Deserializer::from_reader(counted);
    let mut sink = |raw: RawRecord| {
        let line = raw.line.unwrap_or(0);
        take(line, Ok(raw));
    };
    let json_err = |e: serde_json::Error| {
        if e.is_io() {
            BaselineError::Read {
                path: path.to_path_buf(),
                line: e.line() as u64,
                source: io::Error::from(e),
            }
        } else {
            BaselineError::Json {
                path: path.to_path_buf(),
                source: e,
            }
        }
    };
    de::Deserializer::deserialize_map(
        &mut de,
        TopVisitor {
            lines,
            sink: &mut sink,
        },
    )
    .map_err(json_err)?;
    de.end().map_err(json_err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Format, Summary, reporter};
    use std::ffi::OsStr;
    use std::io::Write;

    /// A test record: raw path, digest byte (sha256 is 32 copies), size, verdict.
    struct R<'a>(&'a [u8], Option<u8>, Option<u64>, Verdict);

    fn sha(n: u8) -> [u8; 32] {
        [n; 32]
    }

    fn p(bytes: &[u8]) -> &Path {
        Path::new(OsStr::from_bytes(bytes))
    }

    /// Write a report with the real reporter.
    fn write_report(dir: &Path, name: &str, format: Format, recs: &[R<'_>]) -> PathBuf {
        let out = dir.join(name);
        let file = File::create(&out).expect("create report");
        let mut w = reporter(format, Box::new(file), crate::report::Columns::default());
        for r in recs {
            let rec = Record {
                path: Some(p(r.0)),
                size: r.2,
                mtime: None,
                inode: None,
                sha256: r.1.map(|n| hex_lower(&sha(n))),
                md5: None,
                sha1: None,
                verdict: r.3.clone(),
                answer: None,
                error: None,
                note: None,
                change: None,
                source: None,
            };
            w.record(&rec).expect("write record");
        }
        w.finish(&Summary::default()).expect("finish report");
        out
    }

    fn write_raw(dir: &Path, name: &str, content: &[u8]) -> PathBuf {
        let out = dir.join(name);
        File::create(&out)
            .and_then(|mut f| f.write_all(content))
            .expect("write file");
        out
    }

    fn old_records() -> Vec<R<'static>> {
        vec![
            R(b"tree/same", Some(1), Some(10), Verdict::Clean),
            R(b"tree/edited", Some(2), Some(20), Verdict::Clean),
            R(b"tree/gone", Some(3), Some(30), Verdict::Infected),
            R(b"tree/also-gone", None, None, Verdict::Skipped),
        ]
    }

    fn check_classification(b: &mut Baseline) {
        assert_eq!(b.len(), 4);
        assert_eq!(b.bad().count, 0);
        assert_eq!(
            b.change(p(b"tree/same"), Some(&sha(1)), Some(10), &Verdict::Clean),
            Change::Unchanged
        );
        assert_eq!(
            b.change(p(b"tree/edited"), Some(&sha(9)), Some(20), &Verdict::Clean),
            Change::Modified
        );
        assert_eq!(
            b.change(p(b"tree/fresh"), Some(&sha(4)), Some(1), &Verdict::Clean),
            Change::New
        );
        assert_eq!(
            b.removed(),
            vec![PathBuf::from("tree/also-gone"), PathBuf::from("tree/gone")]
        );
        let gone = b.get(p(b"tree/gone")).expect("old record kept");
        assert_eq!(gone.sha256, Some(sha(3)));
        assert_eq!(gone.size, Some(30));
        assert_eq!(gone.verdict, Some("infected"));
    }

    #[test]
    fn ndjson_baseline_classifies_new_modified_unchanged_and_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let old = write_report(dir.path(), "old.ndjson", Format::Ndjson, &old_records());
        let mut b = Baseline::load(&old).expect("load ndjson");
        check_classification(&mut b);
    }

    #[test]
    fn json_baseline_classifies_new_modified_unchanged_and_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let old = write_report(dir.path(), "old.json", Format::Json, &old_records());
        let mut b = Baseline::load(&old).expect("load json");
        check_classification(&mut b);
    }

    #[test]
    fn pretty_printed_json_after_blank_lines_is_read_as_json() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = format!(
            "\n\n  {{\n  \"records\": [\n    {{\"path\": \"a\", \"sha256\": \"{}\",\n     \
             \"size\": 1, \"verdict\": \"clean\", \"scan_details\": [{{\"x\": 1}}]}}\n  ],\n  \
             \"summary\": {{\"paths\": 1}}\n}}\n",
            hex_lower(&sha(7))
        );
        let old = write_raw(dir.path(), "pretty.json", text.as_bytes());
        let mut b = Baseline::load(&old).expect("load pretty json");
        assert_eq!(b.len(), 1);
        assert_eq!(
            b.change(p(b"a"), Some(&sha(7)), Some(1), &Verdict::Clean),
            Change::Unchanged
        );
    }

    #[test]
    fn non_utf8_path_is_matched_through_path_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let raw: &[u8] = b"dir/caf\xe9";
        let old = write_report(
            dir.path(),
            "old.ndjson",
            Format::Ndjson,
            &[R(raw, Some(1), Some(5), Verdict::Clean)],
        );
        let text = std::fs::read_to_string(&old).expect("report is UTF-8");
        assert!(text.contains("path_bytes"), "{text}");
        let mut b = Baseline::load(&old).expect("load");
        // The lossy spelling is another name, not this file.
        assert_eq!(
            b.change(
                Path::new("dir/caf\u{fffd}"),
                Some(&sha(1)),
                Some(5),
                &Verdict::Clean
            ),
            Change::New
        );
        assert_eq!(b.removed(), vec![p(raw).to_path_buf()]);
        assert_eq!(
            b.change(p(raw), Some(&sha(1)), Some(5), &Verdict::Clean),
            Change::Unchanged
        );
        assert!(b.removed().is_empty());
    }

    #[test]
    fn records_without_sha256_compare_by_presence_then_verdict_and_size() {
        let dir = tempfile::tempdir().expect("tempdir");
        let old = write_report(
            dir.path(),
            "old.ndjson",
            Format::Ndjson,
            &[
                R(b"fifo", None, None, Verdict::Skipped),
                R(b"big", None, Some(100), Verdict::Skipped),
                R(b"locked", None, None, Verdict::Error),
                R(b"hashed", Some(1), Some(3), Verdict::Error),
            ],
        );
        let text = std::fs::read_to_string(&old).expect("read");
        assert!(text.contains("\"sha256\":null"), "{text}");
        let mut b = Baseline::load(&old).expect("load");
        // Neither side has a digest: verdict and size decide.
        assert_eq!(
            b.change(p(b"fifo"), None, None, &Verdict::Skipped),
            Change::Unchanged
        );
        assert_eq!(
            b.change(p(b"big"), None, Some(101), &Verdict::Skipped),
            Change::Modified
        );
        assert_eq!(
            b.change(p(b"locked"), None, None, &Verdict::Skipped),
            Change::Modified
        );
        // Only one side has a digest: modified even with the same verdict and size.
        assert_eq!(
            b.change(p(b"hashed"), None, Some(3), &Verdict::Error),
            Change::Modified
        );
        assert_eq!(
            b.change(p(b"fifo"), Some(&sha(2)), None, &Verdict::Skipped),
            Change::Modified
        );
    }

    #[test]
    fn change_record_takes_the_hex_digest_of_a_report_record() {
        let dir = tempfile::tempdir().expect("tempdir");
        let old = write_report(
            dir.path(),
            "old.ndjson",
            Format::Ndjson,
            &[R(b"a", Some(1), Some(1), Verdict::Clean)],
        );
        let mut b = Baseline::load(&old).expect("load");
        let hex = hex_lower(&sha(1)).to_ascii_uppercase();
        let mut rec = Record {
            path: Some(Path::new("a")),
            size: Some(1),
            mtime: None,
            inode: None,
            sha256: Some(hex),
            md5: None,
            sha1: None,
            verdict: Verdict::Infected,
            answer: None,
            error: None,
            note: None,
            change: None,
            source: None,
        };
        assert_eq!(b.change_record(&rec), Some(Change::Unchanged));
        rec.sha256 = Some(hex_lower(&sha(2)));
        assert_eq!(b.change_record(&rec), Some(Change::Modified));
        rec.path = None;
        assert_eq!(b.change_record(&rec), None);
    }

    #[test]
    fn malformed_ndjson_lines_are_skipped_and_counted_with_line_numbers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let good = |name: &str| {
            format!(
                "{{\"path\":\"{name}\",\"size\":1,\"sha256\":\"{}\",\"verdict\":\"clean\"}}\n",
                hex_lower(&sha(1))
            )
        };
        let text = format!(
            "{}{{\"path\":\"trunc\",\"si\n{}\n{{\"path\":\"h\",\"sha256\":\"xyz\"}}\n{}",
            good("a"),
            good("b"),
            good("c")
        );
        let old = write_raw(dir.path(), "old.ndjson", text.as_bytes());
        let b = Baseline::load(&old).expect("a few bad lines are tolerated");
        assert_eq!(b.len(), 3);
        assert_eq!(b.bad().count, 2);
        let lines: Vec<u64> = b.bad().first.iter().map(|r| r.line).collect();
        assert_eq!(lines, vec![2, 5]);
        assert!(b.bad().first[1].reason.contains("sha256"), "{:?}", b.bad());
        assert!(
            b.bad().first[0]
                .to_string()
                .starts_with(&format!("{}:2: ", old.display())),
            "{}",
            b.bad().first[0]
        );
    }

    #[test]
    fn overlong_ndjson_line_is_skipped_and_the_next_line_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut text = format!(
            "{{\"path\":\"a\",\"sha256\":null,\"verdict\":\"skipped\"}}\n{{\"path\":\"{}\"}}\n",
            "x".repeat(MAX_LINE)
        );
        text.push_str("{\"path\":\"b\",\"sha256\":null,\"verdict\":\"skipped\"}\n");
        let old = write_raw(dir.path(), "old.ndjson", text.as_bytes());
        let b = Baseline::load(&old).expect("load");
        assert_eq!(b.len(), 2);
        assert_eq!(b.bad().count, 1);
        assert_eq!(b.bad().first[0].line, 2);
        assert!(b.get(p(b"b")).is_some());
    }

    #[test]
    fn mostly_malformed_file_is_rejected_naming_file_and_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = "{\"path\":\"a\",\"sha256\":null}\n{oops\n{\"no_path\":1}\n";
        let old = write_raw(dir.path(), "bad.ndjson", text.as_bytes());
        let err = Baseline::load(&old).expect_err("2 bad of 3");
        assert!(
            matches!(err, BaselineError::TooManyBad { bad: 2, total: 3, ref first, .. } if first.line == 2),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains("bad.ndjson") && msg.contains(":2:"), "{msg}");
    }

    #[test]
    fn json_records_with_bad_fields_are_skipped_with_their_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let h = hex_lower(&sha(1));
        let text = format!(
            "{{\"records\":[\n{{\"path\":\"a\",\"sha256\":\"{h}\"}},\n\
             {{\"path\":\"b\",\"sha256\":\"{h}\"}},\n\
             {{\"path\":\"c\",\n  \"size\":-4}},\n\
             7,\n\
             {{\"path\":\"d\",\"path_bytes\":\"!!\"}},\n\
             {{\"path\":\"e\",\"sha256\":\"{h}\"}},\n\
             {{\"path\":\"f\",\"sha256\":\"{h}\"}}\n],\n\"summary\":{{}}}}\n"
        );
        let old = write_raw(dir.path(), "old.json", text.as_bytes());
        let b = Baseline::load(&old).expect("load");
        assert_eq!(b.len(), 4);
        let lines: Vec<u64> = b.bad().first.iter().map(|r| r.line).collect();
        // A record spanning lines 4-5 is reported at its first line.
        assert_eq!(lines, vec![4, 6, 7], "{:?}", b.bad());
        assert!(b.bad().first[0].reason.contains("size"));
        assert!(b.bad().first[1].reason.contains("object"));
        assert!(b.bad().first[2].reason.contains("base64"));
    }

    #[test]
    fn truncated_json_report_fails_with_file_and_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let full = write_report(dir.path(), "full.json", Format::Json, &old_records());
        let bytes = std::fs::read(&full).expect("read");
        let cut = bytes
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .nth(2)
            .map(|(i, _)| i + 10)
            .expect("at least three lines");
        let old = write_raw(dir.path(), "cut.json", &bytes[..cut]);
        let err = Baseline::load(&old).expect_err("truncated");
        match &err {
            BaselineError::Json { path, source } => {
                assert_eq!(path, &old);
                assert_eq!(source.line(), 4);
            }
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains("cut.json"), "{err}");
    }

    #[test]
    fn empty_reports_load_with_no_entries() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cases = [
            write_raw(dir.path(), "zero.ndjson", b""),
            write_raw(dir.path(), "blank.ndjson", b"\n  \n\t\n"),
            write_report(dir.path(), "empty.json", Format::Json, &[]),
            write_report(dir.path(), "empty.ndjson", Format::Ndjson, &[]),
        ];
        for old in &cases {
            let mut b = Baseline::load(old).unwrap_or_else(|e| panic!("{}: {e}", old.display()));
            assert!(b.is_empty(), "{}", old.display());
            assert_eq!(b.bad().count, 0);
            assert_eq!(
                b.change(p(b"x"), Some(&sha(1)), Some(1), &Verdict::Clean),
                Change::New
            );
            assert!(b.removed().is_empty());
        }
    }

    #[test]
    fn file_that_is_not_a_report_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let csv = write_report(dir.path(), "old.csv", Format::Csv, &old_records());
        let table = write_report(dir.path(), "old.txt", Format::Table, &old_records());
        let text = write_raw(dir.path(), "notes.txt", b"\n hello world\n");
        let binary = write_raw(dir.path(), "blob.bin", b"\x00\x01\x02\xff");
        let array = write_raw(dir.path(), "array.json", b"[1, 2]");
        for (file, hint) in [
            (&csv, "CSV"),
            (&table, "table"),
            (&text, "line 2 starts with \"hello world\""),
            (&binary, "binary"),
            (&array, "line 1"),
        ] {
            let err = Baseline::load(file).expect_err("not a report");
            assert!(
                matches!(err, BaselineError::NotAReport { .. }),
                "{}: {err:?}",
                file.display()
            );
            let msg = err.to_string();
            assert!(msg.contains(&*file.to_string_lossy()), "{msg}");
            assert!(msg.contains(hint), "{msg}");
        }
        // JSON objects of another shape: every line is a bad record.
        let other = write_raw(dir.path(), "other.json", b"{\"name\": 1}\n{\"name\": 2}\n");
        let err = Baseline::load(&other).expect_err("no usable record");
        assert!(
            matches!(
                err,
                BaselineError::TooManyBad {
                    bad: 2,
                    total: 2,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn missing_file_is_an_open_error_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("nope.ndjson");
        let err = Baseline::load(&missing).expect_err("missing");
        assert!(matches!(err, BaselineError::Open { .. }), "{err:?}");
        assert!(err.to_string().contains("nope.ndjson"), "{err}");
    }

    #[test]
    fn diff_of_two_reports_gives_all_four_kinds_in_path_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let old = write_report(
            dir.path(),
            "old.json",
            Format::Json,
            &[
                R(b"d/unchanged", Some(1), Some(1), Verdict::Clean),
                R(b"a/removed", Some(2), Some(2), Verdict::Clean),
                R(b"c/modified", Some(3), Some(3), Verdict::Clean),
            ],
        );
        let new = write_report(
            dir.path(),
            "new.ndjson",
            Format::Ndjson,
            &[
                R(b"c/modified", Some(4), Some(4), Verdict::Infected),
                R(b"d/unchanged", Some(1), Some(1), Verdict::Suspicious),
                R(b"b/new", Some(5), Some(5), Verdict::Clean),
            ],
        );
        let d = diff(&old, &new).expect("diff");
        let got: Vec<(&Path, DiffChange)> = d
            .entries
            .iter()
            .map(|e| (e.path.as_path(), e.change))
            .collect();
        assert_eq!(
            got,
            vec![
                (Path::new("a/removed"), DiffChange::Removed),
                (Path::new("b/new"), DiffChange::New),
                (Path::new("c/modified"), DiffChange::Modified),
                (Path::new("d/unchanged"), DiffChange::Unchanged),
            ]
        );
        let removed = &d.entries[0];
        assert_eq!(removed.old_sha256, Some(hex_lower(&sha(2))));
        assert_eq!(
            (
                removed.new_sha256.as_deref(),
                removed.new_verdict.as_deref()
            ),
            (None, None)
        );
        let new_one = &d.entries[1];
        assert_eq!(
            (new_one.old_sha256.as_deref(), new_one.old_size),
            (None, None)
        );
        assert_eq!(new_one.new_sha256, Some(hex_lower(&sha(5))));
        let modified = &d.entries[2];
        assert_eq!(modified.old_verdict.as_deref(), Some("clean"));
        assert_eq!(modified.new_verdict.as_deref(), Some("infected"));
        assert_eq!((modified.old_size, modified.new_size), (Some(3), Some(4)));
        let unchanged = &d.entries[3];
        assert_eq!(unchanged.new_verdict.as_deref(), Some("suspicious"));
        assert_eq!((d.old_bad.count, d.new_bad.count), (0, 0));
    }

    #[test]
    fn diff_entry_serializes_with_path_bytes_and_change_word() {
        let e = DiffEntry {
            path: p(b"x\xff").to_path_buf(),
            change: DiffChange::Removed,
            old_sha256: Some(hex_lower(&sha(1))),
            new_sha256: None,
            old_size: Some(1),
            new_size: None,
            old_verdict: Some("clean".into()),
            new_verdict: None,
        };
        let v = serde_json::to_value(&e).expect("serialize");
        assert_eq!(v["change"], "removed");
        assert_eq!(v["path_bytes"], "eP8=");
        assert_eq!(v["path"], "x\u{fffd}");
        assert_eq!(
            serde_json::to_value(Change::Modified).expect("serialize"),
            "modified"
        );
        assert_eq!(Change::Unchanged.to_string(), "unchanged");
        assert_eq!(DiffChange::from(Change::New).to_string(), "new");
    }
}
