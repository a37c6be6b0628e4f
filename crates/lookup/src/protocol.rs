//! The wire format of `POST /v4/hash`: request bodies and answer parsing.
//!
//! Answers are matched to questions by hash, case-insensitively, never by position. Entries with
//! wrong types, hashes not asked for, conflicting repeats and missing answers are each handled
//! explicitly: an affected digest gets a [`LookupError`] (`MissingEntry` for a hash left out,
//! which the client asks again; `BadAnswer` for the rest); nothing is guessed. The verdict comes
//! from `scan_result_i`; `total_detected_avs` (or, without it, the engines of `scan_details`)
//! is needed only where a count could change it.

use std::collections::HashMap;

use serde_json::Value;

use super::{Answer, EngineResult, HashOutcome, LookupError, Verdict};
use hashsweep_core::digest::Digest;

/// The extra field a gateway adds to a `/v4/hash` answer entry: the digest's host count
/// (`serve --prevalence`).
pub const HOSTS_FIELD: &str = "hashsweep_hosts";

/// `{"hash":["HEX",...]}` with upper-case hex, as the vendor's examples send it.
pub fn request_body(digests: &[Digest]) -> String {
    let hashes: Vec<String> = digests.iter().map(Digest::to_hex_upper).collect();
    serde_json::json!({ "hash": hashes }).to_string()
}

/// The `{"error":{"code":N,"messages":[...]|"..."}}` shape, read leniently.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServiceError {
    pub code: Option<i64>,
    pub message: String,
}

/// The most of a service's error text kept (it is passed on: logs, a gateway's answers).
pub const MAX_ERROR_TEXT: usize = 300;

/// The largest answer read: 1000 entries with per-engine details. An entry with details is
/// about 10 KB (some 40 engines of up to ~250 bytes each), so 1000 need about 10 MB; an
/// answer longer than 16 MiB is refused (a failed lookup) before it fills memory.
pub const MAX_ANSWER: usize = 16 << 20;

/// `s` cut to at most `max` bytes, on a character boundary (with `…` when cut).
pub fn cap_text(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Read an error body; never fails (a plain-text body becomes the message, at most
/// [`MAX_ERROR_TEXT`] bytes of it either way).
pub fn parse_error(body: &[u8]) -> ServiceError {
    let text = || {
        String::from_utf8_lossy(body)
            .chars()
            .take(200)
            .collect::<String>()
            .trim()
            .to_string()
    };
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return ServiceError {
            code: None,
            message: text(),
        };
    };
    let err = v.get("error").unwrap_or(&v);
    let code = err.get("code").and_then(Value::as_i64);
    let message = match err.get("messages") {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join("; "),
        Some(Value::String(s)) => s.clone(),
        _ => err
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(text),
    };
    ServiceError {
        code,
        message: cap_text(&message, MAX_ERROR_TEXT),
    }
}

/// Why a whole answer could not be used (the batch may be retried).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MalformedAnswer(pub String);

/// Match a 200 answer to the digests asked. Returns one outcome per asked digest.
pub fn parse_answer(
    body: &[u8],
    asked: &[Digest],
) -> Result<Vec<(Digest, HashOutcome)>, MalformedAnswer> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| MalformedAnswer(format!("answer is not valid JSON: {e}")))?;
    let data = v
        .get("data")
        .and_then(Value::as_array)
        .ok_or_else(|| MalformedAnswer("answer has no \"data\" array".into()))?;

    let index: HashMap<String, usize> = asked
        .iter()
        .enumerate()
        .map(|(i, d)| (d.to_hex_upper(), i))
        .collect();
    let mut outcomes: Vec<Option<HashOutcome>> = vec![None; asked.len()];
    for entry in data {
        let Some(hash) = entry.get("hash").and_then(Value::as_str) else {
            continue;
        };
        let Some(&i) = index.get(&hash.to_ascii_uppercase()) else {
            continue;
        };
        let parsed = parse_entry(entry);
        outcomes[i] = Some(match outcomes[i].take() {
            None => parsed,
            Some(prev) if prev == parsed => prev,
            Some(_) => Err(LookupError::BadAnswer(
                "service answered this hash twice with different results".into(),
            )),
        });
    }
    Ok(asked
        .iter()
        .zip(outcomes)
        .map(|(d, o)| (*d, o.unwrap_or(Err(LookupError::MissingEntry))))
        .collect())
}

