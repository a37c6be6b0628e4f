use super::*;

#[test]
fn request_bodies_are_checked_with_the_vendors_codes() {
    let code = |b: &str| parse_request(b.as_bytes()).unwrap_err().code;
    assert_eq!(code("not json"), 400060);
    assert_eq!(code("{}"), 400060);
    assert_eq!(code(r#"{"hash":"abc"}"#), 400061);
    assert_eq!(code(r#"{"hash":[]}"#), 400062);
    assert_eq!(code(r#"{"hash":[1]}"#), 400064);
    let many = format!(r#"{{"hash":[{}]}}"#, vec!["\"a\""; 1001].join(","));
    assert_eq!(code(&many), 400063);
    let ok = parse_request(br#"{"hash":["ab","c\u0064"]}"#).unwrap();
    assert_eq!(ok, vec!["ab".to_string(), "cd".to_string()]);
}

/// Status, body and the headers that matter, of an error answer.
fn answer_of(e: ApiError) -> (u16, Value, Option<String>, Option<String>) {
    let r = e.into_response();
    let header = |n: &str| r.headers().get(n).map(|v| v.to_str().unwrap().to_string());
    let (retry, reset) = (header("retry-after"), header("x-ratelimit-reset-in"));
    assert_eq!(header("content-type").as_deref(), Some("application/json"));
    let status = r.status().as_u16();
    let body = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(axum::body::to_bytes(r.into_body(), MAX_BODY))
        .unwrap();
    (status, serde_json::from_slice(&body).unwrap(), retry, reset)
}

#[test]
fn error_answers_have_the_vendors_status_code_body_and_headers() {
    let body = |code: u32, msg: &str| serde_json::json!({"error":{"code":code,"messages":[msg]}});
    let s = |v: &str| Some(v.to_string());
    let cases = [
        (
            ApiError::NotFound,
            404,
            body(404000, "Endpoint not found"),
            None,
            None,
        ),
        (
            BadRequest {
                code: 400062,
                message: "The `hash` field is empty",
            }
            .into(),
            400,
            body(400062, "The `hash` field is empty"),
            None,
            None,
        ),
        (
            ApiError::InvalidToken,
            401,
            body(401006, "Invalid apikey"),
            None,
            None,
        ),
        (
            ApiError::ClientRate {
                retry_after: Duration::from_millis(300),
            },
            429,
            body(
                429001,
                "Too many requests for this endpoint token (--client-rate)",
            ),
            s("1"),
            None,
        ),
        (
            ApiError::QuotaSpent {
                reset_in: Duration::from_secs(3600),
            },
            429,
            body(
                429000,
                "API key limit exceeded (the gateway's daily lookup quota is spent)",
            ),
            s("3600"),
            s("3600s"),
        ),
        (
            ApiError::StoreDown,
            503,
            body(
                503000,
                "The gateway's verdict store is unreachable; retry later",
            ),
            s("2"),
            None,
        ),
        (
            ApiError::Busy,
            503,
            body(
                503000,
                "The gateway has too many lookups waiting for the reputation service; retry later",
            ),
            s("5"),
            None,
        ),
        (
            ApiError::Upstream("could not connect".into()),
            503,
            body(
                503000,
                "The gateway could not reach the reputation service: could not connect",
            ),
            s("5"),
            None,
        ),
    ];
    for (e, status, want, retry, reset) in cases {
        let what = format!("{e:?}");
        assert_eq!(answer_of(e), (status, want, retry, reset), "{what}");
    }
}

#[test]
fn entries_have_the_vendors_shape() {
    // Hash-length strings that are not plain still come back escaped, upper-cased.
    for odd in [
        format!("{}\"", "a".repeat(63)),
        format!("{}é", "b".repeat(62)),
    ] {
        let mut s = Vec::new();
        write_entry(&mut s, &odd, None, false, None);
        let v: Value = serde_json::from_slice(&s).unwrap();
        assert_eq!(v["hash"], odd.to_ascii_uppercase());
    }
    let mut s = Vec::new();
    write_entry(&mut s, &"aF09".repeat(16), None, false, None);
    let v: Value = serde_json::from_slice(&s).unwrap();
    assert_eq!(v["hash"], "AF09".repeat(16));
    let mut s = Vec::new();
    write_entry(&mut s, "ab\"x", None, false, None);
    let v: Value = serde_json::from_slice(&s).unwrap();
    assert_eq!(v["hash"], "AB\"X");
    assert_eq!(v["scan_result_i"], 5);
    assert_eq!(v["total_detected_avs"], -1);
    assert!(v["data_id"].is_null());
    let a = Answer {
        scan_result_i: 1,
        total_detected_avs: 3,
        data_id: Some("id\"1".into()),
        details: Some(Box::new([hashsweep_lookup::EngineResult {
            engine: "AV".into(),
            threat_found: "EICAR".into(),
            scan_result_i: Some(1),
            def_time: None,
        }])),
        hosts: None,
    };
    let mut s = Vec::new();
    write_entry(&mut s, "abcd", Some(&a), true, None);
    let v: Value = serde_json::from_slice(&s).unwrap();
    assert_eq!(v["hash"], "ABCD");
    assert_eq!(v["data_id"], "id\"1");
    assert_eq!(v["scan_details"]["AV"]["threat_found"], "EICAR");
    let mut s = Vec::new();
    write_entry(&mut s, "abcd", Some(&a), false, None);
    assert!(!String::from_utf8(s).unwrap().contains("scan_details"));
}
