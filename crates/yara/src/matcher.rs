//! The matcher a worker thread owns for its lifetime: one yara-x `Scanner` (not `Send`, so it
//! stays on the thread that made it; the `Rules` it borrows are `Send + Sync` and shared), and
//! one reusable buffer filled with the same blocks the hasher reads.
//!
//! Per file: [`Matcher::begin`] with the file's globals, [`Matcher::feed`] with every block as it
//! is hashed, [`Matcher::finish`] for the [`Outcome`]. The whole file is matched in one
//! `Scanner::scan` of the buffer, so `filesize`, `uint32(0)`, `pe.*` and patterns across block
//! boundaries mean what they mean to `yr` (yara-x's block scanner would lose them). Files are
//! never memory-mapped (another process truncating a mapped file kills the reader with SIGBUS)
//! and never re-read: the file is read once, by the caller.
//!
//! A file larger than the size cap is not matched: the buffer stops growing at the cap and the
//! outcome says "too big" with the size and the cap. Each worker therefore holds at most the cap
//! in memory (its buffer keeps its capacity between files, so small files cost no allocation).

use std::time::Duration;

use serde::Serialize;
use yara_x::errors::ScanError;

use crate::record::RuleMatch;

/// Default size cap: 64 MiB. Files above it are hashed but not matched. Malware that rules
/// target is nearly always far smaller (executables, scripts, documents); the cap bounds memory
/// (one buffer per worker: 64 MiB × workers at worst) and time (yara-x matches roughly
/// 250 MB/s on one core, so a capped file costs about a quarter second). Loki-RS skips files
/// above 64,000,000 bytes by default; `yr` has no default cap.
pub const DEFAULT_MAX_SIZE: usize = 64 * 1024 * 1024;

/// The per-file globals (see [`crate::GLOBALS`]), as signature-base and Loki rules expect them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileGlobals<'a> {
    /// The file's name, e.g. `setup.exe`.
    pub filename: &'a str,
    /// The folder holding it (Loki's convention: the path without the file name).
    pub filepath: &'a str,
    /// The extension without the dot, as the name spells it (`exe`), or empty.
    pub extension: &'a str,
    /// The file type by magic bytes (Loki's names, e.g. `EXE`), or empty when unknown.
    pub filetype: &'a str,
    /// The owner's name, or empty.
    pub owner: &'a str,
}

/// Why a file was not matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum NotMatched {
    /// `size` bytes were fed, more than the `cap`.
    TooBig { size: u64, cap: u64 },
    /// Matching took longer than the per-file timeout.
    Timeout { seconds: u64 },
    /// yara-x failed (for example setting a global); its message.
    Error { message: String },
}

/// What matching one file gave.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    /// These rules matched (never empty).
    Matched { rules: Vec<RuleMatch> },
    /// Matched, and no rule did.
    NoMatch,
    /// Not matched, for `reason`.
    NotMatched {
        #[serde(flatten)]
        reason: NotMatched,
    },
}

/// A worker's matcher (see the module documentation).
pub struct Matcher<'r> {
    scanner: yara_x::Scanner<'r>,
    buf: Vec<u8>,
    cap: usize,
    timeout_secs: u64,
    /// Bytes fed since `begin`.
    seen: u64,
    too_big: bool,
    globals_error: Option<String>,
}

impl<'r> Matcher<'r> {
    /// A matcher for `rules`: files above `max_size` bytes are not matched, and matching one
    /// file stops after `timeout_secs` seconds (0: no timeout).
    pub fn new(rules: &'r yara_x::Rules, max_size: usize, timeout_secs: u64) -> Self {
        let mut scanner = yara_x::Scanner::new(rules);
        if timeout_secs > 0 {
            scanner.set_timeout(Duration::from_secs(timeout_secs));
        }
        Self {
            scanner,
            buf: Vec::new(),
            cap: max_size,
            timeout_secs,
            seen: 0,
            too_big: false,
            globals_error: None,
        }
    }

    /// The size cap.
    pub fn max_size(&self) -> usize {
        self.cap
    }

    /// Starts a file: forgets the previous one's bytes and sets the globals.
    pub fn begin(&mut self, globals: &FileGlobals<'_>) {
        self.buf.clear();
        self.seen = 0;
        self.too_big = false;
        self.globals_error = None;
        let values = [
            ("filename", globals.filename),
            ("filepath", globals.filepath),
            ("extension", globals.extension),
            ("filetype", globals.filetype),
            ("owner", globals.owner),
        ];
        for (name, value) in values {
            if let Err(e) = self.scanner.set_global(name, value) {
                self.globals_error
                    .get_or_insert_with(|| format!("setting the global `{name}`: {e}"));
            }
        }
    }

    /// The next block of the file, in order.
    pub fn feed(&mut self, block: &[u8]) {
        self.seen += block.len() as u64;
        if self.too_big {
            return;
        }
        if self.buf.len() + block.len() > self.cap {
            self.too_big = true;
            self.buf.clear();
            return;
        }
        self.buf.extend_from_slice(block);
    }

    /// Matches a whole file held by the caller (the bytes its reads kept, at most the cap),
    /// with its globals: [`Self::begin`], [`Self::feed`] and [`Self::finish`] in one, without
    /// copying the bytes into this matcher's buffer.
    pub fn scan_whole(&mut self, globals: &FileGlobals<'_>, data: &[u8]) -> Outcome {
        self.begin(globals);
        if data.len() > self.cap {
            return Outcome::NotMatched {
                reason: NotMatched::TooBig {
                    size: data.len() as u64,
                    cap: self.cap as u64,
                },
            };
        }
        if let Some(message) = self.globals_error.take() {
            return Outcome::NotMatched {
                reason: NotMatched::Error { message },
            };
        }
        self.scan(data)
    }

    fn scan(&mut self, data: &[u8]) -> Outcome {
        match self.scanner.scan(data) {
            Ok(results) => {
                let rules: Vec<RuleMatch> = results
                    .matching_rules()
                    .map(|r| RuleMatch::from_rule(&r))
                    .collect();
                if rules.is_empty() {
                    Outcome::NoMatch
                } else {
                    Outcome::Matched { rules }
                }
            }
            Err(ScanError::Timeout) => Outcome::NotMatched {
                reason: NotMatched::Timeout {
                    seconds: self.timeout_secs,
                },
            },
            Err(e) => Outcome::NotMatched {
                reason: NotMatched::Error {
                    message: e.to_string(),
                },
            },
        }
    }

    /// Matches the file fed since [`Self::begin`].
    pub fn finish(&mut self) -> Outcome {
        let outcome = if self.too_big {
            Outcome::NotMatched {
                reason: NotMatched::TooBig {
                    size: self.seen,
                    cap: self.cap as u64,
                },
            }
        } else if let Some(message) = self.globals_error.take() {
            Outcome::NotMatched {
                reason: NotMatched::Error { message },
            }
        } else {
            let buf = std::mem::take(&mut self.buf);
            let outcome = self.scan(&buf);
            self.buf = buf;
            outcome
        };
        self.buf.clear();
        self.seen = 0;
        self.too_big = false;
        outcome
    }
}
