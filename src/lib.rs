//! hashsweep: walk a tree, hash every regular file once, look each distinct digest up in the
//! MetaDefender bulk hash API, and report a verdict for every path.
//!
//! The work is done by the workspace's crates, each one layer; this crate is the binary's
//! library face: it names them under the module names the tests, benches and fuzz targets use
//! and holds [`Error`], the one error a command returns. Lower crates know nothing of higher
//! ones (the guide's design chapter, docs/src/design.md, draws the graph):
//! - [`core`](hashsweep_core): the shared vocabulary: digests, a file's identity and kind,
//!   platform seams, the clock, archive formats, [`ErrorChain`].
//! - [`lookup`]: the services, both ways: batches, the wire protocol, the HTTP client, verdicts.
//! - [`known`]: hash lists and sets that decide a file before anything is asked.
//! - [`cache`]: the SQLite digest and answer cache.
//! - [`report`]: the writers and the reader of reports, one field list; baselines and `diff`
//!   ([`audit`]).
//! - [`scan`]: the pipeline. [`scan::walk`] (`WalkEvent`) → [`scan::hash`] (`FileResult`) →
//!   [`scan::dedup`] (`Digest`) → lookup → the join (`Record`).
//! - `gateway` (cargo feature `gateway`, on by default): `hashsweep serve`, the fleet lookup
//!   gateway built on the same client.
//!
//! The command line (`cli`, `commands`) belongs to the binary.

mod error;

pub use hashsweep_cache as cache;
pub use hashsweep_core::{clock, digest, file, platform};
#[cfg(feature = "gateway")]
pub use hashsweep_gateway as gateway;
pub use hashsweep_known as known;
pub use hashsweep_lookup as lookup;
pub use hashsweep_report as report;
pub use hashsweep_report::audit;
pub use hashsweep_scan as scan;
pub use hashsweep_scan::progress;
/// `--yara` (cargo feature `yara`, on by default): rule loading, the compiled-rules cache, the
/// matcher.
#[cfg(feature = "yara")]
pub use hashsweep_yara as yara;

pub use error::Error;
pub use hashsweep_core::ErrorChain;
