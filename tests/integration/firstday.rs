//! A new user's first mistakes are caught before the sweep and explained in one line: an
//! `-o` that cannot be written, an `--api-url` that is not the service, a wrong key, a report
//! given where a hash list or a baseline belongs.

use std::os::unix::fs::PermissionsExt;

use crate::util::*;

/// An `-o` that cannot be written is refused before the sweep: one line on stderr, nothing
/// asked of the service, exit 2.
fn refused_before_the_sweep(mock: &MockServer, out: &std::process::Output, says: &str) {
    let err = stderr(out);
    assert_eq!(code(out), 2, "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains(says), "{says:?} in {err}");
    assert!(!err.contains("files,"), "no sweep ran: {err}");
    assert!(mock.requests().is_empty(), "nothing was asked");
}

#[test]
fn an_output_that_cannot_be_written_is_refused_before_anything_is_read() {
    let mock = MockServer::start(Some(KEY)).unwrap();
    let t = Tree::new();
    std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    t.file("tree/a.txt", b"a");
    let tree = t.path().join("tree");

    let missing = t.path().join("no/such/dir/r.ndjson");
    let out = run(scan_cmd(&mock, &tree).arg("-o").arg(&missing));
    refused_before_the_sweep(&mock, &out, "does not exist (create it first)");
    assert!(stderr(&out).contains(&t.path().join("no/such/dir").display().to_string()));

    let out = run(scan_cmd(&mock, &tree).arg("-o").arg(&tree));
    refused_before_the_sweep(&mock, &out, "is a folder; name a file in it");

    let under_a_file = t.path().join("tree/a.txt/r.ndjson");
    let out = run(scan_cmd(&mock, &tree).arg("-o").arg(&under_a_file));
    refused_before_the_sweep(&mock, &out, "is not a folder");

    // A folder this user cannot write in (as nobody when we are root).
    let ro = t.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 && std::fs::write(ro.join("probe"), b"x").is_ok() {
        skip("this user writes in a mode-555 folder: nothing is unwritable");
        return;
    }
    let mut c = cmd_unprivileged();
    c.env("METADEFENDER_APIKEY", KEY)
        .args(["scan", "--api-url", &mock.url(), "-o"])
        .arg(ro.join("r.ndjson"))
        .arg(&tree);
    let out = run(&mut c);
    refused_before_the_sweep(&mock, &out, "cannot write the report to");
    let err = stderr(&out);
    assert_eq!(err.matches("os error").count(), 1, "the reason once: {err}");
    assert!(!err.contains(" at path "), "no temp file's path: {err}");
    assert_eq!(
        std::fs::read_dir(&ro).unwrap().count(),
        0,
        "nothing left behind"
    );
}

/// A report written inside the swept tree is not read as one of its files: listed as
/// skipped (never silently dropped), with the same record on the next run.
#[test]
fn the_report_inside_the_swept_tree_is_not_read() {
    let t = Tree::new();
    t.file("a.txt", b"a");
    let report = t.path().join("report.ndjson");
    for _ in 0..2 {
        let out = run(cmd()
            .args(["scan", "--offline", "-o"])
            .arg(&report)
            .arg(t.path()));
        assert_eq!(code(&out), 0, "{}", stderr(&out));
    }
    let text = std::fs::read_to_string(&report).unwrap();
    let recs: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(recs.len(), 2, "{text}");
    let own = rec(&recs, "report.ndjson");
    assert_eq!(own["verdict"], "skipped", "{own}");
    assert_eq!(own["sha256"], serde_json::Value::Null, "not read: {own}");
    assert!(
        own["note"].as_str().unwrap().contains("own report"),
        "{own}"
    );
}
