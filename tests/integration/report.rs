//! Output people read and act on: the format from `-o`'s name, `--only`, the summary lines, the
//! JSON summary's account of the run, `-q`/`-v`, the table's columns and colour, `diff`'s
//! table, `--version`, and the HTML page as a real browser shows it.

use std::path::{Path, PathBuf};
#[cfg(unix)]
use std::process::Command;
#[cfg(unix)]
use std::time::Duration;

use serde_json::Value;

use crate::util::*;

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn the_format_follows_the_output_files_extension() {
    let t = Tree::new();
    t.file("a.txt", b"a");
    t.file("b.txt", b"b");
    let out_dir = Tree::new();
    let scan_to = |name: &str| -> PathBuf {
        let p = out_dir.path().join(name);
        let out = run(cmd()
            .args(["scan", "--offline", "-o"])
            .arg(&p)
            .arg(t.path()));
        assert_eq!(code(&out), 0, "{name}: {}", stderr(&out));
        p
    };
    let json: Value = serde_json::from_str(&read(&scan_to("r.json"))).expect("one JSON document");
    assert_eq!(json["records"].as_array().unwrap().len(), 2, "{json}");
    let csv = read(&scan_to("r.CSV"));
    assert!(csv.starts_with("path,path_bytes,size,sha256,"), "{csv}");
    for name in ["r.ndjson", "r.jsonl", "r.txt", "report"] {
        let text = read(&scan_to(name));
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{name}: {l}: {e}")))
            .collect();
        assert_eq!(lines.len(), 2, "{name}: ndjson: {text}");
    }
    let html = read(&scan_to("r.html"));
    assert!(html.starts_with("<!DOCTYPE html>"), "{html}");
    // --format wins over the name.
    let p = out_dir.path().join("forced.html");
    let out = run(cmd()
        .args(["scan", "--offline", "--format", "csv", "-o"])
        .arg(&p)
        .arg(t.path()));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(read(&p).starts_with("path,"));
    // diff writes no HTML: refused, not written as something else.
    let old = scan_to("old.ndjson");
    let out = run(cmd()
        .arg("diff")
        .arg(&old)
        .arg(&old)
        .arg("-o")
        .arg(out_dir.path().join("d.html")));
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("html"), "{}", stderr(&out));
}

/// A tree with one local detection, one known-good file and one file deferred by `--budget 0`:
/// (tree, lists dir, known-bad list, known-good list, the detected path).
fn triage_tree() -> (Tree, Tree, PathBuf, PathBuf, PathBuf) {
    let t = Tree::new();
    let bad = t.file("dl/bad.bin", b"malware stand-in");
    let good = t.file("lib/good.so", b"a library");
    t.file("home/other.txt", b"nobody knows");
    let lists = Tree::new();
    let bad_list = lists.file(
        "bad.sha256",
        format!("{}  bad.bin\n", coreutils("sha256sum", &bad)).as_bytes(),
    );
    let good_list = lists.file(
        "good.sha256",
        format!("{}  good.so\n", coreutils("sha256sum", &good)).as_bytes(),
    );
    (t, lists, bad_list, good_list, bad)
}

#[test]
fn only_detections_and_only_problems_limit_the_report_and_the_summary_names_them() {
    let mock = MockServer::start(Some(KEY)).unwrap();
    let (t, lists, bad_list, good_list, bad) = triage_tree();
    let report = lists.path().join("problems.json");
    let out = run(scan_cmd(&mock, t.path())
        .args(["--budget", "0", "--only", "problems", "-o"])
        .arg(&report)
        .arg("--known-bad")
        .arg(&bad_list)
        .arg("--known-good")
        .arg(&good_list));
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let v: Value = serde_json::from_str(&read(&report)).unwrap();
    let mut verdicts: Vec<&str> = v["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["verdict"].as_str().unwrap())
        .collect();
    verdicts.sort();
    assert_eq!(verdicts, ["deferred", "infected"], "{v}");
    // The summary still counts every path, per verdict.
    assert_eq!(v["summary"]["paths"], 3, "{v}");
    assert_eq!(
        v["summary"]["verdicts"],
        serde_json::json!({"infected": 1, "deferred": 1, "known_good": 1}),
        "{v}"
    );
    // `/` and `\` alike: on Windows the joined test path mixes them.
    let slash = |s: &str| s.replace('\\', "/");
    let err = stderr(&out);
    assert!(
        slash(&err).contains(&slash(&format!("hashsweep: detected: {}", bad.display()))),
        "{err}"
    );
    assert!(
        err.contains(&format!("hashsweep: report: {}", report.display())),
        "{err}"
    );
    assert!(
        err.contains("verdicts: 1 infected, 1 deferred, 1 known_good"),
        "{err}"
    );

    let csv_path = lists.path().join("detections.csv");
    let out = run(scan_cmd(&mock, t.path())
        .args(["--budget", "0", "--only", "detections", "-o"])
        .arg(&csv_path)
        .arg("--known-bad")
        .arg(&bad_list)
        .arg("--known-good")
        .arg(&good_list));
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let csv = read(&csv_path);
    let mut rows = csv::Reader::from_reader(csv.as_bytes());
    let header: Vec<String> = rows.headers().unwrap().iter().map(String::from).collect();
    let rows: Vec<csv::StringRecord> = rows.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 1, "{csv}");
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    assert_eq!(&rows[0][col("verdict")], "infected");
    // The source column tells a local hash-list hit from a detection by the service.
    assert_eq!(&rows[0][col("source")], "local", "{csv}");
}

