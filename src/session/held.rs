//! Live sessions held in this gateway's memory, so that a session request costs a lookup rather
//! than a store read. An entry is trusted while its deadlines hold, this gateway knows every
//! revocation (a shared store's feed is up), and no gateway has announced its end: ending a session
//! records it in the revocation list, which reaches every gateway's denylist (the Redis feed at once,
//! the SQLite file's watch within a second), and each use checks it there. Whatever a gateway
//! missed, moving the idle deadline (at most a minute apart) finds the session gone from the store.

use super::Found;
use crate::auth::identity::Identity;
use crate::auth::Revocations;
use crate::store::{session_revocation, RevocationsLoaded, SessionsOf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The most memory the held sessions may take, by their estimated size; past it, the least used
/// are read from the store again.
const BUDGET: u64 = 128 << 20;
/// What a held session costs besides its stored data, which it holds about three times over (the
/// stored text, its parse, and the identities made from it).
const ENTRY_BYTES: usize = 1024;
/// The longest a held session stays unused (an idle timeout can be set longer than moka allows).
const LONGEST_IDLE: Duration = Duration::from_secs(366 * 86_400);

/// A live session as this gateway last read it.
pub struct Live {
    pub found: Found,
    /// the idle deadline this gateway last read or moved: past it the store is asked again, since
    /// another gateway may have moved it since
    idle_until: AtomicU64,
    /// the name its end goes by in the revocation list
    revoked_as: Box<str>,
    /// the identity for each shape a route asks for (claims decoded, identity JWT), made once
    identities: [OnceLock<Identity>; 4],
}

impl Live {
    /// The identity for a route that reads claims (`claims`) or sends an identity JWT (`key`),
    /// `make` building it the first time.
    pub fn identity(&self, claims: bool, key: bool, make: impl FnOnce() -> Identity) -> Identity {
        let shape = usize::from(claims) * 2 + usize::from(key);
        match self.identities.get(shape) {
            Some(once) => once.get_or_init(make).clone(),
            None => make(),
        }
    }

    /// Moves this gateway's idle deadline to `now + idle` when its last move is `every` old, and
    /// answers the deadline it replaced: the caller then moves the stored one. Of two requests that
    /// find it due at once, one does.
    pub fn touch_due(&self, now: u64, idle: u64, every: u64) -> Option<u64> {
        let was = self.idle_until.load(Relaxed);
        let to = (now + idle).min(self.found.record.expires_at);
        let due = was < self.found.record.expires_at && was + every < now + idle;
        (due && self
            .idle_until
            .compare_exchange(was, to, Relaxed, Relaxed)
            .is_ok())
        .then_some(was)
    }

    /// Puts back the deadline `touch_due` replaced, when the store could not be moved.
    pub fn untouch(&self, was: u64) {
        self.idle_until.store(was, Relaxed);
    }
}

/// The sessions this gateway holds, by the hash of their id.
pub struct Held {
    live: moka::sync::Cache<Box<str>, Arc<Live>>,
    revocations: Arc<Revocations>,
    loaded: Arc<RevocationsLoaded>,
}

impl Held {
    /// An entry unused for `idle` would be idle in the store too, and goes.
    pub fn new(
        idle: Duration,
        revocations: Arc<Revocations>,
        loaded: Arc<RevocationsLoaded>,
    ) -> Self {
        Held {
            live: moka::sync::Cache::builder()
                .max_capacity(BUDGET)
                .weigher(|_, live: &Arc<Live>| {
                    let size = ENTRY_BYTES.saturating_add(live.found.record.data.len() * 3);
                    u32::try_from(size).unwrap_or(u32::MAX)
                })
                .time_to_idle(idle.clamp(Duration::from_secs(1), LONGEST_IDLE))
                .build(),
            revocations,
            loaded,
        }
    }

    /// True when the session `hash` names was ended (its end announced), here or elsewhere.
    pub fn ended(&self, hash: &str) -> bool {
        self.revocations.is_revoked(&session_revocation(hash))
    }

    /// Records that this gateway ended the session `hash` names, which it may hold until `until`.
    pub fn end(&self, hash: &str, until: u64) {
        self.revocations.add(&session_revocation(hash), until);
        self.live.invalidate(hash);
    }

    /// The session `hash` names, when held and live at `now` by what this gateway knows. One whose
    /// end was announced, or past its absolute timeout, is dropped.
    pub fn get(&self, hash: &str, now: u64) -> Option<Arc<Live>> {
        if !self.loaded.get() {
            // a revocation may be missing: the store answers (or fails closed)
            return None;
        }
        let live = self.live.get(hash)?;
        let record = &live.found.record;
        if now >= record.expires_at
            || now >= live.idle_until.load(Relaxed)
            || self.revocations.is_revoked(&live.revoked_as)
        {
            self.live.invalidate(hash);
            return None;
        }
        Some(live)
    }

    /// Holds a session just read from the store.
    pub fn keep(&self, found: Found) -> Arc<Live> {
        let hash: Box<str> = found.record.hash.as_str().into();
        let live = Arc::new(Live {
            idle_until: AtomicU64::new(found.record.idle_until),
            revoked_as: session_revocation(&hash).into(),
            identities: Default::default(),
            found,
        });
        self.live.insert(hash, live.clone());
        live
    }

    /// Drops a session this gateway ended.
    pub fn forget(&self, hash: &str) {
        self.live.invalidate(hash);
    }

    /// Drops every held session `of` names.
    pub fn forget_all(&self, of: &SessionsOf<'_>) {
        for (hash, live) in self.live.iter() {
            if of.matches(&live.found.record) {
                self.live.invalidate(hash.as_ref());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::OffsetClock;
    use crate::store::SessionRecord;

    fn found(hash: &str, subject: &str, idle_until: u64, expires_at: u64) -> Found {
        Found::from(SessionRecord {
            hash: hash.into(),
            subject: subject.into(),
            provider: "local".into(),
            provider_sid: String::new(),
            data: String::new(),
            auth_time: 0,
            idle_until,
            expires_at,
        })
    }

    fn held() -> (Held, Arc<Revocations>, Arc<RevocationsLoaded>) {
        let revocations = Arc::new(Revocations::new(Arc::new(OffsetClock::default()), 0));
        let loaded = Arc::new(RevocationsLoaded::new(true));
        let h = Held::new(
            Duration::from_secs(600),
            revocations.clone(),
            loaded.clone(),
        );
        (h, revocations, loaded)
    }

    #[test]
    fn a_held_session_is_trusted_until_a_deadline_or_its_announced_end() {
        let (h, revocations, loaded) = held();
        h.keep(found("a", "ann", 100, 200));
        loaded.set(false);
        assert!(
            h.get("a", 1).is_none(),
            "a revocation may be missing: the store is asked"
        );
        loaded.set(true);
        assert!(h.get("a", 99).is_some());
        assert!(h.get("a", 100).is_none(), "idle here: the store is asked");
        assert!(h.get("nope", 1).is_none());
        h.keep(found("b", "bob", 500, 200));
        assert!(h.get("b", 200).is_none(), "past the absolute timeout");
        assert!(h.get("b", 1).is_none(), "and dropped");
        h.keep(found("c", "cy", 100, 200));
        revocations.add(&session_revocation("c"), 4_000_000_000);
        assert!(h.ended("c") && !h.ended("a"));
        assert!(h.get("c", 1).is_none(), "ended on another gateway");
        h.keep(found("d", "di", 100, 200));
        h.end("d", 4_000_000_000);
        assert!(h.ended("d") && h.get("d", 1).is_none(), "ended here");
        // an idle timeout longer than moka takes is held no longer than a year
        let forever = Duration::from_secs(u64::MAX / 2);
        let _ = Held::new(forever, revocations, loaded);
    }

    #[test]
    fn sessions_are_forgotten_one_by_one_or_by_subject() {
        let (h, _, _) = held();
        h.keep(found("a", "ann", 100, 200));
        h.keep(found("b", "ann", 100, 200));
        h.keep(found("c", "cy", 100, 200));
        h.forget("a");
        assert!(h.get("a", 1).is_none());
        h.forget_all(&SessionsOf::Subject("ann"));
        assert!(h.get("b", 1).is_none());
        assert!(h.get("c", 1).is_some(), "another subject's session stays");
    }

    #[test]
    fn one_of_two_requests_moves_the_idle_deadline_and_a_failed_move_is_undone() {
        let (h, _, _) = held();
        // moved last at 700 - 600 = 100: due once `every` (60) has passed since
        let live = h.keep(found("a", "ann", 700, 10_000));
        assert_eq!(live.touch_due(150, 600, 60), None);
        assert_eq!(live.touch_due(170, 600, 60), Some(700));
        assert_eq!(
            live.touch_due(170, 600, 60),
            None,
            "the second request finds it moved"
        );
        assert!(h.get("a", 769).is_some());
        live.untouch(700);
        assert!(
            h.get("a", 769).is_none(),
            "the store was not moved: neither is this gateway"
        );
        let capped = h.keep(found("b", "bob", 100, 300));
        assert_eq!(capped.touch_due(200, 600, 60), Some(100));
        assert!(h.get("b", 299).is_some() && h.get("b", 300).is_none());
    }
}
