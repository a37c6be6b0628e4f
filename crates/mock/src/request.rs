//! The mock's own checks of a `POST /v4/hash` request, written from the vendor's page
//! (`shared/reference/metadefender-v4-hash-bulk.txt`) and its error table
//! (`shared/reference/result-codes.md`), not from hashsweep's gateway, so that the stand-in does
//! not share code with what it tests.
//!
//! What the vendor documents:
//! - the body is JSON `{"hash": [...]}`; at most 1000 hashes in one request;
//! - `400060` the `hash` field is missing, `400061` it is not an array, `400062` it is empty,
//!   `400063` more than 1000 hashes, `400064` a hash value is not valid, `400065`
//!   `includescandetails` is neither 0 nor 1;
//! - a string that is not a known (or not a well-formed) hash is not an error: it gets an entry
//!   with `scan_result_i` 5, so only a value that is not a string at all is refused here.
//!
//! Checks are made in that order: field present, array, every value a string, not empty, not
//! over the limit.

use serde_json::Value;

/// The most hashes one request may carry.
pub const MAX_HASHES: usize = 1000;

/// A request the vendor refuses with HTTP 400: its error code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub code: i64,
    pub message: &'static str,
}

impl Rejection {
    /// The vendor's error body, `{"error":{"code":N,"messages":["..."]}}`.
    pub fn body(&self) -> String {
        error_body(self.code, self.message)
    }
}

/// The vendor's error body shape for `code` and one message.
pub fn error_body(code: i64, message: &str) -> String {
    serde_json::json!({"error": {"code": code, "messages": [message]}}).to_string()
}

fn reject<T>(code: i64, message: &'static str) -> Result<T, Rejection> {
    Err(Rejection { code, message })
}

/// The `includescandetails` header: absent or `0` means no details, `1` details, else 400065.
pub fn check_details(header: Option<&str>) -> Result<bool, Rejection> {
    match header {
        None | Some("0") => Ok(false),
        Some("1") => Ok(true),
        Some(_) => reject(400065, "includescandetails must be 0 or 1"),
    }
}

/// The hashes of a request body, as sent, or the vendor's refusal.
pub fn check_body(body: &[u8]) -> Result<Vec<String>, Rejection> {
    // Not JSON, or JSON that is not an object with a `hash` member: the field is missing.
    let field = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(mut o)) => o.remove("hash"),
        _ => None,
    };
    let Some(field) = field else {
        return reject(400060, "The `hash` field is required");
    };
    let Value::Array(values) = field else {
        return reject(400061, "The `hash` field must be an array");
    };
    let mut hashes = Vec::with_capacity(values.len());
    for v in values {
        match v {
            Value::String(s) => hashes.push(s),
            _ => return reject(400064, "A hash value is not valid"),
        }
    }
    if hashes.is_empty() {
        // The vendor's own example of this answer.
        return reject(400062, "The `hash` field is empty");
    }
    if hashes.len() > MAX_HASHES {
        return reject(400063, "Exceeded maximum allowed hashes (1000)");
    }
    Ok(hashes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(body: &str) -> i64 {
        match check_body(body.as_bytes()) {
            Ok(h) => panic!("{body} accepted as {h:?}"),
            Err(r) => r.code,
        }
    }

    #[test]
    fn a_missing_field_is_400060() {
        assert_eq!(code("{}"), 400060);
        assert_eq!(code("not json"), 400060);
        assert_eq!(code(""), 400060);
        assert_eq!(code(r#"["abc"]"#), 400060, "an array is not the object");
        assert_eq!(code(r#"{"hashes":["abc"]}"#), 400060);
    }

    #[test]
    fn a_field_that_is_not_an_array_is_400061() {
        assert_eq!(code(r#"{"hash":"abc"}"#), 400061);
        assert_eq!(code(r#"{"hash":null}"#), 400061);
        assert_eq!(code(r#"{"hash":{"0":"abc"}}"#), 400061);
    }

    #[test]
    fn an_empty_field_is_400062_with_the_vendors_message() {
        let r = check_body(br#"{"hash":[]}"#).unwrap_err();
        assert_eq!(r.code, 400062);
        let v: Value = serde_json::from_str(&r.body()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"error": {"code": 400062, "messages": ["The `hash` field is empty"]}})
        );
    }

    #[test]
    fn more_than_1000_is_400063_and_1000_is_fine() {
        let body = |n: usize| serde_json::json!({ "hash": vec!["A"; n] }).to_string();
        assert_eq!(code(&body(1001)), 400063);
        assert_eq!(check_body(body(1000).as_bytes()).unwrap().len(), 1000);
    }

    #[test]
    fn a_value_that_is_not_a_string_is_400064() {
        assert_eq!(code(r#"{"hash":[42]}"#), 400064);
        assert_eq!(code(r#"{"hash":["abc",null]}"#), 400064);
        assert_eq!(code(r#"{"hash":[["abc"]]}"#), 400064);
    }

    #[test]
    fn strings_are_kept_as_sent_even_when_not_hashes() {
        // An invalid hash gets a `scan_result_i` 5 entry, not an HTTP error.
        let h = check_body(br#"{"hash":["ab","c\u0064","not a hash"],"extra":1}"#).unwrap();
        assert_eq!(h, ["ab", "cd", "not a hash"]);
    }

    #[test]
    fn includescandetails_is_0_or_1() {
        assert_eq!(check_details(None), Ok(false));
        assert_eq!(check_details(Some("0")), Ok(false));
        assert_eq!(check_details(Some("1")), Ok(true));
        for bad in ["2", "true", "", " 1"] {
            assert_eq!(
                check_details(Some(bad)).unwrap_err().code,
                400065,
                "{bad:?}"
            );
        }
    }
}
