//! Lookup workers: a batcher cuts a stream of distinct digests into [`LookupBatch`]es and
//! `concurrency` threads send them through a [`ReputationClient`]; outcomes come back per batch.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded, unbounded};

use super::batch::{Feed, LookupBatch, MAX_BATCH, run_batcher};
use super::{HashOutcome, ReputationClient};
use crate::digest::{Algo, Digest};

/// Requests in flight at once, unless told otherwise.
pub const DEFAULT_CONCURRENCY: usize = 4;

/// How batches are formed and sent.
#[derive(Debug, Clone)]
pub struct LookupOptions {
    /// Which digest is sent.
    pub algo: Algo,
    pub batch_size: usize,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// How long a partial batch waits for more digests.
    pub batch_wait: Duration,
}

impl Default for LookupOptions {
    fn default() -> Self {
        LookupOptions {
            algo: Algo::Sha256,
            batch_size: MAX_BATCH,
            concurrency: DEFAULT_CONCURRENCY,
            batch_wait: super::http::Patience::ENDPOINT.batch_wait,
        }
    }
}

/// Start the batcher and `concurrency` lookup workers. Send digests into the returned sender
/// (drop it when done); outcomes arrive per batch on the receiver, which closes once every
/// batch is answered. The threads are detached so an interrupted run need not wait for a
/// request in flight; once `stop` is set no new request is started.
pub fn spawn_lookup(
    client: Arc<dyn ReputationClient>,
    opts: &LookupOptions,
    stop: &Arc<AtomicBool>,
) -> (Sender<Feed>, Receiver<Vec<(Digest, HashOutcome)>>) {
    let (digest_tx, digest_rx) = unbounded::<Feed>();
    let concurrency = opts.concurrency.max(1);
    let (batch_tx, batch_rx) = bounded::<LookupBatch>(concurrency);
    let (out_tx, out_rx) = unbounded();
    let (size, wait) = (opts.batch_size, opts.batch_wait);
    std::thread::spawn(move || run_batcher(digest_rx, batch_tx, size, wait));
    for _ in 0..concurrency {
        let batch_rx = batch_rx.clone();
        let out_tx = out_tx.clone();
        let client = Arc::clone(&client);
        let stop = Arc::clone(stop);
        std::thread::spawn(move || {
            for batch in batch_rx {
                if stop.load(Ordering::Relaxed) || out_tx.send(client.lookup(&batch)).is_err() {
                    break;
                }
            }
        });
    }
    (digest_tx, out_rx)
}

/// Look up a fixed set of digests (the `lookup` subcommand). Duplicates are asked once.
pub fn lookup_digests(
    digests: &[Digest],
    client: Arc<dyn ReputationClient>,
    opts: &LookupOptions,
    stop: &Arc<AtomicBool>,
) -> HashMap<Digest, HashOutcome> {
    let mut outcomes = HashMap::new();
    let (tx, rx) = spawn_lookup(client, opts, stop);
    let mut seen = std::collections::HashSet::with_capacity(digests.len());
    for d in digests {
        if seen.insert(*d) {
            let _ = tx.send(Feed::Digest(*d));
        }
    }
    drop(tx);
    while !stop.load(Ordering::Relaxed) {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(batch) => outcomes.extend(batch),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    outcomes
}
