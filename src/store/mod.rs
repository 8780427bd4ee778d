//! Durable state behind one trait: revoked token ids, used assertion ids, refresh-token families,
//! authorization codes and browser sessions.

pub mod feed;
mod memory;
pub mod redis;
pub mod seen;
mod sqlite;
pub mod watch;

pub use memory::MemoryStore;
pub use redis::RedisStore;
pub use sqlite::SqliteStore;

use crate::config::StoreBackend;
use std::sync::Arc;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

/// What the token service keeps across restarts. Every method is synchronous and quick; async
/// callers run them through `run_blocking`. A method returns only after the change is durable.
pub trait Store: Send + Sync + 'static {
    /// Records that the access token `jti` is revoked until `exp` (seconds since the epoch).
    fn revoke(&self, jti: &str, exp: u64) -> Result<(), StoreError>;

    /// Every revocation that has not expired at `now`, to mirror in memory at start-up.
    fn revoked(&self, now: u64) -> Result<Vec<(String, u64)>, StoreError>;

    /// Records a client assertion id as used until `exp`. False when it was already used: replay.
    fn use_assertion(
        &self,
        client_id: &str,
        jti: &str,
        exp: u64,
        now: u64,
    ) -> Result<bool, StoreError>;

    /// Stores a new refresh token (its hash only), opening or continuing its family.
    fn put_refresh(&self, rec: &RefreshRecord) -> Result<(), StoreError>;

    /// Rotates atomically: when `old_hash` is the family's current token, bound to `client_id` and
    /// unexpired, it is marked used and `new_hash` takes its place (same family, subject, scopes,
    /// resource and DPoP key).
    /// Presenting a token that was already rotated revokes its whole family.
    fn rotate_refresh(
        &self,
        old_hash: &str,
        client_id: &str,
        new_hash: &str,
        new_expires_at: u64,
        now: u64,
    ) -> Result<Rotation, StoreError>;

    /// The record of an active (current, unexpired, family not revoked) refresh token.
    fn active_refresh(&self, hash: &str, now: u64) -> Result<Option<RefreshRecord>, StoreError>;

    /// Records that the access token `jti` (valid until `exp`) was issued from a refresh family, so
    /// revoking the family revokes it too.
    fn family_token(&self, family: &str, jti: &str, exp: u64) -> Result<(), StoreError>;

    /// The refresh family the access token `jti` was recorded in by `family_token`, if any: a token
    /// exchanged for it joins the same family, so revoking the family ends both.
    fn token_family(&self, jti: &str) -> Result<Option<String>, StoreError>;

    /// Revokes every refresh token of a family and every access token issued from it; returns those
    /// access tokens (`jti`, `exp`) for the in-memory denylist. Revoking twice is harmless.
    fn revoke_family(&self, family: &str) -> Result<Vec<(String, u64)>, StoreError>;

    /// The refresh families of a subject that may still be live (unexpired, perhaps revoked
    /// already), for ending everything a removed user was granted.
    fn families_of(&self, subject: &str, now: u64) -> Result<Vec<String>, StoreError>;

    /// Stores a new authorization code (its hash only).
    fn put_code(&self, rec: &CodeRecord) -> Result<(), StoreError>;

    /// Uses a code once, atomically. A second use reports what the first one issued, to revoke it.
    fn take_code(&self, hash: &str, now: u64) -> Result<CodeUse, StoreError>;

    /// Records what a code's exchange issued: the access token's jti and exp, and the refresh family.
    fn code_issued(&self, hash: &str, jti: &str, exp: u64, family: &str) -> Result<(), StoreError>;

    /// Records a sign-in session (the SHA-256 of its id only).
    fn put_session(&self, rec: &SessionRecord) -> Result<(), StoreError>;

    /// A live session: neither idle past `idle_until` nor past `expires_at`.
    fn session(&self, hash: &str, now: u64) -> Result<Option<SessionRecord>, StoreError>;

    /// Moves a session's idle deadline (never past its absolute one); false when the store has no
    /// such session (ended, or expired), so a gateway holding it lets it go.
    fn touch_session(&self, hash: &str, idle_until: u64) -> Result<bool, StoreError>;

    /// Ends one session; false when there was none.
    fn end_session(&self, hash: &str) -> Result<bool, StoreError>;

    /// Ends every session that `of` names; returns how many there were.
    fn end_sessions(&self, of: &SessionsOf<'_>) -> Result<u64, StoreError>;

    /// The live sessions of a subject, whoever signed them in, newest first (the console's list).
    fn sessions_of(&self, subject: &str, now: u64) -> Result<Vec<SessionRecord>, StoreError>;

    /// Drops entries whose time has passed.
    fn purge(&self, now: u64) -> Result<(), StoreError>;

    /// Keeps a client that registered itself (RFC 7591), for every gateway sharing the store.
    fn put_client(&self, c: &RegisteredClient) -> Result<(), StoreError>;

    /// A registered client by id.
    fn registered_client(&self, id: &str) -> Result<Option<RegisteredClient>, StoreError>;

    /// Every registered client, oldest first.
    fn registered_clients(&self) -> Result<Vec<RegisteredClient>, StoreError>;

    /// Removes a registered client; true when there was one.
    fn remove_client(&self, id: &str) -> Result<bool, StoreError>;

    /// Operations, failed operations and reconnections so far, for metrics.
    fn stats(&self) -> StoreStats {
        StoreStats::default()
    }

    /// Answers when the store can be used right now (for `/ready`).
    fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Counters shared between gateways (rate limits, lockouts), when this store shares them;
    /// `None` means each gateway counts in its own memory.
    fn counter(&self) -> Option<Arc<dyn Counter>> {
        None
    }

    /// One-time ids shared between gateways (DPoP proof ids), when this store shares them; `None`
    /// means each gateway remembers them in its own memory.
    fn once_ids(&self) -> Option<Arc<dyn OnceIds>> {
        None
    }

    /// Whether the store may have been changed by another process (the command line, on a file the
    /// gateway shares) since the last call, so its revocations are worth reading again. Stores that
    /// publish their revocations (Redis), or live in this process alone, answer false.
    fn changed_elsewhere(&self) -> Result<bool, StoreError> {
        Ok(false)
    }
}

