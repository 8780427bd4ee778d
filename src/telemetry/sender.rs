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
    let mut looked = tokio::time::Instant::now();
    let until = looked + flush;
    loop {
        let before = batch.len();
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
        let wait = next_look(now - looked, batch.len() - before, rx.max_capacity());
        looked = now;
        tokio::time::sleep_until(until.min(now + wait)).await;
    }
}

/// How long to leave a filling queue: `LOOK_EVERY`, or less when `arrived` records in `since`
/// say a quarter of its `capacity` would fill sooner (a small queue under heavy traffic would
/// otherwise overflow while the sender waits), but never under a millisecond.
pub(crate) fn next_look(since: Duration, arrived: usize, capacity: usize) -> Duration {
    let room = (capacity / 4).max(1);
    let soon = match arrived {
        0 => LOOK_EVERY,
        n => since.mul_f64(room as f64 / n as f64),
    };
    soon.clamp(Duration::from_millis(1), LOOK_EVERY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_filling_fast_is_looked_at_sooner() {
        let ms = Duration::from_millis;
        // quiet: the usual interval
        assert_eq!(next_look(ms(20), 0, 10_000), LOOK_EVERY);
        assert_eq!(next_look(ms(20), 100, 10_000), LOOK_EVERY);
        // 600 records in 20 ms into a queue of 512: a quarter (128) fills in about 4 ms
        let soon = next_look(ms(20), 600, 512);
        assert!(soon > ms(4) && soon < ms(5), "{soon:?}");
        // never a busy loop
        assert_eq!(next_look(ms(20), 1_000_000, 4), ms(1));
    }

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
