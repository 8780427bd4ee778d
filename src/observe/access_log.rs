//! The access log: one line per request, batched, never with a token or a query string.

use crate::observe::logwriter::{FlushGuard, LogWriter};
use crate::wire::header_value::push_int;
use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::OnceLock;

/// Where access-log lines go once `init_logging` ran: straight to the batched writer, formatted here.
/// Without it (tests, embedding), access lines are ordinary `tracing` events.
static ACCESS_WRITER: OnceLock<(LogWriter, bool)> = OnceLock::new();

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
    /// the MCP tool, prompt or resource a call named, on routes that judge them
    pub tool: Option<&'a str>,
    /// the route rule that refused the request (`deny_if[0]`), never a value it read
    pub rule: Option<crate::rules::RuleRef>,
    /// a gRPC call's status when its answer's header block carried one (a trailers-only answer:
    /// the gateway's own refusals, or an upstream's call that failed at once); the HTTP status of
    /// a gRPC call is 200 whatever happened
    pub grpc_status: Option<u8>,
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
            tool = r.tool.unwrap_or("-"),
            rule = %r.rule.map_or_else(|| "-".to_string(), |x| x.to_string()),
            grpc_status = r.grpc_status,
            "request"
        );
        return;
    };
    let stamp = humantime::format_rfc3339_micros(
        std::time::UNIX_EPOCH + crate::clock::Clock::now(&crate::clock::SystemClock),
    )
    .to_string();
    let mut line = String::with_capacity(320);
    let mut upstream = String::with_capacity(24);
    match r.upstream {
        Some(a) => {
            upstream.push_str(&crate::wire::forwarded::ip_text(a.ip()));
            upstream.push(':');
            push_int(&mut upstream, u64::from(a.port()));
        }
        None => upstream.push('-'),
    }
    if *json {
        json_line(&mut line, r, &stamp, &upstream);
    } else {
        text_line(&mut line, r, &stamp, &upstream);
    }
    writer.append(line.as_bytes());
}

/// The line as JSON, in the shape of the other JSON log lines.
fn json_line(line: &mut String, r: &AccessRecord<'_>, stamp: &str, upstream: &str) {
    line.push_str("{\"timestamp\":\"");
    line.push_str(stamp);
    line.push_str("\",\"level\":\"INFO\",\"fields\":{\"message\":\"request\",\"method\":");
    json_str(line, r.method);
    line.push_str(",\"path\":");
    json_str(line, r.path);
    line.push_str(",\"status\":");
    push_int(line, u64::from(r.status));
    line.push_str(",\"route\":");
    json_str(line, r.route);
    line.push_str(",\"upstream\":");
    json_str(line, upstream);
    line.push_str(",\"latency_us\":");
    push_int(line, r.latency_us);
    line.push_str(",\"subject\":");
    json_str(line, r.subject);
    line.push_str(",\"denial\":");
    json_str(line, r.denial);
    line.push_str(",\"error\":");
    json_str(line, r.error);
    if let Some(t) = r.tool {
        line.push_str(",\"tool\":");
        json_str(line, t);
    }
    if let Some(rule) = r.rule {
        let _ = write!(line, ",\"rule\":\"{rule}\"");
    }
    if let Some(g) = r.grpc_status {
        line.push_str(",\"grpc_status\":");
        push_int(line, u64::from(g));
    }
    line.push_str("},\"target\":\"gatehouse::access\"}\n");
}

/// The line as text, `key=value`.
fn text_line(line: &mut String, r: &AccessRecord<'_>, stamp: &str, upstream: &str) {
    line.push_str(stamp);
    line.push_str("  INFO gatehouse::access: request method=");
    line.push_str(r.method);
    line.push_str(" path=");
    json_str(line, r.path);
    line.push_str(" status=");
    push_int(line, u64::from(r.status));
    line.push_str(" route=");
    json_str(line, r.route);
    line.push_str(" upstream=");
    line.push_str(upstream);
    line.push_str(" latency_us=");
    push_int(line, r.latency_us);
    line.push_str(" subject=");
    json_str(line, r.subject);
    line.push_str(" denial=");
    line.push_str(r.denial);
    line.push_str(" error=");
    line.push_str(r.error);
    if let Some(t) = r.tool {
        line.push_str(" tool=");
        json_str(line, t);
    }
    if let Some(rule) = r.rule {
        let _ = write!(line, " rule={rule}");
    }
    if let Some(g) = r.grpc_status {
        line.push_str(" grpc_status=");
        push_int(line, u64::from(g));
    }
    line.push('\n');
}

/// Installs the log subscriber: JSON lines when `json`, else human-readable; `RUST_LOG` filters.
/// Lines are formatted on the request's thread and written by a background thread in batches, so a
/// request never waits for a write to stdout. Keep the guard until exit: dropping it flushes.
pub fn init_logging(json: bool) -> std::io::Result<FlushGuard> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a terminal: log files and collectors get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let (writer, guard) = crate::observe::logwriter::spawn(std::io::stdout())?;
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
    Ok(guard)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_names_its_tool_in_both_shapes() {
        let mut r = AccessRecord {
            method: "POST",
            path: "/mcp",
            status: 403,
            route: "tools",
            upstream: None,
            latency_us: 12,
            subject: "u\"1",
            denial: "access_denied",
            error: "-",
            tool: Some("delete_user"),
            rule: None,
            grpc_status: None,
        };
        let mut line = String::new();
        json_line(&mut line, &r, "2026-01-01T00:00:00Z", "-");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["fields"]["tool"], "delete_user");
        assert_eq!(v["fields"]["subject"], "u\"1");
        let mut text = String::new();
        text_line(&mut text, &r, "2026-01-01T00:00:00Z", "-");
        assert!(text.ends_with(" tool=\"delete_user\"\n"), "{text}");
        r.tool = None;
        let mut line = String::new();
        json_line(&mut line, &r, "t", "-");
        assert!(!line.contains("\"tool\""), "{line}");
        assert!(!line.contains("\"rule\""), "{line}");
        r.rule = Some(crate::rules::RuleRef::new(
            crate::rules::RuleKind::DenyIf,
            0,
        ));
        let mut line = String::new();
        json_line(&mut line, &r, "t", "-");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["fields"]["rule"], "deny_if[0]");
        let mut text = String::new();
        text_line(&mut text, &r, "t", "-");
        assert!(text.ends_with(" rule=deny_if[0]\n"), "{text}");
        // a refused gRPC call: HTTP 200, and the status the call ended with
        (r.status, r.grpc_status) = (200, Some(16));
        let mut line = String::new();
        json_line(&mut line, &r, "t", "-");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            (
                v["fields"]["status"].clone(),
                v["fields"]["grpc_status"].clone()
            ),
            (200.into(), 16.into())
        );
        let mut text = String::new();
        text_line(&mut text, &r, "t", "-");
        assert!(text.ends_with(" grpc_status=16\n"), "{text}");
    }

    #[test]
    fn numbers_and_strings_are_written_as_json_reads_them() {
        for n in [0u64, 7, 10, 401, 65535, u64::MAX] {
            let mut out = String::new();
            push_int(&mut out, n);
            assert_eq!(out, n.to_string());
        }
        let mut out = String::new();
        json_str(&mut out, "a\"b\\c\u{1}\u{7f}é");
        assert_eq!(
            serde_json::from_str::<String>(&out).unwrap(),
            "a\"b\\c\u{1}\u{7f}é"
        );
    }
}
