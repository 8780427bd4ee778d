//! The handle that emits audit events: it stamps each event (id, time), writes its JSON once and
//! offers it to every sink's bounded queue without waiting; a full queue drops and counts.

use super::event::{Event, Kind};
use super::stats::SinkStats;
use super::{file, http};
use crate::clock::SharedClock;
use crate::config::AuditSettings;
use crate::observe::metrics::Sample;
use crate::telemetry::{LogRecord, Telemetry};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;

/// Where one sink's events wait: the file and stdout writers are threads, the HTTP sender a task.
enum Queue {
    Lines(std::sync::mpsc::SyncSender<Arc<str>>),
    Batches(tokio::sync::mpsc::Sender<Arc<str>>),
    /// OTLP log records, sent by the telemetry exporter (which counts them)
    Otlp(Telemetry),
    /// the console's ring of the latest events
    Recent(Arc<super::recent::Recent>),
}

struct Sink {
    name: &'static str,
    queue: Queue,
    stats: Arc<SinkStats>,
}

impl Sink {
    fn offer(&self, line: &Arc<str>, record: impl FnOnce() -> LogRecord) {
        let taken = match &self.queue {
            Queue::Lines(tx) => tx.try_send(line.clone()).is_ok(),
            Queue::Batches(tx) => tx.try_send(line.clone()).is_ok(),
            // the exporter counts what it takes and what it drops
            Queue::Otlp(t) => {
                t.log(record());
                true
            }
            Queue::Recent(r) => {
                r.push(line.clone());
                self.stats.wrote(1);
                true
            }
        };
        if !taken {
            self.stats.dropped(1);
        }
    }
}

struct Inner {
    source: String,
    clock: SharedClock,
    /// allowed requests are kept when a random `u64` falls below this; 0 keeps none
    allow_below: u64,
    allow_all: bool,
    /// fixed at start: emitting takes no lock
    sinks: Vec<Sink>,
    stats: Vec<(&'static str, Arc<SinkStats>)>,
    /// asks the file writer to open its path again (after the file was moved away)
    signals: Arc<file::Signals>,
    writers: Vec<JoinHandle<()>>,
    /// where the `otlp` sink's counts are kept
    telemetry: Telemetry,
}

/// The audit stream. Cloned into everything that emits; without `[audit]` it holds nothing and
/// every call is one branch.
#[derive(Clone, Default)]
pub struct Audit(Option<Arc<Inner>>);

impl Audit {
    /// Starts the sinks `[audit]` names (their threads); none without it. Start-up only.
    pub fn start(
        settings: Option<&AuditSettings>,
        clock: SharedClock,
        telemetry: &Telemetry,
    ) -> std::io::Result<Audit> {
        Self::start_with(settings, clock, telemetry, None)
    }

