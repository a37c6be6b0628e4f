//! What `--yara` rules said of a file, as the report carries it: one [`RuleHit`] per matching
//! rule, shaped like an element of `yr scan --output-format ndjson`'s `rules` with the rule's
//! `namespace:identifier` first. Plain data: the scan converts yara-x's matches into it, so
//! this crate needs no YARA engine.

use serde::{Deserialize, Serialize};

/// One matching rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleHit {
    /// `namespace:identifier` (the namespace is the rule file's stem).
    pub rule: String,
    pub identifier: String,
    pub namespace: String,
    /// `[[key, value], ...]` in the rule's order, as `yr` writes it.
    pub meta: serde_json::Value,
    pub tags: Vec<String>,
    /// The first matches: `[{identifier, offset, match}, ...]`, as `yr -s` writes them.
    pub strings: serde_json::Value,
    /// Matches left out after the first ones.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub strings_omitted: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl RuleHit {
    /// The first string value of the metadata `key` (`description`, `author`, `reference`).
    pub fn meta_str(&self, key: &str) -> Option<&str> {
        self.meta.as_array()?.iter().find_map(|kv| {
            let kv = kv.as_array()?;
            (kv.first()?.as_str()? == key)
                .then(|| kv.get(1)?.as_str())
                .flatten()
        })
    }
}

/// The rule names of `hits`, `;`-separated (the CSV cell and the table's column).
pub fn names(hits: &[RuleHit]) -> String {
    let names: Vec<&str> = hits.iter().map(|h| h.rule.as_str()).collect();
    names.join(";")
}
