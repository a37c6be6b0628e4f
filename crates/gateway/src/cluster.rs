//! The Redis Cluster transport of the verdict store (`--store redis-cluster://H:P[,H:P...]`).
//!
//! The store's work is a list of [`Unit`]s: the commands of one digest (its claim and its
//! verdict share a slot through a hash tag), run in order. The `redis` crate's async cluster
//! client splits a cross-slot `MGET` into one command per slot and keeps a pipeline within
//! one slot, which at 1000 digests a request would be ~1000 round trips. So units are grouped
//! by the node that owns their slot, from the cluster's slot map (`CLUSTER SLOTS`, read again
//! every few seconds and after any failure), and each node gets one pipeline, all nodes at
//! once: one round trip per node.
//!
//! During a reshard a node's pipeline may hit `MOVED`/`ASK` for some of its keys; the crate
//! would resend the whole pipeline to the other node, which does not own the rest. So when a
//! node's pipeline fails, the map is marked stale and that node's units are run again one
//! command at a time, each routed by its own key, where the crate follows `MOVED` (refreshing
//! its own slot map) and `ASK` (with `ASKING`) exactly. Every command a unit holds is safe to
//! send twice (the crate also resends a whole pipeline after a redirect): writes and releases
//! are idempotent, and a claim is taken with `SET … NX GET`, so one that finds this instance's
//! own name was won by an earlier sending. A failover costs retries, never a wrong answer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{
    MultipleNodeRoutingInfo, ResponsePolicy, Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr,
};
use redis::{Cmd, RedisError, Value};

/// Number of hash slots in a Redis Cluster.
const SLOTS: u16 = 16384;

/// The longest one call to the cluster may take, retries included.
const CALL_LIMIT: Duration = Duration::from_secs(5);

/// How long a slot map is trusted before it is read again.
const MAP_AGE: Duration = Duration::from_secs(5);

/// A failed call drops a connection at least this old (a younger one is kept, so that a burst
/// of failures from before the rebuild does not rebuild it again and again).
const MIN_CONN_AGE: Duration = Duration::from_secs(1);

/// The hash slot of `key` (the part inside the first non-empty `{...}`, if any, as Redis does).
pub fn slot(key: &[u8]) -> u16 {
    let tagged = key.iter().position(|&b| b == b'{').and_then(|open| {
        let rest = &key[open + 1..];
        let close = rest.iter().position(|&b| b == b'}')?;
        (close > 0).then(|| &rest[..close])
    });
    crc16::State::<crc16::XMODEM>::calculate(tagged.unwrap_or(key)) % SLOTS
}

/// The commands for one key (and keys sharing its slot), run in order on its node.
pub struct Unit {
    /// The key whose slot routes the unit.
    pub key: String,
    pub cmds: Vec<Cmd>,
    /// How many of the last `cmds` are best effort: a server error of theirs that says nothing
    /// about routing (see [`tolerable`]: out of memory, a wrong type) is their reply, and the
    /// unit's other replies stand.
    pub best_effort: usize,
}

impl Unit {
    /// A unit whose commands must all succeed.
    pub fn new(key: String, cmds: Vec<Cmd>) -> Unit {
        Unit {
            key,
            cmds,
            best_effort: 0,
        }
    }

    /// The first server error among replies that must succeed (all but the last
    /// `best_effort`, and any whose error is not [`tolerable`]).
    fn fatal<'a>(&self, replies: impl IntoIterator<Item = &'a Value>) -> Option<RedisError> {
        let required = self.cmds.len().saturating_sub(self.best_effort);
        replies.into_iter().enumerate().find_map(|(j, v)| match v {
            Value::ServerError(e) if j < required || !tolerable(e) => {
                Some(RedisError::from(e.clone()))
            }
            _ => None,
        })
    }
}

