//! One-time ids (DPoP proof ids) in Redis, shared by every replica: one `SET NX EX` round trip,
//! awaited on the request's own task like the shared counters, never on the blocking pool.

use super::pool::{Pool, Worker};
use super::{err, key};
use crate::store::{OnceIds, StoreError};
use std::sync::Arc;

pub struct RedisOnce {
    worker: Arc<Worker>,
    pool: Arc<Pool>,
}

impl RedisOnce {
    pub(super) fn new(worker: Arc<Worker>, pool: Arc<Pool>) -> Self {
        RedisOnce { worker, pool }
    }
}

#[async_trait::async_trait]
impl OnceIds for RedisOnce {
    async fn first_use(&self, id: &str, ttl_secs: u64) -> Result<bool, StoreError> {
        let k = key("once", id);
        let ttl = ttl_secs.max(1);
        let pool = self.pool.clone();
        // the pool bounds the command by TIMEOUT and counts it in the store's metrics
        self.worker
            .spawn(async move {
                pool.run(move |mut c| async move {
                    let mut set = redis::cmd("SET");
                    set.arg(&k).arg(1).arg("NX").arg("EX").arg(ttl);
                    let stored: Option<String> = set.query_async(&mut c).await?;
                    Ok(stored.is_some())
                })
                .await
            })?
            .await
            .map_err(err)?
    }
}
