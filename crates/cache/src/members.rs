//! What `--archives` found inside an archive file (schema 4, `archive_reads` and
//! `archive_members`), kept under the archive's own digest-cache key: an unchanged archive
//! read with the same settings is answered from here and not decompressed again. A changed
//! archive's rows are replaced whole when it is read again; rows whose archive left the digest
//! cache go with it ([`super::maintain`]).

use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::{Cache, CacheError, FileKey, RACY_WINDOW, sql_err, unix_nanos};
use hashsweep_core::digest::Digests;
use hashsweep_core::file::FileKind;
use hashsweep_core::sync::lock;

/// One archive file as `--archives` left it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveRow {
    /// False: not an archive in the formats asked for (nothing was opened).
    pub opened: bool,
    /// Everything inside was read (no limit, damage or encrypted member stopped it).
    pub complete: bool,
    /// The archive's own note (damage, a limit).
    pub note: Option<String>,
    pub members: Vec<MemberRow>,
}

/// One member record: its path inside the archive (escaped, as after the `!`), its size
/// when read, what became of it, and its note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRow {
    pub member: Vec<u8>,
    pub size: Option<u64>,
    pub state: MemberState,
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberState {
    Hashed(Digests, FileKind),
    /// Not read, with why (a limit, encrypted; the `!*` records).
    Skipped(String),
    /// Could not be read, with why.
    Error(String),
}

const SELECT_READ: &str = "SELECT md5, sha1, opened, complete, note FROM archive_reads
     WHERE dev = ?1 AND ino = ?2 AND size = ?3 AND mtime_ns = ?4 AND ctime_ns = ?5
       AND options = ?6 AND ino_hi = ?7";

const SELECT_MEMBERS: &str = "SELECT member, size, state, text, sha256, md5, sha1, kind, note
     FROM archive_members WHERE dev = ?1 AND ino = ?2 ORDER BY seq";

impl Cache {
    /// For each key, what an earlier sweep with the same `options` (and at least the digests
    /// asked for) found inside that archive file, in one read transaction; `None` for a miss.
    /// A row that cannot be read back whole is a miss (the archive is read again).
    pub fn get_archives_many(
        &self,
        keys: &[FileKey],
        options: &str,
        need_md5: bool,
        need_sha1: bool,
    ) -> Result<Vec<Option<ArchiveRow>>, CacheError> {
        let r = self.try_get_archives(keys, options, need_md5, need_sha1);
        self.noted(r)
    }

