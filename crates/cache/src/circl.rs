//! CIRCL hashlookup's answers (`--circl`, schema 8, `circl_answers`), by service (the CIRCL
//! URL asked) and digest: a record found (with its `FileName`, `ProductCode` and
//! `KnownMalicious`) or "not found", which is an answer too. A found record stands for
//! [`FOUND_TTL`], a "not found" for [`NOT_FOUND_TTL`]; after that CIRCL is asked again. A
//! digest CIRCL did not answer (an outage, a throttle) is never stored.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::{Cache, CacheError, lock, sql_err, unix_secs};
use hashsweep_core::digest::Digest;
use hashsweep_lookup::circl::CirclRecord;

/// How long CIRCL's record of a file stands (its sources rarely change what they say of a
/// file they know).
pub const FOUND_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// How long "CIRCL does not know it" stands: CIRCL adds files as distributions publish them,
/// so sooner than a record, but a nightly sweep does not ask every night.
pub const NOT_FOUND_TTL: Duration = Duration::from_secs(3 * 24 * 3600);

/// CIRCL's answer about one digest, as cached: its record, or `None` for "not found".
pub type CirclAnswer = Option<CirclRecord>;

impl Cache {
    /// The answers `service` (CIRCL's URL) gave for these digests that still stand at `now`
    /// ([`FOUND_TTL`], [`NOT_FOUND_TTL`]; one dated in the future, the clock gone back, does
    /// not). A digest missing from the map is to be asked.
    pub fn get_circl(
        &self,
        service: &str,
        digests: &[Digest],
        now: SystemTime,
    ) -> Result<HashMap<Digest, CirclAnswer>, CacheError> {
        let r = self.try_get_circl(service, digests, now);
        self.noted(r)
    }

