//! Lookup workers: a batcher cuts a stream of distinct digests into [`LookupBatch`]es and
//! `concurrency` threads send them through a [`ReputationClient`]; outcomes come back per batch.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded, unbounded};

use super::batch::{Feed, LookupBatch, MAX_BATCH, run_batcher};
use super::{HashOutcome, ReputationClient};
use hashsweep_core::digest::{Algo, Digest};

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
    /// `--circl`: CIRCL hashlookup is asked first (see `scan::circl`).
    pub circl: Option<Arc<super::circl::CirclClient>>,
}

impl Default for LookupOptions {
    fn default() -> Self {
        LookupOptions {
            algo: Algo::Sha256,
            batch_size: MAX_BATCH,
            concurrency: DEFAULT_CONCURRENCY,
            batch_wait: super::http::Patience::ENDPOINT.batch_wait,
            circl: None,
        }
    }
}

/// Start the batcher and `concurrency` lookup workers. Send digests into the returned sender
/// (drop it when done); outcomes arrive per batch on the receiver, which closes once every
/// batch is answered. The threads are detached so an interrupted run need not wait for a
/// request in flight; once `stop` is set no new request is started. `in_flight` counts the
/// digests handed to the client and not yet answered (the progress line shows it).
pub fn spawn_lookup(
    client: Arc<dyn ReputationClient>,
    opts: &LookupOptions,
    stop: &Arc<AtomicBool>,
    in_flight: Arc<AtomicU64>,
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
        let in_flight = Arc::clone(&in_flight);
        std::thread::spawn(move || {
            for batch in batch_rx {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let outcome = {
                    let _sent = InFlight::new(&in_flight, batch.digests.len() as u64);
                    client.lookup(&batch)
                };
                if out_tx.send(outcome).is_err() {
                    break;
                }
            }
        });
    }
    (digest_tx, out_rx)
}

/// Digests counted in flight while a request is out: taken off again when it is answered, or
/// if the client panics.
struct InFlight<'a> {
    count: &'a AtomicU64,
    n: u64,
}

impl<'a> InFlight<'a> {
    fn new(count: &'a AtomicU64, n: u64) -> InFlight<'a> {
        count.fetch_add(n, Ordering::Relaxed);
        InFlight { count, n }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.count.fetch_sub(self.n, Ordering::Relaxed);
    }
}

/// Look up a fixed set of digests (the `lookup` subcommand). Duplicates are asked once.
pub fn lookup_digests(
    digests: &[Digest],
    client: Arc<dyn ReputationClient>,
    opts: &LookupOptions,
    stop: &Arc<AtomicBool>,
) -> HashMap<Digest, HashOutcome> {
    let mut outcomes = HashMap::new();
    let (tx, rx) = spawn_lookup(client, opts, stop, Arc::default());
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ClientStats, LookupError};
    use std::sync::Mutex;

    /// Says when a request is out, and answers it only when told to.
    struct Held {
        entered: Sender<usize>,
        release: Mutex<Receiver<()>>,
    }

    impl ReputationClient for Held {
        fn lookup(&self, batch: &LookupBatch) -> Vec<(Digest, HashOutcome)> {
            let _ = self.entered.send(batch.digests.len());
            let _ = self.release.lock().unwrap().recv();
            batch
                .digests
                .iter()
                .map(|d| (*d, Err(LookupError::MissingEntry)))
                .collect()
        }
        fn stats(&self) -> ClientStats {
            ClientStats::default()
        }
    }

    /// The count of digests in flight is up while the request is out and down once answered.
    #[test]
    fn digests_count_in_flight_until_answered() {
        let (entered_tx, entered) = unbounded();
        let (release, release_rx) = unbounded();
        let client = Arc::new(Held {
            entered: entered_tx,
            release: Mutex::new(release_rx),
        });
        let in_flight = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = spawn_lookup(
            client,
            &LookupOptions::default(),
            &stop,
            Arc::clone(&in_flight),
        );
        for i in 0..3u8 {
            tx.send(Feed::Digest(Digest::Sha256([i; 32]))).unwrap();
        }
        tx.send(Feed::Flush).unwrap();
        let sent = entered.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(sent, 3);
        assert_eq!(in_flight.load(Ordering::Relaxed), 3);
        release.send(()).unwrap();
        let answered = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(answered.len(), 3);
        assert_eq!(in_flight.load(Ordering::Relaxed), 0);
    }
}
