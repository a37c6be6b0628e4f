//! The record of one matching rule, shaped like one element of `rules` in
//! `yr scan --output-format ndjson -e -m -g -s` (yara-x-cli 1.22.1, `commands/scan.rs`):
//! `identifier`, `namespace`, `meta` (an array of `[key, value]`), `tags`, and `strings`
//! (`identifier`, `offset`, `match`, and `xor_key`/`plaintext` for xor patterns), with the same
//! escaping of the matched bytes (`escape_ascii`, cut to [`MAX_MATCH_BYTES`] followed by
//! ` ... N more bytes`).
//!
//! One difference: `yr` lists every match of every pattern; a sweep's report keeps the first
//! [`MAX_STRINGS_PER_RULE`] (in `yr`'s order: pattern by pattern, each pattern's matches by
//! offset) and counts the rest in `strings_omitted` (absent when 0).

use serde::Serialize;

/// Matches kept per rule: enough to show an analyst where to look, bounded so a rule matching a
/// pattern 100 000 times in a file does not make a 10 MB report line.
pub const MAX_STRINGS_PER_RULE: usize = 10;

/// Bytes of a match shown, `yr -s`'s default.
pub const MAX_MATCH_BYTES: usize = 120;

/// One matching rule.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleMatch {
    pub identifier: String,
    pub namespace: String,
    /// `[[key, value], ...]` in the rule's order (keys may repeat), as `yr` writes it.
    pub meta: serde_json::Value,
    pub tags: Vec<String>,
    pub strings: Vec<StringMatch>,
    #[serde(skip_serializing_if = "is_zero")]
    pub strings_omitted: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// One match of one of the rule's patterns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StringMatch {
    /// The pattern, e.g. `$a`.
    pub identifier: String,
    /// Where the match starts in the file.
    pub offset: u64,
    /// The matched bytes, escaped and cut as `yr` does.
    #[serde(rename = "match")]
    pub matched: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub xor_key: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plaintext: Option<String>,
}

/// `data`'s first [`MAX_MATCH_BYTES`] bytes escaped, and how many were left out.
fn escaped(data: impl Iterator<Item = u8>, len: usize) -> String {
    let mut s: String = data
        .take(MAX_MATCH_BYTES)
        .flat_map(|b| b.escape_ascii())
        .map(char::from)
        .collect();
    if len > MAX_MATCH_BYTES {
        s.push_str(&format!(" ... {} more bytes", len - MAX_MATCH_BYTES));
    }
    s
}

impl RuleMatch {
    /// `namespace:identifier`, how a report names the rule.
    pub fn name(&self) -> String {
        format!("{}:{}", self.namespace, self.identifier)
    }

    /// The record of a rule yara-x says matched.
    pub fn from_rule(rule: &yara_x::Rule<'_, '_>) -> Self {
        let mut strings = Vec::new();
        let mut omitted = 0;
        for pattern in rule.patterns() {
            for m in pattern.matches() {
                if strings.len() == MAX_STRINGS_PER_RULE {
                    omitted += 1;
                    continue;
                }
                let data = m.data();
                strings.push(StringMatch {
                    identifier: pattern.identifier().to_string(),
                    offset: m.range().start as u64,
                    // `yr` shows the bytes as matched (xored for an xor pattern), and the
                    // plaintext next to them.
                    matched: escaped(data.iter().copied(), data.len()),
                    xor_key: m.xor_key(),
                    plaintext: m.xor_key().map(|k| escaped(data.iter().map(|b| b ^ k), 0)),
                });
            }
        }
        Self {
            identifier: rule.identifier().to_string(),
            namespace: rule.namespace().to_string(),
            meta: rule.metadata().into_json(),
            tags: rule.tags().map(|t| t.identifier().to_string()).collect(),
            strings,
            strings_omitted: omitted,
        }
    }
}
