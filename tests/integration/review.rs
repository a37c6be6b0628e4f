//! Regressions found in review: each test failed before its fix.

use std::process::Stdio;

use crate::util::*;

#[test]
fn redirects_are_not_followed_so_the_key_stays_home() {
    let mock = MockServer::start(Some(KEY)).unwrap();
    let elsewhere = MockServer::start(None).unwrap();
    mock.push_fault(
        Fault::new(307, "").header("Location", &format!("{}/v4/hash", elsewhere.url())),
    );
    let t = Tree::new();
    t.file("a", b"a");
    let out = run(&mut scan_cmd(&mock, t.path()));
    assert_eq!(code(&out), 2);
    assert!(
        elsewhere.requests().is_empty(),
        "the redirect target saw the request (and the key)"
    );
    assert!(stderr(&out).contains("redirect"), "{}", stderr(&out));
    assert_eq!(ndjson(&out)[0]["verdict"], "error");
}

#[test]
fn a_reader_that_goes_away_does_not_turn_a_detection_into_success() {
    let mock = MockServer::start(Some(KEY)).unwrap();
    let t = Tree::new();
    t.file("eicar", EICAR);
    for i in 0..2000 {
        t.file(format!("f{i}"), format!("{i}").as_bytes());
    }
    let mut child = scan_cmd(&mock, t.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // like `| head -0`
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("1 detection,"),
        "the summary is still printed: {}",
        stderr(&out)
    );
}

#[test]
fn a_timestamp_past_2262_does_not_crash_the_sweep() {
    let t = Tree::new();
    let f = t.file("future", b"from the future");
    let far = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(32_503_680_000); // year 3000
    std::fs::File::options()
        .write(true)
        .open(&f)
        .unwrap()
        .set_modified(far)
        .unwrap();
    let out = run(cmd().args(["scan", "--offline"]).arg(t.path()));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(ndjson(&out)[0]["verdict"], "not_looked_up");
}

// Unix only: compares /-separated paths.
#[cfg(unix)]
/// Sweeping `$HOME` with the default cache location (`~/.cache/hashsweep`): the cache is
/// used, its files are listed as skipped and never read, and nothing but the cache is written
/// into the tree.
#[test]
fn the_default_cache_inside_the_scanned_home_is_used_and_never_read() {
    let home = Tree::new();
    home.file("docs/a.txt", b"a");
    // Old enough for its digests to be cached.
    std::thread::sleep(hashsweep::cache::RACY_WINDOW + std::time::Duration::from_millis(200));
    let sweep = || {
        let out = run(cmd()
            .env_remove("HASHSWEEP_NO_CACHE")
            .env_remove("XDG_CACHE_HOME")
            .env("HOME", home.path())
            .args(["scan", "--offline", "--format", "json"])
            .arg(home.path()));
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let first = sweep();
    let second = sweep();
    assert_eq!(first["summary"]["files"], 1, "{}", first["summary"]);
    assert_eq!(
        second["summary"]["files_cached"], 1,
        "{}",
        second["summary"]
    );
    assert_eq!(second["summary"]["bytes_read"], 0, "{}", second["summary"]);
    let cache_dir = home.path().join(".cache/hashsweep");
    for r in second["records"].as_array().unwrap() {
        let path = r["path"].as_str().unwrap();
        if path.starts_with(cache_dir.to_str().unwrap()) {
            assert_eq!(r["verdict"], "skipped", "{r}");
            assert!(r["sha256"].is_null(), "{r}");
        } else {
            assert!(path.ends_with("docs/a.txt"), "{r}");
        }
    }
    let written: Vec<String> = std::fs::read_dir(&cache_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        written.iter().all(|n| n.starts_with("cache.sqlite")),
        "{written:?}"
    );
    let top: Vec<_> = std::fs::read_dir(home.path()).unwrap().collect();
    assert_eq!(top.len(), 2, "docs and .cache only: {top:?}");
}

#[test]
fn server_values_quoted_in_errors_are_scrubbed_of_the_key() {
    let mock = MockServer::start(Some(KEY)).unwrap();
    let t = Tree::new();
    t.file("e", EICAR);
    mock.push_fault(Fault::new(
        200,
        format!(r#"{{"data":[{{"hash":"{}","scan_result_i":"rejected key {KEY}","total_detected_avs":1}}]}}"#, EICAR_SHA256.to_uppercase()),
    ));
    let out = run(&mut scan_cmd(&mock, t.path()));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains(KEY), "{text}");
    assert!(text.contains("[redacted]"), "{text}");
}

#[test]
fn a_root_given_twice_or_nested_gives_one_record_per_path() {
    let t = Tree::new();
    t.file("a", b"a");
    t.file("sub/b", b"b");
    let out = run(cmd()
        .args(["scan", "--offline"])
        .arg(t.path())
        .arg(t.path())
        .arg(t.path().join("sub")));
    assert_eq!(ndjson(&out).len(), 2);
}

// Unix only.
#[cfg(unix)]
#[test]
fn a_symlink_named_on_the_command_line_is_followed_like_a_directory_root() {
    let t = Tree::new();
    let target = t.file("real.bin", b"real content");
    let link = t.path().join("link.bin");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let out = run(cmd().args(["scan", "--offline"]).arg(&link));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let r = &ndjson(&out)[0];
    assert_eq!(r["verdict"], "not_looked_up", "{r}");
    assert_eq!(r["sha256"], coreutils("sha256sum", &target));
    // Inside a walked directory the same link is still not followed.
    let out = run(cmd().args(["scan", "--offline"]).arg(t.path()));
    assert_eq!(rec(&ndjson(&out), "link.bin")["verdict"], "skipped");
}