/// Ids each accepted once by every gateway on one store, for a while.
#[async_trait::async_trait]
pub trait OnceIds: Send + Sync {
    /// Records `id` for `ttl_secs` (at least one); false when it was recorded already: a replay.
    async fn first_use(&self, id: &str, ttl_secs: u64) -> Result<bool, StoreError>;
}

/// Fixed-window counters shared by every gateway on one store.
#[async_trait::async_trait]
pub trait Counter: Send + Sync {
    /// Adds `add` (0 reads) to the counter `key` in the fixed window of `window_ms` around `now_ms`
    /// and returns its value.
    async fn count(
        &self,
        key: &str,
        window_ms: u64,
        add: u32,
        now_ms: u64,
    ) -> Result<u32, StoreError>;

    /// Sets the counter `key` of the window around `now_ms` back to zero (an operator cleared a
    /// lockout).
    async fn reset(&self, key: &str, window_ms: u64, now_ms: u64) -> Result<(), StoreError>;

    /// Several counts at once, answered in order: in one round trip where the store allows, else
    /// one `count` after another.
    async fn count_many(&self, asks: &[Ask<'_>], now_ms: u64) -> Result<Vec<u32>, StoreError> {
        let mut out = Vec::with_capacity(asks.len());
        for a in asks {
            out.push(self.count(a.key, a.window_ms, a.add, now_ms).await?);
        }
        Ok(out)
    }
}

/// One count of a `Counter::count_many`: add `add` (0 reads) to `key`'s window of `window_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ask<'a> {
    pub key: &'a str,
    pub window_ms: u64,
    pub add: u32,
}

/// A stored refresh token: the SHA-256 of the token, never the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshRecord {
    pub hash: String,
    pub family: String,
    pub client_id: String,
    pub subject: String,
    pub scopes: String,
    /// the protected resource the family's access tokens are for (RFC 8707); empty: none
    pub resource: String,
    /// the thumbprint of the DPoP key a public client's family is bound to (RFC 9449 §5); empty: none
    pub jkt: String,
    pub expires_at: u64,
    /// `refresh_token_ttl` bounds the family's life, however often it rotates
    pub family_expires_at: u64,
}

/// A client that registered itself at `/oauth/register`: public, authorization code with PKCE.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RegisteredClient {
    pub client_id: String,
    pub client_name: Option<String>,
    pub redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
    pub scopes: Vec<String>,
    pub created_at: u64,
    /// an operator disabled it: it is an unknown client until enabled again
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// rotated; the record of the token that was presented
    Rotated(RefreshRecord),
    /// the token had been rotated before: its family is now revoked
    Reused { family: String },
    /// unknown, expired, revoked, or bound to another client
    Invalid,
}

/// An authorization code as stored: its SHA-256, and everything it is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeRecord {
    pub hash: String,
    pub client_id: String,
    pub redirect_uri: String,
    pub challenge: String,
    pub subject: String,
    pub scopes: String,
    pub nonce: String,
    /// the protected resource asked for (RFC 8707); empty: none
    pub resource: String,
    pub auth_time: u64,
    pub expires_at: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeUse {
    Fresh(CodeRecord),
    /// used before: what that exchange issued (empty when nothing was)
    Reused {
        jti: String,
        exp: u64,
        family: String,
    },
    Invalid,
}

