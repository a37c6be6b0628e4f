//! The change words of a comparison with a baseline (`new`, `modified`, `unchanged`,
//! `removed`) and their counts: part of the report's vocabulary, decided by [`crate::audit`].

use std::fmt;

use serde::{Deserialize, Serialize};

/// What happened to one path of the new run relative to the baseline. The words are a contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    /// Not in the old report.
    New,
    /// In the old report with different content (see the module docs for records without digest).
    Modified,
    /// In the old report with the same content.
    Unchanged,
}

impl Change {
    pub fn as_str(self) -> &'static str {
        match self {
            Change::New => "new",
            Change::Modified => "modified",
            Change::Unchanged => "unchanged",
        }
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A [`Change`], or a path of the old report that the new one does not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiffChange {
    New,
    Modified,
    Unchanged,
    Removed,
}

impl DiffChange {
    pub fn as_str(self) -> &'static str {
        match self {
            DiffChange::New => "new",
            DiffChange::Modified => "modified",
            DiffChange::Unchanged => "unchanged",
            DiffChange::Removed => "removed",
        }
    }
}

impl From<Change> for DiffChange {
    fn from(c: Change) -> Self {
        match c {
            Change::New => DiffChange::New,
            Change::Modified => DiffChange::Modified,
            Change::Unchanged => DiffChange::Unchanged,
        }
    }
}

impl fmt::Display for DiffChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Paths per change since a baseline.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ChangeCounts {
    pub new: u64,
    pub modified: u64,
    pub unchanged: u64,
    pub removed: u64,
    /// `diff`: paths in both reports whose verdict changed (whatever their content did).
    #[serde(skip_serializing_if = "is_zero")]
    pub verdict_changed: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl ChangeCounts {
    pub fn add(&mut self, c: Change) {
        match c {
            Change::New => self.new += 1,
            Change::Modified => self.modified += 1,
            Change::Unchanged => self.unchanged += 1,
        }
    }

    pub fn human(&self) -> String {
        let mut s = format!(
            "since the baseline: {} new, {} modified, {} removed, {} unchanged",
            self.new, self.modified, self.removed, self.unchanged
        );
        if self.verdict_changed > 0 {
            s.push_str(&format!(
                ", {} with a changed verdict",
                self.verdict_changed
            ));
        }
        s
    }

    /// Whether anything changed (`diff`'s exit status 1).
    pub fn any(&self) -> bool {
        self.new + self.modified + self.removed + self.verdict_changed > 0
    }
}
