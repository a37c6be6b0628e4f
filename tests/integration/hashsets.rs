//! `--known-good` / `--known-bad`: local hash sets decide without asking the service.

use crate::util::*;

#[test]
fn known_good_and_known_bad_are_decided_locally_and_not_sent() {
    let mock = MockServer::start(Some(KEY)).unwrap();
    let t = Tree::new();
    let good = t.file("tree/system.dll", b"vendor file");
    let bad = t.file("tree/dropper.exe", b"our own IOC");
    let other = t.file("tree/other.txt", b"ask the service");
    let lists = Tree::new();
    // A sha256sum list for the good file, an md5sum list (no --md5 given) for the bad one.
    let good_list = lists.file(
        "good.sha256",
        format!("{}  system.dll\n", coreutils("sha256sum", &good)).as_bytes(),
    );
    let bad_list = lists.file(
        "bad.md5",
        format!("# IOCs\n{}  dropper.exe\n", coreutils("md5sum", &bad)).as_bytes(),
    );

    let root = t.path().join("tree");
    let out = run(scan_cmd(&mock, &root)
        .arg("--known-good")
        .arg(&good_list)
        .arg("--known-bad")
        .arg(&bad_list));
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let recs = ndjson(&out);
    assert_eq!(rec(&recs, "system.dll")["verdict"], "known_good");
    let b = rec(&recs, "dropper.exe");
    assert_eq!(b["verdict"], "infected");
    assert_eq!(b["source"], "local");
    assert_eq!(rec(&recs, "other.txt")["verdict"], "unknown");
    assert!(rec(&recs, "other.txt").get("source").is_none());
    let asked: Vec<String> = mock.requests().into_iter().flat_map(|r| r.hashes).collect();
    assert_eq!(
        asked,
        vec![coreutils("sha256sum", &other).to_uppercase()],
        "only the undecided file is sent"
    );

    // --also-lookup sends the known-bad file too; it stays infected whatever the answer.
    let mock2 = MockServer::start(Some(KEY)).unwrap();
    mock2.set(&coreutils("sha256sum", &bad), 0, 0);
    let out = run(scan_cmd(&mock2, &root)
        .arg("--known-bad")
        .arg(&bad_list)
        .arg("--also-lookup"));
    let b = rec(&ndjson(&out), "dropper.exe").clone();
    assert_eq!(b["verdict"], "infected");
    assert_eq!(b["source"], "local");
    assert_eq!(
        b["scan_result_i"], 0,
        "the service's answer is kept alongside"
    );
    assert_eq!(
        mock2
            .requests()
            .iter()
            .map(|r| r.hashes.len())
            .sum::<usize>(),
        3
    );
}

#[test]
fn nsrl_rds_sha1_list_marks_files_known_good() {
    let t = Tree::new();
    let f = t.file("notepad.exe", b"pretend this is notepad");
    let sha1 = coreutils("sha1sum", &f).to_uppercase();
    let md5 = coreutils("md5sum", &f).to_uppercase();
    let lists = Tree::new();
    let rds = lists.file(
        "NSRLFile.txt",
        format!(
            "\"SHA-1\",\"MD5\",\"CRC32\",\"FileName\",\"FileSize\",\"ProductCode\",\"OpSystemCode\",\"SpecialCode\"\n\
             \"{sha1}\",\"{md5}\",\"0000\",\"notepad.exe\",23,1,\"WIN\",\"\"\n"
        )
        .as_bytes(),
    );
    let out = run(cmd()
        .args(["scan", "--offline", "--known-good"])
        .arg(&rds)
        .arg(t.path()));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let r = &ndjson(&out)[0];
    assert_eq!(r["verdict"], "known_good");
    assert_eq!(
        r["sha1"].as_str().unwrap().to_uppercase(),
        sha1,
        "SHA-1 computed because the set needs it"
    );
}

#[test]
fn a_list_without_digests_is_refused() {
    let t = Tree::new();
    t.file("f", b"x");
    let lists = Tree::new();
    let wrong = lists.file("notes.txt", b"these are not hashes\nat all\n");
    let out = run(cmd()
        .args(["scan", "--offline", "--known-bad"])
        .arg(&wrong)
        .arg(t.path()));
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("notes.txt"), "{}", stderr(&out));
}
