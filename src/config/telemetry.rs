//! Compiles `[telemetry]`: where OpenTelemetry traces (and audit logs) go, which requests are
//! traced, and what the resource and spans may say.

use super::*;
use serde::Deserialize;
use std::collections::BTreeMap;

/// `[telemetry]` as written. (Its raw mirror lives here with its compiler: raw.rs is at its size.)
#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct RawTelemetry {
    pub otlp_endpoint: Option<String>,
    pub service_name: String,
    pub sample_ratio: f64,
    pub resource_attributes: BTreeMap<String, String>,
    pub span_claims: Vec<String>,
    pub queue: usize,
    pub batch_size: usize,
    pub flush_interval: String,
    pub timeout: String,
}

impl Default for RawTelemetry {
    fn default() -> Self {
        RawTelemetry {
            otlp_endpoint: None,
            service_name: "gatehouse".into(),
            sample_ratio: 1.0,
            resource_attributes: BTreeMap::new(),
            span_claims: vec![],
            queue: 10_000,
            batch_size: 512,
            flush_interval: "1s".into(),
            timeout: "5s".into(),
        }
    }
}

/// The compiled `[telemetry]` section; present only when it names an OTLP endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetrySettings {
    /// `<otlp_endpoint>/v1/traces`
    pub traces_url: url::Url,
    /// `<otlp_endpoint>/v1/logs`
    pub logs_url: url::Url,
    pub service_name: String,
    /// the share of requests without a sampled or unsampled parent that are traced, 0 to 1
    pub sample_ratio: f64,
    /// more resource attributes, beside `service.name`
    pub resource_attributes: Vec<(String, String)>,
    /// claims whose values spans may carry, as `gatehouse.claim.<name>`
    pub span_claims: Vec<String>,
    /// spans (and log records) waiting for the exporter; past it new ones are dropped and counted
    pub queue: usize,
    pub batch_size: usize,
    pub flush_interval: Duration,
    pub timeout: Duration,
}

impl Compiler {
    /// `[telemetry]`: `None` without an endpoint (telemetry off) or with a problem.
    pub(super) fn telemetry(&mut self, t: RawTelemetry) -> Option<TelemetrySettings> {
        let before = self.problems.len();
        if !(0.0..=1.0).contains(&t.sample_ratio) {
            self.err(
                "telemetry.sample_ratio",
                format!("{} is not between 0 and 1", t.sample_ratio),
            );
        }
        if t.service_name.trim().is_empty() {
            self.err("telemetry.service_name", "must not be empty");
        }
        if t.batch_size == 0 || t.batch_size > 10_000 {
            self.err("telemetry.batch_size", "must be between 1 and 10000 spans");
        }
        if t.queue < t.batch_size || t.queue > 1_000_000 {
            self.err(
                "telemetry.queue",
                "must be at least batch_size and at most 1000000 spans",
            );
        }
        let flush_interval = self.duration("telemetry.flush_interval", &t.flush_interval);
        let timeout = self.duration("telemetry.timeout", &t.timeout);
        for (key, d) in [
            ("telemetry.flush_interval", flush_interval),
            ("telemetry.timeout", timeout),
        ] {
            if d.is_zero() {
                self.err(key, "must be longer than zero");
            }
        }
        self.resource_attributes(&t.resource_attributes);
        self.span_claims(&t.span_claims);
        let urls = t.otlp_endpoint.as_deref().and_then(|e| self.otlp_urls(e));
        let (traces_url, logs_url) = urls?;
        (self.problems.len() == before).then_some(TelemetrySettings {
            traces_url,
            logs_url,
            service_name: t.service_name,
            sample_ratio: t.sample_ratio,
            resource_attributes: t.resource_attributes.into_iter().collect(),
            span_claims: t.span_claims,
            queue: t.queue,
            batch_size: t.batch_size,
            flush_interval,
            timeout,
        })
    }