    fn try_get_archives(
        &self,
        keys: &[FileKey],
        options: &str,
        need_md5: bool,
        need_sha1: bool,
    ) -> Result<Vec<Option<ArchiveRow>>, CacheError> {
        let mut conn = self.reader()?;
        let tx = conn
            .transaction()
            .map_err(sql_err(&self.path, "starting a read"))?;
        let mut out = Vec::with_capacity(keys.len());
        {
            let mut read = tx
                .prepare_cached(SELECT_READ)
                .map_err(sql_err(&self.path, "preparing an archive lookup"))?;
            let mut members = tx
                .prepare_cached(SELECT_MEMBERS)
                .map_err(sql_err(&self.path, "preparing a member lookup"))?;
            for key in keys {
                let k = (key.dev as i64, key.ino as i64);
                let head = read
                    .query_row(
                        params![
                            k.0,
                            k.1,
                            key.size as i64,
                            key.mtime_ns,
                            key.ctime_ns,
                            options,
                            key.ino_hi as i64
                        ],
                        |r| {
                            Ok((
                                r.get::<_, bool>(0)?,
                                r.get::<_, bool>(1)?,
                                r.get::<_, bool>(2)?,
                                r.get::<_, bool>(3)?,
                                r.get::<_, Option<String>>(4)?,
                            ))
                        },
                    )
                    .optional()
                    .map_err(sql_err(&self.path, "looking up an archive"))?;
                let Some((_, _, opened, complete, note)) =
                    head.filter(|&(md5, sha1, ..)| (md5 || !need_md5) && (sha1 || !need_sha1))
                else {
                    out.push(None);
                    continue;
                };
                let rows = members
                    .query_map(params![k.0, k.1], |r| {
                        let state = match r.get::<_, u8>(2)? {
                            0 => {
                                let sha256 = r.get::<_, [u8; 32]>(4).ok();
                                let md5 = r.get::<_, Option<[u8; 16]>>(5).ok().flatten();
                                let sha1 = r.get::<_, Option<[u8; 20]>>(6).ok().flatten();
                                let kind = r
                                    .get::<_, Option<u8>>(7)
                                    .ok()
                                    .flatten()
                                    .and_then(FileKind::from_code);
                                match (sha256, kind) {
                                    (Some(sha256), Some(kind))
                                        if (md5.is_some() || !need_md5)
                                            && (sha1.is_some() || !need_sha1) =>
                                    {
                                        Some(MemberState::Hashed(
                                            Digests { sha256, md5, sha1 },
                                            kind,
                                        ))
                                    }
                                    _ => None,
                                }
                            }
                            1 => r.get::<_, String>(3).ok().map(MemberState::Skipped),
                            2 => r.get::<_, String>(3).ok().map(MemberState::Error),
                            _ => None,
                        };
                        Ok(state.map(|state| MemberRow {
                            member: r.get(0).unwrap_or_default(),
                            size: r.get::<_, Option<i64>>(1).ok().flatten().map(|s| s as u64),
                            state,
                            note: r.get(8).ok().flatten(),
                        }))
                    })
                    .map_err(sql_err(&self.path, "looking up members"))?;
                let mut all = Vec::new();
                let mut whole = true;
                for row in rows {
                    match row.map_err(sql_err(&self.path, "reading members"))? {
                        Some(m) => all.push(m),
                        None => whole = false,
                    }
                }
                out.push(whole.then_some(ArchiveRow {
                    opened,
                    complete,
                    note,
                    members: all,
                }));
            }
        }
        drop(tx);
        Ok(out)
    }

    /// Store what was found inside these archive files, one transaction for all. Each
    /// archive's earlier rows (another version of the file, other settings) are replaced;
    /// archives changed within [`RACY_WINDOW`] of now are left out, as their digests are.
    pub fn put_archives(
        &self,
        rows: &[(FileKey, ArchiveRow)],
        options: &str,
        md5: bool,
        sha1: bool,
    ) -> Result<usize, CacheError> {
        let r = self.try_put_archives(rows, options, md5, sha1);
        self.noted(r)
    }

