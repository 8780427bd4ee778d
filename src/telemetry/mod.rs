//! OpenTelemetry traces (and audit events as OTLP logs): which requests are traced, the spans they
//! record, and their export to an OTLP/HTTP collector off the request workers.

pub mod current;
mod delivery;
mod export;
pub mod otlp;
pub mod request;
pub mod sampler;
pub mod sender;
pub mod span;
pub mod span_buffer;
mod span_export;
pub mod span_wire;
pub mod traceparent;

pub use current::Parent;
pub use sampler::SpanIds;
pub use span::{Key, LogRecord, SpanKind, SpanRecord, Value};
pub use traceparent::TraceParent;

use crate::clock::SharedClock;
use crate::config::TelemetrySettings;
use crate::observe::metrics::Sample;
use delivery::SignalStats;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use tokio::sync::mpsc::Sender;

struct Inner {
    sampler: sampler::Sampler,
    clock: SharedClock,
    spans: Arc<span_buffer::SpanBuffers>,
    logs: Sender<LogRecord>,
    /// traces, then logs
    stats: [Arc<SignalStats>; 2],
    /// each claim spans may carry, with its attribute key (`gatehouse.claim.<name>`)
    span_claims: Vec<(String, span::Key)>,
    exporter: Option<JoinHandle<()>>,
}

/// The telemetry handle, cloned into everything that traces. Without an OTLP endpoint it holds
/// nothing, and every call is one branch.
#[derive(Clone, Default)]
pub struct Telemetry(Option<Arc<Inner>>);

impl Telemetry {
    /// Starts the exporter's thread when `[telemetry]` names an endpoint. Start-up only.
    pub fn start(
        settings: Option<&TelemetrySettings>,
        clock: SharedClock,
    ) -> std::io::Result<Telemetry> {
        let Some(s) = settings else {
            return Ok(Telemetry(None));
        };
        let spans = Arc::new(span_buffer::SpanBuffers::new(s.queue));
        let (logs, log_rx) = tokio::sync::mpsc::channel(s.queue);
        let stats = [Arc::default(), Arc::default()];
        let queues = export::Queues {
            spans: spans.clone(),
            logs: log_rx,
        };
        let exporter = export::spawn(s, queues, stats.clone())?;
        Ok(Telemetry(Some(Arc::new(Inner {
            sampler: sampler::Sampler::new(s.sample_ratio),
            clock,
            spans,
            logs,
            stats,
            span_claims: (s.span_claims.iter())
                .map(|c| (c.clone(), format!("gatehouse.claim.{c}").into()))
                .collect(),
            exporter: Some(exporter),
        }))))
    }

    pub fn enabled(&self) -> bool {
        self.0.is_some()
    }

    /// Whether this request is traced, and its ids when it is: `traceparent` is the caller's
    /// header, read strictly (a malformed one counts as none).
    pub fn sample(&self, traceparent: Option<&[u8]>) -> Option<SpanIds> {
        let inner = self.0.as_ref()?;
        let incoming = traceparent.and_then(TraceParent::parse);
        inner
            .sampler
            .decide(incoming, sampler::fast_draw, sampler::span_ids)
    }

    /// Nanoseconds since the Unix epoch, by the gateway's clock.
    pub fn now_ns(&self) -> u64 {
        self.0
            .as_ref()
            .map_or(0, |i| i.clock.now().as_nanos() as u64)
    }

    /// The claims spans may carry and their attribute keys (`[telemetry] span_claims`).
    pub fn span_claims(&self) -> &[(String, span::Key)] {
        self.0.as_ref().map_or(&[], |i| &i.span_claims)
    }

    /// Queues a finished span without waiting; a full queue drops it and counts.
    pub fn record(&self, span: SpanRecord) {
        if let Some(inner) = &self.0 {
            if !inner.spans.push(&span) {
                inner.stats[0].dropped(1);
            }
        }
    }

    /// Queues a log record without waiting; false (and counted) when the queue is full.
    pub fn log(&self, record: LogRecord) -> bool {
        let Some(inner) = &self.0 else {
            return false;
        };
        let taken = inner.logs.try_send(record).is_ok();
        if !taken {
            inner.stats[1].dropped(1);
        }
        taken
    }

    /// Log records the collector took, and log records lost: the audit stream's `otlp` sink.
    pub fn log_counts(&self) -> (u64, u64) {
        self.0.as_ref().map_or((0, 0), |i| {
            let s = &i.stats[1];
            (
                s.exported.load(Ordering::Relaxed),
                s.dropped.load(Ordering::Relaxed),
            )
        })
    }

    /// Per signal: records the collector took and records lost, for the admin metrics.
    pub fn samples(&self) -> Vec<Sample> {
        let Some(inner) = &self.0 else {
            return vec![];
        };
        let mut out = Vec::new();
        for (signal, s) in ["traces", "logs"].into_iter().zip(&inner.stats) {
            for (family, n) in [
                ("gatehouse_otlp_exported_total", &s.exported),
                ("gatehouse_otlp_dropped_total", &s.dropped),
            ] {
                let labels = vec![("signal", signal.to_string())];
                out.push(Sample::labelled(family, labels, n.load(Ordering::Relaxed)));
            }
        }
        out
    }

    /// Closes the queues and waits for the exporter to send what they hold: for a command that
    /// records and exits. Another clone still open keeps the queues open: then nothing is waited for.
    pub fn close(self) {
        let Some(Ok(mut inner)) = self.0.map(Arc::try_unwrap) else {
            return;
        };
        let exporter = inner.exporter.take();
        drop(inner);
        if let Some(e) = exporter {
            let _ = e.join();
        }
    }
}

impl Drop for Inner {
    /// The last handle gone: the exporter sends what the buffers and the log queue hold, then
    /// stops (the log queue closes with its sender).
    fn drop(&mut self) {
        self.spans.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disabled_telemetry_samples_nothing_and_records_nothing() {
        let t = Telemetry::default();
        assert!(!t.enabled());
        let sampled = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(t.sample(Some(sampled)), None);
        assert!(!t.log(LogRecord {
            time_ns: 0,
            trace_id: None,
            event_name: String::new(),
            body: Arc::from(""),
        }));
        assert!(t.samples().is_empty() && t.span_claims().is_empty());
    }
}
