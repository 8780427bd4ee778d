//! Access log and Prometheus metrics.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Counters for the admin listener's /metrics.
#[derive(Default)]
pub struct Metrics {
    /// requests by (route, status)
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    /// denials by reason
    denials: Mutex<BTreeMap<&'static str, u64>>,
    /// sum of request durations in microseconds
    latency_us: AtomicU64,
    count: AtomicU64,
}

impl Metrics {
    pub fn observe(&self, route: &str, status: u16, micros: u64, denial: Option<&'static str>) {
        if let Ok(mut m) = self.requests.lock() {
            *m.entry((route.to_string(), status)).or_default() += 1;
        }
        if let Some(d) = denial {
            if let Ok(mut m) = self.denials.lock() {
                *m.entry(d).or_default() += 1;
            }
        }
        self.latency_us.fetch_add(micros, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Prometheus text exposition; `extra` adds gauges computed by the caller.
    pub fn render(&self, extra: &[(String, u64)]) -> String {
        let mut out = String::new();
        out.push_str("# TYPE gatehouse_requests_total counter\n");
        if let Ok(m) = self.requests.lock() {
            for ((route, status), n) in m.iter() {
                let _ = writeln!(
                    out,
                    "gatehouse_requests_total{{route=\"{}\",status=\"{status}\"}} {n}",
                    escape(route)
                );
            }
        }
        out.push_str("# TYPE gatehouse_denials_total counter\n");
        if let Ok(m) = self.denials.lock() {
            for (reason, n) in m.iter() {
                let _ = writeln!(out, "gatehouse_denials_total{{reason=\"{reason}\"}} {n}");
            }
        }
        out.push_str("# TYPE gatehouse_request_duration_seconds summary\n");
        let _ = writeln!(
            out,
            "gatehouse_request_duration_seconds_sum {}",
            self.latency_us.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(
            out,
            "gatehouse_request_duration_seconds_count {}",
            self.count.load(Ordering::Relaxed)
        );
        for (line, v) in extra {
            let _ = writeln!(out, "{line} {v}");
        }
        out
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Installs the log subscriber: JSON lines when `json`, else human-readable; `RUST_LOG` filters.
pub fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a terminal: log files and collectors get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true)
        .with_ansi(ansi);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
