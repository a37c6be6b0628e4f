//! Keeping the cache file bounded: answers and the digest rows of files no sweep has needed
//! for [`FORGET_AFTER`] (deleted files, unmounted disks), and CIRCL's answers past their TTL,
//! are deleted, at most once per
//! [`PRUNE_EVERY`], in small transactions and within a time budget, so a big backlog is worked
//! off over several runs without ever holding other processes' writes for long. What
//! `--archives` found inside a file goes with the file's digest row.

use std::time::{Duration, Instant, SystemTime};

use rusqlite::{OptionalExtension, params};

use super::{Cache, CacheError, lock, sql_err, unix_secs};

/// A digest row not stored or used for this long is deleted: its file is gone, or no sweep
/// covers it any more (a file still there costs one read to come back).
pub const FORGET_AFTER: Duration = Duration::from_secs(90 * 24 * 3600);
/// How often the cache is pruned (a run finds out from the file, not from its own memory).
pub const PRUNE_EVERY: Duration = Duration::from_secs(24 * 3600);
/// A hit re-dates its row only when the row is older than this, so a warm sweep writes
/// nothing most nights.
pub(super) const TOUCH_AFTER: Duration = Duration::from_secs(7 * 24 * 3600);
/// Rows deleted per transaction.
const CHUNK: usize = 2000;

/// What one maintenance pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Maintenance {
    /// Whether a prune was due (else nothing was deleted).
    pub pruned: bool,
    /// Whether it finished within the budget (else the next run goes on from there).
    pub complete: bool,
    pub verdicts_deleted: u64,
    pub digests_deleted: u64,
    pub deferrals_deleted: u64,
    /// CIRCL hashlookup's answers past their TTL (they would be asked again anyway).
    pub circl_deleted: u64,
}

impl Cache {
    /// Date the rows this run served from the cache (see [`Cache::get_digests_many`]), then
    /// prune when the last complete prune is [`PRUNE_EVERY`] old: answers no sweep has needed
    /// for [`FORGET_AFTER`] (or dated in the future: the clock went back), then digest rows not
    /// seen for as long. Stops after `budget`, leaving the rest for the next run.
    pub fn maintain(&self, now: SystemTime, budget: Duration) -> Result<Maintenance, CacheError> {
        let r = self.try_maintain(now, budget);
        self.noted(r)
    }

