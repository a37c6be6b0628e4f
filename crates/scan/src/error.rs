//! The errors that stop a scan as a whole (bad options, a broken cache, a failed client set-up).
//! Per-file and per-digest problems are not errors here: they are recorded against their path
//! or digest and reported.

/// A failure that stops the scan. The binary's error wraps each variant whole, so the
/// message and its cause are printed the same way as any other command's.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// Bad arguments (a glob, a priority path, an exclusion).
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Client(#[from] hashsweep_lookup::http::ClientError),
    /// Boxed: a SQLite error is large.
    #[error(transparent)]
    Cache(Box<hashsweep_cache::CacheError>),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<hashsweep_cache::CacheError> for ScanError {
    fn from(e: hashsweep_cache::CacheError) -> ScanError {
        ScanError::Cache(Box::new(e))
    }
}
