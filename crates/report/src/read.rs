//! The report reader: streams back an ndjson or json report that hashsweep wrote, for
//! baselines and `diff`. It keeps only what a comparison needs of each record.
//!
//! * **Format** is detected from the first non-blank bytes: `{"records"` (whitespace allowed
//!   after the brace) is a json report, any other `{` starts an ndjson report, anything else is
//!   not a report and is an error (a CSV or table report, a text file, binary data). An empty or
//!   blank file is an empty ndjson report.
//! * **Streaming**: ndjson is read line by line (a line over 4 MiB is skipped, not buffered), json
//!   through serde_json's streaming deserializer over a `BufReader`.
//! * **Paths** are the raw bytes: `path_bytes` (base64) when present, else `path`.
//! * **Bad records** (a line that is not JSON, no path, bad base64 or hex, a field of the wrong
//!   type) are skipped and counted in [`BadRecords`], the first few kept with file and line. A
//!   file where bad records outnumber good ones is rejected ([`ReadError::TooManyBad`]), and
//!   a json report that is not well-formed JSON (truncated, say) fails with its line and column,
//!   since a json document cannot be resynchronised.

use std::cell::Cell;
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Cursor, Read};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use hashsweep_core::digest::Digest;

/// Longest ndjson line read; longer lines are skipped (and counted) without being buffered.
pub(crate) const MAX_LINE: usize = 4 << 20;
/// How many bad records are kept as examples.
const MAX_EXAMPLES: usize = 10;
/// How much whitespace after the opening brace is examined when detecting the format.
const MAX_SNIFF: usize = 4096;

/// Why a report could not be used at all.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot open report {}", path.display())]
    Open { path: PathBuf, source: io::Error },
    #[error("cannot read report {} near line {line}", path.display())]
    Read {
        path: PathBuf,
        line: u64,
        source: io::Error,
    },
    #[error("{} is not a hashsweep ndjson or json report: {reason}", path.display())]
    NotAReport { path: PathBuf, reason: String },
    /// A json report that is not well-formed JSON; the message carries line and column.
    #[error("{}: malformed json report", path.display())]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    /// Its records are ECS documents (`--format ecs`), which describe files for a SIEM and
    /// cannot be read back.
    #[error(
        "{} is an ECS report (--format ecs), which cannot be read back as a baseline or compared; \
         use an ndjson or json report (e.g. -o FILE.ndjson)",
        path.display()
    )]
    Ecs { path: PathBuf },
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
    pub(crate) fn push(&mut self, file: &Path, line: u64, reason: String) {
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

/// One usable record: what a comparison needs of it.
pub struct Rec {
    /// The raw path bytes (`path_bytes` when present, else `path`).
    pub path: Vec<u8>,
    pub sha256: Option<[u8; 32]>,
    pub size: Option<u64>,
    pub verdict: Option<String>,
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
    /// It has an `ecs` object: an ECS document.
    ecs: bool,
}

/// Why a record that is an ECS document is unreadable.
const ECS_RECORD: &str = "an ECS document (--format ecs), not a hashsweep record";

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum Field {
    Path,
    PathBytes,
    Size,
    Sha256,
    Verdict,
    Ecs,
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
                Field::Ecs => {
                    r.ecs = true;
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
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
        (Some(Value::Null) | None, Some(Value::Null) | None) if raw.ecs => {
            return Err(ECS_RECORD.into());
        }
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

fn sniff<R: BufRead>(r: &mut R, path: &Path) -> Result<Sniffed, ReadError> {
    let (mut newlines, mut spaces) = (0u64, 0u64);
    let io_err = |line: u64| {
        move |source| ReadError::Read {
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
        return Err(ReadError::NotAReport {
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
/// Read an ndjson or json report, handing each usable record to `on_record`; returns the
/// records that were skipped.
pub fn read_report(path: &Path, mut on_record: impl FnMut(Rec)) -> Result<BadRecords, ReadError> {
    let file = File::open(path).map_err(|source| ReadError::Open {
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
        if bad.first.first().is_some_and(|b| b.reason == ECS_RECORD) {
            return Err(ReadError::Ecs {
                path: path.to_path_buf(),
            });
        }
        let first = bad.first.first().cloned().unwrap_or_else(|| BadRecord {
            file: path.to_path_buf(),
            line: 0,
            reason: "unknown".into(),
        });
        return Err(ReadError::TooManyBad {
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
) -> Result<(), ReadError> {
    let mut line = line_offset;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let read =
            read_line_capped(&mut r, &mut buf, MAX_LINE).map_err(|source| ReadError::Read {
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
) -> Result<(), ReadError> {
    let counted = LineCounter { inner: r, lines };
    let mut de = serde_json::Deserializer::from_reader(counted);
    let mut sink = |raw: RawRecord| {
        let line = raw.line.unwrap_or(0);
        take(line, Ok(raw));
    };
    let json_err = |e: serde_json::Error| {
        if e.is_io() {
            ReadError::Read {
                path: path.to_path_buf(),
                line: e.line() as u64,
                source: io::Error::from(e),
            }
        } else {
            ReadError::Json {
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

/// A lower- or upper-case SHA-256 hex string as bytes; `None` for anything else.
pub fn parse_sha256(hex: &str) -> Option<[u8; 32]> {
    match Digest::from_hex(hex)? {
        Digest::Sha256(d) => Some(d),
        _ => None,
    }
}
