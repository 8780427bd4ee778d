//! Browser sign-in sessions: the cookie, the server-side record, and the identity a live session
//! gives a request, the same shape as a verified token's.

pub mod authenticate;
pub mod browser;
pub mod held;

use crate::auth::identity::Identity;
use crate::auth::principal::Principal;
use crate::clock::SharedClock;
use crate::config::{Issuer, SessionSettings};
use crate::crypto::{random_token, sha256_hex, NoRandomness};
use crate::store::{run_blocking, SessionRecord, SessionsOf, Store, StoreError};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use pingora::http::RequestHeader;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::sync::Arc;

/// Length of a session id: 32 random bytes, base64url.
const ID_LEN: usize = 43;
/// An idle deadline is moved at most this often, so a busy page does not write on every request;
/// with a short idle timeout, every quarter of it (`touch_every`).
const TOUCH_EVERY: u64 = 60;

/// How long after its last move an idle deadline is moved again. Never as long as the idle timeout
/// itself, or a session in use would run out before its first move.
fn touch_every(idle: u64) -> u64 {
    TOUCH_EVERY.min(idle / 4)
}

/// What a session stores about the person, besides its indexes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SessionData {
    /// the identity's claims as the upstream sees them (`iss`, `sub`, `roles`, profile claims)
    pub claims: Map<String, Value>,
    /// the provider's ID token, for `id_token_hint` at its logout
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    /// where the person signed in from (the client's address) and with what browser, for the
    /// console's list of a person's sessions
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub address: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user_agent: String,
}

/// The longest `User-Agent` a session keeps.
const USER_AGENT_MAX: usize = 200;

/// A new session to open.
pub struct NewSession {
    pub subject: String,
    /// "local" or the login provider's name
    pub provider: String,
    pub provider_sid: String,
    pub data: SessionData,
    pub auth_time: u64,
}

/// A session found for a request.
pub struct Found {
    pub record: SessionRecord,
    pub data: SessionData,
}

impl From<SessionRecord> for Found {
    fn from(record: SessionRecord) -> Found {
        Found {
            // a record this gateway cannot read gives no identity beyond its subject
            data: serde_json::from_str(&record.data).unwrap_or_default(),
            record,
        }
    }
}

pub struct Sessions {
    pub settings: SessionSettings,
    store: Arc<dyn Store>,
    clock: SharedClock,
    /// issuer "self": roles are read from `roles` as in the gateway's own tokens
    own_issuer: Arc<Issuer>,
    audit: crate::audit::Audit,
    /// live sessions held in memory, checked against the revocation list
    held: held::Held,
}

/// The value of one cookie in a request.
pub fn cookie<'a>(req: &'a RequestHeader, name: &str) -> Option<&'a str> {
    crate::wire::cookies::value(req, name)
}

impl Sessions {
    pub fn new(
        settings: SessionSettings,
        store: Arc<dyn Store>,
        clock: SharedClock,
        own_issuer: Arc<Issuer>,
        audit: crate::audit::Audit,
        (revocations, loaded): (
            Arc<crate::auth::Revocations>,
            Arc<crate::store::RevocationsLoaded>,
        ),
    ) -> Self {
        Sessions {
            held: held::Held::new(settings.idle_timeout, revocations, loaded),
            settings,
            store,
            clock,
            own_issuer,
            audit,
        }
    }

    pub fn brand(&self) -> crate::pages::Brand {
        crate::pages::Brand {
            name: self.settings.brand_name.clone(),
            logo: self.settings.brand_logo.clone(),
            template: self.settings.page_template.clone(),
        }
    }

    pub fn now(&self) -> u64 {
        self.clock.now_secs()
    }

    /// The hash of the session id the request's cookie carries, when it has the right shape.
    pub fn cookie_hash(&self, req: &RequestHeader) -> Option<String> {
        cookie(req, &self.settings.cookie_name)
            .filter(|v| {
                v.len() == ID_LEN
                    && v.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            })
            .map(sha256_hex)
    }

