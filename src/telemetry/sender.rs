//! What the background senders (the OTLP exporter, the audit stream's HTTP sink) share: an HTTP
//! client and a runtime of their own, and batches gathered from a bounded queue.

use std::time::Duration;
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::mpsc::Receiver;

/// A client that waits at most `timeout` and follows no redirect, and a single-threaded runtime
/// to drive it on the sender's own thread. Start-up only.
pub(crate) fn http_sender(
    timeout: Duration,
) -> std::io::Result<(reqwest::Client, tokio::runtime::Runtime)> {
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(std::io::Error::other)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok((client, runtime))
}

/// How often a batch that is filling is looked at. The sender sleeps between looks instead of
/// waiting on the queue: a receiver waiting on the queue is woken by every record, a system call on
/// the request's worker and a context switch here, which cost more than the record itself.
const LOOK_EVERY: Duration = Duration::from_millis(20);

/// Waits for a record, then gathers more into `batch` until it holds `size` or `flush` has passed
/// since the first. False when the queue has closed: what `batch` holds then is the last of it.
pub(crate) async fn gather<T>(
    rx: &mut Receiver<T>,
    batch: &mut Vec<T>,
    size: usize,
    flush: Duration,
) -> bool {
    // the one wake per batch: the queue was empty, and its first record ends the wait
    let Some(first) = rx.recv().await else {
        return false;
    };
    batch.push(first);
    let until = tokio::time::Instant::now() + flush;
    loop {
        while batch.len() < size {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return false,
            }
        }
        let now = tokio::time::Instant::now();
        if batch.len() >= size || now >= until {
            return true;
        }
        tokio::time::sleep_until(until.min(now + LOOK_EVERY)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_batch_ends_at_its_size_its_interval_or_the_queue_closing() {
        let (tx, mut rx) = tokio::sync::mpsc::channel(10);
        let mut batch = Vec::new();
        for i in 0..3 {
            tx.send(i).await.unwrap();
        }
        assert!(gather(&mut rx, &mut batch, 2, Duration::from_secs(60)).await);
        assert_eq!(batch, [0, 1], "full at its size");
        batch.clear();
        assert!(gather(&mut rx, &mut batch, 2, Duration::from_millis(10)).await);
        assert_eq!(batch, [2], "sent when the interval passed");
        batch.clear();
        tx.send(3).await.unwrap();
        drop(tx);
        assert!(!gather(&mut rx, &mut batch, 2, Duration::from_secs(60)).await);
        assert_eq!(batch, [3], "the last records of a closed queue");
        batch.clear();
        assert!(!gather(&mut rx, &mut batch, 2, Duration::from_secs(60)).await);
        assert!(batch.is_empty());
    }
}