    /// As `start`, and keeps the latest events in `recent` (the console's), with or without
    /// `[audit]`.
    pub fn start_with(
        settings: Option<&AuditSettings>,
        clock: SharedClock,
        telemetry: &Telemetry,
        recent: Option<Arc<super::recent::Recent>>,
    ) -> std::io::Result<Audit> {
        let console_only;
        let s = match (settings, &recent) {
            (Some(s), _) => s,
            (None, Some(_)) => {
                console_only = AuditSettings::console_only();
                &console_only
            }
            (None, None) => return Ok(Audit(None)),
        };
        let signals = Arc::new(file::Signals::new(s.queue));
        let (mut sinks, mut writers) = (Vec::new(), Vec::new());
        if let Some(f) = &s.file {
            let (tx, rx) = std::sync::mpsc::sync_channel(s.queue);
            let stats = Arc::new(SinkStats::default());
            let out = file::Output::File(file::RotatingFile::open(f.clone())?);
            writers.push(file::spawn(out, rx, stats.clone(), signals.clone())?);
            sinks.push(Sink {
                name: "file",
                queue: Queue::Lines(tx),
                stats,
            });
        }
        if s.stdout {
            let (tx, rx) = std::sync::mpsc::sync_channel(s.queue);
            let stats = Arc::new(SinkStats::default());
            writers.push(file::spawn(
                file::Output::Stdout,
                rx,
                stats.clone(),
                signals.clone(),
            )?);
            sinks.push(Sink {
                name: "stdout",
                queue: Queue::Lines(tx),
                stats,
            });
        }
        if let Some(h) = &s.http {
            let (tx, rx) = tokio::sync::mpsc::channel(h.queue);
            let stats = Arc::new(SinkStats::default());
            writers.push(http::spawn(h.clone(), rx, stats.clone())?);
            sinks.push(Sink {
                name: "http",
                queue: Queue::Batches(tx),
                stats,
            });
        }
        if let Some(r) = recent {
            sinks.push(Sink {
                name: "console",
                queue: Queue::Recent(r),
                stats: Arc::default(),
            });
        }
        // the configuration asks for `otlp` only with an endpoint, so telemetry is on here
        if s.otlp && telemetry.enabled() {
            sinks.push(Sink {
                name: "otlp",
                queue: Queue::Otlp(telemetry.clone()),
                stats: Arc::default(),
            });
        }
        Ok(Audit(Some(Arc::new(Inner {
            telemetry: telemetry.clone(),
            source: s.source.clone(),
            clock,
            allow_below: crate::telemetry::sampler::threshold(s.allow_sample_ratio),
            allow_all: s.allow_sample_ratio >= 1.0,
            stats: sinks.iter().map(|k| (k.name, k.stats.clone())).collect(),
            sinks,
            signals,
            writers,
        }))))
    }

    pub fn enabled(&self) -> bool {
        self.0.is_some()
    }

    /// Whether an event of this kind is recorded: always, but for allowed requests, which are
    /// sampled by `allow_sample_ratio`.
    pub fn wants(&self, kind: Kind) -> bool {
        let Some(inner) = &self.0 else {
            return false;
        };
        if kind.always_kept() || inner.allow_all {
            return true;
        }
        // the system generator: a draw that can be predicted (the workers' fast one shows its
        // state in the ids it makes) would let a caller time requests the audit does not keep
        inner.allow_below > 0
            && crate::crypto::random_key().is_ok_and(|(r, _)| r < inner.allow_below)
    }

    /// Records an event: stamped, written as JSON once, offered to every sink without waiting.
    /// The event is made only when there is an audit stream: without one, emitting is a branch.
    pub fn emit(&self, make: impl FnOnce() -> Event) {
        let Some(inner) = &self.0 else { return };
        let event = make();
        let mut bytes = [0u8; 16];
        if aws_lc_rs::rand::fill(&mut bytes).is_err() {
            // an event without a unique id is still evidence; count it as lost rather than
            // invent a predictable id
            for (_, s) in &inner.stats {
                s.dropped(1);
            }
            return;
        }
        let id = uuid::Builder::from_random_bytes(bytes).into_uuid();
        let at = std::time::UNIX_EPOCH + inner.clock.now();
        let time = humantime::format_rfc3339_millis(at).to_string();
        let line: Arc<str> = Arc::from(event.line(&inner.source, &id.to_string(), &time));
        let record = || LogRecord {
            time_ns: inner.clock.now().as_nanos() as u64,
            trace_id: (event.data.get("trace_id").and_then(|t| t.as_str()))
                .and_then(crate::telemetry::traceparent::parse_trace_id),
            event_name: format!("dev.gatehouse.{}", event.kind.name()),
            body: line.clone(),
        };
        for sink in &inner.sinks {
            sink.offer(&line, record);
        }
    }

    /// Opens the audit file again at its path, for log rotation by rename (SIGHUP, reload).
    pub fn reopen(&self) {
        if let Some(inner) = &self.0 {
            inner.signals.reopen.store(true, Ordering::SeqCst);
        }
    }

