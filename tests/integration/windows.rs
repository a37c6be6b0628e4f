//! Windows behaviours: a file held open without sharing, a junction, a path over 260
//! characters, names that differ only in case, alternate data streams. Run under Wine in CI (`.ci/run`); where Wine
//! cannot show a behaviour the test says so.

use std::os::windows::fs::OpenOptionsExt;
use std::process::Command;

use crate::util::*;

fn offline_scan(root: &std::path::Path, extra: &[&str]) -> std::process::Output {
    run(cmd()
        .args(["scan", "--offline", "--format", "ndjson"])
        .args(extra)
        .arg(root))
}

/// Wine's server applies share modes between Wine processes, as Windows does between any two:
/// the file this test holds with no sharing cannot be opened for reading by hashsweep.
#[test]
fn a_file_locked_by_another_process_is_an_error_and_the_sweep_goes_on() {
    let t = Tree::new();
    let locked = t.file("locked.bin", b"held without sharing");
    t.file("free.bin", b"free");
    let _held = std::fs::OpenOptions::new()
        .read(true)
        .share_mode(0)
        .open(&locked)
        .unwrap();
    let out = offline_scan(t.path(), &[]);
    assert_eq!(
        code(&out),
        2,
        "an unread file is an error: {}",
        stderr(&out)
    );
    let recs = ndjson(&out);
    let l = rec(&recs, "locked.bin");
    assert_eq!(l["verdict"], "error", "{l}");
    assert_eq!(l["error"], "locked by another process", "{l}");
    assert_eq!(rec(&recs, "free.bin")["verdict"], "not_looked_up");
}

