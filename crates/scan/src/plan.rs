//! The lookup budget in the pipeline: which digests are asked as the walk goes, which wait until
//! the walk has ranked them, and which are deferred to a later run.
//!
//! **Order of risk.** Each digest gets a [`Rank`] from what the sweep already has in hand (no
//! extra reads). A running program deleted from disk ([`Rank::RUNNING_DELETED`]), then a digest
//! CIRCL hashlookup's sources flag ([`Rank::FLAGGED_ELSEWHERE`], `--circl`), then a file that
//! differs from what its package installed ([`Rank::MODIFIED_PACKAGE`]), go before
//! everything, and keep their place however many paths hold them; the rest are compared in this order, lower asked first:
//! 1. what the file is ([`FileKind`], from its first bytes): executables and libraries, then
//!    scripts, then documents that carry macros or scripts, then archives, then the rest;
//! 2. where it is: user-writable and temporary places ([`RISKY_PLACES`]) and `--priority-path`;
//! 3. how new it is: changed (mtime or ctime) in the last [`RECENT`];
//! 4. how rare it is: a digest only one path holds, and (when a gateway with `--prevalence`
//!    said so with its last answer, kept in the cache) on no other host of the fleet; then,
//!    within a rank, fewer hosts first (a count not known counts as this host alone);
//!
//! Within a rank, a digest deferred by an earlier run goes before a new one of the same rank,
//! the oldest deferral first, then by digest (so a run's choice does not depend on the walk's
//! thread timing).
//!
//! **Refreshes.** A digest whose answer on file is due for a refresh ([`Planner::offer_refresh`])
//! keeps that answer until it is asked again, and is asked only with the budget that digests
//! never asked do not need: after every one of them, by risk, then the oldest answer first (an
//! answer past the maximum age is simply older). A refresh is never sent while the walk goes
//! on (the new digests it would take the budget from may still come), unless the service
//! states no budget at all.
//!
//! **Streaming or holding.** With a budget of at least [`STREAM_MIN`] hashes left, the first
//! quarter of it is asked as digests come (lookups overlap hashing, as when there is no budget
//! at all); past that quarter, or with less left, digests are held until the walk ends, then
//! the best ones are asked and the rest deferred. Before anything is known about the budget
//! (no `--budget`, no answer yet, nothing remembered), the first [`LEARN_BATCH`] digest goes
//! out alone to learn it. A service whose answers carry no budget is taken as unlimited.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use globset::{Glob, GlobSet, GlobSetBuilder};

use hashsweep_core::digest::{Digest, DigestHash};
use hashsweep_core::file::FileKind;
use hashsweep_lookup::{Budget, Plan};

/// With at least this many hashes left, lookups start while the walk goes on.
pub const STREAM_MIN: u64 = 20_000;
/// The most digests sent before anything is known about the budget (no `--budget`, nothing
/// remembered from `check` or an earlier run): one, so that learning the budget spends as
/// little of it as possible and the rest goes by the order of risk.
pub const LEARN_BATCH: u64 = 1;
/// "Changed recently" for the order of risk.
pub const RECENT: Duration = Duration::from_secs(7 * 24 * 3600);
/// Places where malware is dropped: user-writable, temporary, served to the web. A path under
/// one of these (or matching `--priority-path`) ranks before the same kind of file elsewhere.
pub const RISKY_PLACES: &[&str] = &[
    "/tmp/**",
    "/var/tmp/**",
    "/dev/shm/**",
    "/run/user/**",
    "/home/**",
    "/root/**",
    "/Users/**",
    "**/Downloads/**",
    "**/Desktop/**",
    "/var/www/**",
    "/srv/**",
    "**/public_html/**",
    "**/htdocs/**",
    "**/wwwroot/**",
    "**/AppData/**",
    "**/Temp/**",
    "**/ProgramData/**",
];

/// `--max-age`'s default: an answer a month old is still an answer (the service's verdict on
/// a file rarely changes after its first weeks, and a nightly sweep on a small key refreshes
/// its oldest answers first), one older is too old to stand for today's.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(30 * 24 * 3600);

/// What the user asked of the budget.
#[derive(Debug, Clone)]
pub struct BudgetOptions {
    /// `--budget N`: at most N hashes asked in this run (0: caches and local sets only).
    pub cap: Option<u64>,
    /// `--priority-path GLOB`: the user's own risky places (matched on the whole path).
    pub priority_paths: Vec<String>,
    /// Names the key's budget in the cache, so a run knows it before its first answer (see
    /// `HttpClient::budget_scope`).
    pub scope: Option<String>,
    /// `--max-age`: a path whose last answer is older than this, and not refreshed, is
    /// `deferred`; a younger one keeps its last answer until it is refreshed.
    pub max_age: Duration,
}

impl Default for BudgetOptions {
    fn default() -> BudgetOptions {
        BudgetOptions {
            cap: None,
            priority_paths: Vec::new(),
            scope: None,
            max_age: DEFAULT_MAX_AGE,
        }
    }
}

