//! The HTTP audit sink: events from a bounded queue POSTed as JSON arrays in batches, retried with
//! backoff while the collector is down. It runs on a thread of its own, off the request workers;
//! while it waits the queue fills, and past its bound new events are dropped and counted.

use super::stats::SinkStats;
use crate::config::AuditHttp;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::mpsc::Receiver;

/// The first wait after a failed POST; it doubles up to `http_max_backoff`.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// A batch as the collector receives it: a JSON array of the events, in order.
pub(super) fn body(batch: &[Arc<str>]) -> String {
    let mut out = String::with_capacity(batch.iter().map(|l| l.len() + 1).sum::<usize>() + 2);
    out.push('[');
    for (i, line) in batch.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(line);
    }
    out.push(']');
    out
}

/// Whether a collector's answer means the batch will never be taken: a client error other than
/// a timeout or a rate limit. Those batches are dropped (and counted), not retried forever.
pub(super) fn permanent(status: u16) -> bool {
    (400..500).contains(&status) && status != 408 && status != 429
}

pub(super) fn next_backoff(now: Duration, max: Duration) -> Duration {
    (now * 2).min(max)
}

/// Starts the sender's thread with a runtime of its own. Start-up only.
pub fn spawn(
    settings: AuditHttp,
    rx: Receiver<Arc<str>>,
    stats: Arc<SinkStats>,
) -> std::io::Result<JoinHandle<()>> {
    let (client, runtime) = crate::telemetry::sender::http_sender(settings.timeout)?;
    std::thread::Builder::new()
        .name("gatehouse-audit-http".into())
        .spawn(move || runtime.block_on(run(settings, client, rx, stats)))
}

async fn run(
    settings: AuditHttp,
    client: reqwest::Client,
    mut rx: Receiver<Arc<str>>,
    stats: Arc<SinkStats>,
) {
    let mut batch: Vec<Arc<str>> = Vec::with_capacity(settings.batch_size);
    loop {
        let (size, flush) = (settings.batch_size, settings.flush_interval);
        let open = crate::telemetry::sender::gather(&mut rx, &mut batch, size, flush).await;
        if batch.is_empty() {
            return;
        }
        deliver(&settings, &client, &batch, &stats, &rx).await;
        batch.clear();
        if !open {
            return;
        }
    }
}

/// POSTs one batch until the collector takes it, refuses it for good, or the gateway closes the
/// queue (a command that exits does not wait on a dead collector).
async fn deliver(
    settings: &AuditHttp,
    client: &reqwest::Client,
    batch: &[Arc<str>],
    stats: &SinkStats,
    rx: &Receiver<Arc<str>>,
) {
    let body = body(batch);
    let mut backoff = FIRST_BACKOFF;
    let mut warned = false;
    loop {
        let mut req = client
            .post(settings.endpoint.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body.clone());
        if let Some((name, value)) = &settings.credential {
            req = req.header(name.clone(), value.0.as_str());
        }
        let problem = match req.send().await {
            Ok(r) if r.status().is_success() => {
                stats.wrote(batch.len());
                return;
            }
            Ok(r) if permanent(r.status().as_u16()) => {
                stats.dropped(batch.len());
                tracing::warn!(
                    status = r.status().as_u16(),
                    events = batch.len(),
                    "the audit collector refused a batch; it is dropped"
                );
                return;
            }
            Ok(r) => format!("status {}", r.status().as_u16()),
            Err(e) => e.without_url().to_string(),
        };
        if !warned {
            tracing::warn!(problem = %problem, "the audit collector is unavailable; retrying");
            warned = true;
        }
        if rx.is_closed() {
            stats.dropped(batch.len());
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = next_backoff(backoff, settings.max_backoff);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_one_json_array_of_the_events_in_order() {
        let batch: Vec<Arc<str>> = vec![Arc::from(r#"{"id":"1"}"#), Arc::from(r#"{"id":"2"}"#)];
        let v: serde_json::Value = serde_json::from_str(&body(&batch)).unwrap();
        assert_eq!(v, serde_json::json!([{"id": "1"}, {"id": "2"}]));
        assert_eq!(body(&[]), "[]");
    }

    #[test]
    fn client_errors_are_final_but_timeouts_rate_limits_and_server_errors_are_retried() {
        assert!(permanent(400) && permanent(401) && permanent(413));
        assert!(!permanent(408) && !permanent(429) && !permanent(500) && !permanent(503));
        assert!(!permanent(200));
    }

    #[test]
    fn the_backoff_doubles_up_to_its_bound() {
        let max = Duration::from_secs(1);
        let mut b = FIRST_BACKOFF;
        let mut seen = vec![];
        for _ in 0..6 {
            b = next_backoff(b, max);
            seen.push(b.as_millis());
        }
        assert_eq!(seen, [200, 400, 800, 1000, 1000, 1000]);
    }
}
