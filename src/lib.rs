//! hashsweep: walk a tree, hash every regular file once, look each distinct digest up in the
//! MetaDefender bulk hash API, and report a verdict for every path.
//!
//! The layers, each a folder, lower ones knowing nothing of higher ones:
//! - [`scan`]: the pipeline. [`scan::walk`] (`WalkEvent`) → [`scan::hash`] (`FileResult`) →
//!   [`scan::dedup`] (`Digest`) → lookup → the join (`Record`), with the digest cache asked by
//!   the hash workers and the verdict cache by the collector.
//! - [`lookup`]: the service, both ways: batches, the wire protocol, the HTTP client, verdicts.
//! - [`known`]: hash lists and sets that decide a file before anything is asked.
//! - [`cache`]: the SQLite digest and verdict cache.
//! - [`report`]: the writers and the reader of reports, one field list.
//! - [`audit`]: baselines and `diff`, on top of the report reader.
//! - [`gateway`]: `hashsweep serve`, the fleet lookup gateway built on the same client.
//!
//! [`digest`] and [`file`] are the shared vocabulary (digests; a file's identity and I/O error
//! wording). The command line (`cli`, `commands`) belongs to the binary.

pub mod audit;
pub mod cache;
pub mod clock;
pub mod digest;
mod error;
pub mod file;
pub mod gateway;
pub mod known;
pub mod lookup;
pub mod platform;
pub mod progress;
pub mod report;
pub mod scan;
mod sync;

pub use error::{Error, ErrorChain};
