//! The gateway's verdict store: where answers are shared between requests, endpoints and
//! gateway instances.
//!
//! Three kinds, chosen by `--store`: `sqlite:PATH` (the same verdict cache `scan` uses; one
//! instance), `redis://HOST:PORT/DB` / `rediss://…` (shared by every instance behind a load
//! balancer) and `redis-cluster://HOST:PORT[,HOST:PORT...]` / `rediss-cluster://…` (the same
//! over a Redis Cluster: see [`super::cluster`] for how work is cut per node; the rules below
//! hold unchanged, keys carry a hash tag so that a digest's claim and verdict share a slot). Redis is used through the `redis` crate's connection manager, which reconnects on
//! its own: a whole request's keys in one `MGET`, answers written back in one pipeline of
//! `SET … EX ttl`, and a short `SET NX EX` claim per digest so that two instances never ask the
//! upstream for the same digest at once. TTLs come from [`Ttls`]; errors are never stored.
//!
//! The connection manager reconnects only after network errors, so any failed Redis call also
//! marks the connection suspect: a repair task ([`Store::maintain_forever`]) builds a fresh
//! connection, probes it with `PING`, and swaps it in once that answers (garbage answers, an
//! `AUTH` refused, a desynchronised reply stream: all recover within a second or two of Redis
//! being healthy).
//!
//! With `--prevalence` the request's read also records the asking host for each digest, in the
//! same pipeline (one `EVALSHA` more on one Redis, one per digest in its node's pipeline on a
//! cluster): see [`super::prevalence`]. A SQLite store refuses it.
//!
//! With a [`StoreKey`] (`--store-key-file`) every stored verdict carries an HMAC-SHA-256 over
//! its key and value, and the value its expiry; one whose tag does not match is a miss (asked
//! upstream again), counted in `hashsweep_gateway_store_forged_total`, never served, and one
//! past its signed expiry (or without one) is a miss too: a copy replayed later is not served.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use hmac::{KeyInit as _, Mac as _};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::{Deserialize, Serialize};

use super::cluster::{ClusterLink, Unit};
use super::prevalence::{self, Prevalence};
use hashsweep_cache::{Cache, Ttls};
use hashsweep_core::digest::{Digest, push_hex_lower};
use hashsweep_lookup::{Answer, EngineResult};

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
        source: Box<hashsweep_cache::CacheError>,
    },
    #[error("cannot read the store key file {path}")]
    KeyFile {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the store key file {0}: {1}")]
    BadKey(std::path::PathBuf, &'static str),
}

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

    fn tag(&self, key: &str, value: &[u8]) -> [u8; TAG] {
        let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        m.update(&(key.len() as u64).to_be_bytes());
        m.update(key.as_bytes());
        m.update(value);
        m.finalize().into_bytes().into()
    }

    /// `value` signed for `key`: the tag, then the value.
    fn seal(&self, key: &str, value: Vec<u8>) -> Vec<u8> {
        let mut out = Vec::with_capacity(TAG + value.len());
        out.extend_from_slice(&self.tag(key, &value));
        out.extend_from_slice(&value);
        out
    }

    /// The value of a sealed `stored`, if its tag is right for `key` (checked in constant time).
    fn open<'a>(&self, key: &str, stored: &'a [u8]) -> Option<&'a [u8]> {
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
    backend: Backend,
    /// Signs and checks stored verdicts.
    key: Option<StoreKey>,
    /// The URL without any password, for messages.
    shown: Arc<str>,
    ttls: Ttls,
    claim_ttl: Duration,
    /// Written as the claim's value, to tell instances apart when debugging.
    instance: Arc<str>,
    /// `--prevalence`: record which hosts ask for each digest, kept this long.
    prevalence: Option<Duration>,
    /// Failed recordings, logged sparsely (at `maxmemory` every request fails one).
    unrecorded: Arc<Sparse>,
}

/// Per digest of a read, how many hosts hold it (`None` where recording it failed); `None`
/// as a whole without `--prevalence`.
pub type HostCounts = Option<Vec<Option<u64>>>;

/// A warning that may repeat at request rate: logged at most once per [`Sparse::EVERY`],
/// saying how many were held back.
#[derive(Default)]
struct Sparse {
    last: std::sync::Mutex<Option<Instant>>,
    held: std::sync::atomic::AtomicU64,
}

impl Sparse {
    const EVERY: Duration = Duration::from_secs(10);

    fn warn(&self, e: &dyn std::fmt::Display) {
        let mut last = hashsweep_core::sync::lock(&self.last);
        if last.is_some_and(|t| t.elapsed() < Self::EVERY) {
            self.held.fetch_add(1, Ordering::Relaxed);
            return;
        }
        *last = Some(Instant::now());
        let held = self.held.swap(0, Ordering::Relaxed);
        tracing::warn!(
            "recording prevalence failed; those host counts are unknown, the verdicts are \
             served ({held} more since the last warning): {e}"
        );
    }
}

/// One Redis, or a Redis Cluster.
#[derive(Clone)]
enum Backend {
    Single(Arc<Link>),
    Cluster(Arc<ClusterLink>),
}

/// The connection in use and what is needed to build a new one.
struct Link {
    current: std::sync::Mutex<ConnectionManager>,
    client: redis::Client,
    cfg: ConnectionManagerConfig,
    /// A call failed since the connection was last known good: rebuild it.
    suspect: AtomicBool,
    wake: tokio::sync::Notify,
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
    /// When the value expires (unix seconds); written when values are signed, so that a copy
    /// replayed after its `EX` is not served again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    x: Option<u64>,
}