/// A digest's place in the order of risk; lower is asked first. Five bits: the kind, then
/// "not in a risky place", "not recent", "not rare"; above them bit 6, set for all but
/// [`Rank::RUNNING_DELETED`], which goes before everything, [`Rank::FLAGGED_ELSEWHERE`] and
/// [`Rank::MODIFIED_PACKAGE`], just after it, and bit 7, set for a digest probably known to CIRCL ([`Rank::known_elsewhere`]),
/// which goes after everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Rank(u8);

impl Rank {
    /// The rank of one file, rarity not yet known (counted as rare until a second path holds
    /// the same digest).
    pub fn of(kind: FileKind, risky_place: bool, recent: bool) -> Rank {
        Rank(
            ORDINARY
                | (kind.code() << 3)
                | (u8::from(!risky_place) << 2)
                | (u8::from(!recent) << 1),
        )
    }

    /// The same rank after every rank of a file nobody is known to have (bit 7): a digest a
    /// `--known-good` Bloom filter (CIRCL hashlookup's) probably holds is asked only with the
    /// budget the others leave.
    pub fn known_elsewhere(self) -> Rank {
        Rank(self.0 | KNOWN_ELSEWHERE)
    }

    /// [`Rank::known_elsewhere`] undone (CIRCL did not know it after all).
    pub fn unknown_elsewhere(self) -> Rank {
        Rank(self.0 & !KNOWN_ELSEWHERE)
    }

    /// The executable of a running program that is gone from disk: a strong signal on its
    /// own, asked before anything else.
    pub const RUNNING_DELETED: Rank = Rank(0);

    /// A file a `--yara` rule matched: after a running deleted program, before everything
    /// else (the service's answer is the second opinion the match asks for). Its code (61) is
    /// above any code stored before bit 6 existed, so a deferred one reads back as itself.
    pub const RULE_MATCH: Rank = Rank(ORDINARY - 3);

    /// A digest that CIRCL hashlookup knows and one of its sources flags (`KnownMalicious`,
    /// `--circl`): after a running deleted program, before everything else. Its code (62),
    /// like [`Rank::MODIFIED_PACKAGE`]'s, is above any code stored before bit 6 existed, so a
    /// deferred one reads back as itself and a later run asks it first.
    pub const FLAGGED_ELSEWHERE: Rank = Rank(ORDINARY - 2);

    /// A file that differs from what its package installed (`package_check: modified`):
    /// after a running deleted program, before every ordinary file. Its code (63) is above
    /// any code stored before bit 6 existed (at most 39), so it reads back as itself.
    pub const MODIFIED_PACKAGE: Rank = Rank(ORDINARY - 1);

    /// The same rank for a digest more than one path (or host) holds. The ranks before every
    /// ordinary one stay as they are: their code is their meaning, and a changed one would
    /// read back from the deferred list as an ordinary rank.
    fn common(self) -> Rank {
        if self.is_special() {
            return self;
        }
        Rank(self.0 | 1)
    }

    /// [`Rank::RUNNING_DELETED`], [`Rank::RULE_MATCH`], [`Rank::FLAGGED_ELSEWHERE`],
    /// [`Rank::MODIFIED_PACKAGE`].
    fn is_special(self) -> bool {
        self.0 & (ORDINARY | KNOWN_ELSEWHERE) == 0
    }

    /// What the file is, as the rank says (a running program gone from disk is a program).
    pub fn kind(self) -> FileKind {
        // A modified package file: most are programs and libraries, and an unknown answer for
        // one is asked again as soon as for a program.
        if self.is_special() {
            return FileKind::Executable;
        }
        FileKind::from_code((self.0 >> 3) & 0b111).unwrap_or_default()
    }

    /// The stored form (the cache's deferred list).
    pub fn code(self) -> u8 {
        self.0
    }

    pub fn from_code(code: u8) -> Rank {
        // Codes stored before bit 6 existed are ordinary ranks.
        match code {
            0 => Rank::RUNNING_DELETED,
            c if c == Rank::RULE_MATCH.0 => Rank::RULE_MATCH,
            c if c == Rank::FLAGGED_ELSEWHERE.0 => Rank::FLAGGED_ELSEWHERE,
            c if c == Rank::MODIFIED_PACKAGE.0 => Rank::MODIFIED_PACKAGE,
            c => Rank(c | ORDINARY),
        }
    }
}

/// Bit 6 of every rank but [`Rank::RUNNING_DELETED`].
const ORDINARY: u8 = 1 << 6;
/// Bit 7: see [`Rank::known_elsewhere`].
const KNOWN_ELSEWHERE: u8 = 1 << 7;

/// Ranks files: holds the compiled places and the sweep's "now".
pub struct Ranker {
    places: GlobSet,
    now_ns: i64,
}