    /// The live session the request carries, its idle deadline moved on; `Ok(None)` when there is
    /// none. A store that cannot answer is an error, for the caller to fail closed.
    pub async fn find(&self, req: &RequestHeader) -> Result<Option<Found>, StoreError> {
        match self.cookie_hash(req) {
            Some(hash) => self.read(hash).await,
            None => Ok(None),
        }
    }

    /// The live session `hash` names, as the store has it, its idle deadline moved on.
    pub async fn read(&self, hash: String) -> Result<Option<Found>, StoreError> {
        let now = self.now();
        let idle = self.settings.idle_timeout.as_secs();
        let found = run_blocking(&self.store, move |s| {
            let Some(mut rec) = s.session(&hash, now)? else {
                return Ok(None);
            };
            // moved when its last move is `touch_every` old: the deadline then lies that much
            // short of a full idle timeout from now
            if rec.idle_until < rec.expires_at && rec.idle_until + touch_every(idle) < now + idle {
                rec.idle_until = (now + idle).min(rec.expires_at);
                if !s.touch_session(&hash, now + idle)? {
                    return Ok(None);
                }
            }
            Ok(Some(rec))
        })
        .await?;
        Ok(found.map(Found::from))
    }

    /// The session `hash` names when this gateway holds it live, its idle deadline moved on as
    /// `read` moves it; `Ok(None)` when the store must be asked.
    pub async fn held(&self, hash: &str) -> Result<Option<Arc<held::Live>>, StoreError> {
        let now = self.now();
        let Some(live) = self.held.get(hash, now) else {
            return Ok(None);
        };
        let idle = self.settings.idle_timeout.as_secs();
        if let Some(was) = live.touch_due(now, idle, touch_every(idle)) {
            let h = hash.to_string();
            match run_blocking(&self.store, move |s| s.touch_session(&h, now + idle)).await {
                Ok(true) => {}
                // gone from the store, however it went: the store answers from now on
                Ok(false) => {
                    self.held.forget(hash);
                    return Ok(None);
                }
                Err(e) => {
                    live.untouch(was);
                    return Err(e);
                }
            }
        }
        Ok(Some(live))
    }

    /// Holds a session just read from the store, for the requests that follow; `None` when its end
    /// was announced meanwhile (a request that read it while it ended).
    pub fn hold(&self, found: Found) -> Option<Arc<held::Live>> {
        (!self.held.ended(&found.record.hash)).then(|| self.held.keep(found))
    }

    /// Records that this gateway ended the session `hash` names: a request holding it lets it go,
    /// and one that read it before the end does not hold it.
    fn ended(&self, hash: &str) {
        let until = self.now() + self.settings.idle_timeout.as_secs();
        self.held.end(hash, until);
    }

    /// The identity a held session gives a route, made once per shape.
    pub fn identity_of(&self, live: &held::Live, claims: bool, key: bool) -> Identity {
        live.identity(claims, key, || self.identity(&live.found, claims, key))
    }

    /// Opens a session with a new random id (never one the browser brought) and returns the
    /// `Set-Cookie` value that carries it. A session the browser still had ends: one browser, one
    /// session.
    pub async fn open(
        &self,
        req: &RequestHeader,
        mut new: NewSession,
    ) -> Result<String, OpenError> {
        if let Some(ua) = req.headers.get(http::header::USER_AGENT) {
            let ua = String::from_utf8_lossy(ua.as_bytes());
            new.data.user_agent = ua.chars().take(USER_AGENT_MAX).collect();
        }
        if let Some(old) = self.cookie_hash(req) {
            let h = old.clone();
            // marked only when there was one: a made-up cookie must not grow the revocation list
            if run_blocking(&self.store, move |s| s.end_session(&h))
                .await
                .map_err(OpenError::Store)?
            {
                self.ended(&old);
            }
        }
        let id = random_token(32).map_err(OpenError::Randomness)?;
        let now = self.now();
        let hash = sha256_hex(&id);
        // kept for the audit event only when there is an audit stream
        let started = (self.audit.enabled())
            .then(|| (new.subject.clone(), new.provider.clone(), audit_id(&hash)));
        let rec = SessionRecord {
            hash,
            subject: new.subject,
            provider: new.provider,
            provider_sid: new.provider_sid,
            data: serde_json::to_string(&new.data).unwrap_or_default(),
            auth_time: new.auth_time,
            idle_until: now + self.settings.idle_timeout.as_secs(),
            expires_at: now + self.settings.absolute_timeout.as_secs(),
        };
        run_blocking(&self.store, move |s| s.put_session(&rec))
            .await
            .map_err(OpenError::Store)?;
        if let Some((subject, provider, session)) = started {
            self.audit
                .emit(|| crate::audit::Event::session_started(&subject, &provider, &session));
        }
        Ok(format!(
            "{}={id}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age={}",
            self.settings.cookie_name,
            self.settings.absolute_timeout.as_secs()
        ))
    }

