//! The gateway's verdict store: where answers are shared between requests, endpoints and
//! gateway instances.
//!
//! Two kinds, chosen by `--store`: `sqlite:PATH` (the same verdict cache `scan` uses; one
//! instance) and `redis://HOST:PORT/DB` / `rediss://…` (shared by every instance behind a load
//! balancer). Redis is used through the `redis` crate's connection manager, which reconnects on
//! its own: a whole request's keys in one `MGET`, answers written back in one pipeline of
//! `SET … EX ttl`, and a short `SET NX EX` claim per digest so that two instances never ask the
//! upstream for the same digest at once. TTLs come from [`Ttls`]; errors are never stored.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::{Deserialize, Serialize};

use crate::cache::{Cache, Ttls};
use crate::digest::{Digest, push_hex_lower};
use crate::lookup::{Answer, EngineResult};

/// Prefix of every key the gateway writes (versioned, so a change of encoding starts afresh).
pub const KEY_PREFIX: &str = "hashsweep:v1:";

/// The store could not be used; the gateway answers 503 rather than guess.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid --store '{0}': {1}")]
    Spec(String, String),
    #[error("verdict store {store}: {what}")]
    Unavailable { store: String, what: String },
    /// The SQLite store could not be opened.
    #[error("cannot open the verdict store {spec}")]
    Open {
        spec: String,
        #[source]
        source: Box<crate::cache::CacheError>,
    },
}

/// How a claim on a digest came out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Someone already stored the answer.
    Answered(Answer),
    /// This instance now asks the upstream for it.
    Mine,
    /// Another instance is asking; wait for its answer.
    Theirs,
}

/// The verdict store.
#[derive(Clone)]
pub enum Store {
    Sqlite(Arc<Cache>),
    Redis(RedisStore),
}

/// A Redis-backed store (cheap to clone: the connection manager multiplexes one connection).
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    /// The URL without any password, for messages.
    shown: Arc<str>,
    ttls: Ttls,
    claim_ttl: Duration,
    /// Written as the claim's value, to tell instances apart when debugging.
    instance: Arc<str>,
}

/// The stored form of an answer. Short names: a gateway holds millions of these.
#[derive(Serialize, Deserialize)]
struct Stored {
    c: i64,
    t: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    d: Option<Box<str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    e: Option<Box<[EngineResult]>>,
}

impl Stored {
    fn encode(a: &Answer) -> Vec<u8> {
        serde_json::to_vec(&Stored {
            c: a.scan_result_i,
            t: a.total_detected_avs,
            d: a.data_id.clone(),
            e: a.details.clone(),
        })
        .unwrap_or_default()
    }

    fn decode(bytes: &[u8]) -> Option<Answer> {
        let s: Stored = serde_json::from_slice(bytes).ok()?;
        Some(Answer {
            scan_result_i: s.c,
            total_detected_avs: s.t,
            data_id: s.d,
            details: s.e,
        })
    }
}

fn verdict_key(d: &Digest) -> String {
    let mut k = String::with_capacity(KEY_PREFIX.len() + 8 + 64);
    k.push_str(KEY_PREFIX);
    k.push_str(d.algo().name());
    k.push(':');
    push_hex_lower(&mut k, d.as_bytes());
    k
}

fn claim_key(d: &Digest) -> String {
    let mut k = verdict_key(d);
    k.insert_str(KEY_PREFIX.len(), "claim:");
    k
}

/// A store URL with any password hidden.
fn redacted(spec: &str) -> String {
    match url::Url::parse(spec) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("REDACTED"));
            }
            u.to_string()
        }
        Err(_) => "redis://[unparsable]".into(),
    }
}

