//! Revocations made on other replicas: a Redis subscription feeding the proxy's in-memory denylist,
//! which reloads the whole set whenever it (re)subscribes, so nothing published meanwhile is missed.

use super::redis::REVOCATIONS;
use super::Store;
use crate::auth::Revocations;
use crate::clock::{Clock, SharedClock, SystemClock};
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub struct RevocationFeed {
    pub client: redis::Client,
    /// false while the subscription is away, true once the whole set is loaded again
    pub loaded: Arc<super::RevocationsLoaded>,
    pub store: Arc<dyn Store>,
    pub revocations: Arc<Revocations>,
    pub clock: SharedClock,
    /// how long published revocations took to arrive
    pub lag: prometheus::Histogram,
}

/// `"<jti> <exp> <sent_ms>"`, as the store publishes it (`sent_ms` may be missing).
pub fn parse(payload: &str) -> Option<(&str, u64, Option<u64>)> {
    let mut parts = payload.split(' ');
    let jti = parts.next().filter(|j| !j.is_empty())?;
    let exp = parts.next()?.parse().ok()?;
    let sent = parts.next().and_then(|s| s.parse().ok());
    Some((jti, exp, sent))
}

impl RevocationFeed {
    /// Subscribes, catches up, then listens, until `stop`; a lost connection is made again.
    fn run(&self, stop: &AtomicBool) {
        let mut failing = false;
        while !stop.load(Ordering::SeqCst) {
            let listened = self.listen(stop);
            self.loaded.set(false);
            if let Err(e) = listened {
                if !failing {
                    tracing::warn!(error = %e, "revocations from other gateways cannot be received; retrying");
                    failing = true;
                }
                std::thread::sleep(Duration::from_secs(1));
            } else {
                failing = false;
            }
        }
    }

    fn listen(&self, stop: &AtomicBool) -> Result<(), String> {
        let mut conn = self
            .client
            .get_connection_with_timeout(Duration::from_secs(2))
            .map_err(|e| e.to_string())?;
        let mut ps = conn.as_pubsub();
        ps.subscribe(REVOCATIONS).map_err(|e| e.to_string())?;
        ps.set_read_timeout(Some(Duration::from_millis(500)))
            .map_err(|e| e.to_string())?;
        // Subscribed first, then the full set: a revocation is either in it or still to come.
        let all = self
            .store
            .revoked(self.clock.now_secs())
            .map_err(|e| e.to_string())?;
        for (jti, exp) in all {
            self.revocations.add(&jti, exp);
        }
        self.loaded.set(true);
        tracing::info!("receiving revocations from other gateways");
        while !stop.load(Ordering::SeqCst) {
            match ps.get_message() {
                Ok(msg) => {
                    let payload: String = msg.get_payload().unwrap_or_default();
                    if let Some((jti, exp, sent)) = parse(&payload) {
                        self.revocations.add(jti, exp);
                        if let Some(sent) = sent {
                            // the sender stamped its wall clock, so compare with ours, not the test clock
                            self.lag
                                .observe(SystemClock.now_ms().saturating_sub(sent) as f64 / 1000.0);
                        }
                    }
                }
                Err(e) if e.is_timeout() => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(())
    }
}

#[async_trait]
impl BackgroundService for RevocationFeed {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let stop = Arc::new(AtomicBool::new(false));
        let me = RevocationFeed {
            client: self.client.clone(),
            loaded: self.loaded.clone(),
            store: self.store.clone(),
            revocations: self.revocations.clone(),
            clock: self.clock.clone(),
            lag: self.lag.clone(),
        };
        let flag = stop.clone();
        let worker = tokio::task::spawn_blocking(move || me.run(&flag));
        let _ = shutdown.changed().await;
        stop.store(true, Ordering::SeqCst);
        let _ = worker.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_a_jti_and_its_exp() {
        assert_eq!(parse("abc 1700000000"), Some(("abc", 1_700_000_000, None)));
        assert_eq!(parse("abc 17 1800"), Some(("abc", 17, Some(1800))));
        assert_eq!(parse("abc"), None);
        assert_eq!(parse(" 12"), None);
        assert_eq!(parse("abc soon"), None);
    }
}
