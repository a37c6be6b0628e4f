//! The file system misbehaves: unreadable files and directories (as an unprivileged user,
//! since root reads everything), `/proc` files whose size lies, paths longer than PATH_MAX,
//! names with newlines. Each gets a record with a reason; the run goes on; exit status 2.

use std::os::unix::fs::PermissionsExt;

use crate::util::*;

#[test]
fn unreadable_file_and_unlistable_directory_are_errors_with_reasons() {
    let t = Tree::new();
    std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let ok = t.file("ok.txt", b"fine");
    let secret = t.file("secret.txt", b"private");
    t.file("locked/inside.txt", b"cannot list");
    std::fs::set_permissions(&ok, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o000)).unwrap();
    std::fs::set_permissions(
        t.path().join("locked"),
        std::fs::Permissions::from_mode(0o000),
    )
    .unwrap();
    // As root the scan runs as nobody; otherwise as ourselves. Only a user who reads a
    // mode-000 file anyway (CAP_DAC_OVERRIDE) cannot run this test.
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 && std::fs::read(&secret).is_ok() {
        skip("this user reads a mode-000 file (CAP_DAC_OVERRIDE?): nothing is unreadable");
        return;
    }
    let mut c = cmd_unprivileged();
    let out = run(c
        .args(["scan", "--offline", "--format", "ndjson"])
        .arg(t.path()));
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let recs = ndjson(&out);
    let s = rec(&recs, "secret.txt");
    assert_eq!(s["verdict"], "error");
    assert!(
        s["error"].as_str().unwrap().contains("Permission denied"),
        "{s}"
    );
    let l = rec(&recs, "/locked");
    assert_eq!(l["verdict"], "error");
    assert!(
        l["error"].as_str().unwrap().contains("Permission denied"),
        "{l}"
    );
    assert_eq!(rec(&recs, "ok.txt")["verdict"], "not_looked_up");
}

/// With the report in a file, stderr names an unlistable root on a line of its own and the
/// first few other errors with their reasons, then how many more.
#[test]
fn errors_are_named_on_stderr_with_the_report_in_a_file() {
    let t = Tree::new();
    std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let ok = t.file("ok.txt", b"fine");
    std::fs::set_permissions(&ok, std::fs::Permissions::from_mode(0o644)).unwrap();
    for i in 0..7 {
        let p = t.file(format!("secret{i}.txt"), b"private");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o000)).unwrap();
    }
    let locked = t.path().join("locked");
    std::fs::create_dir(&locked).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 && std::fs::read(t.path().join("secret0.txt")).is_ok() {
        skip("this user reads a mode-000 file (CAP_DAC_OVERRIDE?): nothing is unreadable");
        return;
    }
    // Somewhere the scan (as nobody when we are root) may write its report.
    let out_dir = Tree::new();
    std::fs::set_permissions(out_dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let report = out_dir.path().join("r.ndjson");
    let mut c = cmd_unprivileged();
    let out = run(c
        .args(["scan", "--offline", "-o"])
        .arg(&report)
        .arg(t.path())
        .arg(&locked));
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "hashsweep: root {} could not be swept: Permission denied",
            locked.display()
        )),
        "{err}"
    );
    // 8 errors: the root on its line; of the first five by path (`locked` comes first), the
    // four others in the list, then the three more.
    let list = err
        .lines()
        .find(|l| l.starts_with("hashsweep: errors: "))
        .unwrap_or_else(|| panic!("no list of errors: {err}"));
    let first = format!(
        "hashsweep: errors: {} (cannot open: Permission denied), ",
        t.path().join("secret0.txt").display()
    );
    assert!(list.starts_with(&first), "{list}");
    assert!(
        !list.contains("locked"),
        "the root has its own line: {list}"
    );
    assert!(list.ends_with(" and 3 more"), "{list}");
    assert_eq!(
        list.matches("(cannot open: Permission denied)").count(),
        4,
        "{list}"
    );
}

/// With `--pseudo-fs` (without it a root on proc is one skipped record: see `livesys`).
#[test]
fn proc_files_that_report_size_zero_are_read_and_flagged() {
    let out = run(cmd().args([
        "scan",
        "--offline",
        "--pseudo-fs",
        "--format",
        "ndjson",
        "/proc/self/status",
    ]));
    let r = &ndjson(&out)[0];
    assert!(r["size"].as_u64().unwrap() > 0, "{r}");
    assert_eq!(r["sha256"].as_str().unwrap().len(), 64);
    assert!(r["note"].as_str().unwrap().contains("stat said 0"), "{r}");
    assert_eq!(
        code(&out),
        2,
        "a digest of a moving target makes the sweep incomplete"
    );
}

#[test]
fn paths_longer_than_path_max_are_reported_not_dropped() {
    let t = Tree::new();
    // Build a 5 000-byte deep path with mkdirat/openat, since absolute paths that long fail.
    let comp = std::ffi::CString::new("d".repeat(200)).unwrap();
    let root = std::ffi::CString::new(t.path().as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: `root` is a NUL-terminated path that outlives the calls.
    unsafe {
        let mut fd = libc::open(root.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY);
        assert!(fd >= 0);
        for _ in 0..25 {
            assert_eq!(libc::mkdirat(fd, comp.as_ptr(), 0o755), 0);
            let next = libc::openat(fd, comp.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY);
            assert!(next >= 0);
            libc::close(fd);
            fd = next;
        }
        let name = std::ffi::CString::new("f.txt").unwrap();
        let f = libc::openat(fd, name.as_ptr(), libc::O_WRONLY | libc::O_CREAT, 0o644);
        assert!(f >= 0);
        libc::close(f);
        libc::close(fd);
    }
    t.file("shallow.txt", b"ok");
    let out = run(cmd()
        .args(["scan", "--offline", "--format", "ndjson"])
        .arg(t.path()));
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let recs = ndjson(&out);
    assert_eq!(rec(&recs, "shallow.txt")["verdict"], "not_looked_up");
    let long = recs
        .iter()
        .find(|r| r["verdict"] == "error")
        .expect("the deep part is reported");
    assert!(
        long["error"].as_str().unwrap().contains("too long"),
        "{long}"
    );
}

#[test]
fn newlines_commas_and_quotes_stay_inside_one_record_in_table_and_csv() {
    let t = Tree::new();
    t.file("a\nb,\"c\".txt", b"x");
    t.file("plain", b"y");
    let out = run(cmd()
        .args(["scan", "--offline", "--format", "table"])
        .arg(t.path()));
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        text.lines().count(),
        3,
        "header + one line per record: {text}"
    );
    assert!(text.contains("a\\nb,\"c\".txt"), "{text}");
    let out = run(cmd()
        .args(["scan", "--offline", "--format", "csv"])
        .arg(t.path()));
    let rows: Vec<csv::StringRecord> = csv::Reader::from_reader(&out.stdout[..])
        .records()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().any(|r| r[0].ends_with("a\nb,\"c\".txt")));
}
