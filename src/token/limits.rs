//! Fixed-window counters for the token endpoint: request rates and failed-authentication lockouts,
//! shared by every gateway when the store shares them (Redis), else counted by each gateway. A
//! window that cannot count refuses: a broken limiter must not become no limit.

use crate::clock::SharedClock;
use crate::store::{Ask, Counter, Store, StoreError};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Counts events per key in fixed windows of the configured length, on the gateway's clock.
pub struct Window {
    limit: u32,
    window_ms: u64,
    clock: SharedClock,
    counts: Mutex<HashMap<String, (u64, u32)>>,
    /// the counters shared between gateways, and this window's name in them
    shared: Option<(Arc<dyn Counter>, &'static str)>,
    /// set while the shared counts cannot be had, so the fallback is logged once per outage
    degraded: AtomicBool,
    /// set once the local counts cannot be had, so the refusals are logged once
    broken: AtomicBool,
}

impl Window {
    pub fn new(limit: u32, window: Duration, clock: SharedClock) -> Self {
        Window {
            limit,
            window_ms: window.as_millis().max(1) as u64,
            clock,
            counts: Mutex::new(HashMap::new()),
            shared: None,
            degraded: AtomicBool::new(false),
            broken: AtomicBool::new(false),
        }
    }

    /// Counts in `store` when it shares counters, under `name`; else in this gateway's memory.
    pub fn shared(mut self, store: Arc<dyn Store>, name: &'static str) -> Self {
        self.shared = store.counter().map(|c| (c, name));
        self
    }

    /// Adds `n` (0 reads) in the shared count when there is one; falls back to this gateway's own
    /// count, and says so once, while the store cannot answer.
    async fn count(&self, key: &str, n: u32) -> u32 {
        let shared = match &self.shared {
            Some((counter, name)) => Some(
                counter
                    .count(
                        &shared_key(name, key),
                        self.window_ms,
                        n,
                        self.clock.now_ms(),
                    )
                    .await,
            ),
            None => None,
        };
        self.settle(shared, key, n)
    }

    /// The count of `key` after adding `n`: the shared store's answer when it gave one, else this
    /// gateway's own (said once per outage).
    fn settle(&self, shared: Option<Result<u32, StoreError>>, key: &str, n: u32) -> u32 {
        match shared {
            Some(Ok(v)) => {
                if self.degraded.swap(false, Ordering::SeqCst) {
                    tracing::info!("rate-limit and lockout counters are shared again");
                }
                return v;
            }
            Some(Err(e)) if !self.degraded.swap(true, Ordering::SeqCst) => {
                tracing::warn!(error = %e, "the store cannot count: rate limits and lockouts fall back to this gateway's own windows");
            }
            _ => {}
        }
        self.add(key, n)
    }

    /// The shared counter and the names of this window's keys and of `other`'s in it, when the two
    /// count in one store.
    fn same_store<'a>(
        &'a self,
        other: &Window,
    ) -> Option<(&'a Arc<dyn Counter>, &'static str, &'static str)> {
        match (&self.shared, &other.shared) {
            (Some((a, mine)), Some((b, theirs))) if Arc::ptr_eq(a, b) => Some((a, *mine, *theirs)),
            _ => None,
        }
    }

    fn slot(&self) -> u64 {
        self.clock.now_ms() / self.window_ms
    }

    /// Seconds until the current window ends: the Retry-After of a refusal.
    pub fn retry_after(&self) -> u64 {
        let now = self.clock.now_ms();
        let end = (now / self.window_ms + 1) * self.window_ms;
        (end - now).div_ceil(1000).max(1)
    }

    /// Adds one event; true while the key stays within the limit.
    pub async fn hit(&self, key: &str) -> bool {
        self.count(key, 1).await <= self.limit
    }

    /// True when the key has already reached the limit in this window.
    pub async fn exceeded(&self, key: &str) -> bool {
        self.count(key, 0).await >= self.limit
    }

    /// Sets a key's count back to zero, here and in the shared counters: a lockout cleared by an
    /// operator. False when the shared counters could not be reached.
    pub async fn clear(&self, key: &str) -> bool {
        if let Ok(mut m) = self.counts.lock() {
            m.remove(key);
        }
        match &self.shared {
            Some((counter, name)) => counter
                .reset(&shared_key(name, key), self.window_ms, self.clock.now_ms())
                .await
                .is_ok(),
            None => true,
        }
    }

    /// Counts in this gateway's memory. A poisoned lock (a thread panicked while counting) reads
    /// as the limit exceeded, for every key: refusing is recoverable by a restart, letting
    /// everything through is not noticed at all.
    fn add(&self, key: &str, n: u32) -> u32 {
        let slot = self.slot();
        let Ok(mut m) = self.counts.lock() else {
            if !self.broken.swap(true, Ordering::SeqCst) {
                tracing::error!("a rate-limit or lockout window cannot count; it refuses until the gateway restarts");
            }
            return u32::MAX;
        };
        if m.len() > 100_000 {
            // Old windows are worthless; drop them rather than grow without bound.
            m.retain(|_, (s, _)| *s == slot);
        }
        if n == 0 {
            return m
                .get(key)
                .filter(|(s, _)| *s == slot)
                .map(|(_, c)| *c)
                .unwrap_or(0);
        }
        let e = m.entry(key.to_string()).or_insert((slot, 0));
        if e.0 != slot {
            *e = (slot, 0);
        }
        e.1 = e.1.saturating_add(n);
        e.1
    }
}

