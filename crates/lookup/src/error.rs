//! Why a digest has no answer: a typed [`LookupError`] whose kind drives the client's decisions
//! (ask again, stop the run) and whose text is what reports show in their `error` field.
//!
//! One outcome is kept per distinct digest for the whole run and cloned to every waiter of the
//! gateway, so the error is small (24 bytes) and cheap to clone: its text, rendered once with its
//! context (which batch, which HTTP status and vendor code, how many attempts) and scrubbed of
//! the API key, is shared behind an [`Arc`]. Causes that are not cloneable (a reqwest error with
//! its chain of I/O errors) are rendered into that text when the error is made.

use std::fmt;
use std::sync::Arc;

/// The text of a [`LookupError`]: complete, with its context, safe to show.
#[derive(Clone, PartialEq, Eq)]
pub struct Reason(Arc<str>);

impl Reason {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<String> for Reason {
    fn from(s: String) -> Reason {
        Reason(s.into())
    }
}

impl From<&str> for Reason {
    fn from(s: &str) -> Reason {
        Reason(s.into())
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

/// The text of [`LookupError::MissingEntry`].
pub const NO_ENTRY: &str = "service's answer has no entry for this hash";

/// Why a digest has no answer. The kind is what callers decide on; the text (`Display`,
/// [`LookupError::message`]) is what reports print.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// 401/403: the key was refused (or lacks the rights). Final for the run.
    #[error("{0}")]
    KeyRefused(Reason),
    /// 429 throttling (429001, 429002, or a 429 without a daily-quota code) that outlasted
    /// `--max-wait` or the retry budget.
    #[error("{0}")]
    Throttled(Reason),
    /// The daily lookup quota is spent (429000, or `X-RateLimit-Remaining: 0`). Final for the
    /// run, or until the quota resets.
    #[error("{0}")]
    QuotaSpent(Reason),
    /// The request did not get through: connect, timeout, reset, a cut-short body, a 5xx, an
    /// unexpected status, a redirect not followed.
    #[error("{0}")]
    Transport(Reason),
    /// 400: the service refused the hash itself.
    #[error("{0}")]
    Refused(Reason),
    /// The answer could not be used for this hash: malformed JSON, wrong types, conflicting
    /// repeats.
    #[error("{0}")]
    BadAnswer(Reason),
    /// A usable answer that has no entry for this hash: the client asks again.
    #[error("{NO_ENTRY}")]
    MissingEntry,
    /// The lookup did not finish (a gateway shutting down, a task that failed, a wait that ran
    /// out).
    #[error("{0}")]
    Unfinished(Reason),
    /// Not asked in this run because the budget (`--budget`, or what the key has left today)
    /// went to digests that matter more: asked first on a later run.
    #[error("{0}")]
    Deferred(Reason),
}

impl LookupError {
    /// The text reports show (the same as `Display`, borrowed).
    pub fn message(&self) -> &str {
        match self {
            LookupError::KeyRefused(r)
            | LookupError::Throttled(r)
            | LookupError::QuotaSpent(r)
            | LookupError::Transport(r)
            | LookupError::Refused(r)
            | LookupError::BadAnswer(r)
            | LookupError::Unfinished(r)
            | LookupError::Deferred(r) => r.as_str(),
            LookupError::MissingEntry => NO_ENTRY,
        }
    }

    /// The same kind with its text rewritten (to add context: which batch, how many attempts).
    pub fn map_message(self, f: impl FnOnce(&str) -> String) -> LookupError {
        let r = Reason::from(f(self.message()));
        match self {
            LookupError::KeyRefused(_) => LookupError::KeyRefused(r),
            LookupError::Throttled(_) => LookupError::Throttled(r),
            LookupError::QuotaSpent(_) => LookupError::QuotaSpent(r),
            LookupError::Transport(_) => LookupError::Transport(r),
            LookupError::Refused(_) => LookupError::Refused(r),
            // A missing entry given context is no longer "ask again": it is a bad answer.
            LookupError::BadAnswer(_) | LookupError::MissingEntry => LookupError::BadAnswer(r),
            LookupError::Unfinished(_) => LookupError::Unfinished(r),
            LookupError::Deferred(_) => LookupError::Deferred(r),
        }
    }

    /// Whether the digest went unasked because of the budget, not because anything failed:
    /// its verdict is `deferred`, and a later run asks it first.
    pub fn is_deferral(&self) -> bool {
        matches!(self, LookupError::QuotaSpent(_) | LookupError::Deferred(_))
    }

    /// Whether lookups stop for the rest of the run after this (key refused, quota spent).
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            LookupError::KeyRefused(_) | LookupError::QuotaSpent(_)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Answer, HashOutcome};

    #[test]
    fn outcomes_stay_small_and_cheap_to_clone() {
        // One is kept per distinct digest for the whole run: an error must not make the
        // outcome bigger than an answer needs.
        assert!(size_of::<LookupError>() <= 24);
        assert!(size_of::<HashOutcome>() <= size_of::<Result<Answer, String>>());
        let e = LookupError::Transport("could not connect".into());
        let c = e.clone();
        match (&e, &c) {
            (LookupError::Transport(a), LookupError::Transport(b)) => {
                assert!(Arc::ptr_eq(&a.0, &b.0), "a clone shares the text")
            }
            _ => unreachable!(),
        }
    }

    #[test]
    fn text_is_the_message_and_context_keeps_the_kind() {
        assert_eq!(LookupError::MissingEntry.to_string(), NO_ENTRY);
        let e = LookupError::Throttled("HTTP 429 (code 429001)".into())
            .map_message(|m| format!("lookup failed (batch 3): {m}"));
        assert!(matches!(e, LookupError::Throttled(_)));
        assert_eq!(
            e.message(),
            "lookup failed (batch 3): HTTP 429 (code 429001)"
        );
        assert_eq!(e.to_string(), e.message());
        assert!(LookupError::KeyRefused("x".into()).is_final());
        assert!(!e.is_final());
    }
}
