//! Verdict words and the mapping from MetaDefender's `scan_result_i` code table to them
//! (see `shared/reference/result-codes.md`). The words are a contract scripts rely on.

use std::fmt;

/// The verdict for one path in a report.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Verdict {
    Clean,
    Infected,
    Suspicious,
    /// Not known to the service (code 5).
    Unknown,
    /// The rest of the code table: `other:<name>`.
    Other(String),
    /// File unreadable, or the lookup failed for good.
    Error,
    /// Not hashed: special file, symlink not followed, or over `--max-size`.
    Skipped,
    /// Hashed, but no lookup was made (`--offline`).
    NotLookedUp,
    /// In a `--known-good` hash set: not sent to the service.
    KnownGood,
    /// Not asked in this run: the lookup budget went to digests that matter more (or the
    /// key's daily budget is spent). A later run asks it first.
    Deferred,
}

impl Verdict {
    /// Verdict for an overall `scan_result_i` code and `total_detected_avs` count.
    ///
    /// A detection count above zero is a detection even when the code looks clean.
    ///
    /// ```
    /// use hashsweep_lookup::Verdict;
    /// assert_eq!(Verdict::from_code(0, Some(0)).to_string(), "clean");
    /// assert_eq!(Verdict::from_code(5, Some(-1)).to_string(), "unknown");
    /// assert_eq!(Verdict::from_code(0, Some(3)).to_string(), "suspicious");
    /// assert_eq!(Verdict::from_code(255, None).to_string(), "other:in_progress");
    /// ```
    pub fn from_code(code: i64, total_detected_avs: Option<i64>) -> Verdict {
        let v = match code {
            0 => Verdict::Clean,
            1 | 8 => Verdict::Infected,
            2 | 21 | 22 => Verdict::Suspicious,
            5 => Verdict::Unknown,
            other => Verdict::Other(code_name(other)),
        };
        match (v, total_detected_avs) {
            (Verdict::Clean | Verdict::Other(_), Some(n)) if n > 0 => Verdict::Suspicious,
            (v, _) => v,
        }
    }

    /// Whether a detection count can change the verdict of `code` (a clean-looking code with
    /// detections is suspicious). When it cannot (unknown, infected, suspicious), an answer
    /// without a count still has its verdict.
    ///
    /// ```
    /// use hashsweep_lookup::Verdict;
    /// assert!(Verdict::count_matters(0));
    /// assert!(!Verdict::count_matters(5));
    /// assert!(!Verdict::count_matters(1));
    /// ```
    pub fn count_matters(code: i64) -> bool {
        Verdict::from_code(code, Some(0)) != Verdict::from_code(code, Some(1))
    }

    /// Infected or suspicious: what makes the exit status 1.
    pub fn is_detection(&self) -> bool {
        matches!(self, Verdict::Infected | Verdict::Suspicious)
    }

    /// Sort rank for the table: detections first, then problems, then the rest.
    pub fn rank(&self) -> u8 {
        match self {
            Verdict::Infected => 0,
            Verdict::Suspicious => 1,
            Verdict::Error => 2,
            Verdict::Deferred => 3,
            Verdict::Other(_) => 4,
            Verdict::Unknown => 5,
            Verdict::Skipped => 6,
            Verdict::NotLookedUp => 7,
            Verdict::Clean => 8,
            Verdict::KnownGood => 9,
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Clean => f.write_str("clean"),
            Verdict::Infected => f.write_str("infected"),
            Verdict::Suspicious => f.write_str("suspicious"),
            Verdict::Unknown => f.write_str("unknown"),
            Verdict::Other(name) => write!(f, "other:{name}"),
            Verdict::Error => f.write_str("error"),
            Verdict::Skipped => f.write_str("skipped"),
            Verdict::NotLookedUp => f.write_str("not_looked_up"),
            Verdict::KnownGood => f.write_str("known_good"),
            Verdict::Deferred => f.write_str("deferred"),
        }
    }
}

impl serde::Serialize for Verdict {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

fn code_name(code: i64) -> String {
    match code {
        3 => "failed_to_scan".into(),
        4 => "cleaned".into(),
        6 => "quarantined".into(),
        7 => "skipped_clean".into(),
        9 => "exceeded_archive_depth".into(),
        10 => "not_scanned".into(),
        11 => "aborted".into(),
        12 => "encrypted".into(),
        13 => "exceeded_archive_size".into(),
        14 => "exceeded_archive_file_number".into(),
        15 => "password_protected".into(),
        16 => "exceeded_archive_timeout".into(),
        17 => "mismatch".into(),
        18 => "potentially_vulnerable".into(),
        19 => "canceled".into(),
        20 => "sensitive_data".into(),
        23 => "unsupported_file_type".into(),
        // 254 "In Queue" and 255 "In Progress": the file is still being scanned.
        254 | 255 => "in_progress".into(),
        n => format!("code_{n}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_table() {
        let cases = [
            (0, "clean"),
            (1, "infected"),
            (2, "suspicious"),
            (3, "other:failed_to_scan"),
            (4, "other:cleaned"),
            (5, "unknown"),
            (7, "other:skipped_clean"),
            (8, "infected"),
            (21, "suspicious"),
            (22, "suspicious"),
            (23, "other:unsupported_file_type"),
            (254, "other:in_progress"),
            (255, "other:in_progress"),
            (77, "other:code_77"),
        ];
        for (code, word) in cases {
            assert_eq!(
                Verdict::from_code(code, Some(0)).to_string(),
                word,
                "code {code}"
            );
        }
    }

    #[test]
    fn detections_override_clean_looking_codes() {
        assert_eq!(Verdict::from_code(0, Some(3)), Verdict::Suspicious);
        assert_eq!(Verdict::from_code(7, Some(1)), Verdict::Suspicious);
        assert_eq!(Verdict::from_code(5, Some(-1)), Verdict::Unknown);
        assert_eq!(Verdict::from_code(1, Some(30)), Verdict::Infected);
    }
}
