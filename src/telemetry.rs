//! The access log: one line per request, batched, never with a token or a query string.

use std::fmt::Write;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::OnceLock;
use tracing_appender::non_blocking::NonBlocking;

/// Where access-log lines go once `init_logging` ran: straight to the batched writer, formatted here.
/// Without it (tests, embedding), access lines are ordinary `tracing` events.
static ACCESS_WRITER: OnceLock<(NonBlocking, bool)> = OnceLock::new();

/// One request, as the access log records it. Never a token, a query string or a secret.
pub struct AccessRecord<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub route: &'a str,
    pub upstream: Option<SocketAddr>,
    pub latency_us: u64,
    pub subject: &'a str,
    pub denial: &'a str,
    pub error: &'a str,
}

/// Appends `s` as a JSON string literal.
fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Writes one access-log line. Formatting by hand costs a fraction of a generic event; the line has
/// the same shape as the other log lines (JSON with `fields`, or `key=value` text).
pub fn access_log(r: &AccessRecord<'_>) {
    if !tracing::enabled!(target: "gatehouse::access", tracing::Level::INFO) {
        return;
    }
    let Some((writer, json)) = ACCESS_WRITER.get() else {
        tracing::info!(
            target: "gatehouse::access",
            method = r.method,
            path = r.path,
            status = r.status,
            route = r.route,
            upstream = %r.upstream.map(|a| a.to_string()).unwrap_or_else(|| "-".into()),
            latency_us = r.latency_us,
            subject = r.subject,
            denial = r.denial,
            error = r.error,
            "request"
        );
        return;
    };
    let now = humantime::format_rfc3339_micros(std::time::SystemTime::now());
    let upstream = r.upstream.map(|a| a.to_string());
    let upstream = upstream.as_deref().unwrap_or("-");
    let mut line = String::with_capacity(320);
    if *json {
        let _ = write!(line, "{{\"timestamp\":\"{now}\",\"level\":\"INFO\",\"fields\":{{\"message\":\"request\",\"method\":");
        json_str(&mut line, r.method);
        line.push_str(",\"path\":");
        json_str(&mut line, r.path);
        let _ = write!(line, ",\"status\":{},\"route\":", r.status);
        json_str(&mut line, r.route);
        line.push_str(",\"upstream\":");
        json_str(&mut line, upstream);
        let _ = write!(line, ",\"latency_us\":{},\"subject\":", r.latency_us);
        json_str(&mut line, r.subject);
        line.push_str(",\"denial\":");
        json_str(&mut line, r.denial);
        line.push_str(",\"error\":");
        json_str(&mut line, r.error);
        line.push_str("},\"target\":\"gatehouse::access\"}\n");
    } else {
        let _ = write!(
            line,
            "{now}  INFO gatehouse::access: request method={} path=",
            r.method
        );
        json_str(&mut line, r.path);
        let _ = write!(line, " status={} route=", r.status);
        json_str(&mut line, r.route);
        let _ = write!(
            line,
            " upstream={upstream} latency_us={} subject=",
            r.latency_us
        );
        json_str(&mut line, r.subject);
        let _ = writeln!(line, " denial={} error={}", r.denial, r.error);
    }
    let _ = writer.clone().write_all(line.as_bytes());
}

/// Installs the log subscriber: JSON lines when `json`, else human-readable; `RUST_LOG` filters.
/// Lines are formatted on the request's thread and written by a background thread in batches, so a
/// request never waits for a write to stdout. Keep the guard until exit: dropping it flushes.
pub fn init_logging(json: bool) -> tracing_appender::non_blocking::WorkerGuard {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a terminal: log files and collectors get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .finish(std::io::BufWriter::with_capacity(
            64 * 1024,
            std::io::stdout(),
        ));
    let _ = ACCESS_WRITER.set((writer.clone(), json));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true)
        .with_ansi(ansi)
        .with_writer(writer);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    guard
}
