//! Coalescing: every cache miss from every client, asked upstream once.
//!
//! A miss is first looked for in this instance's in-flight table (someone here is already
//! asking: wait for that answer). New digests are claimed in the store ([`Store::claim`]): an
//! answer may have landed meanwhile; a claim held by another instance means waiting for its
//! answer in the store; a won claim puts the digest on the upstream queue. The queue is cut into
//! requests of up to 1000 hashes (a partial one leaves after `batch_wait`), at most
//! `concurrency` in flight, each sent with the same blocking [`HttpClient`] `scan` uses (its
//! retries, 429 handling and quota stop), on tokio's blocking pool. Answers are written to the
//! store before the waiters hear them, so a restarted or second instance finds them there.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_util::task::TaskTracker;

use super::store::{Claim, Store};
use hashsweep_core::digest::Digest;
use hashsweep_core::sync::lock;
use hashsweep_lookup::batch::{LookupBatch, MAX_BATCH};
use hashsweep_lookup::{
    Answer, ClientConfig, HashOutcome, HttpClient, LookupError, ReputationClient,
};

/// Pauses between the tries of storing a batch's answers (the first write and two more).
const PUT_RETRY_PAUSES: [Duration; 2] = [Duration::from_millis(300), Duration::from_millis(1200)];
/// No write of answers is tried again once this long has passed since the first (a store
/// that is down would otherwise hold the waiters for three store timeouts).
const PUT_RETRY_WITHIN: Duration = Duration::from_secs(5);

/// What a waiter learns about one digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Got {
    Answer(Answer),
    /// The upstream lookup failed (the reason is safe to show: the client scrubs the key).
    Failed(LookupError),
    /// The store could not be used: the whole request is answered 503.
    StoreDown(String),
    /// Too many digests already wait for the upstream (`max_pending`): not asked.
    Busy,
}

/// One thing to look up: a digest, with or without per-engine details.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Want {
    pub digest: Digest,
    pub details: bool,
}

/// How the upstream side is run.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub client: ClientConfig,
    pub batch_size: usize,
    pub batch_wait: Duration,
    pub concurrency: usize,
    /// How long to wait for another instance's claimed lookup before asking ourselves.
    pub claim_ttl: Duration,
    /// At most this many digests waiting for the upstream; new misses beyond are refused
    /// (503 with Retry-After) instead of growing a queue nobody could drain in time.
    pub max_pending: usize,
}

/// The upstream clients (one plain, one with details), rebuilt when a spent quota resets.
pub struct Upstream {
    cfg: ClientConfig,
    clients: Mutex<[Arc<HttpClient>; 2]>,
    /// Requests made by clients since replaced, so the metric never goes backwards.
    retired_requests: AtomicU64,
    /// Per client: when it was first seen halted without a known time to try again.
    halted_since: Mutex<[Option<Instant>; 2]>,
    /// After a refused key (401/403: a key fixed upstream, an IP block lifted), try again
    /// after this long: one request, not a stream of them (repeated bad keys block the IP).
    halt_retry: Duration,
}

/// Without a reset time from the service, try again after this long.
const UNKNOWN_RESET: Duration = Duration::from_secs(15 * 60);

/// The default wait before a halted (key refused) upstream is tried again.
pub const HALT_RETRY: Duration = Duration::from_secs(10 * 60);

impl Upstream {
    pub fn new(cfg: ClientConfig) -> Result<Upstream, hashsweep_lookup::http::ClientError> {
        // An upstream that is not up yet when the gateway starts is retried, not halted.
        let cfg = ClientConfig {
            stop_on_wrong_endpoint: false,
            ..cfg
        };
        let plain = HttpClient::new(ClientConfig {
            details: false,
            ..cfg.clone()
        })?;
        let detailed = HttpClient::new(ClientConfig {
            details: true,
            ..cfg.clone()
        })?;
        Ok(Upstream {
            cfg,
            clients: Mutex::new([Arc::new(plain), Arc::new(detailed)]),
            retired_requests: AtomicU64::new(0),
            halted_since: Mutex::new([None, None]),
            halt_retry: HALT_RETRY,
        })
    }

    /// Try a halted upstream again after `d` instead of [`HALT_RETRY`].
    pub fn with_halt_retry(mut self, d: Duration) -> Upstream {
        self.halt_retry = d;
        self
    }

    /// The upstream's endpoint (`{base}/v4/hash`): the service whose answers the store keeps.
    pub fn endpoint(&self) -> String {
        lock(&self.clients)[0].endpoint().to_string()
    }

