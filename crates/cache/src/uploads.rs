//! Uploads still being scanned when a run ended (schema 7, `pending_uploads`): the
//! `data_id` the service gave a file uploaded by `--upload-unknown`, kept under the service
//! and the file's digest, so that the next run fetches the result instead of uploading the
//! file again. A row goes when its answer is fetched, when the service no longer knows the
//! `data_id`, or when the run that finds it gives up waiting for it.

use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::{Cache, CacheError, sql_err};
use hashsweep_core::digest::Digest;
use hashsweep_core::sync::lock;

/// An upload waiting for its result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingUpload {
    pub data_id: String,
    /// When it was uploaded (unix seconds).
    pub uploaded_at: i64,
}

impl Cache {
    /// The upload of `d` still being scanned for this cache's service, if any.
    pub fn get_pending_upload(&self, d: &Digest) -> Result<Option<PendingUpload>, CacheError> {
        let r = (|| {
            let conn = self.reader()?;
            conn.query_row(
                "SELECT data_id, uploaded_at FROM pending_uploads
                 WHERE service = ?1 AND algo = ?2 AND digest = ?3",
                params![self.service, d.algo().name(), d.as_bytes()],
                |r| {
                    Ok(PendingUpload {
                        data_id: r.get(0)?,
                        uploaded_at: r.get(1)?,
                    })
                },
            )
            .optional()
            .map_err(sql_err(&self.path, "reading a pending upload"))
        })();
        self.noted(r)
    }

    /// Remember that `d` was uploaded and is being scanned as `data_id`.
    pub fn put_pending_upload(&self, d: &Digest, p: &PendingUpload) -> Result<(), CacheError> {
        let r = (|| {
            let mut conn = lock(&self.writer);
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(sql_err(&self.path, "starting a write"))?;
            tx.execute(
                "INSERT OR REPLACE INTO pending_uploads (service, algo, digest, data_id, uploaded_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![self.service, d.algo().name(), d.as_bytes(), p.data_id, p.uploaded_at],
            )
            .map_err(sql_err(&self.path, "writing a pending upload"))?;
            tx.commit()
                .map_err(sql_err(&self.path, "committing a pending upload"))
        })();
        self.noted(r)
    }

    /// Forget the pending upload of `d` (answered, or given up).
    pub fn drop_pending_upload(&self, d: &Digest) -> Result<(), CacheError> {
        let conn = lock(&self.writer);
        let r = conn
            .execute(
                "DELETE FROM pending_uploads WHERE service = ?1 AND algo = ?2 AND digest = ?3",
                params![self.service, d.algo().name(), d.as_bytes()],
            )
            .map(|_| ())
            .map_err(sql_err(&self.path, "forgetting a pending upload"));
        drop(conn);
        self.noted(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pending_upload_is_kept_per_service_and_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let (cache, _) = Cache::open(dir.path().join("c.sqlite")).unwrap();
        let d = Digest::Sha256([7; 32]);
        assert_eq!(cache.get_pending_upload(&d).unwrap(), None);
        let p = PendingUpload {
            data_id: "abc".into(),
            uploaded_at: 5,
        };
        cache.put_pending_upload(&d, &p).unwrap();
        assert_eq!(cache.get_pending_upload(&d).unwrap(), Some(p));
        let other = Cache::open(dir.path().join("c.sqlite"))
            .unwrap()
            .0
            .with_service("http://elsewhere/v4/hash");
        assert_eq!(other.get_pending_upload(&d).unwrap(), None);
        cache.drop_pending_upload(&d).unwrap();
        assert_eq!(cache.get_pending_upload(&d).unwrap(), None);
    }
}