impl Stored {
    fn encode(a: &Answer, expires: Option<u64>) -> Vec<u8> {
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
    fn decode(bytes: &[u8]) -> Option<(Answer, Option<u64>)> {
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
enum Unserved {
    /// It does not decode.
    Garbled,
    /// Its signature is not right for its key.
    Forged,
    /// Signed, but past its expiry, or without one (written before values carried it).
    Expired,
}

/// The answer in `stored` under `key`, read at `now` (unix seconds): with a store key it must
/// be signed for `key` and not past its expiry.
fn unsealed(
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

/// Seconds since the Unix epoch.
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

fn verdict_key(d: &Digest) -> String {
    digest_key(d, "", false)
}

fn claim_key(d: &Digest) -> String {
    digest_key(d, "claim:", false)
}

/// The kinds of a digest's two prevalence keys: the names set and the count (HyperLogLog).
const HOST_NAMES: &str = "hosts:";
const HOST_COUNT: &str = "hostcount:";

/// The prevalence script (see [`prevalence::RECORD`]); sent by its SHA-1, loaded on `NOSCRIPT`.
static RECORD: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(prevalence::RECORD));

fn is_noscript(e: &redis::RedisError) -> bool {
    e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
}

/// `hashsweep:v1:{kind}{algo}:{hex}`; `tagged` (in a cluster) puts the digest's bucket (in
/// hex) in a hash tag before the hex, `{2a}abcd…`: a digest's claim, verdict and prevalence keys
/// share a slot (and a node, and a pipeline), and so do all the digests of a bucket, so one
/// `MGET` reads a bucket's verdicts (a 1000-digest request is 64 commands, not 1000). The cost:
/// only [`BUCKETS`] slots hold data, so a cluster spreads over at most that many masters, and a
/// reshard moves data in 1/64 parts. Fewer buckets, fewer commands: cached throughput on three
/// masters against one Redis was 0.55 with 256 buckets, 0.56 with 128, 0.64 to 0.66 with 64 and
/// 0.70 with 32 (where the three masters held 8720, 5668 and 5612 keys of 20 000).
fn digest_key(d: &Digest, kind: &str, tagged: bool) -> String {
    let mut k = String::with_capacity(KEY_PREFIX.len() + kind.len() + 10 + 4 + 64);
    k.push_str(KEY_PREFIX);
    k.push_str(kind);
    k.push_str(d.algo().name());
    k.push(':');
    if tagged {
        k.push('{');
        push_hex_lower(&mut k, &[bucket(d)]);
        k.push('}');
    }
    push_hex_lower(&mut k, d.as_bytes());
    k
}

/// Hash-tag buckets of a cluster's keys (see [`digest_key`]).
pub const BUCKETS: usize = 64;

/// A digest's bucket: the top six bits of its first byte.
fn bucket(d: &Digest) -> u8 {
    d.as_bytes().first().copied().unwrap_or(0) >> 2
}

/// A `redis-cluster://` spec with any password hidden (it names several hosts: not a URL).
fn redacted_cluster(spec: &str) -> String {
    let Some((scheme, rest)) = spec.split_once("://") else {
        return "redis-cluster://[unparsable]".into();
    };
    match rest.rsplit_once('@') {
        Some((auth, hosts)) => {
            let user = auth.split_once(':').map_or(auth, |(u, _)| u);
            format!("{scheme}://{user}:REDACTED@{hosts}")
        }
        None => spec.to_string(),
    }
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
    /// Sign stored verdicts with `key` (Redis only: a SQLite store is a local file).
    pub fn signed(self, key: StoreKey) -> Result<Store, StoreError> {
        match self {
            Store::Redis(mut r) => {
                r.key = Some(key);
                Ok(Store::Redis(r))
            }
            Store::Sqlite(c) => Err(StoreError::Spec(
                format!("sqlite:{}", c.path().display()),
                "--store-key-file signs values kept in Redis; a SQLite store is a local file"
                    .into(),
            )),
        }
    }

    /// Record which hosts ask for each digest (`--prevalence`), kept for `ttl` after the last
    /// ask. Redis only: a SQLite store serves one instance, and prevalence is a fleet's.
    pub fn with_prevalence(self, ttl: Duration) -> Result<Store, StoreError> {
        match self {
            Store::Redis(mut r) => {
                r.prevalence = Some(ttl);
                Ok(Store::Redis(r))
            }
            Store::Sqlite(c) => Err(StoreError::Spec(
                format!("sqlite:{}", c.path().display()),
                "--prevalence needs a Redis store (redis://, rediss://, redis-cluster://): \
                 a SQLite store does not record prevalence"
                    .into(),
            )),
        }
    }

    /// `true` with `--prevalence`.
    pub fn records_prevalence(&self) -> bool {
        matches!(self, Store::Redis(r) if r.prevalence.is_some())
    }

    /// Keep the store usable: rebuild a Redis connection that failed (see the module doc);
    /// prune a SQLite store once in a while (see [`Cache::maintain`]; Redis expires its keys
    /// by itself). Runs until the process ends.
    pub async fn maintain_forever(self) {
        let cache = match self {
            Store::Redis(r) => return r.repair_forever().await,
            Store::Sqlite(cache) => cache,
        };
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
    /// not up yet starts, answers 503, and serves as soon as Redis is there. A SQLite store
    /// (the scan cache by default) keeps its answers as `service`'s, the upstream's endpoint,
    /// like a sweep that asked that service itself.
    pub fn open(
        spec: &str,
        ttls: Ttls,
        claim_ttl: Duration,
        service: &str,
    ) -> Result<Store, StoreError> {
        if let Some(path) = spec.strip_prefix("sqlite:") {
            if path.is_empty() {
                return Err(StoreError::Spec(spec.into(), "sqlite: needs a path".into()));
            }
            let (cache, _note) = Cache::open(path).map_err(|source| StoreError::Open {
                spec: spec.into(),
                source: Box::new(source),
            })?;
            return Ok(Store::Sqlite(Arc::new(
                cache.with_ttls(ttls).with_service(service),
            )));
        }
        if spec.starts_with("redis-cluster://") || spec.starts_with("rediss-cluster://") {
            let shown: Arc<str> = Arc::from(redacted_cluster(spec));
            let link =
                ClusterLink::open(spec).map_err(|e| StoreError::Spec(shown.to_string(), e))?;
            return Ok(Store::Redis(RedisStore {
                backend: Backend::Cluster(Arc::new(link)),
                key: None,
                shown,
                ttls,
                claim_ttl,
                instance: Arc::from(instance_name()),
                prevalence: None,
                unrecorded: Arc::default(),
            }));
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
            let conn = ConnectionManager::new_lazy_with_config(client.clone(), cfg.clone())
                .map_err(|e| StoreError::Spec(shown.to_string(), e.to_string()))?;
            return Ok(Store::Redis(RedisStore {
                backend: Backend::Single(Arc::new(Link {
                    current: std::sync::Mutex::new(conn),
                    client,
                    cfg,
                    suspect: AtomicBool::new(false),
                    wake: tokio::sync::Notify::new(),
                })),
                key: None,
                shown,
                ttls,
                claim_ttl,
                instance: Arc::from(instance_name()),
                prevalence: None,
                unrecorded: Arc::default(),
            }));
        }
        Err(StoreError::Spec(
            redacted(spec),
            "use sqlite:PATH, redis://HOST:PORT/DB, rediss://HOST:PORT/DB or redis-cluster://HOST:PORT[,HOST:PORT...]".into(),
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
        Ok(self.get_asked(digests, None).await?.0)
    }

    /// Cached answers for `digests`, in order; with `--prevalence` and `host`, `host` is
    /// recorded as holding each of them, in the same round trip, and each digest's host count
    /// comes back too.
    pub async fn get_asked(
        &self,
        digests: &[Digest],
        host: Option<&str>,
    ) -> Result<(Vec<Option<Answer>>, HostCounts), StoreError> {
        let started = Instant::now();
        let out = match self {
            Store::Sqlite(cache) => self.sqlite_get(cache, digests).await.map(|a| (a, None)),
            Store::Redis(r) => r.get(digests, host).await,
        };
        observe("get", started, &out);
        out
    }

    /// What is recorded of `digests`' prevalence (nothing recorded: 0 hosts), in order.
    pub async fn prevalence(&self, digests: &[Digest]) -> Result<Vec<Prevalence>, StoreError> {
        let started = Instant::now();
        let out = match self {
            Store::Redis(r) if r.prevalence.is_some() => r.prevalence(digests).await,
            _ => Err(StoreError::Unavailable {
                store: self.describe(),
                what: "prevalence is not recorded (serve --prevalence)".into(),
            }),
        };
        observe("prevalence", started, &out);
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
        let now = unix_now();
        let key = format!("{KEY_PREFIX}rate:{}:{}", token_name, now / 60);
        let mut pipe = redis::pipe();
        pipe.cmd("INCR")
            .arg(&key)
            .cmd("EXPIRE")
            .arg(&key)
            .arg(120)
            .ignore();
        let counted: Result<(u64,), _> = match &r.backend {
            Backend::Single(link) => pipe.query_async(&mut link.conn()).await,
            Backend::Cluster(c) => match c.single().await {
                Ok(mut c) => pipe.query_async(&mut c).await,
                Err(e) => Err(e),
            },
        };
        let (count,) = counted.map_err(|e| r.err("counting a client request", &e))?;
        Ok((count > u64::from(per_minute)).then(|| Duration::from_secs(60 - now % 60)))
    }

    /// Take up to `n` of `token_name`'s `per_day` hashes for UTC day `day`, shared by every
    /// instance using this Redis: how many were granted. The count expires after the day.
    /// Only for a shared store: a single instance counts in memory.
    pub async fn take_budget(
        &self,
        token_name: &str,
        day: u64,
        n: u64,
        per_day: u64,
        day_left: Duration,
    ) -> Result<u64, StoreError> {
        let Store::Redis(r) = self else {
            return Ok(n);
        };
        static TAKE: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
            redis::Script::new(
                "local used = tonumber(redis.call('GET', KEYS[1]) or '0') \
                 local take = math.min(tonumber(ARGV[1]), math.max(0, tonumber(ARGV[2]) - used)) \
                 if take > 0 then redis.call('INCRBY', KEYS[1], take) end \
                 redis.call('EXPIRE', KEYS[1], ARGV[3]) \
                 return take",
            )
        });
        let mut inv = TAKE.key(budget_key(token_name, day));
        inv.arg(n).arg(per_day).arg(day_left.as_secs() + 3600);
        let taken = match &r.backend {
            Backend::Single(link) => inv.invoke_async::<u64>(&mut link.conn()).await,
            Backend::Cluster(c) => match c.single().await {
                Ok(mut c) => inv.invoke_async::<u64>(&mut c).await,
                Err(e) => Err(e),
            },
        };
        taken.map_err(|e| r.err("counting a client's budget", &e))
    }

    /// Give back up to `n` of `token_name`'s hashes taken on UTC day `day` (asked, but not
    /// answered): the count drops by `n`, never below 0, and a count already gone stays gone.
    /// Only for a shared store: a single instance counts in memory.
    pub async fn refund_budget(
        &self,
        token_name: &str,
        day: u64,
        n: u64,
    ) -> Result<(), StoreError> {
        let Store::Redis(r) = self else {
            return Ok(());
        };
        static REFUND: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
            redis::Script::new(
                "local used = tonumber(redis.call('GET', KEYS[1]) or '0') \
                 local back = math.min(tonumber(ARGV[1]), used) \
                 if back > 0 then redis.call('DECRBY', KEYS[1], back) end \
                 return back",
            )
        });
        let mut inv = REFUND.key(budget_key(token_name, day));
        inv.arg(n);
        let back = match &r.backend {
            Backend::Single(link) => inv.invoke_async::<u64>(&mut link.conn()).await,
            Backend::Cluster(c) => match c.single().await {
                Ok(mut c) => inv.invoke_async::<u64>(&mut c).await,
                Err(e) => Err(e),
            },
        };
        back.map(|_| ())
            .map_err(|e| r.err("giving back a client's budget", &e))
    }

    /// Is the store reachable?
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(_) => Ok(()),
            Store::Redis(r) => match &r.backend {
                Backend::Single(link) => ping(&mut link.conn()).await,
                Backend::Cluster(c) => c.ping().await,
            }
            .map_err(|e| r.err("PING", &e)),
        }
    }
}

