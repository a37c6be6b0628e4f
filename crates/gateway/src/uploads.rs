//! `serve --upload-unknown`: the fleet's uploads of unknown files, one per digest.
//!
//! An endpoint with `scan --upload-unknown` learns from `GET /v4/apikey` that it talks to a
//! gateway, and announces each file it would upload ([`Uploads::intent`]). The first endpoint
//! to announce a digest is asked to send it (its claim is kept in the store like a lookup's,
//! so one endpoint across every instance on one Redis); the others are held until the vendor
//! gave that upload a `data_id` and then poll it, or are told the final answer if the store
//! has it. The bytes an endpoint sends are checked against the digest it announced before they
//! leave with the gateway's key ([`Uploads::forward`]); polls ([`Uploads::poll`]) are asked
//! upstream at most once a second per `data_id`, and the final answer is stored as the
//! digest's answer, so every endpoint's next hash lookup gets it. The policy (sharing
//! accepted, the size limit) is the gateway's; the per-token budget is counted by the API.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::store::{Store, StoreError};
use hashsweep_cache::PendingUpload;
use hashsweep_core::digest::{Algo, Digest};
use hashsweep_core::sync::lock;
use hashsweep_lookup::upload::{KeyInfo, Poll, SendOptions, UploadClient, UploadError};
use hashsweep_lookup::{Answer, Verdict};

/// How long an endpoint asked to send a file has to start sending it before another may
/// (it reads the file again first; one that cannot, because the file changed, sends nothing).
pub const SEND_TTL: Duration = Duration::from_secs(5 * 60);
/// How long a `data_id` is polled for (the endpoint side gives up after a day too).
pub const PENDING_TTL: Duration = Duration::from_secs(25 * 3600);
/// How long an announcement waits for another endpoint's upload to get its `data_id`.
pub const HOLD: Duration = Duration::from_secs(60);
/// A poll's upstream answer is reused for this long (500 endpoints polling one `data_id`).
const POLL_REUSE: Duration = Duration::from_secs(1);
/// The key information is asked again after this long.
const INFO_AGE: Duration = Duration::from_secs(3600);
/// Upload bodies held in memory at once.
pub const BODIES_AT_ONCE: usize = 4;

/// The gateway's upload policy.
#[derive(Debug, Clone, Default)]
pub struct UploadPolicy {
    /// `serve --upload-accept-sharing`.
    pub accept_sharing: bool,
    /// `serve --upload-max-size`; `None`: the key's `max_upload_file_size`.
    pub max_size: Option<u64>,
    /// The `rule` header sent upstream.
    pub rule: String,
}

/// Why an upload request is refused. The text is safe to show to endpoints (no key).
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("this gateway does not upload files (it was started without serve --upload-unknown)")]
    Off,
    #[error(
        "this gateway does not upload files: its operator has not accepted that uploaded files are \
         shared with the vendor and its partners (serve --upload-accept-sharing), and its key \
         does not enforce private scanning"
    )]
    NotAccepted,
    #[error("the file is {size} bytes, over the gateway's upload limit of {max} bytes ({from})")]
    TooBig {
        size: u64,
        max: u64,
        from: &'static str,
    },
    #[error(
        "this gateway did not ask this endpoint for this file: announce it first (POST /v1/upload/intent)"
    )]
    NotAsked,
    #[error("the body's {0} digest is not the one announced")]
    Mismatch(&'static str),
    #[error("another endpoint is still uploading this file through the gateway; ask again later")]
    Busy,
    #[error("The data_id was not found")]
    UnknownDataId,
    #[error("the gateway's verdict store is unreachable; retry later")]
    Store(#[source] StoreError),
    #[error("{0}")]
    Upstream(UploadError),
}

/// What an announcement is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Intent {
    /// This endpoint sends the bytes (`POST /v4/file`).
    Send,
    /// Another endpoint's upload is being scanned: poll this `data_id`.
    Wait(String),
    /// The final answer is known.
    Answered(Answer),
}

/// One digest's upload state, as kept (a short line of words).
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// `send TOKEN INSTANCE`: that endpoint is asked to send it.
    Send { token: String },
    /// `data DATA_ID UNIX`: uploaded, being scanned.
    Data { data_id: String },
}

fn parse_state(v: &str) -> Option<State> {
    let mut w = v.split(' ');
    match (w.next()?, w.next()?) {
        ("send", token) => Some(State::Send {
            token: token.to_string(),
        }),
        ("data", id) if !id.is_empty() => Some(State::Data {
            data_id: id.to_string(),
        }),
        _ => None,
    }
}

