//! The OTLP exporter: spans and log records from bounded queues, batched and POSTed as protobuf on
//! a thread of its own, off the request workers. A slow or dead collector fills the queues, and
//! past their bound new records are dropped and counted; a batch it cannot take is dropped after a
//! few tries rather than held.

use super::otlp;
use super::span::{LogRecord, SpanRecord};
use super::span_wire::Envelope;
use crate::config::TelemetrySettings;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::mpsc::Receiver;

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

    fn exported(&self, n: usize) {
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

/// One signal's queue and where its batches go.
struct Signal<T> {
    rx: Receiver<T>,
    url: url::Url,
    stats: Arc<SignalStats>,
    encode: fn(&Envelope, &[T]) -> Vec<u8>,
}

pub(super) struct Queues {
    pub spans: Receiver<SpanRecord>,
    pub logs: Receiver<LogRecord>,
}

/// Starts the exporter's thread with a runtime of its own. Start-up only.
pub(super) fn spawn(
    settings: &TelemetrySettings,
    queues: Queues,
    stats: [Arc<SignalStats>; 2],
) -> std::io::Result<JoinHandle<()>> {
    let (client, runtime) = super::sender::http_sender(settings.timeout)?;
    let envelope = otlp::envelope(&settings.service_name, &settings.resource_attributes);
    let [span_stats, log_stats] = stats;
    let spans = Signal {
        rx: queues.spans,
        url: settings.traces_url.clone(),
        stats: span_stats,
        encode: super::span_wire::traces,
    };
    let logs = Signal {
        rx: queues.logs,
        url: settings.logs_url.clone(),
        stats: log_stats,
        encode: otlp::logs,
    };
    let batching = (settings.batch_size, settings.flush_interval);
    std::thread::Builder::new()
        .name("gatehouse-otlp".into())
        .spawn(move || {
            runtime.block_on(async {
                let one = run(spans, &client, &envelope, batching);
                let other = run(logs, &client, &envelope, batching);
                tokio::join!(one, other);
            })
        })
}

async fn run<T>(
    mut signal: Signal<T>,
    client: &reqwest::Client,
    envelope: &Envelope,
    (batch_size, flush_interval): (usize, Duration),
) {
    let mut batch: Vec<T> = Vec::with_capacity(batch_size);
    let mut failing = false;
    loop {
        let open = super::sender::gather(&mut signal.rx, &mut batch, batch_size, flush_interval);
        let open = open.await;
        if batch.is_empty() {
            return;
        }
        let body = (signal.encode)(envelope, &batch);
        match deliver(client, &signal.url, body, &signal.rx).await {
            Ok(()) => {
                signal.stats.exported(batch.len());
                if std::mem::take(&mut failing) {
                    tracing::info!(url = %signal.url, "the OTLP collector takes batches again");
                }
            }
            Err(problem) => {
                signal.stats.dropped(batch.len());
                // once per outage: the drops are counted in the metrics
                if !std::mem::replace(&mut failing, true) {
                    tracing::warn!(url = %signal.url, problem = %problem, "the OTLP collector does not take batches; they are dropped and counted");
                }
            }
        }
        batch.clear();
        if !open {
            return;
        }
    }
}

/// POSTs one batch, tried again while the collector may take it later.
async fn deliver<T>(
    client: &reqwest::Client,
    url: &url::Url,
    body: Vec<u8>,
    rx: &Receiver<T>,
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
        if !retryable(status) || attempt == ATTEMPTS || rx.is_closed() {
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