impl Ranker {
    pub fn new(opts: &BudgetOptions) -> Result<Ranker, globset::Error> {
        let mut b = GlobSetBuilder::new();
        for g in RISKY_PLACES
            .iter()
            .copied()
            .chain(opts.priority_paths.iter().map(String::as_str))
        {
            b.add(Glob::new(g)?);
        }
        let now = hashsweep_core::clock::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64);
        Ok(Ranker {
            places: b.build()?,
            now_ns: now,
        })
    }

    /// The rank of a file from its path, kind and timestamps (nanoseconds since the epoch).
    pub fn rank(&self, path: &Path, kind: FileKind, mtime_ns: i64, ctime_ns: i64) -> Rank {
        let changed = mtime_ns.max(ctime_ns);
        let recent = self.now_ns.saturating_sub(changed) < RECENT.as_nanos() as i64;
        Rank::of(kind, self.places.is_match(path), recent)
    }
}

/// A digest waiting for the plan.
#[derive(Debug, Clone, Copy)]
struct Held {
    rank: Rank,
    paths: u32,
}

/// A digest whose answer on file is due for a refresh, waiting for the plan.
#[derive(Debug, Clone, Copy)]
struct Due {
    rank: Rank,
    paths: u32,
    /// When its answer on file was given (unix seconds).
    answered_at: i64,
    /// That answer is past the maximum age: without a refresh the path has no answer.
    overdue: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Nothing known about the budget yet: the first batch goes out to learn it.
    Learning { first: u64 },
    /// Ask as digests come, up to `limit` in all.
    Streaming { limit: u64 },
    /// Hold everything until the walk has ranked it.
    Holding,
    /// The service states no budget and there is no `--budget`: ask everything as it comes.
    Unlimited,
}

/// What [`Planner::finish`] decided.
pub struct Decision {
    /// The held digests to ask now, best first.
    pub asked: Vec<Digest>,
    /// The ones deferred to a later run, with their ranks: never asked, or answered longer
    /// ago than the maximum age (those are in `overdue` too).
    pub deferred: Vec<(Digest, Rank)>,
    /// Of `deferred`, the ones whose last answer is past the maximum age, with its date.
    pub overdue: HashMap<Digest, i64, DigestHash>,
    pub plan: Plan,
    /// The rank of every digest asked in this run.
    pub ranks: HashMap<Digest, Rank, DigestHash>,
}

/// The collector's budget keeper: says for each digest that needs a lookup whether it goes now,
/// and at the end of the walk which of the held ones are asked.
pub struct Planner {
    cap: Option<u64>,
    mode: Mode,
    /// Digests handed to the lookup stage, and their ranks (for the deferred list if the
    /// service refuses them for the day after all).
    sent: HashMap<Digest, Rank, DigestHash>,
    held: HashMap<Digest, Held, DigestHash>,
    /// Digests whose answer on file is due for a refresh.
    due: HashMap<Digest, Due, DigestHash>,
    /// Of `sent`, how many were refreshes (sent before the plan: no budget stated), and of
    /// those how many past the maximum age.
    sent_refreshes: u64,
    sent_overdue: u64,
    /// The first digests went out to learn the budget and the next one is held: the partial
    /// batch should leave now.
    flush_due: bool,
    /// What the key allowed when this run first heard of its budget, with what the run had
    /// asked by then (for the plan line: "the key allows N more").
    start: Option<u64>,
}

impl Planner {
    /// `first_batch`: how many digests go out before anything is known about the budget (the
    /// first request's worth).
    pub fn new(cap: Option<u64>, first_batch: u64) -> Planner {
        let mode = match cap {
            Some(c) if c >= STREAM_MIN => Mode::Streaming { limit: c / 4 },
            Some(_) => Mode::Holding,
            None => Mode::Learning {
                first: first_batch.clamp(1, LEARN_BATCH),
            },
        };
        Planner {
            cap,
            mode,
            sent: HashMap::default(),
            held: HashMap::default(),
            due: HashMap::default(),
            sent_refreshes: 0,
            sent_overdue: 0,
            flush_due: false,
            start: None,
        }
    }

    /// A run before this one heard the budget (kept in the cache): no need to learn it, so no
    /// digest goes out in walk order while the budget is small.
    pub fn remember(&mut self, budget: Budget) {
        if matches!(self.mode, Mode::Learning { .. }) {
            let _ = self.learn(Some(budget));
        }
    }

    /// Whether a digest that needs a lookup is sent now (`true`) or held for the plan.
    pub fn offer(&mut self, d: Digest, rank: Rank) -> bool {
        let send = match self.mode {
            Mode::Unlimited => true,
            Mode::Learning { first } => {
                let fits = (self.sent.len() as u64) < first;
                self.flush_due |= !fits && self.held.is_empty();
                fits
            }
            Mode::Streaming { limit } => {
                let fits = (self.sent.len() as u64) < limit;
                if !fits {
                    self.mode = Mode::Holding;
                    self.flush_due = true;
                }
                fits
            }
            Mode::Holding => false,
        };
        if send {
            self.sent.insert(d, rank);
        } else {
            self.held.insert(d, Held { rank, paths: 1 });
        }
        send
    }