    fn all(&self) -> [Arc<HttpClient>; 2] {
        lock(&self.clients).clone()
    }

    /// The client to use now. One that stopped (quota spent, key refused) is replaced once
    /// the quota has reset, or after `halt_retry`, so a long-running gateway recovers.
    fn client(&self, details: bool) -> Arc<HttpClient> {
        let i = usize::from(details);
        let mut g = lock(&self.clients);
        if g[i].halted().is_some() {
            let now = Instant::now();
            let mut since = lock(&self.halted_since);
            let first = *since[i].get_or_insert(now);
            let due = match g[i].quota_spent() {
                Some(Some(reset)) => reset <= now,
                Some(None) => now.duration_since(first) >= UNKNOWN_RESET,
                None => now.duration_since(first) >= self.halt_retry,
            };
            if due {
                let cfg = ClientConfig {
                    details,
                    ..self.cfg.clone()
                };
                if let Ok(fresh) = HttpClient::new(cfg) {
                    self.retired_requests
                        .fetch_add(g[i].stats().requests, Ordering::Relaxed);
                    g[i] = Arc::new(fresh);
                    since[i] = None;
                }
            }
        }
        Arc::clone(&g[i])
    }

    /// When the budget the upstream last stated resets, from now.
    pub fn budget_reset_in(&self) -> Option<Duration> {
        let now = std::time::SystemTime::now();
        self.all()
            .iter()
            .filter_map(|c| c.budget()?.resets_at)
            .min()
            .map(|t| t.duration_since(now).unwrap_or_default())
    }

    /// If the daily quota is spent: how long until it resets (best known).
    pub fn quota_reset_in(&self) -> Option<Duration> {
        let now = Instant::now();
        self.all().iter().find_map(|c| {
            c.quota_spent().map(|reset| match reset {
                Some(t) => t.saturating_duration_since(now),
                None => UNKNOWN_RESET,
            })
        })
    }

    /// Why the upstream is not asked any more (key refused, quota spent), if it is not.
    pub fn halted(&self) -> Option<LookupError> {
        self.all().iter().find_map(|c| c.halted())
    }

    pub fn quota_remaining(&self) -> Option<u64> {
        self.all().iter().filter_map(|c| c.quota_remaining()).min()
    }

    fn publish_metrics(&self) {
        let all = self.all();
        let requests: u64 = all.iter().map(|c| c.stats().requests).sum::<u64>()
            + self.retired_requests.load(Ordering::Relaxed);
        metrics::counter!("hashsweep_gateway_upstream_requests_total").absolute(requests);
        let throttled: u64 = all.iter().map(|c| c.stats().throttled).sum();
        metrics::gauge!("hashsweep_gateway_upstream_throttled").set(throttled as f64);
        if let Some(r) = self.quota_remaining() {
            metrics::gauge!("hashsweep_gateway_upstream_quota_remaining").set(r as f64);
        }
        // The key's budget as the service last stated it (limit per day, time to the reset).
        if let Some(b) = all
            .iter()
            .filter_map(|c| c.budget())
            .min_by_key(|b| b.remaining)
        {
            if let Some(l) = b.limit {
                metrics::gauge!("hashsweep_gateway_upstream_budget_limit").set(l as f64);
            }
            if let Some(t) = b.resets_at {
                let left = t
                    .duration_since(std::time::SystemTime::now())
                    .unwrap_or_default();
                metrics::gauge!("hashsweep_gateway_upstream_budget_reset_seconds")
                    .set(left.as_secs_f64());
            }
        }
    }
}

type Waiters = Vec<oneshot::Sender<Got>>;

fn shutting_down() -> LookupError {
    LookupError::Unfinished("the gateway is shutting down".into())
}

/// The in-flight table and the upstream queues.
pub struct Coalescer {
    inflight: Mutex<HashMap<Want, Waiters>>,
    queues: [mpsc::UnboundedSender<Digest>; 2],
    store: Store,
    upstream: Arc<Upstream>,
    claim_ttl: Duration,
    max_pending: usize,
    /// Every task that may hold an upstream answer not yet stored: shutdown waits for them.
    tasks: TaskTracker,
    /// Hashes in requests upstream now: what the budget the service last stated must cover.
    reserved: AtomicU64,
}

