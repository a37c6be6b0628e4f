//! The uploads' shared state in Redis (`serve --upload-unknown`): per digest, which endpoint
//! is sending the file or which `data_id` the vendor gave it (`hashsweep:v1:upload:…`, taken
//! with `SET NX EX` like a lookup's claim, so one instance and one endpoint upload it); per
//! `data_id`, the digest it scans (`hashsweep:v1:upload-data:…`), so any instance can answer a
//! poll and store the final answer as the digest's. Values are short words, not verdicts: they
//! are not signed (`--store-key-file` signs what is served as a verdict).

use std::time::Duration;

use super::{Backend, KEY_PREFIX, RedisStore, Store, StoreError, digest_key};
use hashsweep_core::digest::Digest;

/// Deletes a key only if it still holds the value this caller wrote.
static RELEASE: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0",
    )
});

impl RedisStore {
    fn upload_key(&self, d: &Digest) -> String {
        digest_key(d, "upload:", self.tagged())
    }

    /// Run one command on the store (a cluster routes it by its key).
    async fn one<T: redis::FromRedisValue>(
        &self,
        what: &str,
        cmd: &redis::Cmd,
    ) -> Result<T, StoreError> {
        let out = match &self.backend {
            Backend::Single(link) => cmd.query_async(&mut link.conn()).await,
            Backend::Cluster(c) => match c.single().await {
                Ok(mut c) => cmd.query_async(&mut c).await,
                Err(e) => Err(e),
            },
        };
        out.map_err(|e| self.err(what, &e))
    }
}

fn data_key(data_id: &str) -> String {
    format!("{KEY_PREFIX}upload-data:{data_id}")
}

impl Store {
    fn redis(&self) -> Result<&RedisStore, StoreError> {
        match self {
            Store::Redis(r) => Ok(r),
            Store::Sqlite(_) => Err(StoreError::Unavailable {
                store: self.describe(),
                what: "upload state is kept in memory for a SQLite store".into(),
            }),
        }
    }

    /// Take `d`'s upload with `value` for `ttl`, unless it is held: `None` when taken, else
    /// what holds it.
    pub async fn upload_take(
        &self,
        d: &Digest,
        value: &str,
        ttl: Duration,
    ) -> Result<Option<String>, StoreError> {
        let r = self.redis()?;
        let key = r.upload_key(d);
        // A holder that lapses between the SET and the GET: try again (twice at most).
        for _ in 0..3 {
            let mut set = redis::cmd("SET");
            set.arg(&key)
                .arg(value)
                .arg("NX")
                .arg("EX")
                .arg(ttl.as_secs().max(1));
            let taken: Option<String> = r.one("taking an upload", &set).await?;
            if taken.is_some() {
                return Ok(None);
            }
            let held: Option<String> = r
                .one("reading an upload's state", redis::cmd("GET").arg(&key))
                .await?;
            if held.is_some() {
                return Ok(held);
            }
        }
        Err(StoreError::Unavailable {
            store: self.describe(),
            what: format!("the upload state of {} keeps changing", d.to_hex()),
        })
    }

    /// `d`'s upload state, if any.
    pub async fn upload_state(&self, d: &Digest) -> Result<Option<String>, StoreError> {
        let r = self.redis()?;
        r.one(
            "reading an upload's state",
            redis::cmd("GET").arg(r.upload_key(d)),
        )
        .await
    }

    /// Set `d`'s upload state to `value` for `ttl`.
    pub async fn upload_set(
        &self,
        d: &Digest,
        value: &str,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let r = self.redis()?;
        let mut set = redis::cmd("SET");
        set.arg(r.upload_key(d))
            .arg(value)
            .arg("EX")
            .arg(ttl.as_secs().max(1));
        r.one::<()>("writing an upload's state", &set).await
    }

    /// Drop `d`'s upload state if it is still `value`.
    pub async fn upload_release(&self, d: &Digest, value: &str) -> Result<(), StoreError> {
        let r = self.redis()?;
        let mut inv = RELEASE.key(r.upload_key(d));
        inv.arg(value);
        let out = match &r.backend {
            Backend::Single(link) => inv.invoke_async::<i64>(&mut link.conn()).await,
            Backend::Cluster(c) => match c.single().await {
                Ok(mut c) => inv.invoke_async::<i64>(&mut c).await,
                Err(e) => Err(e),
            },
        };
        out.map(|_| ())
            .map_err(|e| r.err("releasing an upload", &e))
    }

    /// Remember that `data_id` scans `d`, for `ttl`.
    pub async fn upload_data_set(
        &self,
        data_id: &str,
        d: &Digest,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let r = self.redis()?;
        let mut set = redis::cmd("SET");
        set.arg(data_key(data_id))
            .arg(d.to_hex())
            .arg("EX")
            .arg(ttl.as_secs().max(1));
        r.one::<()>("writing an upload's data_id", &set).await
    }

    /// The digest `data_id` scans, if this gateway uploaded it.
    pub async fn upload_data(&self, data_id: &str) -> Result<Option<Digest>, StoreError> {
        let r = self.redis()?;
        let hex: Option<String> = r
            .one(
                "reading an upload's data_id",
                redis::cmd("GET").arg(data_key(data_id)),
            )
            .await?;
        Ok(hex.as_deref().and_then(Digest::from_hex))
    }
}