/// `true` for a server error a best-effort command may answer without failing its request:
/// one that is about the command itself (`OOM` at `maxmemory`, `WRONGTYPE`, a script error),
/// not about where the key lives or whether the node serves (`MOVED`, `ASK`, `TRYAGAIN`,
/// `CLUSTERDOWN`, `READONLY`, `LOADING`, ...), nor `NOSCRIPT`, which the store answers by
/// loading the script.
pub fn tolerable(e: &redis::ServerError) -> bool {
    use redis::ServerErrorKind as K;
    !matches!(
        e.kind(),
        Some(
            K::NoScript
                | K::Moved
                | K::Ask
                | K::TryAgain
                | K::ClusterDown
                | K::CrossSlot
                | K::MasterDown
                | K::ReadOnly
                | K::BusyLoading
        )
    )
}

/// What a unit's commands answered, in order.
pub type Replies = Vec<Value>;

/// Which master serves which slots, as last read.
struct SlotMap {
    /// (first slot, last slot, node index), sorted by first slot.
    ranges: Vec<(u16, u16, usize)>,
    nodes: usize,
    read: Instant,
}

impl SlotMap {
    fn node(&self, slot: u16) -> Option<usize> {
        let i = self.ranges.partition_point(|&(first, _, _)| first <= slot);
        let &(first, last, node) = self.ranges.get(i.checked_sub(1)?)?;
        (first..=last).contains(&slot).then_some(node)
    }
}

/// A cluster connection and the slot map used to group keys by node.
pub struct ClusterLink {
    client: redis::cluster::ClusterClient,
    /// `None` until the cluster first answers (the gateway starts without it) and after a
    /// failed call; with when it was made.
    conn: Mutex<Option<(ClusterConnection, Instant)>>,
    /// Held while the first connection is made.
    connecting: tokio::sync::Mutex<()>,
    map: Mutex<Option<Arc<SlotMap>>>,
}

/// The seeds of a `redis-cluster://` or `rediss-cluster://` spec, as `redis://` URLs.
pub fn seed_urls(spec: &str) -> Result<Vec<String>, String> {
    let (scheme, rest) = if let Some(r) = spec.strip_prefix("redis-cluster://") {
        ("redis", r)
    } else if let Some(r) = spec.strip_prefix("rediss-cluster://") {
        ("rediss", r)
    } else {
        return Err("not a redis-cluster:// URL".into());
    };
    let (auth, hosts) = match rest.rsplit_once('@') {
        Some((a, h)) => (Some(a), h),
        None => (None, rest),
    };
    let hosts = hosts.trim_end_matches('/');
    if hosts.contains('/') {
        return Err(
            "a cluster has no database number: redis-cluster://HOST:PORT[,HOST:PORT...]".into(),
        );
    }
    let urls: Vec<String> = hosts
        .split(',')
        .filter(|h| !h.is_empty())
        .map(|h| match auth {
            Some(a) => format!("{scheme}://{a}@{h}"),
            None => format!("{scheme}://{h}"),
        })
        .collect();
    if urls.is_empty() {
        return Err("name at least one node: redis-cluster://HOST:PORT[,HOST:PORT...]".into());
    }
    Ok(urls)
}

impl ClusterLink {
    /// A link to the cluster whose seeds `spec` names; nothing is connected yet.
    pub fn open(spec: &str) -> Result<ClusterLink, String> {
        let client = redis::cluster::ClusterClientBuilder::new(seed_urls(spec)?)
            .connection_timeout(Duration::from_secs(2))
            .response_timeout(Duration::from_secs(3))
            .retries(3)
            .min_retry_wait(20)
            .max_retry_wait(400)
            .overall_response_timeout(Some(CALL_LIMIT))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(ClusterLink {
            client,
            conn: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
            map: Mutex::new(None),
        })
    }

    /// The connection, made on first use (bounded in time; while one request makes it, the
    /// others fail at once rather than queue behind it).
    async fn conn(&self) -> Result<ClusterConnection, RedisError> {
        if let Some((c, _)) = hashsweep_core::sync::lock(&self.conn).clone() {
            return Ok(c);
        }
        let Ok(_making) = self.connecting.try_lock() else {
            return Err(RedisError::from((
                redis::ErrorKind::Io,
                "connecting to the cluster",
            )));
        };
        if let Some((c, _)) = hashsweep_core::sync::lock(&self.conn).clone() {
            return Ok(c);
        }
        let c = tokio::time::timeout(Duration::from_secs(3), self.client.get_async_connection())
            .await
            .map_err(|_| {
                RedisError::from((redis::ErrorKind::Io, "connecting to the cluster timed out"))
            })??;
        *hashsweep_core::sync::lock(&self.conn) = Some((c.clone(), Instant::now()));
        Ok(c)
    }

