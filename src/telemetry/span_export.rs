//! The exporter's loop for spans: wait for the first span, let a batch gather from the buffers,
//! then POST it in pieces of at most `batch_size` spans.

use super::delivery::{deliver, Signal};
use super::span_buffer::SpanBuffers;
use super::span_wire::{first_records, wrap, Envelope};
use std::time::Duration;

/// Runs until the buffers are closed, then sends what they hold and returns.
pub(super) async fn run(
    buffers: &SpanBuffers,
    signal: &Signal,
    client: &reqwest::Client,
    envelope: &Envelope,
    (batch_size, flush_interval): (usize, Duration),
) {
    let (mut records, mut spare) = (Vec::new(), Vec::new());
    let mut failing = false;
    loop {
        let open = buffers.wait().await;
        let mut spans = buffers.take(&mut records, &mut spare);
        if open && spans > 0 {
            spans += gather(
                buffers,
                &mut records,
                &mut spare,
                spans,
                batch_size,
                flush_interval,
            )
            .await;
        }
        let mut rest = records.as_slice();
        while spans > 0 {
            let (n, len) = first_records(rest, batch_size);
            if n == 0 {
                break;
            }
            let (batch, after) = rest.split_at(len);
            let sent = deliver(client, &signal.url, wrap(envelope, batch), &|| !open).await;
            signal.outcome(sent, n, &mut failing);
            (rest, spans) = (after, spans - n);
        }
        records.clear();
        if !open {
            return;
        }
    }
}

/// Takes what more the buffers are given until `size` spans are in hand (counting the `had`
/// already taken) or `flush` has passed; returns how many more it took.
async fn gather(
    buffers: &SpanBuffers,
    records: &mut Vec<u8>,
    spare: &mut Vec<u8>,
    had: usize,
    size: usize,
    flush: Duration,
) -> usize {
    let mut looked = tokio::time::Instant::now();
    let until = looked + flush;
    let (mut total, mut arrived) = (had, had);
    loop {
        let now = tokio::time::Instant::now();
        if total >= size || now >= until {
            return total - had;
        }
        let wait = super::sender::next_look(now - looked, arrived, buffers.bound());
        looked = now;
        tokio::time::sleep_until(until.min(now + wait)).await;
        arrived = buffers.take(records, spare);
        total += arrived;
    }
}