/// The Redis key counting `token_name`'s `--client-budget` on UTC day `day`.
fn budget_key(token_name: &str, day: u64) -> String {
    format!("{KEY_PREFIX}budget:{token_name}:{day}")
}

/// `PING`, and the answer must be `PONG` (anything else is not a Redis we can use).
async fn ping(c: &mut ConnectionManager) -> Result<(), redis::RedisError> {
    let pong: String = redis::cmd("PING").query_async(c).await?;
    if pong == "PONG" {
        Ok(())
    } else {
        Err(redis::RedisError::from((
            redis::ErrorKind::UnexpectedReturnType,
            "PING was not answered PONG",
        )))
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
    f: impl FnOnce() -> Result<T, hashsweep_cache::CacheError> + Send + 'static,
) -> Result<T, StoreError> {
    let unavailable = |what: String| StoreError::Unavailable {
        store: store.to_string(),
        what,
    };
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| unavailable(e.to_string()))?
        .map_err(|e| unavailable(hashsweep_core::ErrorChain(&e).to_string()))
}

/// This instance's name in the claims it writes: host and process.
fn instance_name() -> String {
    let host = hashsweep_report::ecs::host_name().unwrap_or_else(|| "localhost".into());
    format!("{host}:{}", std::process::id())
}

impl Link {
    /// The connection in use (a cheap handle).
    fn conn(&self) -> ConnectionManager {
        hashsweep_core::sync::lock(&self.current).clone()
    }
}

