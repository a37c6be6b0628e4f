//! A new user's first mistakes are caught before the sweep and explained in one line: an
//! `-o` that cannot be written, an `--api-url` that is not the service, a wrong key, a report
//! given where a hash list or a baseline belongs.

#[cfg(unix)]
use std::os::unix::fs::PermissionsExt;

use crate::util::*;

// Unix only.
#[cfg(unix)]
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

// Unix only: file modes and users.
#[cfg(unix)]
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

/// A scan with two files against `url` (the right key), timed.
fn scan_at(url: &str) -> (std::process::Output, std::time::Duration, Tree) {
    let t = Tree::new();
    t.file("a.txt", b"a");
    t.file("b.txt", b"b");
    let started = std::time::Instant::now();
    let out = run(cmd()
        .env("METADEFENDER_APIKEY", KEY)
        .args(["scan", "--api-url", url])
        .arg(t.path()));
    (out, started.elapsed(), t)
}

/// The first failure of a wrong `--api-url` stops the run at once: the reason once on stderr,
/// naming the URL and what to check; a short error on each record; exit 2.
fn stopped_at_once(
    out: &std::process::Output,
    took: std::time::Duration,
    url: &str,
    says: &[&str],
    brief: &str,
) {
    let err = stderr(out);
    assert_eq!(code(out), 2, "{err}");
    assert!(
        took < std::time::Duration::from_secs(5),
        "took {took:?}: {err}"
    );
    let why: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("lookups stopped"))
        .collect();
    assert_eq!(why.len(), 1, "the reason once: {err}");
    assert!(
        why[0].contains(&format!("{url}/v4/hash")),
        "names the URL: {err}"
    );
    for s in says {
        assert!(why[0].contains(s), "{s:?} in {err}");
    }
    // Said once: the cause quoted is the innermost one, not the layers that repeat it.
    for words in ["could not connect", "client error (Connect)"] {
        assert!(why[0].matches(words).count() <= 1, "{words:?} twice: {err}");
    }
    // The first digest (sent alone to learn the budget) met the failure; the other was not
    // asked after it, and says so.
    let recs = ndjson(out);
    assert_eq!(recs.len(), 2);
    let mut errors: Vec<&str> = recs
        .iter()
        .map(|r| {
            assert_eq!(r["verdict"], "error", "{r}");
            r["error"].as_str().unwrap_or_default()
        })
        .collect();
    errors.sort();
    let mut expected = [brief.to_string(), format!("not looked up: {brief}")];
    expected.sort();
    assert_eq!(errors, expected, "{recs:?}");
}

#[test]
fn a_refused_connection_stops_at_once_and_is_no_request_sent() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let (out, took, _t) = scan_at(&url);
    stopped_at_once(
        &out,
        took,
        &url,
        &["Connection refused", "Is the service running there"],
        "could not connect to the --api-url",
    );
    let err = stderr(&out);
    assert!(err.contains("0 requests sent"), "{err}");
    assert!(!err.contains("retries"), "{err}");
}

#[test]
fn tls_to_a_plain_http_port_says_to_use_http() {
    let mock = MockServer::start(Some(KEY)).unwrap();
    let url = mock.url().replace("http://", "https://");
    let (out, took, _t) = scan_at(&url);
    stopped_at_once(
        &out,
        took,
        &url,
        &["does not speak TLS", "use http://"],
        "the --api-url does not speak TLS (use http://)",
    );
    assert!(stderr(&out).contains("0 requests sent"), "{}", stderr(&out));
}

#[test]
fn an_html_page_instead_of_the_api_stops_at_once() {
    let mock = MockServer::start(Some(KEY)).unwrap();
    mock.push_fault(Fault::new(
        200,
        "<!DOCTYPE html>\n<html><head><title>Welcome to nginx!</title></head></html>",
    ));
    let (out, took, _t) = scan_at(&mock.url());
    stopped_at_once(
        &out,
        took,
        &mock.url(),
        &["HTML page", "base URL without /v4"],
        "the --api-url answered with an HTML page, not the API",
    );
    assert_eq!(mock.requests().len(), 1, "not retried");
    assert!(stderr(&out).contains("1 request sent"), "{}", stderr(&out));
}

