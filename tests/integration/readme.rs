//! The examples of the README and the user guide (`docs/src/`) run as written, against the
//! stand-in on 127.0.0.1: each block is taken from the page itself (so they cannot drift; a
//! block may move between the README and a chapter, [`block`] finds it in either), with only
//! the machine's paths put in place (the key file, the log folder, the swept folder) and
//! `hashsweep`, `logger` (which writes to a file here) and `date` (which names the night) on
//! PATH.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::util::*;
use hashsweep_mock::EICAR_MD5;

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README")
}

/// The one fenced ```sh block of the README or a guide chapter holding `marker`.
fn block(marker: &str) -> String {
    let mut found = Vec::new();
    for (name, text) in crate::guide::docs() {
        let mut rest = text.as_str();
        while let Some(start) = rest.find("```sh\n") {
            let body = &rest[start + 6..];
            let end = body
                .find("\n```")
                .unwrap_or_else(|| panic!("{name}: an unclosed block"));
            if body[..end].contains(marker) {
                found.push((name.clone(), body[..end].to_string()));
            }
            rest = &body[end + 4..];
        }
    }
    let names: Vec<&str> = found.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        found.len(),
        1,
        "one sh block of the README and the guide holds {marker:?}; found in {names:?}"
    );
    found.remove(0).1
}

/// Replace `from` (which must be in the script) with `to`.
fn put(script: String, from: &str, to: &str) -> String {
    assert!(
        script.contains(from),
        "{from:?} in the README block:\n{script}"
    );
    script.replace(from, to)
}

/// A machine for the examples: a key file, a log folder, a folder to sweep, and a PATH with
/// hashsweep, a `logger` that appends to `logged`, and a `date` that says `$NIGHT` for `+%F`.
struct Machine {
    dir: Tree,
    mock: MockServer,
}

