//! The join: each file's own status meets its digest's outcome (and the local sets' word) in
//! one report [`Record`]; the totals of a run are counted from those records.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::ScanOutput;
use super::archive::Inside;
use super::hash::{FileResult, FileStatus, Origin};
use hashsweep_core::file::{FileKind, SpecialKind};
use hashsweep_known::{Local, Match};
use hashsweep_lookup::{Answer, HashOutcome, Verdict};
use hashsweep_report::{KnownSet, PackageSummary, Record, Summary, escape_path, summary_reason};

/// A `--yara` match makes a record `suspicious` unless it is a detection already (infected
/// or suspicious) or known good (an NSRL or package match stays `known_good`, with the match
/// in its `yara` field); any other verdict (clean, unknown, not looked up, deferred, an error)
/// gives way, its answer and error kept. A match counts for exit status 1 whatever the verdict
/// (see `Summary::yara_matched`).
fn with_rule_verdict(r: Record<'_>) -> Record<'_> {
    match (&r.yara, &r.verdict) {
        (None, _) | (_, Verdict::Infected | Verdict::Suspicious | Verdict::KnownGood) => r,
        (Some(_), _) => Record {
            verdict: Verdict::Suspicious,
            ..r
        },
    }
}

impl ScanOutput {
    /// The report record for one file: its own status joined with its digest's outcome.
    pub fn record<'a>(&'a self, f: &'a FileResult) -> Record<'a> {
        let process = self.processes.get(&f.path);
        let (container, member) = f.container_member().unzip();
        let base = Record {
            size: f.size,
            process,
            container,
            member,
            // A running program's image is shown at its path as the kernel shows it.
            ..Record::new(Some(process.map_or(&*f.path, |p| &p.path)), Verdict::Error)
        };
        match &f.status {
            FileStatus::Skipped(reason) => Record {
                verdict: Verdict::Skipped,
                note: Some(reason),
                // The walk's words for a symlink it did not follow (its own vocabulary, so
                // the report needs no knowledge of the walk).
                symlink: [SpecialKind::Symlink, SpecialKind::DanglingSymlink]
                    .iter()
                    .any(|k| k.reason() == &**reason),
                ..base
            },
            FileStatus::Error(e) => Record {
                verdict: Verdict::Error,
                error: Some(e),
                ..base
            },
            FileStatus::Interrupted => Record {
                verdict: Verdict::NotLookedUp,
                error: Some("interrupted before the file was read"),
                ..base
            },
            FileStatus::Hashed {
                digests,
                warning,
                meta,
                rules,
                ..
            } => {
                let rules = rules.as_deref();
                let base = Record {
                    note: warning
                        .as_deref()
                        .or(f.archive_note())
                        .or(rules.and_then(|r| r.note())),
                    yara: rules.and_then(|r| r.hits()),
                    mtime: Some(system_time(meta.mtime_ns)),
                    // A member has the container's times but no inode of its own.
                    inode: member.is_none().then_some(meta.ino),
                    ..base
                }
                .with_digests(Some(digests));
                let package = self
                    .packages
                    .as_deref()
                    .and_then(|p| p.check(&f.path, digests));
                let vouched = self
                    .packages
                    .as_deref()
                    .is_some_and(|p| p.vouches(package.as_ref()));
                let base = Record {
                    package: package.map(|p| p.package),
                    package_check: package.and_then(|p| p.check),
                    ..base
                };
                let local = self.local.as_ref().and_then(|l| l.classify(digests));
                // Probably known to CIRCL (its Bloom filter): said, whatever else is known.
                let circl = self
                    .local
                    .as_ref()
                    .is_some_and(|l| l.circl_bloom(digests))
                    .then_some("circl-bloom");
                let circl_record = self
                    .lookup_algo
                    .and_then(|a| digests.get(a))
                    .and_then(|k| self.circl.get(&k));
                let outcome = self
                    .lookup_algo
                    .and_then(|a| digests.get(a))
                    .and_then(|d| self.dedup.outcome(&d));
                let r = match (local, self.lookup_algo) {
                    // An IOC list is refused as --known-good: listed, whatever its kind.
                    (Some(Local::Good(Match::Listed | Match::Ioc(_))), _) => Record {
                        verdict: Verdict::KnownGood,
                        ..base
                    },
                    // Listed by the NSRL RDS in a package whose type is not excluded.
                    (Some(Local::Good(Match::Nsrl { application_type })), _) => Record {
                        verdict: Verdict::KnownGood,
                        source: Some("nsrl"),
                        application_type: (!application_type.is_empty())
                            .then_some(application_type),
                        ..base
                    },
                    // Known bad: infected whatever the service says; its answer is kept when
                    // one was asked for (--also-lookup).
                    (Some(Local::Bad), _) => Record {
                        verdict: Verdict::Infected,
                        source: Some("local"),
                        // Which list and entry, when an IOC list (MISP, STIX...) named it.
                        ioc: self.local.as_ref().and_then(|l| match l.bad.find(digests) {
                            Some(Match::Ioc(m)) => Some(m),
                            _ => None,
                        }),
                        answer: outcome.and_then(|o| o.as_ref().ok()),
                        ..base
                    },
                    // The file is what its package installed: not asked.
                    (None, _) if vouched => Record {
                        verdict: Verdict::KnownGood,
                        source: package.map(|p| p.package.manager.name()),
                        ..base
                    },
                    (None, None) => Record {
                        verdict: Verdict::NotLookedUp,
                        source: circl,
                        ..base
                    },
                    // Known to CIRCL hashlookup (--circl), flagged by none of its sources.
                    (None, Some(_))
                        if circl_record.is_some_and(|r| r.known_malicious.is_none()) =>
                    {
                        Record {
                            verdict: Verdict::KnownGood,
                            source: Some("circl"),
                            circl: circl_record,
                            ..base
                        }
                    }
                    (None, Some(algo)) => {
                        let (verdict, answer, error, why) = outcome_fields(outcome);
                        // Flagged by CIRCL's sources (KnownMalicious): asked first, and kept.
                        let flagged = circl_record;
                        let aged = digests.get(algo).and_then(|d| self.dedup.aged(&d));
                        Record {
                            verdict,
                            answer,
                            error,
                            // A change while read says more about the digest than a deferral.
                            note: base.note.or(why),
                            answered_at: answer.map(|_| match aged {
                                Some(a) => {
                                    UNIX_EPOCH + Duration::from_secs(a.answered_at.max(0) as u64)
                                }
                                None => self.answered_now,
                            }),
                            stale: answer.is_some() && aged.is_some_and(|a| a.stale),
                            source: flagged.map(|_| "circl").or(circl),
                            circl: flagged,
                            ..base
                        }
                    }
                };
                with_rule_verdict(r)
            }
        }
    }

    /// Indices of `files` in report order: by path, or detections first for the table.
    /// Path order needs no index at all (the files are sorted); only the table's
    /// detections-first order builds one.
    pub fn order(&self, detections_first: bool) -> Box<dyn Iterator<Item = usize>> {
        if !detections_first {
            return Box::new(0..self.files.len());
        }
        let mut idx: Vec<u32> = (0..self.files.len() as u32).collect();
        // Detections, then files that differ from their package, then the rest by verdict.
        idx.sort_by_cached_key(|&i| {
            let r = self.record(&self.files[i as usize]);
            let v = r.verdict.rank();
            match (r.verdict.is_detection(), r.is_modified_package_file()) {
                (true, _) => (0, v),
                (false, true) => (1, v),
                (false, false) => (2, v),
            }
        });
        Box::new(idx.into_iter().map(|i| i as usize))
    }

    /// Totals for the summary and the exit status.
    /// Roots that could not be swept (their own record is an `error`: missing, unreadable),
    /// each once, with the reason.
    pub fn root_errors(&self, roots: &[std::path::PathBuf]) -> Vec<(String, String)> {
        let mut found: Vec<(String, String)> = Vec::new();
        for root in roots {
            let key = root.as_os_str().as_encoded_bytes();
            let Ok(i) = self
                .files
                .binary_search_by(|f| f.path.as_os_str().as_encoded_bytes().cmp(key))
            else {
                continue;
            };
            let r = self.record(&self.files[i]);
            let name = escape_path(root);
            if r.verdict == Verdict::Error && !found.iter().any(|(n, _)| *n == name) {
                found.push((name, summary_reason(r.error.or(r.note))));
            }
        }
        found
    }

    /// With `--packages`: files a package installed under `roots` (as given to the scan) that
    /// are gone from disk, with their package. Only files with a digest to compare count (a
    /// `%ghost` or a conffile may be absent by design).
    pub fn missing_package_files(
        &self,
        roots: &[std::path::PathBuf],
    ) -> Vec<(std::path::PathBuf, &hashsweep_known::packages::Package)> {
        let Some(db) = self.packages.as_deref() else {
            return Vec::new();
        };
        let seen = |p: &std::path::Path| {
            let key = p.as_os_str().as_encoded_bytes();
            self.files
                .binary_search_by(|f| f.path.as_os_str().as_encoded_bytes().cmp(key))
                .is_ok()
        };
        db.missing_under(roots, &seen)
    }

    /// Paths on disk whose first bytes say archive (`FileKind::Archive`), hashed as files:
    /// without `--archives`, archives whose contents were not read.
    pub fn archives_hashed_as_files(&self) -> u64 {
        self.files
            .iter()
            .filter(|f| {
                matches!(
                    f.status,
                    FileStatus::Hashed {
                        kind: FileKind::Archive,
                        origin: Origin::Read | Origin::Cache | Origin::Link,
                        ..
                    }
                )
            })
            .count() as u64
    }

    pub fn summary(&self) -> Summary {
        let mut s = Summary {
            distinct_digests: self.dedup.distinct() as u64,
            requests: self.requests,
            retries: self.retries,
            ..Summary::default()
        };
        s.verdicts_cached = self.verdicts_cached;
        s.cache_errors = self.cache_errors;
        s.network_mounts = self.network_mounts.clone();
        s.processes = self.process_counts;
        s.deleted_processes = self
            .files
            .iter()
            .filter_map(|f| self.processes.get(&f.path))
            .filter(|p| p.deleted && !p.library())
            .map(|p| format!("{} {} ({})", p.pid, p.name, p.path.display()))
            .collect();
        s.budget = self.plan.clone();
        s.circl = self.circl_report.clone();
        if let Some(p) = &self.packages {
            s.packages = Some(PackageSummary::new(p));
        }
        if let Some(l) = &self.local {
            let sets = [("known_good", &l.good), ("known_bad", &l.bad)];
            let now = hashsweep_core::clock::now();
            s.known_sets = sets
                .iter()
                .flat_map(|(role, set)| {
                    set.sources()
                        .iter()
                        .map(move |src| KnownSet::new(role, src, now))
                })
                .collect();
            s.known_sets.extend(
                l.good
                    .blooms()
                    .iter()
                    .map(|b| KnownSet::bloom("known_good", b, now)),
            );
            for (role, set) in sets {
                s.known_sets.extend(
                    set.ioc()
                        .lists()
                        .iter()
                        .map(|i| KnownSet::ioc(role, i, now)),
                );
            }
        }
        for f in &self.files {
            s.count(&self.record(f));
            if let Some(Inside::Container { complete, .. }) = f.archive.as_deref() {
                s.archives += 1;
                s.archives_incomplete += u64::from(!complete);
            }
            if let FileStatus::Hashed {
                warning, origin, ..
            } = &f.status
            {
                s.changed += u64::from(warning.is_some());
                match origin {
                    Origin::Read => s.bytes_read += f.size.unwrap_or(0),
                    Origin::Cache => s.files_cached += 1,
                    Origin::Link => s.files_linked += 1,
                    Origin::Archive => s.archive_members += 1,
                    Origin::ArchiveCache => {
                        s.archive_members += 1;
                        s.archive_members_cached += 1;
                    }
                    Origin::Stream => {
                        s.bytes_read += f.size.unwrap_or(0);
                        s.streams_read += 1;
                    }
                }
            }
        }
        s.set_elapsed(self.elapsed);
        s
    }
}

/// Nanoseconds since the epoch (negative before it) as a `SystemTime`.
fn system_time(ns: i64) -> SystemTime {
    let d = Duration::from_nanos(ns.unsigned_abs());
    if ns >= 0 {
        SystemTime::UNIX_EPOCH + d
    } else {
        SystemTime::UNIX_EPOCH - d
    }
}

/// Verdict, answer and error for a looked-up digest's outcome (`None`: never answered).
/// A deferral is no failure: it says why in the note, and leaves `error` empty.
pub fn outcome_fields(
    o: Option<&HashOutcome>,
) -> (Verdict, Option<&Answer>, Option<&str>, Option<&str>) {
    match o {
        Some(Ok(a)) => (a.verdict(), Some(a), None, None),
        Some(Err(e)) if e.is_deferral() => (Verdict::Deferred, None, None, Some(e.message())),
        Some(Err(e)) => (Verdict::Error, None, Some(e.message()), None),
        None => (
            Verdict::NotLookedUp,
            None,
            Some("lookup did not complete (interrupted)"),
            None,
        ),
    }
}
