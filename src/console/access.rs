//! Who may use the console: the gateway's own users holding a role of `[admin] console_roles`,
//! signed in on the console's own form. Their sessions live in this process only, behind a cookie
//! scoped to `/console` on the admin listener; each carries the token its forms must send back.

use crate::crypto::{random_token, sha256_hex, NoRandomness};
use pingora::http::RequestHeader;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The console's cookie: its own name, so the proxy's session cookie never opens it.
pub const COOKIE: &str = "gatehouse_console";
const ID_LEN: usize = 43;

/// A signed-in operator.
#[derive(Debug)]
pub struct Operator {
    pub subject: String,
    pub username: String,
    /// what every form of this session sends back as `csrf`
    pub csrf: String,
    /// when the operator last asked for something (seconds): the pages' own refreshes do not count
    last_active: AtomicU64,
}

pub struct ConsoleSessions {
    /// by the SHA-256 of the cookie's id: the process never keeps the id itself
    live: moka::sync::Cache<String, Arc<Operator>>,
    idle: u64,
}

/// Whether someone holding `roles` may use the console.
pub fn may_use(roles: &[String], console_roles: &[String]) -> bool {
    roles.iter().any(|r| console_roles.contains(r))
}

/// Whether a form's token is the session's, compared in constant time.
pub fn same_token(sent: Option<&str>, want: &str) -> bool {
    sent.is_some_and(|s| {
        aws_lc_rs::constant_time::verify_slices_are_equal(s.as_bytes(), want.as_bytes()).is_ok()
    })
}

impl ConsoleSessions {
    pub fn new(ttl: Duration, idle: Duration) -> ConsoleSessions {
        ConsoleSessions {
            // the idle timeout is kept by hand: a cache's own would be renewed by the live parts'
            // refreshes, so a forgotten tab would never time out
            live: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(ttl)
                .build(),
            idle: idle.as_secs(),
        }
    }

    /// Starts a session at `now` (seconds); returns the `Set-Cookie` value that carries it.
    pub fn open(&self, subject: &str, username: &str, now: u64) -> Result<String, NoRandomness> {
        let id = random_token(32)?;
        let op = Operator {
            subject: subject.into(),
            username: username.into(),
            csrf: random_token(32)?,
            last_active: AtomicU64::new(now),
        };
        self.live.insert(sha256_hex(&id), Arc::new(op));
        Ok(format!(
            "{COOKIE}={id}; Path=/console; HttpOnly; SameSite=Strict"
        ))
    }

    fn key(req: &RequestHeader) -> Option<String> {
        crate::wire::cookies::value(req, COOKIE)
            .filter(|v| {
                v.len() == ID_LEN
                    && v.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            })
            .map(sha256_hex)
    }

    /// The operator the request's cookie names, while their session lives; `active`: the operator
    /// asked (not a page refreshing itself), which keeps the session from its idle timeout.
    pub fn find(&self, req: &RequestHeader, now: u64, active: bool) -> Option<Arc<Operator>> {
        let key = Self::key(req)?;
        let op = self.live.get(&key)?;
        if now.saturating_sub(op.last_active.load(Ordering::Relaxed)) >= self.idle {
            self.live.invalidate(&key);
            return None;
        }
        if active {
            op.last_active.store(now, Ordering::Relaxed);
        }
        Some(op)
    }

    pub fn end(&self, req: &RequestHeader) {
        if let Some(k) = Self::key(req) {
            self.live.invalidate(&k);
        }
    }

    /// Ends every console session of a subject (their role was taken away).
    pub fn end_subject(&self, subject: &str) {
        let subject = subject.to_string();
        // the cache is small and this is rare: a scan is enough
        for (k, op) in self.live.iter() {
            if op.subject == subject {
                self.live.invalidate(k.as_ref());
            }
        }
    }
}

/// The `Set-Cookie` value that removes the console's cookie.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_cookie(set: &str) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/console", None).unwrap();
        r.insert_header("cookie", set.split(';').next().unwrap())
            .unwrap();
        r
    }

    #[test]
    fn a_session_is_found_by_its_cookie_and_ends() {
        let s = ConsoleSessions::new(Duration::from_secs(60), Duration::from_secs(60));
        let set = s.open("ops", "ops@example.com", 1000).unwrap();
        assert!(set.contains("Path=/console") && set.contains("SameSite=Strict"));
        let req = with_cookie(&set);
        let op = s.find(&req, 1000, true).unwrap();
        assert_eq!(op.subject, "ops");
        assert_eq!(op.csrf.len(), ID_LEN);
        assert!(s
            .find(&with_cookie("gatehouse_console=forged"), 1000, true)
            .is_none());
        s.end_subject("ops");
        assert!(s.find(&req, 1000, true).is_none());
    }

    #[test]
    fn a_page_refreshing_itself_does_not_keep_a_session_alive() {
        let s = ConsoleSessions::new(Duration::from_secs(3600), Duration::from_secs(60));
        let req = with_cookie(&s.open("ops", "ops", 1000).unwrap());
        assert!(s.find(&req, 1030, false).is_some(), "a refresh");
        assert!(s.find(&req, 1059, false).is_some());
        assert!(s.find(&req, 1060, false).is_none(), "idle since 1000");
        let req = with_cookie(&s.open("ops", "ops", 2000).unwrap());
        assert!(s.find(&req, 2050, true).is_some(), "the operator asked");
        assert!(s.find(&req, 2100, false).is_some());
    }

    #[test]
    fn roles_and_tokens() {
        let roles = ["gatehouse-admin".to_string()];
        assert!(may_use(&["x".into(), "gatehouse-admin".into()], &roles));
        assert!(!may_use(&["reader".into()], &roles));
        assert!(same_token(Some("abc"), "abc"));
        assert!(!same_token(Some("abd"), "abc"));
        assert!(!same_token(None, "abc"));
    }
}
