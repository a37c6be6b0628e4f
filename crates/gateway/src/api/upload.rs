//! The file API the gateway serves its endpoints (`serve --upload-unknown`), each request with
//! an endpoint token (401006 without) and under its `--client-rate`:
//!
//! - `GET /v4/apikey`: the vendor's key information as the endpoint should use it, with
//!   `hashsweep_gateway: true` (so `scan --upload-unknown` announces its files instead of
//!   sending them) and `hashsweep_uploads` (whether this gateway uploads); never the key.
//! - `POST /v1/upload/intent` `{"hash": HEX, "size": N}`: `{"action": "send"}` (this endpoint
//!   sends the bytes; one file of its `--client-upload-budget` is taken), `{"action": "wait",
//!   "data_id": ID}` (poll it), or `{"action": "answered", ...}` with the final answer.
//! - `POST /v4/file`: the bytes the gateway asked for (`application/octet-stream` only, with
//!   `x-hashsweep-hash: HEX`); a declared length over the limit is refused (413) before any of
//!   it is read, and a body that grows past it is cut off (413); answered with the `data_id`.
//! - `GET /v4/file/{data_id}`: a `data_id` this gateway uploaded, in the vendor's shape (built
//!   here: nothing of the vendor's answer but the scan results passes on).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{ApiError, AppState, BodyFault, body_within, check_rate, json_answer, passed_on};
use super::{read_body, token_of};
use crate::uploads::{Intent, Refused, Uploads};
use hashsweep_core::digest::Digest;
use hashsweep_lookup::Answer;
use hashsweep_lookup::upload::{Poll, UploadError};

/// The header naming the digest of an upload's bytes.
pub const HASH_HEADER: &str = "x-hashsweep-hash";

/// The longest an upload's body may take to arrive (at least `--body-timeout`).
const UPLOAD_BODY_TIMEOUT: Duration = Duration::from_secs(300);

/// A refusal in the vendor's error shape.
fn refusal(status: StatusCode, code: u32, message: &str, retry_after: Option<u64>) -> Response {
    let body = json!({"error": {"code": code, "messages": [message]}}).to_string();
    let mut r = (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response();
    if let Some(s) = retry_after {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(s));
    }
    r
}

/// What a refusal is answered.
fn refused(e: &Refused) -> Response {
    let text = e.to_string();
    let (status, code, retry) = match e {
        Refused::Off | Refused::NotAccepted => (StatusCode::FORBIDDEN, 403003, None),
        Refused::TooBig { .. } => (StatusCode::PAYLOAD_TOO_LARGE, 413000, None),
        Refused::NotAsked => (StatusCode::CONFLICT, 409000, None),
        Refused::Mismatch(_) => (StatusCode::BAD_REQUEST, 400066, None),
        Refused::Busy => (StatusCode::SERVICE_UNAVAILABLE, 503000, Some(30)),
        Refused::UnknownDataId => (StatusCode::NOT_FOUND, 404003, None),
        Refused::Store(why) => {
            tracing::error!("answering 503 to an upload request: {why}");
            (StatusCode::SERVICE_UNAVAILABLE, 503000, Some(2))
        }
        Refused::Upstream(u) => return upstream_refused(u),
    };
    refusal(status, code, &text, retry)
}

/// What the vendor said of the gateway's upload or poll, as the endpoint should hear it.
fn upstream_refused(e: &UploadError) -> Response {
    let said = passed_on(&e.to_string());
    let (status, code, text, retry) = match e {
        UploadError::Throttled(_) => (StatusCode::TOO_MANY_REQUESTS, 429001, said, Some(60)),
        UploadError::BudgetSpent(_) => (
            StatusCode::TOO_MANY_REQUESTS,
            429000,
            format!("the gateway key's upload budget is spent: {said}"),
            Some(3600),
        ),
        UploadError::TooBig(_) => (StatusCode::PAYLOAD_TOO_LARGE, 413000, said, None),
        UploadError::Forbidden(_) => (
            StatusCode::FORBIDDEN,
            403003,
            format!("the gateway's key may not upload files: {said}"),
            None,
        ),
        UploadError::UnknownDataId(_) => (StatusCode::NOT_FOUND, 404003, said, None),
        UploadError::KeyRefused(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            503000,
            format!("the vendor refused the gateway's key: {said}"),
            Some(60),
        ),
        UploadError::Transport(_) | UploadError::BadAnswer(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            503000,
            format!("the gateway could not reach the vendor's file API: {said}"),
            Some(5),
        ),
    };
    tracing::warn!("upload request answered {}: {text}", status.as_u16());
    refusal(status, code, &text, retry)
}

