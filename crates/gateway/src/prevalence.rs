//! Prevalence (`serve --prevalence`): on how many hosts of the fleet each digest is, and which.
//!
//! A host is an endpoint token's name: a token shared by several machines counts once. Each
//! distinct digest of a `POST /v4/hash` adds the asking token's name, in the same pipeline as
//! the request's verdict reads (no extra round trip), through [`RECORD`]: the names go in a Redis
//! sorted set (all scores 0: a compact listpack in Redis) while there are at most [`NAMES`] of them; the 17th name turns the set into a HyperLogLog
//! (`PFADD`), which only counts (standard error 0.81%; never fewer than 17 is reported for it).
//! Either key expires `--prevalence-ttl` after the digest was last asked (each ask refreshes it).
//! The keys carry the digest in a hash tag in a cluster, so they live in its verdict's slot.
//!
//! Prevalence is not signed with `--store-key-file`: it never decides a verdict, only an order
//! and a count shown to people.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use hashsweep_core::digest::Digest;

/// Names kept per digest; beyond this many hosts only a count.
pub const NAMES: usize = 16;

/// The default `--prevalence-ttl`.
pub const DEFAULT_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// On how many hosts a digest is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prevalence {
    /// Upper-case hex, as the `/v4/hash` answers echo hashes.
    pub hash: String,
    pub hosts: u64,
    /// The hosts' names (sorted), while there are at most [`NAMES`]; absent beyond.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub names: Option<Vec<String>>,
}

/// `hashsweep prevalence` could not get an answer from a gateway's admin listener.
#[derive(Debug, thiserror::Error)]
pub enum AskError {
    #[error("invalid --api-url {0}: {1}")]
    Url(String, String),
    #[error("{url}: no answer")]
    Request {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url}: answered {status}: {body}")]
    Refused {
        url: String,
        status: u16,
        body: String,
    },
    #[error("{url}: the answer is not a list of prevalence objects: {why}")]
    Malformed { url: String, why: String },
}

/// Ask the admin listener at `admin_url` (`POST /v1/prevalence`, 1000 digests a request) for
/// `digests`' prevalence, in order.
pub fn ask(admin_url: &str, digests: &[Digest]) -> Result<Vec<Prevalence>, AskError> {
    let base =
        url::Url::parse(admin_url).map_err(|e| AskError::Url(admin_url.into(), e.to_string()))?;
    let url = base
        .join("/v1/prevalence")
        .map_err(|e| AskError::Url(admin_url.into(), e.to_string()))?
        .to_string();
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|source| AskError::Request {
            url: url.clone(),
            source,
        })?;
    let mut out = Vec::with_capacity(digests.len());
    for chunk in digests.chunks(hashsweep_lookup::batch::MAX_BATCH) {
        let body = hashsweep_lookup::protocol::request_body(chunk);
        let resp = client
            .post(&url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .map_err(|source| AskError::Request {
                url: url.clone(),
                source,
            })?;
        let status = resp.status();
        let text = resp.text().map_err(|source| AskError::Request {
            url: url.clone(),
            source,
        })?;
        if !status.is_success() {
            return Err(AskError::Refused {
                url,
                status: status.as_u16(),
                body: hashsweep_lookup::protocol::cap_text(text.trim(), 300),
            });
        }
        let got: Vec<Prevalence> =
            serde_json::from_str(&text).map_err(|e| AskError::Malformed {
                url: url.clone(),
                why: e.to_string(),
            })?;
        if got.len() != chunk.len() {
            return Err(AskError::Malformed {
                url,
                why: format!("{} answers for {} hashes", got.len(), chunk.len()),
            });
        }
        out.extend(got);
    }
    Ok(out)
}

/// Records one host for digests: `KEYS` are pairs (names sorted set, count HyperLogLog), `ARGV` the
/// host's name, the TTL in seconds and [`NAMES`]. Answers each digest's host count, in order.
/// One script for a whole request on one Redis; one pair a call in a cluster (a script's keys
/// must share a slot).
pub const RECORD: &str = r"
local name, ttl, cap = ARGV[1], ARGV[2], tonumber(ARGV[3])
local out = {}
for i = 1, #KEYS, 2 do
  local set, hll = KEYS[i], KEYS[i + 1]
  local n
  if redis.call('EXISTS', hll) == 1 then
    redis.call('PFADD', hll, name)
    redis.call('EXPIRE', hll, ttl)
    n = math.max(redis.call('PFCOUNT', hll), cap + 1)
  else
    redis.call('ZADD', set, 'NX', 0, name)
    n = redis.call('ZCARD', set)
    if n > cap then
      redis.call('PFADD', hll, unpack(redis.call('ZRANGE', set, 0, -1)))
      redis.call('DEL', set)
      redis.call('EXPIRE', hll, ttl)
      n = math.max(redis.call('PFCOUNT', hll), cap + 1)
    else
      redis.call('EXPIRE', set, ttl)
    end
  end
  out[#out + 1] = n
end
return out
";

/// A digest's prevalence from its two keys' replies: `ZRANGE 0 -1` of the names and `PFCOUNT` of
/// the count (0 when the HyperLogLog does not exist: the names are the whole story).
pub fn from_replies(hash: String, mut members: Vec<String>, counted: u64) -> Prevalence {
    if counted > 0 {
        return Prevalence {
            hash,
            hosts: counted.max(NAMES as u64 + 1),
            names: None,
        };
    }
    members.sort_unstable();
    Prevalence {
        hash,
        hosts: members.len() as u64,
        names: Some(members),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_shown_only_while_few() {
        let p = from_replies("AB".into(), vec!["b".into(), "a".into()], 0);
        assert_eq!(p.hosts, 2);
        assert_eq!(p.names.as_deref(), Some(&["a".to_string(), "b".into()][..]));
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"hash": "AB", "hosts": 2, "names": ["a", "b"]})
        );
        // A HyperLogLog that estimates low still says "more than the names kept".
        let p = from_replies("AB".into(), Vec::new(), 15);
        assert_eq!((p.hosts, p.names.clone()), (17, None));
        assert!(serde_json::to_value(&p).unwrap().get("names").is_none());
        assert_eq!(from_replies("AB".into(), Vec::new(), 0).hosts, 0);
    }
}