/// A request arrives: adds it to `rate`'s count for `key` and, when `lockout_key` is given, reads
/// `lockout`'s count for it, in one round trip when both count in the same shared store. Returns
/// (within the rate, locked out).
pub async fn arrive(
    rate: &Window,
    key: &str,
    lockout: &Window,
    lockout_key: Option<&str>,
) -> (bool, bool) {
    let Some(held) = lockout_key else {
        return (rate.hit(key).await, false);
    };
    let Some((counter, rate_name, lockout_name)) = rate.same_store(lockout) else {
        return (rate.hit(key).await, lockout.exceeded(held).await);
    };
    let (a, b) = (shared_key(rate_name, key), shared_key(lockout_name, held));
    let asks = [
        Ask {
            key: &a,
            window_ms: rate.window_ms,
            add: 1,
        },
        Ask {
            key: &b,
            window_ms: lockout.window_ms,
            add: 0,
        },
    ];
    let (first, second) = match counter.count_many(&asks, rate.clock.now_ms()).await {
        Ok(v) => match v.as_slice() {
            [x, y] => (Ok(*x), Ok(*y)),
            _ => (Err(odd()), Err(odd())),
        },
        Err(e) => (Err(e.clone()), Err(e)),
    };
    let counted = rate.settle(Some(first), key, 1);
    let failed = lockout.settle(Some(second), held, 0);
    (counted <= rate.limit, failed >= lockout.limit)
}

/// A window's key in the shared counters: its name, then the key it counts. One spelling, so an
/// arrival reads the very lockout that failures count.
fn shared_key(name: &str, key: &str) -> String {
    format!("{name}:{key}")
}