/// The endpoint token and the uploads, or the answer that refuses the request.
async fn admitted(
    st: &AppState,
    headers: &HeaderMap,
    peer: SocketAddr,
) -> Result<(Arc<str>, Arc<Uploads>), Response> {
    let name = token_of(st, headers, peer).map_err(IntoResponse::into_response)?;
    check_rate(st, &name)
        .await
        .map_err(IntoResponse::into_response)?;
    let uploads = st.uploads.clone().ok_or_else(|| refused(&Refused::Off))?;
    Ok((name, uploads))
}

/// `GET /v4/apikey`.
pub(super) async fn key_info(
    State(st): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let name = match token_of(&st, req.headers(), peer) {
        Ok(n) => n,
        Err(e) => return e.into_response(),
    };
    if let Err(e) = check_rate(&st, &name).await {
        return e.into_response();
    }
    let Some(uploads) = st.uploads.clone() else {
        return json_answer(&json!({
            "hashsweep_gateway": true,
            "hashsweep_uploads": false,
            "hashsweep_uploads_refused": Refused::Off.to_string(),
        }));
    };
    let (info, refusal) = match uploads.check_consent().await {
        Ok(info) => (info, None),
        Err(e @ Refused::NotAccepted) => match uploads.key_info().await {
            Ok(info) => (info, Some(e.to_string())),
            Err(e) => return refused(&e),
        },
        Err(e) => return refused(&e),
    };
    let max = match uploads.max_size().await {
        Ok(m) => m.map(|(m, _)| m),
        Err(e) => return refused(&e),
    };
    let mut v = json!({
        "hashsweep_gateway": true,
        "hashsweep_uploads": refusal.is_none(),
        "limit_prevention": st.upload_budget.as_ref().map(|b| b.per_day).or(info.limit_prevention),
        "enforce_private_scan": info.enforce_private_scan,
        "paid_user": info.paid_user,
    });
    if let Some(m) = max {
        v["max_upload_file_size"] = (m >> 20).into();
        v["hashsweep_max_upload_bytes"] = m.into();
    }
    if let Some(r) = refusal {
        v["hashsweep_uploads_refused"] = r.into();
    }
    json_answer(&v)
}

/// `POST /v1/upload/intent`.
pub(super) async fn intent(
    State(st): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let (name, uploads) = match admitted(&st, req.headers(), peer).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let body = match read_body(&st, req).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let Some((d, size)) = parse_intent(&body) else {
        return refusal(
            StatusCode::BAD_REQUEST,
            400064,
            "an upload intent is {\"hash\": HEX, \"size\": BYTES}",
            None,
        );
    };
    let got = match uploads.intent(d, size, &name).await {
        Ok(i) => i,
        Err(e) => return refused(&e),
    };
    tracing::debug!(token = %name, hash = %d.to_hex(), ?got, "upload intent");
    match got {
        Intent::Send => {
            if let Some(b) = &st.upload_budget {
                let taken = match b.take(&st.store, &upload_budget_name(&name), 1).await {
                    Ok(t) => t,
                    Err(e) => return e.into_response(),
                };
                if taken.granted == 0 {
                    if let Ok(held) = uploads.asked(&d, &name).await {
                        uploads.release(&d, &held).await;
                    }
                    let secs = taken.reset_in.as_secs().max(1);
                    let mut r = refusal(
                        StatusCode::TOO_MANY_REQUESTS,
                        429000,
                        "API key limit exceeded (this endpoint token's daily upload budget is \
                         spent: serve --client-upload-budget)",
                        Some(secs),
                    );
                    if let Ok(v) = HeaderValue::from_str(&format!("{secs}s")) {
                        r.headers_mut().insert("x-ratelimit-reset-in", v);
                    }
                    return r;
                }
            }
            json_answer(&json!({"action": "send"}))
        }
        Intent::Wait(data_id) => json_answer(&json!({"action": "wait", "data_id": data_id})),
        Intent::Answered(a) => json_answer(&json!({
            "action": "answered",
            "data_id": a.data_id,
            "scan_result_i": a.scan_result_i,
            "total_detected_avs": a.total_detected_avs,
        })),
    }
}

/// An upload intent's body, `{"hash": HEX, "size": BYTES}`; `None` for anything else.
pub fn parse_intent(body: &[u8]) -> Option<(Digest, u64)> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let digest = v
        .get("hash")
        .and_then(Value::as_str)
        .and_then(Digest::from_hex)?;
    Some((digest, v.get("size").and_then(Value::as_u64)?))
}

/// The name a token's upload budget is counted under (apart from its lookups').
fn upload_budget_name(token: &str) -> Arc<str> {
    Arc::from(format!("upload/{token}"))
}

