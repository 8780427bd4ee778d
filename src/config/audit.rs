//! Compiles `[audit]`: where audit events go (a rotated file, stdout, an HTTP collector) and which
//! allowed requests are kept.

use super::raw::RawAudit;
use super::sessions::SecretText;
use super::*;

/// The audit file: JSON lines, rotated by size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditFile {
    pub path: PathBuf,
    /// the size past which the file is renamed `<file>.1` and a new one started
    pub max_bytes: u64,
    /// rotated files kept (`<file>.1` … `<file>.<keep>`)
    pub keep: u32,
}

/// The HTTP collector: batched POSTs of JSON arrays.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditHttp {
    pub endpoint: url::Url,
    pub batch_size: usize,
    pub flush_interval: Duration,
    /// events held while the collector is slow or down; past it new events are dropped and counted
    pub queue: usize,
    pub timeout: Duration,
    pub max_backoff: Duration,
    /// the header and value sent with every POST, read from `http_token_env` at load
    pub credential: Option<(http::HeaderName, SecretText)>,
}

/// The compiled `[audit]` section; present only when at least one sink is named.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditSettings {
    /// the CloudEvents `source` of every event
    pub source: String,
    /// the share of allowed requests recorded, 0 to 1; refusals are always recorded
    pub allow_sample_ratio: f64,
    pub file: Option<AuditFile>,
    pub stdout: bool,
    /// also sent as OTLP log records to `[telemetry] otlp_endpoint`
    pub otlp: bool,
    /// events waiting for the file and stdout writers
    pub queue: usize,
    pub http: Option<AuditHttp>,
}

impl AuditSettings {
    /// No sink of its own: the events the console keeps when there is no `[audit]`.
    pub fn console_only() -> AuditSettings {
        AuditSettings {
            source: "gatehouse".into(),
            allow_sample_ratio: 0.0,
            file: None,
            stdout: false,
            otlp: false,
            queue: 1,
            http: None,
        }
    }
}

impl Compiler {
    /// `[audit]`: `None` (with a problem) when it names no sink or a value is out of range.
    pub(super) fn audit(&mut self, a: RawAudit, public_url: &str) -> Option<AuditSettings> {
        let before = self.problems.len();
        if !(0.0..=1.0).contains(&a.allow_sample_ratio) {
            self.err(
                "audit.allow_sample_ratio",
                format!("{} is not between 0 and 1", a.allow_sample_ratio),
            );
        }
        if a.queue == 0 || a.queue > 1_000_000 {
            self.err("audit.queue", "must be between 1 and 1000000 events");
        }
        let file = a.file.as_deref().map(|f| self.audit_file(f, &a));
        let http = a
            .http_endpoint
            .as_deref()
            .and_then(|e| self.audit_http(e, &a));
        if file.is_none() && !a.stdout && !a.otlp && a.http_endpoint.is_none() {
            self.err(
                "audit",
                "names no sink: set file, stdout = true, otlp = true or http_endpoint (or remove [audit])",
            );
        }
        let source = a.source.unwrap_or_else(|| public_url.to_string());
        if source.is_empty() {
            self.err("audit.source", "must not be empty");
        }
        (self.problems.len() == before).then_some(AuditSettings {
            source,
            allow_sample_ratio: a.allow_sample_ratio,
            file,
            stdout: a.stdout,
            otlp: a.otlp,
            queue: a.queue,
            http,
        })
    }

    fn audit_file(&mut self, f: &str, a: &RawAudit) -> AuditFile {
        if f.is_empty() {
            self.err("audit.file", "must name a file");
        }
        if a.file_max_bytes < 4096 {
            self.err(
                "audit.file_max_bytes",
                format!("{} is under 4096 bytes", a.file_max_bytes),
            );
        }
        if a.file_keep == 0 || a.file_keep > 1000 {
            self.err("audit.file_keep", "must be between 1 and 1000 files");
        }
        AuditFile {
            path: self.path(f),
            max_bytes: a.file_max_bytes,
            keep: a.file_keep,
        }
    }

    fn audit_http(&mut self, endpoint: &str, a: &RawAudit) -> Option<AuditHttp> {
        let url = match url::Url::parse(endpoint) {
            // a credential in the URL would sit in the file: it belongs in http_token_env
            Ok(u) if !u.username().is_empty() || u.password().is_some() => {
                self.err(
                    "audit.http_endpoint",
                    "must not carry a user or password; name the credential's variable in http_token_env",
                );
                None
            }
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Some(u),
            _ => {
                self.err(
                    "audit.http_endpoint",
                    format!("{endpoint:?} is not an http:// or https:// URL"),
                );
                None
            }
        };
        if a.http_batch_size == 0 || a.http_batch_size > 10_000 {
            self.err(
                "audit.http_batch_size",
                "must be between 1 and 10000 events",
            );
        }
        if a.http_queue < a.http_batch_size || a.http_queue > 1_000_000 {
            self.err(
                "audit.http_queue",
                "must be at least http_batch_size and at most 1000000 events",
            );
        }
        let flush_interval = self.duration("audit.http_flush_interval", &a.http_flush_interval);
        let timeout = self.duration("audit.http_timeout", &a.http_timeout);
        let max_backoff = self.duration("audit.http_max_backoff", &a.http_max_backoff);
        for (key, d) in [
            ("audit.http_flush_interval", flush_interval),
            ("audit.http_timeout", timeout),
            ("audit.http_max_backoff", max_backoff),
        ] {
            if d.is_zero() {
                self.err(key, "must be longer than zero");
            }
        }
        let credential = a
            .http_token_env
            .as_deref()
            .and_then(|var| self.audit_credential(var, &a.http_token_header));
        Some(AuditHttp {
            endpoint: url?,
            batch_size: a.http_batch_size,
            flush_interval,
            queue: a.http_queue,
            timeout,
            max_backoff,
            credential,
        })
    }