    fn try_put_archives(
        &self,
        rows: &[(FileKey, ArchiveRow)],
        options: &str,
        md5: bool,
        sha1: bool,
    ) -> Result<usize, CacheError> {
        if rows.is_empty() {
            return Ok(0);
        }
        let cutoff =
            unix_nanos(std::time::SystemTime::now()).saturating_sub(RACY_WINDOW.as_nanos() as i64);
        let mut conn = lock(&self.writer);
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql_err(&self.path, "starting a write"))?;
        let mut written = 0;
        {
            let mut drop_members = tx
                .prepare_cached("DELETE FROM archive_members WHERE dev = ?1 AND ino = ?2")
                .map_err(sql_err(&self.path, "preparing a member delete"))?;
            let mut put_read = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO archive_reads
                     (dev, ino, size, mtime_ns, ctime_ns, options, md5, sha1, opened, complete,
                      note, ino_hi) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                )
                .map_err(sql_err(&self.path, "preparing an archive write"))?;
            let mut put_member = tx
                .prepare_cached(
                    "INSERT INTO archive_members
                     (dev, ino, seq, member, size, state, text, sha256, md5, sha1, kind, note)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                )
                .map_err(sql_err(&self.path, "preparing a member write"))?;
            for (key, a) in rows {
                if key.mtime_ns > cutoff || key.ctime_ns > cutoff {
                    continue;
                }
                let (dev, ino) = (key.dev as i64, key.ino as i64);
                drop_members
                    .execute(params![dev, ino])
                    .map_err(sql_err(&self.path, "dropping old members"))?;
                put_read
                    .execute(params![
                        dev,
                        ino,
                        key.size as i64,
                        key.mtime_ns,
                        key.ctime_ns,
                        options,
                        md5,
                        sha1,
                        a.opened,
                        a.complete,
                        a.note,
                        key.ino_hi as i64
                    ])
                    .map_err(sql_err(&self.path, "writing an archive"))?;
                for (seq, m) in a.members.iter().enumerate() {
                    let (state, text, d, kind) = match &m.state {
                        MemberState::Hashed(d, k) => (0, None, Some(d), Some(k.code())),
                        MemberState::Skipped(why) => (1, Some(why.as_str()), None, None),
                        MemberState::Error(why) => (2, Some(why.as_str()), None, None),
                    };
                    put_member
                        .execute(params![
                            dev,
                            ino,
                            seq as i64,
                            m.member,
                            m.size.map(|s| s as i64),
                            state,
                            text,
                            d.map(|d| d.sha256),
                            d.and_then(|d| d.md5),
                            d.and_then(|d| d.sha1),
                            kind,
                            m.note
                        ])
                        .map_err(sql_err(&self.path, "writing a member"))?;
                }
                written += 1;
            }
        }
        tx.commit()
            .map_err(sql_err(&self.path, "committing archives"))?;
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u64) -> FileKey {
        FileKey {
            dev: 1,
            ino: i,
            ino_hi: 0,
            size: 100,
            mtime_ns: 1_000_000_000,
            ctime_ns: 1_000_000_000,
        }
    }

    fn row(tag: u8) -> ArchiveRow {
        ArchiveRow {
            opened: true,
            complete: false,
            note: Some("damaged".into()),
            members: vec![
                MemberRow {
                    member: b"dir/a\xff.exe".to_vec(),
                    size: Some(3),
                    state: MemberState::Hashed(
                        Digests {
                            sha256: [tag; 32],
                            md5: Some([tag; 16]),
                            sha1: None,
                        },
                        FileKind::Executable,
                    ),
                    note: None,
                },
                MemberRow {
                    member: b"secret.txt".to_vec(),
                    size: None,
                    state: MemberState::Skipped("encrypted".into()),
                    note: None,
                },
                MemberRow {
                    member: b"*".to_vec(),
                    size: None,
                    state: MemberState::Skipped("a limit".into()),
                    note: None,
                },
            ],
        }
    }

    #[test]
    fn archives_come_back_whole_and_a_changed_one_replaces_its_members() {
        let dir = tempfile::tempdir().unwrap();
        let (cache, _) = Cache::open(dir.path().join("c.sqlite")).unwrap();
        cache
            .put_archives(&[(key(1), row(1))], "opts", true, false)
            .unwrap();
        let got = cache
            .get_archives_many(&[key(1), key(2)], "opts", true, false)
            .unwrap();
        assert_eq!(got, vec![Some(row(1)), None]);
        // Other settings, or a digest the rows lack: a miss.
        let other = cache.get_archives_many(&[key(1)], "other", false, false);
        assert_eq!(other.unwrap(), vec![None]);
        let sha1 = cache.get_archives_many(&[key(1)], "opts", false, true);
        assert_eq!(sha1.unwrap(), vec![None]);
        // The archive changed: its old key misses, and only the new members are left.
        let mut changed = key(1);
        changed.mtime_ns += 1;
        let mut fewer = row(2);
        fewer.members.truncate(1);
        cache
            .put_archives(&[(changed, fewer.clone())], "opts", true, false)
            .unwrap();
        let got = cache.get_archives_many(&[key(1), changed], "opts", false, false);
        assert_eq!(got.unwrap(), vec![None, Some(fewer)]);
        let n: i64 = lock(&cache.writer)
            .query_row("SELECT count(*) FROM archive_members", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
    }
}
