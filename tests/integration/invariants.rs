//! Property tests for issue 33's invariants of a whole run (the archive ones are in
//! `crates/scan/src/archive/tests.rs`): every input path gets exactly one record; no record is
//! `clean` without the service's answer saying so, over random mixes of answers, errors,
//! throttles and deferrals; a report written, then read back
//! by the report reader and `diff`, gives its own records and no change against itself.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use proptest::prelude::*;

use hashsweep::digest::Digest;
use hashsweep::lookup::batch::LookupBatch;
use hashsweep::lookup::{
    Answer, ClientStats, HashOutcome, LookupError, LookupOptions, ReputationClient, Verdict,
};
use hashsweep::report::{Columns, Format, Record, Summary, reporter};
use hashsweep::scan::hash::HashOptions;
use hashsweep::scan::io::IoOptions;
use hashsweep::scan::plan::BudgetOptions;
use hashsweep::scan::progress::NoProgress;
use hashsweep::scan::walk::WalkOptions;
use hashsweep::scan::{ScanConfig, scan};

/// What the stand-in service does with one digest.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Says {
    /// An answer with this `scan_result_i` and detection count.
    Answer(i64, i64),
    Throttled,
    QuotaSpent,
    Transport,
    Deferred,
    BadAnswer,
    MissingEntry,
}

fn says() -> impl Strategy<Value = Says> {
    prop_oneof![
        3 => (prop_oneof![Just(0i64), Just(1), Just(2), Just(5), Just(7), Just(255)], 0i64..3)
            .prop_map(|(c, n)| Says::Answer(c, n)),
        1 => Just(Says::Throttled),
        1 => Just(Says::QuotaSpent),
        1 => Just(Says::Transport),
        1 => Just(Says::Deferred),
        1 => Just(Says::BadAnswer),
        1 => Just(Says::MissingEntry),
    ]
}

/// The stand-in: each digest's fate is picked by the digest's first byte from `script`, and
/// every answer given is remembered.
struct Scripted {
    script: Vec<Says>,
    told: Mutex<HashMap<Digest, Vec<Says>>>,
}

impl ReputationClient for Scripted {
    fn lookup(&self, batch: &LookupBatch) -> Vec<(Digest, HashOutcome)> {
        let mut out = Vec::new();
        for d in &batch.digests {
            let s = self.script[usize::from(d.as_bytes()[0]) % self.script.len()];
            self.told.lock().unwrap().entry(*d).or_default().push(s);
            let o: HashOutcome = match s {
                Says::Answer(code, n) => Ok(Answer {
                    scan_result_i: code,
                    total_detected_avs: n,
                    data_id: None,
                    details: None,
                    hosts: None,
                }),
                Says::Throttled => Err(LookupError::Throttled("429001 slow down".into())),
                Says::QuotaSpent => Err(LookupError::QuotaSpent("429000 spent".into())),
                Says::Transport => Err(LookupError::Transport("connection reset".into())),
                Says::Deferred => Err(LookupError::Deferred("budget".into())),
                Says::BadAnswer => Err(LookupError::BadAnswer("not JSON".into())),
                Says::MissingEntry => Err(LookupError::MissingEntry),
            };
            out.push((*d, o));
        }
        out
    }

    fn stats(&self) -> ClientStats {
        ClientStats::default()
    }
}

fn config(root: &Path) -> ScanConfig {
    ScanConfig {
        roots: vec![root.to_path_buf()],
        walk: WalkOptions::default(),
        hash: HashOptions::default(),
        threads: 2,
        io: IoOptions::default(),
        lookup: Some(LookupOptions {
            batch_wait: std::time::Duration::from_millis(5),
            ..LookupOptions::default()
        }),
        cache: None,
        rules: None,
        local: None,
        budget: BudgetOptions::default(),
        processes: None,
        packages: None,
    }
}

/// Files of a tree: (folder, content); several files share contents (one digest asked once,
/// several records).
fn tree() -> impl Strategy<Value = Vec<(u8, Vec<u8>)>> {
    proptest::collection::vec((0u8..4, proptest::collection::vec(0u8..4, 0..3)), 1..24)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Every file of the tree is one record, and a record is `clean` only when the service
    /// answered its digest with a clean code (never for an error, a throttle, a deferral, or a
    /// digest never asked).
    #[test]
    fn one_record_per_path_and_no_clean_without_an_answer(
        files in tree(),
        script in proptest::collection::vec(says(), 1..8),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut made = Vec::new();
        for (i, (sub, content)) in files.iter().enumerate() {
            let folder = dir.path().join(format!("d{sub}"));
            std::fs::create_dir_all(&folder).unwrap();
            let p = folder.join(format!("f{i}"));
            std::fs::write(&p, content).unwrap();
            made.push(p);
        }
        let client = Arc::new(Scripted { script, told: Mutex::default() });
        let out = scan(
            &config(dir.path()),
            Some(client.clone() as Arc<dyn ReputationClient>),
            &NoProgress,
            &Arc::new(AtomicBool::new(false)),
        )
        .unwrap();
        let mut got: Vec<PathBuf> = out.files.iter().map(|f| f.path.to_path_buf()).collect();
        got.sort();
        made.sort();
        prop_assert_eq!(&got, &made, "one record per input path");
        let told = client.told.lock().unwrap();
        for f in &out.files {
            let r = out.record(f);
            let digest = r.sha256.as_deref().and_then(Digest::from_hex);
            let said = digest.and_then(|d| told.get(&d));
            if r.verdict == Verdict::Clean {
                let last = said.and_then(|s| s.last());
                prop_assert!(
                    matches!(last, Some(Says::Answer(0, 0))),
                    "{:?} is clean, the service said {:?}", f.path, said
                );
                prop_assert!(r.answer.is_some_and(|a| a.scan_result_i == 0));
            }
            if let Some(s) = said.and_then(|s| s.last()) {
                let errored = !matches!(s, Says::Answer(..));
                prop_assert!(!(errored && r.answer.is_some()), "{:?}: {s:?} but an answer", f.path);
            }
        }
    }
}