#[test]
fn the_summary_names_at_most_ten_detections() {
    let mock = MockServer::start(Some(KEY)).unwrap();
    let t = Tree::new();
    for i in 0..12 {
        t.file(format!("e{i:02}.com"), EICAR);
    }
    let out = run(&mut scan_cmd(&mock, t.path()));
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let err = stderr(&out);
    let line = err
        .lines()
        .find(|l| l.starts_with("hashsweep: detected: "))
        .unwrap_or_else(|| panic!("{err}"));
    assert_eq!(line.matches(".com").count(), 10, "{line}");
    assert!(line.ends_with(" and 2 more"), "{line}");
    assert!(
        !err.contains("hashsweep: report:"),
        "stdout has no name: {err}"
    );
}

#[test]
fn the_json_summary_says_what_ran() {
    let mock = MockServer::start(Some(KEY)).unwrap();
    mock.set_quota(500);
    let t = Tree::new();
    t.file("eicar.com", EICAR);
    t.file("skip.log", b"excluded");
    let out = run(scan_cmd(&mock, t.path()).args([
        "--format",
        "json",
        "--exclude",
        "*.log",
        "--details",
        "--host-name",
        "audit-host",
    ]));
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let run_info = &v["summary"]["run"];
    let version = String::from_utf8(run(cmd().arg("--version")).stdout).unwrap();
    assert_eq!(
        format!("hashsweep {}", run_info["version"].as_str().unwrap()),
        version.trim()
    );
    assert_eq!(run_info["host"], "audit-host");
    assert_eq!(
        run_info["roots"],
        serde_json::json!([t.path().to_str().unwrap()])
    );
    let (a, b) = (
        run_info["started_at"].as_str().unwrap(),
        run_info["finished_at"].as_str().unwrap(),
    );
    assert!(a.ends_with('Z') && a <= b, "{run_info}");
    let o = &run_info["options"];
    assert_eq!(o["exclude"], serde_json::json!(["*.log"]), "{o}");
    assert_eq!(o["details"], true);
    assert_eq!(o["lookup-hash"], "sha256");
    assert_eq!(o["api-url"], format!("{}/", mock.url()));
    assert_eq!(o["no-cache"], true);
    let rl = &run_info["rate_limit"];
    assert_eq!(rl["limit"], 500, "{run_info}");
    assert_eq!(rl["remaining"], 499, "{run_info}");
    assert!(rl["resets_at"].is_u64(), "{run_info}");
    assert_eq!(rl["throttled"], 0);
    assert_eq!(v["summary"]["verdicts"], serde_json::json!({"infected": 1}));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains(KEY), "no key in the report");
}

