//! The I/O side of the hash stage: how many reads are in flight, apart from how many threads
//! hash, and how fast bytes may be read.
//!
//! Up to [`MAX_IO_DEPTH`] reader threads (or `--io-depth`) open and read files, but hashing a
//! block holds one of `-j` CPU permits, so no more than `-j` threads hash at once whatever the
//! depth. Only the first `depth` readers run; the rest wait parked. Without `--io-depth` the
//! depth starts at `-j` and follows what the reads meet: each read first asks the page cache
//! alone (`preadv2(RWF_NOWAIT)`), and a hit needs no help; a miss is read blocking and its time
//! counts as latency, as do an `open`/`fstat` or a read on a file system without `RWF_NOWAIT`
//! that took longer than a cached call can. Every [`WINDOW`] the depth is set by Little's law so
//! that `-j` hashers stay busy while readers wait: `-j × (cpu + blocked) / cpu` (see
//! [`next_depth`]). A warm sweep never blocks and keeps `-j` readers; a cold disk or a share
//! grows to what its latency needs, up to [`LOCAL_MAX_IO_DEPTH`] on local disks (whose latency
//! grows with their queue) and [`MAX_IO_DEPTH`] once a share is read. Memory for reads is
//! bounded by readers × [`BLOCK_SIZE`].
//!
//! `--max-io-rate` caps the bytes read per second across all readers (a GCRA token bucket from
//! `governor`, billed before each read).

use std::fs::File;
use std::io::{self, Read};
use std::num::NonZeroU32;
#[cfg(target_os = "linux")]
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use hashsweep_core::sync::lock;

/// Bytes read per `read` call.
pub const BLOCK_SIZE: usize = 1 << 20;

/// Readers at most when the depth adapts (each holds one read, of up to [`BLOCK_SIZE`]).
pub const MAX_IO_DEPTH: usize = 64;
/// The adaptive depth's ceiling while every read has come from a file system that can say
/// whether its page cache holds the data (`RWF_NOWAIT`: local disks). A local device's latency
/// grows with its queue once it is saturated, so Little's law alone would always ask for more
/// readers; past a SATA queue (32) more readers only add seeks (`benches/cold.sh`: 64 readers
/// were slower than 16 or 32 on the cold disk). A read from a file system without `RWF_NOWAIT`
/// (FUSE, NFS, SMB: a share, whose latency is the network's) lifts it to [`MAX_IO_DEPTH`].
pub const LOCAL_MAX_IO_DEPTH: usize = 32;
/// How often the adaptive depth is reconsidered.
pub const WINDOW: Duration = Duration::from_millis(20);
/// An `open` + `fstat`, or a read without `RWF_NOWAIT`, slower than this waited for the device.
const SLOW_CALL: Duration = Duration::from_micros(50);
/// The rate limiter's unit: bytes per cell (a whole-byte cell is too fine for GCRA's
/// nanosecond arithmetic at GB/s rates).
const RATE_CELL: u64 = 256;

/// How reads are issued, from the command line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoOptions {
    /// `--io-depth`: readers at once (`None`: adapt, from `-j` up to [`MAX_IO_DEPTH`]).
    pub depth: Option<usize>,
    /// `--max-io-rate`: bytes read per second at most, across all readers.
    pub max_rate: Option<u64>,
}

/// Shared by every reader of a run: CPU permits, the depth and what it is learned from, and
/// the rate cap.
pub struct IoGate {
    cpus: usize,
    readers: usize,
    fixed: bool,
    depth: AtomicUsize,
    /// The adaptive depth's ceiling: [`LOCAL_MAX_IO_DEPTH`] until a read meets a file system
    /// without `RWF_NOWAIT`, then `readers`.
    ceiling: AtomicUsize,
    /// The highest depth reached (for the summary and tests).
    peak: AtomicUsize,
    permits: Mutex<Permits>,
    permit_free: Condvar,
    parked: Mutex<()>,
    unpark: Condvar,
    epoch: Instant,
    /// Start of the current window, in ns since `epoch`.
    window_start: AtomicU64,
    /// Time spent hashing (holding a permit) and waiting for the device, this window.
    cpu_ns: AtomicU64,
    blocked_ns: AtomicU64,
    rate: Option<(DefaultDirectRateLimiter, DefaultClock)>,
}

