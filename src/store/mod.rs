//! Durable state of the token service behind one trait: revoked token ids and used assertion ids.

mod memory;
mod sqlite;

pub use memory::MemoryStore;
pub use sqlite::SqliteStore;

use crate::config::StoreBackend;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

/// What the token service keeps across restarts. Every method is synchronous and quick; async
/// callers run them through `run_blocking`. A method returns only after the change is durable.
pub trait Store: Send + Sync + 'static {
    /// Records that the access token `jti` is revoked until `exp` (seconds since the epoch).
    fn revoke(&self, jti: &str, exp: u64) -> Result<(), StoreError>;

    /// Every revocation that has not expired at `now`, to mirror in memory at start-up.
    fn revoked(&self, now: u64) -> Result<Vec<(String, u64)>, StoreError>;

    /// Records a client assertion id as used until `exp`. False when it was already used: replay.
    fn use_assertion(
        &self,
        client_id: &str,
        jti: &str,
        exp: u64,
        now: u64,
    ) -> Result<bool, StoreError>;

    /// Drops entries whose time has passed.
    fn purge(&self, now: u64) -> Result<(), StoreError>;
}

/// Opens the configured backend once, at start-up.
pub fn open(backend: &StoreBackend) -> Result<Arc<dyn Store>, String> {
    match backend {
        StoreBackend::Memory => Ok(Arc::new(MemoryStore::default())),
        StoreBackend::Sqlite(path) => Ok(Arc::new(SqliteStore::open(path)?)),
    }
}

/// Runs a store call off the async workers.
pub async fn run_blocking<T: Send + 'static>(
    store: &Arc<dyn Store>,
    f: impl FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || f(store.as_ref()))
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))?
}