#[test]
fn quiet_says_nothing_and_verbose_says_each_retry_and_why() {
    let mock = MockServer::start(Some(KEY)).unwrap();
    let t = Tree::new();
    t.file("eicar.com", EICAR);
    mock.push_fault(Fault::new(500, "upstream on fire"));
    let out = run(scan_cmd(&mock, t.path()).arg("-v"));
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let err = stderr(&out);
    let retry = err
        .lines()
        .find(|l| l.starts_with("hashsweep: retrying batch"))
        .unwrap_or_else(|| panic!("no retry line: {err}"));
    assert!(retry.contains("500"), "the reason: {retry}");
    assert!(!err.contains(KEY));

    mock.push_fault(Fault::new(500, "upstream on fire"));
    let out = run(scan_cmd(&mock, t.path()).arg("-q"));
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert_eq!(stderr(&out), "", "quiet");
    assert_eq!(ndjson(&out).len(), 1, "the report is still written");
    // The command's own start-up warnings and notices are quiet too: a hash list with a line
    // that holds no digest, a baseline that does not exist yet.
    let list = t.file(
        "list.txt",
        format!("{}\nnot a digest\n", "0".repeat(64)).as_bytes(),
    );
    let missing = t.path().join("no-such-baseline.ndjson");
    let mut c = scan_cmd(&mock, t.path());
    c.arg("-q")
        .arg("--known-good")
        .arg(&list)
        .arg("--baseline")
        .arg(&missing);
    let out = run(&mut c);
    assert_eq!(stderr(&out), "", "quiet, even for the start-up warnings");
    let mut c = scan_cmd(&mock, t.path());
    c.arg("--known-good")
        .arg(&list)
        .arg("--baseline")
        .arg(&missing);
    let err = stderr(&run(&mut c));
    assert!(err.contains("skipped 1 line(s)"), "{err}");
    assert!(err.contains("no baseline yet"), "{err}");
    // Without -v the retry is counted, not told.
    mock.push_fault(Fault::new(500, "upstream on fire"));
    let out = run(&mut scan_cmd(&mock, t.path()));
    let err = stderr(&out);
    assert!(!err.contains("retrying"), "{err}");
    assert!(err.contains("(1 retry)"), "{err}");
}