    /// The `Set-Cookie` value that removes the session cookie.
    pub fn clear_cookie(&self) -> String {
        format!(
            "{}=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0",
            self.settings.cookie_name
        )
    }

    /// Ends the request's session, returning what it held (for the provider's logout).
    pub async fn end(&self, req: &RequestHeader) -> Result<Option<Found>, StoreError> {
        let Some(hash) = self.cookie_hash(req) else {
            return Ok(None);
        };
        let now = self.now();
        let session = self.audit.enabled().then(|| audit_id(&hash));
        let h = hash.clone();
        let record = run_blocking(&self.store, move |s| {
            let record = s.session(&h, now)?;
            s.end_session(&h)?;
            Ok(record)
        })
        .await?;
        // marked after the store, and only for a session there was (a made-up cookie adds
        // nothing): a request that read it before the end holds it no more, nor again
        if let Some(r) = &record {
            self.ended(&hash);
            self.audit.emit(|| {
                crate::audit::Event::session_ended(
                    &r.subject,
                    session.as_deref().unwrap_or_default(),
                )
            });
        }
        Ok(record.map(Found::from))
    }

    /// Ends the session `hash` names when it is `subject`'s; whether one ended.
    pub async fn end_of(&self, subject: String, hash: String) -> Result<bool, StoreError> {
        let h = hash.clone();
        let ended = run_blocking(&self.store, move |st| match st.session(&h, 0)? {
            Some(r) if r.subject == subject => st.end_session(&h),
            _ => Ok(false),
        })
        .await;
        if let Ok(true) = ended {
            self.ended(&hash);
        }
        ended
    }

    /// Records a one-use token id (a logout token's `jti`) until `exp`; false when it was seen before.
    pub async fn first_use(&self, kind: &str, jti: &str, exp: u64) -> Result<bool, StoreError> {
        let (kind, jti, now) = (format!("logout:{kind}"), jti.to_string(), self.now());
        // a token without exp is remembered for a day
        let exp = if exp == 0 { now + 86400 } else { exp };
        run_blocking(&self.store, move |s| s.use_assertion(&kind, &jti, exp, now)).await
    }

    /// Ends every session `of` names, on every gateway sharing the store. `by`: who asked, for the
    /// audit stream (`admin`, `backchannel`, `user_removed`).
    pub async fn end_all(&self, of: SessionsOf<'_>, by: &'static str) -> Result<u64, StoreError> {
        let subject = match of {
            SessionsOf::Subject(s) | SessionsOf::ProviderSubject(_, s) => Some(s.to_string()),
            SessionsOf::ProviderSid(..) => None,
        };
        let of = match of {
            SessionsOf::Subject(s) => Owned::Subject(s.to_string()),
            SessionsOf::ProviderSubject(p, s) => Owned::ProviderSubject(p.into(), s.into()),
            SessionsOf::ProviderSid(p, s) => Owned::ProviderSid(p.into(), s.into()),
        };
        let ended = run_blocking(&self.store, {
            let of = of.clone();
            move |s| s.end_sessions(&of.borrow())
        })
        .await?;
        // after the store: a request meanwhile would read the session again and hold it
        self.held.forget_all(&of.borrow());
        self.audit
            .emit(|| crate::audit::Event::sessions_revoked(by, subject.as_deref(), ended));
        Ok(ended)
    }

