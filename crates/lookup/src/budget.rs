//! The lookup budget: what the service says a key has left ([`Budget`], from the rate-limit
//! headers of its answers) and what a run did with it ([`Plan`]: how many digests needed a
//! lookup, how many were asked, how many were deferred to later runs, and when the backlog
//! should be done).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// What the service says about the key's budget, from the rate-limit headers of the last answer.
///
/// `remaining` is the lowest `x-ratelimit-remaining` seen in the current window (answers to
/// requests in flight at once may arrive out of order); `resets_at` is when the window ends,
/// from `x-ratelimit-reset-in` (the daily window, not a time to wait before the next request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Hashes per window (`x-ratelimit-limit`; a day for the reputation API).
    pub limit: Option<u64>,
    /// Hashes left in this window (`x-ratelimit-remaining`).
    pub remaining: u64,
    /// When the window ends (now + `x-ratelimit-reset-in`).
    pub resets_at: Option<SystemTime>,
}

impl Budget {
    /// For a person, e.g. `limit 4 000 a day, 3 999 remaining, resets 2026-12-02 14:02 UTC
    /// (in 15h 40m)` (`hashsweep check`).
    pub fn human(&self, now: SystemTime) -> String {
        let mut s = match self.limit {
            Some(l) => format!("limit {} a day, ", group(l)),
            None => "limit not stated, ".to_string(),
        };
        s.push_str(&format!("{} remaining", group(self.remaining)));
        if let Some(t) = self.resets_at {
            s.push_str(&format!(
                ", resets {} (in {})",
                utc_minute(unix_secs(t)),
                until(t.duration_since(now).unwrap_or_default())
            ));
        }
        s
    }
}

/// How long until a reset, as every message says it: `23h 59m`, `5m`, under a minute `42s`.
pub fn until(left: Duration) -> String {
    if left < Duration::from_secs(60) {
        return format!("{}s", left.as_secs().max(1));
    }
    humantime::format_duration(Duration::from_secs(left.as_secs() / 60 * 60)).to_string()
}

/// What a run did with its budget; printed as the plan line and kept in the JSON summary.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// Distinct digests that needed a lookup (after the caches and the local hash sets):
    /// `never_asked + refreshing + overdue`.
    pub needed: u64,
    /// Of those, digests the service has never answered (as far as the cache knows).
    pub never_asked: u64,
    /// Digests whose answer on file is due for a refresh (older than its TTL) but within the
    /// maximum age: their paths keep that answer until it is refreshed.
    pub refreshing: u64,
    /// Digests whose answer on file is older than the maximum age: without a refresh their
    /// paths are `deferred`.
    pub overdue: u64,
    /// Of `needed`, how many were sent.
    pub asked: u64,
    /// Of `asked`, how many were refreshes (`refreshing` or `overdue`).
    pub refreshed: u64,
    /// Refreshes the budget left for a later run (their paths keep their last answers).
    pub postponed: u64,
    /// Digests left without an answer for a later run (verdict `deferred`): never asked, or
    /// past the maximum age.
    pub deferred: u64,
    /// `--budget`: the most this run may ask.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cap: Option<u64>,
    /// The key's hashes per day, as the service said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// What the key had left when the plan was made.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remaining: Option<u64>,
    /// When the key's window resets (unix seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resets_at: Option<u64>,
    /// About how many more days (at `limit` a day) or runs (at `cap` a run) the deferred
    /// digests need.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backlog_days: Option<u64>,
}

impl Plan {
    /// The plan line for stderr, e.g. `needs 37 412 lookups (37 000 never asked, 412 due for a
    /// refresh); the key allows 3 999 more until 2026-12-02 14:02 UTC (in 15h 40m); asking the
    /// 3 999 that matter most, deferring 33 001 (about 9 more days at 4 000 a day); 412
    /// refreshes wait (their paths keep their last answers)`.
    pub fn human(&self, now: SystemTime) -> String {
        let mut s = format!(
            "needs {} {}",
            group(self.needed),
            if self.needed == 1 {
                "lookup"
            } else {
                "lookups"
            }
        );
        if self.refreshing + self.overdue > 0 {
            let mut parts = Vec::new();
            if self.never_asked > 0 {
                parts.push(format!("{} never asked", group(self.never_asked)));
            }
            if self.refreshing > 0 {
                parts.push(format!("{} due for a refresh", group(self.refreshing)));
            }
            if self.overdue > 0 {
                parts.push(format!("{} past the maximum age", group(self.overdue)));
            }
            s.push_str(&format!(" ({})", parts.join(", ")));
        }
        let mut allows = Vec::new();
        if let Some(r) = self.remaining {
            let until_reset = self
                .resets_at
                .map(|t| {
                    let at = UNIX_EPOCH + Duration::from_secs(t);
                    format!(
                        " until {} (in {})",
                        utc_minute(t),
                        until(at.duration_since(now).unwrap_or_default())
                    )
                })
                .unwrap_or_default();
            allows.push(format!("the key allows {} more{until_reset}", group(r)));
        }
        if let Some(c) = self.cap {
            allows.push(format!("--budget allows {}", group(c)));
        }
        if !allows.is_empty() {
            s.push_str("; ");
            s.push_str(&allows.join(" and "));
        }
        if self.deferred == 0 && self.postponed == 0 {
            s.push_str(&match self.needed {
                0 => "; nothing to ask".to_string(),
                n => format!("; asking all {}", group(n)),
            });
            return s;
        }
        s.push_str(&format!(
            "; asking the {} that matter most",
            group(self.asked)
        ));
        if self.deferred > 0 {
            s.push_str(&format!(", deferring {}", group(self.deferred)));
            match (self.backlog_days, self.limit, self.cap) {
                (Some(d), Some(l), None) => s.push_str(&format!(
                    " (about {d} more {} at {} a day)",
                    if d == 1 { "day" } else { "days" },
                    group(l)
                )),
                (Some(d), _, Some(c)) => s.push_str(&format!(
                    " (about {d} more {} at {} a run)",
                    if d == 1 { "run" } else { "runs" },
                    group(c)
                )),
                _ => {}
            }
        }
        if self.postponed > 0 {
            s.push_str(&format!(
                "; {} {} (their paths keep their last answers)",
                group(self.postponed),
                if self.postponed == 1 {
                    "refresh waits"
                } else {
                    "refreshes wait"
                }
            ));
        }
        s
    }