#[test]
fn the_table_shows_threats_whole_digests_the_right_header_and_colour_on_request() {
    let mock = MockServer::start(Some(KEY)).unwrap();
    let lookup = |args: &[&str], env: &[(&str, &str)]| {
        let mut c = cmd();
        c.env("METADEFENDER_APIKEY", KEY)
            .args(["lookup", "--api-url", &mock.url(), "--format", "table"])
            .args(args);
        for (k, v) in env {
            c.env(k, v);
        }
        let out = run(&mut c);
        assert_eq!(code(&out), 1, "{}", stderr(&out));
        String::from_utf8(out.stdout).unwrap()
    };
    let table = lookup(&["--details", "--wide", EICAR_SHA256], &[]);
    let mut lines = table.lines();
    let header = lines.next().unwrap();
    assert!(
        header.contains(" SHA256 ") && header.contains("THREAT"),
        "{table}"
    );
    let row = lines.next().unwrap();
    assert!(row.contains(EICAR_SHA256), "whole digest: {table}");
    assert!(row.contains("EICAR-Test-File"), "{table}");
    // Narrow (not a terminal, no --wide): 16 digits; no threat column without --details.
    let table = lookup(&[EICAR_SHA256], &[]);
    assert!(!table.contains(EICAR_SHA256) && table.contains(&EICAR_SHA256[..16]));
    assert!(!table.contains("THREAT"));
    let table = lookup(&[hashsweep_mock::EICAR_MD5], &[]);
    let header = table.lines().next().unwrap();
    assert!(
        header.contains(" MD5 ") && !header.contains("SHA256"),
        "{table}"
    );
    // A mix of kinds: the column says DIGEST.
    let table = lookup(&[EICAR_SHA256, hashsweep_mock::EICAR_MD5], &[]);
    let header = table.lines().next().unwrap();
    assert!(
        header.contains(" DIGEST ") && !header.contains(" MD5 ") && !header.contains("SHA256"),
        "{table}"
    );
    // Colour is for terminals; CLICOLOR_FORCE asks for it anyway and NO_COLOR wins.
    assert!(!table.contains('\x1b'), "{table:?}");
    let forced = lookup(&[EICAR_SHA256], &[("CLICOLOR_FORCE", "1")]);
    assert!(forced.contains("\x1b["), "{forced:?}");
    let no = lookup(
        &[EICAR_SHA256],
        &[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")],
    );
    assert!(!no.contains('\x1b'), "{no:?}");
}

#[test]
fn diff_prints_a_header_and_a_changed_verdict_is_a_change() {
    let t = Tree::new();
    let sha = "ab".repeat(32);
    let line = |path: &str, verdict: &str| {
        format!(
            "{{\"path\":\"{path}\",\"size\":3,\"sha256\":\"{sha}\",\"verdict\":\"{verdict}\"}}\n"
        )
    };
    let old = t.file("old.ndjson", line("/d/f", "clean").as_bytes());
    let same = t.file("same.ndjson", line("/d/f", "clean").as_bytes());
    let new = t.file("new.ndjson", line("/d/f", "infected").as_bytes());
    let diff = |a: &Path, b: &Path| run(cmd().args(["diff", "--format", "table"]).arg(a).arg(b));
    let out = diff(&old, &same);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = diff(&old, &new);
    assert_eq!(code(&out), 1, "a new verdict is a change: {}", stderr(&out));
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    assert!(
        header.starts_with("CHANGE") && header.contains("VERDICT") && header.ends_with("PATH"),
        "{text}"
    );
    let row = lines.next().unwrap_or_default();
    assert!(
        row.starts_with("unchanged") && row.contains("clean -> infected"),
        "{text}"
    );
    assert!(row.ends_with("/d/f"), "{text}");
    assert!(
        stderr(&out).contains("1 with a changed verdict"),
        "{}",
        stderr(&out)
    );
}

// Unix only: asks git (a Linux program Wine does not start) for the commit.
#[cfg(unix)]
#[test]
fn version_names_the_commit_and_the_features() {
    let out = run(cmd().arg("--version"));
    assert_eq!(code(&out), 0);
    let v = String::from_utf8(out.stdout).unwrap();
    assert!(
        v.starts_with(concat!(
            "hashsweep ",
            env!("CARGO_PKG_VERSION"),
            " (commit "
        )),
        "{v}"
    );
    assert!(v.contains(", features: "), "{v}");
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output();
    match head {
        Ok(h) if h.status.success() => {
            let h = String::from_utf8(h.stdout).unwrap();
            assert!(v.contains(&format!("commit {}", h.trim())), "{v} vs {h}");
        }
        _ => assert!(v.contains("commit unknown"), "{v}"),
    }
}

// Unix only.
#[cfg(unix)]
/// Debian's chromium, or `None` (with a SKIPPED line) unless HASHSWEEP_REQUIRE_CHROMIUM is set.
fn chromium() -> Option<PathBuf> {
    let found = ["chromium", "chromium-browser"].iter().find_map(|name| {
        std::env::var_os("PATH")?
            .to_str()?
            .split(':')
            .map(|d| Path::new(d).join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("HASHSWEEP_REQUIRE_CHROMIUM").is_none(),
            "HASHSWEEP_REQUIRE_CHROMIUM is set but chromium is not installed"
        );
        skip("chromium is not installed (apt-get install chromium): the HTML page is not opened");
    }
    found
}

// Unix only.
#[cfg(unix)]
/// The page as chromium shows it after its script ran (`--dump-dom`), opened at `fragment`.
fn browse(browser: &Path, page: &Path, fragment: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let url = format!("file://{}#{fragment}", page.display());
    let out = run_with_timeout(
        Command::new(browser)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--no-first-run",
                "--dump-dom",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(&url),
        Duration::from_secs(120),
    );
    assert!(out.status.success(), "chromium: {}", stderr(&out));
    String::from_utf8(out.stdout).unwrap()
}

// Unix only: needs chromium.
#[cfg(unix)]
#[test]
fn the_html_page_shows_the_detections_in_a_real_browser() {
    let mock = MockServer::start(Some(KEY)).unwrap();
    let t = Tree::new();
    // A name that would be markup if it were not escaped.
    t.file("inbox/<img src=x onerror=alert(1)>.com", EICAR);
    let clean = t.file("docs/readme.txt", b"hello\n");
    mock.set(&coreutils("sha256sum", &clean), 0, 0);
    t.file("bin/tool", &random_bytes(3, 3000));
    let out_dir = Tree::new();
    let page = out_dir.path().join("sweep.html");
    let out = run(scan_cmd(&mock, t.path())
        .args(["--details", "--host-name", "web<01>", "-o"])
        .arg(&page));
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let html = read(&page);
    assert!(!html.contains("<img"), "escaped: {html}");

    let Some(browser) = chromium() else { return };
    let dom = browse(&browser, &page, "verdict=unknown");
    let detections = dom
        .split("id=\"detections\"")
        .nth(1)
        .and_then(|d| d.split("id=\"records\"").next())
        .unwrap_or_else(|| panic!("no detections section: {dom}"));
    assert!(detections.contains("Detections (1)"), "{detections}");
    assert!(
        detections.contains("inbox/&lt;img src=x onerror=alert(1)&gt;.com"),
        "the name as text: {detections}"
    );
    assert!(detections.contains("EICAR-Test-File"), "{detections}");
    assert!(detections.contains("MockAV"), "engine names: {detections}");
    assert!(
        detections.contains(&format!(
            "https://metadefender.opswat.com/results/file/{EICAR_SHA256}/hash/overview"
        )),
        "{detections}"
    );
    assert!(!dom.contains("<img"), "no element from a file name: {dom}");
    assert!(dom.contains("web&lt;01&gt;"), "the host in the header");
    assert!(dom.contains("<svg id=\"chart\""), "the chart");
    // The script ran: the fragment chose `unknown`, so the clean row is hidden.
    let row = |needle: &str| -> String {
        dom.split("<tr ")
            .find(|r| r.contains(needle))
            .unwrap_or_else(|| panic!("no row for {needle}: {dom}"))
            .split('>')
            .next()
            .unwrap()
            .to_string()
    };
    assert!(row("docs/readme.txt").contains("hidden"), "{dom}");
    assert!(!row("bin/tool").contains("hidden"), "{dom}");
    assert!(dom.contains("<span id=\"shown\">1</span>"), "{dom}");
    // Searching by text hides the rest too.
    let dom = browse(&browser, &page, "q=readme");
    assert!(dom.contains("<span id=\"shown\">1</span>"), "{dom}");
}

/// `c` run with stdout and stderr on a new pseudo-terminal `cols` wide; what the terminal got.
#[cfg(target_os = "linux")]
fn on_a_terminal(c: &mut Command, cols: u16) -> (i32, String) {
    use std::io::Read;
    use std::os::fd::{FromRawFd, OwnedFd};
    use std::process::Stdio;
    let (mut master, mut slave) = (0, 0);
    let size = libc::winsize {
        ws_row: 40,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: openpty writes two descriptors we then own; no name buffer, no termios.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            &size,
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both are fresh descriptors owned by nobody else.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    let mut child = c
        .stdin(Stdio::null())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave)
        .spawn()
        .expect("spawn hashsweep");
    // Our copy of the terminal's far end is gone with the Command's (dropped with `c`'s
    // stdio once spawned): the read below ends (EIO) when the child's copies close.
    c.stdout(Stdio::null()).stderr(Stdio::null());
    let mut got = Vec::new();
    let mut reader = std::fs::File::from(master);
    let mut buf = [0u8; 4096];
    loop {
        match reader.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    let status = child.wait().expect("wait for hashsweep");
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&got).into_owned(),
    )
}

#[cfg(target_os = "linux")]
#[test]
fn on_a_terminal_the_progress_line_is_drawn_unless_asked_not_and_wide_ones_get_whole_digests() {
    let t = Tree::new();
    // Throttled to 1 MiB/s, 2 MiB take about 2 s: several refreshes of the line.
    t.file("slow/big.bin", &vec![7u8; 2 << 20]);
    let root = t.path().join("slow");
    let scan = |extra: &[&str]| {
        let mut c = cmd();
        c.args([
            "scan",
            "--offline",
            "--no-cache",
            "--max-io-rate",
            "1M",
            "--format",
            "ndjson",
        ])
        .args(extra)
        .arg(&root);
        on_a_terminal(&mut c, 100)
    };
    let (code, shown) = scan(&[]);
    assert_eq!(code, 0, "{shown}");
    assert!(
        shown.contains(" hashed") && shown.contains("/1 paths"),
        "no progress line on the terminal: {shown:?}"
    );
    let (code, shown) = scan(&["--no-progress"]);
    assert_eq!(code, 0, "{shown}");
    assert!(!shown.contains("/1 paths"), "{shown:?}");
    assert!(shown.contains("big.bin"), "the report itself: {shown:?}");

    // The table on a terminal: whole digests from 147 columns, 16 digits below.
    let mock = MockServer::start(Some(KEY)).unwrap();
    let lookup = |cols| {
        let mut c = cmd();
        c.env("METADEFENDER_APIKEY", KEY)
            .args(["lookup", "--api-url", &mock.url(), EICAR_SHA256]);
        on_a_terminal(&mut c, cols)
    };
    // The table's rows (the summary names a detected digest whole in any case).
    let table = |shown: String| -> String {
        shown
            .lines()
            .filter(|l| !l.starts_with("hashsweep:"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let (code, wide) = lookup(160);
    assert_eq!(code, 1, "{wide}");
    let wide = table(wide);
    assert!(wide.contains(EICAR_SHA256), "{wide}");
    let narrow = table(lookup(100).1);
    assert!(
        !narrow.contains(EICAR_SHA256) && narrow.contains(&EICAR_SHA256[..16]),
        "{narrow}"
    );
}