    /// A call failed: drop the connection (unless it was just made) so that the next call
    /// makes a fresh one, and read the slot map again. The crate's connection does not always
    /// heal itself: after a reshard under load one was seen to time out every command for
    /// minutes while every node was healthy.
    pub fn reset(&self) {
        let mut held = hashsweep_core::sync::lock(&self.conn);
        if held
            .as_ref()
            .is_some_and(|(_, made)| made.elapsed() >= MIN_CONN_AGE)
        {
            *held = None;
        }
        drop(held);
        self.mark_stale();
    }

    /// `PING` one node (any).
    pub async fn ping(&self) -> Result<(), RedisError> {
        let mut c = self.conn().await?;
        let pong = c
            .route_command(
                redis::cmd("PING"),
                RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
            )
            .await?;
        match pong {
            Value::SimpleString(s) if s == "PONG" => Ok(()),
            _ => Err(RedisError::from((
                redis::ErrorKind::UnexpectedReturnType,
                "PING was not answered PONG",
            ))),
        }
    }

    /// Run `cmd` on every master (`SCRIPT LOAD`): all must succeed.
    pub async fn on_all_masters(&self, cmd: Cmd) -> Result<(), RedisError> {
        let mut c = self.conn().await?;
        let v = c
            .route_command(
                cmd,
                RoutingInfo::MultiNode((
                    MultipleNodeRoutingInfo::AllMasters,
                    Some(ResponsePolicy::AllSucceeded),
                )),
            )
            .await?;
        match v {
            Value::ServerError(e) => Err(RedisError::from(e)),
            _ => Ok(()),
        }
    }

    /// A handle for single-key commands (the crate routes and redirects them).
    pub async fn single(&self) -> Result<ClusterConnection, RedisError> {
        self.conn().await
    }

    /// The slot map, read again when stale or old.
    async fn slot_map(&self, c: &mut ClusterConnection) -> Result<Arc<SlotMap>, RedisError> {
        let held = hashsweep_core::sync::lock(&self.map).clone();
        if let Some(m) = held
            && m.read.elapsed() < MAP_AGE
        {
            return Ok(m);
        }
        let raw = c
            .route_command(
                redis::cmd("CLUSTER").arg("SLOTS").clone(),
                RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
            )
            .await?;
        let map = Arc::new(parse_slots(&raw).ok_or_else(|| {
            RedisError::from((
                redis::ErrorKind::UnexpectedReturnType,
                "CLUSTER SLOTS answered something unexpected",
            ))
        })?);
        *hashsweep_core::sync::lock(&self.map) = Some(Arc::clone(&map));
        Ok(map)
    }

    /// Read the map again before the next use.
    fn mark_stale(&self) {
        *hashsweep_core::sync::lock(&self.map) = None;
    }

    /// Run `units`: one pipeline per node, all nodes at once; the units of a node whose
    /// pipeline failed one command at a time. Replies in the order of `units`.
    ///
    /// Bounded in time: a call that takes longer (the crate's connection wedged, which a
    /// reshard under load has been seen to do) drops the connection; the next call makes a
    /// fresh one.
    pub async fn run(&self, units: Vec<Unit>) -> Result<Vec<Replies>, RedisError> {
        match tokio::time::timeout(CALL_LIMIT * 2, self.run_unbounded(units)).await {
            Ok(out) => out,
            Err(_) => {
                tracing::warn!("the cluster did not answer in time: reconnecting");
                self.reset();
                Err(RedisError::from((
                    redis::ErrorKind::Io,
                    "the cluster did not answer in time",
                )))
            }
        }
    }