/// `python3 -m http.server` answers a POST with 501 and an HTML page: not a proxy's passing
/// trouble (a 5xx that is retried) but a web server that takes no POST at all.
#[test]
fn a_web_server_that_takes_no_post_stops_at_once() {
    let mock = MockServer::start(Some(KEY)).unwrap();
    mock.push_fault(Fault::new(
        501,
        "<!DOCTYPE HTML>\n<html lang=\"en\"><head><title>Error response</title></head>\
         <body><h1>Error response</h1><p>Error code: 501</p></body></html>",
    ));
    let (out, took, _t) = scan_at(&mock.url());
    stopped_at_once(
        &out,
        took,
        &mock.url(),
        &["HTTP 501 with an HTML page", "base URL without /v4"],
        "the --api-url answered with an HTML page, not the API",
    );
    assert_eq!(mock.requests().len(), 1, "not retried");
}

/// A proxy's 502 page is retried (the service behind it may be back), but its markup is not
/// put in the records.
#[test]
fn a_proxys_error_page_is_retried_and_its_markup_is_not_reported() {
    let mock = MockServer::start(Some(KEY)).unwrap();
    for _ in 0..10 {
        mock.push_fault(Fault::new(
            502,
            "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>",
        ));
    }
    let t = Tree::new();
    t.file("a.txt", b"a");
    let out = run(cmd()
        .env("METADEFENDER_APIKEY", KEY)
        .args(["scan", "--api-url", &mock.url(), "--retries", "1"])
        .arg(t.path()));
    let err = stderr(&out);
    assert_eq!(code(&out), 2, "{err}");
    assert_eq!(mock.requests().len(), 2, "retried once");
    let r = rec(&ndjson(&out), "a.txt").clone();
    let e = r["error"].as_str().unwrap_or_default();
    assert!(e.contains("HTTP 502") && e.contains("an HTML page"), "{r}");
    assert!(!e.contains('<') && !err.contains("<html"), "{r}\n{err}");
}

#[test]
fn a_trailing_v4_is_dropped_with_a_notice_and_the_scan_works() {
    let mock = MockServer::start(Some(KEY)).unwrap();
    let t = Tree::new();
    t.file("eicar.com", EICAR);
    let out = run(cmd()
        .env("METADEFENDER_APIKEY", KEY)
        .args(["scan", "--api-url", &format!("{}/v4/", mock.url())])
        .arg(t.path()));
    let err = stderr(&out);
    assert_eq!(code(&out), 1, "{err}");
    assert!(err.contains("--api-url ends in /v4"), "{err}");
    assert_eq!(rec(&ndjson(&out), "eicar.com")["verdict"], "infected");
}

/// A wrong key: the whole reason once on stderr, "API key refused" on each record (the later
/// batches' records say they were not looked up for that reason).
#[test]
fn a_wrong_key_is_explained_once_and_each_record_says_it_briefly() {
    let mock = MockServer::start(Some(KEY)).unwrap();
    let t = Tree::new();
    for i in 0..6 {
        t.file(format!("f{i}"), format!("file {i}").as_bytes());
    }
    let out = run(cmd()
        .env("METADEFENDER_APIKEY", "a-wrong-key")
        .args(["scan", "--api-url", &mock.url(), "--batch-size", "2"])
        .args(["--concurrency", "1", "--batch-wait", "60s"])
        .arg(t.path()));
    let err = stderr(&out);
    assert_eq!(code(&out), 2, "{err}");
    assert_eq!(err.matches("API key was refused").count(), 1, "{err}");
    assert!(err.contains("Check METADEFENDER_APIKEY"), "{err}");
    let recs = ndjson(&out);
    assert_eq!(recs.len(), 6);
    for r in &recs {
        let e = r["error"].as_str().unwrap();
        assert!(
            e == "API key refused" || e == "not looked up: API key refused",
            "{r}"
        );
    }
    assert!(recs.iter().any(|r| r["error"] == "API key refused"));
}

fn check(url: &str, key: &str) -> std::process::Output {
    run(cmd()
        .env("METADEFENDER_APIKEY", key)
        .args(["check", "--api-url", url]))
}

