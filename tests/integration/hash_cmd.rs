//! `hashsweep hash`: output that `sha256sum -c` (and md5sum/sha1sum) accepts.

use std::process::{Command, Stdio};

use crate::util::*;

fn check_with(tool: &str, list: &[u8], dir: &std::path::Path) -> (bool, String) {
    let mut child = Command::new(tool)
        .args(["-c", "--strict", "-"])
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), list).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

// Unix only: a name of raw non-UTF-8 bytes exists only there.
#[cfg(unix)]
#[test]
fn output_passes_sha256sum_md5sum_and_sha1sum_check() {
    let t = Tree::new();
    t.file("plain.txt", b"plain");
    t.file("with space/and,comma.txt", b"space");
    t.file("new\nline", b"newline");
    t.file("back\\slash", b"backslash");
    t.file_bytes(b"bad\xffutf8", b"not utf8");
    t.file("deep/er/and/deeper/f", &random_bytes(9, 100_000));
    for (flag, tool) in [
        (None, "sha256sum"),
        (Some("--md5"), "md5sum"),
        (Some("--sha1"), "sha1sum"),
    ] {
        let mut c = cmd();
        c.current_dir(t.path()).arg("hash");
        if let Some(f) = flag {
            c.arg(f);
        }
        let out = run(c.arg("."));
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        let lines = out.stdout.iter().filter(|&&b| b == b'\n').count();
        assert_eq!(lines, 6, "{}", String::from_utf8_lossy(&out.stdout));
        let (ok, msg) = check_with(tool, &out.stdout, t.path());
        assert!(ok, "{tool} -c failed: {msg}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("./deep/er/and/deeper/f"),
            "paths joined to the root as given"
        );
    }
}

#[test]
fn a_changed_file_fails_the_check_and_unreadable_paths_exit_2() {
    let t = Tree::new();
    let f = t.file("f", b"before");
    let out = run(cmd().current_dir(t.path()).args(["hash", "f"]));
    std::fs::write(&f, b"after").unwrap();
    let (ok, _) = check_with("sha256sum", &out.stdout, t.path());
    assert!(!ok, "the check must be able to fail");
    let out = run(cmd().current_dir(t.path()).args(["hash", "f", "missing"]));
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("missing"));
    assert_eq!(out.stdout.iter().filter(|&&b| b == b'\n').count(), 1);
}
