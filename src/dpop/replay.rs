//! Proof ids seen: a proof's `jti` (with its key's thumbprint) is accepted once while it could be
//! taken at all. One gateway remembers them in memory; gateways on a shared store (Redis) ask it,
//! so a proof replayed to another replica is refused too.

use crate::store::{OnceIds, StoreError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The most proof ids one gateway remembers. Only proofs that passed every other check are
/// remembered (at the edge, only by holders of a bound token and its key); past this, the oldest
/// are forgotten first.
const CAPACITY: u64 = 1 << 20;

/// Each id is kept for the seconds it was recorded with.
struct ForItsTime;

impl moka::Expiry<u128, u64> for ForItsTime {
    fn expire_after_create(&self, _: &u128, secs: &u64, _: Instant) -> Option<Duration> {
        Some(Duration::from_secs(*secs))
    }
}

/// The proof ids this gateway, or the fleet, has seen; shared by every configuration generation,
/// so a reload forgets none.
pub struct SeenProofs {
    local: moka::sync::Cache<u128, u64>,
    /// keys the in-memory hash, so ids cannot be chosen to collide
    key: (u64, u64),
    shared: Option<Arc<dyn OnceIds>>,
}

impl SeenProofs {
    /// `shared`: the store's one-time ids, when replicas share them.
    pub fn new(
        shared: Option<Arc<dyn OnceIds>>,
    ) -> Result<SeenProofs, crate::crypto::NoRandomness> {
        Ok(SeenProofs {
            local: moka::sync::Cache::builder()
                .max_capacity(CAPACITY)
                .expire_after(ForItsTime)
                .build(),
            key: crate::crypto::random_key()?,
            shared,
        })
    }

    fn hash(&self, jkt: &str, jti: &str) -> u128 {
        use std::hash::Hasher;
        let mut h = siphasher::sip128::SipHasher13::new_with_keys(self.key.0, self.key.1);
        h.write(jkt.as_bytes());
        h.write_u8(0);
        h.write(jti.as_bytes());
        siphasher::sip128::Hasher128::finish128(&h).as_u128()
    }

    /// Records the proof id `jti` of the key `jkt` for `ttl`; false when it was seen before. A
    /// store that cannot answer is an error: the proof is then refused, never taken unchecked.
    pub async fn first_use(&self, jkt: &str, jti: &str, ttl: Duration) -> Result<bool, StoreError> {
        let secs = ttl.as_secs().max(1);
        match &self.shared {
            Some(store) => store.first_use(&format!("dpop:{jkt}:{jti}"), secs).await,
            None => Ok(self
                .local
                .entry(self.hash(jkt, jti))
                .or_insert(secs)
                .is_fresh()),
        }
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
        let seen = SeenProofs::new(None).unwrap();
        let t = Duration::from_secs(60);
        assert!(seen.first_use("k1", "j1", t).await.unwrap());
        assert!(!seen.first_use("k1", "j1", t).await.unwrap(), "a replay");
        assert!(
            seen.first_use("k2", "j1", t).await.unwrap(),
            "another key's id"
        );
        assert!(
            seen.first_use("k1j", "1", t).await.unwrap(),
            "the parts cannot run together"
        );
        let down = SeenProofs::new(Some(Arc::new(Down))).unwrap();
        assert!(down.first_use("k", "j", t).await.is_err());
    }
}