/// The state of a single instance (a SQLite store): in memory, with the `data_id`s also in
/// the cache's pending uploads so that a restart still polls them.
#[derive(Default)]
struct Local {
    states: HashMap<Digest, (String, Instant)>,
    data: HashMap<String, Digest>,
}

/// The upload side of a gateway.
pub struct Uploads {
    client: Arc<UploadClient>,
    policy: UploadPolicy,
    store: Store,
    instance: String,
    info: tokio::sync::Mutex<Option<(Instant, KeyInfo)>>,
    local: std::sync::Mutex<Local>,
    polls: std::sync::Mutex<HashMap<String, (Instant, Poll)>>,
    /// Bodies being received (each held in memory whole, to be checked before it is sent).
    pub bodies: tokio::sync::Semaphore,
}

impl Uploads {
    pub fn new(client: Arc<UploadClient>, policy: UploadPolicy, store: Store) -> Uploads {
        let host = hashsweep_report::ecs::host_name().unwrap_or_else(|| "localhost".into());
        Uploads {
            client,
            policy,
            store,
            instance: format!("{host}:{}", std::process::id()),
            info: tokio::sync::Mutex::new(None),
            local: std::sync::Mutex::new(Local::default()),
            polls: std::sync::Mutex::new(HashMap::new()),
            bodies: tokio::sync::Semaphore::new(BODIES_AT_ONCE),
        }
    }

    /// What the gateway's key allows (asked upstream once an hour).
    pub async fn key_info(&self) -> Result<KeyInfo, Refused> {
        let mut held = self.info.lock().await;
        if let Some((at, info)) = *held
            && at.elapsed() < INFO_AGE
        {
            return Ok(info);
        }
        let client = Arc::clone(&self.client);
        let info = tokio::task::spawn_blocking(move || client.key_info())
            .await
            .map_err(|e| Refused::Upstream(UploadError::Transport(e.to_string())))?
            .map_err(Refused::Upstream)?;
        *held = Some((Instant::now(), info));
        Ok(info)
    }

    /// The largest file accepted, and what set it.
    pub async fn max_size(&self) -> Result<Option<(u64, &'static str)>, Refused> {
        if let Some(m) = self.policy.max_size {
            return Ok(Some((m, "serve --upload-max-size")));
        }
        Ok(self
            .key_info()
            .await?
            .max_upload_bytes
            .map(|m| (m, "the gateway key's max_upload_file_size")))
    }

    /// Whether files may leave at all: the operator accepted sharing, or the key scans
    /// privately.
    pub async fn check_consent(&self) -> Result<KeyInfo, Refused> {
        let info = self.key_info().await?;
        if self.policy.accept_sharing || info.enforce_private_scan {
            Ok(info)
        } else {
            Err(Refused::NotAccepted)
        }
    }

    /// Refuse a file of `size` bytes over the limit.
    pub async fn check_size(&self, size: u64) -> Result<(), Refused> {
        match self.max_size().await? {
            Some((max, from)) if size > max => Err(Refused::TooBig { size, max, from }),
            _ => Ok(()),
        }
    }

