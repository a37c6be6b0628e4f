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

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

mod redis_store;
mod sealed;
mod uploads;

use redis_store::instance_name;
pub use sealed::StoreKey;

use super::cluster::ClusterLink;
use super::prevalence::{self, Prevalence};
use hashsweep_cache::{Cache, Ttls};
use hashsweep_core::digest::{Digest, push_hex_lower};
use hashsweep_lookup::Answer;

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

#[cfg(test)]
mod tests;
