//! hashsweep: walk a tree, hash every regular file once, look each distinct digest up in the
//! MetaDefender bulk hash API, and report a verdict for every path.
//!
//! The pipeline, one module per stage, plain types between them:
//! [`walk`] (`WalkEvent`) → [`hash`] (`FileResult`) → [`dedup`] (`Digest`) → [`batch`]
//! (`LookupBatch`) → [`client`] (`HashOutcome`) → [`pipeline`] (join) → [`report`] (`Record`).
//! [`app`] and [`cli`] are the command line on top; [`gateway`] is `hashsweep serve`, the fleet
//! lookup gateway built on the same client and cache; [`mock`] is a local stand-in for the service.

pub mod app;
pub mod baseline;
pub mod batch;
pub mod cache;
pub mod cli;
pub mod client;
pub mod dedup;
pub mod digest;
mod error;
pub mod gateway;
pub mod hash;
pub mod hashlist;
pub mod hashset;
pub mod interrupt;
pub mod mock;
pub mod pipeline;
pub mod progress;
pub mod report;
pub mod verdict;
pub mod walk;

pub use error::Error;
