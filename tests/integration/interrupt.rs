//! Ctrl-C and SIGTERM: the report is written for what is known, the rest is not_looked_up,
//! the exit status says which signal; a second signal exits at once.

use std::io::Read;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::util::*;

fn start_slow_scan(mock: &MockServer, t: &Tree, report: &std::path::Path) -> Child {
    let mut c = scan_cmd(mock, t.path());
    c.args(["--format", "ndjson", "-o"])
        .arg(report)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c.spawn().unwrap()
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: kill has no memory preconditions; the pid is our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
}

fn wait_for(mut child: Child, limit: Duration) -> (i32, Duration, String) {
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            return (
                st.code().unwrap_or(-1),
                start.elapsed(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            );
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("did not exit within {limit:?} of the signal");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A scan of 50 files against a mock that answers after 8 s, 0.7 s under way; returns what
/// must live as long as the child.
fn slow_scan_underway() -> (MockServer, Tree, Tree, std::path::PathBuf, Child) {
    let mock = MockServer::start_on("127.0.0.1:0", Some(KEY), Duration::from_secs(8)).unwrap();
    let t = tree();
    let out_dir = Tree::new();
    let report = out_dir.path().join("r.ndjson");
    let child = start_slow_scan(&mock, &t, &report);
    std::thread::sleep(Duration::from_millis(700));
    (mock, t, out_dir, report, child)
}

fn tree() -> Tree {
    let t = Tree::new();
    for i in 0..50 {
        t.file(format!("f{i}"), format!("{i}").as_bytes());
    }
    t
}

#[test]
fn sigint_and_sigterm_write_the_report_and_exit_130_143() {
    for (sig, expected) in [(libc::SIGINT, 130), (libc::SIGTERM, 143)] {
        let (_mock, _t, _out_dir, report, child) = slow_scan_underway();
        signal(&child, sig);
        let (code, took, err) = wait_for(child, Duration::from_secs(10));
        assert_eq!(code, expected, "{err}");
        assert!(took < Duration::from_secs(6), "took {took:?}");
        assert!(err.contains("interrupted by"), "{err}");
        let text = std::fs::read_to_string(&report).expect("report written");
        let recs: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(recs.len(), 50, "every hashed path is in the report");
        assert!(
            recs.iter().all(|r| r["verdict"] == "not_looked_up"),
            "{text}"
        );
    }
}

/// The first Ctrl-C says at once, while the run winds down, that the report is being finished
/// and how to stop without it; the usual closing line follows once it is written.
#[test]
fn the_first_signal_says_the_report_is_being_finished() {
    let (_mock, _t, _out_dir, _report, mut child) = slow_scan_underway();
    let mut stderr = child.stderr.take().unwrap();
    signal(&child, libc::SIGINT);
    // Read stderr as it comes: the line must be there while the run is still finishing (the
    // mock answers after 8 s; an interrupted run waits up to 3 s for answers in flight).
    let said = "hashsweep: interrupted (SIGINT): finishing the report with what is known \
                (Ctrl-C again to stop at once)";
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains(said) {
        let n = stderr.read(&mut buf).unwrap();
        assert!(n > 0, "stderr closed: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "said while the report is being finished, not after"
    );
    stderr.read_to_end(&mut seen).unwrap();
    let (code, _, _) = wait_for(child, Duration::from_secs(10));
    assert_eq!(code, 130);
    let err = String::from_utf8_lossy(&seen);
    let first = err.find(said).unwrap();
    let last = err.find("interrupted by SIGINT").expect("the closing line");
    assert!(first < last, "{err}");
}

/// The second signal comes while the report is being written: to a pipe the test stops
/// reading, so the writer is blocked in the middle of it until something ends the process.
/// It must exit at once with 128 + signal, the report cut off where it was, nothing after it.
#[test]
fn a_second_signal_during_the_report_exits_at_once() {
    let t = Tree::new();
    // Far more report than the pipe (64 KiB) and the report's buffer (64 KiB) hold.
    let files = 3000;
    for i in 0..files {
        t.file(
            format!("dir{}/file-{i:05}", i % 10),
            format!("{i}").as_bytes(),
        );
    }
    for (sig, expected) in [(libc::SIGINT, 130), (libc::SIGTERM, 143)] {
        let mut child = cmd()
            .args(["scan", "--offline", "--format", "ndjson"])
            .arg(t.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut report = child.stdout.take().unwrap();
        let mut head = [0u8; 1];
        report.read_exact(&mut head).expect("the report begins");
        signal(&child, sig);
        wait_until_delivered(child.id(), sig, Duration::from_secs(10));
        signal(&child, sig);
        // Without the second signal's exit the writer stays blocked and this times out.
        let (code, _, err) = wait_for(child, Duration::from_secs(10));
        assert_eq!(code, expected, "{err}");
        assert!(
            !err.contains("interrupted by"),
            "exited at once, not after finishing the report: {err}"
        );
        assert!(
            err.contains(": stopping now, without finishing the report"),
            "says why it stopped: {err}"
        );
        let mut all = head.to_vec();
        report.read_to_end(&mut all).unwrap();
        let lines = String::from_utf8_lossy(&all).lines().count();
        assert!(
            lines < files,
            "the report was cut off: {lines} lines for {files} files"
        );
    }
}
