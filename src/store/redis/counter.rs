//! Shared counters (rate limits, lockouts) in Redis over one multiplexed async connection.
//!
//! The token endpoint asks for up to three counters per request. Through the store's blocking
//! pool each cost a thread hand-over and a pooled connection's round trip; here concurrent requests
//! pipeline their commands on one connection, awaited on the request's own task, and the
//! connection manager reconnects by itself after a loss.

use super::{err, key, TIMEOUT};
use crate::store::{Counter, StoreError};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use tokio::sync::OnceCell;

pub struct RedisCounter {
    client: redis::Client,
    conn: OnceCell<redis::aio::ConnectionManager>,
    /// counted into the store's operation and error metrics
    pub operations: AtomicU64,
    pub errors: AtomicU64,
}

impl RedisCounter {
    pub fn new(client: redis::Client) -> Self {
        RedisCounter {
            client,
            conn: OnceCell::new(),
            operations: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        }
    }

    /// The connection, made when first needed; a failed first attempt is tried again next time.
    async fn conn(&self) -> Result<redis::aio::ConnectionManager, StoreError> {
        let c = self
            .conn
            .get_or_try_init(|| async {
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(TIMEOUT))
                    .set_response_timeout(Some(TIMEOUT))
                    .set_number_of_retries(1);
                redis::aio::ConnectionManager::new_with_config(self.client.clone(), config).await
            })
            .await
            .map_err(err)?;
        Ok(c.clone())
    }

    async fn run(&self, k: String, window_ms: u64, add: u32) -> Result<u32, StoreError> {
        let mut c = self.conn().await?;
        if add == 0 {
            let v: Option<u32> = redis::AsyncCommands::get(&mut c, &k).await.map_err(err)?;
            return Ok(v.unwrap_or(0));
        }
        let (v,): (u32,) = redis::pipe()
            .atomic()
            .incr(&k, add)
            .pexpire(&k, window_ms.saturating_mul(2).min(i64::MAX as u64) as i64)
            .ignore()
            .query_async(&mut c)
            .await
            .map_err(err)?;
        Ok(v)
    }
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
        self.operations.fetch_add(1, Relaxed);
        let slot = now_ms / window_ms.max(1);
        // the same key the store's other commands would use: one naming scheme in redis.rs
        let k = key("count", &format!("{name}:{slot}"));
        let answer = match tokio::time::timeout(TIMEOUT, self.run(k, window_ms, add)).await {
            Ok(answer) => answer,
            Err(_) => Err(err("the store did not answer in time")),
        };
        if answer.is_err() {
            self.errors.fetch_add(1, Relaxed);
        }
        answer
    }
}
