//! `hashsweep lookup`: hashes from arguments or stdin.

use std::io::Write;
use std::process::Stdio;

use crate::util::*;

#[test]
fn hashes_from_arguments_in_any_case() {
    let mock = MockServer::start(Some(KEY)).unwrap();
    let out = run(cmd()
        .env("METADEFENDER_APIKEY", KEY)
        .args(["lookup", "--format", "ndjson", "--api-url", &mock.url()])
        .arg(EICAR_SHA256.to_uppercase())
        .arg(hashsweep_mock::EICAR_MD5));
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let recs = ndjson(&out);
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[0]["sha256"], EICAR_SHA256);
    assert_eq!(recs[1]["md5"], hashsweep_mock::EICAR_MD5);
    assert!(recs.iter().all(|r| r["verdict"] == "infected"));
}

#[test]
fn sha256sum_lines_on_stdin_with_duplicates_and_a_bad_line() {
    let mock = MockServer::start(Some(KEY)).unwrap();
    let unknown = "00".repeat(32);
    let input = format!(
        "{EICAR_SHA256}  eicar.com\n{EICAR_SHA256} *copy.com\n\n# comment\nnot-a-hash  x\n{unknown}\n"
    );
    let mut child = cmd()
        .env("METADEFENDER_APIKEY", KEY)
        .args(["lookup", "--format", "ndjson", "--api-url", &mock.url()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), 1);
    let recs = ndjson(&out);
    assert_eq!(recs.len(), 3);
    assert_eq!(recs[0]["path"], "eicar.com");
    assert_eq!(recs[1]["path"], "copy.com");
    assert_eq!(recs[2]["verdict"], "unknown");
    assert!(stderr(&out).contains("stdin line 5"), "{}", stderr(&out));
    let asked: Vec<String> = mock.requests().into_iter().flat_map(|r| r.hashes).collect();
    assert_eq!(asked.len(), 2, "the duplicate is asked once: {asked:?}");
}
