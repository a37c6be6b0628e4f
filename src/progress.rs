//! Progress display: a live line on stderr when it is a terminal, nothing otherwise.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// What the pipeline reports as it goes. Implementations must be cheap: called once per file.
pub trait Progress: Sync {
    fn file_done(&self, bytes: u64);
    fn lookups(&self, done: u64, asked: u64);
    /// Something the user should know now, once (the run goes on): one line on stderr.
    fn warn(&self, message: &str);
    /// What the run is doing and why (the lookup plan): one line on stderr.
    fn note(&self, message: &str);
    fn finish(&self);
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

/// A spinner line: files, bytes, lookups done.
pub struct BarProgress {
    bar: ProgressBar,
    files: AtomicU64,
    bytes: AtomicU64,
    done: AtomicU64,
    asked: AtomicU64,
}

impl BarProgress {
    pub fn new() -> BarProgress {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(10));
        bar.set_style(
            ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(Duration::from_millis(100));
        BarProgress {
            bar,
            files: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            done: AtomicU64::new(0),
            asked: AtomicU64::new(0),
        }
    }

    fn refresh(&self) {
        self.bar.set_message(format!(
            "{} files, {} hashed, lookups {}/{}",
            self.files.load(Ordering::Relaxed),
            crate::report::human_bytes(self.bytes.load(Ordering::Relaxed)),
            self.done.load(Ordering::Relaxed),
            self.asked.load(Ordering::Relaxed),
        ));
    }
}

impl Default for BarProgress {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress for BarProgress {
    fn file_done(&self, bytes: u64) {
        let n = self.files.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        if n.is_multiple_of(64) {
            self.refresh();
        }
    }
    fn lookups(&self, done: u64, asked: u64) {
        self.done.store(done, Ordering::Relaxed);
        self.asked.store(asked, Ordering::Relaxed);
        self.refresh();
    }
    fn warn(&self, message: &str) {
        self.bar
            .suspend(|| eprintln!("hashsweep: warning: {message}"));
    }
    fn note(&self, message: &str) {
        self.bar.suspend(|| eprintln!("hashsweep: {message}"));
    }
    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
