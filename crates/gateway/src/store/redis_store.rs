//! The Redis side of the store, on one server or a cluster: its keys, the connection and its
//! repair, and each store operation as Redis commands (reads with the prevalence record,
//! claims, releases, writes).

use super::sealed::{Stored, Unserved, unsealed};
use super::{
    BUCKETS, Backend, Claim, HOST_COUNT, HOST_NAMES, HostCounts, Link, RECORD, RedisStore,
    StoreError, bucket, claim_key, digest_key, is_noscript, ping, unix_now, verdict_key,
};
use crate::cluster::{ClusterLink, Unit};
use crate::prevalence::{self, Prevalence};
use hashsweep_core::digest::Digest;
use hashsweep_lookup::Answer;
use redis::aio::ConnectionManager;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// This instance's name in the claims it writes: host and process.
pub(super) fn instance_name() -> String {
    let host = hashsweep_report::ecs::host_name().unwrap_or_else(|| "localhost".into());
    format!("{host}:{}", std::process::id())
}

impl Link {
    /// The connection in use (a cheap handle).
    pub(super) fn conn(&self) -> ConnectionManager {
        hashsweep_core::sync::lock(&self.current).clone()
    }
}

/// The counts of a prevalence script's reply, one per digest (0 for one that is not a count).
pub(super) fn counts(v: Option<redis::Value>) -> Vec<u64> {
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
    pub(super) fn tagged(&self) -> bool {
        matches!(self.backend, Backend::Cluster(_))
    }

    pub(super) fn verdict_key(&self, d: &Digest) -> String {
        digest_key(d, "", self.tagged())
    }

    pub(super) fn claim_key(&self, d: &Digest) -> String {
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
    pub(super) fn err(&self, what: &str, e: &redis::RedisError) -> StoreError {
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

    pub(super) fn broken(&self, what: String) -> StoreError {
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
    ) -> Result<Vec<crate::cluster::Replies>, StoreError> {
        let n = units.len();
        let out = c.run(units).await.map_err(|e| self.err(what, &e))?;
        if out.len() != n {
            return Err(self.broken(format!("{what}: {} replies for {n} keys", out.len())));
        }
        Ok(out)
    }

    /// Rebuild a suspect connection until a fresh one answers `PING`, then use that one.
    pub(super) async fn repair_forever(self) {
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
    pub(super) fn seal(&self, key: &str, a: &Answer, ttl_secs: u64) -> Vec<u8> {
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
    pub(super) fn record(&self, digests: &[Digest], host: &str, ttl: Duration) -> redis::Cmd {
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

    pub(super) async fn get(
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
    pub(super) fn recorded(
        &self,
        reply: Option<redis::Value>,
        n: usize,
    ) -> Result<Result<Vec<Option<u64>>, StoreError>, redis::RedisError> {
        if let Some(redis::Value::ServerError(e)) = reply {
            if !crate::cluster::tolerable(&e) {
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
    pub(super) async fn prevalence(
        &self,
        digests: &[Digest],
    ) -> Result<Vec<Prevalence>, StoreError> {
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

    pub(super) async fn claim(&self, digests: &[Digest]) -> Result<Vec<Claim>, StoreError> {
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
    pub(super) fn write(&self, d: &Digest, a: &Answer) -> Option<redis::Cmd> {
        let ttl = self.ttl_secs(a)?;
        let key = self.verdict_key(d);
        let value = self.seal(&key, a, ttl);
        let mut c = redis::cmd("SET");
        c.arg(key).arg(value).arg("EX").arg(ttl);
        Some(c)
    }

    pub(super) async fn put(
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
