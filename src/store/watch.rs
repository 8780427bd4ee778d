//! Revocations written to a store file by another process (`gatehouse tokens revoke` on the
//! SQLite file the gateway uses): read again within a second of the change, so the edge refuses
//! those access tokens at once, as it does for revocations made through the gateway itself.

use super::Store;
use crate::auth::Revocations;
use crate::clock::SharedClock;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::sync::Arc;
use std::time::Duration;

/// How often the store is asked whether it changed.
pub const EVERY: Duration = Duration::from_secs(1);

pub struct RevocationWatch {
    pub store: Arc<dyn Store>,
    pub revocations: Arc<Revocations>,
    pub clock: SharedClock,
}

impl RevocationWatch {
    /// Reads the store's revocations again when it changed; how many it holds, if it was read.
    pub async fn check(&self) -> Result<Option<usize>, super::StoreError> {
        if !super::run_blocking(&self.store, |s| s.changed_elsewhere()).await? {
            return Ok(None);
        }
        let now = self.clock.now_secs();
        let revoked = super::run_blocking(&self.store, move |s| s.revoked(now)).await?;
        for (jti, exp) in &revoked {
            self.revocations.add(jti, *exp);
        }
        Ok(Some(revoked.len()))
    }
}

#[async_trait]
impl BackgroundService for RevocationWatch {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            if let Err(e) = self.check().await {
                tracing::warn!(error = %e, "cannot read the store's revocations");
            }
            tokio::select! {
                _ = tokio::time::sleep(EVERY) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}