    fn try_maintain(&self, now: SystemTime, budget: Duration) -> Result<Maintenance, CacheError> {
        let started = Instant::now();
        // Rows served from the cache this run and due a new date (see `get_digests_many`).
        if !lock(&self.seen).is_empty() {
            self.try_put_digests(&[])?;
        }
        let now = unix_secs(now);
        let mut done = Maintenance::default();
        let last: Option<i64> = lock(&self.writer)
            .query_row("SELECT value FROM meta WHERE key = 'last_prune'", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(sql_err(&self.path, "reading the last prune time"))?;
        let every = PRUNE_EVERY.as_secs() as i64;
        if last.is_some_and(|t| t <= now && now - t < every) {
            return Ok(done);
        }
        done.pruned = true;
        let longest = i64::try_from(self.ttls.longest().as_secs()).unwrap_or(i64::MAX);
        let forget = FORGET_AFTER.as_secs() as i64;
        let circl_ttl = crate::circl::FOUND_TTL.max(crate::circl::NOT_FOUND_TTL);
        let steps: [(&str, i64); 4] = [
            // An answer stays, expired or not, while sweeps still need it: it is the path's
            // last answer, and says the digest was asked before (`used_at` is never before
            // `looked_up_at`). One no sweep has needed for FORGET_AFTER goes, as does one
            // dated in the future (the clock went back).
            (
                "DELETE FROM verdicts WHERE (service, algo, digest) IN
                 (SELECT service, algo, digest FROM verdicts
                  WHERE used_at <= ?1 OR looked_up_at > ?2 LIMIT ?3)",
                now.saturating_sub(forget.max(longest)),
            ),
            (
                "DELETE FROM file_digests WHERE (dev, ino) IN (SELECT dev, ino FROM file_digests
                 WHERE seen_at <= ?1 OR seen_at > ?2 LIMIT ?3)",
                now.saturating_sub(forget),
            ),
            // A deferral no run has come back to (the file is gone).
            (
                "DELETE FROM deferred WHERE (algo, digest) IN (SELECT algo, digest FROM deferred
                 WHERE since <= ?1 OR since > ?2 LIMIT ?3)",
                now.saturating_sub(forget),
            ),
            // CIRCL's answers serve only while they stand: then CIRCL is asked again.
            (
                "DELETE FROM circl_answers WHERE (service, algo, digest) IN
                 (SELECT service, algo, digest FROM circl_answers
                  WHERE looked_up_at <= ?1 OR looked_up_at > ?2 LIMIT ?3)",
                now.saturating_sub(circl_ttl.as_secs() as i64),
            ),
        ];
        for (step, (sql, before)) in steps.into_iter().enumerate() {
            loop {
                if started.elapsed() >= budget {
                    return Ok(done);
                }
                let n = lock(&self.writer)
                    .execute(sql, params![before, now, CHUNK as i64])
                    .map_err(sql_err(&self.path, "pruning"))?;
                match step {
                    0 => done.verdicts_deleted += n as u64,
                    1 => done.digests_deleted += n as u64,
                    2 => done.deferrals_deleted += n as u64,
                    _ => done.circl_deleted += n as u64,
                }
                if n < CHUNK {
                    break;
                }
            }
        }
        // What `--archives` found inside files whose digest rows are gone goes with them.
        let orphans = [
            "DELETE FROM archive_reads WHERE (dev, ino) IN (SELECT dev, ino FROM archive_reads a
             WHERE NOT EXISTS (SELECT 1 FROM file_digests f WHERE f.dev = a.dev AND f.ino = a.ino)
             LIMIT ?1)",
            "DELETE FROM archive_members WHERE (dev, ino, seq) IN (SELECT dev, ino, seq
             FROM archive_members m WHERE NOT EXISTS (SELECT 1 FROM archive_reads a
             WHERE a.dev = m.dev AND a.ino = m.ino) LIMIT ?1)",
        ];
        for sql in orphans {
            loop {
                if started.elapsed() >= budget {
                    return Ok(done);
                }
                let n = lock(&self.writer)
                    .execute(sql, params![CHUNK as i64])
                    .map_err(sql_err(&self.path, "pruning archive members"))?;
                if n < CHUNK {
                    break;
                }
            }
        }
        lock(&self.writer)
            .execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('last_prune', ?1)",
                params![now],
            )
            .map_err(sql_err(&self.path, "recording the prune"))?;
        done.complete = true;
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FileKey, Ttls};
    use hashsweep_core::digest::{Digest, Digests};
    use hashsweep_core::file::FileMeta;
    use hashsweep_lookup::Answer;

    const DAY: Duration = Duration::from_secs(24 * 3600);

    fn key(ino: u64) -> FileKey {
        let old = 1_000_000_000_i64 * 1_000_000_000; // 2001: outside the racy window
        FileKey::new(
            &FileMeta {
                dev: 1,
                ino,
                ino_hi: 0,
                mtime_ns: old,
                ctime_ns: old,
            },
            3,
        )
    }

    fn digests(n: u8) -> Digests {
        Digests {
            sha256: [n; 32],
            md5: None,
            sha1: None,
        }
    }

    fn set_seen(cache: &Cache, ino: u64, at: SystemTime) {
        lock(&cache.writer)
            .execute(
                "UPDATE file_digests SET seen_at = ?1 WHERE ino = ?2",
                params![unix_secs(at), ino as i64],
            )
            .unwrap();
    }

    fn rows(cache: &Cache, table: &str) -> i64 {
        lock(&cache.writer)
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn forgets_unseen_rows_and_unused_answers_once_a_day() {
        let dir = tempfile::tempdir().unwrap();
        let (cache, _) = Cache::open(dir.path().join("c.sqlite")).unwrap();
        let cache = cache.with_ttls(Ttls::DEFAULT);
        cache
            .put_digests(&[(key(1), digests(1)), (key(2), digests(2))])
            .unwrap();
        let now = SystemTime::now();
        // File 2 was last seen 91 days ago: gone. File 1 is fresh.
        set_seen(&cache, 2, now - FORGET_AFTER - DAY);
        let answer = Answer {
            scan_result_i: 0,
            total_detected_avs: 0,
            data_id: None,
            details: None,
            hosts: None,
        };
        // An answer expired a week ago stays (a path keeps it, and it says the digest was
        // asked); one no sweep has needed for FORGET_AFTER goes.
        let (fresh, expired, unused) = (
            Digest::Sha256([7; 32]),
            Digest::Sha256([8; 32]),
            Digest::Sha256([9; 32]),
        );
        cache.put_verdicts(&[(fresh, answer.clone())], now).unwrap();
        cache
            .put_verdicts(&[(expired, answer.clone())], now - 8 * DAY)
            .unwrap();
        cache
            .put_verdicts(&[(unused, answer)], now - FORGET_AFTER - DAY)
            .unwrap();

        let m = cache.maintain(now, Duration::from_secs(10)).unwrap();
        assert_eq!(
            m,
            Maintenance {
                pruned: true,
                complete: true,
                verdicts_deleted: 1,
                digests_deleted: 1,
                deferrals_deleted: 0,
                circl_deleted: 0,
            }
        );
        assert_eq!(
            (rows(&cache, "file_digests"), rows(&cache, "verdicts")),
            (1, 2)
        );
        assert!(cache.get_digests(&key(1), false, false).unwrap().is_some());
        let kept = cache.get_answers(&[expired, unused], now).unwrap();
        assert!(kept.contains_key(&expired) && !kept.contains_key(&unused));

        // Not due again within the day, even with something to delete.
        set_seen(&cache, 1, now - FORGET_AFTER - DAY);
        let m = cache
            .maintain(now + DAY / 2, Duration::from_secs(10))
            .unwrap();
        assert!(!m.pruned);
        assert_eq!(rows(&cache, "file_digests"), 1);
        let m = cache.maintain(now + DAY, Duration::from_secs(10)).unwrap();
        assert_eq!((m.pruned, m.digests_deleted), (true, 1));
    }

    #[test]
    fn a_spent_budget_leaves_the_prune_due() {
        let dir = tempfile::tempdir().unwrap();
        let (cache, _) = Cache::open(dir.path().join("c.sqlite")).unwrap();
        let rows_: Vec<_> = (0..5).map(|i| (key(i), digests(i as u8))).collect();
        cache.put_digests(&rows_).unwrap();
        let now = SystemTime::now();
        for i in 0..5 {
            set_seen(&cache, i, now - FORGET_AFTER - DAY);
        }
        let m = cache.maintain(now, Duration::ZERO).unwrap();
        assert_eq!((m.pruned, m.complete, m.digests_deleted), (true, false, 0));
        let m = cache.maintain(now, Duration::from_secs(10)).unwrap();
        assert_eq!((m.complete, m.digests_deleted), (true, 5));
    }

    /// A hit on an old row dates it again with the next write, so a file still on disk is
    /// never forgotten however long ago it was first hashed.
    #[test]
    fn a_hit_on_an_old_row_dates_it_again() {
        let dir = tempfile::tempdir().unwrap();
        let (cache, _) = Cache::open(dir.path().join("c.sqlite")).unwrap();
        cache.put_digests(&[(key(1), digests(1))]).unwrap();
        let now = SystemTime::now();
        set_seen(&cache, 1, now - FORGET_AFTER + DAY);
        assert!(cache.get_digests(&key(1), false, false).unwrap().is_some());
        // The end-of-run pass writes the new date; two days later the row is still young.
        cache.maintain(now, Duration::from_secs(10)).unwrap();
        let m = cache
            .maintain(now + 2 * DAY, Duration::from_secs(10))
            .unwrap();
        assert_eq!(m.digests_deleted, 0);
        assert!(cache.get_digests(&key(1), false, false).unwrap().is_some());
    }

    /// A cache written by schema 1 opens with its rows kept and dated at the upgrade.
    #[test]
    fn schema_1_files_are_migrated_with_their_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.sqlite");
        {
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.execute_batch(crate::schema::SCHEMA_V1).unwrap();
            conn.pragma_update(None, "application_id", crate::APPLICATION_ID)
                .unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            let k = key(1);
            conn.execute(
                "INSERT INTO file_digests VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL, NULL)",
                params![
                    k.dev as i64,
                    k.ino as i64,
                    k.size as i64,
                    k.mtime_ns,
                    k.ctime_ns,
                    [1u8; 32]
                ],
            )
            .unwrap();
        }
        let (cache, warning) = Cache::open(&path).unwrap();
        assert_eq!(warning, None);
        assert_eq!(
            cache.get_digests(&key(1), false, false).unwrap(),
            Some(digests(1))
        );
        let m = cache
            .maintain(
                SystemTime::now() + FORGET_AFTER - DAY,
                Duration::from_secs(10),
            )
            .unwrap();
        assert_eq!(m.digests_deleted, 0, "dated at the upgrade, not at 1970");
    }

    /// A schema 1 file keeps its answers through the upgrade (they were asked without
    /// details), and gains the column that keeps the engine details of later ones.
    #[test]
    fn schema_1_verdicts_are_migrated_and_gain_engine_details() {
        use crate::DetailsUse;
        use hashsweep_lookup::EngineResult;

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.sqlite");
        let old = Digest::Sha256([1; 32]);
        let now = SystemTime::now();
        {
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.execute_batch(crate::schema::SCHEMA_V1).unwrap();
            conn.pragma_update(None, "application_id", crate::APPLICATION_ID)
                .unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            conn.execute(
                "INSERT INTO verdicts VALUES ('sha256', ?1, 1, 7, 'infected', 'id-1', ?2)",
                params![old.as_bytes(), unix_secs(now)],
            )
            .unwrap();
        }
        let (cache, warning) = Cache::open(&path).unwrap();
        assert_eq!(warning, None);
        let plain = Answer {
            scan_result_i: 1,
            total_detected_avs: 7,
            data_id: Some("id-1".into()),
            details: None,
            hosts: None,
        };
        let got = cache.get_verdicts(&[old], now).unwrap();
        assert_eq!(got.get(&old), Some(&plain), "the old answer is kept");
        let cache = cache.with_details(DetailsUse::Required);
        assert!(
            cache.get_verdicts(&[old], now).unwrap().is_empty(),
            "it was asked without details"
        );
        let detailed = Answer {
            details: Some(Box::new([EngineResult {
                engine: "AV".into(),
                threat_found: "EICAR".into(),
                scan_result_i: Some(1),
                def_time: None,
            }])),
            ..plain
        };
        cache.put_verdicts(&[(old, detailed.clone())], now).unwrap();
        drop(cache);
        let (cache, _) = Cache::open(&path).unwrap();
        let cache = cache.with_details(DetailsUse::Required);
        assert_eq!(
            cache.get_verdicts(&[old], now).unwrap().get(&old),
            Some(&detailed)
        );
    }

    fn archive(tag: u8) -> crate::ArchiveRow {
        use crate::{ArchiveRow, MemberRow, MemberState};
        ArchiveRow {
            opened: true,
            complete: true,
            note: None,
            members: vec![MemberRow {
                member: b"inner.exe".to_vec(),
                size: Some(5),
                state: MemberState::Hashed(
                    digests(tag),
                    hashsweep_core::file::FileKind::Executable,
                ),
                note: None,
            }],
        }
    }

    /// The members of an archive whose digest row is forgotten are deleted with it.
    #[test]
    fn members_go_with_their_archive_row() {
        let dir = tempfile::tempdir().unwrap();
        let (cache, _) = Cache::open(dir.path().join("c.sqlite")).unwrap();
        cache
            .put_digests(&[(key(1), digests(1)), (key(2), digests(2))])
            .unwrap();
        let both = [(key(1), archive(1)), (key(2), archive(2))];
        assert_eq!(cache.put_archives(&both, "o", false, false).unwrap(), 2);
        let now = SystemTime::now();
        set_seen(&cache, 2, now - FORGET_AFTER - DAY);
        cache.maintain(now, Duration::from_secs(10)).unwrap();
        let got = cache.get_archives_many(&[key(1), key(2)], "o", false, false);
        assert_eq!(got.unwrap(), vec![Some(archive(1)), None]);
        assert_eq!(rows(&cache, "archive_members"), 1);
    }

    /// A cache written by schema 2 opens with its digest rows kept and gains the member
    /// tables (its archives are read once more, then come from the cache).
    #[test]
    fn schema_2_files_are_migrated_and_gain_archive_members() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.sqlite");
        {
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.execute_batch(crate::schema::SCHEMA_V1).unwrap();
            conn.execute_batch(crate::schema::MIGRATE_V2).unwrap();
            conn.pragma_update(None, "application_id", crate::APPLICATION_ID)
                .unwrap();
            conn.pragma_update(None, "user_version", 2).unwrap();
            let k = key(1);
            conn.execute(
                "INSERT INTO file_digests VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL, NULL, ?7, 3)",
                params![
                    k.dev as i64,
                    k.ino as i64,
                    k.size as i64,
                    k.mtime_ns,
                    k.ctime_ns,
                    [1u8; 32],
                    unix_secs(SystemTime::now())
                ],
            )
            .unwrap();
        }
        let (cache, warning) = Cache::open(&path).unwrap();
        assert_eq!(warning, None);
        let version: i32 = lock(&cache.writer)
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, crate::SCHEMA_VERSION);
        assert_eq!(
            cache.get_digests(&key(1), false, false).unwrap(),
            Some(digests(1))
        );
        let none = cache.get_archives_many(&[key(1)], "o", false, false);
        assert_eq!(none.unwrap(), vec![None]);
        cache
            .put_archives(&[(key(1), archive(1))], "o", false, false)
            .unwrap();
        let got = cache.get_archives_many(&[key(1)], "o", false, false);
        assert_eq!(got.unwrap(), vec![Some(archive(1))]);
    }
}
