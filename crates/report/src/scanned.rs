//! What the scan stages hand the report besides verdicts: a running program's image and the
//! counts of the process listing (`--processes`), and the totals of a run's uploads
//! (`--upload-unknown`). Plain data, defined here so the report need not know the scanner.

use std::path::PathBuf;

use serde::Serialize;

/// A running program's image, as the report shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    pub pid: u32,
    /// `comm`: the kernel's short name of the process.
    pub name: String,
    /// The arguments, cut by the scanner to `scan::process::CMDLINE_MAX` characters in all.
    pub args: Vec<String>,
    /// Real user id.
    pub uid: Option<u32>,
    /// The image's path as the kernel shows it, without its ` (deleted)` mark.
    pub path: PathBuf,
    /// The file is gone from disk (the kernel marks the link ` (deleted)`).
    pub deleted: bool,
    /// For a mapped library, the executable of the process that maps it (as `path` is shown);
    /// `None` in the executable's own record.
    pub library_of: Option<PathBuf>,
}

impl ProcessInfo {
    /// A mapped library, not the process's executable.
    pub fn library(&self) -> bool {
        self.library_of.is_some()
    }

    /// The command line as one string (arguments joined by spaces).
    pub fn cmdline(&self) -> String {
        self.args.join(" ")
    }
}

/// What the listing of processes could not read, counted for the summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ProcessCounts {
    /// Executables (and libraries) to be hashed.
    pub images: u64,
    /// Processes listed.
    pub processes: u64,
    /// Kernel threads: no executable.
    pub kernel_threads: u64,
    /// Gone between the listing and the look.
    pub vanished: u64,
    /// Not ours to inspect (run as root to see every process).
    pub denied: u64,
}

/// The totals of a run's uploads (the summary's `uploads`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct UploadCounts {
    /// Distinct unknown digests that could have been uploaded.
    pub unknown: u64,
    /// Uploaded in this run.
    pub uploaded: u64,
    /// Answered from an upload of an earlier run (no upload).
    pub fetched: u64,
    /// Got their final answer in this run, and how many of those are detections.
    pub answered: u64,
    pub detections: u64,
    /// Still being scanned at the end of `--upload-wait` (the next run fetches them).
    pub pending: u64,
    /// Not uploaded: excluded by path, by kind, too big, over the budget, changed since
    /// hashed, sharing not accepted.
    pub excluded: u64,
    pub other_kind: u64,
    pub too_big: u64,
    pub over_budget: u64,
    pub changed: u64,
    pub not_accepted: u64,
    /// Uploads or polls that failed (throttled, refused, ...).
    pub failed: u64,
}

impl UploadCounts {
    /// The summary line, e.g. `uploads: 3 unknown, 2 uploaded, 1 fetched from earlier
    /// uploads, 2 answered (1 detected), 1 still scanning (the next run fetches it), 1 too
    /// big`.
    pub fn human(&self) -> String {
        let mut parts = vec![format!("{} unknown", self.unknown)];
        let mut add = |n: u64, what: &str| {
            if n > 0 {
                parts.push(format!("{n} {what}"));
            }
        };
        add(self.uploaded, "uploaded");
        add(self.fetched, "fetched from earlier uploads");
        let answered = format!("answered ({} detected)", self.detections);
        add(self.answered, &answered);
        add(
            self.pending,
            "still scanning (the next run fetches the result)",
        );
        add(self.not_accepted, "not uploaded: sharing not accepted");
        add(self.excluded, "excluded by path");
        add(self.other_kind, "not of an --upload-kind");
        add(self.too_big, "too big");
        add(self.over_budget, "over the upload budget");
        add(self.changed, "changed since hashed");
        add(self.failed, "failed");
        format!("uploads: {}", parts.join(", "))
    }
}