impl Coalescer {
    /// Start the batchers (one per details flag) on the current tokio runtime.
    pub fn start(store: Store, upstream: Arc<Upstream>, cfg: &UpstreamConfig) -> Arc<Coalescer> {
        let (plain_tx, plain_rx) = mpsc::unbounded_channel();
        let (detail_tx, detail_rx) = mpsc::unbounded_channel();
        let me = Arc::new(Coalescer {
            inflight: Mutex::new(HashMap::new()),
            queues: [plain_tx, detail_tx],
            store,
            upstream,
            claim_ttl: cfg.claim_ttl,
            max_pending: cfg.max_pending.max(1),
            tasks: TaskTracker::new(),
            reserved: AtomicU64::new(0),
        });
        let permits = Arc::new(Semaphore::new(cfg.concurrency.max(1)));
        for (details, rx) in [(false, plain_rx), (true, detail_rx)] {
            tokio::spawn(run_batcher(
                Arc::downgrade(&me),
                rx,
                details,
                cfg.batch_size.clamp(1, MAX_BATCH),
                cfg.batch_wait,
                Arc::clone(&permits),
            ));
        }
        me
    }

    pub fn upstream(&self) -> &Upstream {
        &self.upstream
    }

    /// Wait (up to `grace`) for lookups still in flight to be stored and answered.
    pub async fn drain(&self, grace: Duration) -> bool {
        self.tasks.close();
        tokio::time::timeout(grace, self.tasks.wait()).await.is_ok()
    }

    /// Look up digests the store did not have. One [`Got`] per digest, in order.
    pub async fn ask(self: &Arc<Self>, digests: &[Digest], details: bool) -> Vec<Got> {
        let mut fresh = Vec::new();
        let mut rxs = Vec::with_capacity(digests.len());
        let mut joined = 0u64;
        let mut busy = 0u64;
        {
            let mut map = lock(&self.inflight);
            for &digest in digests {
                let full = map.len() >= self.max_pending;
                match map.entry(Want { digest, details }) {
                    Entry::Occupied(mut e) => {
                        let (tx, rx) = oneshot::channel();
                        e.get_mut().push(tx);
                        rxs.push(Some(rx));
                        joined += 1;
                    }
                    // Joining a lookup costs nothing; a new one must fit.
                    Entry::Vacant(_) if full => {
                        rxs.push(None);
                        busy += 1;
                    }
                    Entry::Vacant(e) => {
                        let (tx, rx) = oneshot::channel();
                        e.insert(vec![tx]);
                        rxs.push(Some(rx));
                        fresh.push(digest);
                    }
                }
            }
        }
        metrics::counter!("hashsweep_gateway_coalesced_total").increment(joined);
        if busy > 0 {
            metrics::counter!("hashsweep_gateway_refused_busy_total").increment(busy);
        }
        if !fresh.is_empty() {
            // Detached: if this request is dropped (its client went away), the digests it
            // registered must still be asked, or later waiters on them would hang.
            let me = Arc::clone(self);
            self.tasks
                .spawn(async move { me.claim_and_queue(fresh, details).await });
        }
        // Nobody waits forever, whatever happens to the lookup.
        let deadline = tokio::time::Instant::now() + self.claim_ttl * 2 + Duration::from_secs(10);
        let mut out = Vec::with_capacity(rxs.len());
        for rx in rxs {
            let Some(rx) = rx else {
                out.push(Got::Busy);
                continue;
            };
            out.push(match tokio::time::timeout_at(deadline, rx).await {
                Ok(Ok(got)) => got,
                Ok(Err(_)) => Got::Failed(shutting_down()),
                Err(_) => Got::Failed(LookupError::Unfinished(
                    "the upstream lookup did not finish in time".into(),
                )),
            });
        }
        out
    }

    async fn claim_and_queue(self: &Arc<Self>, digests: Vec<Digest>, details: bool) {
        let theirs = self.claim_round(digests, details).await;
        if !theirs.is_empty() {
            let me = Arc::clone(self);
            self.tasks
                .spawn(async move { me.await_others(theirs, details).await });
        }
    }