    fn try_get_circl(
        &self,
        service: &str,
        digests: &[Digest],
        now: SystemTime,
    ) -> Result<HashMap<Digest, CirclAnswer>, CacheError> {
        let now = unix_secs(now);
        let mut conn = self.reader()?;
        let tx = conn
            .transaction()
            .map_err(sql_err(&self.path, "starting a read"))?;
        let mut out = HashMap::new();
        {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT found, file_name, product, known_malicious, looked_up_at
                     FROM circl_answers WHERE service = ?1 AND algo = ?2 AND digest = ?3",
                )
                .map_err(sql_err(&self.path, "preparing a CIRCL answer lookup"))?;
            for d in digests {
                let row = stmt
                    .query_row(params![service, d.algo().name(), d.as_bytes()], |r| {
                        Ok((
                            r.get::<_, bool>(0)?,
                            r.get::<_, Option<String>>(1)?,
                            r.get::<_, Option<String>>(2)?,
                            r.get::<_, Option<String>>(3)?,
                            r.get::<_, i64>(4)?,
                        ))
                    })
                    .optional()
                    .map_err(sql_err(&self.path, "looking up a CIRCL answer"))?;
                let Some((found, file_name, product, known_malicious, at)) = row else {
                    continue;
                };
                let ttl = if found { FOUND_TTL } else { NOT_FOUND_TTL };
                let fresh = now
                    .checked_sub(at)
                    .and_then(|age| u64::try_from(age).ok())
                    .is_some_and(|age| age < ttl.as_secs());
                if !fresh {
                    continue;
                }
                out.insert(
                    *d,
                    found.then_some(CirclRecord {
                        file_name,
                        product,
                        known_malicious,
                    }),
                );
            }
        }
        drop(tx);
        Ok(out)
    }

    /// Every answer of `service` standing at `now` whose record some source flags
    /// (`KnownMalicious`): few, read at once, so that a digest the verdict cache answers (and
    /// CIRCL is not asked about) still says who flags it.
    pub fn flagged_circl(
        &self,
        service: &str,
        now: SystemTime,
    ) -> Result<HashMap<Digest, CirclRecord>, CacheError> {
        let r = self.try_flagged_circl(service, now);
        self.noted(r)
    }

    fn try_flagged_circl(
        &self,
        service: &str,
        now: SystemTime,
    ) -> Result<HashMap<Digest, CirclRecord>, CacheError> {
        let now = unix_secs(now);
        let since = now.saturating_sub(FOUND_TTL.as_secs() as i64);
        let conn = self.reader()?;
        let mut stmt = conn
            .prepare_cached(
                "SELECT digest, file_name, product, known_malicious FROM circl_answers
                 WHERE service = ?1 AND found = 1 AND known_malicious IS NOT NULL
                   AND looked_up_at > ?2 AND looked_up_at <= ?3",
            )
            .map_err(sql_err(
                &self.path,
                "preparing a read of CIRCL's flagged answers",
            ))?;
        let rows = stmt
            .query_map(params![service, since, now], |r| {
                Ok((
                    r.get::<_, Vec<u8>>(0)?,
                    CirclRecord {
                        file_name: r.get(1)?,
                        product: r.get(2)?,
                        known_malicious: r.get(3)?,
                    },
                ))
            })
            .map_err(sql_err(&self.path, "reading CIRCL's flagged answers"))?;
        let mut out = HashMap::new();
        for row in rows {
            let (bytes, record) =
                row.map_err(sql_err(&self.path, "reading CIRCL's flagged answers"))?;
            // CIRCL is asked by SHA-1 or MD5; a row of another length is no digest of ours.
            let digest = match bytes.len() {
                20 => bytes.try_into().ok().map(Digest::Sha1),
                16 => bytes.try_into().ok().map(Digest::Md5),
                _ => None,
            };
            if let Some(d) = digest {
                out.insert(d, record);
            }
        }
        Ok(out)
    }

    /// Store what `service` answered at `now`: the records found, and the digests it does not
    /// know. Returns the number of rows written.
    pub fn put_circl(
        &self,
        service: &str,
        found: &[(Digest, &CirclRecord)],
        not_found: &[Digest],
        now: SystemTime,
    ) -> Result<usize, CacheError> {
        let r = self.try_put_circl(service, found, not_found, now);
        self.noted(r)
    }

    fn try_put_circl(
        &self,
        service: &str,
        found: &[(Digest, &CirclRecord)],
        not_found: &[Digest],
        now: SystemTime,
    ) -> Result<usize, CacheError> {
        let now = unix_secs(now);
        let mut conn = lock(&self.writer);
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql_err(&self.path, "starting a write"))?;
        let rows = found
            .iter()
            .map(|(d, r)| (d, Some(*r)))
            .chain(not_found.iter().map(|d| (d, None)));
        let mut written = 0;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO circl_answers (service, algo, digest, found,
                     file_name, product, known_malicious, looked_up_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .map_err(sql_err(&self.path, "preparing a CIRCL answer write"))?;
            for (d, r) in rows {
                stmt.execute(params![
                    service,
                    d.algo().name(),
                    d.as_bytes(),
                    r.is_some(),
                    r.and_then(|r| r.file_name.as_deref()),
                    r.and_then(|r| r.product.as_deref()),
                    r.and_then(|r| r.known_malicious.as_deref()),
                    now
                ])
                .map_err(sql_err(&self.path, "writing a CIRCL answer"))?;
                written += 1;
            }
        }
        tx.commit()
            .map_err(sql_err(&self.path, "committing CIRCL answers"))?;
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 24 * 3600;
    const SERVICE: &str = "http://127.0.0.1:1";

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    /// A record stands a week, a "not found" three days; another CIRCL's answers are not
    /// this one's; a row dated in the future (the clock went back) does not stand.
    #[test]
    fn found_and_not_found_stand_for_their_own_ttls() {
        let dir = tempfile::tempdir().unwrap();
        let (cache, _) = Cache::open(dir.path().join("c.sqlite")).unwrap();
        let (known, flagged, absent) = (
            Digest::Sha1([1; 20]),
            Digest::Md5([2; 16]),
            Digest::Sha1([3; 20]),
        );
        let libc = CirclRecord {
            file_name: Some("libc.so.6".into()),
            product: Some("190742".into()),
            known_malicious: None,
        };
        let bad = CirclRecord {
            file_name: None,
            product: None,
            known_malicious: Some("malshare.com".into()),
        };
        let n = cache
            .put_circl(
                SERVICE,
                &[(known, &libc), (flagged, &bad)],
                &[absent],
                at(0),
            )
            .unwrap();
        assert_eq!(n, 3);
        let all = [known, flagged, absent, Digest::Sha1([4; 20])];
        let day1 = cache.get_circl(SERVICE, &all, at(DAY)).unwrap();
        assert_eq!(day1.len(), 3);
        assert_eq!(day1[&known], Some(libc.clone()));
        assert_eq!(day1[&flagged], Some(bad));
        assert_eq!(day1[&absent], None);
        let day3 = cache
            .get_circl(SERVICE, &all, at(NOT_FOUND_TTL.as_secs()))
            .unwrap();
        assert_eq!(day3.len(), 2, "the \"not found\" is due");
        assert!(!day3.contains_key(&absent));
        let week = cache
            .get_circl(SERVICE, &all, at(FOUND_TTL.as_secs()))
            .unwrap();
        assert!(week.is_empty(), "{week:?}");
        assert!(
            cache
                .get_circl("http://127.0.0.1:2", &all, at(DAY))
                .unwrap()
                .is_empty()
        );
        assert!(
            cache
                .get_circl(SERVICE, &all, at(0) - Duration::from_secs(60))
                .unwrap()
                .is_empty()
        );
        // A new answer replaces the old one.
        cache
            .put_circl(SERVICE, &[(absent, &libc)], &[], at(DAY))
            .unwrap();
        let now = cache.get_circl(SERVICE, &[absent], at(2 * DAY)).unwrap();
        assert_eq!(now[&absent], Some(libc));
        // The flagged answers, all at once, while they stand.
        let flagged_now = cache.flagged_circl(SERVICE, at(2 * DAY)).unwrap();
        assert_eq!(flagged_now.len(), 1);
        assert!(flagged_now[&flagged].known_malicious.is_some());
        let later = cache
            .flagged_circl(SERVICE, at(FOUND_TTL.as_secs()))
            .unwrap();
        assert!(later.is_empty());
    }

    /// Maintenance deletes CIRCL's answers once even a record would be asked again, and
    /// keeps the ones that still stand.
    #[test]
    fn maintenance_forgets_answers_past_their_ttl() {
        let dir = tempfile::tempdir().unwrap();
        let (cache, _) = Cache::open(dir.path().join("c.sqlite")).unwrap();
        let (old, young) = (Digest::Sha1([1; 20]), Digest::Sha1([2; 20]));
        cache.put_circl(SERVICE, &[], &[old], at(0)).unwrap();
        let now = at(FOUND_TTL.as_secs() + DAY);
        cache
            .put_circl(SERVICE, &[], &[young], now - Duration::from_secs(DAY))
            .unwrap();
        let m = cache.maintain(now, Duration::from_secs(10)).unwrap();
        assert_eq!(m.circl_deleted, 1);
        let left: i64 = lock(&cache.writer)
            .query_row("SELECT count(*) FROM circl_answers", [], |r| r.get(0))
            .unwrap();
        assert_eq!(left, 1);
        assert!(
            cache
                .get_circl(SERVICE, &[young], now)
                .unwrap()
                .contains_key(&young)
        );
    }
}