impl Store {
    /// Keep a SQLite store bounded: prune it once in a while (see [`Cache::maintain`]). Redis
    /// expires its keys by itself. Runs until the process ends.
    pub async fn maintain_forever(self) {
        let Store::Sqlite(cache) = self else { return };
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tick.tick().await;
            let c = Arc::clone(&cache);
            let done = tokio::task::spawn_blocking(move || {
                c.maintain(SystemTime::now(), Duration::from_secs(2))
            })
            .await;
            match done {
                Ok(Ok(m)) if m.pruned => tracing::info!(
                    "pruned the store: {} expired verdicts deleted{}",
                    m.verdicts_deleted,
                    if m.complete { "" } else { " (more next hour)" }
                ),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!("pruning the store failed: {e}"),
                Err(e) => tracing::warn!("pruning the store stopped: {e}"),
            }
        }
    }

    /// Open the store named by `spec`. Redis is connected lazily: a gateway whose Redis is
    /// not up yet starts, answers 503, and serves as soon as Redis is there.
    pub fn open(spec: &str, ttls: Ttls, claim_ttl: Duration) -> Result<Store, StoreError> {
        if let Some(path) = spec.strip_prefix("sqlite:") {
            if path.is_empty() {
                return Err(StoreError::Spec(spec.into(), "sqlite: needs a path".into()));
            }
            let (cache, _note) = Cache::open(path).map_err(|source| StoreError::Open {
                spec: spec.into(),
                source: Box::new(source),
            })?;
            return Ok(Store::Sqlite(Arc::new(cache.with_ttls(ttls))));
        }
        if spec.starts_with("redis://") || spec.starts_with("rediss://") {
            let shown: Arc<str> = Arc::from(redacted(spec));
            let client = redis::Client::open(spec)
                .map_err(|e| StoreError::Spec(shown.to_string(), e.to_string()))?;
            let cfg = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(Duration::from_secs(2)))
                .set_response_timeout(Some(Duration::from_secs(3)))
                .set_number_of_retries(2)
                .set_min_delay(Duration::from_millis(50))
                .set_max_delay(Duration::from_millis(500));
            let conn = ConnectionManager::new_lazy_with_config(client, cfg)
                .map_err(|e| StoreError::Spec(shown.to_string(), e.to_string()))?;
            let host = crate::report::ecs::host_name().unwrap_or_else(|| "localhost".into());
            let instance = format!("{host}:{}", std::process::id());
            return Ok(Store::Redis(RedisStore {
                conn,
                shown,
                ttls,
                claim_ttl,
                instance: Arc::from(instance),
            }));
        }
        Err(StoreError::Spec(
            redacted(spec),
            "use sqlite:PATH, redis://HOST:PORT/DB or rediss://HOST:PORT/DB".into(),
        ))
    }

    /// The store's name for messages (never with a password).
    pub fn describe(&self) -> String {
        match self {
            Store::Sqlite(c) => format!("sqlite:{}", c.path().display()),
            Store::Redis(r) => r.shown.to_string(),
        }
    }

    /// `true` when several gateway instances can share this store.
    pub fn is_shared(&self) -> bool {
        matches!(self, Store::Redis(_))
    }

    /// Cached answers (not expired) for `digests`, in the same order.
    pub async fn get(&self, digests: &[Digest]) -> Result<Vec<Option<Answer>>, StoreError> {
        let started = Instant::now();
        let out = match self {
            Store::Sqlite(cache) => self.sqlite_get(cache, digests).await,
            Store::Redis(r) => r.get(digests).await,
        };
        observe("get", started, &out);
        out
    }

    /// The SQLite cache's answers for `digests`, in order (on the blocking pool).
    async fn sqlite_get(
        &self,
        cache: &Arc<Cache>,
        digests: &[Digest],
    ) -> Result<Vec<Option<Answer>>, StoreError> {
        let cache = Arc::clone(cache);
        let ds = digests.to_vec();
        let found = blocking(&self.describe(), move || {
            cache.get_verdicts(&ds, SystemTime::now())
        })
        .await?;
        Ok(digests.iter().map(|d| found.get(d).cloned()).collect())
    }

    /// Claim the right to ask the upstream for each digest. Without a shared store every
    /// digest is `Mine` (the instance's own in-flight table already coalesces).
    pub async fn claim(&self, digests: &[Digest]) -> Result<Vec<Claim>, StoreError> {
        let started = Instant::now();
        let out = match self {
            // One instance: its in-flight table coalesces; re-reading catches an answer
            // stored since this request's first read (else it would be asked twice).
            Store::Sqlite(cache) => Ok(self
                .sqlite_get(cache, digests)
                .await?
                .into_iter()
                .map(|a| a.map_or(Claim::Mine, Claim::Answered))
                .collect()),
            Store::Redis(r) => r.claim(digests).await,
        };
        observe("claim", started, &out);
        out
    }

    /// Store answers (those whose verdict has a TTL) and drop this instance's claims on
    /// `released` (digests whose lookup failed, so that another instance may try).
    pub async fn put(
        &self,
        answers: &[(Digest, Answer)],
        released: &[Digest],
    ) -> Result<(), StoreError> {
        let started = Instant::now();
        let out = match self {
            Store::Sqlite(cache) => {
                if answers.is_empty() {
                    return Ok(());
                }
                let cache = Arc::clone(cache);
                let rows = answers.to_vec();
                blocking(&self.describe(), move || {
                    cache.put_verdicts(&rows, SystemTime::now())
                })
                .await
                .map(|_| ())
            }
            Store::Redis(r) => r.put(answers, released).await,
        };
        observe("put", started, &out);
        out
    }

    /// Count one request of `token_name` against `per_minute` in the current calendar minute,
    /// shared by every instance using this Redis. `Some(wait)` when over the limit.
    /// Only for a shared store: a single instance limits in memory.
    pub async fn count_request(
        &self,
        token_name: &str,
        per_minute: u32,
    ) -> Result<Option<Duration>, StoreError> {
        let Store::Redis(r) = self else {
            return Ok(None);
        };
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let key = format!("{KEY_PREFIX}rate:{}:{}", token_name, now / 60);
        let mut c = r.conn.clone();
        let (count,): (u64,) = redis::pipe()
            .cmd("INCR")
            .arg(&key)
            .cmd("EXPIRE")
            .arg(&key)
            .arg(120)
            .ignore()
            .query_async(&mut c)
            .await
            .map_err(|e| r.err("counting a client request", &e))?;
        Ok((count > u64::from(per_minute)).then(|| Duration::from_secs(60 - now % 60)))
    }

    /// Is the store reachable?
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(_) => Ok(()),
            Store::Redis(r) => {
                let mut c = r.conn.clone();
                redis::cmd("PING")
                    .query_async::<String>(&mut c)
                    .await
                    .map(|_| ())
                    .map_err(|e| r.err("PING", &e))
            }
        }
    }
}

