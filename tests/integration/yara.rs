//! `scan --yara`: rules matched on the bytes the workers hash (files and archive members), in
//! every report, as a verdict and an exit status; `yara-check`. Rules are written here, plus
//! quicksand's (MIT, vendored in crates/yara/tests/fixtures).

use std::path::{Path, PathBuf};

use crate::util::*;

const RULES: &str = r#"
rule Evil_Marker : demo {
  meta:
    description = "the test marker"
    author = "hashsweep tests"
    reference = "https://example.org/marker"
  strings:
    $a = "EVILMARKER"
  condition:
    $a
}
rule By_Name {
  condition:
    filename == "named.bin" and extension == "bin"
}
"#;

fn quicksand() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/yara/tests/fixtures/quicksand")
}

/// An offline ndjson scan of `root` with `--yara rules` and `extra`.
fn scan(root: &Path, rules: &Path, extra: &[&str]) -> std::process::Output {
    scan_as("ndjson", root, rules, extra)
}

fn scan_as(format: &str, root: &Path, rules: &Path, extra: &[&str]) -> std::process::Output {
    run(cmd()
        .args(["scan", "--offline", "--format", format, "--yara"])
        .arg(rules)
        .args(extra)
        .arg(root))
}

fn names(r: &serde_json::Value) -> Vec<String> {
    r["yara"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|m| m["rule"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_match_is_suspicious_with_the_rule_and_exit_1() {
    let t = Tree::new();
    t.file("tree/hit.txt", b"some text EVILMARKER more");
    t.file("tree/clean.txt", b"nothing here");
    t.file("tree/named.bin", b"\x00\x01");
    let rules = t.file("rules/mine.yar", RULES.as_bytes());
    let out = scan(&t.path().join("tree"), &rules, &[]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let recs = ndjson(&out);
    let hit = rec(&recs, "hit.txt");
    assert_eq!(hit["verdict"], "suspicious");
    assert_eq!(names(hit), ["mine:Evil_Marker"]);
    let m = &hit["yara"][0];
    assert_eq!(m["namespace"], "mine");
    assert_eq!(m["identifier"], "Evil_Marker");
    assert_eq!(m["tags"], serde_json::json!(["demo"]));
    assert_eq!(
        m["meta"][0],
        serde_json::json!(["description", "the test marker"])
    );
    assert_eq!(m["strings"][0]["offset"], 10);
    assert_eq!(m["strings"][0]["match"], "EVILMARKER");
    // The globals: a rule on the file's name and extension.
    assert_eq!(names(rec(&recs, "named.bin")), ["mine:By_Name"]);
    let clean = rec(&recs, "clean.txt");
    assert_eq!(clean["verdict"], "not_looked_up");
    assert!(clean.get("yara").is_none(), "{clean}");
    let err = stderr(&out);
    assert!(
        err.contains("YARA: 2 rules from 1 file") && err.contains("2 paths matched"),
        "{err}"
    );
}

#[test]
fn no_match_no_detection() {
    let t = Tree::new();
    t.file("tree/clean.txt", b"nothing here");
    let rules = t.file("rules/mine.yar", RULES.as_bytes());
    let out = scan(&t.path().join("tree"), &rules, &[]);
    // Offline and nothing matched: nothing to report.
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(rec(&ndjson(&out), "clean.txt").get("yara").is_none());
}

#[test]
fn quicksand_rules_match_a_pe_header() {
    let t = Tree::new();
    // The DOS stub's text quicksand's executable_win rule looks for.
    let mut pe = b"MZ\x90\x00".to_vec();
    pe.resize(0x40, 0);
    pe.extend_from_slice(b"This program cannot be run in DOS mode.\r\r\n$");
    t.file("tree/prog.exe", &pe);
    let out = scan(&t.path().join("tree"), &quicksand(), &[]);
    let recs = ndjson(&out);
    let n = names(rec(&recs, "prog.exe"));
    assert!(
        n.iter()
            .any(|r| r.starts_with("quicksand_exe:executable_win")),
        "{n:?} {}",
        stderr(&out)
    );
    assert_eq!(code(&out), 1);
}

#[test]
fn archive_members_are_matched() {
    let t = Tree::new();
    // A tar.gz (read once for its digest and its members) and a zip (opened again).
    let src = t.file("src/inner.txt", b"EVILMARKER in a member");
    let tgz = t.path().join("tree/a.tgz");
    std::fs::create_dir_all(tgz.parent().unwrap()).unwrap();
    let st = std::process::Command::new("tar")
        .arg("czf")
        .arg(&tgz)
        .arg("-C")
        .arg(src.parent().unwrap())
        .arg("inner.txt")
        .status()
        .expect("tar");
    assert!(st.success());
    let zip_path = t.path().join("tree/b.zip");
    let mut z = zip::ZipWriter::new(std::fs::File::create(&zip_path).unwrap());
    z.start_file(
        "dir/inner.txt",
        zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated),
    )
    .unwrap();
    std::io::Write::write_all(
        &mut z,
        b"xx EVILMARKER deflated so the zip itself does not show it",
    )
    .unwrap();
    z.finish().unwrap();
    let rules = t.file("rules/mine.yar", RULES.as_bytes());
    let out = scan(&t.path().join("tree"), &rules, &["--archives"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let recs = ndjson(&out);
    assert_eq!(names(rec(&recs, "a.tgz!inner.txt")), ["mine:Evil_Marker"]);
    assert_eq!(
        rec(&recs, "a.tgz!inner.txt")["verdict"],
        "suspicious",
        "{recs:#?}"
    );
    assert_eq!(
        names(rec(&recs, "b.zip!dir/inner.txt")),
        ["mine:Evil_Marker"]
    );
    // The compressed containers do not hold the marker's bytes.
    assert!(names(rec(&recs, "a.tgz")).is_empty());
    assert!(names(rec(&recs, "b.zip")).is_empty());
}

#[test]
fn a_compile_error_names_the_place_and_reads_nothing() {
    let t = Tree::new();
    let rules = t.file(
        "rules/broken.yar",
        b"rule Bad {\n  strings: $a = \"x\"\n  condition: $a and\n}\n",
    );
    t.file("tree/a.txt", b"EVILMARKER");
    let out = run(cmd()
        .args(["scan", "--offline", "--format", "ndjson", "--yara"])
        .arg(&rules)
        .arg(t.path().join("tree")));
    assert_eq!(code(&out), 2);
    let err = stderr(&out);
    assert!(err.contains("broken.yar:4:1"), "{err}");
    assert!(out.stdout.is_empty(), "no record: nothing was read");
    assert!(!err.contains("hashed"), "no summary: {err}");
}

#[test]
fn a_file_over_the_size_cap_is_hashed_with_a_note() {
    let t = Tree::new();
    let mut big = vec![b'.'; 5000];
    big[100..110].copy_from_slice(b"EVILMARKER");
    t.file("tree/big.txt", &big);
    t.file("tree/small.txt", b"EVILMARKER");
    let rules = t.file("rules/mine.yar", RULES.as_bytes());
    let out = scan(&t.path().join("tree"), &rules, &["--yara-max-size", "4K"]);
    let recs = ndjson(&out);
    let b = rec(&recs, "big.txt");
    assert!(b["sha256"].is_string());
    assert!(b.get("yara").is_none());
    assert_eq!(b["verdict"], "not_looked_up");
    let note = b["note"].as_str().unwrap_or_default();
    assert!(
        note.contains("5000 bytes > --yara-max-size (4096 bytes)"),
        "{b}"
    );
    assert_eq!(names(rec(&recs, "small.txt")), ["mine:Evil_Marker"]);
}

#[test]
fn a_slow_rule_gives_a_timeout_note() {
    let t = Tree::new();
    t.file("tree/zeros.bin", &vec![0u8; 200_000]);
    let rules = t.file(
        "rules/slow.yar",
        b"rule slow { condition: for any i in (0..filesize) : ( for any j in (0..filesize) : ( uint8(i) + uint8(j) == 1000 ) ) }",
    );
    let out = scan(&t.path().join("tree"), &rules, &["--yara-timeout", "1"]);
    let recs = ndjson(&out);
    let z = rec(&recs, "zeros.bin");
    let note = z["note"].as_str().unwrap_or_default();
    assert!(note.contains("--yara-timeout (1 s) ran out"), "{z}");
    assert!(z["sha256"].is_string());
    assert_ne!(code(&out), 1);
}

#[test]
fn a_known_good_file_keeps_its_verdict_and_shows_the_match() {
    let t = Tree::new();
    let f = t.file("tree/vendor.dll", b"vendor EVILMARKER");
    let list = t.file(
        "good.sha256",
        format!("{}  vendor.dll\n", coreutils("sha256sum", &f)).as_bytes(),
    );
    let rules = t.file("rules/mine.yar", RULES.as_bytes());
    let out = run(cmd()
        .args(["scan", "--offline", "--format", "ndjson", "--known-good"])
        .arg(&list)
        .arg("--yara")
        .arg(&rules)
        .arg(t.path().join("tree")));
    let recs = ndjson(&out);
    let r = rec(&recs, "vendor.dll");
    assert_eq!(r["verdict"], "known_good");
    assert_eq!(names(r), ["mine:Evil_Marker"]);
    // Still a detection for the exit status.
    assert_eq!(code(&out), 1, "{}", stderr(&out));
}

#[test]
fn compiled_rules_are_cached_across_runs() {
    let t = Tree::new();
    t.file("tree/hit.txt", b"EVILMARKER");
    let rules = t.file("rules/mine.yar", RULES.as_bytes());
    let cache = t.path().join("c/cache.sqlite");
    let summary = |extra: &[&str]| {
        let out = run(cmd()
            .env_remove("HASHSWEEP_NO_CACHE")
            .args(["scan", "--offline", "--format", "json", "--yara"])
            .arg(&rules)
            .arg("--cache")
            .arg(&cache)
            .args(extra)
            .arg(t.path().join("tree")));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json report");
        assert_eq!(v["records"][0]["verdict"], "suspicious", "{v}");
        v["summary"]["yara"].clone()
    };
    let first = summary(&[]);
    assert_eq!(first["cache"], "miss", "{first}");
    assert_eq!(first["rules"], 2);
    let second = summary(&[]);
    assert_eq!(second["cache"], "hit", "{second}");
    assert!(second["load_secs"].is_number(), "{second}");
    assert_eq!(second["matched"], 1);
    let files: Vec<_> = std::fs::read_dir(t.path().join("c"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yarac"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    // --no-cache: no rule cache either.
    assert_eq!(summary(&["--no-cache"])["cache"], "off");
}

#[test]
fn csv_and_ecs_carry_the_rules() {
    let t = Tree::new();
    t.file("tree/hit.txt", b"EVILMARKER");
    let rules = t.file("rules/mine.yar", RULES.as_bytes());
    let out = scan_as("csv", &t.path().join("tree"), &rules, &[]);
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    assert!(lines.next().unwrap().ends_with(",yara"), "{text}");
    assert!(
        lines.next().unwrap().ends_with(",mine:Evil_Marker"),
        "{text}"
    );
    let out = scan_as("ecs", &t.path().join("tree"), &rules, &[]);
    let doc: serde_json::Value = serde_json::from_str(
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(doc["rule"]["name"], serde_json::json!(["Evil_Marker"]));
    assert_eq!(doc["rule"]["ruleset"], serde_json::json!(["mine"]));
    assert_eq!(
        doc["rule"]["author"],
        serde_json::json!(["hashsweep tests"])
    );
    let out = scan_as("table", &t.path().join("tree"), &rules, &[]);
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(
        table.contains("hit.txt  [yara: mine:Evil_Marker]"),
        "{table}"
    );
    let out = scan_as("html", &t.path().join("tree"), &rules, &[]);
    let page = String::from_utf8(out.stdout).unwrap();
    assert!(page.contains("<b>mine:Evil_Marker</b>"), "rule on the card");
    assert!(
        page.contains("https://example.org/marker"),
        "reference on the card"
    );
}

#[test]
fn yara_check_reports_and_fails_with_the_location() {
    let out = run(cmd().arg("yara-check").arg(quicksand()));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let said = String::from_utf8(out.stdout).unwrap();
    assert!(said.contains("rules from 3 files"), "{said}");
    let t = Tree::new();
    let bad = t.file("bad.yar", b"rule X { condition: nosuch }");
    let out = run(cmd().arg("yara-check").arg(&bad));
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("bad.yar:1:"), "{}", stderr(&out));
}

/// With a budget of one lookup, the file a rule matched is asked before a program (which
/// otherwise ranks first), and the program is deferred.
#[test]
fn a_rule_match_gets_the_budget_first() {
    let mock = MockServer::start(Some(KEY)).unwrap();
    let t = Tree::new();
    let mut pe = b"MZ\x90\x00".to_vec();
    pe.resize(0x80, 1);
    t.file("tree/a.exe", &pe);
    t.file("tree/z.txt", b"plain text EVILMARKER");
    let rules = t.file("rules/mine.yar", RULES.as_bytes());
    let out = run(scan_cmd(&mock, &t.path().join("tree"))
        .args(["--format", "ndjson", "--budget", "1", "--yara"])
        .arg(&rules));
    let recs = ndjson(&out);
    let z = rec(&recs, "z.txt");
    assert_eq!(z["verdict"], "suspicious", "{z}");
    assert_eq!(
        z["scan_result_i"], 5,
        "asked, and unknown to the service: {z}"
    );
    assert_eq!(rec(&recs, "a.exe")["verdict"], "deferred");
    assert_eq!(code(&out), 1, "{}", stderr(&out));
}
