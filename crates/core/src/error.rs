//! How an error is shown whole: [`ErrorChain`], the one rendering of an error and its causes
//! that every layer uses in messages, logs and reports.

use std::fmt;

/// An error and its sources, joined with `": "` (what anyhow's `{:#}` prints).
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut src = self.0.source();
        while let Some(s) = src {
            write!(f, ": {s}")?;
            src = s.source();
        }
        Ok(())
    }
}
