//! The vocabulary every hashsweep crate shares, and nothing else: digests ([`digest`]), a
//! file's identity, kind and I/O error wording ([`file`]), what differs between operating
//! systems ([`platform`]), the clock tests can move ([`clock`]), the archive formats by name and
//! magic ([`archive_format`]), one policy for poisoned locks ([`sync`]) and one rendering of an
//! error with its causes ([`ErrorChain`]).

pub mod archive_format;
pub mod clock;
pub mod digest;
mod error;
pub mod file;
pub mod platform;
pub mod sync;

pub use error::ErrorChain;
