//! YARA rule matching for hashsweep, on top of `yara-x` (VirusTotal's YARA in Rust): loading and
//! compiling rule files ([`load`]), the compiled-rules cache ([`cache`]), the matcher a worker
//! thread owns and feeds with the buffers it hashes ([`matcher`]), and the match record, shaped
//! like `yr scan --output-format ndjson` ([`record`]).
//!
//! This crate depends on no other hashsweep crate (a layer just above core): the scan pipeline
//! calls it (`hashsweep_scan::rules`, the `yara` feature) for `scan --yara`.
//!
//! # yara-x features
//! `default-features = false`, then only what a file sweep's rule sets use:
//! - kept: `constant-folding`, `exact-atoms`, `fast-regexp` (matching speed and exactness, no
//!   extra dependencies) and the modules `pe`, `dotnet` and `hash` (YARA-Forge core imports these
//!   three), `elf` and `macho` (Linux and macOS executables, the other two platforms hashsweep
//!   sweeps), `math` (entropy rules; pdfalyzer's rules import it), `string`, `time` and
//!   `console` (no dependencies of their own).
//! - left out: `vt` (VirusTotal Livehunt metadata, only meaningful inside VirusTotal; brings the
//!   public-suffix list), `cuckoo` (reads a sandbox report, which a sweep has none of; yara-x
//!   discourages it), `crx`, `dex`, `lnk` and `zip` (no common rule set relies on them;
//!   hashsweep opens archives itself), and `generate-proto-code` (yara-x then uses its
//!   pre-generated protobuf code instead of building protobuf-codegen at build time).
//!
//! A rule importing a module left out fails to load with [`LoadError::ModuleLeftOut`], naming it.

use std::path::PathBuf;

use serde::Serialize;

pub mod cache;
pub mod load;
pub mod matcher;
pub mod record;

pub use cache::load_cached;
pub use load::{CompileDiagnostic, LoadError, Loaded, RuleSource, collect_sources, compile};
pub use matcher::{DEFAULT_MAX_SIZE, FileGlobals, Matcher, NotMatched, Outcome};
pub use record::{MAX_MATCH_BYTES, MAX_STRINGS_PER_RULE, RuleMatch, StringMatch};

/// The yara-x version this crate is built with (the `=` pin in its Cargo.toml).
pub const YARA_X_VERSION: &str = yara_x::VERSION;

/// The yara-x features enabled in Cargo.toml, in the cache key: rules compiled by a build with
/// other modules are not reused.
pub const YARA_X_FEATURES: &str = "constant-folding,exact-atoms,fast-regexp,console-module,\
dotnet-module,elf-module,hash-module,macho-module,math-module,pe-module,string-module,time-module";

/// The modules this build has (what `import "..."` may name).
pub const MODULES: &[&str] = &[
    "console", "dotnet", "elf", "hash", "macho", "math", "pe", "string", "time",
];

/// The per-file global variables (external variables in YARA 4 terms) every rule may use, the
/// signature-base / Loki convention: defined as empty strings before any rule is compiled, and
/// set for each file by [`Matcher::begin`].
pub const GLOBALS: &[&str] = &["filename", "filepath", "extension", "filetype", "owner"];

/// Where the rules came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "cache", rename_all = "snake_case")]
pub enum CacheStatus {
    /// No cache directory: compiled.
    Off,
    /// Loaded from `file`.
    Hit { file: PathBuf },
    /// No cache file for this key: compiled, and stored unless `write_error`.
    Miss {
        file: PathBuf,
        #[serde(skip_serializing_if = "Option::is_none")]
        write_error: Option<String>,
    },
    /// The cache file could not be used (`reason`): compiled, and stored over it unless
    /// `write_error`.
    Rejected {
        file: PathBuf,
        reason: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        write_error: Option<String>,
    },
}

impl CacheStatus {
    /// The rules were loaded from the cache, not compiled.
    pub fn from_cache(&self) -> bool {
        matches!(self, Self::Hit { .. })
    }
}