/// A browser sign-in session as stored: the SHA-256 of its id, never the id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub hash: String,
    pub subject: String,
    /// "local" or the login provider's name
    pub provider: String,
    /// the provider's session id (`sid`), for back-channel logout; empty when it sent none
    pub provider_sid: String,
    /// the identity as JSON (claims, roles, the provider's ID token for logout)
    pub data: String,
    pub auth_time: u64,
    pub idle_until: u64,
    pub expires_at: u64,
}

/// Which sessions to end at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionsOf<'a> {
    /// every session of a subject, whoever signed it in (operators)
    Subject(&'a str),
    /// a provider's subject (back-channel logout with `sub`)
    ProviderSubject(&'a str, &'a str),
    /// a provider's session (back-channel logout with `sid`)
    ProviderSid(&'a str, &'a str),
}

impl SessionsOf<'_> {
    pub fn matches(&self, r: &SessionRecord) -> bool {
        match *self {
            SessionsOf::Subject(s) => r.subject == s,
            SessionsOf::ProviderSubject(p, s) => r.provider == p && r.subject == s,
            SessionsOf::ProviderSid(p, sid) => {
                r.provider == p && !sid.is_empty() && r.provider_sid == sid
            }
        }
    }

    /// The name of the index that lists these sessions, for stores that keep one per key.
    pub fn index(&self) -> String {
        match *self {
            SessionsOf::Subject(s) => format!("sub:{s}"),
            SessionsOf::ProviderSubject(p, s) => format!("psub:{p}:{s}"),
            SessionsOf::ProviderSid(p, sid) => format!("psid:{p}:{sid}"),
        }
    }
}

impl SessionRecord {
    /// Every index this session is listed in.
    pub fn indexes(&self) -> Vec<String> {
        let mut v = vec![
            SessionsOf::Subject(&self.subject).index(),
            SessionsOf::ProviderSubject(&self.provider, &self.subject).index(),
        ];
        if !self.provider_sid.is_empty() {
            v.push(SessionsOf::ProviderSid(&self.provider, &self.provider_sid).index());
        }
        v
    }

    /// The latest a gateway may hold this session in memory without asking the store again: its
    /// idle deadline (a gateway's own never lies past the store's), capped by its absolute one.
    pub fn held_until(&self) -> u64 {
        self.idle_until.min(self.expires_at)
    }

    pub fn live(&self, now: u64) -> bool {
        now < self.idle_until && now < self.expires_at
    }
}

/// What a session's name starts with in the revocation list. Ending a session records it there,
/// beside the revoked tokens' ids, until its idle deadline (`SessionRecord::held_until`), so that
/// gateways holding the session in memory drop it when the revocation reaches them (the Redis feed
/// at once, the SQLite file's watch within a second).
pub const SESSION_REVOKED: &str = "session:";

/// The name a session's end goes by in the revocation list.
pub fn session_revocation(hash: &str) -> String {
    format!("{SESSION_REVOKED}{hash}")
}

/// Sessions as the console lists them: the latest sign-in first.
fn newest_first(sessions: &mut [SessionRecord]) {
    sessions.sort_by(|a, b| b.auth_time.cmp(&a.auth_time).then(a.hash.cmp(&b.hash)));
}

/// What a store counted, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub operations: u64,
    pub errors: u64,
    pub reconnects: u64,
}

/// Whether this gateway knows every revocation: true once the store's set is loaded, false while a
/// shared store's feed is away (it reloads the set when it is back).
#[derive(Debug)]
pub struct RevocationsLoaded(std::sync::atomic::AtomicBool);

impl RevocationsLoaded {
    pub fn new(loaded: bool) -> Self {
        RevocationsLoaded(std::sync::atomic::AtomicBool::new(loaded))
    }

    pub fn set(&self, loaded: bool) {
        self.0.store(loaded, std::sync::atomic::Ordering::SeqCst)
    }

