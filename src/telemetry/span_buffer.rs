//! The spans waiting for export, held as their protobuf: each thread writes a finished span into a
//! buffer of its own, and the exporter takes the buffers whole. No record crosses threads to be
//! freed there, and only the span that finds nothing waiting wakes the exporter.

use super::span::SpanRecord;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Buffers; threads beyond this many share them.
const SHARDS: usize = 8;
/// Spans a buffer reserves from the shared bound at a time: the bound is touched once per this
/// many spans, not once per span.
const CREDIT: usize = 64;

/// One thread's spans, encoded, and its reserved room.
#[derive(Default)]
struct Held {
    bytes: Vec<u8>,
    spans: usize,
    /// spans it may still add before reserving more
    credit: usize,
}

/// A buffer on a cache line of its own, so two workers' writes do not contend for one line.
#[repr(align(128))]
#[derive(Default)]
struct Shard(Mutex<Held>);

impl Shard {
    fn lock(&self) -> MutexGuard<'_, Held> {
        // a span is plain bytes: a thread that panicked while holding them leaves nothing torn
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static SHARD: usize = NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % SHARDS;
}

/// Every thread's spans, bounded as one queue.
pub struct SpanBuffers {
    shards: [Shard; SHARDS],
    bound: usize,
    /// room left under the bound, not yet reserved by any buffer
    room: AtomicUsize,
    /// spans were added since the exporter last looked
    pending: AtomicBool,
    closed: AtomicBool,
    wake: tokio::sync::Notify,
}

impl SpanBuffers {
    /// Buffers holding at most `bound` spans in all.
    pub fn new(bound: usize) -> SpanBuffers {
        SpanBuffers {
            shards: Default::default(),
            bound,
            room: AtomicUsize::new(bound),
            pending: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            wake: tokio::sync::Notify::new(),
        }
    }

    /// The most spans held at once.
    pub fn bound(&self) -> usize {
        self.bound
    }

    /// Adds a finished span; false when the bound is reached (the span is dropped).
    pub fn push(&self, r: &SpanRecord) -> bool {
        let i = SHARD.try_with(|i| *i).unwrap_or(0);
        let Some(shard) = self.shards.get(i) else {
            return false;
        };
        let mut held = shard.lock();
        if held.credit == 0 {
            held.credit = self.reserve();
            if held.credit == 0 {
                return false;
            }
        }
        held.credit -= 1;
        held.spans += 1;
        super::span_wire::push_span(r, &mut held.bytes);
        drop(held);
        // read first: while the exporter has not looked, the flag stays set and costs no write
        if !self.pending.load(Ordering::Relaxed) && !self.pending.swap(true, Ordering::AcqRel) {
            self.wake.notify_one();
        }
        true
    }

    /// Up to `CREDIT` spans of room from the shared bound.
    fn reserve(&self) -> usize {
        let mut got = 0;
        let _ = (self.room).fetch_update(Ordering::AcqRel, Ordering::Acquire, |room| {
            got = room.min(CREDIT);
            Some(room - got)
        });
        got
    }

    /// Moves every buffered span to the end of `records`, returning how many; `spare` is an empty
    /// buffer handed to a shard in exchange for its full one, so no copy is made under its lock.
    pub fn take(&self, records: &mut Vec<u8>, spare: &mut Vec<u8>) -> usize {
        let mut taken = 0;
        for shard in &self.shards {
            let mut held = shard.lock();
            if held.spans == 0 && held.credit == 0 {
                continue;
            }
            std::mem::swap(&mut held.bytes, spare);
            let (spans, credit) = (held.spans, held.credit);
            (held.spans, held.credit) = (0, 0);
            drop(held);
            self.room.fetch_add(spans + credit, Ordering::AcqRel);
            records.extend_from_slice(spare);
            spare.clear();
            taken += spans;
        }
        taken
    }

    /// Waits until a span was added since the last look (true) or the buffers are closed (false).
    pub async fn wait(&self) -> bool {
        loop {
            if self.closed.load(Ordering::Acquire) {
                return false;
            }
            if self.pending.swap(false, Ordering::AcqRel) {
                return true;
            }
            self.wake.notified().await;
        }
    }

    /// Tells the exporter to send what is held and stop.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.wake.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::{SpanKind, SpanRecord};
    use std::borrow::Cow;

    fn record(n: u8) -> SpanRecord {
        SpanRecord {
            trace_id: [n; 16],
            span_id: [n; 8],
            parent_span_id: None,
            name: Cow::Borrowed("GET"),
            kind: SpanKind::Server,
            start_ns: 1,
            end_ns: 2,
            error: false,
            attributes: vec![],
            text: String::new(),
        }
    }

    #[test]
    fn spans_past_the_bound_are_refused_until_the_exporter_takes_them() {
        let b = SpanBuffers::new(100);
        let kept: usize = std::thread::scope(|s| {
            let pushers: Vec<_> = (0..4)
                .map(|_| s.spawn(|| (0..150).filter(|_| b.push(&record(1))).count()))
                .collect();
            pushers.into_iter().map(|p| p.join().unwrap()).sum()
        });
        assert_eq!(kept, 100, "the bound holds across threads");
        let (mut records, mut spare) = (Vec::new(), Vec::new());
        assert_eq!(b.take(&mut records, &mut spare), 100);
        let (n, bytes) = crate::telemetry::span_wire::first_records(&records, usize::MAX);
        assert_eq!((n, bytes), (100, records.len()));
        // the room taken is given back, reserved or not
        assert!(b.push(&record(2)));
        assert_eq!(b.take(&mut Vec::new(), &mut spare), 1);
        let refill = (0..200).filter(|_| b.push(&record(3))).count();
        assert_eq!(refill, 100);
    }

    #[test]
    fn taken_records_are_the_spans_encoded() {
        let b = SpanBuffers::new(10);
        assert!(b.push(&record(7)) && b.push(&record(8)));
        let (mut records, mut spare) = (Vec::new(), Vec::new());
        assert_eq!(b.take(&mut records, &mut spare), 2);
        let mut expected = Vec::new();
        crate::telemetry::span_wire::push_span(&record(7), &mut expected);
        crate::telemetry::span_wire::push_span(&record(8), &mut expected);
        assert_eq!(records, expected);
        assert_eq!(b.take(&mut records, &mut spare), 0, "nothing twice");
    }

    #[tokio::test]
    async fn the_exporter_wakes_for_a_span_and_for_closing() {
        let b = std::sync::Arc::new(SpanBuffers::new(10));
        let waiter = tokio::spawn({
            let b = b.clone();
            async move { b.wait().await }
        });
        tokio::task::yield_now().await;
        assert!(b.push(&record(1)));
        assert!(waiter.await.unwrap(), "woken by the first span");
        b.close();
        assert!(!b.wait().await, "closed");
    }
}
