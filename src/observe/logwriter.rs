//! The log's batching writer: request threads append lines to one buffer, a background thread writes it out.
//!
//! A write system call per line (and a writer thread that wakes, spins and parks for each one) cost
//! more than the request it records. Here a line costs one short lock and a copy; the writer thread
//! wakes once per batch, waits a few milliseconds for the batch to fill, and writes it in one call.
//! Nothing is dropped: above `BACKLOG_LIMIT` a request thread waits for the writer (back-pressure on
//! a blocked stdout, as a bounded channel would give).

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long the writer lets a batch fill after its first line: short enough for `tail -f`.
const BATCH_WINDOW: Duration = Duration::from_millis(20);
/// A backlog at which appenders wait for the writer instead of growing the buffer further.
const BACKLOG_LIMIT: usize = 16 << 20;

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    /// signalled when the buffer gains its first line, or on shutdown
    filled: Condvar,
    /// signalled after each write, for appenders waiting on a full backlog
    drained: Condvar,
}

#[derive(Default)]
struct State {
    buf: Vec<u8>,
    closing: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves only bytes behind: keep logging.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn append(&self, line: &[u8]) {
        let mut s = self.lock();
        while s.buf.len() >= BACKLOG_LIMIT && !s.closing {
            s = self.drained.wait(s).unwrap_or_else(|e| e.into_inner());
        }
        let first = s.buf.is_empty();
        s.buf.extend_from_slice(line);
        drop(s);
        if first {
            self.filled.notify_one();
        }
    }
}

/// A cloneable handle that appends whole lines to the batch; the tracing subscriber's writer too.
#[derive(Clone)]
pub struct LogWriter(Arc<Shared>);

impl LogWriter {
    /// Appends one or more complete lines.
    pub fn append(&self, line: &[u8]) {
        self.0.append(line);
    }
}

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.append(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Writes what is left and stops the writer thread when dropped (keep it until exit).
pub struct FlushGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for FlushGuard {
    fn drop(&mut self) {
        self.shared.lock().closing = true;
        self.shared.filled.notify_all();
        self.shared.drained.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts the writer thread over `out`. Start-up only: a thread that cannot start is fatal.
pub fn spawn<W: Write + Send + 'static>(out: W) -> std::io::Result<(LogWriter, FlushGuard)> {
    let shared = Arc::new(Shared::default());
    let for_thread = shared.clone();
    let thread = std::thread::Builder::new()
        .name("gatehouse-log".into())
        .spawn(move || run(&for_thread, out))?;
    Ok((
        LogWriter(shared.clone()),
        FlushGuard {
            shared,
            thread: Some(thread),
        },
    ))
}

fn run<W: Write>(shared: &Shared, mut out: W) {
    let mut spare = Vec::new();
    loop {
        let mut s = shared.lock();
        while s.buf.is_empty() && !s.closing {
            s = shared.filled.wait(s).unwrap_or_else(|e| e.into_inner());
        }
        if s.buf.is_empty() {
            return; // closing, and everything is written
        }
        // Let the batch fill; appenders only ever hold the lock for a copy, and wake this wait
        // only when the buffer was empty or the writer is closing, which cuts it short.
        let until = std::time::Instant::now() + BATCH_WINDOW;
        while !s.closing {
            let left = until.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break;
            }
            s = match shared.filled.wait_timeout(s, left) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
        std::mem::swap(&mut s.buf, &mut spare);
        drop(s);
        shared.drained.notify_all();
        // A log that cannot be written has nowhere to report to; the bytes are dropped, not retried.
        let _ = out.write_all(&spare).and_then(|_| out.flush());
        spare.clear();
        // Keep a large buffer from a burst only while it is needed.
        if spare.capacity() > 1 << 20 {
            spare = Vec::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<(Vec<u8>, usize)>>);
    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let mut g = self.0.lock().unwrap();
            g.0.extend_from_slice(buf);
            g.1 += 1;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_from_many_threads_arrive_whole_in_few_writes() {
        let sink = Sink::default();
        let (w, guard) = spawn(sink.clone()).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let w = w.clone();
                std::thread::spawn(move || {
                    for i in 0..1000 {
                        w.append(format!("thread {t} line {i}\n").as_bytes());
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        drop(guard);
        let (bytes, writes) = sink.0.lock().unwrap().clone();
        let text = String::from_utf8(bytes).unwrap();
        assert_eq!(text.lines().count(), 4000);
        for t in 0..4 {
            let mine: Vec<_> = text
                .lines()
                .filter(|l| l.starts_with(&format!("thread {t} ")))
                .collect();
            assert_eq!(mine.len(), 1000);
            assert_eq!(mine[999], format!("thread {t} line 999"));
        }
        assert!(writes < 100, "{writes} writes for 4000 lines");
    }

    #[test]
    #[allow(clippy::disallowed_methods)] // the writer thread writes: polling the sink is the test
    fn a_line_is_written_without_more_traffic_and_the_guard_flushes() {
        let sink = Sink::default();
        let (mut w, guard) = spawn(sink.clone()).unwrap();
        w.write_all(b"alone\n").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while sink.0.lock().unwrap().0.is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(sink.0.lock().unwrap().0, b"alone\n");
        w.append(b"last\n");
        drop(guard);
        assert_eq!(sink.0.lock().unwrap().0, b"alone\nlast\n");
    }
}
