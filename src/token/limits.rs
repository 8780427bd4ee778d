//! Fixed-window counters for the token endpoint: request rates and failed-authentication lockouts.

use crate::clock::SharedClock;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// Counts events per key in fixed windows of the configured length, on the gateway's clock.
pub struct Window {
    limit: u32,
    window_ms: u64,
    clock: SharedClock,
    counts: Mutex<HashMap<String, (u64, u32)>>,
}

impl Window {
    pub fn new(limit: u32, window: Duration, clock: SharedClock) -> Self {
        Window {
            limit,
            window_ms: window.as_millis().max(1) as u64,
            clock,
            counts: Mutex::new(HashMap::new()),
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
    pub fn hit(&self, key: &str) -> bool {
        self.add(key, 1) <= self.limit
    }

    /// True when the key has already reached the limit in this window.
    pub fn exceeded(&self, key: &str) -> bool {
        self.add(key, 0) >= self.limit
    }

    fn add(&self, key: &str, n: u32) -> u32 {
        let slot = self.slot();
        let Ok(mut m) = self.counts.lock() else {
            return 0;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::OffsetClock;
    use std::sync::Arc;

    #[test]
    fn counts_per_window() {
        let clock = Arc::new(OffsetClock::default());
        let w = Window::new(2, Duration::from_secs(60), clock.clone());
        assert!(w.hit("a") && w.hit("a"));
        assert!(w.exceeded("a"));
        assert!(!w.hit("a"));
        assert!(w.hit("b"));
        assert!(w.retry_after() <= 60);
        clock.advance(Duration::from_secs(61));
        assert!(!w.exceeded("a"));
        assert!(w.hit("a"));
    }
}
