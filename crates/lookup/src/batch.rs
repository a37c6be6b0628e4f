//! Batch stage: groups distinct digests into lookup requests of at most `max` hashes.
//!
//! A batch is sent as soon as it is full, when its oldest digest has waited `max_wait` (so
//! lookups start while hashing is still running, even on a slow trickle of big files), and when
//! the input closes. Never sends an empty batch (the service answers 400062).

use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use hashsweep_core::digest::Digest;

/// The service's cap on hashes per request.
pub const MAX_BATCH: usize = 1000;

/// One request's worth of distinct digests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupBatch {
    /// Sequence number, for messages ("batch 3").
    pub id: u64,
    pub digests: Vec<Digest>,
}

/// What the batcher is fed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feed {
    Digest(Digest),
    /// Send the partial batch now (no more digests are coming for a while: the sender waits
    /// for its answer).
    Flush,
}

/// Run the batcher until `rx` closes (or `tx` hangs up). Returns the number of batches sent.
pub fn run_batcher(
    rx: Receiver<Feed>,
    tx: Sender<LookupBatch>,
    max: usize,
    max_wait: Duration,
) -> u64 {
    let max = max.clamp(1, MAX_BATCH);
    let mut pending: Vec<Digest> = Vec::with_capacity(max);
    let mut oldest = Instant::now();
    let mut next_id = 1u64;
    let mut flush = |pending: &mut Vec<Digest>| -> bool {
        if pending.is_empty() {
            return true;
        }
        let batch = LookupBatch {
            id: next_id,
            digests: std::mem::replace(pending, Vec::with_capacity(max)),
        };
        next_id += 1;
        tx.send(batch).is_ok()
    };
    loop {
        let got = if pending.is_empty() {
            rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
        } else {
            let deadline = oldest + max_wait;
            rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
        };
        match got {
            Ok(Feed::Digest(d)) => {
                if pending.is_empty() {
                    oldest = Instant::now();
                }
                pending.push(d);
                if pending.len() >= max && !flush(&mut pending) {
                    break;
                }
            }
            Ok(Feed::Flush) => {
                if !flush(&mut pending) {
                    break;
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                if !flush(&mut pending) {
                    break;
                }
            }
            Err(RecvTimeoutError::Disconnected) => {
                flush(&mut pending);
                break;
            }
        }
    }
    next_id - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(i: u32) -> Digest {
        let mut b = [0u8; 32];
        b[..4].copy_from_slice(&i.to_be_bytes());
        Digest::Sha256(b)
    }

    #[test]
    fn full_batches_then_remainder_on_close() {
        let (dtx, drx) = crossbeam_channel::unbounded();
        let (btx, brx) = crossbeam_channel::unbounded();
        for i in 0..2500 {
            dtx.send(Feed::Digest(d(i))).unwrap();
        }
        drop(dtx);
        assert_eq!(run_batcher(drx, btx, 1000, Duration::from_secs(60)), 3);
        let sizes: Vec<usize> = brx.iter().map(|b| b.digests.len()).collect();
        assert_eq!(sizes, vec![1000, 1000, 500]);
    }

    #[test]
    fn partial_batch_leaves_on_timer_before_input_closes() {
        let (dtx, drx) = crossbeam_channel::unbounded();
        let (btx, brx) = crossbeam_channel::unbounded();
        let h = std::thread::spawn(move || run_batcher(drx, btx, 1000, Duration::from_millis(50)));
        dtx.send(Feed::Digest(d(1))).unwrap();
        let first = brx
            .recv_timeout(Duration::from_secs(5))
            .expect("timer flush");
        assert_eq!(first.digests, vec![d(1)]);
        drop(dtx);
        assert_eq!(h.join().unwrap(), 1);
        assert!(brx.recv().is_err(), "no empty batch is sent");
    }

    #[test]
    fn a_flush_sends_the_partial_batch_at_once() {
        let (dtx, drx) = crossbeam_channel::unbounded();
        let (btx, brx) = crossbeam_channel::unbounded();
        let h = std::thread::spawn(move || run_batcher(drx, btx, 1000, Duration::from_secs(600)));
        dtx.send(Feed::Digest(d(1))).unwrap();
        dtx.send(Feed::Flush).unwrap();
        dtx.send(Feed::Flush).unwrap();
        let first = brx.recv_timeout(Duration::from_secs(5)).expect("flushed");
        assert_eq!(first.digests, vec![d(1)]);
        drop(dtx);
        assert_eq!(h.join().unwrap(), 1, "a flush of nothing sends nothing");
    }
}
