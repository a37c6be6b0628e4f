//! Progress display: a live line on stderr when it is a terminal, nothing otherwise.
//!
//! The line is drawn ten times a second from counters the pipeline bumps (so it moves with
//! time, not every so many files): paths done, bytes hashed, lookups answered of those asked,
//! the digests still waiting for an answer and how many of them are in requests sent and not
//! yet answered (in flight), and once the walk is over (the number of paths is known) an
//! estimate of the time left.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the pipeline reports as it goes. Implementations must be cheap: called once per file.
pub trait Progress: Sync {
    /// One path done (`bytes`: what was hashed of it, 0 for a path not hashed).
    fn file_done(&self, bytes: u64);
    fn lookups(&self, done: u64, asked: u64);
    /// The count the lookup workers keep of digests in requests sent and not yet answered,
    /// when the display shows it (`None`: nobody reads it).
    fn in_flight(&self) -> Option<Arc<AtomicU64>> {
        None
    }
    /// The walk is over: `paths` paths will be done in all.
    fn walk_done(&self, _paths: u64) {}
    /// Something the user should know now, once (the run goes on): one line on stderr.
    fn warn(&self, message: &str);
    /// What the run is doing and why (the lookup plan): one line on stderr.
    fn note(&self, message: &str);
    fn finish(&self);
}

/// The live line being drawn, if any: other messages go around it (see [`eprint_line`]).
static LIVE: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// Print one line on stderr without tearing the live progress line (it is lifted, the line
/// printed, and it is drawn again).
pub fn eprint_line(line: &str) {
    let live = LIVE.lock().ok().and_then(|l| l.clone());
    match live {
        Some(bar) => bar.suspend(|| eprintln!("{line}")),
        None => eprintln!("{line}"),
    }
}

/// No live display (stderr is not a terminal): warnings only, as plain lines.
pub struct NoProgress;

impl Progress for NoProgress {
    fn file_done(&self, _: u64) {}
    fn lookups(&self, _: u64, _: u64) {}
    fn warn(&self, message: &str) {
        eprintln!("hashsweep: warning: {message}");
    }
    fn note(&self, message: &str) {
        eprintln!("hashsweep: {message}");
    }
    fn finish(&self) {}
}

/// `--quiet`: nothing at all (errors are the caller's to print).
pub struct Silent;

impl Progress for Silent {
    fn file_done(&self, _: u64) {}
    fn lookups(&self, _: u64, _: u64) {}
    fn warn(&self, _: &str) {}
    fn note(&self, _: &str) {}
    fn finish(&self) {}
}

/// The counters the line is drawn from.
#[derive(Debug, Default)]
pub struct Counters {
    pub files: AtomicU64,
    pub bytes: AtomicU64,
    pub done: AtomicU64,
    pub asked: AtomicU64,
    /// Digests in requests sent and not yet answered (kept by the lookup workers).
    pub in_flight: Arc<AtomicU64>,
    /// Paths in all, once the walk is over (0 before).
    pub total: AtomicU64,
}

impl Counters {
    /// The line for these counts, `elapsed` after the start.
    pub fn line(&self, elapsed: Duration) -> String {
        let files = self.files.load(Ordering::Relaxed);
        let done = self.done.load(Ordering::Relaxed);
        let asked = self.asked.load(Ordering::Relaxed);
        let total = self.total.load(Ordering::Relaxed);
        let mut s = if total > 0 {
            format!("{files}/{total} paths")
        } else {
            format!("{files} paths (walking)")
        };
        s.push_str(&format!(
            ", {} hashed",
            hashsweep_report::human_bytes(self.bytes.load(Ordering::Relaxed))
        ));
        // Offline, or nothing to ask yet: no lookup counts.
        if asked > 0 {
            s.push_str(&format!(", lookups {done}/{asked}"));
        }
        let waiting = asked.saturating_sub(done);
        if waiting > 0 {
            // Of those waiting, the ones the service has: the rest wait for a batch to fill,
            // a throttle to pass, or the budget's plan.
            let in_flight = self.in_flight.load(Ordering::Relaxed).min(waiting);
            s.push_str(&format!(", {waiting} waiting ({in_flight} in flight)"));
        }
        if total > 0
            && let Some(eta) = eta(files, total, done, asked, elapsed)
        {
            s.push_str(&format!(", ETA {}", clock(eta)));
        }
        s
    }
}

/// Time left, from the rates so far: the paths not yet done at the rate paths were done, and
/// the digests waiting at the rate answers came, whichever is later. `None` before there is
/// any rate to go by.
pub fn eta(files: u64, total: u64, done: u64, asked: u64, elapsed: Duration) -> Option<Duration> {
    let secs = elapsed.as_secs_f64();
    let left = |n: u64, of: u64| -> Option<f64> {
        match (of.saturating_sub(n), n) {
            (0, _) => Some(0.0),
            (_, 0) => None,
            (rest, n) => Some(rest as f64 * secs / n as f64),
        }
    };
    let hashing = left(files, total)?;
    let lookups = left(done, asked)?;
    Some(Duration::from_secs_f64(hashing.max(lookups)))
}

