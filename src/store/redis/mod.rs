//! The Redis store, shared by every replica: each record with a TTL of its useful life, rotations and
//! code uses atomic in Lua scripts, and every revocation published so all replicas learn it at once.

mod counter;
mod once;
mod pool;
pub mod scripts;

use super::{
    CodeRecord, CodeUse, RefreshRecord, RegisteredClient, Rotation, SessionRecord, SessionsOf,
    Store, StoreError,
};
use crate::clock::{Clock, SystemClock};
use redis::aio::ConnectionManager;
use redis::io::tcp::{socket2::TcpKeepalive, TcpSettings};
use redis::{
    Cmd, FromRedisValue, IntoConnectionInfo, Pipeline, RedisResult, Script, ScriptInvocation,
};
use scripts::{END_SESSIONS, PUT_SESSION, REVOKE_FAMILY, ROTATE, TAKE_CODE, TOUCH_SESSION};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

/// The pub/sub channel revocations are announced on: `"<jti> <exp>"` per message.
pub const REVOCATIONS: &str = "gatehouse:revocations";
/// Every key this store writes starts with this.
const PREFIX: &str = "gatehouse:";
/// How long one command may take before the store counts as unavailable.
pub(super) const TIMEOUT: Duration = Duration::from_secs(2);
/// An idle connection is probed after this long, then every `KEEPALIVE_EVERY`, and given up after
/// `KEEPALIVE_PROBES` unanswered probes: a vanished peer is noticed in about half a minute, and a
/// NAT or load balancer sees traffic on flows it would otherwise forget.
const KEEPALIVE_AFTER: Duration = Duration::from_secs(15);
const KEEPALIVE_EVERY: Duration = Duration::from_secs(5);
const KEEPALIVE_PROBES: u32 = 3;

/// A client for `url` whose every connection (store commands, counters, the revocation feed) has
/// TCP keepalive on.
pub fn client(url: &str) -> Result<redis::Client, String> {
    let info = url
        .into_connection_info()
        .map_err(|e| format!("store.url: {e}"))?;
    let keepalive = TcpKeepalive::new()
        .with_time(KEEPALIVE_AFTER)
        .with_interval(KEEPALIVE_EVERY)
        .with_retries(KEEPALIVE_PROBES);
    let tcp = TcpSettings::default().set_keepalive(keepalive);
    redis::Client::open(info.set_tcp_settings(tcp)).map_err(|e| format!("store.url: {e}"))
}

/// The Lua scripts, compiled into their SHA-1 once per process.
static ROTATE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(ROTATE));
static TAKE_CODE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(TAKE_CODE));
static REVOKE_FAMILY_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(REVOKE_FAMILY));
static PUT_SESSION_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(PUT_SESSION));
static TOUCH_SESSION_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(TOUCH_SESSION));
static END_SESSIONS_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(END_SESSIONS));

/// The script that ends the sessions an index lists, or (`one`) the session `k` names.
fn end_sessions_invocation(k: &str, one: bool) -> ScriptInvocation<'static> {
    let mut inv = END_SESSIONS_SCRIPT.prepare_invoke();
    inv.key(key("revoked", "all"))
        .key(k)
        .arg(REVOCATIONS)
        .arg(key("session", ""))
        .arg(super::SESSION_REVOKED)
        .arg(if one { "one" } else { "index" });
    inv
}

pub struct RedisStore {
    /// the thread the connections live on; the counters hold it too
    worker: Arc<pool::Worker>,
    /// every command of the store and of the counters goes through these connections
    pool: Arc<pool::Pool>,
    /// rate-limit and lockout counters, on the same connections
    counter: Arc<counter::RedisCounter>,
    /// one-time ids (DPoP proof ids), on the same connections
    once: Arc<once::RedisOnce>,
}

pub(super) fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// The hash of registered clients: id -> JSON document.
fn clients_key() -> String {
    format!("{PREFIX}clients")
}

pub(super) fn key(kind: &str, id: &str) -> String {
    format!("{PREFIX}{kind}:{id}")
}

