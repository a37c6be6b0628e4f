use super::*;
#[cfg(unix)]
use base64::Engine as _;
use hashsweep_lookup::Plan;
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
        processes: Some(scanned::ProcessCounts {
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
        h.contains("crossed network mounts: /mnt/share (nfs), /mnt/ssh (sshfs) (-x keeps a sweep"),
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
