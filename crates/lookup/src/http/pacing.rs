//! How fast the client asks: requests in flight (an AIMD limit that throttles lower), the
//! rate-limit headers and the budget they state, and the waits between attempts.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, SystemTime};

use reqwest::header::HeaderMap;

use crate::Budget;
use hashsweep_core::sync::lock;

/// Requests in flight, and how many may be: an AIMD limit lowered by throttles (halved after
/// 429002, one fewer after 429001) and raised by one after [`RAISE_AFTER`] answers, until it is
/// no lower than the most requests callers have wanted at once (then it is lifted).
#[derive(Default)]
pub(super) struct Flight {
    pub(super) state: Mutex<FlightState>,
    pub(super) freed: Condvar,
}

/// Answers without a throttle before the in-flight limit is raised by one.
pub(super) const RAISE_AFTER: u32 = 4;

#[derive(Debug, Default)]
pub(super) struct FlightState {
    pub(super) in_flight: usize,
    pub(super) waiting: usize,
    /// The most requests wanted at once (in flight and waiting).
    pub(super) peak: usize,
    pub(super) limit: Option<usize>,
    /// Bumped whenever the limit is lowered: a throttle of a request sent before that lowers
    /// it no further (requests in flight together are throttled together).
    pub(super) epoch: u64,
    pub(super) answered: u32,
}

/// A request's place in flight, given back when dropped.
pub(super) struct Permit<'a> {
    pub(super) flight: &'a Flight,
    pub(super) epoch: u64,
}

impl Flight {
    pub(super) fn acquire(&self) -> Permit<'_> {
        let mut g = lock(&self.state);
        g.waiting += 1;
        g.peak = g.peak.max(g.in_flight + g.waiting);
        while g.limit.is_some_and(|l| g.in_flight >= l) {
            g = self
                .freed
                .wait(g)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        g.waiting -= 1;
        g.in_flight += 1;
        Permit {
            flight: self,
            epoch: g.epoch,
        }
    }

    /// A request was answered without a throttle.
    pub(super) fn answered(&self) {
        let mut g = lock(&self.state);
        let Some(l) = g.limit else { return };
        g.answered += 1;
        if g.answered >= RAISE_AFTER {
            g.answered = 0;
            g.limit = (l + 1 < g.peak).then_some(l + 1);
            self.freed.notify_all();
        }
    }

    /// The request holding `permit` was throttled (`connections`: 429002).
    pub(super) fn throttled(&self, permit: &Permit<'_>, connections: bool) {
        let mut g = lock(&self.state);
        if permit.epoch != g.epoch {
            return;
        }
        let now = g.limit.unwrap_or(g.in_flight).max(1);
        let lower = if connections { now / 2 } else { now - 1 }.max(1);
        if g.limit.is_none() || lower < now {
            g.limit = Some(lower);
            g.epoch += 1;
        }
        g.answered = 0;
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let mut g = lock(&self.flight.state);
        g.in_flight = g.in_flight.saturating_sub(1);
        self.flight.freed.notify_all();
    }
}

/// The rate-limit headers of one answer (names case-insensitive, as HTTP has them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateHeaders {
    pub limit: Option<u64>,
    pub remaining: Option<u64>,
    /// `x-ratelimit-reset-in`, `86400s` or `86400`: the end of the current window.
    pub reset_in: Option<Duration>,
}

/// Two answers of one window may disagree on its end by this much (whole seconds, transit).
const WINDOW_SLACK: Duration = Duration::from_secs(3);

impl RateHeaders {
    pub fn read(h: &HeaderMap) -> RateHeaders {
        let int = |name: &str| {
            h.get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|s| s.trim().parse::<u64>().ok())
        };
        RateHeaders {
            limit: int("x-ratelimit-limit"),
            remaining: int("x-ratelimit-remaining"),
            reset_in: seconds(h, "x-ratelimit-reset-in"),
        }
    }

    /// The budget after an answer with these headers at `now`: the lowest `remaining` of the
    /// window (answers of requests in flight together come back in any order), or this
    /// answer's once a new window has begun (the old one is over, or this one ends later).
    ///
    /// An answer whose window ends well before the one known (a throttle saying
    /// `x-ratelimit-remaining: 0`, `x-ratelimit-reset-in: 1s` while the day has hours to go)
    /// speaks of a shorter window: what it says is left is left of that window, not of the
    /// day, so the day's budget stands. (The client waits for the short window's end, when it
    /// comes within `--max-wait`.) Taking its 0 as the day's, with the day's end, left the
    /// budget spent until tomorrow and deferred the rest of the run.
    pub fn merge(self, old: Option<Budget>, now: SystemTime) -> Option<Budget> {
        let Some(remaining) = self.remaining else {
            return old;
        };
        let resets_at = self.reset_in.map(|r| now + r);
        let fresh = Budget {
            limit: self.limit,
            remaining,
            resets_at,
        };
        let Some(old) = old else {
            return Some(fresh);
        };
        let new_window = match (old.resets_at, resets_at) {
            (Some(end), _) if now >= end => true,
            (Some(end), Some(new_end)) => new_end > end + WINDOW_SLACK,
            _ => false,
        };
        if new_window {
            return Some(fresh);
        }
        if let (Some(end), Some(new_end)) = (old.resets_at, resets_at)
            && new_end + WINDOW_SLACK < end
        {
            return Some(old);
        }
        Some(Budget {
            limit: self.limit.or(old.limit),
            remaining: remaining.min(old.remaining),
            resets_at: match (old.resets_at, resets_at) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            },
        })
    }
}

/// Exponential backoff with jitter: about 0.5 s, 1 s, 2 s … capped at 30 s, each scaled by a
/// random factor in [0.5, 1).
pub fn backoff(attempt: u32) -> Duration {
    let base = Duration::from_millis(500).saturating_mul(1u32 << attempt.saturating_sub(1).min(6));
    base.min(Duration::from_secs(30))
        .mul_f64(0.5 + fastrand::f64() / 2.0)
}

/// `Retry-After` in seconds, if the answer has one. The service is not documented to send it
/// (a gateway or a proxy may); when present it is the instruction for this answer.
pub fn retry_after(h: &HeaderMap) -> Option<Duration> {
    seconds(h, "retry-after")
}

/// Seconds past this in a header (some 31 years) are no answer's: such a header is ignored,
/// as if absent (a time that far would overflow a `SystemTime`, and `u64` seconds end sooner
/// than an `f64` does: `Duration::from_secs_f64` panicked on what a fuzzer sent).
const MAX_HEADER_SECONDS: f64 = 1e9;

/// A header holding seconds, `"30"` or `"30s"`.
pub(super) fn seconds(h: &HeaderMap, name: &str) -> Option<Duration> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().trim_end_matches(['s', 'S']).trim())
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| s.is_finite() && (0.0..=MAX_HEADER_SECONDS).contains(s))
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
}