fn num(map: &HashMap<String, String>, k: &str) -> u64 {
    map.get(k).and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn text(map: &HashMap<String, String>, k: &str) -> String {
    map.get(k).cloned().unwrap_or_default()
}

impl RedisStore {
    /// Checks the URL and starts the connection thread; the first connection is made when first
    /// needed, and again after a failure.
    pub fn open(url: &str) -> Result<RedisStore, String> {
        let pool = Arc::new(pool::Pool::new(client(url)?));
        let worker = Arc::new(pool::Worker::start()?);
        Ok(RedisStore {
            counter: Arc::new(counter::RedisCounter::new(worker.clone(), pool.clone())),
            once: Arc::new(once::RedisOnce::new(worker.clone(), pool.clone())),
            worker,
            pool,
        })
    }

    /// Runs `f` on a connection of the pool, from this (blocking) thread.
    fn with<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(ConnectionManager) -> Fut + Send + 'static,
        Fut: Future<Output = RedisResult<T>> + Send + 'static,
    {
        let pool = self.pool.clone();
        self.worker.wait(async move { pool.run(f).await })
    }

    fn query<T: FromRedisValue + Send + 'static>(&self, cmd: Cmd) -> Result<T, StoreError> {
        self.with(move |mut c| async move { cmd.query_async(&mut c).await })
    }

    fn pipe<T: FromRedisValue + Send + 'static>(&self, p: Pipeline) -> Result<T, StoreError> {
        self.with(move |mut c| async move { p.query_async(&mut c).await })
    }

    fn script<T: FromRedisValue + Send + 'static>(
        &self,
        inv: ScriptInvocation<'static>,
    ) -> Result<T, StoreError> {
        self.with(move |mut c| async move { inv.invoke_async(&mut c).await })
    }
}

impl Store for RedisStore {
    fn put_client(&self, c: &RegisteredClient) -> Result<(), StoreError> {
        let doc = serde_json::to_string(c).map_err(|e| StoreError::Unavailable(e.to_string()))?;
        self.query::<i64>(Cmd::hset(clients_key(), &c.client_id, doc))
            .map(|_| ())
    }

    fn registered_client(&self, id: &str) -> Result<Option<RegisteredClient>, StoreError> {
        let doc: Option<String> = self.query(Cmd::hget(clients_key(), id))?;
        doc.map(|d| serde_json::from_str(&d).map_err(|e| StoreError::Unavailable(e.to_string())))
            .transpose()
    }

    fn registered_clients(&self) -> Result<Vec<RegisteredClient>, StoreError> {
        let docs: Vec<String> = self.query(Cmd::hvals(clients_key()))?;
        let mut all = docs
            .iter()
            .map(|d| serde_json::from_str(d).map_err(|e| StoreError::Unavailable(e.to_string())))
            .collect::<Result<Vec<RegisteredClient>, _>>()?;
        all.sort_by(|a, b| (a.created_at, &a.client_id).cmp(&(b.created_at, &b.client_id)));
        Ok(all)
    }

    fn remove_client(&self, id: &str) -> Result<bool, StoreError> {
        self.query::<i64>(Cmd::hdel(clients_key(), id))
            .map(|n| n > 0)
    }

    fn revoke(&self, jti: &str, exp: u64) -> Result<(), StoreError> {
        let mut p = redis::pipe();
        p.atomic()
            .cmd("ZADD")
            .arg(key("revoked", "all"))
            .arg("GT")
            .arg(exp)
            .arg(jti)
            .ignore()
            .publish(REVOCATIONS, format!("{jti} {exp} {}", SystemClock.now_ms()))
            .ignore();
        self.pipe(p)
    }

    fn revoked(&self, now: u64) -> Result<Vec<(String, u64)>, StoreError> {
        self.query(Cmd::zrangebyscore_withscores(
            key("revoked", "all"),
            now,
            "+inf",
        ))
    }

    fn use_assertion(
        &self,
        client_id: &str,
        jti: &str,
        exp: u64,
        now: u64,
    ) -> Result<bool, StoreError> {
        let k = key("assertion", &format!("{client_id}:{jti}"));
        // Remembered until the assertion's exp (at least a second), once: SET NX.
        let ttl = exp.saturating_sub(now).max(1);
        let mut set = redis::cmd("SET");
        set.arg(&k).arg(1).arg("NX").arg("EX").arg(ttl);
        Ok(self.query::<Option<String>>(set)?.is_some())
    }

