//! `scan --baseline OLD` and `diff OLD NEW`: what changed since the last sweep.

#[cfg(unix)]
use serde_json::Value;

#[cfg(unix)]
use crate::util::*;

// Unix only.
#[cfg(unix)]
fn offline(root: &std::path::Path) -> std::process::Command {
    let mut c = cmd();
    c.args(["scan", "--offline"]).arg(root);
    c
}

// Unix only: a name of raw non-UTF-8 bytes exists only there.
#[cfg(unix)]
#[test]
fn baseline_marks_new_modified_unchanged_and_lists_removed() {
    let t = Tree::new();
    t.file("same.txt", b"same");
    t.file("edit.txt", b"before");
    let gone = t.file("gone.txt", b"bye");
    t.file_bytes(b"odd\xff.bin", b"odd name");
    let reports = Tree::new();
    let old = reports.path().join("old.ndjson");
    let out = run(offline(t.path()).arg("-o").arg(&old));
    assert_eq!(code(&out), 0);

    std::fs::write(t.path().join("edit.txt"), b"after").unwrap();
    std::fs::remove_file(&gone).unwrap();
    t.file("new.txt", b"hello");
    let out = run(offline(t.path())
        .args(["--format", "json", "--baseline"])
        .arg(&old));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let recs = v["records"].as_array().unwrap();
    let change = |suffix: &str| rec(recs, suffix)["change"].as_str().unwrap().to_string();
    assert_eq!(change("same.txt"), "unchanged");
    assert_eq!(change("edit.txt"), "modified");
    assert_eq!(change("new.txt"), "new");
    assert_eq!(
        change(".bin"),
        "unchanged",
        "non-UTF-8 name matched by its bytes"
    );
    let removed = rec(recs, "gone.txt");
    assert_eq!(removed["change"], "removed");
    assert!(
        removed.get("verdict").is_none(),
        "nothing was looked at: {removed}"
    );
    assert_eq!(removed["size"], 3);
    let c = &v["summary"]["changes"];
    assert_eq!(
        (
            c["new"].as_u64(),
            c["modified"].as_u64(),
            c["unchanged"].as_u64(),
            c["removed"].as_u64()
        ),
        (Some(1), Some(1), Some(2), Some(1))
    );
    assert!(
        stderr(&out).contains("1 new, 1 modified, 1 removed, 2 unchanged"),
        "{}",
        stderr(&out)
    );

    // CSV gets a change column; the removed path is a row of its own.
    let out = run(offline(t.path())
        .args(["--format", "csv", "--baseline"])
        .arg(&old));
    let mut rdr = csv::Reader::from_reader(&out.stdout[..]);
    let headers = rdr.headers().unwrap().clone();
    let ci = headers
        .iter()
        .position(|h| h == "change")
        .expect("change column");
    let rows: Vec<csv::StringRecord> = rdr.records().map(Result::unwrap).collect();
    assert!(
        rows.iter()
            .any(|r| r[0].ends_with("gone.txt") && &r[ci] == "removed")
    );
}

// Unix only: compares /-separated relative paths.
#[cfg(unix)]
#[test]
fn diff_gives_all_four_kinds_and_exit_1_only_when_something_changed() {
    let t = Tree::new();
    t.file("a", b"a");
    t.file("b", b"b");
    t.file("c", b"c");
    let reports = Tree::new();
    let r1 = reports.path().join("1.ndjson");
    let r2 = reports.path().join("2.json");
    run(offline(t.path()).arg("-o").arg(&r1));
    std::fs::write(t.path().join("b"), b"B").unwrap();
    std::fs::remove_file(t.path().join("c")).unwrap();
    t.file("d", b"d");
    run(offline(t.path()).args(["--format", "json", "-o"]).arg(&r2));

    let out = run(cmd().args(["diff", "--format", "ndjson"]).arg(&r1).arg(&r2));
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let kinds: Vec<(String, String)> = ndjson(&out)
        .iter()
        .map(|e| {
            (
                e["path"]
                    .as_str()
                    .unwrap()
                    .rsplit('/')
                    .next()
                    .unwrap()
                    .to_string(),
                e["change"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = [
        ("a", "unchanged"),
        ("b", "modified"),
        ("c", "removed"),
        ("d", "new"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(kinds, want);

    let same = run(cmd().args(["diff"]).arg(&r2).arg(&r2));
    assert_eq!(code(&same), 0, "{}", stderr(&same));
    let not_a_report = t.file("notes.txt", b"hello world\n");
    let bad = run(cmd().args(["diff"]).arg(&not_a_report).arg(&r2));
    assert_eq!(code(&bad), 2);
    assert!(stderr(&bad).contains("notes.txt"), "{}", stderr(&bad));
}

// Unix only.
#[cfg(unix)]
/// The README's nightly audit, night after night: on the first night there is no baseline yet
/// (a notice, every path new, and tonight's report), then each night compares with the last.
#[test]
fn the_nightly_audit_works_from_the_first_night() {
    let t = Tree::new();
    t.file("a.txt", b"first");
    let logs = Tree::new();
    let last = logs.path().join("last.ndjson");
    let night = |n: u32| {
        let today = logs.path().join(format!("night{n}.ndjson"));
        let out = run(offline(t.path())
            .arg("--baseline")
            .arg(&last)
            .arg("-o")
            .arg(&today));
        // As `ln -sf "$today" "$last"` does.
        let _ = std::fs::remove_file(&last);
        std::os::unix::fs::symlink(&today, &last).unwrap();
        let recs: Vec<Value> = std::fs::read_to_string(&today)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (out, recs)
    };
    let (out, recs) = night(1);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stderr(&out).contains("no baseline yet"), "{}", stderr(&out));
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0]["change"], "new");
    t.file("b.txt", b"second");
    let (out, recs) = night(2);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(!stderr(&out).contains("no baseline yet"));
    assert_eq!(rec(&recs, "/a.txt")["change"], "unchanged");
    assert_eq!(rec(&recs, "/b.txt")["change"], "new");
    std::fs::write(t.path().join("a.txt"), b"edited").unwrap();
    let (out, recs) = night(3);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(rec(&recs, "/a.txt")["change"], "modified");
    assert_eq!(rec(&recs, "/b.txt")["change"], "unchanged");
}
