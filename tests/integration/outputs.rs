//! Logs and report files as people expect them: no colour codes in what goes to a pipe or a
//! file, and report files made with the umask's mode like any other file.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::*;

/// As an interactive shell would leave the environment: colours are wanted where they work.
fn colourful(c: &mut Command) -> &mut Command {
    c.env("TERM", "xterm-256color")
        .env_remove("NO_COLOR")
        .env_remove("CLICOLOR_FORCE")
        .env_remove("CLICOLOR")
}

fn assert_plain(what: &str, bytes: &[u8]) {
    assert!(
        !bytes.contains(&0x1b),
        "{what} has an escape sequence: {:?}",
        String::from_utf8_lossy(bytes)
    );
}

#[test]
fn no_colour_codes_on_piped_stderr_and_stdout() {
    let mock = MockServer::start(Some(KEY)).unwrap();
    let t = Tree::new();
    t.file("eicar.com", EICAR);
    t.file("clean.txt", b"clean");
    // -v messages (a retry), the summary and the table report with its verdicts.
    mock.push_fault(Fault::new(500, "upstream on fire"));
    let out = run(colourful(&mut scan_cmd(&mock, t.path())).args(["-v", "--format", "table"]));
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("retrying"), "{}", stderr(&out));
    assert_plain("scan's stderr", &out.stderr);
    assert_plain("scan's table", &out.stdout);
    // A usage error (clap colours its own on a terminal).
    let out = run(colourful(&mut cmd()).args(["scan", "--no-such-flag", "."]));
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("--no-such-flag"));
    assert_plain("a usage error", &out.stderr);
}

#[test]
fn no_colour_codes_in_the_gateways_log_when_it_is_not_a_terminal() {
    let mock = MockServer::start(Some(KEY)).unwrap();
    let t = Tree::new();
    let tokens = t.file("tokens", b"endpoint0 tok0-aaaaaaaaaaaaaaaaaaaa\n");
    let store = format!("sqlite:{}", t.path().join("store.sqlite").display());
    let mut child = colourful(&mut cmd())
        .env("METADEFENDER_APIKEY", KEY)
        .args(["serve", "--listen", "127.0.0.1:0", "--log", "debug"])
        .arg("--tokens")
        .arg(&tokens)
        .args(["--store", &store, "--api-url", &mock.url()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn hashsweep serve");
    let (tx, rx) = std::sync::mpsc::channel();
    let err = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut log = Vec::new();
        let mut r = BufReader::new(err);
        let mut line = Vec::new();
        while r.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
            let text = String::from_utf8_lossy(&line).into_owned();
            if let Some(rest) = text.split("listening on ").nth(1) {
                let url = rest
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_string();
                let _ = tx.send(url);
            }
            log.append(&mut line);
        }
        log
    });
    let url = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the gateway started");
    // One lookup through it: a request line at debug, with the token's name.
    let out = run(cmd()
        .env("METADEFENDER_APIKEY", "tok0-aaaaaaaaaaaaaaaaaaaa")
        .args(["lookup", "--api-url", &url, EICAR_SHA256]));
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    // SAFETY: kill has no memory preconditions; the pid is this test's own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("wait").is_none() {
        assert!(Instant::now() < deadline, "the gateway did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = reader.join().expect("the log");
    let text = String::from_utf8_lossy(&log);
    assert!(text.contains("endpoint0"), "a request line: {text}");
    assert_plain("the gateway's log", &log);
}

/// `hashsweep ARGS` run under `umask`.
fn run_with_umask(umask: u32, args: &[&std::ffi::OsStr]) -> std::process::Output {
    let mut c = cmd();
    c.args(args);
    // SAFETY: umask(2) is async-signal-safe and touches no memory of this process.
    unsafe {
        c.pre_exec(move || {
            libc::umask(umask as libc::mode_t);
            Ok(())
        });
    }
    run(&mut c)
}

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p)
        .expect("the report")
        .permissions()
        .mode()
        & 0o7777
}

#[test]
fn report_files_honour_the_umask() {
    let t = Tree::new();
    t.file("tree/a.txt", b"a");
    let tree = t.path().join("tree");
    let scan = |umask: u32, report: &std::path::Path| {
        let out = run_with_umask(
            umask,
            &[
                "scan".as_ref(),
                "--offline".as_ref(),
                "-o".as_ref(),
                report.as_os_str(),
                tree.as_os_str(),
            ],
        );
        assert_eq!(code(&out), 0, "{}", stderr(&out));
    };
    let shared = t.path().join("shared.ndjson");
    scan(0o022, &shared);
    assert_eq!(mode(&shared), 0o644, "a new report under umask 022");
    let private = t.path().join("private.html");
    scan(0o077, &private);
    assert_eq!(mode(&private), 0o600, "a new report under umask 077");
    // A report that replaces a file keeps that file's mode, as `>` would.
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o640)).unwrap();
    scan(0o022, &shared);
    assert_eq!(mode(&shared), 0o640, "a replaced report keeps its mode");
    assert!(std::fs::read_to_string(&shared).unwrap().contains("a.txt"));
    // diff's comparison file too.
    let changes = t.path().join("changes.csv");
    let out = run_with_umask(
        0o027,
        &[
            "diff".as_ref(),
            "-o".as_ref(),
            changes.as_os_str(),
            shared.as_os_str(),
            shared.as_os_str(),
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(mode(&changes), 0o640, "diff -o under umask 027");
    // No temp file is left beside them.
    let left: Vec<_> = std::fs::read_dir(t.path())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".hashsweep-report.")
        })
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