fn observe<T>(op: &'static str, started: Instant, out: &Result<T, StoreError>) {
    metrics::histogram!("hashsweep_gateway_store_seconds", "op" => op)
        .record(started.elapsed().as_secs_f64());
    if out.is_err() {
        metrics::counter!("hashsweep_gateway_store_errors_total", "op" => op).increment(1);
    }
}

async fn blocking<T: Send + 'static>(
    store: &str,
    f: impl FnOnce() -> Result<T, crate::cache::CacheError> + Send + 'static,
) -> Result<T, StoreError> {
    let unavailable = |what: String| StoreError::Unavailable {
        store: store.to_string(),
        what,
    };
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| unavailable(e.to_string()))?
        .map_err(|e| unavailable(crate::ErrorChain(&e).to_string()))
}

impl RedisStore {
    fn err(&self, what: &str, e: &redis::RedisError) -> StoreError {
        StoreError::Unavailable {
            store: self.shown.to_string(),
            what: format!("{what}: {e}"),
        }
    }

    fn ttl_secs(&self, a: &Answer) -> Option<u64> {
        self.ttls
            .for_verdict(&a.verdict())
            .map(|t| t.as_secs().max(1))
    }

    async fn get(&self, digests: &[Digest]) -> Result<Vec<Option<Answer>>, StoreError> {
        if digests.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = digests.iter().map(verdict_key).collect();
        let mut c = self.conn.clone();
        let raw: Vec<Option<Vec<u8>>> = redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut c)
            .await
            .map_err(|e| self.err("MGET", &e))?;
        if raw.len() != digests.len() {
            return Err(StoreError::Unavailable {
                store: self.shown.to_string(),
                what: format!("MGET answered {} values for {} keys", raw.len(), keys.len()),
            });
        }
        // A value that does not decode is treated as absent (it will be overwritten).
        Ok(raw
            .into_iter()
            .map(|v| v.and_then(|b| Stored::decode(&b)))
            .collect())
    }

    async fn claim(&self, digests: &[Digest]) -> Result<Vec<Claim>, StoreError> {
        if digests.is_empty() {
            return Ok(Vec::new());
        }
        // Claim first, then read: an owner writes the answer before it drops its claim, so
        // whoever wins a claim after that also sees the answer.
        let mut pipe = redis::pipe();
        for d in digests {
            pipe.cmd("SET")
                .arg(claim_key(d))
                .arg(&*self.instance)
                .arg("NX")
                .arg("EX")
                .arg(self.claim_ttl.as_secs().max(1))
                .cmd("GET")
                .arg(verdict_key(d));
        }
        let mut c = self.conn.clone();
        let raw: Vec<redis::Value> = pipe
            .query_async(&mut c)
            .await
            .map_err(|e| self.err("claim", &e))?;
        if raw.len() != 2 * digests.len() {
            return Err(StoreError::Unavailable {
                store: self.shown.to_string(),
                what: format!("claim pipeline answered {} replies", raw.len()),
            });
        }
        let mut needless = Vec::new();
        let claims = raw
            .chunks_exact(2)
            .zip(digests)
            .map(|(pair, d)| {
                let answer = match &pair[1] {
                    redis::Value::BulkString(b) => Stored::decode(b),
                    _ => None,
                };
                let won = matches!(pair[0], redis::Value::Okay);
                match answer {
                    Some(a) => {
                        if won {
                            needless.push(*d);
                        }
                        Claim::Answered(a)
                    }
                    None if won => Claim::Mine,
                    None => Claim::Theirs,
                }
            })
            .collect();
        // Claims won on digests that turned out to be answered already: give them back.
        self.release(&needless).await?;
        Ok(claims)
    }

    /// Drop this instance's claims on `digests` (only those it still holds: a claim that
    /// lapsed and was taken by another instance is left alone).
    async fn release(&self, digests: &[Digest]) -> Result<(), StoreError> {
        if digests.is_empty() {
            return Ok(());
        }
        static RELEASE: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
            redis::Script::new(
                "local n = 0 \
                 for _, k in ipairs(KEYS) do \
                   if redis.call('GET', k) == ARGV[1] then n = n + redis.call('DEL', k) end \
                 end \
                 return n",
            )
        });
        let mut inv = RELEASE.prepare_invoke();
        for d in digests {
            inv.key(claim_key(d));
        }
        inv.arg(&*self.instance);
        let mut c = self.conn.clone();
        inv.invoke_async::<i64>(&mut c)
            .await
            .map(|_| ())
            .map_err(|e| self.err("releasing claims", &e))
    }

    async fn put(
        &self,
        answers: &[(Digest, Answer)],
        released: &[Digest],
    ) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        let mut n = 0usize;
        for (d, a) in answers {
            if let Some(ttl) = self.ttl_secs(a) {
                pipe.cmd("SET")
                    .arg(verdict_key(d))
                    .arg(Stored::encode(a))
                    .arg("EX")
                    .arg(ttl)
                    .ignore();
                n += 1;
            }
        }
        if n > 0 {
            let mut c = self.conn.clone();
            pipe.query_async::<()>(&mut c)
                .await
                .map_err(|e| self.err("writing answers", &e))?;
        }
        // After the answers: see `claim`.
        let mut done: Vec<Digest> = answers.iter().map(|(d, _)| *d).collect();
        done.extend_from_slice(released);
        self.release(&done).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(code: i64, total: i64, id: Option<&str>) -> Answer {
        Answer {
            scan_result_i: code,
            total_detected_avs: total,
            data_id: id.map(Box::from),
            details: None,
        }
    }

    #[test]
    fn stored_answers_round_trip_with_and_without_details() {
        let mut a = answer(1, 33, Some("abc\"def"));
        assert_eq!(Stored::decode(&Stored::encode(&a)), Some(a.clone()));
        a.details = Some(Box::new([EngineResult {
            engine: "X".into(),
            threat_found: "EICAR".into(),
            scan_result_i: Some(1),
            def_time: None,
        }]));
        assert_eq!(Stored::decode(&Stored::encode(&a)), Some(a));
        let unknown = answer(5, -1, None);
        let bytes = Stored::encode(&unknown);
        assert!(bytes.len() < 20, "{}", String::from_utf8_lossy(&bytes));
        assert_eq!(Stored::decode(&bytes), Some(unknown));
        assert_eq!(Stored::decode(b"not json"), None);
    }

    #[test]
    fn keys_name_the_algorithm_and_claims_live_apart() {
        let d = Digest::from_hex(&"ab".repeat(32)).unwrap();
        assert_eq!(
            verdict_key(&d),
            format!("hashsweep:v1:sha256:{}", "ab".repeat(32))
        );
        assert_eq!(
            claim_key(&d),
            format!("hashsweep:v1:claim:sha256:{}", "ab".repeat(32))
        );
    }

    #[test]
    fn store_specs_are_checked_and_passwords_never_shown() {
        let e = Store::open("memcached://x", Ttls::default(), Duration::from_secs(30))
            .err()
            .unwrap();
        assert!(e.to_string().contains("redis://HOST"), "{e}");
        assert_eq!(
            redacted("redis://:hunter2secret@127.0.0.1:6379/0"),
            "redis://:REDACTED@127.0.0.1:6379/0"
        );
        assert!(matches!(
            Store::open("sqlite:", Ttls::default(), Duration::from_secs(30)),
            Err(StoreError::Spec(..))
        ));
    }
}