    fn put_refresh(&self, rec: &RefreshRecord) -> Result<(), StoreError> {
        let k = key("refresh", &rec.hash);
        let subject_key = key("subjectfamilies", &rec.subject);
        let mut p = redis::pipe();
        p.atomic()
            .hset_multiple(
                &k,
                &[
                    ("family", rec.family.clone()),
                    ("client_id", rec.client_id.clone()),
                    ("subject", rec.subject.clone()),
                    ("scopes", rec.scopes.clone()),
                    ("resource", rec.resource.clone()),
                    ("jkt", rec.jkt.clone()),
                    ("expires_at", rec.expires_at.to_string()),
                    ("family_expires_at", rec.family_expires_at.to_string()),
                    ("rotated", "0".to_string()),
                ],
            )
            .ignore()
            .cmd("EXPIREAT")
            .arg(&k)
            .arg(rec.family_expires_at.saturating_add(60))
            .ignore()
            // the subject's families, scored by their end, for ending a removed user's
            .zadd(&subject_key, &rec.family, rec.family_expires_at)
            .ignore()
            .cmd("EXPIREAT")
            .arg(&subject_key)
            .arg(rec.family_expires_at.saturating_add(60))
            .arg("GT")
            .ignore()
            .cmd("EXPIREAT")
            .arg(&subject_key)
            .arg(rec.family_expires_at.saturating_add(60))
            .arg("NX")
            .ignore();
        self.pipe(p)
    }

    fn families_of(&self, subject: &str, now: u64) -> Result<Vec<String>, StoreError> {
        let k = key("subjectfamilies", subject);
        let mut range = redis::cmd("ZRANGEBYSCORE");
        range.arg(&k).arg(now).arg("+inf");
        self.query(range)
    }

    fn rotate_refresh(
        &self,
        old_hash: &str,
        client_id: &str,
        new_hash: &str,
        new_expires_at: u64,
        now: u64,
    ) -> Result<Rotation, StoreError> {
        let mut inv = ROTATE_SCRIPT.prepare_invoke();
        inv.key(key("refresh", old_hash))
            .key(key("refresh", new_hash))
            .arg(client_id)
            .arg(now)
            .arg(new_expires_at)
            .arg(PREFIX);
        let out: Vec<String> = self.script(inv)?;
        let field = |i: usize| out.get(i).cloned().unwrap_or_default();
        let number = |i: usize| field(i).parse::<u64>().unwrap_or(0);
        Ok(match out.first().map(String::as_str) {
            Some("rotated") => Rotation::Rotated(RefreshRecord {
                hash: old_hash.to_string(),
                family: field(1),
                client_id: field(2),
                subject: field(3),
                scopes: field(4),
                expires_at: number(5),
                family_expires_at: number(6),
                resource: field(7),
                jkt: field(8),
            }),
            Some("reused") => Rotation::Reused { family: field(1) },
            _ => Rotation::Invalid,
        })
    }

    fn active_refresh(&self, hash: &str, now: u64) -> Result<Option<RefreshRecord>, StoreError> {
        let k = key("refresh", hash);
        let (rec, revoked): (HashMap<String, String>, Option<String>) =
            self.with(move |mut c| async move {
                let rec: HashMap<String, String> = Cmd::hgetall(k).query_async(&mut c).await?;
                let family = rec.get("family").cloned().unwrap_or_default();
                let revoked: Option<String> = Cmd::hget(key("fam", &family), "revoked")
                    .query_async(&mut c)
                    .await?;
                Ok((rec, revoked))
            })?;
        if rec.is_empty()
            || text(&rec, "rotated") == "1"
            || num(&rec, "expires_at") < now
            || revoked.as_deref() == Some("1")
        {
            return Ok(None);
        }
        Ok(Some(RefreshRecord {
            hash: hash.to_string(),
            family: text(&rec, "family"),
            client_id: text(&rec, "client_id"),
            subject: text(&rec, "subject"),
            scopes: text(&rec, "scopes"),
            resource: text(&rec, "resource"),
            jkt: text(&rec, "jkt"),
            expires_at: num(&rec, "expires_at"),
            family_expires_at: num(&rec, "family_expires_at"),
        }))
    }