fn parse_entry(e: &Value) -> HashOutcome {
    parse_fields(e).map_err(|why| LookupError::BadAnswer(why.into()))
}

fn parse_fields(e: &Value) -> Result<Answer, String> {
    let code = match e.get("scan_result_i") {
        Some(Value::Number(n)) => n
            .as_i64()
            .ok_or_else(|| format!("scan_result_i is not an integer: {n}"))?,
        Some(other) => return Err(format!("scan_result_i has the wrong type: {other}")),
        None => return Err("answer entry has no scan_result_i".into()),
    };
    let total = match e.get("total_detected_avs") {
        Some(Value::Number(n)) => n
            .as_i64()
            .ok_or_else(|| format!("total_detected_avs is not an integer: {n}"))?,
        Some(other) => return Err(format!("total_detected_avs has the wrong type: {other}")),
        // The vendor's own sample of a detailed answer has no total: count the engines.
        None => match e.get("scan_details").and_then(Value::as_object) {
            Some(engines) => detections(engines),
            // Nothing to count (a detailed answer's not-found entry: code 5 alone). The
            // verdict comes from the code: when no count could change it, the count is not
            // stated (-1, as the service sends for not found); when one could (a clean-looking
            // code), the entry is not usable.
            None if !Verdict::count_matters(code) => -1,
            None => return Err("answer entry has no total_detected_avs".into()),
        },
    };
    let data_id = match e.get("data_id") {
        Some(Value::String(s)) => Some(s.as_str().into()),
        Some(Value::Null) | None => None,
        Some(other) => return Err(format!("data_id has the wrong type: {other}")),
    };
    let details = e.get("scan_details").and_then(Value::as_object).map(|m| {
        m.iter()
            .map(|(engine, r)| EngineResult {
                engine: engine.clone(),
                threat_found: r
                    .get("threat_found")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                scan_result_i: r.get("scan_result_i").and_then(Value::as_i64),
                def_time: r
                    .get("def_time")
                    .and_then(Value::as_str)
                    .map(str::to_string),
            })
            .collect()
    });
    // A gateway's host count; anything but a whole number is no count (it never decides a
    // verdict, so it does not make the entry bad).
    let hosts = e
        .get(HOSTS_FIELD)
        .and_then(Value::as_u64)
        .map(|n| u32::try_from(n).unwrap_or(u32::MAX));
    Ok(Answer {
        scan_result_i: code,
        total_detected_avs: total,
        data_id,
        details,
        hosts,
    })
}

