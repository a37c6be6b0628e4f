//! Endpoint tokens: who may ask the gateway.
//!
//! The tokens file has one `NAME TOKEN` or `NAME sha256:HEX` per line (`#` comments and blank
//! lines are ignored), so the file need not hold the secrets themselves. Tokens are kept only as
//! SHA-256 digests; a presented token is hashed and looked up, and only its NAME ever reaches a
//! log line or a metric label. The digest of the empty string is refused (it would let an empty
//! `apikey` in), and an empty token never names anyone.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest as _, Sha256};

/// Why the tokens file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TokensError {
    #[error("cannot read the tokens file {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {what}")]
    Line {
        path: PathBuf,
        line: usize,
        what: String,
    },
    #[error("{0}: no tokens (every request would be refused)")]
    Empty(PathBuf),
}

/// The known tokens, by SHA-256 of the token.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    by_digest: HashMap<[u8; 32], Arc<str>>,
}

impl Tokens {
    pub fn load(path: &Path) -> Result<Tokens, TokensError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokensError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let tokens = Tokens::parse(&text).map_err(|(line, what)| TokensError::Line {
            path: path.to_path_buf(),
            line,
            what,
        })?;
        if tokens.by_digest.is_empty() {
            return Err(TokensError::Empty(path.to_path_buf()));
        }
        Ok(tokens)
    }

    /// Parse the file's text. Errors are `(line number, what is wrong)` and never quote the
    /// token itself.
    pub fn parse(text: &str) -> Result<Tokens, (usize, String)> {
        let mut by_digest = HashMap::new();
        let mut names = std::collections::HashSet::new();
        for (i, raw) in text.lines().enumerate() {
            let n = i + 1;
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut parts = line.split_whitespace();
            let (Some(name), Some(secret), None) = (parts.next(), parts.next(), parts.next())
            else {
                return Err((n, "expected `NAME TOKEN` or `NAME sha256:HEX`".into()));
            };
            let digest = match secret.strip_prefix("sha256:") {
                Some(hex) => hashsweep_core::digest::decode_hex::<32>(hex.as_bytes())
                    .ok_or((n, "sha256: must be followed by 64 hex digits".to_string()))?,
                None if secret.len() < 16 => {
                    return Err((
                        n,
                        format!("the token for '{name}' is shorter than 16 characters"),
                    ));
                }
                None => Sha256::digest(secret.as_bytes()).into(),
            };
            if digest == <[u8; 32]>::from(Sha256::digest(b"")) {
                return Err((
                    n,
                    format!("the token for '{name}' is the SHA-256 of the empty string"),
                ));
            }
            if !names.insert(name.to_string()) {
                return Err((n, format!("the name '{name}' is used twice")));
            }
            if by_digest.insert(digest, Arc::from(name)).is_some() {
                return Err((
                    n,
                    format!("the token for '{name}' is used by another name too"),
                ));
            }
        }
        Ok(Tokens { by_digest })
    }

    /// The name of the holder of `token`, if it is known.
    pub fn name_of(&self, token: &[u8]) -> Option<Arc<str>> {
        if token.is_empty() {
            return None;
        }
        let d: [u8; 32] = Sha256::digest(token).into();
        self.by_digest.get(&d).cloned()
    }

    pub fn len(&self) -> usize {
        self.by_digest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_hashed_tokens_both_name_their_holder() {
        let hashed = hashsweep_core::digest::hex_lower(&Sha256::digest(b"laptop-token-0123456789"));
        let t = Tokens::parse(&format!(
            "# fleet\n\nweb01 web01-token-abcdef123456\nlaptop sha256:{}\n",
            hashed.to_ascii_uppercase()
        ))
        .unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(
            t.name_of(b"web01-token-abcdef123456").as_deref(),
            Some("web01")
        );
        assert_eq!(
            t.name_of(b"laptop-token-0123456789").as_deref(),
            Some("laptop")
        );
        assert_eq!(t.name_of(b"laptop"), None);
        assert_eq!(t.name_of(b""), None);
    }

    #[test]
    fn bad_lines_are_refused_with_their_number_and_without_the_token() {
        let e = Tokens::parse("a aaaaaaaaaaaaaaaaaaaa\nb tiny1\n").unwrap_err();
        assert_eq!(e.0, 2);
        assert!(!e.1.contains("tiny1"), "{}", e.1);
        assert_eq!(Tokens::parse("a sha256:abc").unwrap_err().0, 1);
        // A sign is not a hex digit (`u8::from_str_radix` would take "+f").
        let signed = format!("a sha256:+f{}", "0".repeat(62));
        assert_eq!(Tokens::parse(&signed).unwrap_err().0, 1);
        assert_eq!(Tokens::parse("onlyname").unwrap_err().0, 1);
        assert_eq!(
            Tokens::parse("a tok-aaaaaaaaaaaaaaaa\na tok-bbbbbbbbbbbbbbbb")
                .unwrap_err()
                .0,
            2
        );
        let e = Tokens::parse("a tok-aaaaaaaaaaaaaaaa\nb tok-aaaaaaaaaaaaaaaa").unwrap_err();
        assert!(e.1.contains("another name"), "{}", e.1);
    }

    #[test]
    fn an_empty_token_names_nobody_even_if_its_digest_were_known() {
        let mut t = Tokens::default();
        t.by_digest
            .insert(Sha256::digest(b"").into(), Arc::from("ghost"));
        assert_eq!(t.name_of(b""), None);
    }

    #[test]
    fn the_digest_of_the_empty_string_is_refused_with_its_line() {
        let empty = hashsweep_core::digest::hex_lower(&Sha256::digest(b""));
        for hex in [empty.clone(), empty.to_ascii_uppercase()] {
            let text = format!("# fleet\nweb01 web01-token-abcdef123456\nghost sha256:{hex}\n");
            let e = Tokens::parse(&text).unwrap_err();
            assert_eq!(e.0, 3, "{}", e.1);
            assert!(e.1.contains("empty string"), "{}", e.1);
        }
    }
}