    fn family_token(&self, family: &str, jti: &str, exp: u64) -> Result<(), StoreError> {
        let k = key("famtokens", family);
        let mut p = redis::pipe();
        p.atomic()
            .zadd(&k, jti, exp)
            .ignore()
            .cmd("EXPIREAT")
            .arg(&k)
            .arg(exp.saturating_add(60))
            .arg("GT")
            .ignore()
            .cmd("EXPIREAT")
            .arg(&k)
            .arg(exp.saturating_add(60))
            .arg("NX")
            .ignore()
            // the way back from the token to its family, for token exchange
            .cmd("SET")
            .arg(key("tokfam", jti))
            .arg(family)
            .arg("EXAT")
            .arg(exp.saturating_add(60))
            .ignore();
        self.pipe(p)
    }

    fn token_family(&self, jti: &str) -> Result<Option<String>, StoreError> {
        self.query(Cmd::get(key("tokfam", jti)))
    }

    fn revoke_family(&self, family: &str) -> Result<Vec<(String, u64)>, StoreError> {
        let mut inv = REVOKE_FAMILY_SCRIPT.prepare_invoke();
        inv.key(key("fam", family))
            .key(key("famtokens", family))
            .key(key("revoked", "all"))
            .arg(REVOCATIONS)
            .arg(SystemClock.now_ms());
        let toks: Vec<String> = self.script(inv)?;
        Ok(toks
            .chunks(2)
            .filter_map(|p| match p {
                [jti, exp] => Some((jti.clone(), exp.parse().unwrap_or(0))),
                _ => None,
            })
            .collect())
    }

    fn put_code(&self, rec: &CodeRecord) -> Result<(), StoreError> {
        let k = key("code", &rec.hash);
        let mut p = redis::pipe();
        p.atomic()
            .hset_multiple(
                &k,
                &[
                    ("client_id", rec.client_id.clone()),
                    ("redirect_uri", rec.redirect_uri.clone()),
                    ("challenge", rec.challenge.clone()),
                    ("subject", rec.subject.clone()),
                    ("scopes", rec.scopes.clone()),
                    ("nonce", rec.nonce.clone()),
                    ("resource", rec.resource.clone()),
                    ("auth_time", rec.auth_time.to_string()),
                    ("expires_at", rec.expires_at.to_string()),
                    ("used", "0".to_string()),
                    ("issued_jti", String::new()),
                    ("issued_exp", "0".to_string()),
                    ("issued_family", String::new()),
                ],
            )
            .ignore()
            // A used code is kept an hour past expiry, to recognise a late second use.
            .cmd("EXPIREAT")
            .arg(&k)
            .arg(rec.expires_at.saturating_add(3600))
            .ignore();
        self.pipe(p)
    }

    fn take_code(&self, hash: &str, now: u64) -> Result<CodeUse, StoreError> {
        let mut inv = TAKE_CODE_SCRIPT.prepare_invoke();
        inv.key(key("code", hash)).arg(now);
        let out: Vec<String> = self.script(inv)?;
        let field = |i: usize| out.get(i).cloned().unwrap_or_default();
        let number = |i: usize| field(i).parse::<u64>().unwrap_or(0);
        Ok(match out.first().map(String::as_str) {
            Some("fresh") => CodeUse::Fresh(CodeRecord {
                hash: hash.to_string(),
                client_id: field(1),
                redirect_uri: field(2),
                challenge: field(3),
                subject: field(4),
                scopes: field(5),
                nonce: field(6),
                auth_time: number(7),
                expires_at: number(8),
                resource: field(9),
            }),
            Some("reused") => CodeUse::Reused {
                jti: field(1),
                exp: number(2),
                family: field(3),
            },
            _ => CodeUse::Invalid,
        })
    }

    fn code_issued(&self, hash: &str, jti: &str, exp: u64, family: &str) -> Result<(), StoreError> {
        self.query(Cmd::hset_multiple(
            key("code", hash),
            &[
                ("issued_jti", jti.to_string()),
                ("issued_exp", exp.to_string()),
                ("issued_family", family.to_string()),
            ],
        ))
    }