/// How many engines of `scan_details` report a detection, classified as the overall code is
/// ([`Verdict::from_code`]: infected or suspicious).
fn detections(engines: &serde_json::Map<String, Value>) -> i64 {
    let n = engines
        .values()
        .filter_map(|r| r.get("scan_result_i").and_then(Value::as_i64))
        .filter(|code| Verdict::from_code(*code, None).is_detection())
        .count();
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(hex: &str) -> Digest {
        Digest::from_hex(hex).unwrap()
    }

    #[test]
    fn matches_by_hash_case_insensitively_not_by_position() {
        let a = d("8f7920da1d52b06a61d7a41c51d595ac");
        let b = d("aa73b43084e93e741552e5b9c8dee457");
        let body = br#"{"data":[
            {"data_id":"x","scan_result_i":1,"hash":"AA73B43084E93E741552E5B9C8DEE457","total_detected_avs":33},
            {"data_id":"y","scan_result_i":0,"hash":"8F7920DA1D52B06A61D7A41C51D595AC","total_detected_avs":0}]}"#;
        let out = parse_answer(body, &[a, b]).unwrap();
        assert_eq!(out[0].0, a);
        assert_eq!(out[0].1.as_ref().unwrap().verdict(), Verdict::Clean);
        assert_eq!(out[1].1.as_ref().unwrap().verdict(), Verdict::Infected);
        assert_eq!(out[1].1.as_ref().unwrap().total_detected_avs, 33);
    }

    #[test]
    fn missing_wrong_typed_and_conflicting_entries_are_errors() {
        let a = d("00000000000000000000000000000001");
        let b = d("00000000000000000000000000000002");
        let c = d("00000000000000000000000000000003");
        let body = br#"{"data":[
            {"hash":"00000000000000000000000000000001","scan_result_i":"0","total_detected_avs":0},
            {"hash":"00000000000000000000000000000002","scan_result_i":0,"total_detected_avs":0},
            {"hash":"00000000000000000000000000000002","scan_result_i":1,"total_detected_avs":9},
            {"hash":"FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF","scan_result_i":0,"total_detected_avs":0}]}"#;
        let out = parse_answer(body, &[a, b, c]).unwrap();
        let err = |i: usize| out[i].1.as_ref().unwrap_err();
        assert!(matches!(err(0), LookupError::BadAnswer(r) if r.as_str().contains("wrong type")));
        assert!(matches!(err(1), LookupError::BadAnswer(r) if r.as_str().contains("twice")));
        assert_eq!(err(2), &LookupError::MissingEntry);
        assert!(err(2).message().contains("no entry"));
    }

    #[test]
    fn null_total_is_an_error_and_unknown_is_not_clean() {
        let a = d("00000000000000000000000000000001");
        let b = d("00000000000000000000000000000002");
        let body = br#"{"data":[
            {"hash":"00000000000000000000000000000001","scan_result_i":0,"total_detected_avs":null},
            {"hash":"00000000000000000000000000000002","scan_result_i":5,"total_detected_avs":-1,"data_id":null}]}"#;
        let out = parse_answer(body, &[a, b]).unwrap();
        assert!(out[0].1.is_err());
        assert_eq!(out[1].1.as_ref().unwrap().verdict(), Verdict::Unknown);
    }

    #[test]
    fn malformed_bodies_are_rejected_whole() {
        assert!(parse_answer(b"{\"data\":[", &[]).is_err());
        assert!(parse_answer(b"{\"error\":{}}", &[]).is_err());
    }

    #[test]
    fn error_bodies_in_each_documented_shape() {
        let e =
            parse_error(br#"{"error":{"code":400062,"messages":["The `hash` field is empty"]}}"#);
        assert_eq!(e.code, Some(400062));
        assert!(e.message.contains("empty"));
        let long = format!(
            r#"{{"error":{{"code":401006,"messages":["{}"]}}}}"#,
            "é".repeat(1 << 19)
        );
        let e = parse_error(long.as_bytes());
        assert!(
            e.message.len() <= MAX_ERROR_TEXT + "…".len(),
            "{}",
            e.message.len()
        );
        assert!(e.message.starts_with('é'));
        let e = parse_error(br#"{"error":{"name":"ClientError","code":429001,"status":429,"messages":"slow down"}}"#);
        assert_eq!((e.code, e.message.as_str()), (Some(429001), "slow down"));
        let e = parse_error(b"Unauthorized");
        assert_eq!((e.code, e.message.as_str()), (None, "Unauthorized"));
    }

    #[test]
    fn a_detailed_answer_without_the_total_counts_the_engines() {
        let a = d("00000000000000000000000000000001");
        let b = d("00000000000000000000000000000002");
        let c = d("00000000000000000000000000000003");
        // As in the vendor's sample: no total_detected_avs; engines differ in their fields.
        let body = br#"{"data":[
            {"data_id":"x","scan_result_i":0,"hash":"00000000000000000000000000000001","scan_details":{
                "Zoner":{"wait_time":1336,"threat_found":"","scan_time":392,"scan_result_i":0},
                "Avira":{"scan_result_i":0,"threat_found":"","scan_result":"Clean"}}},
            {"data_id":"y","scan_result_i":0,"hash":"00000000000000000000000000000002","scan_details":{
                "A":{"scan_result_i":1,"threat_found":"EICAR"},
                "B":{"scan_result_i":22,"threat_found":"PUP"},
                "C":{"scan_result_i":8},
                "D":{"scan_result_i":0},
                "E":{"scan_result_i":5},
                "F":{"threat_found":"no code"}}},
            {"data_id":"z","scan_result_i":0,"hash":"00000000000000000000000000000003"}]}"#;
        let out = parse_answer(body, &[a, b, c]).unwrap();
        let clean = out[0].1.as_ref().unwrap();
        assert_eq!(
            (clean.total_detected_avs, clean.verdict()),
            (0, Verdict::Clean)
        );
        let hit = out[1].1.as_ref().unwrap();
        assert_eq!(
            hit.total_detected_avs, 3,
            "codes 1, 22 and 8 are detections"
        );
        assert_eq!(
            hit.verdict(),
            Verdict::Suspicious,
            "a clean code with detections"
        );
        // Without details there is nothing to count: still an error, never clean.
        assert!(
            matches!(&out[2].1, Err(LookupError::BadAnswer(r)) if r.as_str().contains("no total_detected_avs"))
        );
    }

    #[test]
    fn not_found_in_a_detailed_answer_is_unknown_without_a_total() {
        let a = d("00000000000000000000000000000001");
        let b = d("00000000000000000000000000000002");
        let c = d("00000000000000000000000000000003");
        let e = d("00000000000000000000000000000004");
        // A detailed answer's not-found entry: code 5, no total, no scan_details.
        let body = br#"{"data":[
            {"data_id":null,"scan_result_i":5,"hash":"00000000000000000000000000000001"},
            {"data_id":"x","scan_result_i":1,"hash":"00000000000000000000000000000002"},
            {"data_id":"y","scan_result_i":7,"hash":"00000000000000000000000000000003"},
            {"data_id":null,"hash":"00000000000000000000000000000004","total_detected_avs":-1}]}"#;
        let out = parse_answer(body, &[a, b, c, e]).unwrap();
        let unknown = out[0]
            .1
            .as_ref()
            .expect("not found is an answer, not an error");
        assert_eq!(
            (unknown.verdict(), unknown.total_detected_avs),
            (Verdict::Unknown, -1),
            "the verdict comes from the code; the total is not stated"
        );
        // A code no count can change needs no count either.
        assert_eq!(out[1].1.as_ref().unwrap().verdict(), Verdict::Infected);
        // A code a count could turn into a detection still needs one.
        assert!(
            matches!(&out[2].1, Err(LookupError::BadAnswer(r)) if r.as_str().contains("no total_detected_avs")),
            "{:?}",
            out[2].1
        );
        // No code at all stays malformed.
        assert!(
            matches!(&out[3].1, Err(LookupError::BadAnswer(r)) if r.as_str().contains("no scan_result_i")),
            "{:?}",
            out[3].1
        );
    }

    #[test]
    fn details_are_kept_per_engine() {
        let a = d("00000000000000000000000000000001");
        let body = br#"{"data":[{"hash":"00000000000000000000000000000001","scan_result_i":1,"total_detected_avs":1,"data_id":"q",
            "scan_details":{"Zoner":{"threat_found":"EICAR","scan_result_i":1,"def_time":"2017-11-28T00:00:00.000Z","scan_time":3}}}]}"#;
        let out = parse_answer(body, &[a]).unwrap();
        let det = out[0].1.as_ref().unwrap().details.clone().unwrap();
        assert_eq!(det[0].engine, "Zoner");
        assert_eq!(det[0].threat_found, "EICAR");
        assert_eq!(det[0].scan_result_i, Some(1));
    }
}
