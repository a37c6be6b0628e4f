//! The API key never appears in any output: stdout, stderr, report files, or anything sent to
//! the server besides the `apikey` header.

use crate::util::*;

fn assert_no_key(what: &str, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    assert!(!text.contains(KEY), "the key leaked into {what}: {text}");
}

#[test]
fn key_never_appears_in_any_output() {
    let mock = MockServer::start(Some(KEY)).unwrap();
    let t = Tree::new();
    t.file("e", EICAR);
    t.file("x", b"x");
    let key_file = t.path().join("key.txt");
    std::fs::write(&key_file, format!("{KEY}\n")).unwrap();
    let report = Tree::new();

    let mut runs = Vec::new();
    for format in ["ndjson", "json", "csv", "table"] {
        runs.push(run(scan_cmd(&mock, t.path()).args([
            "--details",
            "--format",
            format,
        ])));
    }
    let out_file = report.path().join("r.json");
    runs.push(run(cmd()
        .args([
            "scan",
            "--format",
            "json",
            "--api-url",
            &mock.url(),
            "--apikey-file",
        ])
        .arg(&key_file)
        .arg("-o")
        .arg(&out_file)
        .arg(t.path())));
    assert_no_key("the report file", &std::fs::read(&out_file).unwrap());
    // Refused key, server error echoing the request, unreachable server.
    runs.push(run(
        scan_cmd(&mock, t.path()).env("METADEFENDER_APIKEY", format!("{KEY}-wrong"))
    ));
    mock.push_fault(Fault::new(500, format!("server echoed apikey={KEY}")));
    mock.push_fault(Fault::new(500, format!("server echoed apikey={KEY}")));
    runs.push(run(scan_cmd(&mock, t.path()).args(["--retries", "1"])));
    runs.push(run(cmd()
        .env("METADEFENDER_APIKEY", KEY)
        .args(["scan", "--retries", "0", "--api-url", "http://127.0.0.1:1"])
        .arg(t.path())));
    runs.push(run(cmd().env("METADEFENDER_APIKEY", KEY).args([
        "lookup",
        "--api-url",
        &mock.url(),
        EICAR_SHA256,
    ])));
    runs.push(run(cmd()
        .env("METADEFENDER_APIKEY", KEY)
        .args(["scan", "--help"])));

    for (i, out) in runs.iter().enumerate() {
        assert_no_key(&format!("stdout of run {i}"), &out.stdout);
        assert_no_key(&format!("stderr of run {i}"), &out.stderr);
    }
    assert!(
        runs[0].status.code() == Some(1),
        "the runs did real lookups"
    );
    let echoed = String::from_utf8_lossy(&runs[6].stdout);
    assert!(
        echoed.contains("[redacted]"),
        "server text is scrubbed, not dropped: {echoed}"
    );
    for r in mock.requests() {
        for h in &r.other_headers {
            assert!(!h.contains(KEY), "key sent outside the apikey header: {h}");
        }
    }
}