    /// The header sent to the collector: `Authorization: Bearer <value>`, or `<header>: <value>`.
    fn audit_credential(
        &mut self,
        var: &str,
        header: &str,
    ) -> Option<(http::HeaderName, SecretText)> {
        let Ok(name) = http::HeaderName::from_bytes(header.as_bytes()) else {
            self.err(
                "audit.http_token_header",
                format!("{header:?} is not a header name"),
            );
            return None;
        };
        let value = match std::env::var(var) {
            Ok(v) if !v.is_empty() => v,
            _ => {
                self.err(
                    "audit.http_token_env",
                    format!("environment variable {var} is not set"),
                );
                return None;
            }
        };
        let value = match name == http::header::AUTHORIZATION {
            true => format!("Bearer {value}"),
            false => value,
        };
        if http::HeaderValue::from_str(&value).is_err() {
            self.err(
                "audit.http_token_env",
                format!("environment variable {var} does not hold a valid header value"),
            );
            return None;
        }
        Some((name, SecretText(value)))
    }
}

#[cfg(test)]
mod tests {
    use crate::config::testing::{compile, refused, BASE};

    #[test]
    fn a_file_sink_compiles_with_its_defaults() {
        let c = compile(&format!("{BASE}\n[audit]\nfile = \"audit.jsonl\"\n")).unwrap();
        let a = c.audit.unwrap();
        let f = a.file.unwrap();
        assert_eq!(f.path, std::path::Path::new("/nonexistent/audit.jsonl"));
        assert_eq!((f.max_bytes, f.keep), (100 << 20, 5));
        assert_eq!(a.allow_sample_ratio, 0.0);
        assert!(a.source.starts_with("http"), "{}", a.source);
        assert!(a.http.is_none() && !a.stdout);
    }

    #[test]
    fn otlp_is_a_sink_with_a_telemetry_endpoint() {
        let text = format!(
            "{BASE}\n[audit]\notlp = true\n[telemetry]\notlp_endpoint = \"http://c:4318\"\n"
        );
        let a = compile(&text).unwrap().audit.unwrap();
        assert!(a.otlp && a.file.is_none() && !a.stdout && a.http.is_none());
        // without an endpoint, [telemetry] is off and the sink has nowhere to go
        let off = format!("{BASE}\n[audit]\notlp = true\n[telemetry]\nsample_ratio = 0.5\n");
        refused(&off, "audit.otlp", "needs [telemetry] otlp_endpoint");
    }

    #[test]
    fn no_audit_section_no_audit() {
        assert!(compile(BASE).unwrap().audit.is_none());
    }

    #[test]
    fn bad_values_name_their_keys() {
        let with = |s: &str| format!("{BASE}\n[audit]\n{s}\n");
        refused(&with("stdout = false"), "audit", "names no sink");
        refused(
            &with("stdout = true\nallow_sample_ratio = 1.5"),
            "audit.allow_sample_ratio",
            "between 0 and 1",
        );
        refused(
            &with("file = \"a\"\nfile_max_bytes = 10"),
            "audit.file_max_bytes",
            "under 4096",
        );
        refused(
            &with("file = \"a\"\nfile_keep = 0"),
            "audit.file_keep",
            "between",
        );
        refused(
            &with("http_endpoint = \"ftp://x\""),
            "audit.http_endpoint",
            "is not an http",
        );
        refused(
            &with("http_endpoint = \"https://user:pw@collector\""),
            "audit.http_endpoint",
            "must not carry a user or password",
        );
        refused(
            &with("http_endpoint = \"http://x\"\nhttp_flush_interval = \"soon\""),
            "audit.http_flush_interval",
            "invalid duration",
        );
        refused(
            &with("http_endpoint = \"http://x\"\nhttp_batch_size = 50\nhttp_queue = 10"),
            "audit.http_queue",
            "at least http_batch_size",
        );
        refused(
            &with("http_endpoint = \"http://x\"\nhttp_token_env = \"GH_AUDIT_UNSET_VARIABLE\""),
            "audit.http_token_env",
            "GH_AUDIT_UNSET_VARIABLE is not set",
        );
        refused(
            &with("stdout = true\notlp = true"),
            "audit.otlp",
            "needs [telemetry] otlp_endpoint",
        );
    }
}
