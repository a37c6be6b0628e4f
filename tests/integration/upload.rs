//! `scan --upload-unknown` against the stand-in's file API: the policy (nothing leaves without
//! consent given on the command line or a key that scans privately; excluded paths; kinds;
//! size; budget; order), polling across two runs, and each failure with its own note.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

use crate::util::*;

/// A program (PE), a script and a data file, each unknown to the service.
fn tree() -> Tree {
    let t = Tree::new();
    t.file("bin/tool.exe", b"MZ\x90\x00 an unknown program");
    t.file("run.sh", b"#!/bin/sh\necho an unknown script\n");
    t.file("notes.txt", b"plain data nobody has seen");
    t
}

/// `scan --upload-unknown` with fast polls (`HASHSWEEP_UPLOAD_POLL`).
fn up(mock: &MockServer, root: &Path) -> Command {
    let mut c = scan_cmd(mock, root);
    c.args(ONE_REQUEST)
        .arg("--upload-unknown")
        .env("HASHSWEEP_UPLOAD_POLL", "10ms");
    c
}

fn sha256(data: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn note(r: &Value) -> &str {
    r["note"].as_str().unwrap_or_default()
}

fn check_no_key(out: &Output, mock: &MockServer) {
    for text in [
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    ] {
        assert!(!text.contains(KEY), "the key leaked: {text}");
    }
    for u in mock.uploads() {
        assert!(
            u.other_headers.iter().all(|h| !h.contains(KEY)),
            "{:?}",
            u.other_headers
        );
    }
}

#[test]
fn nothing_leaves_without_accepting_sharing_on_the_command_line() {
    let mock = MockServer::start(Some(KEY)).unwrap();
    let t = tree();
    let out = run(&mut up(&mock, t.path()));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(mock.uploads().is_empty(), "{:?}", mock.uploads());
    let recs = ndjson(&out);
    let exe = rec(&recs, "tool.exe");
    assert_eq!(exe["verdict"], "unknown");
    assert!(note(exe).contains("--upload-accept-sharing"), "{exe}");
    assert!(
        stderr(&out).contains("give --upload-accept-sharing on the command line"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("uploads: 3 unknown"),
        "{}",
        stderr(&out)
    );

    // A config file may turn uploads on, but never accept the sharing.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "[scan]\nupload-unknown = true\n").unwrap();
    let mut c = scan_cmd(&mock, t.path());
    c.args(ONE_REQUEST)
        .env("HASHSWEEP_CONFIG", &config)
        .env("HASHSWEEP_UPLOAD_POLL", "10ms");
    let out = run(&mut c);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(mock.uploads().is_empty());
    assert!(note(rec(&ndjson(&out), "tool.exe")).contains("not accepted"));
    for text in [
        "[scan]\nupload-unknown = true\nupload-accept-sharing = true\n",
        "upload-accept-sharing = true\n",
    ] {
        std::fs::write(&config, text).unwrap();
        let out = run(scan_cmd(&mock, t.path()).env("HASHSWEEP_CONFIG", &config));
        assert_eq!(code(&out), 2, "{}", stderr(&out));
        assert!(
            stderr(&out).contains("upload-accept-sharing is accepted only on the command line"),
            "{}",
            stderr(&out)
        );
    }
    assert!(mock.uploads().is_empty());

    // A key that enforces private scanning needs no consent: nothing is shared.
    mock.set_upload_settings(|s| s.enforce_private_scan = true);
    let out = run(up(&mock, t.path()).args(["--upload-budget", "1"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let ups = mock.uploads();
    assert_eq!(ups.len(), 1, "{ups:?}");
    assert_eq!(ups[0].samplesharing.as_deref(), Some("0"));
    check_no_key(&out, &mock);
}

#[test]
fn an_unknown_program_is_uploaded_and_its_answer_becomes_the_verdict_and_the_cache_answer() {
    let mock = MockServer::start(Some(KEY)).unwrap();
    let t = tree();
    let exe = b"MZ\x90\x00 an unknown program";
    mock.set_upload_result(&sha256(exe), 1, 3);
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("c.sqlite");
    let out = run(up(&mock, t.path())
        .args(["--upload-accept-sharing", "--details", "--cache"])
        .arg(&cache)
        .env_remove("HASHSWEEP_NO_CACHE"));
    assert_eq!(code(&out), 1, "a detection: {}", stderr(&out));
    let ups = mock.uploads();
    // The program and the script (default kinds), program first; not the data file.
    assert_eq!(ups.len(), 2, "{ups:?}");
    assert_eq!(ups[0].sha256, sha256(exe));
    assert_eq!(ups[0].filename.as_deref(), Some("tool.exe"));
    assert_eq!(ups[0].rule.as_deref(), Some("multiscan"));
    assert_eq!(
        ups[0].content_type.as_deref(),
        Some("application/octet-stream")
    );
    assert!(mock.upload_polls() >= 6, "queued twice each, then answered");
    let recs = ndjson(&out);
    let r = rec(&recs, "tool.exe");
    assert_eq!(r["verdict"], "infected", "{r}");
    assert_eq!(r["source"], "upload", "{r}");
    assert_eq!(r["total_detected_avs"], 3);
    assert!(
        r["scan_details"].as_array().is_some_and(|a| !a.is_empty()),
        "{r}"
    );
    assert_eq!(rec(&recs, "run.sh")["verdict"], "clean");
    let data = rec(&recs, "notes.txt");
    assert_eq!(data["verdict"], "unknown");
    assert!(note(data).contains("--upload-kind"), "{data}");
    let err = stderr(&out);
    assert!(
        err.contains(
            "uploads: 3 unknown, 2 uploaded, 2 answered (1 detected), 1 not of an --upload-kind"
        ),
        "{err}"
    );
    check_no_key(&out, &mock);

    assert!(err.contains("waiting up to 5m for 2 scan(s)"), "{err}");

    // The answer is the digest's answer in the cache: the next run neither uploads nor asks.
    let asked = mock.requests().len();
    let out = run(up(&mock, t.path())
        .args(["--upload-accept-sharing", "--cache"])
        .arg(&cache)
        .env_remove("HASHSWEEP_NO_CACHE"));
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert_eq!(mock.uploads().len(), 2);
    assert_eq!(rec(&ndjson(&out), "tool.exe")["verdict"], "infected");
    // The JSON summary counts the uploads and names the flags.
    let json = run(up(&mock, t.path())
        .args(["--upload-accept-sharing", "--format", "json", "--cache"])
        .arg(&cache)
        .env_remove("HASHSWEEP_NO_CACHE"));
    let v: Value = serde_json::from_slice(&json.stdout).expect("a json report");
    assert_eq!(v["summary"]["uploads"]["unknown"], 1, "{}", v["summary"]);
    assert_eq!(v["summary"]["uploads"]["other_kind"], 1, "{}", v["summary"]);
    assert_eq!(v["summary"]["run"]["options"]["upload-unknown"], true);
    assert_eq!(v["summary"]["run"]["options"]["upload-budget"], 5);
    let hashes: Vec<String> = mock.requests()[asked..]
        .iter()
        .flat_map(|r| r.hashes.clone())
        .collect();
    assert!(
        !hashes.iter().any(|h| h.eq_ignore_ascii_case(&sha256(exe))),
        "{hashes:?}"
    );
}

#[test]
fn excluded_paths_kinds_and_sizes_are_not_uploaded() {
    let mock = MockServer::start(Some(KEY)).unwrap();
    let t = Tree::new();
    t.file("home/.ssh/helper.exe", b"MZ in a key folder");
    t.file("skip/me.exe", b"MZ excluded by the user");
    t.file("big.exe", &[b"MZ".as_slice(), &[7u8; 4000]].concat());
    t.file("small.exe", b"MZ small enough");
    let out = run(up(&mock, t.path()).args([
        "--upload-accept-sharing",
        "--upload-exclude",
        "**/skip/**",
        "--upload-max-size",
        "1K",
    ]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let ups = mock.uploads();
    assert_eq!(ups.len(), 1, "{ups:?}");
    assert_eq!(ups[0].sha256, sha256(b"MZ small enough"));
    let recs = ndjson(&out);
    for p in ["helper.exe", "me.exe"] {
        let r = rec(&recs, p);
        assert_eq!(r["verdict"], "unknown");
        assert!(note(r).contains("path is excluded"), "{r}");
    }
    let big = rec(&recs, "big.exe");
    assert!(note(big).contains("over --upload-max-size (1K)"), "{big}");
    assert_eq!(rec(&recs, "small.exe")["source"], "upload");

    // The key's own limit when --upload-max-size is not given (the stand-in says 1 MB).
    mock.set_upload_settings(|s| s.max_upload_file_size_mb = 1);
    let t = Tree::new();
    t.file(
        "huge.exe",
        &[b"MZ".as_slice(), &vec![1u8; (1 << 20) + 10]].concat(),
    );
    let out = run(up(&mock, t.path()).arg("--upload-accept-sharing"));
    assert!(
        note(rec(&ndjson(&out), "huge.exe")).contains("the key's max_upload_file_size"),
        "{}",
        stderr(&out)
    );
    assert_eq!(mock.uploads().len(), 1);
}

#[test]
fn the_budget_goes_to_programs_then_scripts_then_documents() {
    let mock = MockServer::start(Some(KEY)).unwrap();
    let t = Tree::new();
    t.file("a/doc.pdf", b"%PDF-1.4 unknown document");
    t.file("b/run.sh", b"#!/bin/sh\nunknown script\n");
    t.file("c/tool.exe", b"MZ unknown program");
    let out = run(up(&mock, t.path()).args(["--upload-accept-sharing", "--upload-budget", "2"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let sent: Vec<String> = mock.uploads().iter().map(|u| u.sha256.clone()).collect();
    assert_eq!(
        sent,
        [
            sha256(b"MZ unknown program"),
            sha256(b"#!/bin/sh\nunknown script\n")
        ]
    );
    let recs = ndjson(&out);
    let doc = rec(&recs, "doc.pdf");
    assert_eq!(doc["verdict"], "unknown");
    assert!(
        note(doc).contains("--upload-budget 2 went to files that matter more"),
        "{doc}"
    );

    // The key's prevention budget bounds it too.
    mock.set_upload_settings(|s| s.limit_prevention = 3);
    let t = Tree::new();
    t.file("x.exe", b"MZ one");
    t.file("y.exe", b"MZ two");
    let out = run(up(&mock, t.path()).args(["--upload-accept-sharing", "--upload-budget", "5"]));
    assert_eq!(mock.uploads().len(), 3, "{}", stderr(&out));
    let recs = ndjson(&out);
    let left = ["x.exe", "y.exe"]
        .iter()
        .map(|p| rec(&recs, p))
        .find(|r| r["verdict"] == "unknown")
        .expect("one left for lack of budget");
    assert!(
        note(left).contains("the key's upload budget (1 left today)"),
        "{left}"
    );
}

#[test]
fn a_scan_still_running_is_fetched_by_the_next_run_without_uploading_again() {
    let mock = MockServer::start(Some(KEY)).unwrap();
    let t = Tree::new();
    t.file("slow.exe", b"MZ takes a while");
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("c.sqlite");
    mock.set_upload_settings(|s| s.polls_to_finish = 1_000_000);
    let first = || {
        let mut c = up(&mock, t.path());
        c.args([
            "--upload-accept-sharing",
            "--upload-wait",
            "300ms",
            "--cache",
        ])
        .arg(&cache)
        .env_remove("HASHSWEEP_NO_CACHE");
        c
    };
    let out = run(&mut first());
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let r = rec(&ndjson(&out), "slow.exe").clone();
    assert_eq!(
        r["verdict"], "unknown",
        "never clean without an answer: {r}"
    );
    assert!(note(&r).contains("still being scanned"), "{r}");
    assert!(note(&r).contains("the next run fetches the result"), "{r}");
    assert!(
        stderr(&out).contains("1 still scanning"),
        "{}",
        stderr(&out)
    );
    let polls = mock.upload_polls();
    // Backoff: 10 ms growing to 50 ms within 300 ms is some polls, not hundreds.
    assert!((2..=20).contains(&polls), "{polls} polls");
    assert_eq!(mock.uploads().len(), 1);

    mock.set_upload_settings(|s| s.polls_to_finish = 0);
    let out = run(&mut first());
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(mock.uploads().len(), 1, "not uploaded again");
    let r = rec(&ndjson(&out), "slow.exe").clone();
    assert_eq!(r["verdict"], "clean", "{r}");
    assert_eq!(r["source"], "upload");
    assert!(
        stderr(&out).contains("1 fetched from earlier uploads"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn each_failure_has_its_own_note_and_no_file_is_clean_without_an_answer() {
    let mock = MockServer::start(Some(KEY)).unwrap();
    let t = Tree::new();
    t.file("one.exe", b"MZ first");
    t.file("two.exe", b"MZ second");
    let go = |extra: &[&str]| {
        let out = run(up(&mock, t.path())
            .arg("--upload-accept-sharing")
            .args(extra));
        let recs = ndjson(&out);
        let notes: Vec<(String, String)> = ["one.exe", "two.exe"]
            .iter()
            .map(|p| {
                let r = rec(&recs, p);
                (
                    r["verdict"].as_str().unwrap_or_default().to_string(),
                    note(r).to_string(),
                )
            })
            .collect();
        check_no_key(&out, &mock);
        (out, notes)
    };

    // Throttled (429001): no more uploads this run; both stay unknown.
    mock.push_upload_fault(Fault::throttled());
    let (out, notes) = go(&[]);
    assert_eq!(mock.uploads().len(), 1, "{}", stderr(&out));
    for (verdict, note) in &notes {
        assert_eq!(verdict, "unknown");
        assert!(note.contains("429001"), "{note}");
    }
    assert!(
        notes
            .iter()
            .any(|(_, n)| n.contains("throttled by the service's file API")),
        "{notes:?}"
    );

    // 413: too big for the service; the next file still goes.
    mock.set_upload_settings(|s| s.enforce_bytes = Some(4));
    let (_, notes) = go(&[]);
    assert!(
        notes
            .iter()
            .all(|(v, n)| v == "unknown" && n.contains("too big")),
        "{notes:?}"
    );
    mock.set_upload_settings(|s| s.enforce_bytes = None);

    // 403: the key may not upload.
    mock.set_upload_settings(|s| s.upload_rights = false);
    let (_, notes) = go(&[]);
    assert!(
        notes
            .iter()
            .all(|(v, n)| v == "unknown" && n.contains("403003")),
        "{notes:?}"
    );
    assert!(notes[0].1.contains("may not upload"), "{notes:?}");
    mock.set_upload_settings(|s| s.upload_rights = true);

    // A scan that never finishes: unknown with its own note, never clean.
    mock.never_finish(&sha256(b"MZ first"));
    let (out, notes) = go(&["--upload-wait", "200ms"]);
    assert_eq!(notes[0].0, "unknown");
    assert!(notes[0].1.contains("still being scanned"), "{notes:?}");
    assert_eq!(notes[1].0, "clean", "{}", stderr(&out));
}
