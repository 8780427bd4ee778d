//! One-time ids (a DPoP proof's `jti` with its key's thumbprint, a sign-in form's nonce), each
//! taken once while it could be taken at all. One gateway remembers them in memory, refusing
//! rather than forgetting when full; gateways on a shared store (Redis) ask it, so an id replayed
//! to another replica is refused too.

use crate::store::{OnceIds, StoreError};
use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Locks that split the ids, so workers rarely wait for each other.
const SHARDS: usize = 16;
/// Ids remembered per period by a set of a given capacity: each shard's set then fills its
/// buckets to the 7/8 at which it would grow, and no further.
const fn per_period(buckets_per_shard: usize) -> usize {
    SHARDS * (buckets_per_shard / 8 * 7)
}

/// The most DPoP proof ids one gateway remembers per period: about 10,000 proofs a second for the
/// default six minutes. Each shard's set fills 2^18 buckets, so both periods together hold at most
/// 2 × 16 × 2^18 × 9 bytes ≈ 75 MB. Past it, proofs are refused until the period turns:
/// forgetting an id early would let its proof be replayed.
pub const PROOF_IDS: usize = per_period(1 << 18);
/// The most sign-in form nonces one gateway remembers per period (2^13 buckets a shard, ≈ 2.4 MB
/// for both periods when full).
pub const FORM_NONCES: usize = per_period(1 << 13);

/// Ids are already keyed hashes: the set uses them as they are.
#[derive(Default)]
struct AsIs(u64);

impl Hasher for AsIs {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

type Ids = HashSet<u64, BuildHasherDefault<AsIs>>;

/// The ids of two periods: an id recorded in the current one is kept through the next, so it is
/// remembered for at least a period, and both are cleared in one step when the time comes.
struct Periods {
    current: Ids,
    previous: Ids,
    started: Instant,
    length: Duration,
}

impl Periods {
    fn new(now: Instant) -> Periods {
        Periods {
            current: Ids::default(),
            previous: Ids::default(),
            started: now,
            length: Duration::ZERO,
        }
    }

    /// Records `id` for at least `ttl`: `Some(true)` the first time, `Some(false)` for a repeat,
    /// `None` when this shard is full.
    fn first_use(&mut self, id: u64, now: Instant, ttl: Duration, limit: usize) -> Option<bool> {
        // a reload may lengthen the period: ids are then kept longer, never shorter
        self.length = self.length.max(ttl);
        let age = now.saturating_duration_since(self.started);
        if age >= self.length {
            // no call came since a whole period after the start: the current ids are old too
            if age >= self.length * 2 {
                self.current.clear();
            }
            std::mem::swap(&mut self.current, &mut self.previous);
            self.current.clear();
            self.started = now;
        }
        if self.previous.contains(&id) || self.current.contains(&id) {
            return Some(false);
        }
        if self.current.len() >= limit {
            return None;
        }
        Some(self.current.insert(id))
    }
}

/// The proof ids this gateway, or the fleet, has seen; shared by every configuration generation,
/// One kind of one-time id, remembered here or asked of the shared store.
pub struct SeenIds {
    kind: &'static str,
    local: Vec<Mutex<Periods>>,
    /// ids a shard takes per period
    limit: usize,
    key: (u64, u64),
    shared: Option<Arc<dyn OnceIds>>,
}

impl SeenIds {
    /// Ids of `kind` (their namespace in the shared store), at most `capacity` per period here.
    pub fn new(
        kind: &'static str,
        capacity: usize,
        shared: Option<Arc<dyn OnceIds>>,
    ) -> Result<SeenIds, crate::crypto::NoRandomness> {
        let now = Instant::now();
        Ok(SeenIds {
            kind,
            local: (0..SHARDS).map(|_| Mutex::new(Periods::new(now))).collect(),
            limit: capacity / SHARDS,
            key: crate::crypto::random_key()?,
            shared,
        })
    }

    fn hash(&self, parts: &[&str]) -> u64 {
        let mut h = siphasher::sip::SipHasher13::new_with_keys(self.key.0, self.key.1);
        for p in parts {
            h.write(p.as_bytes());
            h.write_u8(0);
        }
        h.finish()
    }