    /// A digest whose answer on file (given at `answered_at`, unix seconds) is due for a
    /// refresh; `overdue`: that answer is past the maximum age. Sent now (`true`) only when the
    /// service states no budget and there is no cap; else held for the plan, where it goes
    /// after every digest never asked.
    pub fn offer_refresh(
        &mut self,
        d: Digest,
        rank: Rank,
        answered_at: i64,
        overdue: bool,
    ) -> bool {
        if self.mode == Mode::Unlimited {
            self.sent.insert(d, rank);
            self.sent_refreshes += 1;
            self.sent_overdue += u64::from(overdue);
            return true;
        }
        self.due.insert(
            d,
            Due {
                rank,
                paths: 1,
                answered_at,
                overdue,
            },
        );
        false
    }

    /// Whether the digests sent to learn the budget should leave now (once, when the first one
    /// beyond them is held).
    pub fn take_flush(&mut self) -> bool {
        std::mem::take(&mut self.flush_due)
    }

    /// A digest sent before the plan came back unasked (the service refused its request for
    /// the day): it competes in the plan again, with the rank it had.
    pub fn unasked(&mut self, d: &Digest) {
        if let Some(rank) = self.sent.remove(d) {
            self.held.insert(*d, Held { rank, paths: 1 });
        }
    }

    /// Another path holds a digest already offered: its best rank counts, and it is not rare.
    pub fn again(&mut self, d: &Digest, rank: Rank) {
        if let Some(h) = self.held.get_mut(d) {
            h.rank = h.rank.min(rank);
            h.paths = h.paths.saturating_add(1);
        } else if let Some(h) = self.due.get_mut(d) {
            h.rank = h.rank.min(rank);
            h.paths = h.paths.saturating_add(1);
        }
    }

    /// The digests held so far.
    pub fn held(&self) -> Vec<Digest> {
        self.held.keys().copied().collect()
    }

    /// Whether any digest is held (callers skip [`Planner::again`] when none is).
    pub fn holds_any(&self) -> bool {
        !self.held.is_empty() || !self.due.is_empty()
    }

    /// What the service said about the budget changed: decide how to go on, and return the
    /// held digests to send now (best first).
    pub fn learn(&mut self, budget: Option<Budget>) -> Vec<Digest> {
        if self.start.is_none() {
            self.start = budget.map(|b| b.remaining.saturating_add(self.asked()));
        }
        let allowance = self.allowance(budget);
        self.mode = match (self.mode, allowance) {
            (Mode::Learning { .. }, None) => Mode::Unlimited,
            (Mode::Learning { .. } | Mode::Streaming { .. }, Some(a))
                if a.saturating_add(self.asked()) >= STREAM_MIN =>
            {
                Mode::Streaming {
                    limit: a.saturating_add(self.asked()) / 4,
                }
            }
            (Mode::Learning { .. } | Mode::Streaming { .. }, Some(_)) => Mode::Holding,
            (m, _) => m,
        };
        let room = match self.mode {
            Mode::Unlimited => u64::MAX,
            Mode::Streaming { limit } => limit.saturating_sub(self.asked()),
            _ => 0,
        };
        let mut out = self.best(room as usize);
        for d in &out {
            if let Some(h) = self.held.remove(d) {
                self.sent.insert(*d, h.rank);
            }
        }
        // No budget stated: the refreshes go now too.
        if self.mode == Mode::Unlimited {
            for (d, h) in std::mem::take(&mut self.due) {
                self.sent.insert(d, h.rank);
                self.sent_refreshes += 1;
                self.sent_overdue += u64::from(h.overdue);
                out.push(d);
            }
        }
        out.shrink_to_fit();
        out
    }

