//! Stored answers and their seal: the compact form an answer is kept in, and with a
//! [`StoreKey`] (`--store-key-file`) an HMAC-SHA-256 tag over key and value with a signed expiry,
//! so a forged, moved or replayed value is a miss.

use super::StoreError;
use hashsweep_lookup::{Answer, EngineResult};
use hmac::{KeyInit as _, Mac as _};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The key that signs stored values (`--store-key-file`), shared by the gateway instances.
#[derive(Clone)]
pub struct StoreKey(Arc<[u8]>);

impl std::fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreKey([hidden])")
    }
}

/// The shortest store key accepted, in bytes.
pub const MIN_STORE_KEY: usize = 32;

impl StoreKey {
    /// The file's contents without surrounding whitespace: at least [`MIN_STORE_KEY`] bytes.
    pub fn load(path: &std::path::Path) -> Result<StoreKey, StoreError> {
        let raw = std::fs::read(path).map_err(|source| StoreError::KeyFile {
            path: path.to_path_buf(),
            source,
        })?;
        StoreKey::new(raw.trim_ascii()).ok_or(StoreError::BadKey(
            path.to_path_buf(),
            "the key must be at least 32 bytes (for example: openssl rand -hex 32)",
        ))
    }

    pub fn new(key: &[u8]) -> Option<StoreKey> {
        (key.len() >= MIN_STORE_KEY).then(|| StoreKey(Arc::from(key)))
    }

    pub(super) fn tag(&self, key: &str, value: &[u8]) -> [u8; TAG] {
        let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        m.update(&(key.len() as u64).to_be_bytes());
        m.update(key.as_bytes());
        m.update(value);
        m.finalize().into_bytes().into()
    }

    /// `value` signed for `key`: the tag, then the value.
    pub(super) fn seal(&self, key: &str, value: Vec<u8>) -> Vec<u8> {
        let mut out = Vec::with_capacity(TAG + value.len());
        out.extend_from_slice(&self.tag(key, &value));
        out.extend_from_slice(&value);
        out
    }

    /// The value of a sealed `stored`, if its tag is right for `key` (checked in constant time).
    pub(super) fn open<'a>(&self, key: &str, stored: &'a [u8]) -> Option<&'a [u8]> {
        let (tag, value) = stored.split_at_checked(TAG)?;
        let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.0).ok()?;
        m.update(&(key.len() as u64).to_be_bytes());
        m.update(key.as_bytes());
        m.update(value);
        m.verify_slice(tag).ok().map(|()| value)
    }
}

/// Bytes of an HMAC-SHA-256 tag.
const TAG: usize = 32;

/// The stored form of an answer. Short names: a gateway holds millions of these.
#[derive(Serialize, Deserialize)]
pub(super) struct Stored {
    pub(super) c: i64,
    pub(super) t: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) d: Option<Box<str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) e: Option<Box<[EngineResult]>>,
    /// When the value expires (unix seconds); written when values are signed, so that a copy
    /// replayed after its `EX` is not served again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) x: Option<u64>,
}

impl Stored {
    pub(super) fn encode(a: &Answer, expires: Option<u64>) -> Vec<u8> {
        serde_json::to_vec(&Stored {
            c: a.scan_result_i,
            t: a.total_detected_avs,
            d: a.data_id.clone(),
            e: a.details.clone(),
            x: expires,
        })
        .unwrap_or_default()
    }

    /// The answer, and its expiry if it has one.
    pub(super) fn decode(bytes: &[u8]) -> Option<(Answer, Option<u64>)> {
        let s: Stored = serde_json::from_slice(bytes).ok()?;
        let a = Answer {
            scan_result_i: s.c,
            total_detected_avs: s.t,
            data_id: s.d,
            details: s.e,
            hosts: None,
        };
        Some((a, s.x))
    }
}

/// Why a stored value is not served (it is a cache miss, asked upstream again).
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Unserved {
    /// It does not decode.
    Garbled,
    /// Its signature is not right for its key.
    Forged,
    /// Signed, but past its expiry, or without one (written before values carried it).
    Expired,
}

/// The answer in `stored` under `key`, read at `now` (unix seconds): with a store key it must
/// be signed for `key` and not past its expiry.
pub(super) fn unsealed(
    store_key: Option<&StoreKey>,
    key: &str,
    stored: &[u8],
    now: u64,
) -> Result<Answer, Unserved> {
    let plain = match store_key {
        None => stored,
        Some(k) => k.open(key, stored).ok_or(Unserved::Forged)?,
    };
    let (a, expires) = Stored::decode(plain).ok_or(Unserved::Garbled)?;
    match (store_key, expires) {
        (None, _) => Ok(a),
        (Some(_), Some(x)) if x > now => Ok(a),
        (Some(_), _) => Err(Unserved::Expired),
    }
}