    /// `d` is announced by `token`'s endpoint, `size` bytes: who sends it, or where its answer is.
    pub async fn intent(&self, d: Digest, size: u64, token: &str) -> Result<Intent, Refused> {
        self.check_consent().await?;
        self.check_size(size).await?;
        let mine = format!("send {token} {}", self.instance);
        let deadline = Instant::now() + HOLD;
        let mut pause = Duration::from_millis(50);
        loop {
            if let Some(a) = self.answered(&d).await? {
                return Ok(Intent::Answered(a));
            }
            match self.take(&d, &mine).await? {
                None => return Ok(Intent::Send),
                Some(held) => match parse_state(&held) {
                    Some(State::Data { data_id }) => {
                        // Make sure the poll finds its digest (a restart, a lapsed key).
                        self.set_data(&data_id, &d).await?;
                        return Ok(Intent::Wait(data_id));
                    }
                    // The same endpoint asking again (its earlier try failed).
                    Some(State::Send { token: t }) if t == token => return Ok(Intent::Send),
                    Some(State::Send { .. }) => {}
                    // Not ours to read: let it lapse.
                    None => {}
                },
            }
            if Instant::now() >= deadline {
                return Err(Refused::Busy);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }

    /// The state that lets `token` send `d` (its raw value, to release it), or why not.
    pub async fn asked(&self, d: &Digest, token: &str) -> Result<String, Refused> {
        let held = self.state(d).await?.ok_or(Refused::NotAsked)?;
        match parse_state(&held) {
            Some(State::Send { token: t }) if t == token => Ok(held),
            _ => Err(Refused::NotAsked),
        }
    }

    /// Give up `token`'s turn to send `d` (`held` as [`Uploads::asked`] gave it).
    pub async fn release(&self, d: &Digest, held: &str) {
        let out = if self.store.is_shared() {
            self.store.upload_release(d, held).await
        } else {
            let mut l = lock(&self.local);
            if l.states.get(d).is_some_and(|(v, _)| v == held) {
                l.states.remove(d);
            }
            Ok(())
        };
        if let Err(e) = out {
            tracing::warn!("an upload's claim was not released (it lapses on its own): {e}");
        }
    }

    /// Send `bytes` (checked to be `d`'s) upstream with the gateway's key: the `data_id`.
    /// On failure the turn is given up so that another endpoint may send it later.
    pub async fn forward(
        &self,
        d: Digest,
        held: &str,
        name: String,
        bytes: Vec<u8>,
    ) -> Result<String, Refused> {
        let info = match self.check_consent().await {
            Ok(i) => i,
            Err(e) => {
                self.release(&d, held).await;
                return Err(e);
            }
        };
        if let Some(algo) = mismatch(&d, &bytes) {
            self.release(&d, held).await;
            return Err(Refused::Mismatch(algo));
        }
        let send = SendOptions {
            rule: self.policy.rule.clone(),
            private: info.paid_user || info.enforce_private_scan,
        };
        let client = Arc::clone(&self.client);
        let sent = tokio::task::spawn_blocking(move || client.upload(&name, bytes, &send))
            .await
            .unwrap_or_else(|e| Err(UploadError::Transport(e.to_string())));
        let data_id = match sent {
            Ok(id) => id,
            Err(e) => {
                self.release(&d, held).await;
                return Err(Refused::Upstream(e));
            }
        };
        metrics::counter!("hashsweep_gateway_uploads_total").increment(1);
        let now = hashsweep_lookup::upload::unix_now();
        let state = format!("data {data_id} {now}");
        if self.store.is_shared() {
            self.store
                .upload_set(&d, &state, PENDING_TTL)
                .await
                .map_err(Refused::Store)?;
        } else {
            lock(&self.local)
                .states
                .insert(d, (state, Instant::now() + PENDING_TTL));
            if let Store::Sqlite(cache) = &self.store {
                let (cache, id) = (Arc::clone(cache), data_id.clone());
                let p = PendingUpload {
                    data_id: id,
                    uploaded_at: now,
                };
                let _ = tokio::task::spawn_blocking(move || cache.put_pending_upload(&d, &p)).await;
            }
        }
        self.set_data(&data_id, &d).await?;
        Ok(data_id)
    }

    /// A poll of `data_id` (only one this gateway uploaded): pending, or the final answer,
    /// which is then the digest's answer in the store.
    pub async fn poll(&self, data_id: &str) -> Result<Poll, Refused> {
        let d = self.data(data_id).await?.ok_or(Refused::UnknownDataId)?;
        if let Some(mut a) = self.answered(&d).await? {
            a.data_id = Some(data_id.into());
            return Ok(Poll::Done(a));
        }
        if let Some((at, p)) = lock(&self.polls).get(data_id)
            && at.elapsed() < POLL_REUSE
        {
            return Ok(p.clone());
        }
        let client = Arc::clone(&self.client);
        let id = data_id.to_string();
        let polled = tokio::task::spawn_blocking(move || client.poll(&id))
            .await
            .unwrap_or_else(|e| Err(UploadError::Transport(e.to_string())));
        match polled {
            Ok(Poll::Done(a)) => {
                self.store
                    .put(&[(d, a.clone())], &[])
                    .await
                    .map_err(Refused::Store)?;
                if let Store::Sqlite(cache) = &self.store {
                    let cache = Arc::clone(cache);
                    let _ =
                        tokio::task::spawn_blocking(move || cache.drop_pending_upload(&d)).await;
                }
                let mut polls = lock(&self.polls);
                polls.retain(|_, (at, _)| at.elapsed() < POLL_REUSE);
                polls.remove(data_id);
                Ok(Poll::Done(a))
            }
            Ok(p) => {
                let mut polls = lock(&self.polls);
                polls.retain(|_, (at, _)| at.elapsed() < POLL_REUSE);
                polls.insert(data_id.to_string(), (Instant::now(), p.clone()));
                Ok(p)
            }
            Err(e @ UploadError::UnknownDataId(_)) => {
                // The vendor forgot it: a later announcement uploads the file again.
                if let Some(held) = self.state(&d).await?
                    && matches!(parse_state(&held), Some(State::Data { data_id: i }) if i == data_id)
                {
                    self.release(&d, &held).await;
                }
                Err(Refused::Upstream(e))
            }
            Err(e) => Err(Refused::Upstream(e)),
        }
    }

    /// The stored answer for `d`, if it is more than `unknown`.
    async fn answered(&self, d: &Digest) -> Result<Option<Answer>, Refused> {
        let got = self.store.get(&[*d]).await.map_err(Refused::Store)?;
        Ok(got
            .into_iter()
            .next()
            .flatten()
            .filter(|a| a.verdict() != Verdict::Unknown))
    }

    async fn take(&self, d: &Digest, value: &str) -> Result<Option<String>, Refused> {
        if self.store.is_shared() {
            return self
                .store
                .upload_take(d, value, SEND_TTL)
                .await
                .map_err(Refused::Store);
        }
        // Brings back an upload a restarted instance left in the cache.
        self.state(d).await?;
        // Looked at and taken under one lock: two announcements at once get one `send`.
        let mut l = lock(&self.local);
        let now = Instant::now();
        if let Some((held, until)) = l.states.get(d)
            && *until > now
        {
            return Ok(Some(held.clone()));
        }
        l.states.insert(*d, (value.to_string(), now + SEND_TTL));
        Ok(None)
    }

    async fn state(&self, d: &Digest) -> Result<Option<String>, Refused> {
        if self.store.is_shared() {
            return self.store.upload_state(d).await.map_err(Refused::Store);
        }
        {
            let mut l = lock(&self.local);
            match l.states.get(d) {
                Some((v, until)) if *until > Instant::now() => return Ok(Some(v.clone())),
                Some(_) => {
                    l.states.remove(d);
                }
                None => {}
            }
        }
        // After a restart: an upload still being scanned, from the cache.
        let Store::Sqlite(cache) = &self.store else {
            return Ok(None);
        };
        let (cache, key) = (Arc::clone(cache), *d);
        let pending = tokio::task::spawn_blocking(move || cache.get_pending_upload(&key))
            .await
            .ok()
            .and_then(Result::ok)
            .flatten();
        let Some(p) = pending else { return Ok(None) };
        let age = hashsweep_lookup::upload::unix_now().saturating_sub(p.uploaded_at);
        if age > PENDING_TTL.as_secs() as i64 {
            return Ok(None);
        }
        let state = format!("data {} {}", p.data_id, p.uploaded_at);
        let mut l = lock(&self.local);
        l.data.insert(p.data_id, *d);
        l.states
            .insert(*d, (state.clone(), Instant::now() + PENDING_TTL));
        Ok(Some(state))
    }

    async fn set_data(&self, data_id: &str, d: &Digest) -> Result<(), Refused> {
        if self.store.is_shared() {
            return self
                .store
                .upload_data_set(data_id, d, PENDING_TTL)
                .await
                .map_err(Refused::Store);
        }
        lock(&self.local).data.insert(data_id.to_string(), *d);
        Ok(())
    }

    async fn data(&self, data_id: &str) -> Result<Option<Digest>, Refused> {
        if self.store.is_shared() {
            return self
                .store
                .upload_data(data_id)
                .await
                .map_err(Refused::Store);
        }
        Ok(lock(&self.local).data.get(data_id).copied())
    }
}

/// The algorithm whose digest of `bytes` is not `d`, if it is not.
pub fn mismatch(d: &Digest, bytes: &[u8]) -> Option<&'static str> {
    use sha2::Digest as _;
    let got = match d.algo() {
        Algo::Sha256 => Digest::Sha256(sha2::Sha256::digest(bytes).into()),
        Algo::Sha1 => Digest::Sha1(sha1::Sha1::digest(bytes).into()),
        Algo::Md5 => Digest::Md5(md5::Md5::digest(bytes).into()),
    };
    (got != *d).then(|| d.algo().name())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_read_back_and_anything_else_is_not_ours() {
        assert_eq!(
            parse_state("send endpoint1 host:12"),
            Some(State::Send {
                token: "endpoint1".into()
            })
        );
        assert_eq!(
            parse_state("data abc123 1700000000"),
            Some(State::Data {
                data_id: "abc123".into()
            })
        );
        assert_eq!(parse_state("garbage"), None);
        assert_eq!(parse_state("data "), None);
    }

    #[test]
    fn bytes_are_checked_against_the_announced_digest_of_its_algorithm() {
        use sha2::Digest as _;
        let body = b"an unknown program";
        let sha = Digest::Sha256(sha2::Sha256::digest(body).into());
        let md5 = Digest::Md5(md5::Md5::digest(body).into());
        let sha1 = Digest::Sha1(sha1::Sha1::digest(body).into());
        for d in [sha, md5, sha1] {
            assert_eq!(mismatch(&d, body), None);
            assert_eq!(mismatch(&d, b"other bytes"), Some(d.algo().name()));
        }
    }
}
