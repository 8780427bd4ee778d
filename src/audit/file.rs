//! The audit file and stdout sinks: a writer thread takes JSON lines from a bounded queue; the file
//! is rotated by size (`<file>.1` … `<file>.<keep>`) and opened again on request.

use super::stats::SinkStats;
use crate::config::AuditFile;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long the writer waits for a line before it looks at the reopen request again.
const IDLE: Duration = Duration::from_millis(200);
/// How long the events after a first one are let gather before they are written together.
const GATHER: Duration = Duration::from_millis(20);

/// A JSON-lines file that starts again past `max_bytes`, keeping `keep` earlier ones.
pub struct RotatingFile {
    settings: AuditFile,
    out: Option<BufWriter<File>>,
    size: u64,
}

impl RotatingFile {
    /// Opens (or creates) the file for appending. Start-up: a file that cannot be opened is fatal.
    pub fn open(settings: AuditFile) -> std::io::Result<RotatingFile> {
        let mut f = RotatingFile {
            settings,
            out: None,
            size: 0,
        };
        f.open_again()?;
        Ok(f)
    }

    fn open_again(&mut self) -> std::io::Result<()> {
        if let Some(dir) = self.settings.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.settings.path)?;
        self.size = file.metadata()?.len();
        self.out = Some(BufWriter::new(file));
        Ok(())
    }

    /// `<file>.<n>`
    fn numbered(&self, n: u32) -> PathBuf {
        let mut p = self.settings.path.clone().into_os_string();
        p.push(format!(".{n}"));
        PathBuf::from(p)
    }

    /// Moves each kept file one number up (the oldest falls off), the current one to `.1`, and
    /// starts an empty file.
    fn rotate(&mut self) -> std::io::Result<()> {
        self.flush()?;
        self.out = None;
        for n in (1..self.settings.keep).rev() {
            match std::fs::rename(self.numbered(n), self.numbered(n + 1)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        std::fs::rename(&self.settings.path, self.numbered(1))?;
        self.open_again()
    }

    /// Appends one line, rotating first when it would pass the size limit. A file that could not
    /// be opened is tried again here, so a full disk or a removed folder heals on its own.
    pub fn write_line(&mut self, line: &[u8]) -> std::io::Result<()> {
        if self.out.is_none() {
            self.open_again()?;
        }
        let len = line.len() as u64 + 1;
        if self.size > 0 && self.size + len > self.settings.max_bytes {
            self.rotate()?;
        }
        let out = self.out.as_mut().ok_or(std::io::ErrorKind::NotFound)?;
        out.write_all(line)?;
        out.write_all(b"\n")?;
        self.size += len;
        Ok(())
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        match self.out.as_mut() {
            Some(o) => o.flush(),
            None => Ok(()),
        }
    }

    /// Opens the path again: whoever moved the file away keeps it, new lines go to a new file.
    pub fn reopen(&mut self) -> std::io::Result<()> {
        let _ = self.flush();
        self.out = None;
        self.open_again()
    }
}

/// Where a line writer writes.
pub enum Output {
    File(RotatingFile),
    Stdout,
}

impl Output {
    fn write_line(&mut self, line: &[u8]) -> std::io::Result<()> {
        match self {
            Output::File(f) => f.write_line(line),
            Output::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(line)?;
                out.write_all(b"\n")
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Output::File(f) => f.flush(),
            Output::Stdout => std::io::stdout().flush(),
        }
    }
}

/// What the stream tells its writers: open the file again; stop letting events gather, the
/// stream is closing.
pub struct Signals {
    pub reopen: AtomicBool,
    closing: Mutex<bool>,
    closed: Condvar,
    /// the writers' queues' size, which the time events gather for must not overflow
    queue: usize,
}

impl Signals {
    pub fn new(queue: usize) -> Signals {
        Signals {
            reopen: AtomicBool::new(false),
            closing: Mutex::new(false),
            closed: Condvar::new(),
            queue,
        }
    }

    pub fn close(&self) {
        *self.closing.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.closed.notify_all();
    }

    /// Waits `d`, or less when the stream closes meanwhile.
    fn wait(&self, d: Duration) {
        let closing = self.closing.lock().unwrap_or_else(|e| e.into_inner());
        let _ = self
            .closed
            .wait_timeout_while(closing, d, |closing| !*closing);
    }
}

/// Starts the writer thread: it writes what the queue holds, flushes when it is empty, and ends
/// when every sender is gone. Start-up only: a thread that cannot start is fatal.
pub fn spawn(
    out: Output,
    rx: Receiver<Arc<str>>,
    stats: Arc<SinkStats>,
    signals: Arc<Signals>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("gatehouse-audit".into())
        .spawn(move || run(out, &rx, &stats, &signals))
}

fn run(mut out: Output, rx: &Receiver<Arc<str>>, stats: &SinkStats, signals: &Signals) {
    let write = |out: &mut Output, line: &str| match out.write_line(line.as_bytes()) {
        Ok(()) => stats.wrote(1),
        Err(e) => {
            stats.dropped(1);
            tracing::warn!(error = %e, "an audit event could not be written");
        }
    };
    // how long the last batch took to arrive, and how many events it held
    let (mut woke, mut arrived) = (std::time::Instant::now(), 0usize);
    loop {
        let next = rx.recv_timeout(IDLE);
        if next.is_ok() {
            // the events that follow the first gather while this thread waits off the queue: a
            // thread waiting on the queue is woken by each one, which costs the request that emits
            // it a system call and this thread a context switch. Less long when the last batch
            // says a quarter of the queue would fill sooner.
            let since = woke.elapsed();
            signals.wait(
                crate::telemetry::sender::next_look(since, arrived, signals.queue).min(GATHER),
            );
            woke = std::time::Instant::now();
            arrived = 0;
        }
        // before writing: an event emitted after the request (a reload's own) goes to the new file
        if signals.reopen.swap(false, Ordering::SeqCst) {
            if let Output::File(f) = &mut out {
                if let Err(e) = f.reopen() {
                    tracing::warn!(error = %e, "the audit file could not be opened again");
                }
            }
        }
        match next {
            Ok(line) => {
                write(&mut out, &line);
                arrived += 1;
                while let Ok(line) = rx.try_recv() {
                    write(&mut out, &line);
                    arrived += 1;
                }
                let _ = out.flush();
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                let _ = out.flush();
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(dir: &std::path::Path, max_bytes: u64, keep: u32) -> RotatingFile {
        RotatingFile::open(AuditFile {
            path: dir.join("a.jsonl"),
            max_bytes,
            keep,
        })
        .unwrap()
    }

    fn read(dir: &std::path::Path, name: &str) -> String {
        std::fs::read_to_string(dir.join(name)).unwrap_or_default()
    }

    #[test]
    fn a_line_that_would_pass_the_limit_starts_a_new_file_and_old_ones_move_up() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = file(dir.path(), 20, 2);
        for l in [
            "aaaaaaaaa",
            "bbbbbbbbb",
            "ccccccccc",
            "ddddddddd",
            "eeeeeeeee",
        ] {
            f.write_line(l.as_bytes()).unwrap();
        }
        f.flush().unwrap();
        // ten bytes a line: two lines a file; the oldest beyond `keep` is gone
        assert_eq!(read(dir.path(), "a.jsonl"), "eeeeeeeee\n");
        assert_eq!(read(dir.path(), "a.jsonl.1"), "ccccccccc\nddddddddd\n");
        assert_eq!(read(dir.path(), "a.jsonl.2"), "aaaaaaaaa\nbbbbbbbbb\n");
        assert!(!dir.path().join("a.jsonl.3").exists());
    }

    #[test]
    fn a_line_longer_than_the_limit_is_written_whole_in_a_file_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = file(dir.path(), 8, 3);
        f.write_line(b"0123456789abc").unwrap();
        f.write_line(b"x").unwrap();
        f.flush().unwrap();
        assert_eq!(read(dir.path(), "a.jsonl.1"), "0123456789abc\n");
        assert_eq!(read(dir.path(), "a.jsonl"), "x\n");
    }

    #[test]
    fn the_size_of_an_existing_file_counts_and_reopen_follows_a_rename() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.jsonl"), "123456789012345\n").unwrap();
        let mut f = file(dir.path(), 20, 1);
        f.write_line(b"next").unwrap();
        f.flush().unwrap();
        assert_eq!(read(dir.path(), "a.jsonl"), "next\n");
        std::fs::rename(dir.path().join("a.jsonl"), dir.path().join("moved")).unwrap();
        f.reopen().unwrap();
        f.write_line(b"after").unwrap();
        f.flush().unwrap();
        assert_eq!(read(dir.path(), "a.jsonl"), "after\n");
        assert_eq!(read(dir.path(), "moved"), "next\n");
    }
}