    pub fn get(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Opens the configured backend once, at start-up.
pub fn open(backend: &StoreBackend) -> Result<Arc<dyn Store>, crate::startup_error::StartupError> {
    let failed = |problem| crate::startup_error::StartupError::Store {
        backend: backend.kind(),
        problem,
    };
    match backend {
        StoreBackend::Memory => Ok(Arc::new(MemoryStore::default())),
        StoreBackend::Sqlite(path) => Ok(Arc::new(SqliteStore::open(path).map_err(failed)?)),
        StoreBackend::Redis(url) => Ok(Arc::new(RedisStore::open(url).map_err(failed)?)),
    }
}

/// Runs a store call off the async workers.
pub async fn run_blocking<T: Send + 'static>(
    store: &Arc<dyn Store>,
    f: impl FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let store = store.clone();
    let call = tokio::task::spawn_blocking(move || f(store.as_ref()));
    // a request's store calls are spans of its trace
    crate::telemetry::current::internal("store", |_| Vec::new(), call)
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What every store does with registered clients.
    fn keeps_registered_clients(s: &dyn Store) {
        let client = |id: &str, at: u64| RegisteredClient {
            client_id: id.into(),
            client_name: Some("Tool".into()),
            redirect_uris: vec!["http://127.0.0.1:5000/cb".into()],
            grant_types: vec!["authorization_code".into()],
            scopes: vec!["mcp".into()],
            created_at: at,
            disabled: false,
        };
        assert_eq!(s.registered_client("dyn-b").unwrap(), None);
        s.put_client(&client("dyn-b", 20)).unwrap();
        s.put_client(&client("dyn-a", 10)).unwrap();
        assert_eq!(
            s.registered_client("dyn-b").unwrap(),
            Some(client("dyn-b", 20))
        );
        let ids: Vec<String> = s
            .registered_clients()
            .unwrap()
            .into_iter()
            .map(|c| c.client_id)
            .collect();
        assert_eq!(ids, ["dyn-a", "dyn-b"]);
        assert!(s.remove_client("dyn-a").unwrap());
        assert!(!s.remove_client("dyn-a").unwrap());
        assert_eq!(s.registered_clients().unwrap().len(), 1);
    }

    #[test]
    fn memory_and_sqlite_keep_registered_clients() {
        keeps_registered_clients(&MemoryStore::default());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.db");
        keeps_registered_clients(&SqliteStore::open(&path).unwrap());
        // and across a restart
        let again = SqliteStore::open(&path).unwrap();
        assert_eq!(again.registered_clients().unwrap().len(), 1);
    }

    /// What every store lists as a subject's sessions: live ones only, the newest first.
    fn lists_a_subjects_sessions(s: &dyn Store) {
        let session = |hash: &str, subject: &str, at: u64, idle_until: u64| SessionRecord {
            hash: hash.into(),
            subject: subject.into(),
            provider: "local".into(),
            provider_sid: String::new(),
            data: "{}".into(),
            auth_time: at,
            idle_until,
            expires_at: 10_000,
        };
        s.put_session(&session("h-old", "ann", 100, 5_000)).unwrap();
        s.put_session(&session("h-new", "ann", 200, 5_000)).unwrap();
        s.put_session(&session("h-idle", "ann", 300, 400)).unwrap();
        s.put_session(&session("h-bob", "bob", 150, 5_000)).unwrap();
        let hashes = |subject: &str| -> Vec<String> {
            let list = s.sessions_of(subject, 1_000).unwrap();
            list.into_iter().map(|r| r.hash).collect()
        };
        assert_eq!(hashes("ann"), ["h-new", "h-old"]);
        assert_eq!(hashes("bob"), ["h-bob"]);
        assert!(hashes("nobody").is_empty());
        assert!(s.touch_session("h-new", 6_000).unwrap());
        assert!(
            !s.touch_session("h-none", 6_000).unwrap(),
            "no such session"
        );
        assert!(s.end_session("h-new").unwrap());
        assert!(
            !s.touch_session("h-new", 6_000).unwrap(),
            "an ended one is gone"
        );
        assert_eq!(hashes("ann"), ["h-old"]);
        // every end is in the revocation list, where the gateways holding it in memory learn of it
        assert!(!s.end_session("h-new").unwrap());
        assert_eq!(s.end_sessions(&SessionsOf::Subject("ann")).unwrap(), 2);
        let mut revoked = s.revoked(0).unwrap();
        revoked.sort();
        // each until its idle deadline, the latest any gateway may hold it without asking again
        let names = [("h-idle", 400), ("h-new", 6_000), ("h-old", 5_000)]
            .map(|(h, until)| (session_revocation(h), until));
        assert_eq!(revoked[..], names[..]);
        assert!(s.revoked(6_001).unwrap().is_empty());
    }

    #[test]
    fn memory_and_sqlite_list_a_subjects_sessions() {
        lists_a_subjects_sessions(&MemoryStore::default());
        let dir = tempfile::tempdir().unwrap();
        lists_a_subjects_sessions(&SqliteStore::open(&dir.path().join("g.db")).unwrap());
    }
}