    /// Per sink: events written and events dropped, for the admin listener's metrics.
    pub fn samples(&self) -> Vec<Sample> {
        let Some(inner) = &self.0 else {
            return vec![];
        };
        let mut out = Vec::new();
        for (name, s) in &inner.stats {
            let label = || vec![("sink", name.to_string())];
            let (mut w, mut d) = (
                s.written.load(Ordering::Relaxed),
                s.dropped.load(Ordering::Relaxed),
            );
            if *name == "otlp" {
                let (sent, lost) = inner.telemetry.log_counts();
                (w, d) = (w + sent, d + lost);
            }
            out.push(Sample::labelled("gatehouse_audit_events_total", label(), w));
            out.push(Sample::labelled(
                "gatehouse_audit_events_dropped_total",
                label(),
                d,
            ));
        }
        out
    }

    /// Closes the queues and waits for the writers to write what they hold: for a command that
    /// emits and exits. The running gateway never waits for its sinks.
    /// Another clone still open keeps the queues open: then nothing is waited for.
    pub fn close(self) {
        let Some(Ok(inner)) = self.0.map(Arc::try_unwrap) else {
            return;
        };
        let Inner {
            sinks,
            writers,
            signals,
            ..
        } = inner;
        // the writers end when their queues close and are empty
        drop(sinks);
        signals.close();
        for w in writers {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disabled_audit_wants_nothing_and_emits_nothing() {
        let a = Audit::default();
        assert!(!a.enabled());
        assert!(!a.wants(Kind::RequestRefused));
        a.emit(|| Event::config_reloaded("admin", "a", "b", 2));
        assert!(a.samples().is_empty());
    }

    fn settings(ratio: f64, dir: &std::path::Path) -> AuditSettings {
        AuditSettings {
            source: "https://gw.test".into(),
            allow_sample_ratio: ratio,
            file: Some(crate::config::AuditFile {
                path: dir.join("audit.jsonl"),
                max_bytes: 1 << 20,
                keep: 2,
            }),
            stdout: false,
            otlp: false,
            queue: 100,
            http: None,
        }
    }

    #[test]
    fn allowed_requests_follow_the_ratio_and_everything_else_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let clock: SharedClock = Arc::new(crate::clock::SystemClock);
        let none = Audit::start(
            Some(&settings(0.0, dir.path())),
            clock.clone(),
            &Telemetry::default(),
        )
        .unwrap();
        let all = Audit::start(
            Some(&settings(1.0, dir.path())),
            clock.clone(),
            &Telemetry::default(),
        )
        .unwrap();
        let some = Audit::start(
            Some(&settings(0.5, dir.path())),
            clock,
            &Telemetry::default(),
        )
        .unwrap();
        assert!((0..1000).all(|_| !none.wants(Kind::RequestAllowed)));
        assert!((0..1000).all(|_| all.wants(Kind::RequestAllowed)));
        let kept = (0..4000)
            .filter(|_| some.wants(Kind::RequestAllowed))
            .count();
        assert!((1600..2400).contains(&kept), "{kept} of 4000 at 0.5");
        for k in Kind::ALL.iter().filter(|k| k.always_kept()) {
            assert!(none.wants(*k), "{k:?}");
        }
    }

    #[test]
    fn events_reach_the_file_stamped_and_the_counters_say_so() {
        let dir = tempfile::tempdir().unwrap();
        let clock: SharedClock = Arc::new(crate::clock::SystemClock);
        let a = Audit::start(
            Some(&settings(0.0, dir.path())),
            clock,
            &Telemetry::default(),
        )
        .unwrap();
        a.emit(|| Event::config_reloaded("admin", "a", "b", 2));
        a.emit(|| Event::config_reloaded("signal", "b", "c", 3));
        let samples = a.samples();
        a.close();
        let text = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1]["data"]["by"], "signal");
        assert_ne!(lines[0]["id"], lines[1]["id"]);
        assert_eq!(lines[0]["id"].as_str().unwrap().len(), 36);
        assert!(lines[0]["time"].as_str().unwrap().ends_with('Z'));
        assert_eq!(samples[0].family, "gatehouse_audit_events_total");
    }
}