    /// The identity a session gives a request: the same principal and headers a token would.
    pub fn identity(&self, found: &Found, with_claims: bool, with_key: bool) -> Identity {
        let mut claims = found.data.claims.clone();
        claims.insert("sub".into(), Value::String(found.record.subject.clone()));
        claims
            .entry("iss")
            .or_insert_with(|| Value::String(self.own_issuer.issuer.clone()));
        claims.insert("auth_time".into(), Value::from(found.record.auth_time));
        let claims = Value::Object(claims);
        let principal = Principal::new(&self.own_issuer, &claims, found.record.expires_at);
        let json = serde_json::to_vec(&claims).unwrap_or_default();
        let payload = http::HeaderValue::from_str(&URL_SAFE_NO_PAD.encode(json))
            .unwrap_or_else(|_| http::HeaderValue::from_static(""));
        let token_key = with_key.then(|| {
            // the identity JWT is reused per session, as it is per token
            u128::from_str_radix(found.record.hash.get(..32).unwrap_or("0"), 16).unwrap_or(0)
        });
        Identity {
            principal: Arc::new(principal),
            payload,
            claims: with_claims.then_some(claims),
            token_key,
        }
    }
}

/// How the audit stream names a session: 16 hex digits of a hash of its stored hash, so events
/// about one session match without carrying anything that finds or opens it.
fn audit_id(hash: &str) -> String {
    sha256_hex(hash).chars().take(16).collect()
}

/// `SessionsOf` with owned text, to cross into the store's thread.
#[derive(Clone)]
enum Owned {
    Subject(String),
    ProviderSubject(String, String),
    ProviderSid(String, String),
}

impl Owned {
    fn borrow(&self) -> SessionsOf<'_> {
        match self {
            Owned::Subject(s) => SessionsOf::Subject(s),
            Owned::ProviderSubject(p, s) => SessionsOf::ProviderSubject(p, s),
            Owned::ProviderSid(p, s) => SessionsOf::ProviderSid(p, s),
        }
    }
}

#[derive(Debug)]
pub enum OpenError {
    Randomness(NoRandomness),
    Store(StoreError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, OffsetClock};
    use crate::config::Config;
    use crate::store::MemoryStore;
    use std::path::Path;

    fn sessions() -> (Sessions, Arc<OffsetClock>) {
        let text = format!(
            "{}\n[token_service]\nenabled = true\nsigning_keys = [\"k.pem\"]\n",
            crate::config::testing::BASE
        );
        let config = Config::from_toml(&text, Path::new("/nonexistent/g.toml")).unwrap();
        let clock = Arc::new(OffsetClock::default());
        let s = Sessions::new(
            config.sessions.clone(),
            Arc::new(MemoryStore::default()),
            clock.clone(),
            config.issuer_by_name("self").unwrap().clone(),
            Default::default(),
            (
                Arc::new(crate::auth::Revocations::new(clock.clone(), 0)),
                Arc::new(crate::store::RevocationsLoaded::new(true)),
            ),
        );
        (s, clock)
    }

