//! The limits an archive is read under (ClamAV's: bytes decompressed, bytes of a member, members,
//! time, compression ratio) and the readers that enforce them, count the compressed bytes behind
//! the decompressed ones, and hash what passes through.

use super::RATIO_FLOOR;
use crate::hashed::ArchiveOptions;
use crate::hashed::Sum;
use crate::io::IoGate;
use hashsweep_core::platform::describe_io;
use std::cell::{Cell, RefCell};
use std::io::{self, Read, Seek};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Which reader a limit belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Scope {
    /// One member, at this archive level: the member is skipped, the archive goes on.
    Member(u32),
    /// The decompressed stream of the archive at this level: the rest of it is skipped.
    Stream(u32),
    /// The whole archive on disk.
    Archive,
    Interrupted,
}

#[derive(Debug, Clone)]
pub(super) struct Limit {
    pub(super) scope: Scope,
    pub(super) why: String,
}

/// Why the reading of an archive level stopped early.
#[derive(Debug)]
pub(super) enum Stop {
    Limit(Limit),
    /// Corrupt or truncated data (the message).
    Damaged(String),
    /// Some members could not be read (the first one's message); the others were.
    MembersDamaged(String),
}

/// The limits of one archive on disk, shared by every reader of it.
pub(super) struct Budget<'a> {
    pub(super) opts: &'a ArchiveOptions,
    pub(super) stop: &'a AtomicBool,
    pub(super) deadline: Instant,
    pub(super) bytes: Cell<u64>,
    pub(super) members: Cell<u64>,
    /// The limit that failed a read (the error itself may come back wrapped by a decoder).
    pub(super) hit: RefCell<Option<Limit>>,
}

impl Budget<'_> {
    pub(super) fn fail(&self, scope: Scope, why: String) -> io::Error {
        let mut hit = self.hit.borrow_mut();
        if hit.is_none() {
            *hit = Some(Limit {
                scope,
                why: why.clone(),
            });
        }
        io::Error::other(why)
    }

    /// What stopped the read that just failed with `e`: a limit, or damage.
    pub(super) fn take(&self, e: &io::Error) -> Stop {
        match self.hit.borrow_mut().take() {
            Some(l) => Stop::Limit(l),
            None => Stop::Damaged(describe_io(e)),
        }
    }
}

/// How many compressed bytes the decompressed ones came from, for the ratio guard.
#[derive(Clone, Copy)]
pub(super) enum Packed<'c> {
    /// What a decoder has taken from its input so far.
    Counter(&'c Cell<u64>),
    /// What has been read from the archive since the member began (its compressed bytes,
    /// as they are read: a member's declared size would let a bomb run to 250 times it).
    Since(&'c Cell<u64>, u64),
    Unknown,
}

/// A reader under the limits: counts what it hands out and fails once a limit is passed.
pub(super) struct Limited<'b, R> {
    pub(super) inner: R,
    pub(super) budget: &'b Budget<'b>,
    pub(super) scope: Scope,
    pub(super) read: u64,
    /// Bytes this reader may hand out (`--archive-max-member` for a member).
    pub(super) max: u64,
    pub(super) packed: Packed<'b>,
    /// Counted against `--archive-max-bytes` (members are; the stream under them is not).
    pub(super) counted: bool,
    pub(super) failed: Option<String>,
}

impl<R: Read> Read for Limited<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(why) = &self.failed {
            return Err(io::Error::other(why.clone()));
        }
        let b = self.budget;
        let (scope, why) = if b.stop.load(Ordering::Relaxed) {
            (Scope::Interrupted, "interrupted".to_string())
        } else if Instant::now() >= b.deadline {
            (
                Scope::Archive,
                format!(
                    "took longer than --archive-timeout ({}): the rest was not read",
                    humantime::format_duration(b.opts.timeout)
                ),
            )
        } else {
            let n = self.inner.read(buf)?;
            self.read += n as u64;
            if self.counted {
                b.bytes.set(b.bytes.get() + n as u64);
            }
            let packed = match self.packed {
                Packed::Counter(c) => Some(c.get()),
                Packed::Since(c, start) => Some(c.get().saturating_sub(start)),
                Packed::Unknown => None,
            };
            if self.counted && b.bytes.get() > b.opts.max_bytes {
                (
                    Scope::Archive,
                    format!(
                        "more than --archive-max-bytes ({}) decompressed from this archive: \
                         the rest was not read",
                        crate::sizes::flag_size(b.opts.max_bytes)
                    ),
                )
            } else if self.read > self.max {
                (
                    self.scope,
                    format!(
                        "member larger than --archive-max-member ({}): not read to the end",
                        crate::sizes::flag_size(self.max)
                    ),
                )
            } else if let Some(p) = packed
                && self.read > RATIO_FLOOR
                && self.read / p.max(1) > b.opts.max_ratio
            {
                (
                    self.scope,
                    format!(
                        "compression ratio over --archive-max-ratio ({}:1; {} bytes from {p}): a \
                         possible decompression bomb, not read to the end",
                        b.opts.max_ratio, self.read
                    ),
                )
            } else {
                return Ok(n);
            }
        };
        self.failed = Some(why.clone());
        Err(b.fail(scope, why))
    }
}

/// Counts the bytes a decoder takes from its input.
pub(super) struct Counting<'c, R> {
    pub(super) inner: R,
    pub(super) n: &'c Cell<u64>,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n.set(self.n.get() + n as u64);
        Ok(n)
    }
}

impl<R: Seek> Seek for Counting<'_, R> {
    fn seek(&mut self, pos: io::SeekFrom) -> io::Result<u64> {
        self.inner.seek(pos)
    }
}

/// Hashes what passes through it (a member read by the walker of the archive inside it),
/// holding one of the run's CPU permits while it hashes.
pub(super) struct Tee<'s, R> {
    pub(super) inner: R,
    pub(super) sum: &'s mut Sum,
    pub(super) gate: &'s IoGate,
}

impl<R: Read> Read for Tee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let sum = &mut *self.sum;
        self.gate.hash(|| sum.update(&buf[..n]));
        Ok(n)
    }
}

pub(super) trait ReadSeek: Read + Seek {}
impl<T: Read + Seek> ReadSeek for T {}

/// Read until `buf` is full or the end.
pub(super) fn read_up_to(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Read to the end (what is read is hashed by the reader itself).
pub(super) fn drain(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<()> {
    loop {
        match r.read(buf) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}