    /// Claim `digests` once: answered ones are resolved, won ones queued upstream (also when
    /// details are wanted and the stored answer has none). Returns those another instance
    /// is asking for. If the store fails, every digest is resolved `StoreDown`.
    async fn claim_round(&self, digests: Vec<Digest>, details: bool) -> Vec<Digest> {
        let claims = match self.store.claim(&digests).await {
            Ok(c) => c,
            Err(e) => {
                let why = e.to_string();
                for d in digests {
                    self.resolve(Want { digest: d, details }, Got::StoreDown(why.clone()));
                }
                return Vec::new();
            }
        };
        let mut theirs = Vec::new();
        for (digest, claim) in digests.into_iter().zip(claims) {
            let want = Want { digest, details };
            match claim {
                Claim::Answered(a) if !details || a.details.is_some() => {
                    self.resolve(want, Got::Answer(a));
                }
                Claim::Answered(_) | Claim::Mine => self.enqueue(want),
                Claim::Theirs => theirs.push(digest),
            }
        }
        theirs
    }

    fn enqueue(&self, want: Want) {
        if self.queues[usize::from(want.details)]
            .send(want.digest)
            .is_err()
        {
            self.resolve(want, Got::Failed(shutting_down()));
        }
    }

    /// Wait for another instance's lookups to land in the store; take over the ones whose
    /// claim lapses or is dropped (its lookup failed) without an answer.
    async fn await_others(self: Arc<Self>, mut digests: Vec<Digest>, details: bool) {
        let deadline = Instant::now() + self.claim_ttl * 2 + Duration::from_secs(5);
        let mut pause = Duration::from_millis(20);
        while !digests.is_empty() {
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(250));
            digests = self.claim_round(digests, details).await;
            if Instant::now() >= deadline {
                for digest in digests.drain(..) {
                    self.resolve(
                        Want { digest, details },
                        Got::Failed(LookupError::Unfinished(
                            "another gateway instance's lookup did not finish".into(),
                        )),
                    );
                }
            }
        }
    }

    /// Cut `batch` to the upstream budget: returns the hashes kept (reserved until answered)
    /// and outcomes for the ones left out.
    fn cut(&self, batch: &mut LookupBatch) -> (u64, Vec<(Digest, HashOutcome)>) {
        let n = batch.digests.len() as u64;
        let Some(remaining) = self.upstream.quota_remaining() else {
            self.reserved.fetch_add(n, Ordering::Relaxed);
            return (n, Vec::new());
        };
        let reserved = self.reserved.fetch_add(n, Ordering::Relaxed);
        let take = n.min(remaining.saturating_sub(reserved));
        self.reserved.fetch_sub(n - take, Ordering::Relaxed);
        let over: Vec<(Digest, HashOutcome)> = batch
            .digests
            .split_off(take as usize)
            .into_iter()
            .map(|d| {
                let why = "the gateway's upstream budget for today is spent: asked after it resets";
                (d, Err(LookupError::QuotaSpent(why.into())))
            })
            .collect();
        if !over.is_empty() {
            metrics::counter!("hashsweep_gateway_upstream_deferred_total")
                .increment(over.len() as u64);
        }
        (take, over)
    }

    fn resolve(&self, want: Want, got: Got) {
        let waiters = lock(&self.inflight).remove(&want);
        for tx in waiters.into_iter().flatten() {
            let _ = tx.send(got.clone());
        }
    }

    /// Send one batch upstream, store its answers, then tell the waiters. The batch is cut to
    /// what the upstream budget has left (less what other requests in flight will spend): the
    /// rest is not asked today, and its clients are told so (429000), as the service would.
    async fn send(self: Arc<Self>, mut batch: LookupBatch, details: bool) {
        let upstream = Arc::clone(&self.upstream);
        // A client stopped for the day is replaced once its window has reset, before the
        // budget it last stated decides what is asked.
        let _ = upstream.client(details);
        let (take, over) = self.cut(&mut batch);
        metrics::counter!("hashsweep_gateway_upstream_hashes_total").increment(take);
        let digests = batch.digests.clone();
        // On the blocking pool: the client blocks, and replacing one (after a quota reset)
        // builds and drops a blocking client, which must not happen on an async thread.
        let up = Arc::clone(&upstream);
        let mut outcomes = if batch.digests.is_empty() {
            Vec::new()
        } else {
            tokio::task::spawn_blocking(move || up.client(details).lookup(&batch))
                .await
                .unwrap_or_else(|e| {
                    digests
                        .iter()
                        .map(|d| {
                            let why = format!("upstream lookup task failed: {e}");
                            (*d, Err(LookupError::Unfinished(why.into())))
                        })
                        .collect()
                })
        };
        self.reserved.fetch_sub(take, Ordering::Relaxed);
        outcomes.extend(over);
        upstream.publish_metrics();
        let mut answers = Vec::with_capacity(outcomes.len());
        let mut failed = Vec::new();
        for (d, o) in &mut outcomes {
            match o {
                Ok(a) => {
                    // The service sends no details for some answers (unknown hashes): mark
                    // that they were asked for, so the stored answer serves details requests.
                    if details && a.details.is_none() {
                        a.details = Some(Box::new([]));
                    }
                    answers.push((*d, a.clone()));
                }
                Err(_) => failed.push(*d),
            }
        }
        if !failed.is_empty() {
            metrics::counter!("hashsweep_gateway_upstream_errors_total")
                .increment(failed.len() as u64);
        }
        // Before the waiters are told: once they are, this instance's own claims would let it
        // ask the same digests again. A failed write is tried again on a fresh connection
        // (the store drops a broken one), since another instance waits on these claims until
        // they lapse.
        let first = Instant::now();
        let mut put = self.store.put(&answers, &failed).await;
        let mut tries = 1;
        for pause in PUT_RETRY_PAUSES {
            // Not for long: the waiters hold answers already paid for.
            if put.is_ok() || first.elapsed() >= PUT_RETRY_WITHIN {
                break;
            }
            tokio::time::sleep(pause).await;
            put = self.store.put(&answers, &failed).await;
            tries += 1;
        }
        if let Err(e) = put {
            // The answers are real: the waiters get them; only sharing them is lost.
            eprintln!(
                "hashsweep serve: could not store {} answers ({tries} tries): {e}",
                answers.len(),
            );
        }
        // One lock for the whole batch.
        let waiters: Vec<(Waiters, Got)> = {
            let mut map = lock(&self.inflight);
            outcomes
                .into_iter()
                .filter_map(|(digest, o)| {
                    let w = map.remove(&Want { digest, details })?;
                    Some((w, o.map_or_else(Got::Failed, Got::Answer)))
                })
                .collect()
        };
        for (txs, got) in waiters {
            for tx in txs {
                let _ = tx.send(got.clone());
            }
        }
    }
}