    async fn run_unbounded(&self, units: Vec<Unit>) -> Result<Vec<Replies>, RedisError> {
        if units.is_empty() {
            return Ok(Vec::new());
        }
        let mut c = self.conn().await?;
        let map = self.slot_map(&mut c).await?;
        let units: Vec<(u16, Unit)> = units
            .into_iter()
            .map(|u| (slot(u.key.as_bytes()), u))
            .collect();
        // Units whose slot no node serves (per the map) go on their own.
        let mut groups: HashMap<usize, Vec<usize>> = HashMap::new();
        for (i, (s, _)) in units.iter().enumerate() {
            let node = map.node(*s).unwrap_or(map.nodes + i);
            groups.entry(node).or_default().push(i);
        }
        let units = Arc::new(units);
        let mut tasks = tokio::task::JoinSet::new();
        for (_, members) in groups {
            let units = Arc::clone(&units);
            let c = c.clone();
            tasks.spawn(async move {
                let out = node_pipeline(c.clone(), &units, &members).await;
                (members, out)
            });
        }
        let mut out: Vec<Option<Replies>> = (0..units.len()).map(|_| None).collect();
        let mut failed: Vec<usize> = Vec::new();
        while let Some(done) = tasks.join_next().await {
            let (members, got) = done.map_err(|e| {
                RedisError::from((redis::ErrorKind::Io, "a store task stopped", e.to_string()))
            })?;
            match got {
                Ok(replies) => {
                    for (i, r) in members.into_iter().zip(replies) {
                        out[i] = Some(r);
                    }
                }
                Err(e) => {
                    tracing::debug!("a node's pipeline failed, sending its keys one by one: {e}");
                    failed.extend(members);
                }
            }
        }
        if !failed.is_empty() {
            self.mark_stale();
            metrics::counter!("hashsweep_gateway_store_regrouped_total")
                .increment(failed.len() as u64);
            let mut tasks = tokio::task::JoinSet::new();
            for i in failed {
                let units = Arc::clone(&units);
                let c = c.clone();
                tasks.spawn(async move { (i, one_by_one(c, &units[i]).await) });
            }
            while let Some(done) = tasks.join_next().await {
                let (i, got) = done.map_err(|e| {
                    RedisError::from((redis::ErrorKind::Io, "a store task stopped", e.to_string()))
                })?;
                out[i] = Some(got?);
            }
        }
        out.into_iter()
            .map(|r| {
                r.ok_or_else(|| RedisError::from((redis::ErrorKind::Io, "a unit was not answered")))
            })
            .collect()
    }
}

/// The units `members` of `units` in one pipeline to the node serving the first one's slot.
async fn node_pipeline(
    mut c: ClusterConnection,
    units: &[(u16, Unit)],
    members: &[usize],
) -> Result<Vec<Replies>, RedisError> {
    let mut pipe = redis::pipe();
    let mut count = 0;
    for &i in members {
        for cmd in &units[i].1.cmds {
            pipe.add_command(cmd.clone());
            count += 1;
        }
    }
    let route = Route::new(units[members[0]].0, SlotAddr::Master);
    let values = c
        .route_pipeline(pipe, 0, count, SingleNodeRoutingInfo::SpecificNode(route))
        .await?;
    if values.len() != count {
        return Err(RedisError::from((
            redis::ErrorKind::UnexpectedReturnType,
            "a pipeline answered the wrong number of replies",
        )));
    }
    let mut values = values.into_iter();
    let replies: Vec<Replies> = members
        .iter()
        .map(|&i| values.by_ref().take(units[i].1.cmds.len()).collect())
        .collect();
    // Any other server error (a value of the wrong type, out of memory) in a command that must
    // succeed: the request fails.
    for (&i, r) in members.iter().zip(&replies) {
        if let Some(e) = units[i].1.fatal(r) {
            return Err(e);
        }
    }
    Ok(replies)
}

