//! Shared counters (rate limits, lockouts) in Redis, on the store's own connections.
//!
//! The token endpoint asks for two round trips per request: its address's rate with the client's
//! lockout count (one `count_many`), then the authenticated client's rate. Each is awaited on the
//! request's own task (no blocking-pool hand-over) while the commands run on the store's connection
//! thread, pipelined with whatever else is in flight, so there is one connection model for all of
//! Redis but the revocation feed's subscription.

use super::pool::{Pool, Worker};
use super::{err, key};
use crate::store::{Ask, Counter, StoreError};
use std::sync::Arc;

pub struct RedisCounter {
    worker: Arc<Worker>,
    pool: Arc<Pool>,
}

impl RedisCounter {
    pub(super) fn new(worker: Arc<Worker>, pool: Arc<Pool>) -> Self {
        RedisCounter { worker, pool }
    }
}

/// Every ask in one round trip: an increment with its expiry (the key outlives its window by one
/// more), or a read. Increments go in a transaction, so no key is left without its expiry; reads
/// alone need none.
async fn count_all(pool: &Pool, asks: Vec<(String, u64, u32)>) -> Result<Vec<u32>, StoreError> {
    pool.run(move |mut c| async move {
        let mut pipe = redis::pipe();
        if asks.iter().any(|(_, _, add)| *add > 0) {
            pipe.atomic();
        }
        for (k, window_ms, add) in &asks {
            if *add == 0 {
                pipe.get(k);
            } else {
                pipe.incr(k, *add)
                    .pexpire(k, expiry_ms(*window_ms))
                    .ignore();
            }
        }
        let counts: Vec<Option<u32>> = pipe.query_async(&mut c).await?;
        Ok(counts.into_iter().map(|v| v.unwrap_or(0)).collect())
    })
    .await
}

/// How long a window's key lives: its window and one more, so a key never outlives its use by much.
fn expiry_ms(window_ms: u64) -> i64 {
    window_ms.saturating_mul(2).min(i64::MAX as u64) as i64
}

/// The key of a counter's window: the same scheme the store's other keys use (`key`).
fn window_key(name: &str, window_ms: u64, now_ms: u64) -> String {
    let slot = now_ms / window_ms.max(1);
    key("count", &format!("{name}:{slot}"))
}

#[async_trait::async_trait]
impl Counter for RedisCounter {
    async fn count(
        &self,
        name: &str,
        window_ms: u64,
        add: u32,
        now_ms: u64,
    ) -> Result<u32, StoreError> {
        let ask = Ask {
            key: name,
            window_ms,
            add,
        };
        let counts = self.count_many(&[ask], now_ms).await?;
        counts
            .first()
            .copied()
            .ok_or_else(|| err("Redis answered no count"))
    }

    async fn count_many(&self, asks: &[Ask<'_>], now_ms: u64) -> Result<Vec<u32>, StoreError> {
        let keyed = asks
            .iter()
            .map(|a| (window_key(a.key, a.window_ms, now_ms), a.window_ms, a.add))
            .collect();
        let pool = self.pool.clone();
        // the pool bounds the commands by TIMEOUT and counts them in the store's metrics
        self.worker
            .spawn(async move { count_all(&pool, keyed).await })?
            .await
            .map_err(err)?
    }

    async fn reset(&self, name: &str, window_ms: u64, now_ms: u64) -> Result<(), StoreError> {
        let k = window_key(name, window_ms, now_ms);
        let pool = self.pool.clone();
        self.worker
            .spawn(async move {
                pool.run(
                    move |mut c| async move { redis::Cmd::del(&k).query_async::<()>(&mut c).await },
                )
                .await
            })?
            .await
            .map_err(err)?
    }
}
