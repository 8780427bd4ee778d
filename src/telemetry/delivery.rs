//! One signal's deliveries to the collector: a batch POSTed with retries while the collector may
//! take it later, and what was sent and lost counted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Records one signal's exporter sent and lost (queue full, collector refusing or away).
#[derive(Debug, Default)]
pub struct SignalStats {
    pub exported: AtomicU64,
    pub dropped: AtomicU64,
}

impl SignalStats {
    pub(super) fn dropped(&self, n: usize) {
        self.dropped.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(super) fn exported(&self, n: usize) {
        self.exported.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// Tries per batch: a collector away for longer loses the batch (counted), not the queue's room.
const ATTEMPTS: u32 = 3;
const FIRST_BACKOFF: Duration = Duration::from_millis(200);

/// Whether a failed POST may succeed later (OTLP/HTTP: 429, 502, 503, 504, or no answer at all).
pub(super) fn retryable(status: Option<u16>) -> bool {
    status.is_none_or(|s| matches!(s, 429 | 502 | 503 | 504))
}

/// Where one signal's batches go, and its counts.
pub(super) struct Signal {
    pub url: url::Url,
    pub stats: Arc<SignalStats>,
}

impl Signal {
    /// Counts a batch of `n` records sent or lost; says once per outage that batches are lost.
    pub(super) fn outcome(&self, sent: Result<(), String>, n: usize, failing: &mut bool) {
        match sent {
            Ok(()) => {
                self.stats.exported(n);
                if std::mem::take(failing) {
                    tracing::info!(url = %self.url, "the OTLP collector takes batches again");
                }
            }
            Err(problem) => {
                self.stats.dropped(n);
                // once per outage: the drops are counted in the metrics
                if !std::mem::replace(failing, true) {
                    tracing::warn!(url = %self.url, problem = %problem, "the OTLP collector does not take batches; they are dropped and counted");
                }
            }
        }
    }
}

/// POSTs one batch, tried again while the collector may take it later and the gateway is not
/// `closing`.
pub(super) async fn deliver(
    client: &reqwest::Client,
    url: &url::Url,
    body: Vec<u8>,
    closing: &dyn Fn() -> bool,
) -> Result<(), String> {
    let body = bytes::Bytes::from(body);
    let mut backoff = FIRST_BACKOFF;
    let mut attempt = 1;
    loop {
        let sent = client
            .post(url.clone())
            .header(http::header::CONTENT_TYPE, "application/x-protobuf")
            .body(body.clone())
            .send()
            .await;
        let (status, problem) = match sent {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) => (Some(r.status().as_u16()), format!("status {}", r.status())),
            Err(e) => (None, e.without_url().to_string()),
        };
        // a closing gateway does not wait for a collector that is away
        if !retryable(status) || attempt == ATTEMPTS || closing() {
            return Err(problem);
        }
        tokio::time::sleep(backoff).await;
        backoff *= 2;
        attempt += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_throttling_unavailability_and_no_answer_are_retried() {
        for s in [None, Some(429), Some(502), Some(503), Some(504)] {
            assert!(retryable(s), "{s:?}");
        }
        for s in [400, 401, 404, 413, 500] {
            assert!(!retryable(Some(s)), "{s}");
        }
    }
}
