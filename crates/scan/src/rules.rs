//! `--yara` in a scan: the run's compiled rules ([`RuleSet`]) and the matcher each hash worker
//! makes from them for its lifetime ([`RuleSet::matcher`]), which the readers ask once per file
//! with the bytes they hashed (see [`super::hashed::MatchBytes`]). Without the `yara` feature a
//! [`RuleSet`] cannot be made, and a scan never matches.
//!
//! The globals are set per file as Loki and signature-base rules expect them: `filename` (the
//! name), `filepath` (the folder holding it, Loki's convention: not the whole path),
//! `extension` (without the dot), `filetype` (Loki's name for the magic bytes: `EXE`, `ELF`,
//! `MACHO`, `PDF`, `ZIP`, `RAR`, `7Z`, `GZIP`, `CAB`, `JAR`… or empty) and `owner` (left empty).
//! An archive member's folder is its archive's path followed by `!` and the folder inside.

#[cfg(feature = "yara")]
mod with {
    use std::path::Path;

    use crate::hashed::{Capture, MatchBytes, RulesResult};
    use hashsweep_report::rules::RuleHit;
    use hashsweep_yara::{FileGlobals, Matcher, NotMatched, Outcome, RuleMatch};

    /// The rules a run loaded, and the per-file limits.
    pub struct RuleSet {
        pub loaded: hashsweep_yara::Loaded,
        /// `--yara-max-size`: larger files are hashed but not matched.
        pub max_size: usize,
        /// `--yara-timeout`: seconds for one file (0: none).
        pub timeout_secs: u64,
    }

    impl RuleSet {
        /// A worker's matcher (make it on the worker's thread: a yara-x scanner stays there).
        pub fn matcher(&self) -> Box<dyn MatchBytes + '_> {
            Box::new(WorkerMatcher {
                matcher: Matcher::new(&self.loaded.rules, self.max_size, self.timeout_secs),
            })
        }
    }

    struct WorkerMatcher<'r> {
        matcher: Matcher<'r>,
    }

    impl MatchBytes for WorkerMatcher<'_> {
        fn cap(&self) -> usize {
            self.matcher.max_size()
        }

        fn match_capture(&mut self, path: &Path, capture: &Capture) -> RulesResult {
            let Some(bytes) = capture.bytes() else {
                return RulesResult::NotMatched(too_big(capture.seen, capture.cap as u64));
            };
            let lossy = |s: Option<&std::ffi::OsStr>| {
                s.map(|s| String::from_utf8_lossy(s.as_encoded_bytes()).into_owned())
                    .unwrap_or_default()
            };
            let filename = lossy(path.file_name());
            let filepath = lossy(path.parent().map(Path::as_os_str));
            let extension = lossy(path.extension());
            let globals = FileGlobals {
                filename: &filename,
                filepath: &filepath,
                extension: &extension,
                filetype: filetype(bytes),
                owner: "",
            };
            match self.matcher.scan_whole(&globals, bytes) {
                Outcome::Matched { rules } => {
                    RulesResult::Matched(rules.into_iter().map(hit).collect())
                }
                Outcome::NoMatch => RulesResult::NoMatch,
                Outcome::NotMatched { reason } => RulesResult::NotMatched(match reason {
                    NotMatched::TooBig { size, cap } => too_big(size, cap),
                    NotMatched::Timeout { seconds } => {
                        format!("YARA rules not matched: --yara-timeout ({seconds} s) ran out")
                    }
                    NotMatched::Error { message } => {
                        format!("YARA rules not matched: {message}")
                    }
                }),
            }
        }
    }

    fn too_big(size: u64, cap: u64) -> String {
        format!("YARA rules not matched: {size} bytes > --yara-max-size ({cap} bytes)")
    }

    /// A match as the report carries it.
    fn hit(m: RuleMatch) -> RuleHit {
        RuleHit {
            rule: m.name(),
            strings: serde_json::to_value(&m.strings).unwrap_or(serde_json::Value::Null),
            strings_omitted: m.strings_omitted as u64,
            identifier: m.identifier,
            namespace: m.namespace,
            meta: m.meta,
            tags: m.tags,
        }
    }

    /// Loki's name for a file type, from its first bytes (a subset of Loki's
    /// `file-type-signatures.txt`: the types its rules test), or empty.
    fn filetype(head: &[u8]) -> &'static str {
        const MAGIC: &[(&[u8], &str)] = &[
            (b"MZ", "EXE"),
            (b"\x7fELF", "ELF"),
            (b"\xcf\xfa\xed\xfe", "MACHO"),
            (b"\xce\xfa\xed\xfe", "MACHO"),
            (b"\xca\xfe\xba\xbe", "MACHO"),
            (b"%PDF", "PDF"),
            (b"PK\x03\x04", "ZIP"),
            (b"Rar!", "RAR"),
            (b"7z\xbc\xaf\x27\x1c", "7Z"),
            (b"\x1f\x8b", "GZIP"),
            (b"MSCF", "CAB"),
            (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "OLE"),
            (b"{\\rtf", "RTF"),
            (b"#!", "SCRIPT"),
        ];
        MAGIC
            .iter()
            .find(|(m, _)| head.starts_with(m))
            .map_or("", |(_, t)| t)
    }
}

#[cfg(feature = "yara")]
pub use with::RuleSet;

/// Without the `yara` feature: no rules can be loaded, so none is ever matched.
#[cfg(not(feature = "yara"))]
pub enum RuleSet {}

#[cfg(not(feature = "yara"))]
impl RuleSet {
    pub fn matcher(&self) -> Box<dyn super::hashed::MatchBytes + '_> {
        match *self {}
    }
}
