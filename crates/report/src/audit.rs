//! Audits: compare a run with a previous report, the way hashdeep's audit mode does.
//!
//! [`Baseline::load`] reads an old ndjson or json report (through [`crate::read`]);
//! [`Baseline::change`] then says, for each path of the new run, whether it is `new`, `modified`
//! or `unchanged`, and [`Baseline::removed`] lists the old paths the new run never mentioned.
//! [`diff`] does the same for two reports on disk (`hashsweep diff OLD NEW`).
//!
//! * **Memory**: per old path only the raw path bytes, the binary sha256, the size and an index
//!   into a small table of verdict words are kept.
//! * **Paths** are keyed by their raw bytes. Lists are sorted in [`Path`] order
//!   (component-wise), ties broken by the raw bytes.
//! * **Comparison** (`unchanged` is a claim that the content is the same):
//!   both records have a sha256 → `unchanged` if equal, else `modified`;
//!   exactly one has a sha256 (the file became unreadable, skipped, or readable again) →
//!   `modified`, since nothing vouches that the content is the same;
//!   neither has one (skipped or unreadable both times) → `modified` if the verdict word or the
//!   size differs, else `unchanged`.
//!   A verdict change with the same sha256 (a new signature) is still `unchanged`; [`diff`]
//!   carries both verdicts so callers can report it.
//! * If a path appears twice in the old report, the later record wins.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::read::{BadRecords, ReadError, Rec, parse_sha256, read_report};
use crate::{Change, DiffChange, Record, split_path};
use hashsweep_core::digest::hex_lower;
use hashsweep_lookup::Verdict;

/// Why a baseline or a report to compare could not be used at all.
pub type BaselineError = ReadError;

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
        let mut b = Baseline::empty(path);
        b.bad = read_report(path, |rec| b.insert(rec))?;
        Ok(b)
    }

    /// A baseline with no paths (the first night of a nightly audit, before any report
    /// exists): every path of the run is `new`.
    pub fn empty(path: &Path) -> Baseline {
        Baseline {
            source: path.to_path_buf(),
            entries: HashMap::new(),
            verdicts: Vec::new(),
            verdict_index: HashMap::new(),
            bad: BadRecords::default(),
        }
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
        let e = self.entries.get(path.as_os_str().as_encoded_bytes())?;
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
        self.mark(
            path.as_os_str().as_encoded_bytes(),
            sha256,
            size,
            Some(&word),
        )
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

impl DiffEntry {
    /// A path in both reports whose verdict word differs (a new signature, a digest the
    /// service now knows): a change even when the content is the same.
    pub fn verdict_changed(&self) -> bool {
        matches!(self.change, DiffChange::Unchanged | DiffChange::Modified)
            && self.old_verdict.is_some()
            && self.new_verdict.is_some()
            && self.old_verdict != self.new_verdict
    }
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
    hashsweep_core::platform::path_from_vec(bytes)
}

/// `Path` order, then raw bytes (paths equal as `Path` but spelled differently).
fn path_order(a: &Path, b: &Path) -> std::cmp::Ordering {
    a.cmp(b).then_with(|| {
        a.as_os_str()
            .as_encoded_bytes()
            .cmp(b.as_os_str().as_encoded_bytes())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read::MAX_LINE;
    use crate::{Format, Summary, reporter};
    use std::fs::File;
    use std::io::Write;

    /// A test record: raw path, digest byte (sha256 is 32 copies), size, verdict.
    struct R<'a>(&'a [u8], Option<u8>, Option<u64>, Verdict);

    fn sha(n: u8) -> [u8; 32] {
        [n; 32]
    }

    fn p(bytes: &[u8]) -> &'static Path {
        Box::leak(hashsweep_core::platform::path_from_vec(bytes.to_vec()).into_boxed_path())
    }

    /// Write a report with the real reporter.
    fn write_report(dir: &Path, name: &str, format: Format, recs: &[R<'_>]) -> PathBuf {
        let out = dir.join(name);
        let file = File::create(&out).expect("create report");
        let mut w = reporter(format, Box::new(file), crate::Columns::default());
        for r in recs {
            let rec = Record {
                size: r.2,
                sha256: r.1.map(|n| hex_lower(&sha(n))),
                ..Record::new(Some(p(r.0)), r.3.clone())
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

    // Unix only: a name of raw non-UTF-8 bytes exists only there (Windows: platform::tests).
    #[cfg(unix)]
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
            size: Some(1),
            sha256: Some(hex),
            ..Record::new(Some(Path::new("a")), Verdict::Infected)
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

    // Unix only: a name of raw non-UTF-8 bytes exists only there.
    #[cfg(unix)]
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