    /// Fill in [`Plan::backlog_days`]: the digests left without an answer over what a day (or
    /// a run) allows. Refreshes do not count: new digests and answers past the maximum age go
    /// first, so for a tree that stays the same this is when every path has an answer.
    pub fn estimate(&mut self) {
        let per = match (self.cap, self.limit) {
            (Some(c), Some(l)) => Some(c.min(l)),
            (Some(c), None) => Some(c),
            (None, l) => l,
        };
        self.backlog_days = per
            .filter(|&p| p > 0 && self.deferred > 0)
            .map(|p| self.deferred.div_ceil(p));
    }
}

/// Unix seconds of a time (0 before the epoch).
pub fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// `2026-12-02 14:02 UTC`.
fn utc_minute(unix: u64) -> String {
    let t = UNIX_EPOCH + Duration::from_secs(unix);
    let s = humantime::format_rfc3339_seconds(t).to_string();
    // "2026-12-02T14:02:05Z" -> "2026-12-02 14:02 UTC"
    format!("{} {} UTC", &s[..10], &s[11..16])
}

/// `37412` -> `37 412` (thin grouping a person reads at a glance, any locale).
fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Never asked, due for a refresh and past the maximum age are counted apart; the days
    /// count only what has no answer; postponed refreshes are said to keep their answers.
    #[test]
    fn the_plan_line_counts_new_refreshing_and_stale_apart() {
        let mut p = Plan {
            needed: 300,
            never_asked: 150,
            refreshing: 140,
            overdue: 10,
            asked: 100,
            refreshed: 0,
            postponed: 140,
            deferred: 60,
            limit: Some(100),
            remaining: Some(100),
            ..Plan::default()
        };
        p.estimate();
        assert_eq!(p.backlog_days, Some(1));
        assert_eq!(
            p.human(UNIX_EPOCH),
            "needs 300 lookups (150 never asked, 140 due for a refresh, 10 past the maximum \
             age); the key allows 100 more; asking the 100 that matter most, deferring 60 \
             (about 1 more day at 100 a day); 140 refreshes wait (their paths keep their last \
             answers)"
        );
    }

    #[test]
    fn the_plan_line_says_what_is_asked_deferred_and_how_long_the_rest_takes() {
        let mut p = Plan {
            needed: 37_412,
            asked: 3_999,
            deferred: 33_413,
            limit: Some(4_000),
            remaining: Some(3_999),
            // 2026-12-02 14:02:00 UTC
            resets_at: Some(1_796_220_120),
            ..Plan::default()
        };
        p.estimate();
        assert_eq!(p.backlog_days, Some(9));
        // 15h 40m 30s before the reset.
        let now = UNIX_EPOCH + Duration::from_secs(1_796_220_120 - 56_430);
        assert_eq!(
            p.human(now),
            "needs 37 412 lookups; the key allows 3 999 more until 2026-12-02 14:02 UTC \
             (in 15h 40m); asking the 3 999 that matter most, deferring 33 413 (about 9 more \
             days at 4 000 a day)"
        );
        let all = Plan {
            needed: 12,
            asked: 12,
            remaining: Some(3_000),
            ..Plan::default()
        };
        let now = UNIX_EPOCH;
        assert_eq!(
            all.human(now),
            "needs 12 lookups; the key allows 3 000 more; asking all 12"
        );
        let mut capped = Plan {
            needed: 10,
            asked: 4,
            deferred: 6,
            cap: Some(4),
            ..Plan::default()
        };
        capped.estimate();
        assert_eq!(
            capped.human(now),
            "needs 10 lookups; --budget allows 4; asking the 4 that matter most, deferring 6 \
             (about 2 more runs at 4 a run)"
        );
        assert_eq!(group(1_000_000), "1 000 000");
        assert_eq!(until(Duration::from_secs(86_399)), "23h 59m");
        assert_eq!(until(Duration::from_secs(1)), "1s");
        assert_eq!(until(Duration::ZERO), "1s");
        assert_eq!(group(999), "999");
    }
}
