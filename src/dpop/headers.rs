//! The keys of proof headers seen lately: a client repeats its proof header on every request, so
//! the key in it is read, parsed and thumbprinted once, not per proof.

use super::key::ProofKey;
use std::sync::Arc;
use std::time::Duration;

/// The header text kept, in bytes (a P-256 header is about 250).
const BYTES: u64 = 1 << 20;
/// A header unused this long is forgotten.
const IDLE: Duration = Duration::from_secs(600);

/// Headers whose proofs passed, with their keys. A key depends on its header's text alone (and the
/// algorithms of the generation that owns this), so a kept one is exactly what reading it would give.
pub struct KnownHeaders {
    keys: moka::sync::Cache<Arc<str>, Arc<ProofKey>>,
}

impl Default for KnownHeaders {
    fn default() -> Self {
        let weigh = |header: &Arc<str>, _: &Arc<ProofKey>| {
            u32::try_from(header.len() + 64).unwrap_or(u32::MAX)
        };
        KnownHeaders {
            keys: moka::sync::Cache::builder()
                .max_capacity(BYTES)
                .weigher(weigh)
                .time_to_idle(IDLE)
                .build(),
        }
    }
}

impl KnownHeaders {
    /// The key of this header segment, when a proof with it passed before.
    pub fn get(&self, segment: &str) -> Option<Arc<ProofKey>> {
        self.keys.get(segment)
    }

    /// Keeps the key of a header whose proof passed (its signature verified with it).
    pub fn keep(&self, segment: &str, key: Arc<ProofKey>) {
        self.keys.insert(segment.into(), key);
    }
}
