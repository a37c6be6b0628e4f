//! The library's error type: failures that stop a whole command. Per-file and per-hash problems
//! are not errors here; they are recorded against their path or digest and reported.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad arguments or configuration.
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Client(#[from] crate::lookup::http::ClientError),
    #[error("cannot read {path}: {source}")]
    Input {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write the report to {path}: {source}")]
    Output {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing output: {0}")]
    Write(#[from] std::io::Error),
    #[error("internal error: {0}")]
    Internal(String),
}