/// The counts of a prevalence script's reply, one per digest (0 for one that is not a count).
fn counts(v: Option<redis::Value>) -> Vec<u64> {
    match v {
        Some(redis::Value::Array(a)) => a
            .iter()
            .map(|v| match v {
                redis::Value::Int(n) => u64::try_from(*n).unwrap_or(0),
                _ => 0,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// The value of a `GET` reply (nil, or not a string: absent).
fn bulk(v: Option<redis::Value>) -> Option<Vec<u8>> {
    match v {
        Some(redis::Value::BulkString(b)) => Some(b),
        _ => None,
    }
}

/// Drops one claim if this instance holds it (one key: for a cluster, where a script's keys
/// must share a slot).
static RELEASE_ONE: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

impl RedisStore {
    /// `true` on a Redis Cluster (keys carry hash tags; work goes one pipeline per node).
    fn tagged(&self) -> bool {
        matches!(self.backend, Backend::Cluster(_))
    }

    fn verdict_key(&self, d: &Digest) -> String {
        digest_key(d, "", self.tagged())
    }

    fn claim_key(&self, d: &Digest) -> String {
        digest_key(d, "claim:", self.tagged())
    }

    fn host_names_key(&self, d: &Digest) -> String {
        digest_key(d, HOST_NAMES, self.tagged())
    }

    fn host_count_key(&self, d: &Digest) -> String {
        digest_key(d, HOST_COUNT, self.tagged())
    }

    /// A call failed: say why, and have the connection rebuilt. A cluster's is kept when the
    /// server answered with an error reply (`WRONGTYPE`, `OOM`, `NOSCRIPT`): the connection
    /// works, and dropping it would fail every request in flight while a new one is made.
    fn err(&self, what: &str, e: &redis::RedisError) -> StoreError {
        if matches!(self.backend, Backend::Cluster(_))
            && matches!(e.kind(), redis::ErrorKind::Server(_))
        {
            return StoreError::Unavailable {
                store: self.shown.to_string(),
                what: format!("{what}: {e}"),
            };
        }
        self.broken(format!("{what}: {e}"))
    }

    fn broken(&self, what: String) -> StoreError {
        // A single node's connection is rebuilt by `repair_forever`; a cluster's is dropped
        // and made again by the next call.
        match &self.backend {
            Backend::Single(link) => {
                if !link.suspect.swap(true, Ordering::AcqRel) {
                    link.wake.notify_one();
                }
            }
            Backend::Cluster(c) => c.reset(),
        }
        StoreError::Unavailable {
            store: self.shown.to_string(),
            what,
        }
    }

    /// Run `units` on the cluster (see [`ClusterLink::run`]).
    async fn cluster_run(
        &self,
        c: &ClusterLink,
        what: &str,
        units: Vec<Unit>,
    ) -> Result<Vec<super::cluster::Replies>, StoreError> {
        let n = units.len();
        let out = c.run(units).await.map_err(|e| self.err(what, &e))?;
        if out.len() != n {
            return Err(self.broken(format!("{what}: {} replies for {n} keys", out.len())));
        }
        Ok(out)
    }

    /// Rebuild a suspect connection until a fresh one answers `PING`, then use that one.
    async fn repair_forever(self) {
        /// Between two attempts while the store is unhealthy.
        const PAUSE: Duration = Duration::from_millis(500);
        let Backend::Single(link) = &self.backend else {
            return;
        };
        loop {
            if !link.suspect.load(Ordering::Acquire) {
                link.wake.notified().await;
                continue;
            }
            let fresh = tokio::time::timeout(
                Duration::from_secs(3),
                ConnectionManager::new_with_config(link.client.clone(), link.cfg.clone()),
            )
            .await;
            let probed = match fresh {
                Ok(Ok(mut c)) => {
                    match tokio::time::timeout(Duration::from_secs(2), ping(&mut c)).await {
                        Ok(Ok(())) => Ok(c),
                        Ok(Err(e)) => Err(e.to_string()),
                        Err(_) => Err("PING timed out".into()),
                    }
                }
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("connecting timed out".into()),
            };
            match probed {
                Ok(c) => {
                    *hashsweep_core::sync::lock(&link.current) = c;
                    link.suspect.store(false, Ordering::Release);
                    metrics::counter!("hashsweep_gateway_store_reconnects_total").increment(1);
                    tracing::info!(
                        "the verdict store {} answers again: connection rebuilt",
                        self.shown
                    );
                }
                Err(why) => {
                    tracing::debug!("the verdict store {} is not healthy yet: {why}", self.shown);
                    tokio::time::sleep(PAUSE).await;
                }
            }
        }
    }

    /// The stored form of `a` under `key`, kept `ttl_secs` (signed with a store key, its
    /// expiry among the signed bytes).
    fn seal(&self, key: &str, a: &Answer, ttl_secs: u64) -> Vec<u8> {
        match &self.key {
            Some(k) => k.seal(key, Stored::encode(a, Some(unix_now() + ttl_secs))),
            None => Stored::encode(a, None),
        }
    }

    /// The answer stored under `key`; `None` if it does not decode, its signature is wrong
    /// (counted: someone else wrote to our keys) or it is signed but expired.
    fn unseal(&self, key: &str, stored: &[u8]) -> Option<Answer> {
        match unsealed(self.key.as_ref(), key, stored, unix_now()) {
            Ok(a) => Some(a),
            Err(Unserved::Forged) => {
                metrics::counter!("hashsweep_gateway_store_forged_total").increment(1);
                tracing::warn!("a stored verdict's signature does not match: asked upstream again");
                None
            }
            Err(Unserved::Expired) => {
                tracing::debug!("a stored verdict is past its signed expiry: asked upstream again");
                None
            }
            Err(Unserved::Garbled) => None,
        }
    }

    fn ttl_secs(&self, a: &Answer) -> Option<u64> {
        self.ttls
            .for_verdict(&a.verdict())
            .map(|t| t.as_secs().max(1))
    }

    /// `EVALSHA` of [`RECORD`] recording `host` for `digests` (their key pairs in order).
    fn record(&self, digests: &[Digest], host: &str, ttl: Duration) -> redis::Cmd {
        let mut c = redis::cmd("EVALSHA");
        c.arg(RECORD.get_hash()).arg(2 * digests.len());
        for d in digests {
            c.arg(self.host_names_key(d)).arg(self.host_count_key(d));
        }
        c.arg(host).arg(ttl.as_secs().max(1)).arg(prevalence::NAMES);
        c
    }

    /// Load [`RECORD`] (after `NOSCRIPT`: a restarted or failed-over Redis has forgotten it).
    async fn load_record(&self) -> Result<(), StoreError> {
        let mut load = redis::cmd("SCRIPT");
        load.arg("LOAD").arg(prevalence::RECORD);
        let loaded = match &self.backend {
            Backend::Single(link) => load.query_async::<String>(&mut link.conn()).await.map(drop),
            Backend::Cluster(c) => c.on_all_masters(load).await,
        };
        loaded.map_err(|e| self.err("loading the prevalence script", &e))
    }

    async fn get(
        &self,
        digests: &[Digest],
        host: Option<&str>,
    ) -> Result<(Vec<Option<Answer>>, HostCounts), StoreError> {
        let record = self.prevalence.zip(host);
        match self.get_once(digests, record).await {
            Err(e) if is_noscript(&e) => {
                self.load_record().await?;
                self.get_once(digests, record)
                    .await
                    .map_err(|e| self.err("MGET", &e))?
            }
            Err(e) => Err(self.err("MGET", &e)),
            Ok(Err(broken)) => Err(broken),
            Ok(Ok(got)) => Ok(got),
        }
    }

    /// One try of [`RedisStore::get`]: a Redis error is returned as is (to see `NOSCRIPT`).
    #[allow(clippy::type_complexity)]
    async fn get_once(
        &self,
        digests: &[Digest],
        record: Option<(Duration, &str)>,
    ) -> Result<Result<(Vec<Option<Answer>>, HostCounts), StoreError>, redis::RedisError> {
        if digests.is_empty() {
            return Ok(Ok((Vec::new(), record.map(|_| Vec::new()))));
        }
        let keys: Vec<String> = digests.iter().map(|d| self.verdict_key(d)).collect();
        let (raw, hosts): (Vec<Option<Vec<u8>>>, HostCounts) = match &self.backend {
            Backend::Single(link) => match record {
                None => (
                    redis::cmd("MGET")
                        .arg(&keys)
                        .query_async(&mut link.conn())
                        .await?,
                    None,
                ),
                Some((ttl, host)) => {
                    // The same round trip: the verdicts, then the hosts recorded.
                    // A failed recording (out of memory, say) does not fail the read.
                    let mut pipe = redis::pipe();
                    pipe.cmd("MGET")
                        .arg(&keys)
                        .add_command(self.record(digests, host, ttl))
                        .ignore_errors();
                    let replies: Vec<redis::Value> = pipe.query_async(&mut link.conn()).await?;
                    let mut replies = replies.into_iter();
                    let raw = match replies.next() {
                        Some(redis::Value::ServerError(e)) => return Err(e.into()),
                        Some(redis::Value::Array(v)) => {
                            v.into_iter().map(|v| bulk(Some(v))).collect()
                        }
                        _ => {
                            return Ok(Err(
                                self.broken("MGET answered something unexpected".into())
                            ));
                        }
                    };
                    let hosts = match self.recorded(replies.next(), digests.len())? {
                        Ok(h) => h,
                        Err(broken) => return Ok(Err(broken)),
                    };
                    (raw, Some(hosts))
                }
            },
            Backend::Cluster(c) => {
                // One unit per bucket (its digests share a slot): an MGET of their verdicts,
                // and the prevalence script for all of them.
                let mut buckets: Vec<Vec<usize>> = vec![Vec::new(); BUCKETS];
                for (i, d) in digests.iter().enumerate() {
                    buckets[usize::from(bucket(d))].push(i);
                }
                buckets.retain(|b| !b.is_empty());
                let units = buckets
                    .iter()
                    .map(|members| {
                        let mut mget = redis::cmd("MGET");
                        for &i in members {
                            mget.arg(&keys[i]);
                        }
                        let mut unit = Unit::new(keys[members[0]].clone(), vec![mget]);
                        if let Some((ttl, host)) = record {
                            let ds: Vec<Digest> = members.iter().map(|&i| digests[i]).collect();
                            unit.cmds.push(self.record(&ds, host, ttl));
                            // A failed recording does not fail the read of the verdicts.
                            unit.best_effort = 1;
                        }
                        unit
                    })
                    .collect();
                let replies = c.run(units).await?;
                if replies.len() != buckets.len() {
                    return Ok(Err(self.broken(format!(
                        "MGET: {} replies for {} buckets",
                        replies.len(),
                        buckets.len()
                    ))));
                }
                let mut raw = vec![None; digests.len()];
                let mut hosts = record.map(|_| vec![None; digests.len()]);
                for (members, r) in buckets.iter().zip(replies) {
                    let mut r = r.into_iter();
                    let values = match r.next() {
                        Some(redis::Value::Array(v)) if v.len() == members.len() => v,
                        _ => {
                            return Ok(Err(
                                self.broken("MGET answered something unexpected".into())
                            ));
                        }
                    };
                    for (&i, v) in members.iter().zip(values) {
                        raw[i] = bulk(Some(v));
                    }
                    if let Some(h) = &mut hosts {
                        let counts = match self.recorded(r.next(), members.len())? {
                            Ok(c) => c,
                            Err(broken) => return Ok(Err(broken)),
                        };
                        for (&i, n) in members.iter().zip(counts) {
                            h[i] = n;
                        }
                    }
                }
                (raw, hosts)
            }
        };
        if raw.len() != digests.len() {
            return Ok(Err(self.broken(format!(
                "MGET answered {} values for {} keys",
                raw.len(),
                keys.len()
            ))));
        }
        // A value that does not decode (or is not signed right) is treated as absent (it will
        // be overwritten).
        let answers = raw
            .into_iter()
            .zip(&keys)
            .map(|(v, k)| v.and_then(|b| self.unseal(k, &b)))
            .collect();
        Ok(Ok((answers, hosts)))
    }

    /// The host counts in the prevalence script's reply for `n` digests. A server error that
    /// is not about routing (out of memory at `maxmemory`, say) leaves them unknown (`None`),
    /// counted and logged, and the verdicts read with them stand; `NOSCRIPT` and routing
    /// errors are returned as errors.
    #[allow(clippy::type_complexity)]
    fn recorded(
        &self,
        reply: Option<redis::Value>,
        n: usize,
    ) -> Result<Result<Vec<Option<u64>>, StoreError>, redis::RedisError> {
        if let Some(redis::Value::ServerError(e)) = reply {
            if !super::cluster::tolerable(&e) {
                return Err(e.into());
            }
            metrics::counter!("hashsweep_gateway_prevalence_unrecorded_total").increment(n as u64);
            self.unrecorded.warn(&e);
            return Ok(Ok(vec![None; n]));
        }
        let counts = counts(reply);
        if counts.len() != n {
            return Ok(Err(self.broken(format!(
                "the prevalence script answered {} counts for {n} digests",
                counts.len()
            ))));
        }
        Ok(Ok(counts.into_iter().map(Some).collect()))
    }

    /// What is recorded of `digests`' prevalence, in order (nothing is recorded by reading).
    async fn prevalence(&self, digests: &[Digest]) -> Result<Vec<Prevalence>, StoreError> {
        if digests.is_empty() {
            return Ok(Vec::new());
        }
        let reads = |d: &Digest| {
            [
                redis::cmd("ZRANGE")
                    .arg(self.host_names_key(d))
                    .arg(0)
                    .arg(-1)
                    .clone(),
                redis::cmd("PFCOUNT").arg(self.host_count_key(d)).clone(),
            ]
        };
        let replies: Vec<Vec<redis::Value>> = match &self.backend {
            Backend::Single(link) => {
                let mut pipe = redis::pipe();
                for d in digests {
                    for c in reads(d) {
                        pipe.add_command(c);
                    }
                }
                let flat: Vec<redis::Value> = pipe
                    .query_async(&mut link.conn())
                    .await
                    .map_err(|e| self.err("reading prevalence", &e))?;
                flat.chunks(2).map(<[_]>::to_vec).collect()
            }
            Backend::Cluster(c) => {
                let units = digests
                    .iter()
                    .map(|d| Unit::new(self.verdict_key(d), reads(d).into()))
                    .collect();
                self.cluster_run(c, "reading prevalence", units).await?
            }
        };
        if replies.len() != digests.len() || replies.iter().any(|r| r.len() != 2) {
            return Err(self.broken("reading prevalence: wrong number of replies".into()));
        }
        Ok(replies
            .into_iter()
            .zip(digests)
            .map(|(r, d)| {
                let mut r = r.into_iter();
                let members = match r.next() {
                    Some(redis::Value::Array(m) | redis::Value::Set(m)) => m
                        .into_iter()
                        .filter_map(|v| bulk(Some(v)))
                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                        .collect(),
                    _ => Vec::new(),
                };
                let counted = match r.next() {
                    Some(redis::Value::Int(n)) => u64::try_from(n).unwrap_or(0),
                    _ => 0,
                };
                prevalence::from_replies(d.to_hex_upper(), members, counted)
            })
            .collect())
    }

    async fn claim(&self, digests: &[Digest]) -> Result<Vec<Claim>, StoreError> {
        if digests.is_empty() {
            return Ok(Vec::new());
        }
        let claim_secs = self.claim_ttl.as_secs().max(1);
        // Claim first, then read: an owner writes the answer before it drops its claim, so
        // whoever wins a claim after that also sees the answer. Per digest: (won, stored).
        let raw: Vec<(bool, Option<Vec<u8>>)> = match &self.backend {
            Backend::Single(link) => {
                let mut pipe = redis::pipe();
                for d in digests {
                    pipe.cmd("SET")
                        .arg(claim_key(d))
                        .arg(&*self.instance)
                        .arg("NX")
                        .arg("EX")
                        .arg(claim_secs)
                        .cmd("GET")
                        .arg(verdict_key(d));
                }
                let raw: Vec<redis::Value> = pipe
                    .query_async(&mut link.conn())
                    .await
                    .map_err(|e| self.err("claim", &e))?;
                if raw.len() != 2 * digests.len() {
                    return Err(
                        self.broken(format!("claim pipeline answered {} replies", raw.len()))
                    );
                }
                let mut raw = raw.into_iter();
                std::iter::from_fn(|| {
                    let won = matches!(raw.next()?, redis::Value::Okay);
                    Some((won, bulk(raw.next())))
                })
                .collect()
            }
            Backend::Cluster(c) => {
                // `SET … NX GET` tells who holds the claim: a unit may be sent twice (see
                // `cluster`), and a claim holding our own name was won by the first sending
                // (this instance's in-flight table lets only one lookup of a digest claim it).
                let units = digests
                    .iter()
                    .map(|d| {
                        let v = self.verdict_key(d);
                        let mut set = redis::cmd("SET");
                        set.arg(self.claim_key(d))
                            .arg(&*self.instance)
                            .arg("NX")
                            .arg("GET")
                            .arg("EX")
                            .arg(claim_secs);
                        let cmds = vec![set, redis::cmd("GET").arg(&v).clone()];
                        Unit::new(v, cmds)
                    })
                    .collect();
                self.cluster_run(c, "claim", units)
                    .await?
                    .into_iter()
                    .map(|r| {
                        let mut v = r.into_iter();
                        let won = match v.next() {
                            Some(redis::Value::Nil) => true,
                            Some(redis::Value::BulkString(holder)) => {
                                holder == self.instance.as_bytes()
                            }
                            _ => false,
                        };
                        (won, bulk(v.next()))
                    })
                    .collect()
            }
        };
        if raw.len() != digests.len() {
            return Err(self.broken(format!("claims answered for {} digests", raw.len())));
        }
        let mut needless = Vec::new();
        let claims = raw
            .into_iter()
            .zip(digests)
            .map(|((won, stored), d)| {
                let answer = stored.and_then(|b| self.unseal(&self.verdict_key(d), &b));
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

    /// `EVAL` of [`RELEASE_ONE`] for `d`'s claim (cluster: one key a command).
    fn release_one(&self, d: &Digest) -> redis::Cmd {
        let mut c = redis::cmd("EVAL");
        c.arg(RELEASE_ONE)
            .arg(1)
            .arg(self.claim_key(d))
            .arg(&*self.instance);
        c
    }

    /// Drop this instance's claims on `digests` (only those it still holds: a claim that
    /// lapsed and was taken by another instance is left alone).
    async fn release(&self, digests: &[Digest]) -> Result<(), StoreError> {
        if digests.is_empty() {
            return Ok(());
        }
        let link = match &self.backend {
            Backend::Single(link) => link,
            Backend::Cluster(c) => {
                let units = digests
                    .iter()
                    .map(|d| Unit::new(self.verdict_key(d), vec![self.release_one(d)]))
                    .collect();
                return self
                    .cluster_run(c, "releasing claims", units)
                    .await
                    .map(|_| ());
            }
        };
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
        inv.invoke_async::<i64>(&mut link.conn())
            .await
            .map(|_| ())
            .map_err(|e| self.err("releasing claims", &e))
    }

    /// `SET key value EX ttl` for `a`, if its verdict is kept at all.
    fn write(&self, d: &Digest, a: &Answer) -> Option<redis::Cmd> {
        let ttl = self.ttl_secs(a)?;
        let key = self.verdict_key(d);
        let value = self.seal(&key, a, ttl);
        let mut c = redis::cmd("SET");
        c.arg(key).arg(value).arg("EX").arg(ttl);
        Some(c)
    }

    async fn put(
        &self,
        answers: &[(Digest, Answer)],
        released: &[Digest],
    ) -> Result<(), StoreError> {
        if let Backend::Cluster(c) = &self.backend {
            // Per digest, on its node in one pipeline: the answer, then the claim dropped.
            let units: Vec<Unit> = answers
                .iter()
                .map(|(d, a)| {
                    let mut cmds: Vec<redis::Cmd> = self.write(d, a).into_iter().collect();
                    cmds.push(self.release_one(d));
                    Unit::new(self.verdict_key(d), cmds)
                })
                .chain(
                    released
                        .iter()
                        .map(|d| Unit::new(self.verdict_key(d), vec![self.release_one(d)])),
                )
                .collect();
            return self
                .cluster_run(c, "writing answers", units)
                .await
                .map(|_| ());
        }
        let mut pipe = redis::pipe();
        let mut n = 0usize;
        for (d, a) in answers {
            if let Some(set) = self.write(d, a) {
                pipe.add_command(set).ignore();
                n += 1;
            }
        }
        if n > 0
            && let Backend::Single(link) = &self.backend
        {
            pipe.query_async::<()>(&mut link.conn())
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
            hosts: None,
        }
    }

    #[test]
    fn stored_answers_round_trip_with_and_without_details() {
        let mut a = answer(1, 33, Some("abc\"def"));
        assert_eq!(
            Stored::decode(&Stored::encode(&a, None)),
            Some((a.clone(), None))
        );
        a.details = Some(Box::new([EngineResult {
            engine: "X".into(),
            threat_found: "EICAR".into(),
            scan_result_i: Some(1),
            def_time: None,
        }]));
        assert_eq!(
            Stored::decode(&Stored::encode(&a, Some(7))),
            Some((a, Some(7)))
        );
        let unknown = answer(5, -1, None);
        let bytes = Stored::encode(&unknown, None);
        assert!(bytes.len() < 20, "{}", String::from_utf8_lossy(&bytes));
        assert_eq!(Stored::decode(&bytes), Some((unknown, None)));
        assert_eq!(Stored::decode(b"not json"), None);
    }

    #[test]
    fn a_signed_value_opens_only_under_its_key_and_with_its_tag() {
        let k = StoreKey::new(&[7u8; 32]).unwrap();
        let other = StoreKey::new(&[8u8; 32]).unwrap();
        let a = Stored::encode(&answer(1, 30, Some("x")), Some(100));
        let sealed = k.seal("hashsweep:v1:sha256:ab", a.clone());
        assert_eq!(k.open("hashsweep:v1:sha256:ab", &sealed), Some(&a[..]));
        assert_eq!(k.open("hashsweep:v1:sha256:cd", &sealed), None);
        assert_eq!(other.open("hashsweep:v1:sha256:ab", &sealed), None);
        assert_eq!(k.open("hashsweep:v1:sha256:ab", &a), None);
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert_eq!(k.open("hashsweep:v1:sha256:ab", &tampered), None);
        assert!(StoreKey::new(&[1u8; 31]).is_none());
        assert_eq!(format!("{k:?}"), "StoreKey([hidden])");
    }

    #[test]
    fn a_signed_value_is_served_only_before_its_signed_expiry() {
        let k = StoreKey::new(&[7u8; 32]).unwrap();
        let key = "hashsweep:v1:sha256:ab";
        let a = answer(1, 30, None);
        let sealed = k.seal(key, Stored::encode(&a, Some(100)));
        assert_eq!(unsealed(Some(&k), key, &sealed, 99), Ok(a.clone()));
        // A copy replayed after its expiry.
        assert_eq!(
            unsealed(Some(&k), key, &sealed, 100),
            Err(Unserved::Expired)
        );
        // Signed before values carried an expiry: asked again once.
        let old = k.seal(key, Stored::encode(&a, None));
        assert_eq!(unsealed(Some(&k), key, &old, 0), Err(Unserved::Expired));
        assert_eq!(
            unsealed(Some(&k), "hashsweep:v1:sha256:cd", &sealed, 0),
            Err(Unserved::Forged)
        );
        // Unsigned values carry no expiry (Redis's EX is all there is).
        let plain = Stored::encode(&a, None);
        assert_eq!(unsealed(None, key, &plain, u64::MAX), Ok(a));
        assert_eq!(unsealed(None, key, b"{", 0), Err(Unserved::Garbled));
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
    fn cluster_keys_tag_the_digest_so_claim_and_verdict_share_a_slot() {
        let d = Digest::from_hex(&"cd".repeat(32)).unwrap();
        let v = digest_key(&d, "", true);
        let c = digest_key(&d, "claim:", true);
        // 0xcd >> 2 = 0x33.
        assert_eq!(v, format!("hashsweep:v1:sha256:{{33}}{}", "cd".repeat(32)));
        // Every digest of a bucket (the top six bits of its first byte) shares the slot: one
        // MGET reads them; the next bucket is another slot.
        let slot_of = |hex: String| {
            let d = Digest::from_hex(&hex).unwrap();
            super::super::cluster::slot(digest_key(&d, "", true).as_bytes())
        };
        let here = super::super::cluster::slot(v.as_bytes());
        for first in ["cc", "ce", "cf"] {
            assert_eq!(
                slot_of(format!("{first}{}", "01".repeat(31))),
                here,
                "{first}"
            );
        }
        assert_ne!(slot_of(format!("d0{}", "01".repeat(31))), here);
        assert_eq!(
            super::super::cluster::slot(v.as_bytes()),
            super::super::cluster::slot(c.as_bytes())
        );
        assert_eq!(
            redacted_cluster("redis-cluster://:hunter2secret@h1:7000,h2:7000"),
            "redis-cluster://:REDACTED@h1:7000,h2:7000"
        );
        let s = Store::open(
            "redis-cluster://app:hunter2secret@127.0.0.1:1,127.0.0.1:2",
            Ttls::default(),
            Duration::from_secs(30),
            hashsweep_cache::LEGACY_SERVICE,
        )
        .unwrap();
        assert!(s.is_shared());
        assert!(!s.describe().contains("hunter2"), "{}", s.describe());
    }

    #[test]
    fn store_specs_are_checked_and_passwords_never_shown() {
        let e = Store::open(
            "memcached://x",
            Ttls::default(),
            Duration::from_secs(30),
            hashsweep_cache::LEGACY_SERVICE,
        )
        .err()
        .unwrap();
        assert!(e.to_string().contains("redis://HOST"), "{e}");
        assert_eq!(
            redacted("redis://:hunter2secret@127.0.0.1:6379/0"),
            "redis://:REDACTED@127.0.0.1:6379/0"
        );
        assert!(matches!(
            Store::open(
                "sqlite:",
                Ttls::default(),
                Duration::from_secs(30),
                hashsweep_cache::LEGACY_SERVICE
            ),
            Err(StoreError::Spec(..))
        ));
    }
}
