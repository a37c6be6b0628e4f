//! What the client says when the service refuses or fails: the words for a refused key and
//! each 403, the key scrubbed from every text, and transport errors without their noise.

/// What each record says after a 401 (the whole reason is said once, in the summary).
pub const KEY_REFUSED: &str = "API key refused";

/// What each record says after a 403, by sub-code: the few words of [`forbidden`].
pub(super) fn forbidden_brief(code: Option<i64>) -> &'static str {
    match code {
        Some(403001) => "API key refused: it does not match the resource",
        Some(403002) => "this IP address is blocked by the service for abuse",
        Some(403003) => "API key refused: no privilege for the bulk hash lookup",
        Some(403004) => "this IP address is not on the API key's allow list",
        _ => "lookup forbidden by the service (HTTP 403)",
    }
}

/// The message for a 403, by sub-code (see `shared/reference/result-codes.md`). Each is final
/// for the run, but only some are about the key itself.
pub(super) fn forbidden(code: Option<i64>, what: &str) -> String {
    let stop = "no further lookups were sent";
    match code {
        Some(403001) => format!(
            "the API key does not match the resource ({what}); {stop}. Check that the key is the one for this service"
        ),
        Some(403002) => format!(
            "this IP address is blocked by the service for abuse ({what}): repeated requests with bad keys block it \
             for about an hour; {stop}. Wait, then try again with the right key"
        ),
        Some(403003) => format!(
            "the API key lacks the privilege for the bulk hash lookup ({what}); {stop}. The key's licence must \
             include this endpoint"
        ),
        Some(403004) => format!(
            "this IP address is not on the API key's allow list ({what}); {stop}. Add it to the key's allowed \
             addresses, or run from one of them"
        ),
        _ => format!(
            "the service forbade the lookup ({what}); {stop}. Check the API key's rights to the bulk hash lookup"
        ),
    }
}

/// Pieces of the key this long (and longer) are scrubbed from texts.
pub const SCRUB_PIECE: usize = 8;

/// `s` with `key` removed, case-insensitively, and with every run of [`SCRUB_PIECE`] or more
/// characters that also occurs in the key (in any case) replaced by `[redacted]`.
pub fn scrub_key(s: &str, key: &str) -> String {
    let k = key.as_bytes().to_ascii_lowercase();
    if k.len() < 4 {
        return s.to_string();
    }
    let piece = SCRUB_PIECE.min(k.len());
    let pieces: std::collections::HashSet<&[u8]> = k.windows(piece).collect();
    let low = s.as_bytes().to_ascii_lowercase();
    // Mark every byte covered by a window that is a piece of the key.
    let mut hidden = vec![false; low.len()];
    for (i, w) in low.windows(piece).enumerate() {
        if pieces.contains(w) {
            hidden[i..i + piece].iter_mut().for_each(|h| *h = true);
        }
    }
    if !hidden.contains(&true) {
        return s.to_string();
    }
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < low.len() {
        if hidden[i] {
            out.extend_from_slice(b"[redacted]");
            while i < low.len() && hidden[i] {
                i += 1;
            }
        } else {
            out.push(s.as_bytes()[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The last error in `e`'s cause chain, when it has one.
pub(super) fn innermost_cause(e: &reqwest::Error) -> Option<String> {
    let mut last = None;
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        last = Some(s.to_string());
        src = s.source();
    }
    last
}

/// A reqwest error without the URL noise, with its cause chain.
pub(super) fn describe_reqwest(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_body() || e.is_decode() {
        "answer cut short"
    } else {
        "request failed"
    };
    let mut msg = kind.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    msg
}

/// An HTML page (a web server's index, a proxy's or a portal's error page) where the API's
/// JSON was expected.
pub(super) fn looks_like_html(body: &[u8]) -> bool {
    let head = body.trim_ascii_start();
    let head = &head[..head.len().min(64)];
    head.first() == Some(&b'<')
        && [
            &b"<!doctype html"[..],
            b"<html",
            b"<head",
            b"<body",
            b"<title",
            b"<h1",
            b"<?xml",
        ]
        .iter()
        .any(|tag| head.len() >= tag.len() && head[..tag.len()].eq_ignore_ascii_case(tag))
}