    /// At the end of the walk (answers to what was sent already in): the held digests that are
    /// asked now, best first, the ones deferred with their ranks, and the plan. `earlier`
    /// holds the deferred list of earlier runs for the held digests: (rank, since); `fleet`
    /// on how many hosts each was at its last answer, where that is known.
    pub fn finish(
        mut self,
        budget: Option<Budget>,
        earlier: &HashMap<Digest, (Rank, i64)>,
        fleet: &HashMap<Digest, u32>,
    ) -> Decision {
        let never_asked = self.asked_new() + self.held.len() as u64;
        let overdue_count =
            self.due.values().filter(|d| d.overdue).count() as u64 + self.sent_overdue;
        let refreshing = (self.due.len() as u64 + self.sent_refreshes) - overdue_count;
        let asked_early = self.asked();
        // Nothing known and no cap: everything is asked.
        let room = self.allowance(budget).unwrap_or(u64::MAX);
        let hosts = |d: &Digest| fleet.get(d).copied().unwrap_or(1);
        let rarity = |rank: Rank, paths: u32, d: &Digest| {
            if paths > 1 || hosts(d) > 1 {
                rank.common()
            } else {
                rank
            }
        };
        // (a refresh, rank, hosts, new (not deferred before), since or the answer's date,
        // digest): never-asked digests first, each group by risk, then the oldest.
        type Key = (bool, Rank, u32, bool, i64, Digest);
        let mut order: Vec<Key> = self
            .held
            .iter()
            .map(|(d, h)| {
                let rank = rarity(h.rank, h.paths, d);
                match earlier.get(d) {
                    Some(&(r, since)) => (false, rank.min(r), hosts(d), false, since, *d),
                    None => (false, rank, hosts(d), true, i64::MAX, *d),
                }
            })
            .chain(self.due.iter().map(|(d, h)| {
                let rank = rarity(h.rank, h.paths, d);
                (true, rank, hosts(d), false, h.answered_at, *d)
            }))
            .collect();
        order.sort_unstable_by(|a, b| {
            (a.0, a.1, a.2, a.3, a.4, a.5.as_bytes()).cmp(&(
                b.0,
                b.1,
                b.2,
                b.3,
                b.4,
                b.5.as_bytes(),
            ))
        });
        let take = order.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        let mut deferred = Vec::new();
        let mut overdue = HashMap::default();
        let mut postponed = 0u64;
        for e in &order[take..] {
            let d = e.5;
            match self.due.get(&d) {
                Some(h) if !h.overdue => postponed += 1,
                Some(h) => {
                    overdue.insert(d, h.answered_at);
                    deferred.push((d, e.1));
                }
                None => deferred.push((d, e.1)),
            }
        }
        let asked: Vec<Digest> = order[..take].iter().map(|e| e.5).collect();
        let mut refreshed = self.sent_refreshes;
        for e in &order[..take] {
            refreshed += u64::from(e.0);
            self.sent.insert(e.5, e.1);
        }
        let mut plan = Plan {
            needed: never_asked + refreshing + overdue_count,
            never_asked,
            refreshing,
            overdue: overdue_count,
            asked: self.asked(),
            refreshed,
            postponed,
            deferred: deferred.len() as u64,
            cap: self.cap,
            limit: budget.and_then(|b| b.limit),
            // What the key allowed when this run began: what it has left now and what this run
            // has spent of it already (the first digests, sent to learn the budget).
            remaining: self
                .start
                .or(budget.map(|b| b.remaining.saturating_add(asked_early))),
            resets_at: budget
                .and_then(|b| b.resets_at)
                .map(hashsweep_lookup::budget::unix_secs),
            backlog_days: None,
        };
        plan.estimate();
        Decision {
            asked,
            deferred,
            overdue,
            plan,
            ranks: self.sent,
        }
    }

    /// Digests never asked that were handed to the lookup stage before the plan.
    fn asked_new(&self) -> u64 {
        (self.sent.len() as u64).saturating_sub(self.sent_refreshes)
    }

    /// Digests handed to the lookup stage so far.
    fn asked(&self) -> u64 {
        self.sent.len() as u64
    }

    /// How many more hashes may be asked: `--budget` less what was sent, and no more than the
    /// service says is left. `None`: no limit known.
    fn allowance(&self, budget: Option<Budget>) -> Option<u64> {
        let cap_left = self.cap.map(|c| c.saturating_sub(self.asked()));
        let service = budget.map(|b| b.remaining);
        match (cap_left, service) {
            (Some(c), Some(s)) => Some(c.min(s)),
            (c, s) => c.or(s),
        }
    }