/// `1:02:03` or `2:03`.
fn clock(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

/// A spinner line: paths, bytes, lookups done, waiting and in flight, time left.
pub struct BarProgress {
    bar: ProgressBar,
    counters: Arc<Counters>,
}

impl BarProgress {
    pub fn new() -> BarProgress {
        Self::with_target(ProgressDrawTarget::stderr_with_hz(10))
    }

    fn with_target(target: ProgressDrawTarget) -> BarProgress {
        let counters = Arc::new(Counters::default());
        let bar = ProgressBar::with_draw_target(None, target);
        let c = Arc::clone(&counters);
        let style = ProgressStyle::with_template("{spinner} {elapsed_precise} {line}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner())
            .with_key(
                "line",
                move |s: &ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = w.write_str(&c.line(s.elapsed()));
                },
            );
        bar.set_style(style);
        bar.enable_steady_tick(Duration::from_millis(100));
        if let Ok(mut live) = LIVE.lock() {
            *live = Some(bar.clone());
        }
        BarProgress { bar, counters }
    }

    /// The counters behind the line.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }
}

impl Default for BarProgress {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress for BarProgress {
    fn file_done(&self, bytes: u64) {
        self.counters.files.fetch_add(1, Ordering::Relaxed);
        self.counters.bytes.fetch_add(bytes, Ordering::Relaxed);
    }
    fn lookups(&self, done: u64, asked: u64) {
        self.counters.done.store(done, Ordering::Relaxed);
        self.counters.asked.store(asked, Ordering::Relaxed);
    }
    fn in_flight(&self) -> Option<Arc<AtomicU64>> {
        Some(Arc::clone(&self.counters.in_flight))
    }
    fn walk_done(&self, paths: u64) {
        self.counters.total.store(paths.max(1), Ordering::Relaxed);
    }
    fn warn(&self, message: &str) {
        self.bar
            .suspend(|| eprintln!("hashsweep: warning: {message}"));
    }
    fn note(&self, message: &str) {
        self.bar.suspend(|| eprintln!("hashsweep: {message}"));
    }
    fn finish(&self) {
        if let Ok(mut live) = LIVE.lock() {
            *live = None;
        }
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_counts_at_once_and_waiting_digests_show() {
        let p = BarProgress::with_target(ProgressDrawTarget::hidden());
        p.file_done(10);
        p.lookups(1, 4);
        let line = p.counters().line(Duration::from_secs(1));
        assert!(line.starts_with("1 paths (walking), 10 B hashed"), "{line}");
        assert!(line.contains("lookups 1/4, 3 waiting"), "{line}");
        assert!(!line.contains("ETA"), "no estimate while walking: {line}");
        let offline = BarProgress::with_target(ProgressDrawTarget::hidden());
        offline.file_done(1);
        let line = offline.counters().line(Duration::from_secs(1));
        assert!(!line.contains("lookups"), "{line}");
    }

    #[test]
    fn the_estimate_appears_once_the_walk_is_done() {
        let p = BarProgress::with_target(ProgressDrawTarget::hidden());
        for _ in 0..25 {
            p.file_done(0);
        }
        p.lookups(10, 10);
        p.walk_done(100);
        // 25 paths in 10 s: 75 more take 30 s.
        let line = p.counters().line(Duration::from_secs(10));
        assert!(line.starts_with("25/100 paths"), "{line}");
        assert!(line.ends_with("ETA 0:30"), "{line}");
        // The lookups are behind: 40 waiting at 10 per 10 s.
        p.lookups(10, 50);
        let line = p.counters().line(Duration::from_secs(10));
        assert!(
            line.ends_with("40 waiting (0 in flight), ETA 0:40"),
            "{line}"
        );
    }

    #[test]
    fn lookups_in_flight_show_among_those_waiting() {
        let p = BarProgress::with_target(ProgressDrawTarget::hidden());
        p.file_done(10);
        p.lookups(2, 10);
        // The lookup workers keep the count the display hands them.
        let in_flight = p.in_flight().expect("the line shows lookups in flight");
        in_flight.store(5, Ordering::Relaxed);
        let line = p.counters().line(Duration::from_secs(1));
        assert!(
            line.contains("lookups 2/10, 8 waiting (5 in flight)"),
            "{line}"
        );
        // Answered: none in flight, the rest still waiting (a batch filling, a held plan).
        in_flight.store(0, Ordering::Relaxed);
        p.lookups(4, 10);
        let line = p.counters().line(Duration::from_secs(1));
        assert!(
            line.contains("lookups 4/10, 6 waiting (0 in flight)"),
            "{line}"
        );
        // Nothing waiting: nothing more to say.
        p.lookups(10, 10);
        let line = p.counters().line(Duration::from_secs(1));
        assert!(line.ends_with("lookups 10/10"), "{line}");
    }

    #[test]
    fn eta_needs_a_rate_and_is_zero_when_done() {
        let s = Duration::from_secs(5);
        assert_eq!(eta(0, 10, 0, 0, s), None);
        assert_eq!(eta(10, 10, 3, 3, s), Some(Duration::ZERO));
        assert_eq!(eta(10, 10, 0, 3, s), None);
        assert_eq!(clock(Duration::from_secs(3723)), "1:02:03");
    }
}
