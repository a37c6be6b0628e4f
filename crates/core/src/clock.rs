//! The wall clock every dated decision reads: answers' ages, the budget's reset, pruning, the
//! order of risk's "recent", the report's times. One function, so that tests and
//! `benches/budget_nights.py` can play days that pass without waiting for them.
//!
//! `HASHSWEEP_CLOCK_OFFSET` (read once per process) moves this clock: a whole number of
//! seconds or a duration such as `3days`, `-2h`. It is for tests and benchmarks; a run with it
//! set says so on stderr (see [`offset_note`]). Timeouts and deadlines use `Instant` and are
//! never moved.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

/// The environment variable that moves the clock.
pub const OFFSET_VAR: &str = "HASHSWEEP_CLOCK_OFFSET";

/// How far the clock is moved: (forward, amount). `None` when it is not.
fn offset() -> Option<(bool, Duration)> {
    static OFFSET: OnceLock<Option<(bool, Duration)>> = OnceLock::new();
    *OFFSET.get_or_init(|| {
        std::env::var(OFFSET_VAR)
            .ok()
            .and_then(|raw| parse_offset(&raw))
    })
}

/// `86400`, `1day`, `-2h 30m` -> (forward, amount). Garbage is no offset.
fn parse_offset(raw: &str) -> Option<(bool, Duration)> {
    let raw = raw.trim();
    let (forward, rest) = match raw.strip_prefix('-') {
        Some(r) => (false, r.trim_start()),
        None => (true, raw.strip_prefix('+').unwrap_or(raw)),
    };
    let amount = match rest.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => humantime::parse_duration(rest).ok()?,
    };
    (!amount.is_zero()).then_some((forward, amount))
}

/// Now, as this process's dated decisions see it.
pub fn now() -> SystemTime {
    let real = SystemTime::now();
    match offset() {
        None => real,
        Some((true, d)) => real.checked_add(d).unwrap_or(real),
        Some((false, d)) => real.checked_sub(d).unwrap_or(real),
    }
}

/// A line for stderr when the clock is moved (a report dated by a moved clock must not pass
/// for a real one unseen).
pub fn offset_note() -> Option<String> {
    offset().map(|(forward, d)| {
        format!(
            "{OFFSET_VAR} is set: this run's clock is {} {} the system's",
            humantime::format_duration(d),
            if forward { "ahead of" } else { "behind" }
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_parse_as_seconds_or_durations_either_way() {
        let day = Duration::from_secs(86_400);
        assert_eq!(parse_offset("86400"), Some((true, day)));
        assert_eq!(parse_offset("+1day"), Some((true, day)));
        assert_eq!(parse_offset("-1day"), Some((false, day)));
        assert_eq!(
            parse_offset(" 2h 30m "),
            Some((true, Duration::from_secs(9000)))
        );
        assert_eq!(parse_offset("0"), None);
        assert_eq!(parse_offset("soon"), None);
    }
}
