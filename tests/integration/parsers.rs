//! Property tests (proptest) for the two parsers fed by outside input: the service's answer
//! parser and the hash-list parser of `lookup`. They must never panic, never invent an answer,
//! and round-trip what hashsweep itself writes.

#[cfg(unix)]
use std::ffi::OsStr;
#[cfg(unix)]
use std::os::unix::ffi::OsStrExt;
#[cfg(unix)]
use std::path::Path;

use hashsweep::digest::Digest;
#[cfg(unix)]
use hashsweep::known::hashlist::{parse_line, sum_line};
use hashsweep::lookup::protocol::parse_answer;
use proptest::prelude::*;
use serde_json::{Value, json};

fn digest() -> impl Strategy<Value = Digest> {
    prop_oneof![
        any::<[u8; 16]>().prop_map(Digest::Md5),
        any::<[u8; 20]>().prop_map(Digest::Sha1),
        any::<[u8; 32]>().prop_map(Digest::Sha256),
    ]
}

/// A JSON value of any type, for fields the service might get wrong.
fn any_json() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "[a-z0-9]{0,8}".prop_map(Value::from),
        Just(json!([])),
        Just(json!({})),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn answer_parser_never_panics_on_bytes(body in proptest::collection::vec(any::<u8>(), 0..512),
                                           asked in proptest::collection::vec(digest(), 0..8)) {
        if let Ok(out) = parse_answer(&body, &asked) {
            prop_assert_eq!(out.len(), asked.len());
        }
    }

    #[test]
    fn answer_parser_only_answers_what_was_answered_well(
        asked in proptest::collection::vec(digest(), 1..6),
        entries in proptest::collection::vec((0usize..8, any_json(), any_json(), any::<bool>()), 0..10),
    ) {
        let data: Vec<Value> = entries.iter().map(|(i, code, total, lower)| {
            let hash = asked.get(*i).map(|d| if *lower { d.to_hex() } else { d.to_hex_upper() })
                .unwrap_or_else(|| "AB".repeat(16));
            json!({"hash": hash, "scan_result_i": code, "total_detected_avs": total, "data_id": null})
        }).collect();
        let body = json!({"data": data}).to_string();
        let out = parse_answer(body.as_bytes(), &asked).expect("well-formed JSON");
        prop_assert_eq!(out.len(), asked.len());
        for (k, (d, outcome)) in out.iter().enumerate() {
            prop_assert_eq!(*d, asked[k]);
            if let Ok(a) = outcome {
                // An answer exists only if some entry for this hash had integer code and total.
                let backed = entries.iter().any(|(i, code, total, _)| {
                    asked.get(*i) == Some(d) && code.as_i64() == Some(a.scan_result_i)
                        && total.as_i64() == Some(a.total_detected_avs)
                });
                prop_assert!(backed, "invented answer for {:?}", d);
            }
        }
    }

    // Unix only.
    #[cfg(unix)]
    #[test]
    fn hash_list_parser_never_panics(line in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse_line(&line);
    }

    // Unix only: a name of raw non-UTF-8 bytes exists only there.
    #[cfg(unix)]
    #[test]
    fn sum_lines_round_trip(d in digest(), name in proptest::collection::vec(any::<u8>().prop_filter("no NUL", |b| *b != 0), 1..64)) {
        prop_assume!(!name.trim_ascii().is_empty());
        let path = Path::new(OsStr::from_bytes(&name));
        let line = sum_line(&d.to_hex(), path);
        let back = parse_line(&line).expect("parses").expect("not blank");
        prop_assert_eq!(back.digest, d);
        prop_assert_eq!(back.name.as_deref(), Some(path));
    }
}