fn odd() -> StoreError {
    StoreError::Unavailable("the store answered a different number of counts".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::OffsetClock;
    use std::sync::Arc;

    #[tokio::test]
    async fn counts_per_window() {
        let clock = Arc::new(OffsetClock::default());
        let w = Window::new(2, Duration::from_secs(60), clock.clone());
        assert!(w.hit("a").await && w.hit("a").await);
        assert!(w.exceeded("a").await);
        assert!(!w.hit("a").await);
        assert!(w.hit("b").await);
        assert!(w.retry_after() <= 60);
        clock.advance(Duration::from_secs(61));
        assert!(!w.exceeded("a").await);
        assert!(w.hit("a").await);
    }

    /// A counter that cannot answer, as a shared store in an outage.
    struct Down;

    #[async_trait::async_trait]
    impl Counter for Down {
        async fn count(
            &self,
            _: &str,
            _: u64,
            _: u32,
            _: u64,
        ) -> Result<u32, crate::store::StoreError> {
            Err(crate::store::StoreError::Unavailable("down".into()))
        }

        async fn reset(&self, _: &str, _: u64, _: u64) -> Result<(), crate::store::StoreError> {
            Err(crate::store::StoreError::Unavailable("down".into()))
        }
    }

    #[tokio::test]
    async fn a_window_that_cannot_count_refuses() {
        let clock = Arc::new(OffsetClock::default());
        let mut w = Window::new(1000, Duration::from_secs(60), clock.clone());
        w.shared = Some((Arc::new(Down), "test"));
        // the shared count is away: this gateway's own window still limits
        assert!(w.hit("a").await);
        assert!(!w.exceeded("a").await);
        // a thread panics while it counts: the lock is poisoned
        let poisoned = std::thread::scope(|s| {
            s.spawn(|| {
                let _held = w.counts.lock().unwrap();
                panic!("counting failed");
            })
            .join()
        });
        assert!(poisoned.is_err() && w.counts.is_poisoned());
        // every key is refused from then on, never let through
        for key in ["a", "b"] {
            assert!(!w.hit(key).await, "{key} passed a broken window");
            assert!(
                w.exceeded(key).await,
                "{key} is not locked out by a broken window"
            );
        }
        clock.advance(Duration::from_secs(61));
        assert!(!w.hit("a").await, "a new window does not mend the lock");
    }

    #[tokio::test]
    async fn a_cleared_key_counts_from_zero_and_others_keep_their_counts() {
        let clock = Arc::new(OffsetClock::default());
        let w = Window::new(2, Duration::from_secs(60), clock);
        for _ in 0..3 {
            w.hit("user:a@ip:1").await;
            w.hit("user:b@ip:1").await;
        }
        assert!(w.exceeded("user:a@ip:1").await);
        assert!(w.clear("user:a@ip:1").await);
        assert!(!w.exceeded("user:a@ip:1").await);
        assert!(w.hit("user:a@ip:1").await, "counts from zero");
        assert!(
            w.exceeded("user:b@ip:1").await,
            "another key keeps its count"
        );
    }

    /// A shared counter in memory that records each call: `count` as one ask, `count_many` as many.
    #[derive(Default)]
    struct Recorded {
        counts: Mutex<HashMap<String, u32>>,
        calls: Mutex<Vec<Vec<(String, u64, u32)>>>,
    }

    #[async_trait::async_trait]
    impl Counter for Recorded {
        async fn count(
            &self,
            key: &str,
            window_ms: u64,
            add: u32,
            now_ms: u64,
        ) -> Result<u32, StoreError> {
            let ask = Ask {
                key,
                window_ms,
                add,
            };
            Ok(self.count_many(&[ask], now_ms).await?[0])
        }

        async fn reset(&self, key: &str, _: u64, _: u64) -> Result<(), StoreError> {
            self.counts.lock().unwrap().remove(key);
            Ok(())
        }

        async fn count_many(&self, asks: &[Ask<'_>], _: u64) -> Result<Vec<u32>, StoreError> {
            let call = asks.iter().map(|a| (a.key.to_string(), a.window_ms, a.add));
            self.calls.lock().unwrap().push(call.collect());
            let mut counts = self.counts.lock().unwrap();
            let counted = asks.iter().map(|a| {
                let c = counts.entry(a.key.to_string()).or_default();
                *c += a.add;
                *c
            });
            Ok(counted.collect())
        }
    }

    #[tokio::test]
    async fn an_arrival_counts_the_rate_and_reads_the_lockout_in_one_call() {
        let clock = Arc::new(OffsetClock::default());
        let shared = Arc::new(Recorded::default());
        let mut rate = Window::new(2, Duration::from_secs(1), clock.clone());
        let mut lockout = Window::new(1, Duration::from_secs(300), clock.clone());
        rate.shared = Some((shared.clone(), "rate"));
        lockout.shared = Some((shared.clone(), "failures"));
        assert_eq!(
            arrive(&rate, "ip:a", &lockout, Some("client:c@ip:a")).await,
            (true, false)
        );
        assert_eq!(
            shared.calls.lock().unwrap().as_slice(),
            [vec![
                ("rate:ip:a".to_string(), 1000, 1),
                ("failures:client:c@ip:a".to_string(), 300_000, 0)
            ]],
            "one call: the address counted, the lockout read"
        );
        assert!(lockout.hit("client:c@ip:a").await);
        assert_eq!(
            arrive(&rate, "ip:a", &lockout, Some("client:c@ip:a")).await,
            (true, true)
        );
        assert_eq!(arrive(&rate, "ip:a", &lockout, None).await, (false, false));
        assert_eq!(shared.calls.lock().unwrap().len(), 4);
        assert_eq!(shared.counts.lock().unwrap()["rate:ip:a"], 3);
    }

    #[tokio::test]
    async fn an_arrival_the_store_cannot_count_falls_back_to_each_windows_own() {
        let clock = Arc::new(OffsetClock::default());
        let down: Arc<dyn Counter> = Arc::new(Down);
        let mut rate = Window::new(1, Duration::from_secs(1), clock.clone());
        let mut lockout = Window::new(1, Duration::from_secs(300), clock.clone());
        rate.shared = Some((down.clone(), "rate"));
        lockout.shared = Some((down, "failures"));
        assert_eq!(
            arrive(&rate, "ip:a", &lockout, Some("k")).await,
            (true, false)
        );
        assert_eq!(lockout.add("k", 1), 1);
        assert_eq!(
            arrive(&rate, "ip:a", &lockout, Some("k")).await,
            (false, true)
        );
    }

    /// A shared counter that answers fewer counts than it was asked for.
    struct Short;

    #[async_trait::async_trait]
    impl Counter for Short {
        async fn count(&self, _: &str, _: u64, _: u32, _: u64) -> Result<u32, StoreError> {
            Ok(0)
        }

        async fn reset(&self, _: &str, _: u64, _: u64) -> Result<(), StoreError> {
            Ok(())
        }

        async fn count_many(&self, _: &[Ask<'_>], _: u64) -> Result<Vec<u32>, StoreError> {
            Ok(vec![0])
        }
    }

    #[tokio::test]
    async fn an_arrival_answered_with_too_few_counts_is_counted_here() {
        let clock = Arc::new(OffsetClock::default());
        let short: Arc<dyn Counter> = Arc::new(Short);
        let mut rate = Window::new(1, Duration::from_secs(1), clock.clone());
        let mut lockout = Window::new(1, Duration::from_secs(300), clock.clone());
        rate.shared = Some((short.clone(), "rate"));
        lockout.shared = Some((short, "failures"));
        lockout.add("k", 1);
        // neither zero count of the short answer is taken: the address counts here, the lockout holds
        assert_eq!(
            arrive(&rate, "ip:a", &lockout, Some("k")).await,
            (true, true)
        );
        assert_eq!(
            arrive(&rate, "ip:a", &lockout, Some("k")).await,
            (false, true)
        );
    }
}