/// A unit's commands one at a time, each routed by the unit's slot (redirects followed).
async fn one_by_one(
    mut c: ClusterConnection,
    (s, unit): &(u16, Unit),
) -> Result<Vec<Value>, RedisError> {
    let mut values = Vec::with_capacity(unit.cmds.len());
    for cmd in &unit.cmds {
        let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::new(
            *s,
            SlotAddr::Master,
        )));
        let v = match c.route_command(cmd.clone(), route).await {
            // The crate returns a command's server error as an error: as a reply it is
            // judged like one in a pipeline.
            Err(e) => Value::ServerError(redis::ServerError::try_from(e)?),
            Ok(v) => v,
        };
        values.push(v);
    }
    match unit.fatal(&values) {
        Some(e) => Err(e),
        None => Ok(values),
    }
}

/// A `CLUSTER SLOTS` reply as a slot map: `[[first, last, [host, port, id...], replicas...]...]`.
fn parse_slots(raw: &Value) -> Option<SlotMap> {
    let Value::Array(entries) = raw else {
        return None;
    };
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut ranges = Vec::new();
    for e in entries {
        let Value::Array(fields) = e else {
            return None;
        };
        let int = |v: &Value| match v {
            Value::Int(n) => u16::try_from(*n).ok(),
            _ => None,
        };
        let first = int(fields.first()?)?;
        let last = int(fields.get(1)?)?;
        let Value::Array(master) = fields.get(2)? else {
            return None;
        };
        let host = match master.first()? {
            Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
            Value::SimpleString(s) => s.clone(),
            _ => return None,
        };
        let port = int(master.get(1)?)?;
        let n = names.len();
        let node = *names.entry(format!("{host}:{port}")).or_insert(n);
        ranges.push((first, last, node));
    }
    ranges.sort_unstable();
    Some(SlotMap {
        ranges,
        nodes: names.len(),
        read: Instant::now(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_follow_the_hash_tag_rule_and_the_reference_values() {
        // From the Redis Cluster specification: CRC16 of "123456789" is 0x31C3.
        assert_eq!(slot(b"123456789"), 0x31C3 % SLOTS);
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"{user1000}.following"), slot(b"user1000"));
        assert_eq!(slot(b"a:{tag}:b"), slot(b"c:{tag}"));
        // An empty tag is no tag: the whole key is hashed.
        assert_eq!(
            slot(b"foo{}{bar}"),
            crc16::State::<crc16::XMODEM>::calculate(b"foo{}{bar}") % SLOTS
        );
    }

    #[test]
    fn a_slot_map_names_the_node_of_each_slot_and_none_for_a_gap() {
        let node = |h: &str, p: i64| {
            Value::Array(vec![
                Value::BulkString(h.as_bytes().to_vec()),
                Value::Int(p),
                Value::BulkString(b"id".to_vec()),
            ])
        };
        let raw = Value::Array(vec![
            Value::Array(vec![
                Value::Int(5461),
                Value::Int(10922),
                node("127.0.0.1", 7001),
            ]),
            Value::Array(vec![
                Value::Int(0),
                Value::Int(5460),
                node("127.0.0.1", 7000),
            ]),
            Value::Array(vec![
                Value::Int(12000),
                Value::Int(16383),
                node("127.0.0.1", 7000),
            ]),
        ]);
        let m = parse_slots(&raw).unwrap();
        assert_eq!(m.nodes, 2);
        assert_eq!(m.node(0), m.node(16383));
        assert_eq!(m.node(5460), m.node(0));
        assert_ne!(m.node(5461), m.node(0));
        assert!(m.node(10922).is_some());
        assert_eq!(m.node(11000), None);
        assert!(parse_slots(&Value::Int(1)).is_none());
    }

    #[test]
    fn cluster_specs_give_one_seed_each_with_the_password() {
        assert_eq!(
            seed_urls("redis-cluster://:pw@10.0.0.1:7000,10.0.0.2:7000/").unwrap(),
            ["redis://:pw@10.0.0.1:7000", "redis://:pw@10.0.0.2:7000"]
        );
        assert_eq!(seed_urls("rediss-cluster://h:1").unwrap(), ["rediss://h:1"]);
        assert!(seed_urls("redis-cluster://h:1/0").is_err());
        assert!(seed_urls("redis-cluster://").is_err());
    }
}
