use super::*;

/// Send one request by hand and read what comes back, up to the close.
fn exchange(server: &MockServer) -> std::io::Result<Vec<u8>> {
    exchange_at(server, "/v4/hash", &[EICAR_MD5])
}

fn exchange_at(server: &MockServer, path: &str, hashes: &[&str]) -> std::io::Result<Vec<u8>> {
    let body = json!({ "hash": hashes }).to_string();
    let mut s = TcpStream::connect(server.addr())?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut got = Vec::new();
    s.read_to_end(&mut got)?;
    Ok(got)
}

/// The status line and the lower-case header names and values of an answer.
fn head(raw: &[u8]) -> (String, HashMap<String, String>) {
    let text = String::from_utf8_lossy(raw);
    let head = text.split("\r\n\r\n").next().unwrap_or_default();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default().to_string();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect();
    (status, headers)
}

#[test]
fn every_answer_has_the_lower_case_rate_limit_headers_and_no_retry_after() {
    let server = MockServer::start(None).unwrap();
    server.push_fault(Fault::throttled());
    server.push_fault(Fault::new(500, "oops"));
    for want in ["429", "500", "200", "404"] {
        let raw = if want == "404" {
            exchange_at(&server, "/v4/v4/hash", &[EICAR_MD5]).unwrap()
        } else {
            exchange(&server).unwrap()
        };
        let (status, h) = head(&raw);
        assert!(status.contains(want), "{status}");
        for name in [
            "x-ratelimit-for",
            "x-ratelimit-limit",
            "x-ratelimit-used",
            "x-ratelimit-remaining",
            "x-ratelimit-reset-in",
            "x-ratelimit-interval",
        ] {
            assert!(h.contains_key(name), "{want}: no {name} in {h:?}");
        }
        assert!(
            !h.keys().any(|k| k.eq_ignore_ascii_case("retry-after")),
            "{h:?}"
        );
        assert!(
            h.keys().all(|k| *k == k.to_ascii_lowercase()),
            "lower-case names: {h:?}"
        );
        assert_eq!(h["x-ratelimit-for"], "reputation_api");
        assert_eq!(h["x-ratelimit-interval"], "86400");
        let reset: u64 = h["x-ratelimit-reset-in"]
            .strip_suffix('s')
            .expect("reset-in ends in s")
            .parse()
            .unwrap();
        assert!(
            reset > 86_000 && reset <= 86_400,
            "the daily window: {reset}"
        );
    }
    // The 404 says which code: a wrong path, not a missing hash.
    let raw = exchange_at(&server, "/v4/v4/hash", &[EICAR_MD5]).unwrap();
    assert!(String::from_utf8_lossy(&raw).contains("404000"));
}

#[test]
fn the_daily_budget_counts_hashes_and_then_refuses_with_429000() {
    let server = MockServer::start(None).unwrap();
    server.set_daily_budget(3);
    let (status, h) = head(&exchange_at(&server, "/v4/hash", &["a", "b"]).unwrap());
    assert!(status.contains("200"), "{status}");
    assert_eq!(
        (
            h["x-ratelimit-used"].as_str(),
            h["x-ratelimit-remaining"].as_str()
        ),
        ("2", "1")
    );
    // More hashes than remain: refused, and nothing is counted.
    let raw = exchange_at(&server, "/v4/hash", &["c", "d"]).unwrap();
    let (status, h) = head(&raw);
    assert!(status.contains("429"), "{status}");
    assert!(String::from_utf8_lossy(&raw).contains("429000"));
    assert_eq!(h["x-ratelimit-remaining"], "1");
    assert!(
        head(&exchange_at(&server, "/v4/hash", &["c"]).unwrap())
            .0
            .contains("200")
    );
    assert_eq!(server.budget_remaining(), 0);
    assert!(head(&exchange(&server).unwrap()).0.contains("429"));
    server.reset_day();
    assert!(head(&exchange(&server).unwrap()).0.contains("200"));
    assert_eq!(server.budget_remaining(), 2);
}

#[test]
fn a_reset_fault_resets_the_connection_instead_of_closing_it() {
    let server = MockServer::start(None).unwrap();
    server.push_fault(Fault::of(FaultKind::Reset));
    let err = exchange(&server).expect_err("a reset, not an orderly close");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
    // The next request is answered normally.
    let ok = String::from_utf8(exchange(&server).unwrap()).unwrap();
    assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
    assert_eq!(server.requests()[0].fault.as_deref(), Some("reset"));
}

#[test]
fn detailed_answers_can_leave_out_the_total_as_the_vendors_sample_does() {
    let mut e = HashMap::new();
    e.insert(
        "AB".to_string(),
        MockEntry {
            scan_result_i: 1,
            total_detected_avs: 3,
            threat: "T".into(),
        },
    );
    let (st, body) = answer(br#"{"hash":["ab","cd"]}"#, Some("1"), &e, true);
    assert_eq!(st, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    let data = v["data"].as_array().unwrap();
    assert!(
        data.iter().all(|x| x.get("total_detected_avs").is_none()),
        "{body}"
    );
    assert!(data[0].get("scan_details").is_some(), "{body}");
    assert_eq!(data[1]["scan_result_i"], 5);
    assert!(data[1].get("scan_details").is_none(), "{body}");
    // Without details, or without the switch, the total is there.
    let (_, body) = answer(br#"{"hash":["ab","cd"]}"#, None, &e, true);
    assert!(body.contains("total_detected_avs"));
    let (_, body) = answer(br#"{"hash":["ab","cd"]}"#, Some("1"), &e, false);
    assert!(body.contains("total_detected_avs"));
}

#[test]
fn contract_errors() {
    let e = HashMap::new();
    assert!(
        answer(br#"{"hash":[]}"#, None, &e, false)
            .1
            .contains("400062")
    );
    assert!(answer(br#"{}"#, None, &e, false).1.contains("400060"));
    assert!(
        answer(br#"{"hash":"x"}"#, None, &e, false)
            .1
            .contains("400061")
    );
    let many = json!({"hash": vec!["A"; 1001]}).to_string();
    assert!(
        answer(many.as_bytes(), None, &e, false)
            .1
            .contains("400063")
    );
    assert!(
        answer(br#"{"hash":["a"]}"#, Some("2"), &e, false)
            .1
            .contains("400065")
    );
    let (st, body) = answer(br#"{"hash":["abc"]}"#, None, &e, false);
    assert_eq!(st, 200);
    assert!(
        body.contains(r#""hash":"ABC""#)
            && body.contains(r#""scan_result_i":5"#)
            && body.contains("-1")
    );
}
