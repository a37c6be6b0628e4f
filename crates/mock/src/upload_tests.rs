use super::*;
use sha2::Digest as _;

/// One request by hand: method, path, extra header lines, body; the status and body back.
fn call(server: &MockServer, method: &str, path: &str, extra: &str, body: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(server.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\n{extra}Content-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    let text = String::from_utf8_lossy(&got).into_owned();
    let status = text[9..12].parse().unwrap();
    let body = text
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    (status, body)
}

fn data_id(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap();
    v["data_id"].as_str().unwrap().to_string()
}

#[test]
fn an_upload_is_queued_then_answered_and_then_known_to_the_hash_endpoint() {
    let server = MockServer::start(Some("k")).unwrap();
    server.set_upload_settings(|s| s.polls_to_finish = 2);
    let (st, body) = call(
        &server,
        "POST",
        "/v4/file",
        "apikey: k\r\nfilename: a%20b.exe\r\n",
        EICAR,
    );
    assert_eq!(st, 200, "{body}");
    let id = data_id(&body);
    for _ in 0..2 {
        let (st, body) = call(
            &server,
            "GET",
            &format!("/v4/file/{id}"),
            "apikey: k\r\n",
            b"",
        );
        assert_eq!(st, 200);
        assert!(!upload::finished(&body), "still queued: {body}");
        assert!(body.contains("\"scan_all_result_i\":255"), "{body}");
    }
    let (_, body) = call(
        &server,
        "GET",
        &format!("/v4/file/{id}"),
        "apikey: k\r\n",
        b"",
    );
    assert!(upload::finished(&body), "{body}");
    assert!(body.contains("\"total_detected_avs\":31"), "{body}");
    assert_eq!(server.uploads()[0].filename.as_deref(), Some("a%20b.exe"));
    assert_eq!(server.prevention_remaining(), 99);
    // Wrong key, unknown data_id.
    assert_eq!(
        call(&server, "GET", "/v4/apikey", "apikey: no\r\n", b"").0,
        401
    );
    assert_eq!(
        call(&server, "GET", "/v4/file/nope", "apikey: k\r\n", b"").0,
        404
    );
}

#[test]
fn apikey_information_budget_rights_size_and_faults() {
    let server = MockServer::start(None).unwrap();
    server.set_upload_settings(|s| {
        s.limit_prevention = 1;
        s.enforce_private_scan = true;
        s.enforce_bytes = Some(10);
    });
    let (st, body) = call(&server, "GET", "/v4/apikey", "", b"");
    assert_eq!(st, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["limit_prevention"], 1);
    assert_eq!(v["enforce_private_scan"], 1);
    assert_eq!(call(&server, "POST", "/v4/file", "", &[0u8; 11]).0, 413);
    server.push_upload_fault(Fault::throttled());
    let (st, body) = call(&server, "POST", "/v4/file", "", b"x");
    assert_eq!((st, body.contains("429001")), (429, true), "{body}");
    assert_eq!(call(&server, "POST", "/v4/file", "", b"x").0, 200);
    let (st, body) = call(&server, "POST", "/v4/file", "", b"y");
    assert_eq!((st, body.contains("429000")), (429, true), "{body}");
    server.set_upload_settings(|s| s.upload_rights = false);
    let (st, body) = call(&server, "POST", "/v4/file", "", b"y");
    assert_eq!((st, body.contains("403003")), (403, true), "{body}");
    // A scan that never finishes.
    server.set_upload_settings(|s| {
        s.upload_rights = true;
        s.limit_prevention = 10;
    });
    server.never_finish(&upload::hex(&sha2::Sha256::digest(b"z")));
    let (_, body) = call(&server, "POST", "/v4/file", "", b"z");
    let id = data_id(&body);
    for _ in 0..5 {
        let (_, body) = call(&server, "GET", &format!("/v4/file/{id}"), "", b"");
        assert!(!upload::finished(&body), "{body}");
    }
}