    /// True the first time the id made of `parts` is taken within `ttl`; an error when the store
    /// cannot answer or this gateway's memory is full (refuse: never a second use).
    pub async fn first_use(&self, parts: &[&str], ttl: Duration) -> Result<bool, StoreError> {
        let ttl = ttl.max(Duration::from_secs(1));
        match &self.shared {
            Some(store) => {
                let id = std::iter::once(self.kind).chain(parts.iter().copied());
                let id = id.collect::<Vec<_>>().join(":");
                store.first_use(&id, ttl.as_secs()).await
            }
            None => self.first_use_here(self.hash(parts), Instant::now(), ttl),
        }
    }

    fn first_use_here(&self, id: u64, now: Instant, ttl: Duration) -> Result<bool, StoreError> {
        let shard = (id >> 32) as usize % SHARDS;
        let Some(lock) = self.local.get(shard) else {
            return Err(StoreError::Unavailable("no shard".into()));
        };
        let mut periods = lock.lock().unwrap_or_else(PoisonError::into_inner);
        periods.first_use(id, now, ttl, self.limit).ok_or_else(|| {
            StoreError::Unavailable(format!("too many {} ids to remember", self.kind))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Down;

    #[async_trait::async_trait]
    impl OnceIds for Down {
        async fn first_use(&self, _: &str, _: u64) -> Result<bool, StoreError> {
            Err(StoreError::Unavailable("down".into()))
        }
    }

    #[tokio::test]
    async fn an_id_is_taken_once_per_key_and_a_store_that_fails_refuses() {
        let seen = SeenIds::new("dpop", PROOF_IDS, None).unwrap();
        let t = Duration::from_secs(60);
        assert!(seen.first_use(&["k1", "j1"], t).await.unwrap());
        assert!(!seen.first_use(&["k1", "j1"], t).await.unwrap(), "a replay");
        assert!(
            seen.first_use(&["k2", "j1"], t).await.unwrap(),
            "another key's id"
        );
        assert!(
            seen.first_use(&["k1j", "1"], t).await.unwrap(),
            "the parts cannot run together"
        );
        let down = SeenIds::new("dpop", PROOF_IDS, Some(Arc::new(Down))).unwrap();
        assert!(down.first_use(&["k", "j"], t).await.is_err());
    }

    #[test]
    fn an_id_is_remembered_for_at_least_its_time_and_then_forgotten() {
        let start = Instant::now();
        let mut p = Periods::new(start);
        let ttl = Duration::from_secs(100);
        let at = |s: u64| start + Duration::from_secs(s);
        assert_eq!(p.first_use(1, at(0), ttl, 9), Some(true));
        assert_eq!(p.first_use(2, at(99), ttl, 9), Some(true));
        // the period turns at 100: both are kept through the next one
        assert_eq!(p.first_use(3, at(150), ttl, 9), Some(true));
        assert_eq!(p.first_use(2, at(198), ttl, 9), Some(false));
        assert_eq!(p.first_use(1, at(199), ttl, 9), Some(false));
        // at 250 the period that held 1 and 2 is dropped: 2 was kept 151 s, 3 stays
        assert_eq!(p.first_use(2, at(250), ttl, 9), Some(true));
        assert_eq!(p.first_use(3, at(251), ttl, 9), Some(false));
        // after two quiet periods nothing is left
        assert_eq!(p.first_use(3, at(600), ttl, 9), Some(true));
        assert_eq!(p.first_use(2, at(601), ttl, 9), Some(true));
    }

    #[test]
    fn a_full_memory_refuses_rather_than_forgets() {
        let seen = SeenIds::new("dpop", PROOF_IDS, None).unwrap();
        let (now, ttl) = (Instant::now(), Duration::from_secs(60));
        // ids of one shard (bits 32..36 are 7), spread as keyed hashes are, until it is full
        let ids = (1u64..).map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15) & !(0xF << 32) | 7 << 32);
        for id in ids.clone().take(PROOF_IDS / SHARDS) {
            assert_eq!(seen.first_use_here(id, now, ttl).ok(), Some(true));
        }
        let next = ids.clone().nth(PROOF_IDS / SHARDS).unwrap();
        assert!(seen.first_use_here(next, now, ttl).is_err());
        let first = ids.clone().next().unwrap();
        assert_eq!(
            seen.first_use_here(first, now, ttl).ok(),
            Some(false),
            "still a replay"
        );
        assert_eq!(
            seen.first_use_here(1 << 32, now, ttl).ok(),
            Some(true),
            "other shards take ids"
        );
        // a period later the ids move to the previous period and new ones are taken again
        let later = now + ttl;
        assert_eq!(seen.first_use_here(next, later, ttl).ok(), Some(true));
        assert_eq!(seen.first_use_here(first, later, ttl).ok(), Some(false));
    }
}