/// A name that is not UTF-8 (written as `path_bytes`): a stray byte on Unix; on Windows, whose
/// names are WTF-8, an unpaired surrogate (a stray byte is no name there).
#[cfg(unix)]
const NOT_UTF8: &[u8] = b"caf\xe9";
#[cfg(windows)]
const NOT_UTF8: &[u8] = b"caf\xed\xa0\x80";

/// Paths as reports meet them: plain, with spaces, quotes, commas, newlines, non-UTF-8 bytes
/// (written as `path_bytes`), archive members after `!`.
fn path() -> impl Strategy<Value = Vec<u8>> {
    let part = prop_oneof![
        "[a-z]{1,6}".prop_map(String::into_bytes),
        Just(b"a b".to_vec()),
        Just(b"q\"uote".to_vec()),
        Just(b"c,omma".to_vec()),
        Just(b"new\nline".to_vec()),
        Just(NOT_UTF8.to_vec()),
        Just("ü\u{202e}".as_bytes().to_vec()),
        Just(b"x.zip!inner".to_vec()),
    ];
    proptest::collection::vec(part, 1..4).prop_map(|parts| {
        let mut p = b"/srv".to_vec();
        for x in parts {
            p.push(b'/');
            p.extend_from_slice(&x);
        }
        p
    })
}

fn verdict() -> impl Strategy<Value = Verdict> {
    prop_oneof![
        Just(Verdict::Clean),
        Just(Verdict::Infected),
        Just(Verdict::Suspicious),
        Just(Verdict::Unknown),
        Just(Verdict::Other("encrypted".into())),
        Just(Verdict::Error),
        Just(Verdict::Skipped),
        Just(Verdict::NotLookedUp),
        Just(Verdict::KnownGood),
        Just(Verdict::Deferred),
    ]
}

type Row = (Option<[u8; 32]>, Option<u64>, Verdict);

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// A report (JSON or NDJSON) read back gives the records written, and `diff` of it
    /// against itself changes nothing.
    #[test]
    fn a_report_reads_back_and_diffs_clean_against_itself(
        rows in proptest::collection::btree_map(
            path(),
            (proptest::option::of(any::<[u8; 32]>()), proptest::option::of(any::<u64>()), verdict()),
            0..12,
        ),
        json in any::<bool>(),
    ) {
        let rows: BTreeMap<Vec<u8>, Row> = rows;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(if json { "r.json" } else { "r.ndjson" });
        let paths: Vec<PathBuf> = rows
            .keys()
            .map(|p| hashsweep::platform::path_from_vec(p.clone()))
            .collect();
        {
            let out = std::fs::File::create(&file).unwrap();
            let format = if json { Format::Json } else { Format::Ndjson };
            let mut w = reporter(format, Box::new(out), Columns::default());
            let summary = Summary::default();
            w.begin(&summary).unwrap();
            for (p, (sha, size, v)) in paths.iter().zip(rows.values()) {
                let r = Record {
                    size: *size,
                    sha256: sha.map(|s| hashsweep::digest::hex_lower(&s)),
                    ..Record::new(Some(p), v.clone())
                };
                w.record(&r).unwrap();
            }
            w.finish(&summary).unwrap();
        }
        let mut back: BTreeMap<Vec<u8>, Row> = BTreeMap::new();
        let bad = hashsweep::report::read::read_report(&file, |r| {
            let v = r.verdict.clone().unwrap_or_default();
            back.insert(r.path, (r.sha256, r.size, word(&v)));
        })
        .unwrap();
        prop_assert_eq!(bad.count, 0);
        prop_assert_eq!(&back, &rows);
        let d = hashsweep::audit::diff(&file, &file).unwrap();
        prop_assert_eq!(d.entries.len(), rows.len());
        for e in &d.entries {
            prop_assert_eq!(e.change, hashsweep::report::DiffChange::Unchanged, "{:?}", e);
            prop_assert!(!e.verdict_changed(), "{:?}", e);
        }
    }
}

/// A verdict from its report word.
fn word(w: &str) -> Verdict {
    match w {
        "clean" => Verdict::Clean,
        "infected" => Verdict::Infected,
        "suspicious" => Verdict::Suspicious,
        "unknown" => Verdict::Unknown,
        "error" => Verdict::Error,
        "skipped" => Verdict::Skipped,
        "not_looked_up" => Verdict::NotLookedUp,
        "known_good" => Verdict::KnownGood,
        "deferred" => Verdict::Deferred,
        other => Verdict::Other(other.strip_prefix("other:").unwrap_or(other).to_string()),
    }
}
