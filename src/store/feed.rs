//! Revocations made on other replicas: a Redis subscription feeding the proxy's in-memory denylist,
//! which reloads the whole set whenever it (re)subscribes, so nothing published meanwhile is missed.

use super::redis::{REVOCATIONS, TIMEOUT};
use super::Store;
use crate::auth::Revocations;
use crate::clock::{Clock, SharedClock, SystemClock};
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use redis::{Connection, PubSub};
use std::sync::mpsc::{self, RecvTimeoutError, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long one wait for a message lasts, and so how soon a shutdown is noticed.
const TICK: Duration = Duration::from_millis(500);
/// How often the subscription is asked for a sign of life: Redis answers PING inside it.
const PING_EVERY: Duration = Duration::from_secs(1);
/// Silence for this long means the subscription is lost. A NAT, a load balancer or a vanished host
/// can drop the flow without a reset; the socket would then wait forever while revocations pass by.
pub const SILENCE: Duration = Duration::from_secs(5);
/// The pause between failed attempts to subscribe.
const RETRY: Duration = Duration::from_secs(1);

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

/// The worker's stop signal: the service drops the sender when the server shuts down.
struct Stop(mpsc::Receiver<()>);

impl Stop {
    fn requested(&self) -> bool {
        !matches!(self.0.try_recv(), Err(TryRecvError::Empty))
    }

    /// Waits `d`, or less when asked to stop meanwhile; true when asked.
    fn wait(&self, d: Duration) -> bool {
        !matches!(self.0.recv_timeout(d), Err(RecvTimeoutError::Timeout))
    }
}

/// How one subscription ended.
enum End {
    Stopped,
    /// it could not be made (Redis away, or the set not loaded)
    Failed(String),
    /// it was up, then broke or fell silent
    Lost(String),
}

fn text(e: impl std::fmt::Display) -> String {
    e.to_string()
}

impl RevocationFeed {
    /// Subscribes, catches up, then listens, until stopped; a lost subscription is made again.
    fn run(&self, stop: &Stop) {
        let mut failing = false;
        while !stop.requested() {
            let end = self.listen(stop);
            // until it is back and has caught up, this gateway may be missing revocations
            self.loaded.set(false);
            match end {
                End::Stopped => return,
                End::Lost(e) => {
                    tracing::warn!(error = %e, "the subscription to revocations from other gateways was lost; subscribing again");
                    failing = false;
                }
                End::Failed(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "revocations from other gateways cannot be received; retrying");
                        failing = true;
                    }
                    if stop.wait(RETRY) {
                        return;
                    }
                }
            }
        }
    }

    fn listen(&self, stop: &Stop) -> End {
        let mut conn = match connect(&self.client) {
            Ok(c) => c,
            Err(e) => return End::Failed(e),
        };
        let mut ps = conn.as_pubsub();
        if let Err(e) = self.catch_up(&mut ps) {
            return End::Failed(e);
        }
        self.loaded.set(true);
        tracing::info!("receiving revocations from other gateways");
        match self.follow(&mut ps, stop) {
            Ok(()) => End::Stopped,
            Err(e) => End::Lost(e),
        }
    }

    /// Subscribes, then loads the whole set: a revocation is either in it or still to come.
    fn catch_up(&self, ps: &mut PubSub<'_>) -> Result<(), String> {
        ps.subscribe(REVOCATIONS).map_err(text)?;
        let all = self.store.revoked(self.clock.now_secs()).map_err(text)?;
        for (jti, exp) in all {
            self.revocations.add(&jti, exp);
        }
        ps.set_read_timeout(Some(TICK)).map_err(text)
    }

    /// Takes in what is published, asking for a sign of life every second; returns when stopped,
    /// or with why the subscription counts as lost.
    fn follow(&self, ps: &mut PubSub<'_>, stop: &Stop) -> Result<(), String> {
        let mut heard = Instant::now();
        let mut asked = Instant::now();
        while !stop.requested() {
            if asked.elapsed() >= PING_EVERY {
                asked = Instant::now();
                if sign_of_life(ps)? {
                    heard = Instant::now();
                }
            }
            match ps.get_message() {
                Ok(msg) => {
                    heard = Instant::now();
                    self.take(&msg.get_payload::<String>().unwrap_or_default());
                }
                Err(e) if e.is_timeout() => {}
                Err(e) => return Err(e.to_string()),
            }
            if heard.elapsed() >= SILENCE {
                return Err(format!(
                    "nothing came from Redis for {} s",
                    SILENCE.as_secs()
                ));
            }
        }
        Ok(())
    }

    fn take(&self, payload: &str) {
        if let Some((jti, exp, sent)) = parse(payload) {
            self.revocations.add(jti, exp);
            if let Some(sent) = sent {
                // the sender stamped its wall clock, so compare with ours, not the test clock
                self.lag
                    .observe(SystemClock.now_ms().saturating_sub(sent) as f64 / 1000.0);
            }
        }
    }
}

/// A connection for the subscription. Its reads and writes are bounded, so a flow gone silent shows
/// up as a timeout instead of a wait without end.
fn connect(client: &redis::Client) -> Result<Connection, String> {
    let conn = client.get_connection_with_timeout(TIMEOUT).map_err(text)?;
    conn.set_write_timeout(Some(TIMEOUT)).map_err(text)?;
    conn.set_read_timeout(Some(TIMEOUT)).map_err(text)?;
    Ok(conn)
}

/// PINGs inside the subscription: true when Redis answered within `TIMEOUT`. An answer that comes
/// later is skipped by the connection when it arrives.
fn sign_of_life(ps: &mut PubSub<'_>) -> Result<bool, String> {
    ps.set_read_timeout(Some(TIMEOUT)).map_err(text)?;
    let answered = match ps.ping::<redis::Value>() {
        Ok(_) => true,
        Err(e) if e.is_timeout() => false,
        Err(e) => return Err(e.to_string()),
    };
    ps.set_read_timeout(Some(TICK)).map_err(text)?;
    Ok(answered)
}

#[async_trait]
impl BackgroundService for RevocationFeed {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let (stop, stopped) = mpsc::channel::<()>();
        let me = RevocationFeed {
            client: self.client.clone(),
            loaded: self.loaded.clone(),
            store: self.store.clone(),
            revocations: self.revocations.clone(),
            clock: self.clock.clone(),
            lag: self.lag.clone(),
        };
        let worker = tokio::task::spawn_blocking(move || me.run(&Stop(stopped)));
        let _ = shutdown.changed().await;
        drop(stop);
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