#[test]
fn a_path_over_260_characters_is_read_and_reported_without_the_verbatim_prefix() {
    let t = Tree::new();
    let mut dir = t.path().to_path_buf();
    while dir.as_os_str().len() < 300 {
        dir.push("a-directory-name-of-some-forty-characters");
    }
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("deep.txt"), b"deep").unwrap();
    let out = offline_scan(t.path(), &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let recs = ndjson(&out);
    let r = rec(&recs, "deep.txt");
    let path = r["path"].as_str().unwrap();
    assert!(path.len() > 300, "{path}");
    assert!(!path.starts_with(r"\\?\"), "{path}");
    let want = coreutils("sha256sum", &dir.join("deep.txt"));
    assert_eq!(r["sha256"], want.as_str(), "{r}");
}

/// Windows looks names up without regard to case: a root named in another case is the file.
#[test]
fn a_root_named_in_another_case_is_the_same_file() {
    let t = Tree::new();
    let f = t.file("Mixed.Case.TXT", b"case");
    let out = offline_scan(&t.path().join("mixed.case.txt"), &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let recs = ndjson(&out);
    assert_eq!(recs.len(), 1, "{recs:?}");
    assert_eq!(recs[0]["sha256"], coreutils("sha256sum", &f).as_str());
}

/// A junction (a directory reparse point) is not entered unless `-L`, like a symlink.
/// Made with `cmd /c mklink /J`; skipped where that cannot make one.
#[test]
fn a_junction_is_not_followed_unless_asked() {
    let t = Tree::new();
    t.file("target/inside.txt", b"inside");
    let junction = t.path().join("junction");
    let made = Command::new("cmd")
        .args(["/c", "mklink", "/J"])
        .arg(&junction)
        .arg(t.path().join("target"))
        .output()
        .is_ok_and(|o| o.status.success())
        && junction.join("inside.txt").exists();
    if !made {
        skip("cmd /c mklink /J made no junction here");
        return;
    }
    let through = |recs: &[serde_json::Value]| {
        recs.iter()
            .filter(|r| {
                r["path"]
                    .as_str()
                    .is_some_and(|p| p.replace('\\', "/").ends_with("junction/inside.txt"))
            })
            .count()
    };
    let out = offline_scan(t.path(), &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let recs = ndjson(&out);
    assert_eq!(through(&recs), 0, "not followed: {recs:?}");
    assert_eq!(rec(&recs, "target/inside.txt")["verdict"], "not_looked_up");
    let out = offline_scan(t.path(), &["-L"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(through(&ndjson(&out)), 1, "followed with -L");
}

/// NTFS keeps named data streams inside a file (`f.txt:name`); Wine has none: there the
/// write below makes a file of that name, and the test says so.
#[test]
fn alternate_data_streams_are_skipped_records_and_read_with_streams() {
    let t = Tree::new();
    let file = t.file("dir/f.txt", b"the file itself");
    let payload = b"hidden in a stream";
    let stream = t.path().join("dir/f.txt:payload");
    let made = std::fs::write(&stream, payload).is_ok()
        && std::fs::read_dir(t.path().join("dir")).map_or(0, |d| d.count()) == 1
        && std::fs::read(&file).is_ok_and(|b| b == b"the file itself");
    if !made {
        skip("this file system keeps no alternate data streams (Wine's): not shown");
        return;
    }
    let dir = t.path().join("dir");
    let out = offline_scan(&dir, &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let recs = ndjson(&out);
    let s = rec(&recs, "f.txt:payload");
    assert_eq!(s["verdict"], "skipped", "{s}");
    assert!(
        s["note"].as_str().is_some_and(|e| e.contains("--streams")),
        "{s}"
    );
    assert_eq!(rec(&recs, "f.txt")["sha256"], coreutils("sha256sum", &file));

    let out = offline_scan(&dir, &["--streams"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let recs = ndjson(&out);
    let s = rec(&recs, "f.txt:payload");
    assert_eq!(s["verdict"], "not_looked_up", "{s}");
    use sha2::Digest as _;
    let want: String = sha2::Sha256::digest(payload)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(s["sha256"], want, "{s}");
    assert_eq!(rec(&recs, "f.txt")["sha256"], coreutils("sha256sum", &file));
}

/// Ctrl-Break (as Ctrl-C, which cannot be sent to one process group alone) ends the run as
/// SIGINT does on Unix: the report written for what is known, exit 130. Under Wine the event
/// reaches the console handler as on Windows.
#[test]
fn ctrl_break_ends_the_run_with_130_and_the_report_written() {
    use std::os::windows::process::CommandExt;
    use std::process::Stdio;
    use std::time::Duration;
    use windows_sys::Win32::System::Console::{CTRL_BREAK_EVENT, GenerateConsoleCtrlEvent};
    const CREATE_NEW_PROCESS_GROUP: u32 = 0x0000_0200;
    // Answers after 8 s: the run is still waiting for it when the event comes.
    let mock = MockServer::start_on("127.0.0.1:0", Some(KEY), Duration::from_secs(8)).unwrap();
    let t = Tree::new();
    for i in 0..20 {
        t.file(format!("f{i}"), format!("{i}").as_bytes());
    }
    let out_dir = Tree::new();
    let report = out_dir.path().join("r.ndjson");
    let mut c = scan_cmd(&mock, t.path());
    c.args(["--format", "ndjson", "-o"])
        .arg(&report)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .creation_flags(CREATE_NEW_PROCESS_GROUP);
    let mut child = c.spawn().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    // SAFETY: no memory is passed; the group id is our child's (its own group).
    if unsafe { GenerateConsoleCtrlEvent(CTRL_BREAK_EVENT, child.id()) } == 0 {
        let _ = child.kill();
        let _ = child.wait();
        // Under Wine, as CI runs it (no console), the event cannot be sent; a manual check
        // (SIGINT to the Wine process, which Wine delivers as Ctrl-C) exits 130 with the report.
        skip("GenerateConsoleCtrlEvent failed (no console here)");
        return;
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), 130, "{}", stderr(&out));
    let recs: Vec<serde_json::Value> = std::fs::read_to_string(&report)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(recs.len(), 20, "every path has its record");
    assert!(
        recs.iter().all(|r| r["verdict"] == "not_looked_up"),
        "{recs:?}"
    );
}