async fn run_batcher(
    me: std::sync::Weak<Coalescer>,
    mut rx: mpsc::UnboundedReceiver<Digest>,
    details: bool,
    max: usize,
    wait: Duration,
    permits: Arc<Semaphore>,
) {
    let mut next_id = 1u64;
    while let Some(first) = rx.recv().await {
        let mut digests = Vec::with_capacity(max);
        digests.push(first);
        let deadline = tokio::time::Instant::now() + wait;
        while digests.len() < max {
            // Take what is already queued without waiting, then wait out the window.
            match rx.try_recv() {
                Ok(d) => digests.push(d),
                Err(_) => match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(d)) => digests.push(d),
                    _ => break,
                },
            }
        }
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            return;
        };
        let Some(me) = me.upgrade() else {
            return;
        };
        let batch = LookupBatch {
            id: next_id,
            digests,
        };
        next_id += 1;
        let tasks = me.tasks.clone();
        tasks.spawn(async move {
            me.send(batch, details).await;
            drop(permit);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hashsweep_lookup::ApiKey;
    use hashsweep_mock::{Fault, MockServer};

    #[test]
    fn a_refused_key_halts_the_upstream_until_the_retry_time_then_it_is_tried_again() {
        let mock = MockServer::start(Some("upstream-key-0123456789")).unwrap();
        let d = Digest::from_hex(&"ab".repeat(32)).unwrap();
        mock.set(&d.to_hex(), 0, 0);
        mock.push_fault(Fault::new(
            403,
            r#"{"error":{"code":403002,"messages":["blocked"]}}"#,
        ));
        let mut cfg =
            ClientConfig::new(mock.url(), ApiKey::new("upstream-key-0123456789").unwrap());
        cfg.retries = 0;
        let up = Upstream::new(cfg)
            .unwrap()
            .with_halt_retry(Duration::from_millis(300));
        let batch = LookupBatch {
            id: 1,
            digests: vec![d],
        };
        assert!(up.client(false).lookup(&batch)[0].1.is_err());
        assert!(up.halted().is_some());
        // Within the retry time: still halted, nothing sent.
        assert!(up.client(false).lookup(&batch)[0].1.is_err());
        assert_eq!(mock.requests().len(), 1);
        std::thread::sleep(Duration::from_millis(350));
        let out = up.client(false).lookup(&batch);
        assert_eq!(out[0].1.as_ref().map(|a| a.scan_result_i), Ok(0));
        assert!(up.halted().is_none());
        assert_eq!(mock.requests().len(), 2);
    }
}