/// The `-j` CPU permits: how many are free, and how many readers wait for one.
struct Permits {
    free: usize,
    waiting: usize,
}

/// A read's outcome for the depth: served by the page cache, or waited for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadPath {
    /// `RWF_NOWAIT` returned data: nothing was waited for.
    Cached,
    /// `RWF_NOWAIT` said the data is not cached: read blocking, timed as latency.
    Missed,
    /// The file system has no `RWF_NOWAIT` (FUSE, some network file systems): timed, and
    /// counted as latency when slower than a cached read can be.
    Unknown,
}

impl IoGate {
    /// `cpus`: hashing threads (`-j`).
    pub fn new(cpus: usize, opts: IoOptions) -> IoGate {
        let cpus = cpus.max(1);
        let (readers, fixed) = match opts.depth {
            Some(d) => (d.max(1), true),
            None => (MAX_IO_DEPTH.max(cpus), false),
        };
        let start = if fixed { readers } else { cpus.min(readers) };
        IoGate {
            cpus,
            readers,
            fixed,
            depth: AtomicUsize::new(start),
            ceiling: AtomicUsize::new(if fixed {
                readers
            } else {
                LOCAL_MAX_IO_DEPTH.max(cpus).min(readers)
            }),
            peak: AtomicUsize::new(start),
            permits: Mutex::new(Permits {
                free: cpus,
                waiting: 0,
            }),
            permit_free: Condvar::new(),
            parked: Mutex::new(()),
            unpark: Condvar::new(),
            epoch: Instant::now(),
            window_start: AtomicU64::new(0),
            cpu_ns: AtomicU64::new(0),
            blocked_ns: AtomicU64::new(0),
            rate: opts.max_rate.map(|r| {
                let per_sec = NonZeroU32::new((r / RATE_CELL).clamp(1, u32::MAX as u64) as u32)
                    .unwrap_or(NonZeroU32::MIN);
                let burst = NonZeroU32::new((BLOCK_SIZE as u64 / RATE_CELL) as u32)
                    .unwrap_or(NonZeroU32::MIN);
                (
                    RateLimiter::direct(Quota::per_second(per_sec).allow_burst(burst)),
                    DefaultClock::default(),
                )
            }),
        }
    }

    /// One reader, no permits, no cap: a lone [`super::hash::Hasher`].
    pub fn single() -> IoGate {
        IoGate::new(
            1,
            IoOptions {
                depth: Some(1),
                max_rate: None,
            },
        )
    }

    /// Reader threads to start (only `depth()` of them run at a time).
    pub fn readers(&self) -> usize {
        self.readers
    }

    /// Threads that may hash at once (`-j`).
    pub fn cpus(&self) -> usize {
        self.cpus
    }

    /// The most readers the adaptive depth may run now.
    pub fn ceiling(&self) -> usize {
        self.ceiling.load(Ordering::Relaxed)
    }

    /// Readers running now.
    pub fn depth(&self) -> usize {
        self.depth.load(Ordering::Relaxed)
    }

    /// The most readers that ran at once.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    /// Whether reader `index` may take work now.
    pub fn may_run(&self, index: usize) -> bool {
        index < self.depth()
    }

