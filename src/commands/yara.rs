//! `scan --yara` and `hashsweep yara-check`: the rules are loaded (from the compiled-rules
//! cache beside the cache file, unless `--no-cache`) before the walk starts, so a rule that
//! does not compile stops the run (exit 2, file:line:column) before any file is read; and what
//! the summary says of them. A build without the `yara` feature refuses both.

use std::sync::Arc;

use super::*;
use crate::cli::CacheArgs;
use crate::cli::yara::{YaraArgs, YaraCheckArgs};
use hashsweep::report::YaraSummary;
use hashsweep::scan::rules::RuleSet;

/// Where the compiled rules are kept: the cache file's folder (`None` with `--no-cache`).
#[cfg(feature = "yara")]
fn rules_cache_dir(c: &CacheArgs) -> Option<PathBuf> {
    if c.no_cache {
        return None;
    }
    let file = c.cache.clone().or_else(Cache::default_path)?;
    let dir = file.parent()?.to_path_buf();
    std::fs::create_dir_all(&dir).ok()?;
    Some(dir)
}

/// `--yara`'s rules, loaded, and the summary's account of them; `None` without `--yara`.
#[cfg(feature = "yara")]
pub fn load_rules(
    a: &YaraArgs,
    cache: &CacheArgs,
) -> Result<Option<(Arc<RuleSet>, YaraSummary)>, Error> {
    if a.paths.is_empty() {
        return Ok(None);
    }
    let dir = rules_cache_dir(cache);
    let loaded = hashsweep::yara::load_cached(&a.paths, dir.as_deref())?;
    for w in &loaded.warnings {
        warn(format_args!("YARA: {w}"));
    }
    let (cache, cache_error) = match &loaded.cache {
        hashsweep::yara::CacheStatus::Off => ("off", None),
        hashsweep::yara::CacheStatus::Hit { .. } => ("hit", None),
        hashsweep::yara::CacheStatus::Miss { write_error, .. } => ("miss", write_error.clone()),
        hashsweep::yara::CacheStatus::Rejected { write_error, .. } => {
            ("rejected", write_error.clone())
        }
    };
    let summary = YaraSummary {
        rules: loaded.rule_count as u64,
        files: loaded.files as u64,
        load_secs: loaded.elapsed.as_secs_f64(),
        cache,
        cache_error,
        matched: 0,
    };
    let max_size = usize::try_from(a.yara_max_size).unwrap_or(usize::MAX);
    Ok(Some((
        Arc::new(RuleSet {
            loaded,
            max_size,
            timeout_secs: a.yara_timeout,
        }),
        summary,
    )))
}

#[cfg(not(feature = "yara"))]
pub fn load_rules(
    a: &YaraArgs,
    _cache: &CacheArgs,
) -> Result<Option<(Arc<RuleSet>, YaraSummary)>, Error> {
    match a.paths.is_empty() {
        true => Ok(None),
        false => Err(without_feature("--yara")),
    }
}

#[cfg(not(feature = "yara"))]
fn without_feature(what: &str) -> Error {
    Error::Usage(format!(
        "{what}: this hashsweep was built without YARA support (the `yara` cargo feature)"
    ))
}

/// `hashsweep yara-check PATH...`: compile (never from the cache: the point is to compile) and
/// say how many rules and files, and every warning; 0 when they compile, 2 otherwise.
#[cfg(feature = "yara")]
pub fn run_yara_check(a: YaraCheckArgs) -> Result<u8, Error> {
    let loaded = hashsweep::yara::load_cached(&a.paths, None)?;
    for w in &loaded.warnings {
        warn(format_args!("YARA: {w}"));
    }
    println!(
        "{} rules from {} files compiled in {:.2} s, {} warnings",
        loaded.rule_count,
        loaded.files,
        loaded.elapsed.as_secs_f64(),
        loaded.warnings.len()
    );
    Ok(0)
}

#[cfg(not(feature = "yara"))]
pub fn run_yara_check(_a: YaraCheckArgs) -> Result<u8, Error> {
    Err(without_feature("yara-check"))
}