    /// Up to `n` held digests, best first.
    fn best(&self, n: usize) -> Vec<Digest> {
        if n == 0 || self.held.is_empty() {
            return Vec::new();
        }
        let mut v: Vec<(Rank, Digest)> = self.held.iter().map(|(d, h)| (h.rank, *d)).collect();
        v.sort_unstable_by(|a, b| (a.0, a.1.as_bytes()).cmp(&(b.0, b.1.as_bytes())));
        v.truncate(n);
        v.into_iter().map(|e| e.1).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A running program deleted from disk goes before the riskiest ordinary file, and ranks
    /// stored by older versions (without bit 6) read back as ordinary ones.
    #[test]
    fn a_running_deleted_executable_ranks_first() {
        let best = Rank::of(FileKind::Executable, true, true);
        assert!(Rank::RUNNING_DELETED < best);
        assert!(Rank::RUNNING_DELETED < best.common());
        assert_eq!(
            Rank::from_code(Rank::RUNNING_DELETED.code()),
            Rank::RUNNING_DELETED
        );
        assert_eq!(Rank::from_code(best.code()), best);
        let old = (FileKind::Script.code() << 3) | 0b110;
        assert!(Rank::from_code(old) > best);
    }

    /// A digest CIRCL's sources flag goes after a running deleted program and before a
    /// modified package file and every ordinary file, whether one path holds it or several,
    /// and when the budget defers it, its stored code reads back as itself (a later run asks
    /// it first). Before, a special rank held by two paths was stored as an ordinary one.
    #[test]
    fn a_flagged_digest_keeps_its_place_when_deferred() {
        let best = Rank::of(FileKind::Executable, true, true);
        assert!(Rank::RUNNING_DELETED < Rank::FLAGGED_ELSEWHERE);
        assert!(Rank::FLAGGED_ELSEWHERE < Rank::MODIFIED_PACKAGE);
        assert_eq!(Rank::FLAGGED_ELSEWHERE.kind(), FileKind::Executable);
        for special in [
            Rank::RUNNING_DELETED,
            Rank::FLAGGED_ELSEWHERE,
            Rank::MODIFIED_PACKAGE,
        ] {
            assert_eq!(special.common(), special);
            assert_eq!(Rank::from_code(special.code()), special);
        }
        let legacy_max = (FileKind::Other.code() << 3) | 0b111;
        assert!(legacy_max < Rank::FLAGGED_ELSEWHERE.code());
        // No budget at all: both deferred; the flagged one is held by two paths.
        let mut p = Planner::new(Some(0), 1);
        assert!(!p.offer(d(1), best));
        assert!(!p.offer(d(2), Rank::FLAGGED_ELSEWHERE));
        p.again(&d(2), Rank::FLAGGED_ELSEWHERE);
        let Decision { deferred, .. } = p.finish(None, &HashMap::new(), &HashMap::new());
        let stored: HashMap<Digest, Rank> = deferred
            .iter()
            .map(|(d, r)| (*d, Rank::from_code(r.code())))
            .collect();
        assert_eq!(stored[&d(2)], Rank::FLAGGED_ELSEWHERE);
        // The next run: the flagged digest, deferred before, goes first even if this run
        // ranks it as an ordinary file (CIRCL not asked, say).
        let earlier: HashMap<Digest, (Rank, i64)> =
            stored.iter().map(|(d, r)| (*d, (*r, 0))).collect();
        let mut p = Planner::new(Some(1), 1);
        assert!(!p.offer(d(1), best));
        assert!(!p.offer(d(2), Rank::of(FileKind::Other, false, false)));
        let Decision { asked, .. } = p.finish(None, &earlier, &HashMap::new());
        assert_eq!(asked, [d(2)]);
    }

    /// A file that differs from its package goes just after a running deleted program and
    /// before every ordinary file, and its stored code reads back as itself.
    #[test]
    fn a_modified_package_file_ranks_second_only_to_a_running_deleted_program() {
        let best = Rank::of(FileKind::Executable, true, true);
        assert!(Rank::RUNNING_DELETED < Rank::MODIFIED_PACKAGE);
        assert!(Rank::MODIFIED_PACKAGE < best);
        assert_eq!(
            Rank::from_code(Rank::MODIFIED_PACKAGE.code()),
            Rank::MODIFIED_PACKAGE
        );
        // Every code stored before bit 6 existed reads back as an ordinary rank.
        let legacy_max = (FileKind::Other.code() << 3) | 0b111;
        assert!(legacy_max < Rank::MODIFIED_PACKAGE.code());
        assert_eq!(Rank::MODIFIED_PACKAGE.kind(), FileKind::Executable);
        let mut p = Planner::new(Some(1), 1);
        assert!(!p.offer(d(1), best));
        assert!(!p.offer(d(2), Rank::MODIFIED_PACKAGE));
        let Decision { asked, .. } = p.finish(None, &HashMap::new(), &HashMap::new());
        assert_eq!(asked, vec![d(2)]);
    }

    /// A file a --yara rule matched is asked first with a budget of one, and its stored code
    /// reads back as itself.
    #[test]
    fn a_rule_match_is_asked_before_every_ordinary_file() {
        let best = Rank::of(FileKind::Executable, true, true);
        assert!(Rank::RUNNING_DELETED < Rank::RULE_MATCH);
        assert!(Rank::RULE_MATCH < Rank::FLAGGED_ELSEWHERE);
        assert_eq!(Rank::from_code(Rank::RULE_MATCH.code()), Rank::RULE_MATCH);
        assert_eq!(Rank::RULE_MATCH.common(), Rank::RULE_MATCH);
        let mut p = Planner::new(Some(1), 1);
        assert!(!p.offer(d(1), best));
        assert!(!p.offer(d(2), Rank::RULE_MATCH));
        let Decision { asked, .. } = p.finish(None, &HashMap::new(), &HashMap::new());
        assert_eq!(asked, vec![d(2)]);
    }

    fn d(n: u8) -> Digest {
        Digest::Sha256([n; 32])
    }

    fn budget(remaining: u64) -> Option<Budget> {
        Some(Budget {
            limit: Some(4000),
            remaining,
            resets_at: None,
        })
    }

    #[test]
    fn the_order_of_risk_is_kind_then_place_then_recency_then_rarity() {
        let exe_tmp = Rank::of(FileKind::Executable, true, false);
        let exe_usr = Rank::of(FileKind::Executable, false, true);
        let script_tmp_new = Rank::of(FileKind::Script, true, true);
        let data_tmp_new = Rank::of(FileKind::Other, true, true);
        let data_old = Rank::of(FileKind::Other, false, false);
        let mut v = [data_old, script_tmp_new, exe_usr, data_tmp_new, exe_tmp];
        v.sort();
        assert_eq!(
            v,
            [exe_tmp, exe_usr, script_tmp_new, data_tmp_new, data_old]
        );
        assert!(data_old < data_old.common(), "rare before common");

        let r = Ranker::new(&BudgetOptions {
            priority_paths: vec!["/srv/evidence/**".into(), "**/*.dll".into()],
            ..BudgetOptions::default()
        })
        .unwrap();
        let old = 0;
        let p = |s: &str| r.rank(Path::new(s), FileKind::Other, old, old);
        assert_eq!(p("/tmp/x"), Rank::of(FileKind::Other, true, false));
        assert_eq!(
            p("/home/ann/Downloads/x"),
            Rank::of(FileKind::Other, true, false)
        );
        assert_eq!(p("/usr/lib/x"), Rank::of(FileKind::Other, false, false));
        assert_eq!(p("/data/x.dll"), Rank::of(FileKind::Other, true, false));
        let now = r.now_ns;
        assert_eq!(
            r.rank(Path::new("/usr/x"), FileKind::Other, now, old),
            Rank::of(FileKind::Other, false, true)
        );
    }

    #[test]
    fn a_small_budget_holds_everything_and_asks_the_best() {
        let mut p = Planner::new(None, 1);
        // The first digest goes alone to learn the budget.
        assert!(p.offer(d(1), Rank::of(FileKind::Other, false, false)));
        assert!(!p.offer(d(2), Rank::of(FileKind::Other, false, false)));
        // 3 hashes left: too few to stream.
        assert!(p.learn(budget(3)).is_empty());
        assert!(!p.offer(d(3), Rank::of(FileKind::Executable, true, true)));
        assert!(!p.offer(d(4), Rank::of(FileKind::Script, false, false)));
        assert!(!p.offer(d(5), Rank::of(FileKind::Other, false, false)));
        assert!(!p.offer(d(6), Rank::of(FileKind::Other, false, false)));
        p.again(&d(6), Rank::of(FileKind::Other, false, false));
        // d(2) was deferred by an earlier run: before the new d(5) of the same rank.
        let earlier = HashMap::from([(d(2), (Rank::of(FileKind::Other, false, false), 100))]);
        let Decision {
            asked,
            deferred,
            plan,
            ..
        } = p.finish(budget(3), &earlier, &HashMap::new());
        assert_eq!(asked, vec![d(3), d(4), d(2)]);
        assert_eq!(
            deferred.iter().map(|e| e.0).collect::<Vec<_>>(),
            vec![d(5), d(6)]
        );
        assert_eq!((plan.needed, plan.asked, plan.deferred), (6, 4, 2));
        assert_eq!(plan.backlog_days, Some(1));
    }

    #[test]
    fn a_big_budget_streams_a_quarter_then_holds() {
        let mut p = Planner::new(None, 1);
        assert!(p.offer(d(0), Rank::of(FileKind::Other, false, false)));
        assert!(p.learn(budget(40_000)).is_empty());
        let mut sent = 1;
        for i in 1..=20_000u32 {
            let mut b = [7u8; 32];
            b[..4].copy_from_slice(&i.to_le_bytes());
            if p.offer(Digest::Sha256(b), Rank::of(FileKind::Other, false, false)) {
                sent += 1;
            }
        }
        assert_eq!(sent, 10_000);
        let Decision {
            asked,
            deferred,
            plan,
            ..
        } = p.finish(budget(30_000), &HashMap::new(), &HashMap::new());
        assert_eq!((asked.len(), deferred.len()), (10_001, 0));
        assert_eq!(plan.needed, 20_001);
    }

    #[test]
    fn no_budget_from_the_service_and_no_cap_streams_everything() {
        let mut p = Planner::new(None, 1);
        assert!(p.offer(d(1), Rank::of(FileKind::Other, false, false)));
        assert!(!p.offer(d(2), Rank::of(FileKind::Other, false, false)));
        assert_eq!(p.learn(None), vec![d(2)]);
        assert!(p.offer(d(3), Rank::of(FileKind::Other, false, false)));
    }

    #[test]
    fn a_zero_budget_asks_nothing() {
        let mut p = Planner::new(Some(0), 1);
        assert!(!p.offer(d(1), Rank::of(FileKind::Executable, true, true)));
        let Decision {
            asked,
            deferred,
            plan,
            ..
        } = p.finish(None, &HashMap::new(), &HashMap::new());
        assert!(asked.is_empty());
        assert_eq!(deferred.len(), 1);
        assert_eq!(
            plan.human(SystemTime::UNIX_EPOCH),
            "needs 1 lookup; --budget allows 0; asking the 0 that matter most, deferring 1"
        );
    }

    /// Among answers asked again, one a gateway last said is on one host of the fleet goes
    /// before one on thousands (and a count not known counts as one host).
    #[test]
    fn a_digest_on_one_host_of_the_fleet_goes_before_one_on_thousands() {
        let r = Rank::of(FileKind::Executable, false, false);
        let mut p = Planner::new(Some(2), 1);
        for i in 1..=3 {
            assert!(!p.offer_refresh(d(i), r, 100, false));
        }
        // By digest alone d(1) would go first.
        let fleet = HashMap::from([(d(1), 4000), (d(3), 1)]);
        let Decision { asked, plan, .. } = p.finish(None, &HashMap::new(), &fleet);
        assert_eq!(asked, vec![d(2), d(3)]);
        assert_eq!((plan.refreshing, plan.postponed, plan.deferred), (3, 1, 0));
    }

    /// An answer due for a refresh is asked again only after every digest never asked,
    /// whatever its rank; refreshes go by risk, then the oldest answer first; one past the
    /// maximum age left unasked is deferred, one within it only postponed.
    #[test]
    fn a_refresh_goes_after_every_new_digest_then_by_risk_and_age() {
        let exe = Rank::of(FileKind::Executable, true, true);
        let data = Rank::of(FileKind::Other, false, false);
        let mut p = Planner::new(Some(4), 1);
        assert!(!p.offer_refresh(d(1), exe, 500, false));
        assert!(!p.offer(d(2), data));
        assert!(!p.offer_refresh(d(3), data, 300, false));
        assert!(!p.offer_refresh(d(4), data, 100, true));
        assert!(!p.offer_refresh(d(5), data, 200, false));
        assert!(!p.offer_refresh(d(6), data, 50, true));
        let Decision {
            asked,
            deferred,
            overdue,
            plan,
            ..
        } = p.finish(None, &HashMap::new(), &HashMap::new());
        assert_eq!(asked, vec![d(2), d(1), d(6), d(4)]);
        assert!(deferred.is_empty(), "{deferred:?}");
        assert_eq!(
            (
                plan.never_asked,
                plan.refreshing,
                plan.overdue,
                plan.refreshed
            ),
            (1, 3, 2, 3)
        );
        assert_eq!(plan.postponed, 2);
        assert!(overdue.is_empty());

        let mut p = Planner::new(Some(1), 1);
        assert!(!p.offer(d(2), data));
        assert!(!p.offer_refresh(d(4), data, 100, true));
        assert!(!p.offer_refresh(d(5), data, 50, false));
        let Decision {
            asked,
            deferred,
            overdue,
            plan,
            ..
        } = p.finish(None, &HashMap::new(), &HashMap::new());
        assert_eq!(asked, vec![d(2)]);
        assert_eq!(deferred, vec![(d(4), data)]);
        assert_eq!(overdue.get(&d(4)), Some(&100));
        assert_eq!(
            (plan.deferred, plan.postponed, plan.backlog_days),
            (1, 1, Some(1))
        );
    }

    /// Without a budget stated and without a cap, refreshes go as they come.
    #[test]
    fn with_no_budget_refreshes_are_sent_at_once() {
        let mut p = Planner::new(None, 1);
        assert!(p.offer(d(1), Rank::of(FileKind::Other, false, false)));
        assert!(!p.offer_refresh(d(2), Rank::of(FileKind::Other, false, false), 5, false));
        assert_eq!(p.learn(None), vec![d(2)]);
        assert!(p.offer_refresh(d(3), Rank::of(FileKind::Other, false, false), 5, false));
        let Decision { plan, .. } = p.finish(None, &HashMap::new(), &HashMap::new());
        assert_eq!(
            (plan.needed, plan.never_asked, plan.refreshing, plan.asked),
            (3, 1, 2, 3)
        );
        assert_eq!(plan.refreshed, 2);
    }

    #[test]
    fn a_rank_knows_its_files_kind() {
        for kind in [
            FileKind::Executable,
            FileKind::Script,
            FileKind::Document,
            FileKind::Archive,
            FileKind::Other,
        ] {
            assert_eq!(Rank::of(kind, true, false).kind(), kind);
            assert_eq!(Rank::of(kind, false, true).common().kind(), kind);
        }
        assert_eq!(Rank::RUNNING_DELETED.kind(), FileKind::Executable);
        assert_eq!(Rank::MODIFIED_PACKAGE.kind(), FileKind::Executable);
        let known = Rank::of(FileKind::Script, true, true).known_elsewhere();
        assert_eq!(known.kind(), FileKind::Script);
    }
}