    /// Wait while reader `index` is beyond the depth, until it may run or `done()`. Returns
    /// whether it may run.
    pub fn park(&self, index: usize, done: impl Fn() -> bool) -> bool {
        let mut g = lock(&self.parked);
        loop {
            if self.may_run(index) {
                return true;
            }
            if done() {
                return false;
            }
            // The timeout only guards against a wake-up missed by a bug: `wake_all` is called
            // whenever the depth grows and when a reader finds the work drained.
            g = match self.unpark.wait_timeout(g, Duration::from_secs(1)) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    }

    /// Wake every parked reader to look again (the depth grew, or the work is drained).
    pub fn wake_all(&self) {
        let _g = lock(&self.parked);
        self.unpark.notify_all();
    }

    /// Run `f` (hashing) holding one of the `-j` CPU permits. While no more readers run than
    /// there are permits nobody can wait, and none is taken (a warm sweep pays nothing).
    pub fn hash<R>(&self, f: impl FnOnce() -> R) -> R {
        if self.readers <= self.cpus || self.depth() <= self.cpus {
            let t = Instant::now();
            let r = f();
            self.cpu_ns.fetch_add(nanos(t.elapsed()), Ordering::Relaxed);
            return r;
        }
        {
            let mut p = lock(&self.permits);
            while p.free == 0 {
                p.waiting += 1;
                p = match self.permit_free.wait(p) {
                    Ok(g) => g,
                    Err(e) => e.into_inner(),
                };
                p.waiting -= 1;
            }
            p.free -= 1;
        }
        struct Release<'a>(&'a IoGate);
        impl Drop for Release<'_> {
            fn drop(&mut self) {
                let mut p = lock(&self.0.permits);
                p.free += 1;
                if p.waiting > 0 {
                    self.0.permit_free.notify_one();
                }
            }
        }
        let _release = Release(self);
        let t = Instant::now();
        let r = f();
        self.cpu_ns.fetch_add(nanos(t.elapsed()), Ordering::Relaxed);
        r
    }

    /// An `open` + `fstat` took `took`: latency when slower than a cached call can be.
    pub fn opened(&self, took: Duration) {
        self.waited(took, 1);
    }

    /// `calls` metadata calls (`open`, `stat`) took `took` together: latency when slower than
    /// cached ones can be.
    pub fn waited(&self, took: Duration, calls: u32) {
        if took > SLOW_CALL * calls.max(1) {
            self.blocked(took);
        }
    }

    /// Read into `buf` at the file's position. `nowait`: whether to ask the page cache first
    /// (cleared for the rest of the file once the file system says it cannot).
    pub fn read(&self, file: &File, buf: &mut [u8], nowait: &mut bool) -> io::Result<usize> {
        let mut path = ReadPath::Unknown;
        if *nowait {
            match read_nowait(file, buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => path = ReadPath::Missed,
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EOPNOTSUPP | libc::ENOSYS | libc::EINVAL)
                    ) =>
                {
                    *nowait = false;
                    // A share (or a file system like one): its latency is not a device queue.
                    self.ceiling.store(self.readers, Ordering::Relaxed);
                }
                Err(e) => return Err(e),
            }
        }
        let t = Instant::now();
        let r = (&*file).read(buf);
        let took = t.elapsed();
        if path == ReadPath::Missed || took > SLOW_CALL + copy_time(buf.len()) {
            self.blocked(took);
        }
        r
    }

    /// Wait until `bytes` more may be read under `--max-io-rate`.
    pub fn throttle(&self, bytes: u64) {
        let Some((limiter, clock)) = &self.rate else {
            return;
        };
        let cells = bytes
            .div_ceil(RATE_CELL)
            .clamp(1, BLOCK_SIZE as u64 / RATE_CELL) as u32;
        let n = NonZeroU32::new(cells).unwrap_or(NonZeroU32::MIN);
        // `n` never exceeds the burst, so only the wait is an error here.
        while let Ok(Err(not_until)) = limiter.check_n(n) {
            // Throttled time is not the device's latency: it is not counted as blocked.
            std::thread::sleep(not_until.wait_time_from(clock.now()));
        }
    }

    fn blocked(&self, took: Duration) {
        self.blocked_ns.fetch_add(nanos(took), Ordering::Relaxed);
        self.tick();
    }

    /// After a read: once a window has passed, set the depth from what it observed.
    pub fn tick(&self) {
        if self.fixed {
            return;
        }
        let now = nanos(self.epoch.elapsed());
        let start = self.window_start.load(Ordering::Relaxed);
        if now.saturating_sub(start) < nanos(WINDOW)
            || self
                .window_start
                .compare_exchange(start, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let cpu = self.cpu_ns.swap(0, Ordering::Relaxed);
        let blocked = self.blocked_ns.swap(0, Ordering::Relaxed);
        let current = self.depth();
        let ceiling = self.ceiling.load(Ordering::Relaxed);
        let next = next_depth(current, self.cpus, ceiling, cpu, blocked);
        if next != current {
            tracing::debug!(
                "read depth {current} -> {next} (last {} ms: hashing {} ms, waiting for the \
                 device {} ms, summed over readers)",
                WINDOW.as_millis(),
                cpu / 1_000_000,
                blocked / 1_000_000
            );
            self.depth.store(next, Ordering::Relaxed);
            self.peak.fetch_max(next, Ordering::Relaxed);
            if next > current {
                self.wake_all();
            }
        }
    }
}

