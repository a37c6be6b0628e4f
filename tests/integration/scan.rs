//! `hashsweep scan`: the walk, the hashing and the report, end to end.

use std::collections::BTreeSet;
#[cfg(unix)]
use std::os::unix::fs::symlink;
#[cfg(unix)]
use std::time::Duration;

#[cfg(unix)]
use base64::Engine as _;

use crate::util::*;

#[test]
fn digests_match_known_vectors_and_coreutils_on_random_files() {
    let t = Tree::new();
    t.file("empty", b"");
    t.file("abc", b"abc");
    let mut random = Vec::new();
    for (i, len) in [
        1usize,
        63,
        64,
        65,
        4095,
        1 << 20,
        (1 << 20) + 1,
        3 * (1 << 20) + 777,
    ]
    .into_iter()
    .enumerate()
    {
        random.push(t.file(format!("r/{i}"), &random_bytes(i as u64 + 1, len)));
    }
    let out = run(cmd()
        .args(["scan", "--offline", "--md5", "--sha1", "--format", "ndjson"])
        .arg(t.path()));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let recs = ndjson(&out);
    let empty = rec(&recs, "/empty");
    assert_eq!(
        empty["sha256"],
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(empty["md5"], "d41d8cd98f00b204e9800998ecf8427e");
    assert_eq!(empty["sha1"], "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    assert_eq!(
        rec(&recs, "/abc")["sha256"],
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    for p in &random {
        let r = rec(&recs, p.to_str().unwrap());
        assert_eq!(r["sha256"], coreutils("sha256sum", p), "{p:?}");
        assert_eq!(r["md5"], coreutils("md5sum", p), "{p:?}");
        assert_eq!(r["sha1"], coreutils("sha1sum", p), "{p:?}");
        assert_eq!(r["size"], std::fs::metadata(p).unwrap().len());
        assert_eq!(r["verdict"], "not_looked_up");
    }
}

#[test]
fn eicar_is_infected_and_exit_status_is_1() {
    let mock = MockServer::start(Some(KEY)).unwrap();
    let t = Tree::new();
    t.file("docs/eicar.com", EICAR);
    let clean = t.file("docs/readme.txt", b"hello\n");
    let clean_hex = coreutils("sha256sum", &clean);
    mock.set(&clean_hex, 0, 0);
    let out = run(&mut scan_cmd(&mock, t.path()));
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let recs = ndjson(&out);
    let e = rec(&recs, "eicar.com");
    assert_eq!(e["verdict"], "infected");
    assert_eq!(e["sha256"], EICAR_SHA256);
    assert_eq!(e["scan_result_i"], 1);
    assert!(e["total_detected_avs"].as_i64().unwrap() > 0);
    assert!(e["data_id"].is_string());
    assert_eq!(rec(&recs, "readme.txt")["verdict"], "clean");
    assert!(stderr(&out).contains("1 detection,"), "{}", stderr(&out));
}

#[test]
fn all_clean_exits_0_and_unknown_is_not_clean() {
    let mock = MockServer::start(Some(KEY)).unwrap();
    let t = Tree::new();
    let a = t.file("a", b"known clean");
    mock.set(&coreutils("sha256sum", &a), 0, 0);
    let out = run(&mut scan_cmd(&mock, t.path()));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    t.file("b", b"never seen by anyone");
    let out = run(&mut scan_cmd(&mock, t.path()));
    let recs = ndjson(&out);
    let b = rec(&recs, "/b");
    assert_eq!(b["verdict"], "unknown");
    assert_eq!(b["scan_result_i"], 5);
    assert_eq!(b["total_detected_avs"], -1);
    assert!(b["data_id"].is_null());
    assert_eq!(code(&out), 0, "unknown is complete, not an error");
}

#[test]
fn duplicates_cause_one_lookup() {
    let mock = MockServer::start(Some(KEY)).unwrap();
    let t = Tree::new();
    for i in 0..20 {
        t.file(format!("copies/{i}/same.bin"), b"identical content");
    }
    t.file("other", b"different");
    let out = run(&mut scan_cmd(&mock, t.path()));
    assert_eq!(ndjson(&out).len(), 21);
    let asked: Vec<String> = mock.requests().into_iter().flat_map(|r| r.hashes).collect();
    assert_eq!(asked.len(), 2, "{asked:?}");
    assert_eq!(asked.iter().collect::<BTreeSet<_>>().len(), 2);
    assert!(
        stderr(&out).contains("2 distinct digests"),
        "{}",
        stderr(&out)
    );
}

/// The first digest goes alone to learn the key's budget (it covers everything here), then
/// the rest in full batches.
#[test]
fn distinct_files_2500_make_4_requests_none_over_1000() {
    let mock = MockServer::start(Some(KEY)).unwrap();
    let t = Tree::new();
    for i in 0..2500 {
        t.file(
            format!("d{}/f{i}", i % 25),
            format!("file number {i}").as_bytes(),
        );
    }
    let out = run(scan_cmd(&mock, t.path()).args(["--batch-wait", "60s"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(ndjson(&out).len(), 2500);
    let reqs = mock.requests();
    let mut sizes: Vec<usize> = reqs.iter().map(|r| r.hashes.len()).collect();
    assert_eq!(sizes[0], 1, "{sizes:?}");
    sizes.sort_unstable();
    assert_eq!(sizes, [1, 499, 1000, 1000]);
    assert_eq!(sizes.iter().sum::<usize>(), 2500);
    let distinct: BTreeSet<String> = reqs.into_iter().flat_map(|r| r.hashes).collect();
    assert_eq!(distinct.len(), 2500, "no digest asked twice");
}

#[test]
fn batch_size_flag_is_honoured() {
    let mock = MockServer::start(Some(KEY)).unwrap();
    let t = Tree::new();
    for i in 0..25 {
        t.file(format!("f{i}"), format!("{i}").as_bytes());
    }
    let out = run(scan_cmd(&mock, t.path()).args(["--batch-size", "10", "--batch-wait", "60s"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let mut sizes: Vec<usize> = mock.requests().iter().map(|r| r.hashes.len()).collect();
    sizes.sort();
    // One digest alone to learn the budget, then batches of 10.
    assert_eq!(sizes, vec![1, 4, 10, 10]);
}

// Unix only: the test makes a symlink (a privilege on Windows).
#[cfg(unix)]
#[test]
fn fifo_and_dangling_symlink_neither_hang_nor_crash() {
    let t = Tree::new();
    t.file("real", b"data");
    t.fifo("pipe");
    symlink(t.path().join("missing-target"), t.path().join("dangling")).unwrap();
    for follow in [false, true] {
        let mut c = cmd();
        c.args(["scan", "--offline", "--format", "ndjson"])
            .arg(t.path());
        if follow {
            c.arg("-L");
        }
        let out = run_with_timeout(&mut c, Duration::from_secs(20));
        assert_eq!(code(&out), 0, "follow={follow}: {}", stderr(&out));
        let recs = ndjson(&out);
        assert_eq!(recs.len(), 3, "{recs:?}");
        let pipe = rec(&recs, "/pipe");
        assert_eq!(pipe["verdict"], "skipped");
        assert!(pipe["note"].as_str().unwrap().contains("FIFO"));
        let d = rec(&recs, "/dangling");
        assert_eq!(d["verdict"], "skipped");
        assert!(d["note"].as_str().unwrap().contains("symlink"), "{d}");
        assert_eq!(rec(&recs, "/real")["verdict"], "not_looked_up");
    }
}

// Unix only: the test makes a symlink (a privilege on Windows).
#[cfg(unix)]
#[test]
fn symlink_loop_with_follow_is_reported_and_run_finishes() {
    let t = Tree::new();
    t.file("sub/f", b"x");
    symlink(t.path(), t.path().join("sub/up")).unwrap();
    let out = run_with_timeout(
        cmd()
            .args(["scan", "--offline", "-L", "--format", "ndjson"])
            .arg(t.path()),
        Duration::from_secs(20),
    );
    let recs = ndjson(&out);
    let lp = rec(&recs, "sub/up");
    assert_eq!(lp["verdict"], "error");
    assert!(lp["error"].as_str().unwrap().contains("loop"), "{lp}");
    assert_eq!(rec(&recs, "sub/f")["verdict"], "not_looked_up");
    assert_eq!(code(&out), 2, "a loop makes the sweep incomplete");
}

// Unix only.
#[cfg(unix)]
#[test]
fn non_utf8_name_round_trips_through_path_bytes() {
    let t = Tree::new();
    let raw: &[u8] = b"caf\xe9 \xff\xfe.bin";
    let p = t.file_bytes(raw, b"latin-1 name");
    t.file("plain.txt", b"utf8 name");
    for format in ["ndjson", "json", "csv"] {
        let out = run(cmd()
            .args(["scan", "--offline", "--format", format])
            .arg(t.path()));
        assert_eq!(code(&out), 0);
        let rows: Vec<(String, Option<String>)> = match format {
            "ndjson" => ndjson(&out)
                .iter()
                .map(|r| {
                    (
                        r["path"].as_str().unwrap().to_string(),
                        r["path_bytes"].as_str().map(str::to_string),
                    )
                })
                .collect(),
            "json" => {
                let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
                v["records"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| {
                        (
                            r["path"].as_str().unwrap().to_string(),
                            r["path_bytes"].as_str().map(str::to_string),
                        )
                    })
                    .collect()
            }
            _ => csv::Reader::from_reader(&out.stdout[..])
                .records()
                .map(|r| {
                    let r = r.unwrap();
                    (
                        r[0].to_string(),
                        Some(r[1].to_string()).filter(|s| !s.is_empty()),
                    )
                })
                .collect(),
        };
        let odd = rows
            .iter()
            .find(|(p, _)| p.contains("caf"))
            .expect("odd name present");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(odd.1.as_ref().expect("path_bytes present"))
            .unwrap();
        assert_eq!(
            bytes,
            std::os::unix::ffi::OsStrExt::as_bytes(p.as_os_str()),
            "{format}"
        );
        let plain = rows.iter().find(|(p, _)| p.ends_with("plain.txt")).unwrap();
        assert!(
            plain.1.is_none(),
            "{format}: path_bytes only for non-UTF-8 names"
        );
    }
}

#[test]
fn exclude_and_max_size() {
    let t = Tree::new();
    t.file("keep/a.txt", b"a");
    t.file("keep/big.bin", &vec![7u8; 3000]);
    t.file("node_modules/x/y.js", b"y");
    t.file("logs/z.log", b"z");
    let out = run(cmd()
        .args([
            "scan",
            "--offline",
            "--format",
            "ndjson",
            "--exclude",
            "node_modules",
            "--exclude",
            "*.log",
            "--max-size",
            "2K",
        ])
        .arg(t.path()));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let recs = ndjson(&out);
    assert_eq!(recs.len(), 2, "{recs:#?}");
    let big = rec(&recs, "big.bin");
    assert_eq!(big["verdict"], "skipped");
    assert_eq!(big["size"], 3000);
    assert!(big["sha256"].is_null());
    assert_eq!(rec(&recs, "a.txt")["verdict"], "not_looked_up");

    let out = run(cmd()
        .args([
            "scan",
            "--offline",
            "--exclude",
            "{unclosed",
            "--format",
            "ndjson",
        ])
        .arg(t.path()));
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("--exclude"), "{}", stderr(&out));
}

#[test]
fn missing_root_is_an_error_record_and_the_rest_goes_on() {
    let t = Tree::new();
    t.file("ok", b"ok");
    let out = run(cmd()
        .args(["scan", "--offline", "--format", "ndjson"])
        .arg(t.path().join("nope"))
        .arg(t.path()));
    assert_eq!(code(&out), 2);
    let recs = ndjson(&out);
    assert_eq!(rec(&recs, "/nope")["verdict"], "error");
    assert_eq!(rec(&recs, "/ok")["verdict"], "not_looked_up");
}

#[test]
fn table_puts_detections_first_and_output_file_is_written_whole() {
    let mock = MockServer::start(Some(KEY)).unwrap();
    let t = Tree::new();
    t.file("a-first-by-name", b"aaa");
    t.file("z/eicar.txt", EICAR);
    let out = run(scan_cmd(&mock, t.path()).args(["--format", "table"]));
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("VERDICT"), "{text}");
    assert!(
        lines[1].starts_with("infected") && lines[1].contains("eicar.txt"),
        "{text}"
    );
    assert!(lines[2].starts_with("unknown"), "{text}");

    let report_dir = Tree::new();
    let report = report_dir.path().join("report.json");
    let out = run(scan_cmd(&mock, t.path())
        .args(["--format", "json", "-o"])
        .arg(&report));
    assert_eq!(code(&out), 1);
    assert!(out.stdout.is_empty());
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(v["records"].as_array().unwrap().len(), 2);
    assert_eq!(v["summary"]["detections"], 1);
    let names: Vec<_> = std::fs::read_dir(report_dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names,
        vec![std::ffi::OsString::from("report.json")],
        "no temp file left behind"
    );
}

#[test]
fn details_keep_per_engine_results_in_json() {
    let mock = MockServer::start(Some(KEY)).unwrap();
    let t = Tree::new();
    t.file("eicar", EICAR);
    let out = run(scan_cmd(&mock, t.path()).args(["--details"]));
    let recs = ndjson(&out);
    let det = rec(&recs, "/eicar")["scan_details"]
        .as_array()
        .unwrap()
        .clone();
    let mock_av = det
        .iter()
        .find(|e| e["engine"] == "MockAV")
        .expect("engine kept");
    assert_eq!(mock_av["threat_found"], "EICAR-Test-File");
    assert_eq!(mock_av["scan_result_i"], 1);
    assert!(mock_av["def_time"].is_string());
    assert!(mock.requests().iter().all(|r| r.details));
}

#[test]
fn lookup_hash_md5_sends_md5_digests() {
    let mock = MockServer::start(Some(KEY)).unwrap();
    let t = Tree::new();
    t.file("eicar", EICAR);
    let out = run(scan_cmd(&mock, t.path()).args(["--lookup-hash", "md5"]));
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let r = &ndjson(&out)[0];
    assert_eq!(r["md5"], hashsweep_mock::EICAR_MD5);
    assert_eq!(r["verdict"], "infected");
    assert_eq!(
        mock.requests()[0].hashes,
        vec![hashsweep_mock::EICAR_MD5.to_ascii_uppercase()]
    );
}

#[test]
fn help_documents_exit_codes_and_bad_arguments_exit_2() {
    let out = run(cmd().args(["scan", "--help"]));
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(
        help.contains("Exit status") && help.contains("1  at least one detection"),
        "{help}"
    );
    let out = run(cmd().args(["scan", "--no-such-flag", "."]));
    assert_eq!(code(&out), 2);
    let out = run(cmd().args(["scan", "."]));
    assert_eq!(code(&out), 2, "no key and not offline");
    assert!(
        stderr(&out).contains("METADEFENDER_APIKEY"),
        "{}",
        stderr(&out)
    );
}

// Unix only: Wine ignores SetFileTime's keep-the-access-time value (hashsweep asks it on Windows).
#[cfg(unix)]
#[test]
fn a_sweep_changes_nothing_in_the_tree_not_even_access_times() {
    // On a noatime mount no read changes the access time and the check below proves nothing:
    // the tree is where a plain read does update it (a strictatime tmpfs if need be).
    let Some(t) = AtimeTree::new() else { return };
    let f = t.file("sub/file.bin", &random_bytes(3, 10_000));
    let sha256 = coreutils("sha256sum", &f); // a read: before the access time is set
    let old = set_old_atime(&f);
    let listing = |p: &std::path::Path| {
        let mut v: Vec<_> = walkdir_list(p);
        v.sort();
        v
    };
    let before = listing(t.path());
    let out = run(cmd()
        .args(["scan", "--offline", "--md5", "--sha1"])
        .arg(t.path()));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(ndjson(&out)[0]["sha256"], sha256, "the file was read");
    assert_eq!(listing(t.path()), before, "no file added or changed");
    assert_eq!(
        std::fs::metadata(&f).unwrap().accessed().unwrap(),
        old,
        "O_NOATIME kept the access time"
    );
}

#[cfg(unix)]
fn walkdir_list(root: &std::path::Path) -> Vec<(std::path::PathBuf, u64, std::time::SystemTime)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            if m.is_dir() {
                stack.push(e.path());
            }
            out.push((e.path(), m.len(), m.modified().unwrap()));
        }
    }
    out
}

// Unix only: FIFOs.
#[cfg(unix)]
#[test]
fn output_to_an_existing_fifo_or_device_writes_into_it_and_never_replaces_it() {
    use std::os::unix::fs::FileTypeExt;
    let t = Tree::new();
    t.file("a", b"a");
    let out_dir = Tree::new();
    let fifo = out_dir.fifo("report.pipe");
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read_to_string(fifo).unwrap())
    };
    let out = run(cmd()
        .args(["scan", "--offline", "-o"])
        .arg(&fifo)
        .arg(t.path()));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    // Checked before joining the reader, which would wait forever on a replaced FIFO.
    assert!(
        std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo(),
        "the FIFO was replaced by a file"
    );
    let text = reader.join().unwrap();
    assert!(text.contains("\"verdict\":\"not_looked_up\""), "{text}");
    let names: Vec<_> = std::fs::read_dir(out_dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "no temp file left: {names:?}");
}

#[test]
fn hard_links_are_read_once_and_each_path_still_gets_its_record() {
    let t = Tree::new();
    let f = t.file("a/original.bin", &random_bytes(11, 300_000));
    std::fs::create_dir_all(t.path().join("b")).unwrap();
    std::fs::hard_link(&f, t.path().join("b/link1.bin")).unwrap();
    std::fs::hard_link(&f, t.path().join("b/link2.bin")).unwrap();
    let out = run(cmd()
        .args(["scan", "--offline", "--format", "json", "-j1"])
        .arg(t.path()));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let recs = v["records"].as_array().unwrap();
    assert_eq!(recs.len(), 3);
    let want = coreutils("sha256sum", &f);
    assert!(
        recs.iter()
            .all(|r| r["sha256"] == want.as_str() && r["size"] == 300_000)
    );
    assert_eq!(v["summary"]["bytes_read"], 300_000, "{}", v["summary"]);
    assert_eq!(v["summary"]["files_linked"], 2);
}

/// `--streams` reads NTFS alternate data streams: elsewhere files have none, and it says so
/// once (the files are swept as without it).
#[cfg(not(windows))]
#[test]
fn streams_off_windows_is_a_warning_and_the_sweep_goes_on() {
    let t = Tree::new();
    t.file("a.txt", b"a");
    let out = run(cmd().args(["scan", "--offline", "--streams"]).arg(t.path()));
    let err = stderr(&out);
    assert_eq!(code(&out), 0, "{err}");
    assert_eq!(
        err.matches("--streams reads NTFS alternate data streams (Windows only)")
            .count(),
        1,
        "{err}"
    );
    assert_eq!(rec(&ndjson(&out), "a.txt")["verdict"], "not_looked_up");
}

/// With the report in a file, a root that does not exist is named on stderr on a line of its
/// own (the report has its record, but nobody reads the report of a typo).
#[test]
fn a_missing_root_is_named_on_stderr_with_the_report_in_a_file() {
    let t = Tree::new();
    t.file("a.txt", b"here");
    let gone = t.path().join("not-there");
    let out_dir = Tree::new();
    let report = out_dir.path().join("r.ndjson");
    let out = run(cmd()
        .args(["scan", "--offline", "-o"])
        .arg(&report)
        .arg(t.path())
        .arg(&gone));
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let err = stderr(&out);
    let line = format!("hashsweep: root {} could not be swept: ", gone.display());
    let named: Vec<&str> = err.lines().filter(|l| l.starts_with(&line)).collect();
    assert_eq!(named.len(), 1, "{err}");
    assert!(!named[0][line.len()..].is_empty(), "with its reason: {err}");
    // Its one error is on that line, not repeated in a list of errors.
    assert!(!err.contains("hashsweep: errors:"), "{err}");
}
