//! The compiled-rules cache, so a nightly run does not recompile thousands of rules: one file
//! per rule set in a directory the caller names, and [`load_cached`], which uses it or compiles.
//!
//! - **Key**: SHA-256 over the yara-x version, this crate's yara-x features, the global names,
//!   and every rule file's `--yara` argument index, relative path, namespace and SHA-256 (see
//!   [`key`]). Any change to a rule file, its place, or the engine makes a new key; the file is
//!   `rules-<key>.yarac`.
//! - **File**: `HSYARAC1`, then the SHA-256 of the payload, then the payload (yara-x's
//!   `Rules::serialize`). yara-x warns that deserializing bytes it did not write may panic while
//!   scanning, so the digest is checked before the payload is handed to it: a file that is cut
//!   short, altered, or from another format is recompiled over, never trusted.
//! - Writing goes through a temporary file in the same directory and a rename, so a reader sees
//!   the old file or the whole new one. A failed write is reported, not fatal.
//! - Old keys' files are left in the directory (another job may share it with other rules).

use std::path::{Path, PathBuf};
use std::time::Instant;

use sha2::{Digest as _, Sha256};

use crate::load::{LoadError, Loaded, RuleSource, collect_sources, compile};
use crate::{CacheStatus, GLOBALS, YARA_X_FEATURES, YARA_X_VERSION};

/// The first bytes of a cache file (its format version is the `1`).
const MAGIC: &[u8; 8] = b"HSYARAC1";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The cache key of a rule set (see the module documentation).
pub fn key(sources: &[RuleSource]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"hashsweep-yara compiled rules\n");
    h.update(format!(
        "yara-x {YARA_X_VERSION}\nfeatures {YARA_X_FEATURES}\n"
    ));
    h.update(format!("globals {}\n", GLOBALS.join(",")));
    for s in sources {
        h.update(format!(
            "{}\t{}\t{}\t{}\n",
            s.arg,
            s.relative,
            s.namespace,
            hex(&s.sha256)
        ));
    }
    h.finalize().into()
}

/// The cache file for `key` in `dir`.
pub fn cache_file(dir: &Path, key: &[u8; 32]) -> PathBuf {
    dir.join(format!("rules-{}.yarac", hex(key)))
}

/// The payload of a cache file whose digest checks out, or why not.
fn verified(bytes: &[u8]) -> Result<&[u8], String> {
    let header = MAGIC.len() + 32;
    if bytes.len() < header || &bytes[..MAGIC.len()] != MAGIC {
        return Err("not a hashsweep compiled-rules file".into());
    }
    let (digest, payload) = bytes[MAGIC.len()..].split_at(32);
    if Sha256::digest(payload).as_slice() != digest {
        return Err("its digest does not match its contents".into());
    }
    Ok(payload)
}

/// Writes `payload` to `file` through a temporary file and a rename.
fn store(file: &Path, payload: &[u8]) -> std::io::Result<()> {
    let dir = file.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut bytes = Vec::with_capacity(MAGIC.len() + 32 + payload.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&Sha256::digest(payload));
    bytes.extend_from_slice(payload);
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, &bytes)
        .and_then(|()| std::fs::rename(&tmp, file))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
}

/// Loads the rules of `paths` (`--yara` arguments): from `cache_dir` when it holds this rule
/// set's compiled form, else compiled (and stored there). Compile errors are returned whatever
/// the cache holds, since a cache file exists only for rules that compiled.
pub fn load_cached(paths: &[PathBuf], cache_dir: Option<&Path>) -> Result<Loaded, LoadError> {
    let sources = collect_sources(paths)?;
    let start = Instant::now();
    let file = cache_dir.map(|dir| cache_file(dir, &key(&sources)));
    let mut rejected = None;
    if let Some(file) = &file {
        match std::fs::read(file) {
            Ok(bytes) => match verified(&bytes)
                .and_then(|p| yara_x::Rules::deserialize(p).map_err(|e| e.to_string()))
            {
                Ok(rules) => {
                    return Ok(Loaded {
                        rule_count: rules.iter().len(),
                        warnings: rules.warnings().iter().map(|w| w.to_string()).collect(),
                        rules,
                        files: sources.len(),
                        elapsed: start.elapsed(),
                        cache: CacheStatus::Hit { file: file.clone() },
                    });
                }
                Err(reason) => rejected = Some(reason),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => rejected = Some(format!("reading it: {e}")),
        }
    }
    let (rules, warnings) = compile(&sources)?;
    let elapsed = start.elapsed();
    let cache = match file {
        None => CacheStatus::Off,
        Some(file) => {
            let write_error = match rules.serialize() {
                Ok(payload) => store(&file, &payload)
                    .err()
                    .map(|e| format!("writing {}: {e}", file.display())),
                Err(e) => Some(format!("serializing the rules: {e}")),
            };
            match rejected {
                None => CacheStatus::Miss { file, write_error },
                Some(reason) => CacheStatus::Rejected {
                    file,
                    reason,
                    write_error,
                },
            }
        }
    };
    Ok(Loaded {
        rule_count: rules.iter().len(),
        rules,
        files: sources.len(),
        elapsed,
        cache,
        warnings,
    })
}
