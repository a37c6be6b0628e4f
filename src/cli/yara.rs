//! The `--yara` flags of `scan`, and `yara-check`'s arguments. They exist in every build; one
//! without the `yara` cargo feature refuses them (exit 2) instead of ignoring rules it was given.

use std::path::PathBuf;

use clap::Args;

use super::{Common, help, parse_size};

/// `scan --yara` and its limits.
#[derive(Debug, Clone, Args)]
pub struct YaraArgs {
    /// YARA rules matched on every file's bytes as they are hashed (no second read): a rule
    /// file, or a folder of *.yar/*.yara (repeatable). A match with no detection by the service
    /// is suspicious and exit status 1. Every file is then read (the digest cache answers none)
    #[arg(long = "yara", id = "yara", value_name = "PATH", help_heading = "YARA")]
    pub paths: Vec<PathBuf>,
    /// Files larger than this are hashed but not matched (the record's note says so)
    #[arg(
        long,
        value_name = "SIZE",
        default_value = help::size_text(hashsweep_yara_max_size()),
        value_parser = parse_size,
        help_heading = "YARA"
    )]
    pub yara_max_size: u64,
    /// Matching one file stops after this many whole seconds (0: never); the record's note
    /// says so
    #[arg(long, value_name = "SECS", default_value_t = 60, help_heading = "YARA")]
    pub yara_timeout: u64,
}

/// The matcher's default size cap (64 MiB, the crate's `DEFAULT_MAX_SIZE`; the same number in
/// a build without the crate, so the flag reads the same everywhere).
pub const fn hashsweep_yara_max_size() -> u64 {
    64 << 20
}

/// `yara-check`: compile rules and say what they hold.
#[derive(Debug, Args)]
pub struct YaraCheckArgs {
    /// Rule files, or folders of *.yar/*.yara
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    #[command(flatten)]
    pub common: Common,
}
