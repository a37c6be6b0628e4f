//! The library's error type: failures that stop a whole command. Per-file and per-hash problems
//! are not errors here; they are recorded against their path or digest and reported.
//!
//! Module errors are wrapped whole (`#[from]`, `#[error(transparent)]`), so their cause stays
//! reachable through [`std::error::Error::source`] and `{:#}` (anyhow, in the binary) prints
//! the chain. No message here or in a module error repeats its source's text: a message says
//! what failed (with the path), the source says why. [`crate::ErrorChain`] renders the same chain
//! where an error is printed without anyhow (a warning).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad arguments or configuration.
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Client(#[from] crate::lookup::http::ClientError),
    /// Boxed: a SQLite error is large, and this type is returned everywhere.
    #[error(transparent)]
    Cache(Box<crate::cache::CacheError>),
    /// A `--known-good` / `--known-bad` list.
    #[error(transparent)]
    HashSet(#[from] crate::known::hashset::HashSetError),
    /// A package database (`--packages`, `--packages-root`).
    #[error(transparent)]
    Packages(#[from] crate::known::packages::PackageError),
    /// A baseline or a report given to `diff`.
    #[error(transparent)]
    Report(#[from] crate::report::read::ReadError),
    #[cfg(feature = "gateway")]
    #[error(transparent)]
    Tokens(#[from] crate::gateway::TokensError),
    /// `hashsweep prevalence` got no usable answer from the gateway.
    #[cfg(feature = "gateway")]
    #[error(transparent)]
    Prevalence(#[from] crate::gateway::prevalence::AskError),
    /// `serve` could not start or stopped with an error (a port that cannot be bound, a store
    /// that cannot be opened, the TLS files).
    #[cfg(feature = "gateway")]
    #[error(transparent)]
    Gateway(#[from] crate::gateway::GatewayError),
    /// `--yara` rules that do not load (a compile error names file:line:column).
    #[cfg(feature = "yara")]
    #[error(transparent)]
    Yara(#[from] hashsweep_yara::LoadError),
    #[error("cannot read {path}")]
    Input {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write the report to {path}")]
    Output {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("writing output")]
    Write(#[from] std::io::Error),
    #[error("internal error: {0}")]
    Internal(String),
}

/// A scan's failure keeps the same words as the same failure anywhere else.
impl From<crate::scan::ScanError> for Error {
    fn from(e: crate::scan::ScanError) -> Error {
        use crate::scan::ScanError;
        match e {
            ScanError::Usage(m) => Error::Usage(m),
            ScanError::Client(e) => Error::Client(e),
            ScanError::Cache(e) => Error::Cache(e),
            ScanError::Internal(m) => Error::Internal(m),
        }
    }
}

impl From<crate::cache::CacheError> for Error {
    fn from(e: crate::cache::CacheError) -> Error {
        Error::Cache(Box::new(e))
    }
}

/// The gateway's errors are among those checked, so the tests need the gateway feature.
#[cfg(all(test, feature = "gateway"))]
mod tests {
    use std::error::Error as _;
    use std::io;

    use super::*;
    use crate::ErrorChain;
    use crate::gateway::{GatewayError, TokensError};
    use crate::scan::ScanError;

    /// A scan's usage error reads as any other command's, with no extra layer.
    #[test]
    fn scan_errors_keep_their_words() {
        let e = Error::from(ScanError::Usage("bad --exclude glob 'a[': x".into()));
        assert!(matches!(&e, Error::Usage(m) if m == "bad --exclude glob 'a[': x"));
        assert_eq!(
            format!("{:#}", anyhow::Error::from(e)),
            "bad --exclude glob 'a[': x"
        );
        let cache = crate::cache::CacheError::CreateDir {
            path: "/c".into(),
            source: enoent(),
        };
        let e = Error::from(ScanError::from(cache));
        assert!(matches!(e, Error::Cache(_)));
        assert_eq!(levels(&e).len(), 2, "{:?}", levels(&e));
    }

    /// Every level of `e`'s chain, outermost first.
    fn levels(e: &(dyn std::error::Error + 'static)) -> Vec<String> {
        std::iter::successors(Some(e), |&e| e.source())
            .map(ToString::to_string)
            .collect()
    }

    /// No level repeats the text of the level below it, so `{:#}` says each thing once.
    fn assert_no_repeats(e: &(dyn std::error::Error + 'static)) {
        let l = levels(e);
        for w in l.windows(2) {
            assert!(
                !w[0].contains(&w[1]),
                "{:?} repeats its cause {:?}",
                w[0],
                w[1]
            );
        }
    }

    fn enoent() -> io::Error {
        io::Error::from(io::ErrorKind::NotFound)
    }

    #[test]
    fn wrapped_module_errors_keep_their_cause_once() {
        let bind = Error::from(GatewayError::Listen {
            addr: "127.0.0.1:8737".parse().unwrap(),
            source: io::Error::from(io::ErrorKind::AddrInUse),
        });
        assert!(matches!(bind, Error::Gateway(GatewayError::Listen { .. })));
        assert!(bind.source().is_some(), "the bind failure keeps its cause");
        assert_eq!(
            ErrorChain(&bind).to_string(),
            format!(
                "cannot listen on 127.0.0.1:8737: {}",
                io::Error::from(io::ErrorKind::AddrInUse)
            )
        );
        let errors: Vec<Error> = vec![
            bind,
            TokensError::Read {
                path: "/etc/tokens".into(),
                source: enoent(),
            }
            .into(),
            crate::known::hashset::HashSetError::Open {
                path: "good.txt".into(),
                source: enoent(),
            }
            .into(),
            crate::report::read::ReadError::Open {
                path: "old.ndjson".into(),
                source: enoent(),
            }
            .into(),
            crate::cache::CacheError::CreateDir {
                path: "/c/cache.sqlite".into(),
                source: enoent(),
            }
            .into(),
            Error::Input {
                path: "key".into(),
                source: enoent(),
            },
            Error::Write(io::Error::from(io::ErrorKind::BrokenPipe)),
        ];
        for e in &errors {
            assert_no_repeats(e);
            assert!(levels(e).len() >= 2, "the cause is kept: {:?}", levels(e));
        }
        let anyhow_text = format!(
            "{:#}",
            anyhow::Error::from(errors.into_iter().nth(1).unwrap())
        );
        assert_eq!(
            anyhow_text,
            format!("cannot read the tokens file /etc/tokens: {}", enoent())
        );
    }
}
