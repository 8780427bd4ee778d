//! What the operators' console shows of a pool: each peer's latest health check (when it ran, how
//! long it took, why it failed; a wrapper around the pool's own check, so the request path pays
//! nothing for it) and the pool's traffic (requests in flight, connections made and reused).

use async_trait::async_trait;
use pingora::lb::health_check::HealthCheck;
use pingora::lb::Backend;
use pingora::Result;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One peer's latest check.
#[derive(Debug, Clone)]
pub struct PeerCheck {
    pub at: Instant,
    pub took: Duration,
    /// empty when it passed
    pub error: String,
}

/// The latest check of every peer of one pool, by address.
#[derive(Debug, Default)]
pub struct CheckLog(Mutex<HashMap<String, PeerCheck>>);

impl CheckLog {
    pub fn latest(&self, peer: &str) -> Option<PeerCheck> {
        let m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        m.get(peer).cloned()
    }

    fn record(&self, peer: String, check: PeerCheck) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        m.insert(peer, check);
    }
}

/// What one pool's requests are doing now, counted on the request path with relaxed atomics (one
/// add when a request first asks for a peer, one when it ends, one per connection).
#[derive(Debug, Default)]
pub struct Traffic {
    /// requests that asked for a peer and have not ended: the connections in use
    pub in_flight: std::sync::atomic::AtomicU64,
    pub connections_new: std::sync::atomic::AtomicU64,
    pub connections_reused: std::sync::atomic::AtomicU64,
}

/// A health check that writes each outcome to a `CheckLog`.
pub struct Logged {
    pub inner: Box<dyn HealthCheck + Send + Sync>,
    pub log: Arc<CheckLog>,
}

#[async_trait]
impl HealthCheck for Logged {
    fn health_threshold(&self, success: bool) -> usize {
        self.inner.health_threshold(success)
    }

    async fn check(&self, target: &Backend) -> Result<()> {
        let at = Instant::now();
        let outcome = self.inner.check(target).await;
        let error = match &outcome {
            Ok(()) => String::new(),
            // the error's kind and context, which name the peer, never a credential
            Err(e) => e.to_string().chars().take(300).collect(),
        };
        let check = PeerCheck {
            at,
            took: at.elapsed(),
            error,
        };
        self.log.record(target.addr.to_string(), check);
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fails(bool);

    #[async_trait]
    impl HealthCheck for Fails {
        fn health_threshold(&self, _: bool) -> usize {
            3
        }

        async fn check(&self, _: &Backend) -> Result<()> {
            if self.0 {
                Err(pingora::Error::explain(
                    pingora::ErrorType::ConnectRefused,
                    "refused",
                ))
            } else {
                Ok(())
            }
        }
    }

    #[tokio::test]
    async fn each_outcome_is_logged_by_peer() {
        let log = Arc::new(CheckLog::default());
        let backend = Backend::new("127.0.0.1:9").unwrap();
        for fails in [false, true] {
            let c = Logged {
                inner: Box::new(Fails(fails)),
                log: log.clone(),
            };
            assert_eq!(c.health_threshold(true), 3);
            assert_eq!(c.check(&backend).await.is_err(), fails);
            let latest = log.latest("127.0.0.1:9").unwrap();
            assert_eq!(latest.error.is_empty(), !fails, "{latest:?}");
        }
        assert!(log.latest("127.0.0.1:10").is_none());
    }
}