/// `hashsweep check`: one request of one hash; exit 0 with the budget when usable, 2 with
/// the reason otherwise.
#[test]
fn check_says_whether_the_url_and_key_work_and_what_the_budget_is() {
    let mock = MockServer::start(Some(KEY)).unwrap();
    mock.set_quota(4000);
    let out = check(&mock.url(), KEY);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(code(&out), 0, "{text}{}", stderr(&out));
    assert!(text.contains("the URL and the API key work"), "{text}");
    assert!(
        text.contains("budget: limit 4 000 a day, 3 999 remaining, resets "),
        "{text}"
    );
    assert!(
        text.contains("(in 23h 59m)") || text.contains("(in 1day)"),
        "{text}"
    );
    let seen = mock.requests();
    assert_eq!(seen.len(), 1, "one request");
    assert_eq!(seen[0].hashes.len(), 1, "of one hash");

    let out = check(&mock.url(), "a-wrong-key");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(code(&out), 2, "{text}");
    assert!(
        text.contains("not usable: the API key was refused"),
        "{text}"
    );
    assert!(!text.contains("a-wrong-key"), "{text}");

    mock.set_quota(0);
    let out = check(&mock.url(), KEY);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(code(&out), 2, "{text}");
    assert!(text.contains("quota is spent"), "{text}");

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = check(&format!("http://127.0.0.1:{port}"), KEY);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(code(&out), 2, "{text}");
    assert!(
        text.contains("not usable: could not connect to http://127.0.0.1:"),
        "{text}"
    );

    // No key: where to put one; not --offline, which check does not have (scan does).
    let out = run(cmd().args(["check", "--api-url", &mock.url()]));
    let err = stderr(&out);
    assert_eq!(code(&out), 2, "{err}");
    assert!(err.contains("no API key: set METADEFENDER_APIKEY"), "{err}");
    assert!(!err.contains("--offline"), "{err}");
    let t = Tree::new();
    let out = run(cmd().args(["scan", "--api-url", &mock.url()]).arg(t.path()));
    assert!(stderr(&out).contains("or --offline"), "{}", stderr(&out));
}

/// A report where a hash list belongs is refused (it says what was found, not what to trust),
/// and an ECS report where a baseline belongs says it is one: before the sweep, exit 2.
#[test]
fn reports_given_as_hash_lists_or_ecs_as_a_baseline_are_refused_with_the_reason() {
    let t = Tree::new();
    t.file("tree/a.txt", b"a");
    let tree = t.path().join("tree");
    let report = |format: &str, name: &str| {
        let p = t.path().join(name);
        let out = run(cmd()
            .args(["scan", "--offline", "--format", format, "-o"])
            .arg(&p)
            .arg(&tree));
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        p
    };
    let ndjson_report = report("ndjson", "r.ndjson");
    let json_report = report("json", "r.json");
    let ecs_report = report("ecs", "r.ecs.ndjson");
    for (flag, file) in [
        ("--known-good", &ndjson_report),
        ("--known-good", &json_report),
        ("--known-bad", &ndjson_report),
    ] {
        let out = run(cmd().args(["scan", "--offline", flag]).arg(file).arg(&tree));
        let err = stderr(&out);
        assert_eq!(code(&out), 2, "{flag} {}: {err}", file.display());
        assert!(
            err.contains("is a hashsweep report, not a hash list"),
            "{err}"
        );
        assert!(!err.contains("files,"), "refused before the sweep: {err}");
        assert!(out.stdout.is_empty());
    }
    let out = run(cmd()
        .args(["scan", "--offline", "--known-good"])
        .arg(&ecs_report)
        .arg(&tree));
    assert!(
        stderr(&out).contains("is an ECS report"),
        "{}",
        stderr(&out)
    );

    let out = run(cmd()
        .args(["scan", "--offline", "--baseline"])
        .arg(&ecs_report)
        .arg(&tree));
    let err = stderr(&out);
    assert_eq!(code(&out), 2, "{err}");
    assert!(err.contains("is an ECS report (--format ecs)"), "{err}");
    assert!(err.contains("use an ndjson or json report"), "{err}");
    let out = run(cmd().arg("diff").arg(&ecs_report).arg(&ndjson_report));
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("is an ECS report"),
        "{}",
        stderr(&out)
    );
}