impl Machine {
    fn new() -> Option<Machine> {
        if Command::new("jq").arg("--version").output().is_err() {
            if std::env::var_os("HASHSWEEP_REQUIRE_JQ").is_some() {
                panic!("jq is required (HASHSWEEP_REQUIRE_JQ) and not on PATH");
            }
            skip("jq is not on PATH (the README's audit script uses it)");
            return None;
        }
        let dir = Tree::new();
        dir.file("key", KEY.as_bytes());
        std::fs::create_dir_all(dir.path().join("log")).unwrap();
        std::fs::create_dir_all(dir.path().join("sweep")).unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_hashsweep"), bin.join("hashsweep")).unwrap();
        let logged = dir.path().join("logged");
        let script = |name: &str, text: String| {
            let p = bin.join(name);
            std::fs::write(&p, text).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        };
        script(
            "logger",
            format!(
                "#!/bin/sh\necho \"logger $*\" >> '{0}'\n[ -t 0 ] || cat >> '{0}'\n",
                logged.display()
            ),
        );
        script(
            "date",
            "#!/bin/sh\nif [ \"$1\" = +%F ]; then echo \"$NIGHT\"; else exec /bin/date \"$@\"; fi\n"
                .into(),
        );
        let mock = MockServer::start(Some(KEY)).unwrap();
        Some(Machine { dir, mock })
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The paths of the README's machine put in place of ours.
    fn localise(&self, script: String) -> String {
        let script = script.replace(
            "/etc/hashsweep/key",
            &self.path("key").display().to_string(),
        );
        script.replace(
            "/var/log/hashsweep",
            &self.path("log").display().to_string(),
        )
    }

    /// Run `script` with sh; its exit status and what `logger` got since the last run.
    fn run(&self, script: &str, night: &str) -> (i32, String, String) {
        let logged = self.path("logged");
        let _ = std::fs::remove_file(&logged);
        let out = self.sh(script, night);
        (
            code(&out),
            std::fs::read_to_string(&logged).unwrap_or_default(),
            stderr(&out),
        )
    }

    /// Run `script` with sh, on this machine's PATH and service.
    fn sh(&self, script: &str, night: &str) -> Output {
        let path = format!(
            "{}:{}",
            self.path("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        run(Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir(self.dir.path())
            .env("PATH", path)
            .env("NIGHT", night)
            .env("HASHSWEEP_API_URL", self.mock.url())
            .env("HASHSWEEP_CACHE", self.path("cache.sqlite"))
            .env("HASHSWEEP_CONFIG", "/dev/null")
            .env_remove("METADEFENDER_APIKEY")
            .env_remove("HASHSWEEP_NO_CACHE")
            .stdin(Stdio::null()))
    }
}

fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The nightly audit script, unchanged, on three nights: the first has no baseline, the
/// second finds a detection and a modified file, the third a removed one.
#[test]
fn the_nightly_audit_script_works_on_nights_one_two_and_three() {
    let Some(m) = Machine::new() else { return };
    let sweep = m.path("sweep");
    let script = m.localise(block("/etc/cron.daily/hashsweep-audit"));
    let script = put(script, " /srv\n", &format!(" {}\n", sweep.display()));
    let log = m.path("log");

    std::fs::write(sweep.join("a.txt"), b"a").unwrap();
    std::fs::write(sweep.join("b.txt"), b"b").unwrap();
    let (status, logged, err) = m.run(&script, "2026-12-01");
    assert_eq!(status, 0, "night 1: {err}");
    assert!(err.contains("no baseline yet"), "{err}");
    assert_eq!(logged.matches("\"change\":\"new\"").count(), 2, "{logged}");
    assert!(!logged.contains("auth.alert"), "{logged}");
    let last = log.join("last.ndjson");
    assert_eq!(
        std::fs::read_link(&last).unwrap(),
        log.join("2026-12-01.ndjson")
    );

    std::fs::write(sweep.join("a.txt"), b"changed").unwrap();
    std::fs::write(sweep.join("eicar.com"), EICAR).unwrap();
    let (status, logged, err) = m.run(&script, "2026-12-02");
    assert_eq!(status, 0, "night 2 (the script's own status): {err}");
    assert!(
        logged.contains("logger -p auth.alert hashsweep: detections in")
            && logged.contains("2026-12-02.ndjson"),
        "{logged}"
    );
    assert!(logged.contains("\"change\":\"modified\""), "{logged}");
    assert!(
        logged.contains("eicar.com") && logged.contains("\"change\":\"new\""),
        "{logged}"
    );
    assert!(
        !logged.contains("b.txt"),
        "unchanged is not logged: {logged}"
    );
    let night2 = lines(&log.join("2026-12-02.ndjson"));
    assert_eq!(rec(&night2, "eicar.com")["verdict"], "infected");

    std::fs::remove_file(sweep.join("b.txt")).unwrap();
    let (status, logged, err) = m.run(&script, "2026-12-03");
    assert_eq!(status, 0, "night 3: {err}");
    assert!(
        logged.contains("\"change\":\"removed\"") && logged.contains("b.txt"),
        "{logged}"
    );
    assert!(
        logged.contains("auth.alert"),
        "eicar.com is still there: {logged}"
    );
    assert_eq!(
        std::fs::read_link(&last).unwrap(),
        log.join("2026-12-03.ndjson")
    );
    for night in ["2026-12-01", "2026-12-02", "2026-12-03"] {
        assert!(log.join(format!("{night}.ndjson")).is_file(), "{night}");
    }
}

/// The cron job's status switch: a clean sweep says nothing, a detection alerts, a refused
/// key warns, a spent budget says the rest comes on the next runs.
#[test]
fn the_cron_status_switch_logs_what_each_exit_status_means() {
    let Some(m) = Machine::new() else { return };
    let sweep = m.path("sweep");
    let script = m.localise(block("# /etc/cron.daily/hashsweep\n"));
    // The README sweeps `/`; here, the sweep folder.
    let script = put(
        script,
        ".ndjson /\n",
        &format!(".ndjson {}\n", sweep.display()),
    );

    std::fs::write(sweep.join("a.txt"), b"a").unwrap();
    let (_, logged, err) = m.run(&script, "2026-12-01");
    assert_eq!(logged, "", "clean: nothing logged; {err}");

    std::fs::write(sweep.join("eicar.com"), EICAR).unwrap();
    let (_, logged, err) = m.run(&script, "2026-12-02");
    assert!(
        logged.contains("-p auth.alert hashsweep: detections"),
        "{logged} {err}"
    );

    std::fs::remove_file(sweep.join("eicar.com")).unwrap();
    std::fs::write(sweep.join("b.txt"), b"b").unwrap();
    m.mock.set_quota(0);
    let _ = std::fs::remove_file(m.path("cache.sqlite"));
    let (_, logged, err) = m.run(&script, "2026-12-03");
    assert!(
        logged.contains("deferred some files to the next runs"),
        "{logged} {err}"
    );

    std::fs::write(m.path("key"), b"a-wrong-key").unwrap();
    std::fs::write(sweep.join("c.txt"), b"c").unwrap();
    m.mock.set_quota(1000);
    let (_, logged, err) = m.run(&script, "2026-12-04");
    assert!(
        logged.contains("-p daemon.warning hashsweep: sweep incomplete"),
        "{logged} {err}"
    );
}

/// The triage pair: the first answers, the second asks again for the engines' results and
/// keeps them in its JSON report.
#[test]
fn the_triage_pair_writes_a_json_report_with_engine_details() {
    let Some(m) = Machine::new() else { return };
    let folder = m.path("sweep");
    std::fs::write(folder.join("eicar.com"), EICAR).unwrap();
    let script = block("hashsweep scan --details --format json -o triage.json");
    let script = put(
        script,
        "METADEFENDER_APIKEY=...",
        &format!("METADEFENDER_APIKEY={KEY}"),
    );
    let script = put(
        script,
        "/home/alice/Downloads",
        &folder.display().to_string(),
    );
    // As written, without `set -e`: the first command's detection (exit 1) does not stop it.
    let (last, _, err) = m.run(&script, "2026-12-01");
    assert!(err.contains(" hashed,"), "the summary: {err}");
    assert_eq!(last, 1, "the detection");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(m.path("triage.json")).unwrap()).unwrap();
    let r = &report["records"][0];
    assert_eq!(r["verdict"], "infected", "{report}");
    assert!(
        r["scan_details"].is_array() || r["scan_details"].is_object(),
        "{r}"
    );
    assert!(
        m.mock.requests().iter().any(|q| q.details),
        "the second asked with details"
    );
}

/// The first steps of "Set up", with the stand-in this test starts in place of the
/// `mock-api` line (the same server, in-process): `scan --offline src` and the demo's
/// `check` and `scan` work on any machine.
#[test]
fn the_first_run_of_set_up_works_offline_and_against_the_stand_in() {
    let Some(m) = Machine::new() else { return };
    let script = block("./target/release/hashsweep scan --offline src");
    let bin = Path::new(env!("CARGO_BIN_EXE_hashsweep"))
        .parent()
        .unwrap()
        .display()
        .to_string();
    let script = put(
        script,
        "./target/release/hashsweep",
        &format!("{bin}/hashsweep"),
    );
    let mock_line = script
        .lines()
        .find(|l| l.contains("mock-api --listen"))
        .expect("the line that starts the stand-in")
        .to_string();
    let script = put(script, &mock_line, "mock=");
    let script = put(script, "sleep 1\n", "");
    let script = put(script, "kill $mock; ", "");
    let script = put(script, "http://127.0.0.1:8738", &m.mock.url());
    let script = put(
        script,
        "METADEFENDER_APIKEY=demo",
        &format!("METADEFENDER_APIKEY={KEY}"),
    );
    let script = format!("cd '{}'\nset -e\n{script}", env!("CARGO_MANIFEST_DIR"));
    let (status, _, err) = m.run(&script, "2026-12-01");
    assert_eq!(status, 0, "{err}");
    assert!(err.contains(" hashed,"), "the summary: {err}");
    assert_eq!(
        m.mock
            .requests()
            .iter()
            .filter(|r| r.hashes.len() == 1)
            .count(),
        1,
        "check's one request"
    );
}

/// `--help` lists every exit status; `serve --help` shows https to its gateway (plain http
/// to a remote host is refused).
#[test]
fn help_lists_the_exit_statuses_and_serve_help_uses_https() {
    let out = run(cmd().arg("--help"));
    let help = String::from_utf8_lossy(&out.stdout).into_owned();
    for status in ["  0  ", "  1  ", "  2  ", "  3  ", "  4  ", "130, 143"] {
        assert!(help.contains(status), "{status:?} in {help}");
    }
    let out = run(cmd().args(["serve", "--help"]));
    let help = String::from_utf8_lossy(&out.stdout).into_owned();
    let example = help
        .lines()
        .find(|l| l.contains("hashsweep scan --api-url"))
        .expect("an endpoint example");
    assert!(example.contains("--api-url https://"), "{example}");
}

/// The README's example config file is accepted as written, and `hashsweep config` shows its
/// settings coming from it.
#[test]
fn the_example_config_file_is_valid() {
    let text = readme();
    let start = text
        .find("```toml\n# /etc/hashsweep/config.toml")
        .expect("the example config file")
        + 8;
    let body = &text[start..start + text[start..].find("\n```").expect("closed")];
    let t = Tree::new();
    let file = t.file("config.toml", body.as_bytes());
    let out = run(cmd().arg("--config").arg(&file).arg("config"));
    let shown = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(code(&out), 0, "{shown}{}", stderr(&out));
    let from = format!("  # {}", file.display());
    assert!(
        shown.contains(&format!("one-file-system = true{from}")),
        "{shown}"
    );
    assert!(
        shown.contains(&format!("max-size = \"2G\"{from}")),
        "{shown}"
    );
    assert!(
        shown.contains(&format!("apikey-file = \"/etc/hashsweep/key\"{from}")),
        "{shown}"
    );
}

/// The triage chapter's page: one `-o triage.html` run writes a self-contained page that names
/// the detection, with its engines (the run asked with details), and exits 1 for it.
#[test]
fn the_triage_page_example_writes_an_html_report_naming_the_detection() {
    let Some(m) = Machine::new() else { return };
    let folder = m.path("sweep");
    std::fs::write(folder.join("eicar.com"), EICAR).unwrap();
    std::fs::write(folder.join("notes.txt"), b"nothing to see").unwrap();
    let script = block("-o triage.html");
    let script = put(
        script,
        "METADEFENDER_APIKEY=...",
        &format!("METADEFENDER_APIKEY={KEY}"),
    );
    let script = put(
        script,
        "/home/alice/Downloads",
        &folder.display().to_string(),
    );
    let out = m.sh(&script, "2026-12-01");
    assert_eq!(code(&out), 1, "the detection: {}", stderr(&out));
    let page = std::fs::read_to_string(m.path("triage.html")).expect("triage.html");
    assert!(
        page.starts_with("<!DOCTYPE html>"),
        "{}",
        &page[..page.len().min(200)]
    );
    assert!(page.contains("Content-Security-Policy"), "self-contained");
    assert!(
        page.contains("eicar.com") && page.contains("notes.txt"),
        "{page}"
    );
    assert!(
        page.contains(&format!(
            "metadefender.opswat.com/results/file/{EICAR_SHA256}"
        )),
        "the detection links to the vendor's page"
    );
    assert!(
        m.mock.requests().iter().any(|q| q.details),
        "--details asked for the engines"
    );
}

/// The triage chapter's `hash` and `lookup` lines: the `sha256sum -c` and `md5sum -c` checks
/// pass, the EICAR MD5 given as an argument is a detection, and a `sha256sum` line on stdin is
/// looked up by its SHA-256.
#[test]
fn the_hash_and_lookup_examples_check_with_coreutils_and_look_up() {
    let Some(m) = Machine::new() else { return };
    let www = m.path("sweep");
    std::fs::create_dir_all(www.join("css")).unwrap();
    std::fs::write(www.join("index.html"), b"<p>hello</p>").unwrap();
    std::fs::write(www.join("css/site.css"), b"p { color: red }").unwrap();
    let sample = m.path("sample.bin");
    std::fs::write(&sample, EICAR).unwrap();
    let script = block("hashsweep hash --md5 /srv/www | md5sum -c");
    let script = put(script, "/srv/www", &www.display().to_string());
    let script = put(script, "/tmp/sample.bin", &sample.display().to_string());
    // Each line on its own, with its status, as a reader would type them.
    let mut results = Vec::new();
    for line in script.lines() {
        let line = format!("export METADEFENDER_APIKEY={KEY}\n{line}");
        let out = m.sh(&line, "2026-12-01");
        results.push((
            code(&out),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr(&out),
        ));
    }
    assert_eq!(results.len(), 4, "{script}");
    let (status, stdout, err) = &results[0];
    assert_eq!(*status, 0, "sha256sum -c: {stdout}{err}");
    assert_eq!(stdout.matches(": OK").count(), 2, "{stdout}");
    let (status, stdout, err) = &results[1];
    assert_eq!(*status, 0, "md5sum -c: {stdout}{err}");
    assert_eq!(stdout.matches(": OK").count(), 2, "{stdout}");
    let (status, stdout, err) = &results[2];
    assert_eq!(*status, 1, "EICAR's MD5 is a detection: {stdout}{err}");
    assert!(
        stdout.contains(EICAR_MD5) && stdout.contains("infected"),
        "{stdout}"
    );
    let (status, stdout, err) = &results[3];
    assert_eq!(*status, 1, "the sample is EICAR: {stdout}{err}");
    assert!(
        stdout.contains(EICAR_SHA256) && stdout.contains("infected"),
        "{stdout}"
    );
}