/// Percent-decoding of a `filename` header (the vendor's clients URL-encode it).
pub fn url_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && let (Some(h), Some(l)) = (
                b.get(i + 1).copied().and_then(hex),
                b.get(i + 2).copied().and_then(hex),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `POST /v4/file`.
pub(super) async fn receive(
    State(st): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let (name, uploads) = match admitted(&st, req.headers(), peer).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let (parts, body) = req.into_parts();
    let h = &parts.headers;
    let octets = h
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/octet-stream"));
    if !octets {
        return refusal(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            415000,
            "an upload's body is the file's bytes as application/octet-stream",
            None,
        );
    }
    let Some(d) = h
        .get(HASH_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(Digest::from_hex)
    else {
        return refusal(
            StatusCode::BAD_REQUEST,
            400064,
            "an upload through the gateway names its digest in x-hashsweep-hash, as announced \
             to POST /v1/upload/intent",
            None,
        );
    };
    let file_name = h
        .get("filename")
        .and_then(|v| v.to_str().ok())
        .map(url_decode)
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "file".into());
    let declared = h
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    // Before the body: the turn, then the size it declares.
    let held = match uploads.asked(&d, &name).await {
        Ok(h) => h,
        Err(e) => return refused(&e),
    };
    let limit = match uploads.max_size().await {
        Ok(m) => m,
        Err(e) => return refused(&e),
    };
    if let (Some((max, from)), Some(size)) = (limit, declared)
        && size > max
    {
        metrics::counter!("hashsweep_gateway_client_refused_total", "reason" => "upload_size")
            .increment(1);
        uploads.release(&d, &held).await;
        refund(&st, &name).await;
        return refused(&Refused::TooBig { size, max, from });
    }
    let Ok(_permit) = uploads.bodies.acquire().await else {
        return ApiError::Busy.into_response();
    };
    let max = limit.map_or(usize::MAX, |(m, _)| {
        usize::try_from(m).unwrap_or(usize::MAX)
    });
    let within = st.body_timeout.max(UPLOAD_BODY_TIMEOUT);
    let bytes = match tokio::time::timeout(within, body_within(body, max)).await {
        Ok(Ok(b)) => b.to_vec(),
        Ok(Err(fault)) => {
            uploads.release(&d, &held).await;
            refund(&st, &name).await;
            return match fault {
                BodyFault::TooLarge => {
                    let (max, from) = limit.unwrap_or((0, ""));
                    refused(&Refused::TooBig {
                        size: max.saturating_add(1),
                        max,
                        from,
                    })
                }
                BodyFault::Broken => ApiError::from(super::BROKEN_BODY).into_response(),
            };
        }
        Err(_) => {
            uploads.release(&d, &held).await;
            refund(&st, &name).await;
            return ApiError::BodyTimeout.into_response();
        }
    };
    let size = bytes.len();
    match uploads.forward(d, &held, file_name, bytes).await {
        Ok(data_id) => {
            tracing::info!(token = %name, hash = %d.to_hex(), size, %data_id, "uploaded for the fleet");
            json_answer(&json!({"data_id": data_id, "status": "inqueue", "in_queue": 1}))
        }
        Err(e) => {
            refund(&st, &name).await;
            refused(&e)
        }
    }
}

/// Give back the file of `name`'s upload budget taken for an upload that did not happen.
async fn refund(st: &AppState, name: &str) {
    if let Some(b) = &st.upload_budget {
        let (day, _) = super::utc_day(std::time::SystemTime::now());
        b.refund(&st.store, &upload_budget_name(name), day, 1).await;
    }
}

/// `GET /v4/file/{data_id}`.
pub(super) async fn poll(
    State(st): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(data_id): Path<String>,
    req: Request,
) -> Response {
    let (_, uploads) = match admitted(&st, req.headers(), peer).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    match uploads.poll(&data_id).await {
        Ok(Poll::Pending(progress)) => json_answer(&json!({
            "data_id": data_id,
            "status": "inqueue",
            "scan_results": {"scan_all_result_i": 255, "progress_percentage": progress.unwrap_or(0)},
        })),
        Ok(Poll::Done(a)) => json_answer(&finished(&data_id, &a)),
        Err(e) => refused(&e),
    }
}

/// A finished scan in the vendor's shape: the scan results only.
fn finished(data_id: &str, a: &Answer) -> Value {
    let details: serde_json::Map<String, Value> = a
        .details
        .iter()
        .flatten()
        .map(|e| {
            (
                e.engine.clone(),
                json!({"threat_found": e.threat_found, "scan_result_i": e.scan_result_i,
                       "def_time": e.def_time}),
            )
        })
        .collect();
    json!({
        "data_id": data_id,
        "scan_results": {
            "scan_all_result_i": a.scan_result_i,
            "total_detected_avs": a.total_detected_avs,
            "progress_percentage": 100,
            "scan_details": details,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_decoded_as_the_vendors_clients_encode_them() {
        assert_eq!(url_decode("a%20b%2F%C3%BC.exe"), "a b/ü.exe");
        assert_eq!(url_decode("100%"), "100%");
        assert_eq!(url_decode("%zz"), "%zz");
    }
}
