//! What each audit sink counts: events written and events dropped, read by the metrics.

use std::sync::atomic::{AtomicU64, Ordering};

/// Events a sink took and events it lost (queue full, write refused, collector refusing).
#[derive(Debug, Default)]
pub struct SinkStats {
    pub written: AtomicU64,
    pub dropped: AtomicU64,
}

impl SinkStats {
    pub(super) fn wrote(&self, n: usize) {
        self.written.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(super) fn dropped(&self, n: usize) {
        self.dropped.fetch_add(n as u64, Ordering::Relaxed);
    }
}