    fn counter(&self) -> Option<Arc<dyn super::Counter>> {
        Some(self.counter.clone())
    }

    fn once_ids(&self) -> Option<Arc<dyn super::OnceIds>> {
        Some(self.once.clone())
    }

    fn put_session(&self, rec: &SessionRecord) -> Result<(), StoreError> {
        let mut inv = PUT_SESSION_SCRIPT.prepare_invoke();
        inv.key(key("session", &rec.hash));
        for i in rec.indexes() {
            inv.key(key("sessions", &i));
        }
        for (k, v) in [
            ("subject", rec.subject.clone()),
            ("provider", rec.provider.clone()),
            ("provider_sid", rec.provider_sid.clone()),
            ("data", rec.data.clone()),
            ("auth_time", rec.auth_time.to_string()),
            ("idle_until", rec.idle_until.to_string()),
            ("expires_at", rec.expires_at.to_string()),
        ] {
            inv.arg(k).arg(v);
        }
        inv.arg(rec.idle_until.min(rec.expires_at))
            .arg(rec.expires_at);
        self.script(inv)
    }

    fn session(&self, hash: &str, now: u64) -> Result<Option<SessionRecord>, StoreError> {
        let m: HashMap<String, String> = self.query(Cmd::hgetall(key("session", hash)))?;
        if m.is_empty() {
            return Ok(None);
        }
        let rec = SessionRecord {
            hash: hash.to_string(),
            subject: text(&m, "subject"),
            provider: text(&m, "provider"),
            provider_sid: text(&m, "provider_sid"),
            data: text(&m, "data"),
            auth_time: num(&m, "auth_time"),
            idle_until: num(&m, "idle_until"),
            expires_at: num(&m, "expires_at"),
        };
        Ok(rec.live(now).then_some(rec))
    }

    fn touch_session(&self, hash: &str, idle_until: u64) -> Result<bool, StoreError> {
        let k = key("session", hash);
        let mut inv = TOUCH_SESSION_SCRIPT.prepare_invoke();
        inv.key(&k).arg(idle_until);
        self.script::<i64>(inv).map(|n| n > 0)
    }

    fn end_session(&self, hash: &str) -> Result<bool, StoreError> {
        // Its index entries go when the index is used or expires.
        self.script::<i64>(end_sessions_invocation(&key("session", hash), true))
            .map(|n| n > 0)
    }

    fn end_sessions(&self, of: &SessionsOf<'_>) -> Result<u64, StoreError> {
        if let SessionsOf::ProviderSid(_, "") = of {
            return Ok(0);
        }
        self.script(end_sessions_invocation(
            &key("sessions", &of.index()),
            false,
        ))
    }

    fn sessions_of(&self, subject: &str, now: u64) -> Result<Vec<SessionRecord>, StoreError> {
        let index = key("sessions", &SessionsOf::Subject(subject).index());
        // an index lists the sessions' keys; it may name sessions that expired since (skipped)
        let keys: Vec<String> = self.query(Cmd::smembers(index))?;
        let prefix = key("session", "");
        let mut out = Vec::new();
        for hash in keys
            .iter()
            .filter_map(|k| k.strip_prefix(&prefix))
            .take(1000)
        {
            if let Some(r) = self.session(hash, now)? {
                out.push(r);
            }
        }
        super::newest_first(&mut out);
        Ok(out)
    }

    fn stats(&self) -> super::StoreStats {
        use std::sync::atomic::Ordering::Relaxed;
        super::StoreStats {
            operations: self.pool.operations.load(Relaxed),
            errors: self.pool.errors.load(Relaxed),
            reconnects: self.pool.reconnects.load(Relaxed),
        }
    }

    fn ping(&self) -> Result<(), StoreError> {
        self.query::<String>(redis::cmd("PING")).map(|_| ())
    }

    fn purge(&self, now: u64) -> Result<(), StoreError> {
        // Everything else expires by its TTL; the revocation set is one key, trimmed here.
        self.query(Cmd::zrembyscore(
            key("revoked", "all"),
            "-inf",
            now.saturating_sub(1),
        ))
    }
}
