//! The OTLP exporter: spans and log records from bounded queues, batched and POSTed as protobuf on
//! a thread of its own, off the request workers. A slow or dead collector fills the queues, and
//! past their bound new records are dropped and counted; a batch it cannot take is dropped after a
//! few tries rather than held.

use super::delivery::{deliver, Signal, SignalStats};
use super::otlp;
use super::span::LogRecord;
use super::span_buffer::SpanBuffers;
use super::span_wire::Envelope;
use crate::config::TelemetrySettings;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::mpsc::Receiver;

pub(super) struct Queues {
    pub spans: Arc<SpanBuffers>,
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
        url: settings.traces_url.clone(),
        stats: span_stats,
    };
    let logs = Signal {
        url: settings.logs_url.clone(),
        stats: log_stats,
    };
    let batching = (settings.batch_size, settings.flush_interval);
    std::thread::Builder::new()
        .name("gatehouse-otlp".into())
        .spawn(move || {
            runtime.block_on(async {
                let one =
                    super::span_export::run(&queues.spans, &spans, &client, &envelope, batching);
                let other = run_logs(queues.logs, &logs, &client, &envelope, batching);
                tokio::join!(one, other);
            })
        })
}

async fn run_logs(
    mut rx: Receiver<LogRecord>,
    signal: &Signal,
    client: &reqwest::Client,
    envelope: &Envelope,
    (batch_size, flush_interval): (usize, Duration),
) {
    let mut batch = Vec::with_capacity(batch_size);
    let mut failing = false;
    loop {
        let open = super::sender::gather(&mut rx, &mut batch, batch_size, flush_interval);
        let open = open.await;
        if batch.is_empty() {
            return;
        }
        let body = otlp::logs(envelope, &batch);
        let sent = deliver(client, &signal.url, body, &|| rx.is_closed()).await;
        signal.outcome(sent, batch.len(), &mut failing);
        batch.clear();
        if !open {
            return;
        }
    }
}