    /// The OTLP/HTTP signal URLs under the endpoint, as the OTLP exporters build them.
    fn otlp_urls(&mut self, endpoint: &str) -> Option<(url::Url, url::Url)> {
        const KEY: &str = "telemetry.otlp_endpoint";
        match url::Url::parse(endpoint) {
            // a credential in the URL would sit in the file and in every error about the collector
            Ok(u) if !u.username().is_empty() || u.password().is_some() => {
                self.err(KEY, "must not carry a user or password");
                None
            }
            Ok(u) if u.query().is_some() || u.fragment().is_some() => {
                self.err(KEY, "must not have a query or a fragment");
                None
            }
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
                let base = u.as_str().trim_end_matches('/');
                let traces = url::Url::parse(&format!("{base}/v1/traces")).ok()?;
                let logs = url::Url::parse(&format!("{base}/v1/logs")).ok()?;
                Some((traces, logs))
            }
            _ => {
                self.err(
                    KEY,
                    format!("{endpoint:?} is not an http:// or https:// URL"),
                );
                None
            }
        }
    }

    fn resource_attributes(&mut self, attrs: &BTreeMap<String, String>) {
        for key in attrs.keys() {
            let at = format!("telemetry.resource_attributes.{key}");
            if key.trim().is_empty() {
                self.err("telemetry.resource_attributes", "a key must not be empty");
            } else if key == "service.name" {
                self.err(at, "set telemetry.service_name instead");
            }
        }
    }

    fn span_claims(&mut self, claims: &[String]) {
        for (i, c) in claims.iter().enumerate() {
            let at = format!("telemetry.span_claims[{i}]");
            if c.is_empty() {
                self.err(at, "must name a claim");
            } else if claims.iter().take(i).any(|d| d == c) {
                self.err(at, format!("{c:?} is listed twice"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::testing::{compile, refused, BASE};

    #[test]
    fn an_endpoint_turns_telemetry_on_with_its_defaults() {
        let text = format!("{BASE}\n[telemetry]\notlp_endpoint = \"http://collector:4318/\"\n");
        let t = compile(&text).unwrap().telemetry.unwrap();
        assert_eq!(t.traces_url.as_str(), "http://collector:4318/v1/traces");
        assert_eq!(t.logs_url.as_str(), "http://collector:4318/v1/logs");
        assert_eq!(
            (t.service_name.as_str(), t.sample_ratio),
            ("gatehouse", 1.0)
        );
        assert_eq!((t.queue, t.batch_size), (10_000, 512));
        assert!(t.span_claims.is_empty() && t.resource_attributes.is_empty());
    }

    #[test]
    fn a_path_under_the_endpoint_is_kept() {
        let text = format!(
            "{BASE}\n[telemetry]\notlp_endpoint = \"https://c.example/otlp\"\n\
             sample_ratio = 0.25\nservice_name = \"edge\"\nspan_claims = [\"tenant\"]\n\
             [telemetry.resource_attributes]\n\"deployment.environment.name\" = \"prod\"\n"
        );
        let t = compile(&text).unwrap().telemetry.unwrap();
        assert_eq!(t.traces_url.as_str(), "https://c.example/otlp/v1/traces");
        assert_eq!(t.sample_ratio, 0.25);
        assert_eq!(t.service_name, "edge");
        assert_eq!(t.span_claims, ["tenant"]);
        assert_eq!(
            t.resource_attributes,
            [(
                "deployment.environment.name".to_string(),
                "prod".to_string()
            )]
        );
    }

    #[test]
    fn without_an_endpoint_telemetry_is_off() {
        assert!(compile(BASE).unwrap().telemetry.is_none());
        let text = format!("{BASE}\n[telemetry]\nsample_ratio = 0.5\n");
        assert!(compile(&text).unwrap().telemetry.is_none());
    }

    #[test]
    fn bad_values_name_their_keys() {
        let with =
            |s: &str| format!("{BASE}\n[telemetry]\notlp_endpoint = \"http://c:4318\"\n{s}\n");
        refused(
            &with("sample_ratio = 1.5"),
            "telemetry.sample_ratio",
            "1.5 is not between 0 and 1",
        );
        refused(
            &with("sample_ratio = -0.1"),
            "telemetry.sample_ratio",
            "is not between 0 and 1",
        );
        refused(
            &with("service_name = \" \""),
            "telemetry.service_name",
            "must not be empty",
        );
        refused(
            &with("batch_size = 0"),
            "telemetry.batch_size",
            "between 1 and 10000",
        );
        refused(
            &with("batch_size = 100\nqueue = 10"),
            "telemetry.queue",
            "at least batch_size",
        );
        refused(
            &with("flush_interval = \"soon\""),
            "telemetry.flush_interval",
            "invalid duration",
        );
        refused(
            &with("timeout = \"0s\""),
            "telemetry.timeout",
            "longer than zero",
        );
        refused(
            &with("span_claims = [\"tenant\", \"\", \"tenant\"]"),
            "telemetry.span_claims[1]",
            "must name a claim",
        );
        refused(
            &with("span_claims = [\"tenant\", \"tenant\"]"),
            "telemetry.span_claims[1]",
            "\"tenant\" is listed twice",
        );
        refused(
            &with("[telemetry.resource_attributes]\n\"service.name\" = \"x\""),
            "telemetry.resource_attributes.service.name",
            "set telemetry.service_name instead",
        );
        refused(
            &with("[telemetry.resource_attributes]\n\"\" = \"x\""),
            "telemetry.resource_attributes",
            "a key must not be empty",
        );
        refused(
            &with("exporter = \"grpc\""),
            "telemetry.exporter",
            "unknown key",
        );
        let endpoint = |e: &str| format!("{BASE}\n[telemetry]\notlp_endpoint = \"{e}\"\n");
        refused(
            &endpoint("grpc://c:4317"),
            "telemetry.otlp_endpoint",
            "\"grpc://c:4317\" is not an http:// or https:// URL",
        );
        refused(
            &endpoint("https://user:pw@c:4318"),
            "telemetry.otlp_endpoint",
            "must not carry a user or password",
        );
        refused(
            &endpoint("http://c:4318/?x=1"),
            "telemetry.otlp_endpoint",
            "must not have a query or a fragment",
        );
    }
}
