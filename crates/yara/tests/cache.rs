//! The compiled-rules cache: a miss compiles and stores, a hit loads the same rules, a changed
//! rule file is a new key, and a cut-short, altered or foreign cache file is recompiled over
//! (its digest is checked before yara-x sees it).

use std::path::{Path, PathBuf};

use hashsweep_yara::cache::{cache_file, key};
use hashsweep_yara::{CacheStatus, FileGlobals, Matcher, Outcome, collect_sources, load_cached};

fn setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let rules = d.path().join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(
        rules.join("a.yar"),
        r#"rule has_evil { strings: $a = "evil" condition: $a }"#,
    )
    .unwrap();
    std::fs::write(
        rules.join("b.yar"),
        r#"rule mz { condition: uint16(0) == 0x5a4d }"#,
    )
    .unwrap();
    let cache = d.path().join("cache");
    (d, rules, cache)
}

fn matched(rules: &yara_x::Rules, data: &[u8]) -> Vec<String> {
    let mut m = Matcher::new(rules, 1 << 20, 0);
    m.begin(&FileGlobals::default());
    m.feed(data);
    match m.finish() {
        Outcome::Matched { rules } => rules.iter().map(|r| r.name()).collect(),
        _ => Vec::new(),
    }
}

fn the_file(rules: &Path, cache: &Path) -> PathBuf {
    cache_file(
        cache,
        &key(&collect_sources(&[rules.to_path_buf()]).unwrap()),
    )
}

#[test]
fn miss_then_hit_with_the_same_rules() {
    let (_d, rules, cache) = setup();
    let first = load_cached(std::slice::from_ref(&rules), Some(&cache)).unwrap();
    let file = the_file(&rules, &cache);
    assert_eq!(
        first.cache,
        CacheStatus::Miss {
            file: file.clone(),
            write_error: None
        }
    );
    assert!(!first.cache.from_cache());
    assert!(file.is_file());
    let second = load_cached(std::slice::from_ref(&rules), Some(&cache)).unwrap();
    assert_eq!(second.cache, CacheStatus::Hit { file: file.clone() });
    assert!(second.cache.from_cache());
    assert_eq!((second.rule_count, second.files), (2, 2));
    assert_eq!(matched(&second.rules, b"MZ evil"), ["a:has_evil", "b:mz"]);
    // No cache directory: compiled every time.
    let off = load_cached(std::slice::from_ref(&rules), None).unwrap();
    assert_eq!(off.cache, CacheStatus::Off);
}

#[test]
fn a_changed_rule_file_is_another_key_and_is_compiled() {
    let (_d, rules, cache) = setup();
    load_cached(std::slice::from_ref(&rules), Some(&cache)).unwrap();
    let before = the_file(&rules, &cache);
    std::fs::write(
        rules.join("a.yar"),
        r#"rule has_good { strings: $a = "good" condition: $a }"#,
    )
    .unwrap();
    let after = the_file(&rules, &cache);
    assert_ne!(before, after);
    let loaded = load_cached(std::slice::from_ref(&rules), Some(&cache)).unwrap();
    assert!(
        matches!(loaded.cache, CacheStatus::Miss { .. }),
        "{:?}",
        loaded.cache
    );
    assert_eq!(matched(&loaded.rules, b"good evil"), ["a:has_good"]);
    // A renamed file (same bytes) is another key too: the namespace changed.
    std::fs::rename(rules.join("b.yar"), rules.join("c.yar")).unwrap();
    assert_ne!(the_file(&rules, &cache), after);
}

#[test]
fn a_corrupt_or_foreign_cache_file_is_recompiled_over() {
    let (_d, rules, cache) = setup();
    load_cached(std::slice::from_ref(&rules), Some(&cache)).unwrap();
    let file = the_file(&rules, &cache);
    let good = std::fs::read(&file).unwrap();
    let mut flipped = good.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x01;
    let cases: [(&str, Vec<u8>, &str); 4] = [
        ("cut short", good[..good.len() / 2].to_vec(), "digest"),
        ("one bit flipped", flipped, "digest"),
        ("empty", Vec::new(), "not a hashsweep"),
        (
            "yara-x's own format",
            b"YARA-X\x00\x00junk".to_vec(),
            "not a hashsweep",
        ),
    ];
    for (what, bytes, why) in cases {
        std::fs::write(&file, &bytes).unwrap();
        let loaded = load_cached(std::slice::from_ref(&rules), Some(&cache)).unwrap();
        let CacheStatus::Rejected {
            reason,
            write_error,
            ..
        } = &loaded.cache
        else {
            panic!("{what}: {:?}", loaded.cache);
        };
        assert!(reason.contains(why), "{what}: {reason}");
        assert_eq!(write_error, &None);
        assert_eq!(
            matched(&loaded.rules, b"MZ evil"),
            ["a:has_evil", "b:mz"],
            "{what}"
        );
        // Rewritten: the next load is a hit, with the same bytes as the first write.
        assert_eq!(std::fs::read(&file).unwrap(), good, "{what}");
        let again = load_cached(std::slice::from_ref(&rules), Some(&cache)).unwrap();
        assert!(again.cache.from_cache(), "{what}: {:?}", again.cache);
    }
}

#[test]
fn a_cache_that_cannot_be_written_is_reported_not_fatal() {
    let (d, rules, _) = setup();
    // The cache "directory" is a file.
    let blocked = d.path().join("blocked");
    std::fs::write(&blocked, b"").unwrap();
    let loaded = load_cached(std::slice::from_ref(&rules), Some(&blocked)).unwrap();
    // Reading `blocked/rules-….yarac` fails too (not a directory), so it is "rejected".
    let (CacheStatus::Miss { write_error, .. } | CacheStatus::Rejected { write_error, .. }) =
        &loaded.cache
    else {
        panic!("{:?}", loaded.cache);
    };
    assert!(
        write_error
            .as_deref()
            .is_some_and(|e| e.contains("writing")),
        "{write_error:?}"
    );
    assert_eq!(matched(&loaded.rules, b"evil"), ["a:has_evil"]);
}

#[test]
fn compile_errors_are_returned_even_with_a_cache() {
    let (_d, rules, cache) = setup();
    std::fs::write(rules.join("c.yar"), "rule broken { condition: }").unwrap();
    assert!(load_cached(std::slice::from_ref(&rules), Some(&cache)).is_err());
    assert!(!cache.exists() || std::fs::read_dir(&cache).unwrap().next().is_none());
}