    fn with_cookie(set: &str) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/", None).unwrap();
        r.insert_header("cookie", set.split(';').next().unwrap())
            .unwrap();
        r
    }

    /// A local user's new session, signed in now.
    fn local(subject: &str, clock: &OffsetClock) -> NewSession {
        NewSession {
            subject: subject.into(),
            provider: "local".into(),
            provider_sid: String::new(),
            data: SessionData::default(),
            auth_time: clock.now_secs(),
        }
    }

    #[tokio::test]
    async fn a_session_lives_until_idle_or_absolute_timeout() {
        let (s, clock) = sessions();
        let mut claims = Map::new();
        claims.insert("roles".into(), serde_json::json!(["admin"]));
        let set = s
            .open(
                &RequestHeader::build("GET", b"/", None).unwrap(),
                NewSession {
                    subject: "ann".into(),
                    provider: "local".into(),
                    provider_sid: String::new(),
                    data: SessionData {
                        claims,
                        ..Default::default()
                    },
                    auth_time: clock.now_secs(),
                },
            )
            .await
            .unwrap();
        assert!(set.starts_with("__Host-gatehouse="));
        assert!(set.contains("Secure; HttpOnly; SameSite=Lax"));
        let req = with_cookie(&set);
        let found = s.find(&req).await.unwrap().unwrap();
        let id = s.identity(&found, true, false);
        assert_eq!(id.principal.subject(), Some("ann"));
        assert!(id.principal.has_role("admin"));
        // used within the idle timeout, it lives on
        for _ in 0..3 {
            clock.advance(std::time::Duration::from_secs(20 * 60));
            assert!(s.find(&req).await.unwrap().is_some());
        }
        // idle for longer than the timeout, it is gone
        clock.advance(std::time::Duration::from_secs(31 * 60));
        assert!(s.find(&req).await.unwrap().is_none());
        // a forged or malformed cookie is no session
        assert!(s
            .find(&with_cookie("__Host-gatehouse=x"))
            .await
            .unwrap()
            .is_none());
    }

    #[tokio::test]
    async fn a_session_in_use_outlives_the_shortest_idle_timeout() {
        let (mut s, clock) = sessions();
        s.settings.idle_timeout = std::time::Duration::from_secs(60);
        let none = RequestHeader::build("GET", b"/", None).unwrap();
        let req = with_cookie(&s.open(&none, local("cy", &clock)).await.unwrap());
        for _ in 0..5 {
            clock.advance(std::time::Duration::from_secs(40));
            assert!(s.find(&req).await.unwrap().is_some(), "used, so not idle");
        }
        clock.advance(std::time::Duration::from_secs(61));
        assert!(s.find(&req).await.unwrap().is_none(), "idle past a minute");
    }

    #[tokio::test]
    async fn sessions_end_one_by_one_or_by_subject() {
        let (s, clock) = sessions();
        let open = || local("bob", &clock);
        let none = RequestHeader::build("GET", b"/", None).unwrap();
        let a = with_cookie(&s.open(&none, open()).await.unwrap());
        let b = with_cookie(&s.open(&none, open()).await.unwrap());
        let c = with_cookie(&s.open(&none, open()).await.unwrap());
        // signing in again in the same browser ends its earlier session
        let c2 = with_cookie(&s.open(&c, open()).await.unwrap());
        assert!(s.find(&c).await.unwrap().is_none());
        assert!(s.find(&c2).await.unwrap().is_some());
        assert!(s.end(&a).await.unwrap().is_some());
        assert!(s.find(&a).await.unwrap().is_none());
        assert_eq!(
            s.end_all(SessionsOf::Subject("bob"), "admin")
                .await
                .unwrap(),
            2
        );
        assert!(s.find(&b).await.unwrap().is_none());
        assert!(s.find(&c).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_held_session_gone_from_the_store_is_let_go_when_its_deadline_moves() {
        let (s, clock) = sessions();
        let none = RequestHeader::build("GET", b"/", None).unwrap();
        let req = with_cookie(&s.open(&none, local("di", &clock)).await.unwrap());
        let hash = s.cookie_hash(&req).unwrap();
        assert!(
            s.held(&hash).await.unwrap().is_none(),
            "not held before a read"
        );
        let found = s.read(hash.clone()).await.unwrap().unwrap();
        assert!(s.hold(found).is_some());
        // removed behind every gateway's back: no revocation announces it
        s.store.end_sessions(&SessionsOf::Subject("di")).unwrap();
        assert!(
            s.held(&hash).await.unwrap().is_some(),
            "held until the deadline moves"
        );
        clock.advance(std::time::Duration::from_secs(61));
        assert!(
            s.held(&hash).await.unwrap().is_none(),
            "the move finds it gone"
        );
        assert!(s.read(hash.clone()).await.unwrap().is_none());
        // a session whose end was announced is not held again by a request that read it earlier
        let again = s.open(&none, local("di", &clock));
        let req = with_cookie(&again.await.unwrap());
        let hash = s.cookie_hash(&req).unwrap();
        let read_before = s.read(hash.clone()).await.unwrap().unwrap();
        s.end(&req).await.unwrap();
        assert!(s.hold(read_before).is_none());
        // a logout with a made-up cookie of the right shape ends nothing and records nothing
        let made_up = with_cookie(&format!("{}={}", s.settings.cookie_name, "a".repeat(43)));
        assert!(s.end(&made_up).await.unwrap().is_none());
        assert!(!s.held.ended(&s.cookie_hash(&made_up).unwrap()));
    }
}