// Unix only: writes paths into TOML basic strings, where Windows' \\ is an escape.
#[cfg(unix)]
/// A config file for scheduled sweeps: its settings are the long flags, flags win, and
/// `hashsweep config` shows what is in force and where it comes from, never the key or a
/// password.
#[test]
fn a_config_file_sets_flags_the_command_line_overrides_and_config_shows_them() {
    let mock = MockServer::start(Some(KEY)).unwrap();
    let t = Tree::new();
    t.file("tree/eicar.com", EICAR);
    t.file("tree/skip.iso", b"image");
    let key = t.file("key", KEY.as_bytes());
    let config = t.file(
        "config.toml",
        format!(
            "api-url = \"{}\"\napikey-file = \"{}\"\nexclude = [\"*.iso\"]\n\
             [scan]\nformat = \"ndjson\"\n[serve]\nstore = \"redis://:hunter2@10.0.0.5:6379/0\"\n",
            mock.url(),
            key.display()
        )
        .as_bytes(),
    );
    let tree = t.path().join("tree");
    let out = run(cmd()
        .env("HASHSWEEP_CONFIG", &config)
        .arg("scan")
        .arg(&tree));
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let recs = ndjson(&out);
    assert_eq!(recs.len(), 1, "*.iso excluded by the file: {recs:?}");
    assert_eq!(rec(&recs, "eicar.com")["verdict"], "infected");

    // Flags win: --exclude replaces the file's list, --api-url its URL.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = run(cmd()
        .arg("--config")
        .arg(&config)
        .args(["scan", "--exclude", "*.com", "--api-url"])
        .arg(format!("http://127.0.0.1:{port}"))
        .arg(&tree));
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let recs = ndjson(&out);
    assert_eq!(recs.len(), 1, "{recs:?}");
    assert!(
        rec(&recs, "skip.iso")["error"]
            .as_str()
            .unwrap()
            .contains("could not connect")
    );

    let out = run(cmd()
        .env("HASHSWEEP_CONFIG", &config)
        .env("METADEFENDER_APIKEY", KEY)
        .env("HASHSWEEP_LOG", "debug")
        .arg("config")
        .arg("serve"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(code(&out), 0, "{text}{}", stderr(&out));
    let cfg = config.display().to_string();
    assert!(text.contains(&format!("# read {cfg}")), "{text}");
    assert!(
        text.contains(&format!("api-url = \"{}\"  # {cfg}", mock.url())),
        "{text}"
    );
    assert!(
        text.contains("store = \"redis://:REDACTED@10.0.0.5:6379/0\""),
        "{text}"
    );
    assert!(
        text.contains("log = \"debug\"  # environment HASHSWEEP_LOG"),
        "{text}"
    );
    assert!(
        text.contains("listen = \"127.0.0.1:8737\"  # default"),
        "{text}"
    );
    assert!(
        text.contains("METADEFENDER_APIKEY is set (not shown)"),
        "{text}"
    );
    assert!(!text.contains("hunter2") && !text.contains(KEY), "{text}");

    let bad = t.file("bad.toml", b"apikey = \"oops\"\n");
    let out = run(cmd().arg("--config").arg(&bad).arg("scan").arg(&tree));
    let err = stderr(&out);
    assert_eq!(code(&out), 2, "{err}");
    assert!(err.contains("unknown setting `apikey`"), "{err}");
    assert!(!err.contains("oops"), "{err}");
}

// Linux: the user's config dir is $XDG_CONFIG_HOME/hashsweep (other systems put it elsewhere).
#[cfg(target_os = "linux")]
#[test]
fn without_config_the_users_config_file_is_read() {
    if std::path::Path::new("/etc/hashsweep/config.toml").exists() {
        skip("/etc/hashsweep/config.toml exists on this machine and would be read first");
        return;
    }
    let t = Tree::new();
    let home = t.path().join("config-home");
    let file = home.join("hashsweep/config.toml");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, "exclude = [\"*.iso\"]\n").unwrap();
    let config = || {
        let mut c = cmd();
        c.env_remove("HASHSWEEP_CONFIG")
            .env("XDG_CONFIG_HOME", &home)
            .env("HOME", t.path())
            .args(["config", "scan"]);
        c
    };
    let out = run(&mut config());
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(code(&out), 0, "{text}{}", stderr(&out));
    let shown = file.display().to_string();
    assert!(text.contains(&format!("# read {shown}")), "{text}");
    assert!(
        text.contains(&format!("exclude = [\"*.iso\"]  # {shown}")),
        "{text}"
    );

    // `--config` replaces the default places.
    let other = t.file("other.toml", b"exclude = [\"*.tmp\"]\n");
    let out = run(config().arg("--config").arg(&other));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!text.contains(&shown), "{text}");
    assert!(text.contains("\"*.tmp\""), "{text}");
}