/// The depth for the next window. `cpu_ns`: time spent hashing; `blocked_ns`: time readers
/// waited for the device, both summed over readers. By Little's law, `cpus` hashers stay busy
/// when `cpus × (cpu + blocked) / cpu` readers are under way. It grows at most twofold a window
/// (one slow window is not a trend) and shrinks by a quarter (at least one) at most; never below `cpus` (with
/// nothing blocking, that is what a warm sweep runs) nor above `max`.
pub fn next_depth(current: usize, cpus: usize, max: usize, cpu_ns: u64, blocked_ns: u64) -> usize {
    let floor = cpus.min(max).max(1);
    if cpu_ns == 0 && blocked_ns == 0 {
        return current.clamp(floor, max);
    }
    let want = if blocked_ns == 0 {
        floor
    } else {
        let cpu = cpu_ns.max(1) as f64;
        let w = cpus as f64 * (cpu + blocked_ns as f64) / cpu;
        w.ceil().min(max as f64) as usize
    };
    let next = if want > current {
        want.min(current.saturating_mul(2))
    } else {
        want.max(current - (current / 4).max(1))
    };
    next.clamp(floor, max)
}

/// How long copying `len` cached bytes can take (at 2 GB/s, a slow core).
fn copy_time(len: usize) -> Duration {
    Duration::from_nanos(len as u64 / 2)
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// `preadv2(RWF_NOWAIT)` at the file's position: data only if the page cache has it, `EAGAIN`
/// if it would have to wait for the device.
#[cfg(target_os = "linux")]
fn read_nowait(file: &File, buf: &mut [u8]) -> io::Result<usize> {
    let iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: `iov` points at `buf`, which is valid for writes of `buf.len()` bytes and
    // outlives the call; the descriptor is owned by `file`. Offset -1 reads at (and advances)
    // the file position, like `read`.
    let n = unsafe { libc::preadv2(file.as_raw_fd(), &iov, 1, -1, libc::RWF_NOWAIT) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Elsewhere there is no such read: every read is timed instead (see [`ReadPath::Unknown`]).
#[cfg(not(target_os = "linux"))]
fn read_nowait(_: &File, _: &mut [u8]) -> io::Result<usize> {
    Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const MS: u64 = 1_000_000;

    /// Reads that never wait keep the depth at the hashing threads; reads that wait grow it
    /// toward what covers their latency (at most twofold a window, never past the cap), and
    /// it comes down slowly when the waiting stops.
    #[test]
    fn depth_follows_blocking_reads() {
        assert_eq!(next_depth(2, 2, 64, 40 * MS, 0), 2, "warm: no help");
        assert_eq!(next_depth(2, 2, 64, 0, 0), 2, "idle window: unchanged");
        // Blocked 3x as long as hashed: 2 x 4 = 8 readers, reached by doubling.
        assert_eq!(next_depth(2, 2, 64, 10 * MS, 30 * MS), 4);
        assert_eq!(next_depth(4, 2, 64, 10 * MS, 30 * MS), 8);
        assert_eq!(next_depth(8, 2, 64, 10 * MS, 30 * MS), 8);
        // A share: almost all waiting; capped.
        assert_eq!(next_depth(64, 2, 64, MS, 1000 * MS), 64);
        assert_eq!(next_depth(40, 2, 64, MS, 1000 * MS), 64);
        // Waiting stopped: down by a quarter a window, to the hashing threads.
        assert_eq!(next_depth(64, 2, 64, 40 * MS, 0), 48);
        assert_eq!(next_depth(3, 2, 64, 40 * MS, 0), 2);
        // --io-depth smaller than -j bounds everything.
        assert_eq!(next_depth(1, 4, 1, MS, 1000 * MS), 1);
    }

    // Linux only: RWF_NOWAIT, and procfs has none.
    #[cfg(target_os = "linux")]
    /// The adaptive depth stops at the local ceiling until a read meets a file system without
    /// `RWF_NOWAIT` (procfs stands in for a share here); a fixed `--io-depth` is its own.
    #[test]
    fn a_file_system_without_nowait_lifts_the_local_ceiling() {
        let gate = IoGate::new(2, IoOptions::default());
        assert_eq!(gate.ceiling(), LOCAL_MAX_IO_DEPTH);
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        std::fs::write(&p, b"cached").unwrap();
        let mut buf = vec![0; 4096];
        let mut nowait = true;
        gate.read(&File::open(&p).unwrap(), &mut buf, &mut nowait)
            .unwrap();
        assert!(nowait);
        assert_eq!(gate.ceiling(), LOCAL_MAX_IO_DEPTH, "a local read keeps it");
        let proc_file = File::open("/proc/self/stat").unwrap();
        gate.read(&proc_file, &mut buf, &mut nowait).unwrap();
        assert!(!nowait, "procfs has no RWF_NOWAIT");
        assert_eq!(gate.ceiling(), MAX_IO_DEPTH);
        let fixed = IoGate::new(
            2,
            IoOptions {
                depth: Some(100),
                max_rate: None,
            },
        );
        assert_eq!(fixed.ceiling(), 100);
    }

    /// However many readers run, no more than `-j` hash at once.
    #[test]
    fn hashing_holds_one_of_cpus_permits() {
        let gate = Arc::new(IoGate::new(
            2,
            IoOptions {
                depth: Some(8),
                max_rate: None,
            },
        ));
        let now = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (gate, now, most) = (Arc::clone(&gate), Arc::clone(&now), Arc::clone(&most));
                std::thread::spawn(move || {
                    for _ in 0..5 {
                        gate.hash(|| {
                            let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                            most.fetch_max(n, Ordering::SeqCst);
                            std::thread::sleep(Duration::from_millis(2));
                            now.fetch_sub(1, Ordering::SeqCst);
                        });
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 2);
    }

    /// `--max-io-rate`: 3 MiB billed at 4 MiB/s (1 MiB of burst) take at least half a second.
    #[test]
    fn rate_cap_spaces_reads() {
        let gate = IoGate::new(
            1,
            IoOptions {
                depth: None,
                max_rate: Some(4 << 20),
            },
        );
        let t = Instant::now();
        for _ in 0..3 * 4 {
            gate.throttle(256 << 10);
        }
        let took = t.elapsed();
        assert!(took >= Duration::from_millis(450), "{took:?}");
        assert!(took < Duration::from_millis(1500), "{took:?}");
    }

    /// Readers beyond the depth wait, and come out when the depth grows or the work is done.
    #[test]
    fn parked_readers_wake_when_the_depth_grows() {
        let gate = Arc::new(IoGate::new(1, IoOptions::default()));
        assert!(gate.may_run(0));
        assert!(!gate.may_run(5));
        assert!(!gate.park(5, || true), "done: leaves");
        let g = Arc::clone(&gate);
        let waiter = std::thread::spawn(move || (g.park(1, || false), Instant::now()));
        std::thread::sleep(Duration::from_millis(20));
        gate.depth.store(2, Ordering::Relaxed);
        let woken = Instant::now();
        gate.wake_all();
        let (may_run, out) = waiter.join().unwrap();
        assert!(may_run);
        // Woken, not left to the one-second guard.
        assert!(
            out - woken < Duration::from_millis(500),
            "{:?}",
            out - woken
        );
    }

    // Linux only: RWF_NOWAIT.
    #[cfg(target_os = "linux")]
    /// A file just written is in the page cache: `RWF_NOWAIT` reads it without waiting.
    #[test]
    fn cached_reads_are_not_latency() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        std::fs::write(&p, vec![7u8; 100_000]).unwrap();
        let gate = IoGate::new(2, IoOptions::default());
        let f = File::open(&p).unwrap();
        let mut buf = vec![0; BLOCK_SIZE];
        let mut nowait = true;
        let n = gate.read(&f, &mut buf, &mut nowait).unwrap();
        assert_eq!(n, 100_000);
        assert_eq!(gate.read(&f, &mut buf, &mut nowait).unwrap(), 0);
        assert_eq!(gate.blocked_ns.load(Ordering::Relaxed), 0);
    }
}
